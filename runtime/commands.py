"""The commands of `python -m runtime`, each loading the packages it works on.

`runtime.cli` parses the command line and answers from the load cache when it can;
what it cannot answer lands here, with SQLAlchemy and the packages imported, except a
`migrate` of changed SQL migration files only (#17): the registry, and SQLAlchemy with
it, are imported by the functions that use them, not above; so are the modules of the
other commands alone (`status`, `uninstall`, `--fleet`), which such a `migrate` would
import for nothing. So are the database modules (asyncpg, and pglast through the
runner): `check` reads files only, and importing them was 0.15 s of its full load at
N = 300 (#17).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import process
from runtime.config import Settings, TransactionMode
from runtime.console import (
    FAILED,
    OK,
    Console,
    check_document,
    count,
    crossings,
    distribution_plan,
    placement_json,
    problem_json,
    report_database,
    report_fleet,
    report_lint,
    report_progress,
    report_signals,
    report_standings,
    summary,
    table,
)
from runtime.core import graph
from runtime.core.lint import Finding, lint_steps
from runtime.core.manifest import Manifest
from runtime.core.model import Package
from runtime.core.plan import (
    PackageStatus,
    Plan,
    Step,
    package_status,
    plan_pending,
    split_transactions,
)
from runtime.core.recorded import Ledger
from runtime.db import urls
from runtime.errors import (
    CitusProblemsError,
    LedgerConflictError,
    PackageNotFoundError,
    ProblemsError,
    RegistryError,
    UninstallRefusedError,
    UnsafeMigrationError,
    UsageError,
)
from runtime.load import bytecode, cache, loader
from runtime.load.lints import lint_file, lint_kept
from runtime.load.packages import migrations_directory

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from runtime.core import citus
    from runtime.core.fleet import Member
    from runtime.core.leftovers import Leftovers, Uninstall
    from runtime.core.registry import DatabaseRegistry
    from runtime.db.diff import Difference
    from runtime.db.run import MigrationReport

__all__ = ["COMMANDS", "Command"]

#: A command: the parsed arguments, the settings and the console in, an exit code out.
Command = Callable[[argparse.Namespace, Settings, Console], Coroutine[Any, Any, int]]


def _registry(settings: Settings) -> DatabaseRegistry:
    """A registry for a command's load (SQLAlchemy is imported with it); it lives as
    long as the command, so it keeps SQLAlchemy's idle dispatchers (`shed`)."""
    from runtime.core.registry import DatabaseRegistry

    return DatabaseRegistry(send_signals=False, shed=False,
                            require_row_level_security=settings.require_rls)


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
    loaded = _load_manifest(args, settings, console, uninstalling=uninstalling)
    return None if loaded is None else loaded[0]


def _load_manifest(
    args: argparse.Namespace, settings: Settings, console: Console, *,
    uninstalling: str | None = None, lint: bool = False,
) -> tuple[list[Package], Manifest] | None:
    """Load as `_load` does; also return the manifest kept in the load cache, with what
    the safety lint found in every migration when `lint` (`check`)."""
    # Scanned before loading: a file saved while the load runs is newer than the cache.
    sources = _scanned(args, settings)
    registry = _registry(settings)
    # Until the load cache is stored too: a full collection over what loaded costs 0.5 s.
    with process.loading():
        result = loader.load_all(settings.packages, registry,
                                 entry_points=not args.no_entry_points,
                                 bytecode=_bytecode_file(settings))
        problems, packages = None, None
        try:
            packages = registry.ordered()
        except ProblemsError as exc:
            problems = exc
            if uninstalling is not None:
                _refuse_dependents(uninstalling, exc)
        packages = _loaded(args, settings, console, result, problems, sources, packages)
        if packages is None:
            return None
        manifest = Manifest.of(packages, lint_kept(packages, _lint_file(settings))
                               if lint else (), facts=sources is not None)
        _store(args, settings, console, manifest, sources, result)
        return packages, manifest


