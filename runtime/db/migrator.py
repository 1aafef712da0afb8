"""The init pipeline: apply every package's pending migrations, recorded in the ledger.

One run holds a session-level advisory lock, reads the ledger only once the lock is
held, and applies the plan in as few transactions as it can: all transactional
migrations in one, each non-transactional one (`CREATE INDEX CONCURRENTLY`) alone after
the ones before it are committed. So two processes running at once apply each
migration exactly once, and a failing migration leaves the database as it was.

SQL runs on the asyncpg connection under SQLAlchemy's (simple query protocol: a
migration may hold several statements, and nothing is prepared twice); a Python
migration gets the SQLAlchemy `AsyncConnection`, inside a savepoint of the same
transaction.

The last transaction, which records the packages, also brings the tools catalog
(`runtime.db.tools`) and row-level security (`runtime.db.security`) in step with the
packages the run recorded or migrated: a run with nothing to apply or record (one
ledger read) touches neither.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runtime.core import signals
from runtime.core.model import Package
from runtime.core.plan import Ledger, Plan, Step, plan_pending, split_transactions
from runtime.db import ledger, security, tools
from runtime.errors import LedgerConflictError, MigrationFailedError

__all__ = [
    "LOCK_ID",
    "AppliedMigration",
    "MigrationReport",
    "driver",
    "find_unregistered",
    "locked",
    "migrate",
    "read_plan",
    "run_step",
    "sync_catalog",
]

logger = logging.getLogger(__name__)

#: The advisory lock key every pipeline run holds ("ydtb_run" in ASCII).
LOCK_ID = 0x7964_7462_5F72_756E


@dataclass(frozen=True)
class AppliedMigration:
    """One migration a run applied."""

    package: str
    migration: str
    duration_ms: float
    rerun: bool = False


@dataclass(frozen=True)
class MigrationReport:
    """What one pipeline run did."""

    applied: tuple[AppliedMigration, ...]
    recorded: tuple[str, ...]
    duration_ms: float
    unregistered: tuple[str, ...] = ()  # packages whose tools the run deactivated

    @property
    def changed(self) -> bool:
        """Whether the run wrote anything."""
        return bool(self.applied or self.recorded or self.unregistered)

    def by_package(self) -> dict[str, list[AppliedMigration]]:
        """The applied migrations grouped by package, in the order they ran."""
        grouped: dict[str, list[AppliedMigration]] = {}
        for item in self.applied:
            grouped.setdefault(item.package, []).append(item)
        return grouped


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """Return the asyncpg connection underneath a SQLAlchemy one."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


@asynccontextmanager
async def locked(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncConnection, Any]]:
    """Hold the pipeline's advisory lock on a connection; yield it and its asyncpg one."""
    async with engine.connect() as conn:
        raw = await driver(conn)
        await raw.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
        try:
            yield conn, raw
        finally:
            if not raw.is_closed():
                await raw.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)


def _line_of(statement: str, error: BaseException) -> int | None:
    position = getattr(error, "position", None)
    if not position:
        return None
    return statement.count("\n", 0, int(position) - 1) + 1


async def run_step(conn: AsyncConnection, raw: Any, step: Step) -> None:
    """Run one migration on `conn` (its asyncpg connection `raw`), in the caller's transaction.

    Raises:
        MigrationFailedError: naming the package, migration, statement and line.
    """
    migration = step.migration
    statements = migration.statements
    if statements is None:
        try:
            await migration.up(conn)  # type: ignore[operator]
            await conn.commit()
        except Exception as exc:
            await conn.rollback()
            raise MigrationFailedError(step.package.name, migration.id, _reason(exc)) from exc
        return
    for statement in statements:
        try:
            await raw.execute(statement)
        except asyncpg.PostgresError as exc:
            raise MigrationFailedError(
                step.package.name, migration.id, _reason(exc),
                statement=statement, line=_line_of(statement, exc),
            ) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    return str(orig).strip() if orig is not None and str(orig).strip() else text


async def sync_catalog(raw: Any, plan: Plan, unregistered: Sequence[str]) -> None:
    """Bring tools and row-level security in step with what `plan` ran and recorded."""
    await tools.deactivate_package_tools(raw, unregistered)
    await tools.sync_tools(raw, plan.records)
    # A migrated package without row-level security has no policy to take off unless
    # it was just turned off, which changes its fingerprint and so records it: only
    # opted-in ones are read (a catalog query per run saved, scripts/bench).
    touched = ({s.package.name: s.package for s in plan.steps if s.package.row_level_security}
               | {p.name: p for p in plan.records})
    await security.sync_row_level_security(raw, touched.values())


