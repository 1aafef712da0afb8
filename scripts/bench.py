"""Benchmark the pipeline and the reload loop against their floors (`./scripts/bench`).

Generates N synthetic packages (seeded), then measures, each beside its floor (the same
database work done by hand with asyncpg, on the same server in the same run):

  cold apply         load + order + migrate a fresh database, in process and as
                     `python -m runtime migrate`
  no-op re-run       migrate again with nothing to do, in process and as a process
  one new migration  a leaf package gains a migration: reload it, order, migrate; and
                     as a `migrate` process, a deploy of one package (load cache, #17)
  check              `python -m runtime check` as a process: answered from the load
                     cache the migrate runs left, and with --no-cache (every package
                     imported; the compiled code and the lint kept by content are read)
  fleet apply        `migrate --fleet` of N = 100 to 20 fresh databases, 4 at once
  reload loop        save a new migration -> applied -> `signals.reloaded` (dev daemon);
                     and save schema.py with a new nullable column, then with an index
                     on it -> applied by the dev sync -> `signals.reloaded`
  daemon memory      peak RSS of `python -m runtime dev` after start-up and a few edits

and prints medians (p95 for the reload loop too), the ratio to the floor, and PASS or
MISS against the targets. The machine is shared: treat the figures as provisional.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from benchlib import database, fleet, floor, pipeline, profiles, reload, verify, workload
from benchlib.results import Collector, Spec, Target, collect_results, render

GROUPS = ("pipeline", "process", "fleet", "reload", "memory")

SPECS = (
    Spec("cold", "cold apply, in process", "s",
         target=Target(1.1, on_ratio=True, sizes=frozenset({100, 300}))),
    Spec("cold-process", "cold apply, migrate process", "s",
         target=Target(1.1, on_ratio=True, sizes=frozenset({100, 300}))),
    Spec("noop", "no-op re-run, in process", "ms", target=Target(0.015, sizes=frozenset({300}))),
    Spec("noop-process", "no-op re-run, migrate process", "s",
         target=Target(1.2, on_ratio=True)),
    Spec("new-process", "one new migration, migrate process", "s",
         target=Target(0.5, sizes=frozenset({300, 1000}))),
    Spec("new-to-noop", "the same, to the no-op process (its floor)", "s",
         target=Target(1.5, on_ratio=True, sizes=frozenset({300, 1000}))),
    Spec("incremental", "one new migration, in process", "ms",
         target=Target(0.020, sizes=frozenset({300}))),
    Spec("check-process", "validation, check process", "s",
         target=Target(0.5, sizes=frozenset({300}))),
    Spec("check-loaded", "validation, check --no-cache process", "s",
         target=Target(2.0, sizes=frozenset({300}))),
    Spec("check-tables", "the same, to SQLAlchemy building the tables alone", "s"),
    Spec("fleet", f"fleet apply, {fleet.DATABASES} databases, {fleet.CONCURRENCY} at once, "
         "process", "s", target=Target(1.1, on_ratio=True)),
    Spec("reload", "save -> applied -> signal", "ms", target=Target(0.050)),
    Spec("reload", "save -> applied -> signal", "ms", stat="p95", target=Target(0.100),
         phases=False),
    Spec("reload-column", "save schema.py, a column -> applied -> signal", "ms",
         target=Target(0.050)),
    Spec("reload-column", "save schema.py, a column -> applied -> signal", "ms", stat="p95",
         target=Target(0.100), phases=False),
    Spec("reload-index", "save schema.py, an index -> applied -> signal", "ms",
         target=Target(0.050)),
    Spec("reload-index", "save schema.py, an index -> applied -> signal", "ms", stat="p95",
         target=Target(0.100), phases=False),
    Spec("memory", "dev daemon peak RSS", "MB",
         target=Target(150 * 2**20, sizes=frozenset({300}), below=True)),
)

FLOORS = """\
floors: cold = asyncpg runs the core DDL and every migration in one transaction plus one
ledger insert per migration (in process, or as `python floor.py apply`); no-op = one
ledger read on an open connection (in process) or `python floor.py read` (connect + read);
one new migration = its SQL + one ledger insert on an open connection, or as a process
`python floor.py one` (connect, read the ledger, run both), and beside the no-op process; check =
`python floor.py scan` (start, import sqlalchemy, read every package file), and `python
floor.py tables` (the same, then run every schema.py: SQLAlchemy building the tables);
fleet = `python floor.py fleet`: the cold floor's transaction on each of 20 databases, 4 at
once; reload =
watchfiles awatch(debounce=50, step=3) noticing the save + asyncpg running the same
statement (the migration's, or the column's or index's DDL) and a ledger row; memory =
VmHWM of a process importing the daemon's libraries only."""


@dataclass(frozen=True)
class Options:
    """What to run: sizes, repeats and the measurement groups."""

    sizes: tuple[int, ...]
    reload_sizes: tuple[int, ...]
    memory_size: int
    fleet_size: int
    repeat: int
    runs: int
    edits: int
    memory_edits: int
    seed: int
    groups: tuple[str, ...]
    database_url: str | None
    keep: bool
    profile: Path | None


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="./scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=(20, 100, 300), metavar="N,N",
                        help="package counts for the pipeline (default 20,100,300)")
    parser.add_argument("--reload-sizes", type=_sizes, default=(9, 300), metavar="N,N",
                        help="package counts for the reload loop (default 9,300)")
    parser.add_argument("--memory-size", type=int, default=300, metavar="N",
                        help="package count for the daemon's memory (default 300)")
    parser.add_argument("--fleet-size", type=int, default=100, metavar="N",
                        help="package count for the fleet apply (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each pipeline run")
    parser.add_argument("--edits", type=int, default=40,
                        help="edits of each kind in the reload loop (a migration, a "
                        "schema.py column, an index)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated packages")
    parser.add_argument("--only", default=",".join(GROUPS), metavar="GROUP,GROUP",
                        help=f"measurement groups to run, of {', '.join(GROUPS)}")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                        metavar="URL", help="a server to create databases on (default: "
                        "$DATABASE_URL, else an embedded server of its own)")
    parser.add_argument("--keep", action="store_true", help="keep the generated packages")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="instead of measuring, write profiles of each measurement of "
                        "the --only groups at the largest N to DIR (needs pyinstrument)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N=20 (reload N=9), 2 repeats, about a minute")
    args = parser.parse_args(argv)
    groups = tuple(g for g in args.only.split(",") if g)
    if unknown := set(groups) - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; use {', '.join(GROUPS)}")
    if args.quick:
        args.sizes, args.reload_sizes, args.memory_size, args.repeat = (20,), (9,), 20, 2
        args.fleet_size = 20
        args.edits = min(args.edits, 30)
    return Options(args.sizes, args.reload_sizes, args.memory_size, args.fleet_size,
                   args.repeat, runs=5,
                   edits=args.edits, memory_edits=5, seed=args.seed, groups=groups,
                   database_url=args.database_url, keep=args.keep, profile=args.profile)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Bench:
    """One run: the workloads it generated, the server, and the samples gathered."""

    def __init__(self, options: Options, workdir: Path, server_url: str) -> None:
        self.options = options
        self.workdir = workdir
        self.server_url = server_url
        self.collect = Collector()
        self._workloads: dict[int, workload.Workload] = {}
        self._plans: dict[int, floor.Plan] = {}

    def workload(self, size: int) -> workload.Workload:
        """The packages of size N, generated on first use, with their floor's plan."""
        if size not in self._workloads:
            generated = workload.generate(self.workdir / f"n{size}", size, self.options.seed)
            self._workloads[size] = generated
            self._plans[size] = pipeline.floor_plan(generated)
            self._plans[size].dump(self._plan_file(size))  # for the floor's processes
        return self._workloads[size]

    def plan(self, size: int) -> floor.Plan:
        self.workload(size)
        return self._plans[size]

    def _plan_file(self, size: int) -> Path:
        return self.workdir / f"floor-plan-{size}.json"

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await database.drop_left()

    async def _run(self) -> None:
        options = self.options
        # Generating and checking N = 300 takes a while: only for the groups that use it.
        sizes = sorted(options.sizes) if {"pipeline", "process"} & set(options.groups) else []
        if sizes:
            progress(f"N={sizes[0]}: checking schema.py against the migrations")
            await verify.verify(self.server_url, self.workload(sizes[0]), self.plan(sizes[0]))
        for size in sizes:
            await self._pipeline(size)
        if "fleet" in options.groups:
            await self._fleet(options.fleet_size)
        if "reload" in options.groups:
            rng = random.Random(options.seed)
            for size in options.reload_sizes:
                progress(f"N={size}: reload loop, {options.edits} edits of each kind and "
                         "their floor")
                await reload.reload_loop(self.server_url, self.workload(size), self.plan(size),
                                         options.edits, self.collect, rng)
        if "memory" in options.groups:
            size = options.memory_size
            progress(f"N={size}: dev daemon process, start-up and {options.memory_edits} edits")
            await reload.daemon_memory(self.server_url, self.workload(size),
                                       options.memory_edits, self.collect)

    async def _pipeline(self, size: int) -> None:
        options = self.options
        work, plan = self.workload(size), self.plan(size)
        for repeat in range(1, options.repeat + 1):
            floor_first = repeat % 2 == 1
            if "pipeline" in options.groups:
                progress(f"N={size} repeat {repeat}/{options.repeat}: in process")
                await pipeline.in_process(self.server_url, work, plan, self.collect,
                                          runs=options.runs, floor_first=floor_first)
            if "process" in options.groups:
                progress(f"N={size} repeat {repeat}/{options.repeat}: as processes")
                await pipeline.as_processes(self.server_url, work, self._plan_file(size),
                                            self.collect, floor_first=floor_first)

    async def _fleet(self, size: int) -> None:
        work = self.workload(size)
        for repeat in range(1, self.options.repeat + 1):
            progress(f"N={size} repeat {repeat}/{self.options.repeat}: fleet apply to "
                     f"{fleet.DATABASES} databases, {fleet.CONCURRENCY} at once")
            await fleet.fleet(self.server_url, work, self._plan_file(size), self.workdir,
                              self.collect, floor_first=repeat % 2 == 1)

    def report(self) -> list[str]:
        results = collect_results(SPECS, self.collect)
        headers = {size: f"N = {size}: {w.table_count:,} tables, {w.migration_count:,} "
                   "migrations (+ the core)" for size, w in self._workloads.items()}
        verdicts = [r.verdict for r in results if r.verdict]
        summary = (f"{verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS "
                   f"of {len(verdicts)} targets")
        return [*render(results, headers), "", summary, "", FLOORS]


