"""Compare what alembic's comparison leaves out, as PostgreSQL's catalog renders it.

Alembic compares no CHECK constraint, no primary key, no enum label, no generated
column's expression, and of an index only its name, columns and uniqueness: not its
predicate (`postgresql_where`), its INCLUDE columns or its method (`postgresql_using`).
`runtime.db.diff` adds what this module finds to alembic's differences.

Each is compared in PostgreSQL's own rendering (`pg_get_constraintdef`, `pg_get_expr`,
`pg_get_indexdef`): the database's read from its catalog, the declared one by building
the declared table as a temporary table in a savepoint rolled back at once, and reading
the same catalog. So `votes>=0` and `(votes >= 0)` agree, as do `lower(title)` and
`lower((title)::text)`: PostgreSQL wrote both. Tables whose declaration has nothing to
render (no CHECK, no computed column, only plain indexes) are not built: their primary
key and plain indexes are rendered here, as PostgreSQL would.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import (
    CheckConstraint,
    Column,
    Enum,
    ForeignKeyConstraint,
    Index,
    MetaData,
    Table,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex, CreateTable

from runtime.core import ddl
from runtime.core.events import Difference

__all__ = ["Generated", "Shape", "compare", "compare_enums", "declared_enums", "declared_shapes",
           "enum_labels", "shapes_of"]

logger = logging.getLogger(__name__)

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Shape:
    """What one table has that alembic does not compare.

    Attributes:
        primary_key: its primary key's columns, in order; () without one.
        primary_key_name: the primary key constraint's name; None without one.
        checks: each CHECK constraint's name and definition (`CHECK ((votes >= 0))`).
        indexes: each index's name and `(unique, definition)`, the definition from
            `USING` on (`USING btree (title) WHERE (title IS NOT NULL)`); indexes of
            constraints left out (their constraint stands for them).
        generated: each generated column's name and `Generated`.
    """

    primary_key: tuple[str, ...] = ()
    primary_key_name: str | None = None
    checks: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, tuple[bool, str]] = field(default_factory=dict)
    generated: dict[str, Generated] = field(default_factory=dict)


@dataclass(frozen=True)
class Generated:
    """A generated column: its expression, `STORED` or `VIRTUAL`, and its type."""

    expression: str
    kind: str
    type: str

    def __str__(self) -> str:
        return f"({self.expression}) {self.kind}"


# One round trip: (what, table, name, definition, detail, columns), where `what` is
# `p` (primary key), `c` (CHECK), `i` (index: detail says whether unique) or `g` (a
# generated column: detail says STORED or VIRTUAL, columns holds its type). An index's
# definition is from " USING " on: the part before names the table, which differs
# between the database's table and the temporary one built from the declaration.
_SHAPES = """
SELECT k.contype::text, c.relname::text, k.conname::text, pg_get_constraintdef(k.oid, true),
       NULL, ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n
                   ORDER BY u.i)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE c.relnamespace = {namespace} AND c.relname = ANY(:tables) AND k.contype IN ('p', 'c')
UNION ALL
SELECT 'i', c.relname::text, i.relname::text,
       substring(pg_get_indexdef(x.indexrelid) from ' (USING .*)$'), x.indisunique::text, NULL
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
WHERE c.relnamespace = {namespace} AND c.relname = ANY(:tables)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid
                  AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT 'g', c.relname::text, a.attname::text, pg_get_expr(d.adbin, d.adrelid, true),
       CASE a.attgenerated WHEN 's' THEN 'STORED' ELSE 'VIRTUAL' END,
       ARRAY[format_type(a.atttypid, a.atttypmod)]
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = {namespace} AND c.relname = ANY(:tables) AND a.attgenerated <> ''
  AND NOT a.attisdropped
"""

_ENUMS = text("""
SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = current_schema()::regnamespace AND t.typname = ANY(:names)
GROUP BY t.typname
""")


def shapes_of(
    sync_conn: Connection, tables: Iterable[str], *, temporary: bool = False
) -> dict[str, Shape]:
    """Read the shape of `tables` from the catalog: those of the current schema, or the
    session's temporary ones."""
    namespace = "pg_my_temp_schema()" if temporary else "current_schema()::regnamespace"
    params = {"tables": sorted(tables)}
    shapes: dict[str, Shape] = {name: Shape() for name in params["tables"]}
    for what, table, name, definition, detail, columns in sync_conn.execute(
            text(_SHAPES.format(namespace=namespace)), params):
        shape = shapes[table]
        if what == "p":
            shapes[table] = Shape(tuple(columns), name, shape.checks, shape.indexes,
                                  shape.generated)
        elif what == "c":
            shape.checks[name] = definition
        elif what == "i":
            shape.indexes[name] = (detail == "true", definition)
        else:
            shape.generated[name] = Generated(definition, detail, columns[0])
    return shapes