async def _run_group(
    conn: AsyncConnection,
    raw: Any,
    group: list[Step],
    last: Plan | None = None,
    unregistered: Sequence[str] = (),
) -> list[AppliedMigration]:
    done: list[AppliedMigration] = []
    rows = []
    transactional = not group or group[0].migration.transactional
    async with raw.transaction() if transactional else nullcontext():
        for step in group:
            started = time.perf_counter()
            await run_step(conn, raw, step)
            ms = (time.perf_counter() - started) * 1000
            kind = "rerun" if step.rerun else "migration"
            rows.append((step.package.name, step.migration.id, step.migration.checksum,
                         step.package.version_text, kind, ms))
            done.append(AppliedMigration(step.package.name, step.migration.id, ms, step.rerun))
        async with nullcontext() if transactional else raw.transaction():
            await ledger.write_rows(raw, rows)
            if last is not None:
                await ledger.write_packages(raw, last.records)
                await sync_catalog(raw, last, unregistered)
    return done


def find_unregistered(
    recorded: Ledger, packages: Sequence[Package], given: Sequence[str], partial: bool
) -> list[str]:
    """The packages whose tools a run deactivates: `given`, and on a full run those
    recorded in the database but not among `packages`."""
    # A partial run sees only its closure's ledger rows: every other package would look
    # unregistered, so it trusts the caller alone.
    found = set() if partial else set(tools.unregistered_packages(recorded, packages))
    registered = {p.name for p in packages}
    return sorted(found | {name for name in given if name not in registered})


async def read_plan(
    engine: AsyncEngine, packages: Sequence[Package], *, rerun_edited: bool = False
) -> Plan:
    """Plan a run without running it (no lock is taken: the answer may be stale at once)."""
    async with engine.connect() as conn:
        return plan_pending(packages, await ledger.read_ledger(await driver(conn)),
                            rerun_edited=rerun_edited)


async def migrate(
    engine: AsyncEngine,
    packages: Sequence[Package],
    *,
    rerun_edited: bool = False,
    partial: bool = False,
    unregistered: Sequence[str] = (),
    sender: object = None,
) -> MigrationReport:
    """Apply the pending migrations of `packages` and record them.

    Args:
        engine: the database.
        packages: in dependency order, the core first (`DatabaseRegistry.ordered()`).
        rerun_edited: re-run applied migrations that were edited (the dev daemon).
        partial: `packages` is a subset (a reload's closure): read only their ledger rows.
        unregistered: packages the caller unregistered, whose tools are deactivated. A
            full run also finds them itself: recorded in the database, not in `packages`.
        sender: the sender of the signals sent (the registry, the daemon).

    Raises:
        LedgerConflictError: an applied migration was edited, or a package downgraded.
        MigrationFailedError: a migration failed; its transaction was rolled back.
        RowLevelSecurityError: a package's tables could not be put under its policy.
    """
    started = time.perf_counter()
    applied: list[AppliedMigration] = []
    async with locked(engine) as (conn, raw):
        names = [p.name for p in packages] if partial else None
        recorded = await ledger.read_ledger(raw, names)
        plan = plan_pending(packages, recorded, rerun_edited=rerun_edited)
        if plan.problems:
            raise LedgerConflictError(plan.problems)
        gone = find_unregistered(recorded, packages, unregistered, partial)
        groups = split_transactions(plan.steps) or [[]]
        for index, group in enumerate(groups):
            last = plan if index == len(groups) - 1 else None
            try:
                if group or (last is not None and (last.records or gone)):
                    done = await _run_group(conn, raw, group, last, gone)
                else:
                    done = []
            except MigrationFailedError as exc:
                await signals.emit_async(signals.migration_failed, sender, package=exc.package,
                                         migration=exc.migration, error=exc)
                raise
            applied.extend(done)
            for item in done:
                await signals.emit_async(signals.migration_applied, sender, package=item.package,
                                         migration=item.migration, duration_ms=item.duration_ms,
                                         rerun=item.rerun)
    report = MigrationReport(tuple(applied), tuple(p.name for p in plan.records),
                             (time.perf_counter() - started) * 1000, tuple(gone))
    await signals.emit_async(signals.database_initialized, sender, report=report)
    return report
