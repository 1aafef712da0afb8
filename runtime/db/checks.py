"""Checks that need a database: is every migration idempotent?

Run on a scratch database: each migration is applied, the schema snapshotted, the
migration applied again, and the schema compared. A migration whose second run fails
or changes the schema would break a re-run after a partial failure, and the dev
daemon's re-run of an edited migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core.model import Package
from runtime.core.plan import Step
from runtime.db.migrator import driver, run_step
from runtime.errors import MigrationFailedError, Problem

__all__ = ["check_idempotency", "snapshot"]

_SNAPSHOT = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
       || is_nullable || ' default ' || coalesce(column_default, '-')
FROM information_schema.columns WHERE table_schema = current_schema()
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
"""

_HINT = ("guard it so it can run twice: CREATE TABLE IF NOT EXISTS, ADD COLUMN IF NOT "
         "EXISTS, CREATE INDEX IF NOT EXISTS, DROP ... IF EXISTS")


async def snapshot(raw: Any) -> frozenset[str]:
    """Describe the current schema's tables, columns, indexes and constraints as lines."""
    return frozenset(row[0] for row in await raw.fetch(_SNAPSHOT))


async def _apply(conn: Any, raw: Any, step: Step) -> None:
    async with raw.transaction() if step.migration.transactional else nullcontext():
        await run_step(conn, raw, step)


async def check_idempotency(engine: AsyncEngine, packages: Sequence[Package]) -> list[Problem]:
    """Apply every migration twice on `engine` (a scratch database) and report those that
    fail or change the schema on their second run.

    `packages` come in dependency order, the core first. A migration that fails on its
    first run is reported too, and stops the check of its package.
    """
    problems: list[Problem] = []
    async with engine.connect() as conn:
        raw = await driver(conn)
        for package in packages:
            for migration in package.migrations:
                step = Step(package, migration)
                try:
                    await _apply(conn, raw, step)
                except MigrationFailedError as exc:
                    problems.append(Problem(package.name, "Y401", f"migration {migration.id} "
                                            f"fails on a fresh database: {exc.reason}",
                                            "fix the migration", migration=migration.id))
                    break
                before = await snapshot(raw)
                try:
                    await _apply(conn, raw, step)
                except MigrationFailedError as exc:
                    problems.append(Problem(package.name, "Y402", f"migration {migration.id} "
                                            f"fails when run twice: {exc.reason}", _HINT,
                                            migration=migration.id))
                    continue
                changed = sorted(before ^ await snapshot(raw))
                if changed:
                    problems.append(Problem(package.name, "Y403", f"migration {migration.id} "
                                            "changes the schema when run twice: "
                                            + "; ".join(changed[:3]), _HINT,
                                            migration=migration.id))
    return problems
