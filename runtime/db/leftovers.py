"""What the database holds that no registered package owns, read for `status`.

The tables are those of the `public` schema: ordinary and partitioned tables, not a
partition (its parent is the table a package declares) nor a table an extension made
(PostGIS's `spatial_ref_sys`), which are someone else's to manage.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from runtime.core.leftovers import Leftovers, find_leftovers
from runtime.core.model import Package
from runtime.core.recorded import Ledger
from runtime.db import ledger

__all__ = ["present_tables", "read_leftovers"]

_PRESENT = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
"""


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
