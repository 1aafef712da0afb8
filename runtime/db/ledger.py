"""Read and write the ledger: `ydtb_schema_migrations` and `ydtb_packages`.

Talks to the asyncpg connection underneath SQLAlchemy's: the pipeline's statements are
few, fixed and hot (the no-op run is one ledger read), so they skip the ORM layers.

Rows of kind `dev` are schema changes the dev daemon applied from a declared schema;
they are read apart from migrations (`Ledger.dev`) and deleted once a migration takes
them over (`forget_dev_changes`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from runtime.core.model import Package
from runtime.core.plan import DEV_KIND, Ledger
from runtime.core.schema import LEDGER_TABLE, PACKAGES_TABLE

__all__ = [
    "LedgerRow",
    "forget_dev_changes",
    "read_ledger",
    "read_rows",
    "write_packages",
    "write_rows",
]

# 'm' a migration, 'd' a dev change, 'p' a package record.
_READ = f"""
SELECT CASE WHEN kind = '{DEV_KIND}' THEN 'd' ELSE 'm' END, package, migration, checksum
FROM {LEDGER_TABLE}
UNION ALL
SELECT 'p', package, version, schema_fingerprint FROM {PACKAGES_TABLE}
"""

_READ_SOME = f"""
SELECT CASE WHEN kind = '{DEV_KIND}' THEN 'd' ELSE 'm' END, package, migration, checksum
FROM {LEDGER_TABLE} WHERE package = ANY($1)
UNION ALL
SELECT 'p', package, version, schema_fingerprint FROM {PACKAGES_TABLE} WHERE package = ANY($1)
"""

_FORGET_DEV = f"""
DELETE FROM {LEDGER_TABLE} WHERE package = $1 AND kind = '{DEV_KIND}'
RETURNING migration
"""

_READ_ROWS = f"""
SELECT package, migration, checksum, package_version, kind, applied_at, duration_ms
FROM {LEDGER_TABLE} ORDER BY applied_at, package, migration
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


@dataclass(frozen=True)
class LedgerRow:
    """One applied migration as recorded, for `status` and people."""

    package: str
    migration: str
    checksum: str
    package_version: str
    kind: str
    applied_at: Any
    duration_ms: float


async def read_ledger(
    conn: asyncpg.Connection, packages: Collection[str] | None = None
) -> Ledger:
    """Read what was applied and recorded, in one round trip; empty before the first run.

    Args:
        packages: read only these packages' rows (a reload reads its closure, not all).
    """
    try:
        if packages is None:
            rows = await conn.fetch(_READ)
        else:
            rows = await conn.fetch(_READ_SOME, list(packages))
    except asyncpg.UndefinedTableError:
        return Ledger()
    applied = {(r[1], r[2]): r[3] for r in rows if r[0] == "m"}
    recorded = {r[1]: (r[2], r[3]) for r in rows if r[0] == "p"}
    dev: dict[str, list[str]] = {}
    for row in rows:
        if row[0] == "d":
            dev.setdefault(row[1], []).append(row[2])
    return Ledger(applied, recorded, {name: tuple(sorted(ids)) for name, ids in dev.items()})


async def read_rows(conn: asyncpg.Connection) -> list[LedgerRow]:
    """Read every ledger row, oldest first; empty before the first run."""
    try:
        rows = await conn.fetch(_READ_ROWS)
    except asyncpg.UndefinedTableError:
        return []
    return [LedgerRow(*row) for row in rows]


async def write_rows(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, str, str, float]]
) -> None:
    """Record applied migrations: `(package, migration, checksum, version, kind, ms)`."""
    if rows:
        await conn.executemany(_INSERT, rows)


async def write_packages(conn: asyncpg.Connection, packages: Iterable[Package]) -> None:
    """Record each package's version and schema fingerprint."""
    rows = [(p.name, p.version_text, p.fingerprint) for p in packages]
    if rows:
        await conn.executemany(_UPSERT_PACKAGE, rows)


async def forget_dev_changes(conn: asyncpg.Connection, package: str) -> list[str]:
    """Delete the dev changes recorded for `package`, once a migration took them over.

    Returns:
        The ids of the rows deleted, sorted.
    """
    return sorted(row[0] for row in await conn.fetch(_FORGET_DEV, package))
