"""`python -m runtime COMMAND`: migrate, check, status, graph, makemigration (and `dev`,
the daemon).

The only module that reads `os.environ` and turns errors into exit codes:
0 success, 1 validation or migration errors, 2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.config import Settings, resolve_settings
from runtime.console import Console, count, report_signals, table
from runtime.core import graph
from runtime.core.model import Package
from runtime.core.plan import PackageStatus, package_status
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_PACKAGE
from runtime.db import engine, ledger, migrator
from runtime.dev import loader
from runtime.errors import (
    DatabaseUnavailableError,
    PackageNotFoundError,
    ProblemsError,
    RegistryError,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.db.diff import Difference

__all__ = ["main"]

OK, FAILED, USAGE = 0, 1, 2
Command = Callable[[argparse.Namespace, Settings, Console], Coroutine[Any, Any, int]]


@contextmanager
def _few_collections() -> Iterator[None]:
    # Loading hundreds of packages makes ~500,000 SQLAlchemy objects that live on; the
    # default thresholds run full collections over them again and again (1.6 s of 9 s
    # at N = 300, scripts/bench). The process owns its GC here, not the library.
    threshold = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def _load(args: argparse.Namespace, settings: Settings, console: Console) -> list[Package] | None:
    """Load and resolve the packages; print every problem and return None on failure."""
    registry = DatabaseRegistry(send_signals=False)
    with _few_collections():
        result = loader.load_all(settings.packages, registry,
                                 entry_points=not args.no_entry_points)
    for error in result.errors:
        console.error(str(error))
    try:
        packages = registry.ordered()
    except ProblemsError as exc:
        console.error(str(exc))
        return None
    return None if result.errors else packages


async def _migrate(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    async with engine.open_database(settings) as db:
        if args.plan:
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
        report = await migrator.migrate(db, packages)
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


async def _check(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    if args.db:
        from runtime.db import checks, scratch  # alembic: only for the commands that diff

        async with engine.open_database(settings) as db:
            problems = await checks.check_migrations(scratch.server_url(db), packages)
        if problems:
            console.error(str(ProblemsError(problems)))
            return FAILED
    names = ", ".join(p.name for p in packages)
    console.line(f"ok: {len(packages)} packages valid ({names})"
                 + (", every migration idempotent and building its declared schema"
                    if args.db else ""), "ok")
    return OK


async def _status(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    async with engine.open_database(settings) as db, db.connect() as conn:
        statuses = package_status(packages, await ledger.read_ledger(await migrator.driver(conn)))
        drift = await _schema_drift(conn, packages, statuses)
    if args.json:
        console.line(json.dumps([{
            "package": s.package, "version": s.version, "recorded_version": s.recorded_version,
            "applied": list(s.applied), "pending": list(s.pending), "edited": list(s.edited),
            "unknown": list(s.unknown), "dev": list(s.dev), "up_to_date": s.up_to_date,
            "schema_drift": [{"kind": d.kind, "table": d.table, "name": d.name,
                              "words": d.words, "destructive": d.destructive}
                             for d in drift.get(s.package, [])],
        } for s in statuses], indent=2))
    else:
        _print_status(console, statuses, drift)
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
                         f"python -m runtime makemigration {status.package}", "dim")


async def _graph(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    edges = [(p.name, d) for p in packages for d in p.dependency_names]
    if args.format == "mermaid":
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

    directory = generator.migrations_directory(package)
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
        console.line(f"runtime dev: database {engine.display_url(url)}", "dim")
        daemon = Daemon(db, settings.packages, entry_points=not args.no_entry_points,
                        debounce_ms=args.debounce, allow_destructive=args.allow_destructive)
        with report_signals(console):
            async with anyio.create_task_group() as group:
                with _few_collections():
                    await group.start(daemon.run)
                    await daemon.watching.wait()
                # What start-up loaded lives as long as the daemon: out of the collector's
                # way, a reload's collections stay short (p95 1.03 s -> 0.32 s at N = 300).
                gc.freeze()
                names = ", ".join(p for p in daemon.registry.packages if p != "@ydtb/core")
                dirs = ", ".join(str(d) for d in daemon.directories)
                console.line(f"watching {dirs} ({names or 'no packages'}); Ctrl-C to stop",
                             "bold")
    return OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--packages", action="append", metavar="DIR",
                        help="a directory of packages (default: packages_dev; repeatable)")
    common.add_argument("--database-url", metavar="URL",
                        help="postgresql:// URL (default: $DATABASE_URL, else embedded)")
    common.add_argument("--no-entry-points", action="store_true",
                        help="skip installed packages of the 'runtime.packages' entry points")
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        description="Validate, migrate and watch the database schemas of ydtb packages.",
        epilog="Exit codes: 0 success, 1 validation or migration errors, 2 usage or "
               "connection errors. The database is --database-url, else $DATABASE_URL, "
               "else an embedded PostgreSQL kept in .runtime/.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate = commands.add_parser("migrate", parents=[common], help="apply pending migrations")
    migrate.add_argument("--plan", action="store_true", help="print the SQL, change nothing")
    migrate.set_defaults(run=_migrate)
    check = commands.add_parser("check", parents=[common], help="validate the packages")
    check.add_argument("--db", action="store_true",
                       help="also check, on a scratch database, that migrations are "
                       "idempotent and build the declared schema")
    check.set_defaults(run=_check)
    status = commands.add_parser("status", parents=[common], help="packages against the ledger")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)
    graph_cmd = commands.add_parser("graph", parents=[common], help="the dependency graph")
    graph_cmd.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    graph_cmd.set_defaults(run=_graph)
    dev = commands.add_parser("dev", parents=[common], help="the hot-reload dev daemon")
    dev.add_argument("--debounce", type=int, default=50, metavar="MS",
                     help="group saves closer than this into one reload (default 50)")
    dev.add_argument("--allow-destructive", action="store_true",
                     help="also apply schema edits that may lose data (drops, narrower "
                     "types, NOT NULL) to the dev database")
    dev.set_defaults(run=_dev)
    make = commands.add_parser("makemigration", parents=[common],
                               help="write a package's schema changes as a migration")
    make.add_argument("package", metavar="PACKAGE", help="the package, e.g. @ydtb/basic")
    make.add_argument("--name", help="the file name after its number (default: derived)")
    make.set_defaults(run=_makemigration)
    return parser


async def _until_signalled(command: Coroutine[Any, Any, int]) -> int:
    # SIGTERM and SIGHUP stop the command like Ctrl-C does, so its `finally` blocks run
    # and an embedded server it started is stopped, not left behind.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await command
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    """Run a command line; return its exit code."""
    console = console or Console()
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and USAGE
    settings = resolve_settings(database_url=args.database_url, packages=args.packages,
                                environ=os.environ, project_dir=Path.cwd())
    run: Command = args.run
    try:
        return asyncio.run(_until_signalled(run(args, settings, console)))
    except DatabaseUnavailableError as exc:
        console.error(str(exc))
        return USAGE
    except RegistryError as exc:
        console.error(str(exc))
        return FAILED
    except KeyboardInterrupt:
        console.line("stopped", "dim")
        return OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
