"""Read what a database has of some tables, object by object, from the catalog.

The dev sync books what a dev change built with it, and the reconciliation compares the
dev database with a scratch database where only the migrations ran
(`runtime.core.booking`). Each object's definition is PostgreSQL's own rendering
(`format_type`, `pg_get_expr`, `pg_get_indexdef`, `pg_get_constraintdef`), so two
databases that built the same thing in different words agree.
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from runtime.core.booking import ObjectKey

__all__ = ["read_objects"]

# $1: the tables. Columns carry their type, nullability, default, identity, generation,
# comment and, for an enum, its values; a table its kind and comment.
_OBJECTS = """
WITH t AS (
    SELECT c.oid, c.relname, c.relkind FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
      AND c.relname = ANY($1::text[])
)
SELECT 'table', t.relname, NULL,
       t.relkind::text || coalesce(' comment ' || obj_description(t.oid, 'pg_class'), '')
FROM t
UNION ALL
SELECT 'column', t.relname, a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity::text <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated::text <> '' THEN ' generated' ELSE '' END
       || coalesce(' comment ' || col_description(t.oid, a.attnum), '')
       || coalesce(' values ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                  FROM pg_enum e WHERE e.enumtypid = a.atttypid), '')
FROM t JOIN pg_attribute a ON a.attrelid = t.oid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', t.relname, i.relname, pg_get_indexdef(i.oid)
FROM t JOIN pg_index x ON x.indrelid = t.oid JOIN pg_class i ON i.oid = x.indexrelid
UNION ALL
SELECT 'constraint', t.relname, k.conname, k.contype::text || ' ' || pg_get_constraintdef(k.oid)
FROM t JOIN pg_constraint k ON k.conrelid = t.oid
WHERE k.contype <> 'n'  -- PostgreSQL 18's NOT NULL constraints: the column says it
"""


async def read_objects(conn: asyncpg.Connection, tables: Collection[str]) -> dict[ObjectKey, str]:
    """Return the tables, columns, indexes and constraints of `tables`, by key.

    A table the database lacks has no entries; so has a dropped object.
    """
    if not tables:
        return {}
    rows = await conn.fetch(_OBJECTS, sorted(tables))
    return {ObjectKey(row[0], row[1], row[2]): row[3] for row in rows}
