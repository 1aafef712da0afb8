"""The ledger's SQL: `ydtb_schema_migrations`, `ydtb_packages` and `ydtb_package_tables`,
read and written here only.

One reader, `read_ledger`, for every question about what was applied: the pipeline's
plan, `status`, the dev daemon's closure and the load cache's no-op check. The writes
are called by one caller, `runtime.db.run.Run`, which every way of applying goes
through (as Django's recorder is the only writer of `django_migrations`).

The tables each package declared are recorded with it (`write_packages`) and read apart
(`read_tables`): only `status` and `uninstall` ask whose a table was, and a database
migrated before the core's second migration has no such table yet, which must not
fail the pipeline's one read.

Talks to the asyncpg connection underneath SQLAlchemy's: the pipeline's statements are
few, fixed and hot (the no-op run is one ledger read), so they skip the ORM layers. This
module imports neither SQLAlchemy nor a package: the no-op path reads the ledger before
either is loaded.

Rows of kind `dev` book schema changes the dev daemon applied from a declared schema,
one row per object (`runtime.core.booking`); they are read apart from migrations
(`Ledger.dev`) and each deleted once the migrations build its object (`forget_dev_changes`).

`uninstall` marks a package it keeps the data of (`mark_uninstalled`), or deletes every
row of a package it purges (`forget_package`).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from runtime.core.names import DEV_KIND, LEDGER_TABLE, OWNED_TABLES, PACKAGES_TABLE, UNINSTALLED
from runtime.core.recorded import Ledger

if TYPE_CHECKING:
    from runtime.core.model import Package

__all__ = [
    "Kind",
    "LedgerRow",
    "forget_dev_changes",
    "forget_package",
    "mark_uninstalled",
    "read_ledger",
    "read_tables",
    "write_packages",
    "write_rows",
]

# 'm' a migration, 'd' a dev change, 'p' a package record; $1 names the packages to
# read, or is NULL for all of them.
_READ = f"""
SELECT CASE WHEN kind = '{DEV_KIND}' THEN 'd' ELSE 'm' END, package, migration, checksum
FROM {LEDGER_TABLE} WHERE $1::text[] IS NULL OR package = ANY($1::text[])
UNION ALL
SELECT 'p', package, version, schema_fingerprint
FROM {PACKAGES_TABLE} WHERE $1::text[] IS NULL OR package = ANY($1::text[])
"""

_FORGET_DEV = f"""
DELETE FROM {LEDGER_TABLE} WHERE package = $1 AND kind = '{DEV_KIND}' AND migration = ANY($2)
RETURNING migration
"""

_INSERT = f"""
INSERT INTO {LEDGER_TABLE} (package, migration, checksum, package_version, kind, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (package, migration) DO UPDATE SET
    checksum = EXCLUDED.checksum, package_version = EXCLUDED.package_version,
    kind = EXCLUDED.kind, applied_at = now(), duration_ms = EXCLUDED.duration_ms
"""

_UPSERT_PACKAGE = f"""
INSERT INTO {PACKAGES_TABLE} (package, version, schema_fingerprint) VALUES ($1, $2, $3)
ON CONFLICT (package) DO UPDATE SET
    version = EXCLUDED.version, schema_fingerprint = EXCLUDED.schema_fingerprint,
    updated_at = now()
"""

_UPSERT_TABLES = f"""
INSERT INTO {OWNED_TABLES} (package, tables) VALUES ($1, $2)
ON CONFLICT (package) DO UPDATE SET tables = EXCLUDED.tables
"""

_READ_TABLES = f"SELECT package, tables FROM {OWNED_TABLES}"

# A package known by its migration rows alone (recorded by a runtime that did not record
# packages) gets a record, with the version of its last migration.
_MARK_UNINSTALLED = f"""
INSERT INTO {PACKAGES_TABLE} (package, version, schema_fingerprint)
SELECT $1::text, coalesce(
    (SELECT version FROM {PACKAGES_TABLE} WHERE package = $1::text),
    (SELECT package_version FROM {LEDGER_TABLE} WHERE package = $1::text
     ORDER BY applied_at DESC LIMIT 1)), '{UNINSTALLED}'
ON CONFLICT (package) DO UPDATE SET
    schema_fingerprint = EXCLUDED.schema_fingerprint, updated_at = now()
"""

_FORGET_PACKAGE = f"""
WITH migrations AS (DELETE FROM {LEDGER_TABLE} WHERE package = $1),
     tables AS (DELETE FROM {OWNED_TABLES} WHERE package = $1)
DELETE FROM {PACKAGES_TABLE} WHERE package = $1
"""


class Kind(enum.StrEnum):
    """What a ledger row records."""

    MIGRATION = "migration"  #: a migration, applied for the first time
    RERUN = "rerun"  #: an applied migration, edited, run again by the dev daemon
    DEV = DEV_KIND  #: schema changes the dev daemon applied from a declared schema


@dataclass(frozen=True)
class LedgerRow:
    """One row of `ydtb_schema_migrations`, as a run writes it."""

    package: str
    migration: str
    checksum: str
    package_version: str
    kind: Kind
    duration_ms: float

    def values(self) -> tuple[str, str, str, str, str, float]:
        """The row's values, in the order of the table's columns."""
        return (self.package, self.migration, self.checksum, self.package_version,
                self.kind.value, self.duration_ms)


async def read_ledger(
    conn: asyncpg.Connection, packages: Collection[str] | None = None
) -> Ledger:
    """Read what was applied and recorded, in one round trip; empty before the first run.

    Args:
        packages: read only these packages' rows (a reload reads its closure, not all).
    """
    try:
        rows = await conn.fetch(_READ, None if packages is None else list(packages))
    except asyncpg.UndefinedTableError:
        return Ledger()
    applied = {(r[1], r[2]): r[3] for r in rows if r[0] == "m"}
    recorded = {r[1]: (r[2], r[3]) for r in rows if r[0] == "p"}
    dev: dict[str, list[str]] = {}
    for row in rows:
        if row[0] == "d":
            dev.setdefault(row[1], []).append(row[2])
    return Ledger(applied, recorded, {name: tuple(sorted(ids)) for name, ids in dev.items()})


async def write_rows(conn: asyncpg.Connection, rows: Sequence[LedgerRow]) -> None:
    """Record applied migrations and dev changes (`Run` is the one caller)."""
    if rows:
        await conn.executemany(_INSERT, [row.values() for row in rows])


async def write_packages(conn: asyncpg.Connection, packages: Iterable[Package]) -> None:
    """Record each package's version, schema fingerprint and tables (`Run` is the one caller)."""
    packages = list(packages)
    if packages:
        await conn.executemany(_UPSERT_PACKAGE,
                               [(p.name, p.version_text, p.fingerprint) for p in packages])
        await conn.executemany(_UPSERT_TABLES,
                               [(p.name, sorted(p.table_names)) for p in packages])


async def read_tables(conn: asyncpg.Connection) -> dict[str, tuple[str, ...]]:
    """Read the tables each package declared when it was last recorded, sorted, by name.

    A package recorded before the core's `0002_package_tables` has none: its tables are
    not known (and none are before that migration ran).
    """
    # Asked first, not caught: a failing statement would abort the caller's transaction.
    if await conn.fetchval("SELECT to_regclass($1)", OWNED_TABLES) is None:
        return {}
    return {row[0]: tuple(sorted(row[1])) for row in await conn.fetch(_READ_TABLES)}


async def forget_dev_changes(
    conn: asyncpg.Connection, package: str, ids: Collection[str]
) -> list[str]:
    """Delete the dev rows `ids` of `package`, whose objects the migrations now build.

    Returns:
        The ids of the rows deleted, sorted.
    """
    return sorted(row[0] for row in await conn.fetch(_FORGET_DEV, package, sorted(ids)))


async def mark_uninstalled(conn: asyncpg.Connection, package: str) -> None:
    """Record `package` as uninstalled with its data kept (`Run` is the one caller).

    Its version stays, so a downgrade is still refused when it comes back; its migrations
    stay applied; a registration again differs from the mark, so it is recorded afresh.
    """
    await conn.execute(_MARK_UNINSTALLED, package)


async def forget_package(conn: asyncpg.Connection, package: str) -> None:
    """Delete every ledger row of `package`: migrations, dev changes, record and tables.

    `Run` is the one caller, for a purge: registered again, it installs afresh.
    """
    await conn.execute(_FORGET_PACKAGE, package)
