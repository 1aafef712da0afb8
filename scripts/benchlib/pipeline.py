"""The init pipeline measured: cold, no-op and incremental runs, in process and as processes.

Each function is one repeat at one N. It measures the floor first, on a database of its
own, then the runtime on a fresh one, so the noise of a busy machine lands on both.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from benchlib import database, floor
from benchlib.results import Collector
from benchlib.workload import Edit, Workload
from runtime import process
from runtime.core.model import Package
from runtime.core.registry import DatabaseRegistry, core_package
from runtime.db import migrator
from runtime.load import loader, pipeline

__all__ = [
    "FLOOR_SCRIPT",
    "Stopwatch",
    "as_processes",
    "cold",
    "floor_plan",
    "in_process",
    "incremental",
    "ledger_row",
    "noop",
    "run_process",
]

FLOOR_SCRIPT = Path(__file__).with_name("floor.py")
PROJECT = Path(__file__).resolve().parents[2]
_PROCESS_TIMEOUT = 600  # seconds; a cold apply of 300 packages takes some

T = TypeVar("T")


class Stopwatch:
    """Time consecutive phases: `lap("load")` closes the phase that began at the last lap.

    Args:
        collect: collect garbage first, so the previous measurement's is not charged to
            this one. Only for long measurements: at N=300 a full collection takes about
            half a second, and short ones should pay the collections a user would.
    """

    def __init__(self, *, collect: bool = False) -> None:
        if collect:
            gc.collect()
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return sum(self.phases.values())


async def timed(work: Callable[[], Awaitable[T]], *, collect: bool = False) -> float:
    """Run `work()` and return the seconds it took."""
    watch = Stopwatch(collect=collect)
    await work()
    watch.lap("all")
    return watch.total


def ledger_row(package: str, migration: str, sql: str) -> floor.Row:
    checksum = hashlib.sha256(sql.strip().encode()).hexdigest()
    return (package, migration, checksum, "1.0.0", "migration", 0.0)


def floor_plan(workload: Workload) -> floor.Plan:
    """The core's statements and every migration's SQL, in dependency order, with rows."""
    core = core_package()
    statements = [s for m in core.migrations for s in m.statements or ()]
    rows = [(core.name, m.id, m.checksum, str(core.version), "migration", 0.0)
            for m in core.migrations]
    statements += [sql for *_, sql in workload.migrations()]
    rows += [ledger_row(p, m, sql) for p, m, sql in workload.migrations()]
    return floor.Plan(tuple(statements), tuple(rows))


# -- in process ---------------------------------------------------------------------------


async def _in_turn(first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]],
                   *, swap: bool) -> None:
    for step in (second, first) if swap else (first, second):
        await step()


async def in_process(
    server_url: str, workload: Workload, plan: floor.Plan, collect: Collector, *, runs: int,
    floor_first: bool = True,
) -> None:
    """One repeat of the in-process runs: cold apply, then `runs` no-op runs and `runs`
    new migrations, one after the other (a single sample each was too noisy to judge).

    Alternate `floor_first` between repeats: the server slows down as a run goes on
    (its catalogs and WAL grow), and whichever goes second would pay for it.
    """
    edits = [workload.edit(workload.leaves()[0], serial=s) for s in range(1, runs + 1)]
    await _in_turn(lambda: _in_process_floors(server_url, workload.size, plan, edits, collect,
                                              runs),
                   lambda: _in_process_runtime(server_url, workload, edits, collect, runs),
                   swap=not floor_first)


async def _in_process_runtime(
    server_url: str, workload: Workload, edits: Sequence[Edit], collect: Collector, runs: int
) -> None:
    async with database.fresh_engine(server_url) as (_, engine):
        registry = await cold(engine, workload, collect)
        # What a long-lived process does after loading, as the dev daemon does: the
        # packages it keeps stay out of the collector's way (runtime/cli.py).
        gc.freeze()
        try:
            for _ in range(runs):
                await noop(engine, registry, workload.size, collect)
            for edit in edits:
                await incremental(engine, registry, workload, edit, collect)
        finally:
            gc.unfreeze()


async def _in_process_floors(
    server_url: str, size: int, plan: floor.Plan, edits: Sequence[Edit], collect: Collector,
    runs: int,
) -> None:
    async with database.fresh_database(server_url) as url:
        collect.add("cold", size,
                    floor=await timed(lambda: floor.apply(url, plan), collect=True))
        conn = await asyncpg.connect(url)
        try:
            for _ in range(runs):
                collect.add("noop", size, floor=await timed(lambda: floor.read_ledger(conn)))
            for edit in edits:
                row = ledger_row(edit.package, edit.migration, edit.sql)
                collect.add("incremental", size, floor=await timed(
                    functools.partial(floor.run_one, conn, edit.sql, row)))
        finally:
            await conn.close()


async def cold(engine: AsyncEngine, workload: Workload, collect: Collector) -> DatabaseRegistry:
    """Load the workload and migrate a fresh database, as `migrate` does; return the registry.

    One phase: `pipeline.load_and_migrate` applies packages while the next ones load.
    """
    watch = Stopwatch(collect=True)
    registry = DatabaseRegistry(send_signals=False)
    with process.loading():  # as `python -m runtime migrate` tunes its process
        outcome = await pipeline.load_and_migrate(engine, [workload.root], registry,
                                                  entry_points=False)
    if outcome.load.errors or outcome.problems or outcome.report is None:
        raise RuntimeError(f"the workload does not load: {outcome.load.errors or outcome.problems}")
    watch.lap("load + migrate")
    packages = registry.ordered()
    _expect_applied(outcome.report.applied, sum(len(p.migrations) for p in packages))
    collect.add("cold", workload.size, value=watch.total, phases=watch.phases)
    return registry


async def noop(
    engine: AsyncEngine, registry: DatabaseRegistry, size: int, collect: Collector
) -> None:
    """Migrate again with nothing to do."""
    watch = Stopwatch()
    packages = registry.ordered()
    watch.lap("order")
    report = await migrator.migrate(engine, packages)
    watch.lap("migrate")
    _expect_applied(report.applied, 0)
    collect.add("noop", size, value=watch.total, phases=watch.phases)


async def incremental(
    engine: AsyncEngine, registry: DatabaseRegistry, workload: Workload, edit: Edit,
    collect: Collector,
) -> None:
    """Save `edit`, reload its package into `registry`, order, migrate; remove the file."""
    edit.save()
    try:
        watch = Stopwatch()
        loader.load_directory(edit.path.parents[1], registry)
        watch.lap("load leaf")
        packages: list[Package] = registry.ordered()
        watch.lap("order")
        report = await migrator.migrate(engine, packages)
        watch.lap("migrate")
    finally:
        edit.remove()
    _expect_applied(report.applied, 1)
    collect.add("incremental", workload.size, value=watch.total, phases=watch.phases)


def _expect_applied(applied: Sequence[Any], count: int) -> None:
    if len(applied) != count:
        raise RuntimeError(f"expected {count} migrations applied, the run applied {len(applied)}")


# -- as processes -------------------------------------------------------------------------


def run_process(args: Sequence[str], *, expect: str = "") -> float:
    """Run a Python process to its end; return its wall-clock seconds.

    Raises:
        RuntimeError: it failed, or its output lacks `expect`.
    """
    # Processes keep bytecode, as Python does by default. With PYTHONDONTWRITEBYTECODE
    # set (this machine sets it) runtime's own modules were compiled on every start,
    # 0.2 s that the floor, importing only installed packages, never paid.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          cwd=PROJECT, env=env, timeout=_PROCESS_TIMEOUT, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(f"{' '.join(args[:3])} exited {done.returncode} "
                           f"(expected {expect!r} in its output): {done.stdout[-800:]}"
                           f"{done.stderr[-800:]}")
    return elapsed


def _process_edit(workload: Workload) -> Edit:
    """The new migration of the process figure: in a leaf, as a deploy of one package."""
    return workload.edit(workload.leaves()[0], serial=_PROCESS_EDIT)


def _runtime(command: str, workload: Workload, *extra: str) -> list[str]:
    return ["-m", "runtime", command, "--packages", str(workload.root), "--no-entry-points",
            *extra]


_PROCESS_EDIT = 90  # past the in-process figure's serials: its own migration id


async def as_processes(
    server_url: str, workload: Workload, plan_file: Path, collect: Collector, *,
    floor_first: bool = True,
) -> None:
    """One repeat of the process runs: `migrate` cold, `migrate` again, and `check`."""
    await _in_turn(lambda: _process_floors(server_url, workload, plan_file, collect),
                   lambda: _process_runtime(server_url, workload, collect),
                   swap=not floor_first)


async def _process_floors(
    server_url: str, workload: Workload, plan_file: Path, collect: Collector
) -> None:
    size, script = workload.size, str(FLOOR_SCRIPT)
    async with database.fresh_database(server_url) as url:
        collect.add("cold-process", size,
                    floor=run_process([script, "apply", url, str(plan_file)]))
        collect.add("noop-process", size, floor=run_process([script, "read", url]))
        edit = _process_edit(workload)
        row = json.dumps(ledger_row(edit.package, edit.migration, edit.sql))
        collect.add("new-process", size, floor=run_process([script, "one", url, row, edit.sql]))
    scan = run_process([script, "scan", str(workload.root)])
    collect.add("check-process", size, floor=scan)
    collect.add("check-loaded", size, floor=scan)
    collect.add("check-tables", size, floor=run_process([script, "tables", str(workload.root)]))


async def _process_runtime(server_url: str, workload: Workload, collect: Collector) -> None:
    size = workload.size
    async with database.fresh_database(server_url) as url:
        migrate = _runtime("migrate", workload, "--database-url", url)
        collect.add("cold-process", size, value=run_process(migrate, expect="migrations applied"))
        noop = run_process(migrate, expect="nothing to apply")
        collect.add("noop-process", size, value=noop)
        edit = _process_edit(workload)
        edit.save()
        try:
            new = run_process(migrate, expect="1 migration applied to 1 package")
        finally:
            edit.remove()
        collect.add("new-process", size, value=new)
        # #17: a deploy of one package's migration costs about what a no-op run costs.
        collect.add("new-to-noop", size, value=new, floor=noop)
    # Unmeasured: the leaf is back as it was, and `check` lints it again for the cache.
    run_process(_runtime("check", workload), expect="packages valid")
    collect.add("check-process", size,
                value=run_process(_runtime("check", workload), expect="packages valid"))
    loaded = run_process(_runtime("check", workload, "--no-cache"), expect="packages valid")
    collect.add("check-loaded", size, value=loaded)
    collect.add("check-tables", size, value=loaded)
