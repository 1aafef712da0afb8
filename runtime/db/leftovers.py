"""What no registered package owns: read for `status`, taken away by `uninstall`.

The tables are those of the `public` schema: ordinary and partitioned tables, not a
partition (its parent is the table a package declares) nor a table an extension made
(PostGIS's `spatial_ref_sys`), which are someone else's to manage.

`uninstall` runs under the pipeline's lock, as every run does (`runtime.db.run.Run`):
it reads the ledger and the tables once the lock is held, plans
(`runtime.core.leftovers.plan_uninstall`), and carries the plan out in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import asyncpg

from runtime.core.leftovers import Leftovers, Uninstall, find_leftovers, plan_uninstall
from runtime.core.model import Package
from runtime.core.recorded import Ledger
from runtime.db import ledger, tools
from runtime.db.run import Run
from runtime.errors import UninstallRefusedError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["present_tables", "read_leftovers", "types_only_of", "uninstall"]

_PRESENT = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
"""

# The enum types (and their arrays' element types) columns of the tables $1 use, which
# no column of another table uses: made for those tables, they go with them.
_TYPES_ONLY_OF = """
SELECT DISTINCT t.typname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type used ON used.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN used.typelem <> 0 THEN used.typelem ELSE used.oid END
WHERE c.relname = ANY($1::text[]) AND t.typtype = 'e' AND t.typnamespace = n.oid
  AND NOT EXISTS (
    SELECT 1 FROM pg_attribute o
    JOIN pg_class oc ON oc.oid = o.attrelid
    JOIN pg_type ou ON ou.oid = o.atttypid
    WHERE o.attnum > 0 AND NOT o.attisdropped AND NOT (oc.relname = ANY($1::text[])
                                                       AND oc.relnamespace = n.oid)
      AND (ou.oid = t.oid OR ou.typelem = t.oid))
ORDER BY 1
"""


async def types_only_of(conn: asyncpg.Connection, tables: Sequence[str]) -> tuple[str, ...]:
    """The enum types of the database's `public` schema that columns of `tables` use and
    no other column does: what a purge of those tables drops with them."""
    return tuple(row[0] for row in await conn.fetch(_TYPES_ONLY_OF, list(tables)))


async def present_tables(conn: asyncpg.Connection) -> set[str]:
    """Return the names of the tables in the database's `public` schema."""
    return {row[0] for row in await conn.fetch(_PRESENT)}


async def read_leftovers(
    conn: asyncpg.Connection, packages: Sequence[Package], recorded: Ledger
) -> Leftovers:
    """Find the removed packages and the unowned tables of the database.

    Args:
        conn: a connection to it.
        packages: every registered package, the core included.
        recorded: its ledger, as read on `conn`.
    """
    return find_leftovers(packages, recorded, await ledger.read_tables(conn),
                          await present_tables(conn))


async def uninstall(
    engine: AsyncEngine,
    packages: Sequence[Package],
    name: str,
    *,
    purge: bool = False,
    apply: bool = True,
) -> Uninstall:
    """Uninstall the removed package `name` from the database, keeping its data or not.

    Args:
        packages: every registered package, the core included: `name` must not be one.
        purge: drop its tables and forget it, rather than keep its data.
        apply: False to plan only (`--plan`), changing nothing.

    Returns:
        What it did, or would do.

    Raises:
        PackageNotRecordedError: the database records no such package.
        UninstallRefusedError: it is registered, or the core, or the database holds
            objects depending on its tables (nothing was changed).
    """
    async with Run.open(engine) as run:
        tables = await ledger.read_tables(run.raw)
        found = find_leftovers(packages, run.ledger, tables, await present_tables(run.raw))
        try:
            tool_ids = await tools.package_tool_ids(run.raw, name)
        except asyncpg.UndefinedTableError:  # the core was never migrated: the plan says so
            tool_ids = ()
        plan = plan_uninstall(name, purge=purge, registered=packages, ledger=run.ledger,
                              leftovers=found, tables=tables, tools=tool_ids)
        if plan.drop:  # its enum types: left behind, a reinstall kept their old labels
            plan = replace(plan, types=await types_only_of(run.raw, plan.drop))
        if not apply or plan.done:
            return plan
        try:
            async with run.transaction():
                await run.uninstall(plan)
        except asyncpg.DependentObjectsStillExistError as exc:
            raise UninstallRefusedError(
                name, f"what the database holds depends on its tables: {_detail(exc)}",
                "uninstall the package owning it with --purge first, or drop it yourself; "
                "nothing was changed") from exc
    return plan


def _detail(exc: asyncpg.PostgresError) -> str:
    # PostgreSQL lists each dependent object on a line of its own.
    detail = getattr(exc, "detail", None) or str(exc)
    return "; ".join(line.strip() for line in str(detail).splitlines() if line.strip())
