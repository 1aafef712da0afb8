"""The reload loop measured: save -> applied -> `signals.reloaded`, and memory.

Three kinds of save, one after the other on one daemon: a new migration file, then
`schema.py` gaining a nullable column, then gaining an index on it (applied by the
daemon's dev sync). The loop runs the daemon in this process, the way
tests/dev/test_daemon.py drives it, and times each edit from just before the file is
written to the moment the `reloaded` receiver runs. Its floor is watchfiles, with the
daemon's settings, noticing the same write, plus asyncpg running the same statement
(the migration's, or the column's or index's DDL) and a ledger row.

The memory figure runs `python -m runtime dev` as its own process and reads its peak
resident set (VmHWM) after start-up and a few edits.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from watchfiles import awatch

from benchlib import database, floor
from benchlib.pipeline import FLOOR_SCRIPT, PROJECT, ledger_row
from benchlib.results import Collector
from benchlib.workload import Edit, SchemaEdit, Workload
from runtime import process
from runtime.core import signals
from runtime.dev.daemon import Daemon
from runtime.dev.watcher import DEBOUNCE_MS, STEP_MS  # the daemon's defaults

__all__ = [
    "DevProcess",
    "daemon_loop",
    "daemon_memory",
    "dev_command",
    "dev_process",
    "edits_for",
    "reload_edits",
    "reload_loop",
]

_START_TIMEOUT = 600  # seconds: start-up applies every migration of N packages
_EDIT_TIMEOUT = 20


def edits_for(workload: Workload, count: int) -> list[Edit]:
    """`count` new migrations, one per edit, going round the leaf packages."""
    leaves = workload.leaves()
    return [workload.edit(leaves[i % len(leaves)], serial=i + 1) for i in range(count)]


def reload_edits(workload: Workload, count: int) -> list[Edit | SchemaEdit]:
    """`count` new migrations, then `count` schema.py columns, then `count` indexes."""
    columns, indexes = workload.schema_edits(count)
    return [*edits_for(workload, count), *columns, *indexes]


def _remove(edits: Sequence[Edit | SchemaEdit]) -> None:
    for edit in edits:
        edit.remove()


# -- the loop in process ------------------------------------------------------------------


@dataclass
class _Reloads:
    """The `reloaded` signals received, each with the time it arrived."""

    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, _sender: object, **kwargs: Any) -> None:
        self.received.append((time.perf_counter(), kwargs))

    async def wait_for(
        self, edit: Edit | SchemaEdit, since: int
    ) -> tuple[float, dict[str, Any]]:
        """Return the first signal from index `since` on that applied `edit`."""
        with anyio.fail_after(_EDIT_TIMEOUT):
            while True:
                for at, kwargs in self.received[since:]:
                    if kwargs["error"] is not None:
                        raise RuntimeError(f"the daemon refused {edit.path}: {kwargs['error']}")
                    if edit.applied_in(kwargs["applied"]):
                        return at, kwargs
                await anyio.sleep(0.001)


@contextlib.asynccontextmanager
async def _running(engine: AsyncEngine, root: Path) -> AsyncIterator[Daemon]:
    # Tuned as `python -m runtime dev` tunes its process (runtime/commands.py).
    daemon = Daemon(engine, [root], entry_points=False, debounce_ms=DEBOUNCE_MS,
                    step_ms=STEP_MS, reloading=process.reloading)
    async with anyio.create_task_group() as group:
        with anyio.fail_after(_START_TIMEOUT):
            await group.start(daemon.run)
            await daemon.watching.wait()
        gc.freeze()  # as `python -m runtime dev` does once it watches (runtime/cli.py)
        try:
            yield daemon
        finally:
            daemon.stop()
            group.cancel_scope.cancel()
            gc.unfreeze()


def _no_context(_figure: str) -> AbstractContextManager[object]:
    return nullcontext()


async def daemon_loop(
    server_url: str, workload: Workload, edits: Sequence[Edit | SchemaEdit],
    gaps: Sequence[float], collect: Collector,
    around_edits: Callable[[str], AbstractContextManager[object]] = _no_context,
) -> None:
    """Start the daemon on a fresh database, then time each edit; each run of edits of
    one figure goes inside `around_edits(figure)`."""
    reloads = _Reloads()
    async with database.fresh_engine(server_url) as (_, engine):
        with signals.reloaded.connected_to(reloads):
            async with _running(engine, workload.root):
                paired = list(zip(edits, gaps, strict=True))
                for figure, group in itertools.groupby(paired, key=lambda p: p[0].figure):
                    with around_edits(figure):
                        await _edit_loop(reloads, workload.size, list(group), collect)


async def _edit_loop(
    reloads: _Reloads, size: int, edits: Sequence[tuple[Edit | SchemaEdit, float]],
    collect: Collector,
) -> None:
    for edit, gap in edits:
        await anyio.sleep(gap)
        mark = len(reloads.received)
        started = time.perf_counter()
        edit.save()
        at, kwargs = await reloads.wait_for(edit, mark)
        total, inside = at - started, kwargs["elapsed_ms"] / 1000
        collect.add(edit.figure, size, value=total,
                    phases={"seen": total - inside, "seen -> signalled": inside})


# -- its floor ----------------------------------------------------------------------------


@dataclass
class _Pending:
    """The edit the floor's watcher waits for, and when it was handled."""

    edit: Edit | SchemaEdit
    handled: anyio.Event = field(default_factory=anyio.Event)
    at: float = 0.0