def _machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}, Python {sys.version.split()[0]}"


def _revision() -> str:
    """The commit measured, and whether runtime/ had uncommitted changes (read-only git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=pipeline.PROJECT, capture_output=True,
                              text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes in runtime/"
                     if git("status", "--porcelain", "--", "runtime") else "")


async def _profile(options: Options, workdir: Path, server_url: str) -> None:
    assert options.profile is not None
    pipeline_run = {"pipeline", "process"} & set(options.groups)
    size = max(options.sizes if pipeline_run else options.reload_sizes)
    progress(f"N={size}: profiling each measurement once into {options.profile}")
    work = workload.generate(workdir / f"n{size}", size, options.seed)
    try:
        for path in await profiles.write_profiles(server_url, work, options.profile,
                                                  options.groups):
            print(path)
    finally:
        await database.drop_left()


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    if options.profile is not None and importlib.util.find_spec("pyinstrument") is None:
        print("--profile needs pyinstrument: .venv/bin/pip install pyinstrument",
              file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="runtime-bench-"))
    started = time.perf_counter()
    header = [f"runtime benchmark of {_revision()}, seed {options.seed}, {options.repeat} "
              "repeats; provisional figures on a shared machine", f"start: {_machine()}"]
    bench: Bench | None = None
    try:
        with database.server(options.database_url, workdir) as server_url:
            if options.profile is not None:
                anyio.run(_profile, options, workdir, server_url, backend="asyncio")
                return 0
            bench = Bench(options, workdir, server_url)
            anyio.run(bench.run, backend="asyncio")
    finally:
        if options.keep:
            progress(f"kept the generated packages in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if bench is not None:  # what was measured, even when a measurement failed
            took = f"took {time.perf_counter() - started:.0f} s"
            for line in [*header, f"end:   {_machine()}; {took}", *bench.report()]:
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