def enum_labels(sync_conn: Connection, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The labels of the enum types `names` in the current schema, in order; types that
    do not exist are left out."""
    rows = sync_conn.execute(_ENUMS, {"names": sorted(names)})
    return {name: tuple(labels) for name, labels in rows}


def declared_shapes(sync_conn: Connection, tables: Iterable[Table]) -> dict[str, Shape]:
    """Render the shape of the declared `tables` as PostgreSQL would build them.

    Tables with something only PostgreSQL can render are built as temporary tables in a
    savepoint, read, and rolled back, once per `Table` object; the others are rendered
    here.
    """
    tables = list(tables)
    built = [t for t in tables if _needs_building(t)]
    shapes = {t.name: _plain_shape(t) for t in tables if t not in built}
    missing = [t for t in built if t not in _RENDERED]
    if missing:
        rendered = _build(sync_conn, missing)
        for table in missing:
            _RENDERED[table] = rendered[table.name]
    return shapes | {t.name: _RENDERED[t] for t in built}


# A declared table's rendering does not change while the `Table` does not (a package's
# tables are made once, when its schema.py is imported): the dev daemon compares the
# same tables after every edit of another package, and builds none of them again.
_RENDERED: weakref.WeakKeyDictionary[Table, Shape] = weakref.WeakKeyDictionary()


def _needs_building(table: Table) -> bool:
    return (any(isinstance(c, CheckConstraint) for c in table.constraints)
            or any(c.computed is not None for c in table.columns)
            or any(not _plain(i) for i in table.indexes))


def _plain(index: Index) -> bool:
    """An index of plain columns, with no option PostgreSQL would render."""
    options = index.dialect_options["postgresql"]
    return (all(isinstance(e, Column) for e in index.expressions)
            and all(_unset(options[k]) for k in _OPTIONS))


def _unset(value: object) -> bool:
    # Not `not value`: a WHERE clause has no truth value.
    return value is None or value is False or (isinstance(value, dict | list | tuple)
                                               and not value)


_OPTIONS = ("using", "where", "include", "ops", "with", "tablespace", "nulls_not_distinct")


def _quote(name: str) -> str:
    return str(_DIALECT.identifier_preparer.quote(name))


def _plain_shape(table: Table) -> Shape:
    key = table.primary_key
    indexes = {str(i.name): (bool(i.unique), "USING btree (" + ", ".join(
        _quote(c.name) for c in i.columns) + ")") for i in table.indexes}
    return Shape(tuple(c.name for c in key.columns), str(key.name) if key.name else None,
                 {}, indexes, {})


def _temporary(table: Table) -> Table:
    """A copy of `table` to build as a temporary table: without foreign keys (a
    temporary table cannot reference a permanent one) and without enum types to create."""
    copy = table.to_metadata(MetaData(naming_convention=table.metadata.naming_convention))
    for constraint in [c for c in copy.constraints if isinstance(c, ForeignKeyConstraint)]:
        copy.constraints.discard(constraint)
    for column in copy.columns:
        column.foreign_keys.clear()
    copy._prefixes = ["TEMPORARY"]
    return copy


def _ddl(table: Table) -> tuple[str, ...]:
    copy = _temporary(table)
    statements = [str(CreateTable(copy).compile(dialect=_DIALECT)).strip()]
    statements += [str(CreateIndex(i).compile(dialect=_DIALECT)).strip()
                   for i in sorted(copy.indexes, key=lambda i: str(i.name))]
    return tuple(statements)


def _build(sync_conn: Connection, tables: list[Table]) -> dict[str, Shape]:
    # A savepoint of our own, by name: the connection is in a transaction (the queries
    # before began one), which may be the dev sync's, held through asyncpg directly.
    sync_conn.exec_driver_sql("SAVEPOINT runtime_declared")
    try:
        existing = enum_labels(sync_conn, _enum_types(tables))
        for name, kind in _enum_types(tables).items():
            if name not in existing:  # declared but not there yet: made for the build
                labels = ", ".join(_literal(label) for label in kind.enums)
                sync_conn.exec_driver_sql(f"CREATE TYPE pg_temp.{_quote(name)} AS ENUM "
                                          f"({labels})")
        for table in tables:
            for statement in _ddl(table):
                sync_conn.exec_driver_sql(statement)
        return shapes_of(sync_conn, [t.name for t in tables], temporary=True)
    except DBAPIError as exc:
        # The declaration does not build (a CHECK naming a column it lacks, say): the
        # dev sync and migrations will say so; compared here as far as Python can.
        logger.info("cannot build the declared tables to compare them: %s", exc)
        return {t.name: _plain_shape(t) for t in tables}
    finally:
        sync_conn.exec_driver_sql("ROLLBACK TO SAVEPOINT runtime_declared")
        sync_conn.exec_driver_sql("RELEASE SAVEPOINT runtime_declared")


def _enum_types(tables: Iterable[Table]) -> dict[str, Enum]:
    return {str(c.type.name): c.type for t in tables for c in t.columns
            if isinstance(c.type, Enum) and c.type.native_enum and c.type.name}


def declared_enums(tables: Iterable[Table]) -> Mapping[str, tuple[str, ...]]:
    """The labels of each native enum type the columns of `tables` use, by type name."""
    return {name: tuple(kind.enums) for name, kind in _enum_types(tables).items()}


# -- differences ------------------------------------------------------------------------


def compare(
    found: Mapping[str, Shape], declared: Mapping[str, Shape],
    known: set[tuple[str, str | None]],
) -> list[Difference]:
    """List how the tables' shapes in the database differ from the declared ones.

    Args:
        found: the database's, by table.
        declared: the declared ones, by table.
        known: `(table, name)` of what alembic found already (an index it drops and
            adds under the same name, say), left alone here.
    """
    differences: list[Difference] = []
    for table in sorted(set(found) & set(declared)):
        have, want = found[table], declared[table]
        if have.primary_key != want.primary_key:
            differences.append(_primary_key(table, have, want))
        differences += _checks(table, have.checks, want.checks)
        differences += [_index(table, name, have.indexes[name], want.indexes[name])
                        for name in sorted(set(have.indexes) & set(want.indexes))
                        if have.indexes[name] != want.indexes[name]
                        and (table, name) not in known]
        differences += [_generated(table, column, have.generated.get(column),
                                   want.generated.get(column))
                        for column in sorted(set(have.generated) | set(want.generated))
                        if have.generated.get(column) != want.generated.get(column)
                        and (table, column) not in known]
    return differences


def _columns(columns: tuple[str, ...]) -> str:
    return "(" + ", ".join(_quote(c) for c in columns) + ")"


def _primary_key(table: str, have: Shape, want: Shape) -> Difference:
    name = want.primary_key_name or have.primary_key_name or f"{table}_pkey"
    words = (f"table {table}: primary key is "
             f"{_columns(have.primary_key) if have.primary_key else 'missing'} in the database "
             f"but declared {_columns(want.primary_key) if want.primary_key else 'none'}")
    steps = []
    if have.primary_key_name:
        steps.append(f"ALTER TABLE {_quote(table)} DROP CONSTRAINT IF EXISTS "
                     f"{_quote(have.primary_key_name)};")
    if want.primary_key:
        steps.append(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} "
                     f"PRIMARY KEY {_columns(want.primary_key)};")
    # Guarded by what the key is, not by its name: run again, it changes nothing (a
    # drop and add would fail once foreign keys depend on the new key). No `--` comment:
    # the daemon quotes the statement on one line.
    wanted = _literal(f"PRIMARY KEY {_columns(want.primary_key)}")
    statement = (
        "DO $$\nBEGIN\n"
        f"    IF {'' if want.primary_key else 'NOT '}EXISTS (SELECT 1 FROM pg_constraint "
        f"WHERE conrelid = {_literal(_quote(table))}::regclass AND contype = 'p'"
        f"{f' AND pg_get_constraintdef(oid) = {wanted}' if want.primary_key else ''}) THEN\n"
        "        RETURN;  /* done already */\n"
        "    END IF;\n"
        + "".join(f"    {step}\n" for step in steps)
        + "END $$")
    # Dropping a key loses what it guaranteed, and a new one fails on duplicate rows.
    return Difference("modify_primary_key", table, name, words, True, (statement,))


def _checks(table: str, have: Mapping[str, str], want: Mapping[str, str]) -> list[Difference]:
    found = []
    quoted = _quote(table)
    for name in sorted(set(want) - set(have)):
        found.append(Difference(
            "add_constraint", table, name, f"check constraint {name} declared but missing",
            False, ddl.checked_later(
                f"ALTER TABLE {quoted} ADD CONSTRAINT {_quote(name)} {want[name]}", table,
                name)))
    for name in sorted(set(have) - set(want)):
        found.append(Difference(
            "remove_constraint", table, name,
            f"check constraint {name} in the database but not declared", False,
            (f"ALTER TABLE {quoted} DROP CONSTRAINT IF EXISTS {_quote(name)}",)))
    for name in sorted(set(have) & set(want)):
        if have[name] != want[name]:
            found.append(Difference(
                "modify_constraint", table, name,
                f"check constraint {name} is {have[name]} in the database but declared "
                f"{want[name]}", False,
                (f"ALTER TABLE {quoted} DROP CONSTRAINT IF EXISTS {_quote(name)}",
                 f"ALTER TABLE {quoted} ADD CONSTRAINT {_quote(name)} {want[name]} NOT VALID",
                 ddl.validated(table, name))))
    return found


def _index(table: str, name: str, have: tuple[bool, str], want: tuple[bool, str]) -> Difference:
    def words(index: tuple[bool, str]) -> str:
        return f"{'UNIQUE ' if index[0] else ''}{index[1].strip()}"

    create = (f"CREATE {'UNIQUE ' if want[0] else ''}INDEX IF NOT EXISTS {_quote(name)} ON "
              f"{_quote(table)} {want[1].strip()}")
    return Difference("modify_index", table, name,
                      f"index {name} is {words(have)} in the database but declared "
                      f"{words(want)}", False,
                      (f"DROP INDEX IF EXISTS {_quote(name)}", create))


def _generated(table: str, column: str, have: Generated | None,
               want: Generated | None) -> Difference:
    """A generated column's expression changed (set in place), its generation taken away
    (the values stay), or a column made generated or changed in kind or type (dropped and
    added again: PostgreSQL cannot make it so in place, and the values are lost)."""
    where = f"table {table}: column {column}"
    words = (f"{where} is {f'generated as {have}' if have else 'not generated'} in the "
             f"database but declared {f'generated as {want}' if want else 'not generated'}")
    alter = f"ALTER TABLE {_quote(table)}"
    if want is None:
        return Difference("modify_computed", table, column, words, False,
                          (f"{alter} ALTER COLUMN {_quote(column)} DROP EXPRESSION IF EXISTS",))
    again = (f"{alter} DROP COLUMN IF EXISTS {_quote(column)}",
             f"{alter} ADD COLUMN IF NOT EXISTS {_quote(column)} {want.type} GENERATED "
             f"ALWAYS AS ({want.expression}) {want.kind}")
    if have is not None and (have.kind, have.type) == (want.kind, want.type):
        if want.kind == "VIRTUAL":
            # Nothing stored to lose, and PostgreSQL 18 refuses SET EXPRESSION on a
            # virtual column of a table with a CHECK constraint.
            return Difference("modify_computed", table, column, words, False, again)
        return Difference("modify_computed", table, column, words, False,
                          (f"{alter} ALTER COLUMN {_quote(column)} SET EXPRESSION AS "
                           f"({want.expression})",))
    return Difference("modify_computed", table, column, words, True, again)


def compare_enums(
    found: Mapping[str, tuple[str, ...]], declared: Mapping[str, tuple[str, ...]],
    tables: Iterable[Table],
) -> list[Difference]:
    """List how the enum types' labels in the database differ from the declared ones.

    Labels declared and missing are added where they are declared (BEFORE the label
    that follows them); a label removed or moved cannot be done in place, and is shown
    destructive, with no SQL: it needs a migration written by hand.
    """
    users = {str(c.type.name): t.name for t in tables for c in t.columns
             if isinstance(c.type, Enum) and c.type.name}
    differences = []
    for name in sorted(set(found) & set(declared)):
        have, want = found[name], declared[name]
        if have == want:
            continue
        if [label for label in want if label in have] != list(have):
            differences.append(Difference(
                "modify_enum", users[name], name,
                f"enum type {name} is ({', '.join(have)}) in the database but declared "
                f"({', '.join(want)}): a removed or moved label needs a migration written "
                "by hand", True, ()))
            continue
        for position, label in enumerate(want):
            if label in have:
                continue
            after = want[position + 1:]
            where = next((f" BEFORE {_literal(a)}" for a in after if a in have), "")
            differences.append(Difference(
                "add_enum_value", users[name], label,
                f"enum type {name}: label {label} declared but missing", False,
                (f"ALTER TYPE {_quote(name)} ADD VALUE IF NOT EXISTS {_literal(label)}"
                 f"{where}",)))
    return differences


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