async def _floor_watch(
    root: Path, conn: Any, current: Callable[[], _Pending | None], ready: anyio.Event
) -> None:
    async for changes in awatch(root, debounce=DEBOUNCE_MS, step=STEP_MS, rust_timeout=100,
                                yield_on_timeout=True):
        ready.set()
        pending = current()
        if pending is None or not any(path == str(pending.edit.path) for _, path in changes):
            continue
        edit = pending.edit
        await floor.run_one(conn, edit.sql, ledger_row(edit.package, edit.migration, edit.sql))
        pending.at = time.perf_counter()
        pending.handled.set()


async def _floor_loop(
    server_url: str, workload: Workload, plan: floor.Plan, edits: Sequence[Edit | SchemaEdit],
    gaps: Sequence[float], collect: Collector,
) -> None:
    async with database.fresh_database(server_url) as url:
        await floor.apply(url, plan)
        conn = await asyncpg.connect(url)
        slot: list[_Pending] = []
        ready = anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_floor_watch, workload.root.resolve(), conn,
                                 lambda: slot[-1] if slot else None, ready)
                await ready.wait()
                for edit, gap in zip(edits, gaps, strict=True):
                    await anyio.sleep(gap)
                    slot.append(_Pending(edit))
                    started = time.perf_counter()
                    edit.save()
                    with anyio.fail_after(_EDIT_TIMEOUT):
                        await slot[-1].handled.wait()
                    collect.add(edit.figure, workload.size, floor=slot[-1].at - started)
                group.cancel_scope.cancel()
        finally:
            await conn.close()


async def reload_loop(
    server_url: str, workload: Workload, plan: floor.Plan, count: int, collect: Collector,
    rng: random.Random,
) -> None:
    """Time `count` edits of each kind through the daemon, then the same edits through
    the floor (`reload_edits`).

    Edits are spaced 50-150 ms apart (seeded), so each is a burst of its own.
    """
    edits = reload_edits(workload, count)
    gaps = [rng.uniform(0.05, 0.15) for _ in edits]
    gc.collect()  # the daemon should not inherit the earlier measurements' garbage
    try:
        await daemon_loop(server_url, workload, edits, gaps, collect)
        _remove(edits)
        await _floor_loop(server_url, workload, plan, edits, gaps, collect)
    finally:
        _remove(edits)


# -- memory -------------------------------------------------------------------------------


class DevProcess:
    """A `python -m runtime dev` process whose output lines are read as they come."""

    def __init__(self, args: Sequence[str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, *args], cwd=PROJECT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        """Read lines until one contains `text`; a line starting "x " or "error" fails."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {text!r} from the daemon within {timeout:g}s; "
                                   f"last lines: {self.seen[-5:]}") from None
            self.seen.append(line)
            if line.startswith(("x ", "error")):
                raise RuntimeError(f"the daemon failed: {self.seen[-5:]}")
            if text in line:
                return

    def drain(self) -> list[str]:
        """The lines that arrived since the last read, without waiting."""
        new = []
        while not self.lines.empty():
            new.append(self.lines.get_nowait())
        self.seen += new
        return new

    def status(self, field_name: str) -> int:
        """A `kB` field of /proc/PID/status, in bytes."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith(field_name + ":"))
        return int(line.split()[1]) * 1024

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()  # SIGTERM: the CLI shuts down cleanly on it
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def dev_command(workload: Workload, url: str) -> list[str]:
    """The arguments of `python -m runtime dev` on `workload` and the database `url`."""
    return ["-m", "runtime", "dev", "--packages", str(workload.root), "--no-entry-points",
            "--database-url", url]


@contextlib.contextmanager
def dev_process(args: Sequence[str]) -> Iterator[DevProcess]:
    process = DevProcess(args)
    try:
        yield process
    finally:
        process.stop()


def _baseline() -> int:
    done = subprocess.run([sys.executable, str(FLOOR_SCRIPT), "baseline"], capture_output=True,
                          text=True, check=True, cwd=PROJECT)
    return int(done.stdout.strip()) * 1024


async def daemon_memory(
    server_url: str, workload: Workload, count: int, collect: Collector
) -> None:
    """Start the daemon process, make `count` edits, and record its peak RSS.

    The floor is a process importing the libraries the daemon runs on and nothing else.
    """
    edits = edits_for(workload, count)
    try:
        async with database.fresh_database(server_url) as url:
            with dev_process(dev_command(workload, url)) as daemon:
                daemon.wait_for("watching", _START_TIMEOUT)
                after_start = daemon.status("VmHWM")
                for edit in edits:
                    await anyio.sleep(0.1)
                    edit.save()
                    daemon.wait_for(f"ok {edit.package}:", _EDIT_TIMEOUT)
                peak, now = daemon.status("VmHWM"), daemon.status("VmRSS")
    finally:
        _remove(edits)
    collect.add("memory", workload.size, value=peak, floor=_baseline(),
                phases={"peak after start-up": after_start, "resident at the end": now})