def _scanned(args: argparse.Namespace, settings: Settings) -> cache.Sources | None:
    """The package files as they are before the load, for the load cache; None with
    `--no-cache`. The CLI's scan if it looked the cache up first (`cli._from_cache`)."""
    if args.no_cache:
        return None
    scanned = getattr(args, "scanned", None)
    if isinstance(scanned, cache.Sources):
        return scanned
    return cache.scan(settings.packages, known=cache.listings(_cache_file(args, settings)))


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
    """Print the errors of a load; return the packages, or None when it failed."""
    explained = result.explained(problems.problems) if problems else []
    for error in [*result.errors, *([type(problems)(explained)] if problems and explained
                                    else [])]:
        console.failure(error)
    if result.errors or problems or packages is None:
        return None
    return packages


def _store(
    args: argparse.Namespace, settings: Settings, console: Console, manifest: Manifest,
    sources: cache.Sources | None, result: loader.LoadResult,
) -> None:
    """Keep a good load's manifest in the load cache for the next command."""
    if sources is None:
        return
    try:
        cache.store(_cache_file(args, settings), manifest, sources,
                    entry_points=not args.no_entry_points,
                    installed=result.installed)
    except OSError as exc:  # a read-only checkout still runs, only slower
        console.line(f"load cache not written: {exc}", "dim")


def _bytecode_file(settings: Settings) -> Path:
    # Used with --no-cache too: code kept by content cannot be stale (#17).
    return bytecode.bytecode_file(settings.data_dir, settings.packages)


def _lint_file(settings: Settings) -> Path:
    # Used with --no-cache too: kept by content and the lint's own code (#17).
    return lint_file(settings.data_dir, settings.packages)


def _cache_file(args: argparse.Namespace, settings: Settings) -> Path:
    return cache.cache_file(settings.data_dir, settings.packages, not args.no_entry_points,
                            require_rls=settings.require_rls)


