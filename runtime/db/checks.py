"""Checks that need a database: is every migration idempotent, do the migrations build
the declared schema, and do they keep to workspace isolation (`runtime.core.isolation`)?

Run on a scratch database: each migration is applied, the schema snapshotted, the
migration applied again, and the schema compared. A migration whose second run fails
or changes the schema would break a re-run after a partial failure, and the dev
daemon's re-run of an edited migration. Then each package's declared schema is
compared with what its migrations built (`runtime.db.diff`): where they disagree, a
fresh database and the dev database (synced from the schema) end up different.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core import isolation
from runtime.core.isolation import Built
from runtime.core.model import Package
from runtime.core.plan import Step
from runtime.core.schema import CORE_PACKAGE
from runtime.db import diff
from runtime.db.engine import driver
from runtime.db.scratch import apply_step, scratch_database
from runtime.errors import MigrationFailedError, Problem

__all__ = ["check_idempotency", "check_migrations", "check_schemas", "snapshot"]

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


async def snapshot(raw: asyncpg.Connection) -> frozenset[str]:
    """Describe the current schema's tables, columns, indexes and constraints as lines."""
    return frozenset(row[0] for row in await raw.fetch(_SNAPSHOT))


async def check_idempotency(engine: AsyncEngine, packages: Sequence[Package]) -> list[Problem]:
    """Apply every migration twice on `engine` (a scratch database) and report those that
    fail or change the schema on their second run.

    `packages` come in dependency order, the core first. A migration that fails on its
    first run is reported too, and stops the check of its package.
    """
    problems: list[Problem] = []
    built: list[Built] = []
    async with engine.connect() as conn:
        raw = await driver(conn)
        for package in packages:
            for migration in package.migrations:
                step = Step(package, migration)
                try:
                    built.extend(await apply_step(conn, raw, step, watch=True))
                except MigrationFailedError as exc:
                    problems.append(Problem(package.name, "Y401", f"migration {migration.id} "
                                            f"fails on a fresh database: {exc.reason}",
                                            "fix the migration", migration=migration.id))
                    break
                before = await snapshot(raw)
                try:
                    await apply_step(conn, raw, step)
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
    return problems + _isolation(built, packages)


def _isolation(built: list[Built], packages: Sequence[Package]) -> list[Problem]:
    """What the migrations built against workspace isolation (Y501-Y504)."""
    declared = {p.name: (*p.table_names, *p.type_names) for p in packages}
    owners = {table: p.name for p in packages for table in p.table_names}
    return isolation.judge(built, declared, owners, core=CORE_PACKAGE)


async def check_schemas(
    engine: AsyncEngine, packages: Sequence[Package], *, skip: Collection[str] = ()
) -> list[Problem]:
    """Report, as Y404, where the migrations already applied on `engine` (a scratch
    database) do not build each package's declared schema.

    Args:
        packages: in dependency order, the core first; the core is not compared.
        skip: packages not to compare, such as those whose migrations failed.
    """
    targets = [p for p in packages if p.name != CORE_PACKAGE and p.name not in skip]
    async with engine.connect() as conn:
        found = await diff.compare_each(conn, targets, packages)
    return [Problem(name, "Y404",
                    f"its migrations do not build its declared schema: {difference.words}",
                    "change the schema to match, or write the difference as a migration",
                    table=difference.table, command=("makemigration", name))
            for name, differences in found.items() for difference in differences]


async def check_migrations(server_url: str, packages: Sequence[Package]) -> list[Problem]:
    """Run every check that needs a database on a scratch database of `server_url`.

    Each migration runs twice (Y401-Y403), then each package whose migrations ran is
    compared with its declared schema (Y404). `packages` come in dependency order, the
    core first. What `check --db` and the pytest plugin's `assert_package_ok` report.
    """
    async with scratch_database(server_url) as empty:
        problems = await check_idempotency(empty, packages)
        failed = {p.package for p in problems if p.code == "Y401"}
        return problems + await check_schemas(empty, packages, skip=failed)
