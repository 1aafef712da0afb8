"""The commands of `python -m runtime`, each loading the packages it works on.

`runtime.cli` parses the command line and answers from the load cache when it can;
what it cannot answer lands here, with SQLAlchemy and the packages imported.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import process
from runtime.config import Settings
from runtime.console import (
    FAILED,
    OK,
    PROGRAM,
    Console,
    count,
    crossings,
    describe,
    distribution_plan,
    report_signals,
    report_waiting,
    table,
)
from runtime.core import citus, graph
from runtime.core.leftovers import Leftovers, Uninstall
from runtime.core.manifest import Manifest
from runtime.core.model import Package
from runtime.core.plan import PackageStatus, package_status
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_PACKAGE
from runtime.db import engine, ledger, leftovers, migrator, urls
from runtime.errors import (
    PackageNotFoundError,
    ProblemsError,
    RegistryError,
    UninstallRefusedError,
)
from runtime.load import cache, loader, pipeline
from runtime.load.packages import migrations_directory

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.db.diff import Difference

__all__ = ["COMMANDS", "Command"]

#: A command: the parsed arguments, the settings and the console in, an exit code out.
Command = Callable[[argparse.Namespace, Settings, Console], Coroutine[Any, Any, int]]


def _load(
    args: argparse.Namespace, settings: Settings, console: Console, *,
    uninstalling: str | None = None,
) -> list[Package] | None:
    """Load and resolve the packages; print every problem and return None on failure.

    A good load is kept in the load cache (`runtime.load.cache`) for the next command.

    Args:
        uninstalling: the package `uninstall` takes away: registered packages that
            depend on it refuse it (`UninstallRefusedError`), rather than fail the load.
    """
    # Scanned before loading: a file saved while the load runs is newer than the cache.
    sources = None if args.no_cache else cache.scan(settings.packages)
    registry = DatabaseRegistry(send_signals=False,
                                require_row_level_security=settings.require_rls)
    # Until the load cache is stored too: a full collection over what loaded costs 0.5 s.
    with process.loading():
        result = loader.load_all(settings.packages, registry,
                                 entry_points=not args.no_entry_points)
        problems, packages = None, None
        try:
            packages = registry.ordered()
        except ProblemsError as exc:
            problems = exc
            if uninstalling is not None:
                _refuse_dependents(uninstalling, exc)
        return _loaded(args, settings, console, result, problems, sources, packages)


def _refuse_dependents(package: str, problems: ProblemsError) -> None:
    """Refuse to uninstall `package` while registered packages depend on it (Y201)."""
    dependents = sorted({p.package for p in problems.problems
                         if p.code == "Y201" and p.dependency == package})
    if dependents:
        one = len(dependents) == 1
        raise UninstallRefusedError(
            package, f"{', '.join(dependents)} depend{'s' if one else ''} on it",
            f"take {'it' if one else 'them'} out of the packages too, or drop "
            f"{'its' if one else 'their'} dependency on {package}, first")


def _loaded(
    args: argparse.Namespace,
    settings: Settings,
    console: Console,
    result: loader.LoadResult,
    problems: ProblemsError | None,
    sources: cache.Sources | None,
    packages: list[Package] | None,
) -> list[Package] | None:
    explained = result.explained(problems.problems) if problems else []
    for error in [*result.errors, *([type(problems)(explained)] if problems and explained
                                    else [])]:
        console.error(describe(error))
    if result.errors or problems or packages is None:
        return None
    if sources is not None:
        entry_points = not args.no_entry_points
        path = cache.cache_file(settings.data_dir, settings.packages, entry_points,
                                require_rls=settings.require_rls)
        try:
            cache.store(path, Manifest.of(packages), sources, entry_points=entry_points,
                        installed=result.installed)
        except OSError as exc:  # a read-only checkout still runs, only slower
            console.line(f"load cache not written: {exc}", "dim")
    return packages


async def _migrate(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.plan:
        return await _print_plan(args, settings, console)
    sources = None if args.no_cache else cache.scan(settings.packages)
    registry = DatabaseRegistry(send_signals=False,
                                require_row_level_security=settings.require_rls)
    # Until the load cache is stored, as in `_load`.
    with process.loading():
        async with engine.open_database(settings) as db:
            with report_waiting(console):
                outcome = await pipeline.load_and_migrate(
                    db, settings.packages, registry, entry_points=not args.no_entry_points,
                    wait=args.wait, lock_retries=args.lock_retries)
        packages = _loaded(args, settings, console, outcome.load, outcome.problems, sources,
                           outcome.packages)
    report = outcome.report
    if packages is None or report is None:
        return FAILED
    for name, items in report.by_package().items():
        done = ", ".join(f"{i.migration} ({i.duration_ms:.1f} ms)" for i in items)
        console.line(f"{console.style(name, 'name')}  applied {done}")
    if report.applied:
        console.line(f"{len(report.applied)} migrations applied to "
                     f"{len(report.by_package())} packages in {report.duration_ms:.0f} ms", "ok")
    else:
        console.line(f"nothing to apply: {len(packages)} packages up to date "
                     f"({report.duration_ms:.1f} ms)", "ok")
    return OK


async def _print_plan(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    async with engine.open_database(settings) as db:
        plan = await migrator.read_plan(db, packages)
    if plan.problems:
        raise ProblemsError(plan.problems)
    for step in plan.steps:
        console.line(f"-- {step.package.name} {step.migration.id}", "dim")
        for statement in step.migration.statements or (
                f"-- python: {getattr(step.migration.up, '__qualname__', '?')} "
                f"({step.migration.source or 'inline'})",):
            console.line(statement.rstrip().rstrip(";") + ";")
    if not plan.steps:
        console.line("-- nothing to apply", "dim")
    return OK


async def _check(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    if args.db:
        from runtime.db import checks, scratch  # alembic: only for the commands that diff

        async with engine.open_database(settings) as db:
            problems = await checks.check_migrations(scratch.server_url(db), packages)
        if problems:
            console.error(describe(ProblemsError(problems)))
            return FAILED
    # Raises CitusProblemsError, said as a list of problems, exit 1.
    placements = citus.plan(citus.tables_of(packages)) if args.citus else ()
    names = ", ".join(p.name for p in packages)
    console.line(f"ok: {len(packages)} packages valid ({names})"
                 + (", every migration idempotent and building its declared schema"
                    if args.db else "") + _citus_ready(placements), "ok")
    for line in crossings(Manifest.of(packages)):
        console.line(line, "warn")
    return OK


def _citus_ready(placements: tuple[citus.Placement, ...]) -> str:
    """The end of `check --citus`'s line: how many tables Citus would take, and how."""
    if not placements:
        return ""
    kinds = [p.kind for p in placements]
    return (f", ready for Citus: {count(kinds.count(citus.Kind.DISTRIBUTED), 'table')} "
            f"distributed by workspace_id, {count(kinds.count(citus.Kind.REFERENCE), 'table')} "
            "copied to every node (graph --citus prints the plan)")