async def _migrate(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.plan:
        return await _print_plan(args, settings, console)
    if args.fleet:
        return await _migrate_fleet(args, settings, console)
    from runtime.db import engine
    from runtime.load import pipeline

    sources = _scanned(args, settings)
    # Which package directories changed since the cached load: only they are imported.
    changes = None if sources is None else cache.changes(_cache_file(args, settings),
                                                         settings.packages, sources)
    # Until the load cache is stored, as in `_load`.
    with process.loading():
        # A `Database`: a change of SQL migration files only is run with asyncpg alone,
        # and makes no registry (SQLAlchemy is not imported, #17).
        async with engine.reach_database(settings) as db:
            with report_progress(console):
                outcome = await pipeline.load_and_migrate(
                    db, settings.packages, lambda: _registry(settings),
                    entry_points=not args.no_entry_points,
                    wait=args.wait, lock_retries=args.lock_retries,
                    transaction=settings.transaction, vet=_vetter(console, strict=args.strict),
                    changes=changes, bytecode=_bytecode_file(settings))
        packages = _loaded(args, settings, console, outcome.load, outcome.problems, sources,
                           outcome.packages)
        if packages is not None:
            _store(args, settings, console, Manifest.of(packages), sources, outcome.load)
    report = outcome.report
    if packages is None or report is None:
        if console.json:
            console.document(summary(console, ok=False))
        return FAILED
    if console.json:
        console.document(summary(console, ok=True, applied=len(report.applied),
                                 packages=len(packages), changed=len(report.by_package()),
                                 duration_ms=round(report.duration_ms, 3)))
    elif report.applied:
        console.line(f"{count(len(report.applied), 'migration')} applied to "
                     f"{count(len(report.by_package()), 'package')} in "
                     f"{report.duration_ms:.0f} ms", "ok")
    else:
        console.line(f"nothing to apply: {len(packages)} packages up to date "
                     f"({report.duration_ms:.1f} ms)", "ok")
    return OK


_MODES = {
    TransactionMode.ALL: "the run commits as one, or not at all",
    TransactionMode.PACKAGE: "each package commits with its record, in order",
    TransactionMode.MIGRATION: "each migration commits on its own",
}


def _unit_words(unit: Plan) -> str:
    """What a transaction of a plan does besides its migrations, for `migrate --plan`."""
    words = [] if unit.transactional else ["outside a transaction, statement by statement"]
    if unit.records:
        words.append(f"records {', '.join(p.name for p in unit.records)}")
    if unit.unregistered:
        words.append(f"deactivates the tools of {', '.join(unit.unregistered)}")
    return f": {'; '.join(words)}" if words else ""


def _vetter(console: Console, *, strict: bool) -> Callable[[Sequence[Step], Ledger], None]:
    """Return what `migrate` asks of the steps it is about to apply, before it applies
    them: it prints what the safety lint finds in them, and refuses the run (raises)
    on a Y303 problem, or on any finding with `--strict`. Each step is vetted once: a
    run that falls back from streaming to the ordinary pipeline offers them again.
    """
    vetted: set[tuple[str, str]] = set()

    def vet(steps: Sequence[Step], recorded: Ledger) -> None:
        fresh = [s for s in steps if (s.package.name, s.migration.id) not in vetted]
        vetted.update((s.package.name, s.migration.id) for s in fresh)
        lints, problems = lint_steps(fresh, recorded)
        found = report_lint(console, lints, strict=strict, pending=True)
        if problems:
            raise LedgerConflictError(problems)
        if strict and found:
            raise UnsafeMigrationError(found)

    return vet


def _fleet_vetter(console: Console, *, strict: bool) -> Callable[[Sequence[Step], Ledger], None]:
    """Return what `migrate --fleet` asks of each database's pending steps: the safety
    lint, as `_vetter`, judged against each database's own ledger (what holds rows,
    the recorded major version), but each finding printed once for the fleet.
    """
    shown: set[Finding] = set()
    told: set[str] = set()  # packages whose Python migrations were said unread

    def vet(steps: Sequence[Step], recorded: Ledger) -> None:
        lints, problems = lint_steps(steps, recorded)
        found = sum(len(lint.findings) for lint in lints)
        fresh = [replace(lint, findings=tuple(f for f in lint.findings if f not in shown),
                         python=() if lint.package in told else lint.python)
                 for lint in lints]
        shown.update(f for lint in lints for f in lint.findings)
        told.update(lint.package for lint in lints if lint.python)
        report_lint(console, fresh, strict=strict, pending=True)
        if problems:
            raise LedgerConflictError(problems)
        if strict and found:
            raise UnsafeMigrationError(found)

    return vet


def _read_fleet(args: argparse.Namespace) -> tuple[Member, ...]:
    """The databases of `--fleet FILE`, the canary first.

    Raises:
        UsageError: the file cannot be read, a line is malformed, or `--canary` names
            no database of it.
    """
    path = Path(args.fleet)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError("--fleet", f"{path}: {reason}",
                         "name a file listing one database a line") from None
    from runtime.core.fleet import canary_first, parse_fleet  # `--fleet` only

    members = parse_fleet(text, str(path))
    return canary_first(members, getattr(args, "canary", None), str(path))


async def _migrate_fleet(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """`migrate --fleet`: the canary loads the packages as `migrate` does, applying them
    as they load; then the rest get the packages it loaded, `--concurrency` at once."""
    from runtime.db import fleet
    from runtime.load import pipeline

    members = _read_fleet(args)
    names = [m.name for m in members]
    sources = _scanned(args, settings)
    registry = _registry(settings)
    vet = _fleet_vetter(console, strict=args.strict)
    loaded = pipeline.Outcome()

    async def load_and_migrate(db: AsyncEngine) -> MigrationReport | None:
        nonlocal loaded
        loaded = await pipeline.load_and_migrate(
            db, settings.packages, registry, entry_points=not args.no_entry_points,
            wait=args.wait, lock_retries=args.lock_retries, transaction=settings.transaction,
            vet=vet, bytecode=_bytecode_file(settings))
        return loaded.report

    started = time.perf_counter()
    with process.loading():  # as in `_migrate`
        canary = await fleet.apply_one(members[0], load_and_migrate,
                                       settings.server_settings())
        packages = _loaded(args, settings, console, loaded.load, loaded.problems, sources,
                           loaded.packages)
    if canary is None or packages is None:  # the load's problems were printed
        ended = [] if canary is None else [canary]
        if canary is not None:
            report_database(console, canary)
        return report_fleet(console, names, ended, (time.perf_counter() - started) * 1000,
                            loaded=canary is not None)
    _store(args, settings, console, Manifest.of(packages), sources, loaded.load)
    report_database(console, canary)
    ended = [canary]
    if canary.ok:
        ended += await fleet.apply(
            members[1:], fleet.migrate_loaded(packages, wait=args.wait,
                                              lock_retries=args.lock_retries,
                                              transaction=settings.transaction, vet=vet),
            concurrency=args.concurrency, server_settings=settings.server_settings(),
            done=lambda result: report_database(console, result))
    return report_fleet(console, names, ended, (time.perf_counter() - started) * 1000)


async def _print_plan(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    packages = _load(args, settings, console)
    if packages is None:
        if console.json:
            console.document({"ok": False, "transactions": [], "errors": console.errors,
                              "problems": [problem_json(p) for p in console.problems]})
        return FAILED
    from runtime.db import engine, ledger

    async with engine.open_database(settings) as db, db.connect() as conn:
        recorded = await ledger.read_ledger(await engine.driver(conn))
    plan = plan_pending(packages, recorded, complete=True)
    if plan.problems:
        raise LedgerConflictError(plan.problems)
    lints, problems = lint_steps(plan.steps, recorded)
    found = report_lint(console, lints, strict=args.strict, pending=True)
    if problems:
        raise LedgerConflictError(problems)
    failed = bool(args.strict and found)
    units = split_transactions(plan, settings.transaction)
    if console.json:
        console.document({"ok": not failed, "transaction": str(settings.transaction),
                          "transactions": [{
            "records": [p.name for p in unit.records], "steps": [{
                "package": step.package.name, "migration": step.migration.id,
                "rerun": step.rerun, "transactional": step.migration.transactional,
                "statements": list(step.migration.statements or ()) or None,
                "python": None if step.migration.statements is not None else _python(step),
            } for step in unit.steps]} for unit in units],
            "lint": [asdict(f) for f in console.findings], "errors": [], "problems": []})
        return FAILED if failed else OK
    if not plan.steps:
        console.line("-- nothing to apply", "dim")
    if units:
        console.line(f"-- --transaction {settings.transaction}: {_MODES[settings.transaction]}, "
                     f"{count(len(units), 'transaction')}", "dim")
    for number, unit in enumerate(units, 1):
        console.line(f"-- transaction {number}{_unit_words(unit)}", "dim")
        for step in unit.steps:
            console.line(f"-- {step.package.name} {step.migration.id}", "dim")
            for statement in step.migration.statements or (f"-- python: {_python(step)}",):
                console.line(statement.rstrip().rstrip(";") + ";")
    return FAILED if failed else OK


def _python(step: Step) -> str:
    """Name a Python migration's function and where it is, for a plan."""
    migration = step.migration
    return f"{getattr(migration.up, '__qualname__', '?')} ({migration.source or 'inline'})"


async def _check(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from runtime.core import citus  # SQLAlchemy: not on a `migrate`'s path

    loaded = _load_manifest(args, settings, console, lint=True)
    if loaded is None:
        if console.json:
            console.document(check_document(console, None))
        return FAILED
    packages, manifest = loaded
    if args.db:
        from runtime.db import checks, engine, ledger, scratch  # not for a check of files

        async with engine.open_database(settings) as db:
            problems = await checks.check_migrations(scratch.server_url(db), packages)
            async with db.connect() as conn:
                recorded = await ledger.read_ledger(await engine.driver(conn))
        # What the next `migrate` would refuse: a breaking change without a new major.
        problems += lint_steps(plan_pending(packages, recorded).steps, recorded)[1]
        if problems:
            console.failure(ProblemsError(problems))
            if console.json:
                console.document(check_document(console, manifest, db=True))
            return FAILED
    try:
        placements = citus.plan(citus.tables_of(packages)) if args.citus else ()
    except CitusProblemsError as exc:
        if not console.json:
            raise  # said as a list of problems, exit 1
        console.failure(exc)
        console.document(check_document(console, manifest, db=args.db))
        return FAILED
    if console.json:
        found = report_lint(console, manifest.lints or [], strict=args.strict)
        failed = bool(args.strict and found)
        document = check_document(console, manifest, db=args.db, failed=failed)
        if args.citus:
            document["citus"] = [placement_json(p) for p in placements]
        console.document(document)
        return FAILED if failed else OK
    names = ", ".join(p.name for p in packages)
    console.line(f"ok: {len(packages)} packages valid ({names})"
                 + (", every migration idempotent and building its declared schema"
                    if args.db else "") + _citus_ready(placements), "ok")
    for line in crossings(manifest):
        console.line(line, "warn")
    found = report_lint(console, manifest.lints or [], strict=args.strict)
    return FAILED if args.strict and found else OK


def _citus_ready(placements: tuple[citus.Placement, ...]) -> str:
    """The end of `check --citus`'s line: how many tables Citus would take, and how."""
    from runtime.core import citus  # SQLAlchemy: not on a `migrate`'s path

    if not placements:
        return ""
    kinds = [p.kind for p in placements]
    return (f", ready for Citus: {count(kinds.count(citus.Kind.DISTRIBUTED), 'table')} "
            f"distributed by workspace_id, {count(kinds.count(citus.Kind.REFERENCE), 'table')} "
            "copied to every node (graph --citus prints the plan)")


async def _status(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from runtime.core import booking

    if args.fleet:
        return await _status_fleet(args, settings, console)
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    from runtime.db import diff, engine, ledger, leftovers

    async with engine.open_database(settings) as db, db.connect() as conn:
        raw = await engine.driver(conn)
        recorded = await ledger.read_ledger(raw)
        statuses = package_status(packages, recorded)
        drift = {} if args.no_drift else await diff.drift(conn, packages, statuses, recorded)
        found = await leftovers.read_leftovers(raw, packages, recorded)
    if console.json:
        console.document({"packages": [{
            "package": s.package, "version": s.version, "recorded_version": s.recorded_version,
            "applied": list(s.applied), "pending": list(s.pending), "edited": list(s.edited),
            "unknown": list(s.unknown), "dev": list(booking.changes_of(s.dev)),
            "dev_objects": {change: [str(key) for key in keys]
                            for change, keys in booking.changes_of(s.dev).items()},
            "up_to_date": s.up_to_date,
            "schema_drift": None if args.no_drift else [
                {"kind": d.kind, "table": d.table, "name": d.name, "words": d.words,
                 "destructive": d.destructive} for d in drift.get(s.package, [])],
        } for s in statuses], "removed": [{
            "package": r.package, "version": r.version,
            "tables": None if r.tables is None else list(r.tables), "ledger_rows": r.rows,
            "uninstalled": r.uninstalled,
        } for r in found.removed], "unowned_tables": list(found.unowned)})
    else:
        _print_status(console, statuses, drift)
        _print_leftovers(console, found)
    return FAILED if any(s.edited for s in statuses) or any(drift.values()) else OK


async def _status_fleet(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """`status --fleet`: each database's pending, edited and undeclared migrations and
    its schema drift, or that it did not answer; read only."""
    members = _read_fleet(args)
    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    from runtime.db import fleet

    standings = await fleet.read_each(members, packages, concurrency=args.concurrency,
                                      server_settings=settings.server_settings(),
                                      drift=not args.no_drift)
    return report_standings(console, standings)


def _print_status(
    console: Console, statuses: list[PackageStatus], drift: dict[str, list[Difference]]
) -> None:
    from runtime.core import booking

    rows = [[s.package, s.version, s.recorded_version or "-", str(len(s.applied)),
             ", ".join(s.pending) or "-",
             ", ".join([*(f"{m} edited" for m in s.edited),
                        *(f"{m} not declared" for m in s.unknown),
                        *([count(len(drift[s.package]), "schema difference")]
                          if drift.get(s.package) else []),
                        *(f"{c} not in a migration" for c in booking.changes_of(s.dev))])
             or "-"]
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
            changes = "; ".join(f"{change} ({booking.summary(keys)})" if keys else change
                                for change, keys in booking.changes_of(status.dev).items())
            console.line(f"{console.style(status.package, 'name')}: dev changes not in a "
                         f"migration yet: {changes}; write one: "
                         f"{console.program} makemigration {status.package}", "dim")


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
                     f"({console.program} uninstall {removed.package} --purge to remove its "
                     "tables and records, or register it again)",
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
    from runtime.db import engine, leftovers

    async with engine.open_database(settings) as db:
        plan = await leftovers.uninstall(db, packages, args.package, purge=args.purge,
                                         apply=not args.plan)
    _print_uninstall(console, plan, planned=args.plan)
    return OK


def _print_uninstall(console: Console, plan: Uninstall, *, planned: bool) -> None:
    name = console.style(plan.name, "name")
    if plan.done:
        console.line(f"{name} is uninstalled already, its data kept (to drop its tables and "
                     f"records: {console.program} uninstall {plan.name} --purge)", "ok")
        return
    how = "purging it" if plan.purge else "keeping its data"
    head = f"{name} {plan.removed.version or ''}".rstrip()
    console.line(f"would uninstall {head}, {how} (--plan: nothing changed):" if planned
                 else f"uninstalled {head}, {how}:", "dim" if planned else "ok")
    for line in _purged(plan, console.program) if plan.purge else _kept(plan, console.program):
        console.line(f"  {line}")


def _purged(plan: Uninstall, program: str) -> Iterator[str]:
    """What a purge does, in words."""
    if plan.drop:
        yield f"tables dropped: {', '.join(plan.drop)}"
    if plan.types:
        yield f"types dropped, used by those tables only: {', '.join(plan.types)}"
    if plan.shared:
        yield f"tables kept, recorded for another package too: {', '.join(plan.shared)}"
    if plan.removed.tables is None:
        yield ("no table dropped: the ledger does not record its tables; drop them among the "
               f"tables no package owns ({program} status lists them)")
    if plan.tools:
        yield f"tools deleted, with the workspaces' choices of them: {', '.join(plan.tools)}"
    yield (f"ledger: its {count(plan.removed.rows, 'ledger row')} and its record deleted, so "
           "registered again it installs afresh from its first migration")


def _kept(plan: Uninstall, program: str) -> Iterator[str]:
    """What uninstalling while keeping the data does, in words."""
    if plan.removed.tables:
        yield f"tables kept, with their rows: {', '.join(plan.removed.tables)}"
    if plan.tools:
        yield f"tools deactivated, the workspaces' choices of them kept: {', '.join(plan.tools)}"
    yield (f"ledger: its {count(plan.removed.rows, 'ledger row')} kept, so registered again it "
           "runs only the migrations it has not run; its record marked uninstalled")
    yield f"to drop its tables and records too: {program} uninstall {plan.name} --purge"


async def _graph(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from runtime.core import citus  # SQLAlchemy: not on a `migrate`'s path

    packages = _load(args, settings, console)
    if packages is None:
        return FAILED
    edges = [(p.name, d) for p in packages for d in p.dependency_names]
    if args.citus:  # raises CitusProblemsError, said as a list of problems, exit 1
        placements = citus.plan(citus.tables_of(packages))
        if console.json:
            console.document({"citus": [placement_json(p) for p in placements]})
        else:
            for line in distribution_plan(placements):
                console.line(line)
    elif console.json:
        order = graph.dependency_order({p.name: p.dependency_names for p in packages})
        by_name = {p.name: p for p in packages}
        console.document({"packages": [{
            "name": name, "version": by_name[name].version_text,
            "dependencies": [{"name": d.name, "specifier": str(d.specifier)}
                             for d in by_name[name].dependencies],
            "tables": sorted(by_name[name].table_names),
        } for name in order]})
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
    package = _named(packages, args.package)
    from runtime.db import engine, scratch
    from runtime.dev import generator

    directory = migrations_directory(package.source)
    if directory is None and package.source and package.source.endswith(".py"):
        wanted = Path(package.source).parent / "migrations"
        console.error(f"{package.name}: no migrations directory to write to; create "
                      f"{_shown(wanted)}, pass migrations=load_migrations(Path(__file__).parent "
                      f"/ \"migrations\") to register_database in "
                      f"{_shown(Path(package.source))}, then run makemigration again")
        return FAILED
    if directory is None:
        console.error(f"{package.name}: no migrations directory to write to (registered from "
                      f"{package.source or 'code'}); write the migration by hand")
        return FAILED
    async with engine.open_database(settings) as db:
        differences = await scratch.compare_migrations(scratch.server_url(db), packages,
                                                       package.name)
    from runtime.core.validation import derived_migration

    derived = derived_migration(package)
    if derived is not None:  # its first file: what it had, then what that lacked
        path = generator.write_initial(directory, derived)
        console.line(f"wrote {_shown(path)}: the migration {package.name} had, derived "
                     "from its schema", "ok")
    if not differences:
        if derived is None:
            console.line(f"nothing to write: the migrations of {package.name} build its "
                         "declared schema", "ok")
        return OK
    for path, part in generator.write_migration(directory, package, differences, args.name):
        if part == generator.BEFORE:
            console.line(f"wrote {_shown(path)}: to run first, outside a transaction: the "
                         "enum labels the next one may use (PostgreSQL uses a label only "
                         "once it is committed)", "ok")
        elif part == generator.AFTER:
            console.line(f"wrote {_shown(path)}: to run after it, outside a transaction: "
                         "it builds indexes and checks keys without blocking writes", "ok")
        else:
            console.line(f"wrote {_shown(path)}:", "ok")
            for difference in differences:
                console.line(f"  {difference.words}")
    if any(d.destructive for d in differences):
        console.line("  destructive: it drops or narrows what the database holds, and a "
                     "running dev daemon applies it at once", "warn")
    return OK


def _named(packages: Sequence[Package], name: str) -> Package:
    """The package `name` names: its full name, or the last part of it or its directory's
    name when only one package answers to that (`basic` for `@ydtb/basic`).

    Raises:
        PackageNotFoundError: no package, or more than one, answers to `name`.
    """
    exact = [p for p in packages if p.name == name]
    short = [p for p in packages if name in {p.name.rpartition("/")[2], _directory(p)}]
    found = exact or short
    if len(found) != 1:
        raise PackageNotFoundError(name, tuple(p.name for p in found or packages),
                                   ambiguous=bool(found))
    return found[0]


def _directory(package: Package) -> str | None:
    return Path(package.source).parent.name if package.source else None


def _shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


async def _dev(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    import anyio

    from runtime.db import engine
    from runtime.dev.daemon import Daemon

    async with engine.open_database(settings) as db:
        url = db.url.render_as_string(hide_password=False)
        console.line(f"runtime dev: database {urls.display_url(url)}", "dim")
        from runtime.core.registry import DatabaseRegistry

        registry = DatabaseRegistry(require_row_level_security=settings.require_rls)
        daemon = Daemon(db, settings.packages, registry=registry,
                        entry_points=not args.no_entry_points,
                        debounce_ms=args.debounce, allow_destructive=args.allow_destructive,
                        between_passes=process.collect_young,
                        reloading=process.reloading)
        with report_signals(console), _one_error():
            async with anyio.create_task_group() as group:
                with process.loading(lasting=True):
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
