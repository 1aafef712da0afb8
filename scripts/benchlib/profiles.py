"""Where the time and memory go: profiles of the runtime's side of each measurement.

`./scripts/bench --profile DIR` writes, instead of the table, for the largest N and
the groups of `--only`:

- `<name>.txt`: a pyinstrument call tree, then the functions by total time, of each
  in-process measurement (cold, no-op x50, one new migration x10; 20 daemon reloads of
  each kind: `reload.txt` new migrations, `reload-column.txt` and `reload-index.txt`
  schema.py edits);
- `process-<command>.txt`: the same for `python -m runtime migrate` (cold, then no-op)
  and `check`, run under `python -m pyinstrument`;
- `imports.txt`: the slowest imports of `import runtime.cli` (`python -X importtime`);
- `daemon-memory.txt`: the dev daemon process's resident memory every half second of
  its start-up, beside the last line it printed.

pyinstrument is not a project dependency: `.venv/bin/pip install pyinstrument` first.
It samples one thread, so the daemon's reloads are profiled with the runtime's worker
thread calls (the loader) run inline (`anyio.to_thread.run_sync` wrapped meanwhile).
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from benchlib import database, pipeline, reload
from benchlib.results import Collector
from benchlib.workload import Workload

__all__ = ["write_profiles"]

_REPEATS = {"noop": 50, "incremental": 10, "reload": 20}


@contextlib.contextmanager
def _profiled(path: Path, title: str) -> Iterator[None]:
    from pyinstrument import Profiler  # optional: only this mode needs it

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        tree = profiler.output_text(color=False, unicode=False)
        flat = profiler.output_text(color=False, unicode=False, flat=True, flat_time="total")
        own = profiler.output_text(color=False, unicode=False, flat=True, flat_time="self",
                                    show_all=True)
        path.write_text(f"{title}\n{tree}\n-- by total time --\n{flat}\n"
                        f"-- by own time --\n{own}")


@contextlib.contextmanager
def _threads_inline() -> Iterator[None]:
    """Run the runtime's `anyio.to_thread.run_sync` work on the profiled thread.

    Only the runtime's: watchfiles blocks a worker thread in its Rust watcher, which
    inline would block the event loop.
    """
    original = anyio.to_thread.run_sync

    async def inline(function: Any, *args: Any, **kwargs: Any) -> Any:
        called = getattr(function, "func", function)  # the daemon passes partials
        if (getattr(called, "__module__", None) or "").startswith("runtime."):
            return function(*args)
        return await original(function, *args, **kwargs)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.to_thread.run_sync = original


async def _in_process(server_url: str, workload: Workload, outdir: Path) -> None:
    size, scratch = workload.size, Collector()
    async with database.fresh_engine(server_url) as (_, engine):
        with _profiled(outdir / "cold.txt", f"cold apply in process, N={size}"):
            registry = await pipeline.cold(engine, workload, scratch)
        with _profiled(outdir / "noop.txt", f"no-op re-run x{_REPEATS['noop']}, N={size}"):
            for _ in range(_REPEATS["noop"]):
                await pipeline.noop(engine, registry, size, scratch)
        leaf = workload.leaves()[0]
        with _profiled(outdir / "incremental.txt",
                       f"one new migration x{_REPEATS['incremental']}, N={size}"):
            for serial in range(1, _REPEATS["incremental"] + 1):
                await pipeline.incremental(engine, registry, workload,
                                           workload.edit(leaf, serial), scratch)


async def _reloads(server_url: str, workload: Workload, outdir: Path) -> None:
    count = _REPEATS["reload"]
    edits = reload.reload_edits(workload, count)
    rng = random.Random(0)
    gaps = [rng.uniform(0.05, 0.15) for _ in edits]

    def profiled(figure: str) -> contextlib.AbstractContextManager[None]:
        title = (f"{count} daemon reloads ({figure}), N={workload.size} (loader inline; "
                 "idle time included)")
        return _profiled(outdir / f"{figure}.txt", title)

    try:
        with _threads_inline():
            await reload.daemon_loop(server_url, workload, edits, gaps, Collector(),
                                     around_edits=profiled)
    finally:
        for edit in edits:
            edit.remove()


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=pipeline.PROJECT, text=True,
                          capture_output=True, check=True, **kwargs)


async def _processes(server_url: str, workload: Workload, outdir: Path) -> None:
    def profile(name: str, command: str, *extra: str) -> None:
        out = outdir / f"process-{name}.txt"
        _run(["-m", "pyinstrument", "-r", "text", "--no-color", "-o", str(out), "-m",
              "runtime", command, "--packages", str(workload.root), "--no-entry-points",
              *extra])

    async with database.fresh_database(server_url) as url:
        profile("migrate-cold", "migrate", "--database-url", url)
        profile("migrate-noop", "migrate", "--database-url", url)
    profile("check", "check")


def _imports(outdir: Path, top: int = 30) -> None:
    done = _run(["-X", "importtime", "-c", "import runtime.cli"])
    rows = [line.split("|") for line in done.stderr.splitlines()
            if line.startswith("import time:") and "cumulative" not in line]
    rows.sort(key=lambda row: int(row[1]), reverse=True)
    lines = [f"{int(row[1]) / 1000:8.1f} ms  {row[2].rstrip()}" for row in rows[:top]]
    (outdir / "imports.txt").write_text("cumulative import time of `import runtime.cli`\n"
                                        + "\n".join(lines) + "\n")


async def _daemon_memory(server_url: str, workload: Workload, outdir: Path) -> None:
    lines = [f"`python -m runtime dev`, N={workload.size}: resident memory during start-up"]
    async with database.fresh_database(server_url) as url:
        with reload.dev_process(reload.dev_command(workload, url)) as daemon:
            started = time.monotonic()
            while not any("watching" in line for line in daemon.seen):
                await anyio.sleep(0.5)
                daemon.drain()
                last = daemon.seen[-1][:70] if daemon.seen else ""
                lines.append(f"{time.monotonic() - started:6.1f} s  "
                             f"{daemon.status('VmRSS') / 2**20:6.0f} MB  {last}")
                if time.monotonic() - started > 600:
                    break
    (outdir / "daemon-memory.txt").write_text("\n".join(lines) + "\n")


async def write_profiles(
    server_url: str, workload: Workload, outdir: Path, groups: Collection[str]
) -> list[Path]:
    """Profile the measurements of `groups` once at `workload`'s N; return the files."""
    outdir.mkdir(parents=True, exist_ok=True)
    if "pipeline" in groups:
        await _in_process(server_url, workload, outdir)
    if "reload" in groups:
        await _reloads(server_url, workload, outdir)
    if "process" in groups:
        await _processes(server_url, workload, outdir)
        _imports(outdir)
    if "memory" in groups:
        await _daemon_memory(server_url, workload, outdir)
    return sorted(outdir.iterdir())