async def _status(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    async with engine.open_database(settings) as db, db.connect() as conn:
        raw = await engine.driver(conn)
        recorded = await ledger.read_ledger(raw)
        statuses = package_status(packages, recorded)
        drift = await _schema_drift(conn, packages, statuses)
        found = await leftovers.read_leftovers(raw, packages, recorded)
    if args.json:
        console.line(json.dumps({"packages": [{
            "package": s.package, "version": s.version, "recorded_version": s.recorded_version,
            "applied": list(s.applied), "pending": list(s.pending), "edited": list(s.edited),
            "unknown": list(s.unknown), "dev": list(s.dev), "up_to_date": s.up_to_date,
            "schema_drift": [{"kind": d.kind, "table": d.table, "name": d.name,
                              "words": d.words, "destructive": d.destructive}
                             for d in drift.get(s.package, [])],
        } for s in statuses], "removed": [{
            "package": r.package, "version": r.version,
            "tables": None if r.tables is None else list(r.tables), "ledger_rows": r.rows,
            "uninstalled": r.uninstalled,
        } for r in found.removed], "unowned_tables": list(found.unowned)}, indent=2))
    else:
        _print_status(console, statuses, drift)
        _print_leftovers(console, found)
    return FAILED if any(s.edited for s in statuses) or any(drift.values()) else OK


async def _schema_drift(
    conn: AsyncConnection, packages: list[Package], statuses: list[PackageStatus]
) -> dict[str, list[Difference]]:
    """Compare the schema of each package whose migrations are all applied with the database."""
    from runtime.db import diff

    complete = {s.package for s in statuses if not s.pending and not s.edited}
    targets = [p for p in packages if p.name in complete and p.name != CORE_PACKAGE]
    return await diff.compare_each(conn, targets, packages)


def _print_status(
    console: Console, statuses: list[PackageStatus], drift: dict[str, list[Difference]]
) -> None:
    rows = [[s.package, s.version, s.recorded_version or "-", str(len(s.applied)),
             ", ".join(s.pending) or "-",
             ", ".join([*(f"{m} edited" for m in s.edited),
                        *(f"{m} not declared" for m in s.unknown),
                        *([count(len(drift[s.package]), "schema difference")]
                          if drift.get(s.package) else []),
                        *(f"{d} not in a migration" for d in s.dev)]) or "-"]
            for s in statuses]
    for line in table(["PACKAGE", "VERSION", "RECORDED", "APPLIED", "PENDING", "DRIFT"], rows):
        console.line(line)
    for name, differences in drift.items():
        if differences:
            console.line(f"{console.style(name, 'name')}: the database differs from the "
                         "declared schema:", "warn")
            for difference in differences:
                console.line(f"  {difference.words}")
    for status in statuses:
        if status.dev:
            console.line(f"{console.style(status.package, 'name')}: dev changes not in a "
                         f"migration yet ({', '.join(status.dev)}); write one: "
                         f"{PROGRAM} makemigration {status.package}", "dim")


def _print_leftovers(console: Console, found: Leftovers) -> None:
    """Say what the database holds that no registered package owns, and what to do."""
    for removed in found.removed:
        name = console.style(removed.package, "name")
        if removed.tables is None:
            what = ("the ledger does not record its tables, as it was recorded before it "
                    "kept them: look among the tables no package owns")
        elif removed.tables:
            what = f"its tables are still in the database: {', '.join(removed.tables)}"
        else:
            what = "none of its tables is left"
        state = ("uninstalled, its data kept" if removed.uninstalled
                 else "not registered any more")
        console.line(f"{name} {removed.version or ''}".rstrip() + f": {state}; {what} "
                     f"({PROGRAM} uninstall {removed.package} --purge to remove its tables "
                     "and records, or register it again)",
                     "dim" if removed.uninstalled else "warn")
    if found.unowned:
        each = "it" if len(found.unowned) == 1 else "each"
        console.line(f"{count(len(found.unowned), 'table')} no package owns: "
                     f"{', '.join(found.unowned)} (declare {each} in a package's schema.py, "
                     "or drop it)", "warn")


async def _uninstall(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console, uninstalling=args.package)
    if packages is None:
        return FAILED
    async with engine.open_database(settings) as db:
        plan = await leftovers.uninstall(db, packages, args.package, purge=args.purge,
                                         apply=not args.plan)
    _print_uninstall(console, plan, planned=args.plan)
    return OK


def _print_uninstall(console: Console, plan: Uninstall, *, planned: bool) -> None:
    name = console.style(plan.name, "name")
    if plan.done:
        console.line(f"{name} is uninstalled already, its data kept (to drop its tables and "
                     f"records: {PROGRAM} uninstall {plan.name} --purge)", "ok")
        return
    how = "purging it" if plan.purge else "keeping its data"
    head = f"{name} {plan.removed.version or ''}".rstrip()
    console.line(f"would uninstall {head}, {how} (--plan: nothing changed):" if planned
                 else f"uninstalled {head}, {how}:", "dim" if planned else "ok")
    for line in _purged(plan) if plan.purge else _kept(plan):
        console.line(f"  {line}")


def _purged(plan: Uninstall) -> Iterator[str]:
    """What a purge does, in words."""
    if plan.drop:
        yield f"tables dropped: {', '.join(plan.drop)}"
    if plan.shared:
        yield f"tables kept, recorded for another package too: {', '.join(plan.shared)}"
    if plan.removed.tables is None:
        yield ("no table dropped: the ledger does not record its tables; drop them among the "
               f"tables no package owns ({PROGRAM} status lists them)")
    if plan.tools:
        yield f"tools deleted, with the workspaces' choices of them: {', '.join(plan.tools)}"
    yield (f"ledger: its {count(plan.removed.rows, 'ledger row')} and its record deleted, so "
           "registered again it installs afresh from its first migration")


def _kept(plan: Uninstall) -> Iterator[str]:
    """What uninstalling while keeping the data does, in words."""
    if plan.removed.tables:
        yield f"tables kept, with their rows: {', '.join(plan.removed.tables)}"
    if plan.tools:
        yield f"tools deactivated, the workspaces' choices of them kept: {', '.join(plan.tools)}"
    yield (f"ledger: its {count(plan.removed.rows, 'ledger row')} kept, so registered again it "
           "runs only the migrations it has not run; its record marked uninstalled")
    yield f"to drop its tables and records too: {PROGRAM} uninstall {plan.name} --purge"


async def _graph(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    edges = [(p.name, d) for p in packages for d in p.dependency_names]
    if args.citus:  # raises CitusProblemsError, said as a list of problems, exit 1
        for line in distribution_plan(citus.plan(citus.tables_of(packages))):
            console.line(line)
    elif args.format == "mermaid":
        ids = {p.name: f"p{i}" for i, p in enumerate(packages)}
        console.line("graph TD")
        for p in packages:
            console.line(f'    {ids[p.name]}["{p.name} {p.version}"]')
        for name, dep in edges:
            console.line(f"    {ids[name]} --> {ids[dep]}")
    elif args.format == "dot":
        console.line("digraph packages {")
        for p in packages:
            console.line(f'    "{p.name}" [label="{p.name}\\n{p.version}"];')
        for name, dep in edges:
            console.line(f'    "{name}" -> "{dep}";')
        console.line("}")
    else:
        order = graph.dependency_order({p.name: p.dependency_names for p in packages})
        by_name = {p.name: p for p in packages}
        for name in order:
            deps = ", ".join(str(d) for d in by_name[name].dependencies) or "-"
            console.line(f"{name} {by_name[name].version}  <- {deps}")
    return OK


async def _makemigration(
    args: argparse.Namespace, settings: Settings, console: Console
) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    package = next((p for p in packages if p.name == args.package), None)
    if package is None:
        raise PackageNotFoundError(args.package, tuple(p.name for p in packages))
    from runtime.db import scratch
    from runtime.dev import generator

    directory = migrations_directory(package.source)
    if directory is None:
        console.error(f"{package.name}: no migrations directory to write to (registered from "
                      f"{package.source or 'code'}); write the migration by hand")
        return FAILED
    async with engine.open_database(settings) as db:
        differences = await scratch.compare_migrations(scratch.server_url(db), packages,
                                                       package.name)
    if not differences:
        console.line(f"nothing to write: the migrations of {package.name} build its declared "
                     "schema", "ok")
        return OK
    path = generator.write_migration(directory, package, differences, args.name)
    console.line(f"wrote {_shown(path)}:", "ok")
    for difference in differences:
        console.line(f"  {difference.words}")
    if any(d.destructive for d in differences):
        console.line("  destructive: it drops or narrows what the database holds, and a "
                     "running dev daemon applies it at once", "warn")
    return OK


def _shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


async def _dev(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    import anyio

    from runtime.dev.daemon import Daemon

    async with engine.open_database(settings) as db:
        url = db.url.render_as_string(hide_password=False)
        console.line(f"runtime dev: database {urls.display_url(url)}", "dim")
        registry = DatabaseRegistry(require_row_level_security=settings.require_rls)
        daemon = Daemon(db, settings.packages, registry=registry,
                        entry_points=not args.no_entry_points,
                        debounce_ms=args.debounce, allow_destructive=args.allow_destructive,
                        between_passes=process.collect_young)
        with report_signals(console), _one_error():
            async with anyio.create_task_group() as group:
                with process.loading():
                    await group.start(daemon.run)
                    await daemon.watching.wait()
                process.settle()
                names = ", ".join(p for p in daemon.registry.packages if p != "@ydtb/core")
                dirs = ", ".join(str(d) for d in daemon.watched)
                console.line(f"watching {dirs} ({names or 'no packages'}); Ctrl-C to stop",
                             "bold")
    return OK


@contextmanager
def _one_error() -> Iterator[None]:
    """Raise a task group's only error as itself: the CLI says it in one line."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], RegistryError):
            raise group.exceptions[0] from None
        raise


COMMANDS: dict[str, Command] = {
    "migrate": _migrate, "check": _check, "status": _status, "graph": _graph,
    "makemigration": _makemigration, "uninstall": _uninstall, "dev": _dev,
}
