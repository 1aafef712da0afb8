"""The schema comparison over random tables: no false drift, and its SQL converges.

A table declared at random (types, defaults, nullability, comments, computed columns,
checks, unique keys, indexes plain, unique, partial and by method) is built by the DDL
a derived migration runs; compared with its own declaration it shows nothing. Declared
again at random, the differences' SQL, run twice, makes it agree with the new one.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Package, kit
from runtime.core import ddl, sql
from runtime.core.events import suggested_rename
from runtime.db import diff
from runtime.db.engine import driver
from runtime.dev import generator

TABLE, OTHER = "ydtb_things", "ydtb_others"

# name -> (type, the defaults it may have)
_TYPES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "text": (Text, ("x", "'quoted'", "it's", "")),
    "varchar": (String(30), ("abc",)),
    "int": (Integer, ("0", "7")),
    "bigint": (BigInteger, ("0",)),
    "numeric": (Numeric(10, 2), ("1.50",)),
    "bool": (Boolean, (false(), text("true"))),
    "timestamptz": (DateTime(timezone=True), (func.now(),)),
    "date": (Date, (text("CURRENT_DATE"),)),
    "jsonb": (JSONB, (text("'{}'::jsonb"),)),
    "text[]": (ARRAY(Text), (text("'{}'::text[]"),)),
    "uuid": (UUID, (func.gen_random_uuid(),)),
    "enum": (Enum("draft", "done", name="ydtb_things_state"), ("draft",)),
    "enum+": (Enum("draft", "review", "done", name="ydtb_things_state"), ("review",)),
}
_NAMES = ("a", "b", "c", "d")

_column = st.tuples(st.sampled_from(sorted(_TYPES)), st.booleans(), st.integers(0, 4),
                    st.sampled_from((None, "said so")),
                    st.sampled_from((None, "index", "unique")))
_declaration = st.fixed_dictionaries({
    "columns": st.dictionaries(st.sampled_from(_NAMES), _column, max_size=4),
    "computed": st.sampled_from((None, "id * 2", "id * 3")),
    "identity": st.booleans(),
    "parent": st.sampled_from((None, "CASCADE", "SET NULL", "RESTRICT")),
    "other": st.sampled_from((None, "CASCADE", "SET NULL", "RESTRICT", "NO ACTION")),
    "check": st.sampled_from((None, "id > 0", "id < 1000000")),
    "unique": st.sampled_from((None, ("a",), ("a", "b"))),
    "indexes": st.dictionaries(
        st.sampled_from(("ix_p", "ix_q")),
        st.tuples(st.lists(st.sampled_from(("workspace_id", *_NAMES)), min_size=1,
                           max_size=2, unique=True),
                  st.sampled_from(("plain", "unique", "partial", "hash", "include"))),
        max_size=2),
    "comment": st.sampled_from((None, "the things")),
})


def _enum(declared: dict[str, Any]) -> str | None:
    """The enum a declaration's columns use: one type, so the labels of all of them."""
    kinds = {kind for kind, *_ in declared["columns"].values()} & {"enum", "enum+"}
    return max(kinds) if kinds else None


def _table(declared: dict[str, Any]) -> Table:
    columns = []
    enum = _enum(declared)
    for name, (kind, nullable, default, comment, flag) in declared["columns"].items():
        kind = enum if kind.startswith("enum") else kind
        type_, defaults = _TYPES[kind]
        server_default = defaults[default] if default < len(defaults) else None
        # `index=True` and `unique=True`: alone, on types a btree indexes.
        flag = flag if kind not in ("jsonb", "text[]") else None
        columns.append(Column(name, type_, nullable=nullable, server_default=server_default,
                              comment=comment, index=flag == "index" or None,
                              unique=flag == "unique" or None))
    if declared["computed"]:
        columns.append(Column("twice", BigInteger, Computed(declared["computed"])))
    if declared["identity"]:
        columns.append(Column("serial_no", BigInteger, Identity()))
    if declared["parent"] or declared["other"]:
        columns.append(kit.workspace_key())  # what the keys onto it stand on
    if declared["parent"]:
        columns += [Column("parent_id", Integer),
                    kit.workspace_reference("parent_id", TABLE, ondelete=declared["parent"])]
    items: list[Any] = list(columns)
    if declared["check"]:
        items.append(CheckConstraint(declared["check"], name="ck_things_id"))
    unique = declared["unique"]
    if unique and all(name in declared["columns"] for name in unique):
        items.append(UniqueConstraint(*unique, name="uq_things_" + "_".join(unique)))
    table = kit.workspace_table(TABLE, kit.metadata(), Column("id", Integer, primary_key=True),
                                *items, comment=declared["comment"])
    for name, (on, kind) in declared["indexes"].items():
        if not all(column in table.c for column in on):
            continue
        if kind == "hash" and (len(on) > 1 or table.c[on[0]].type.__class__ in (JSONB, ARRAY)):
            continue
        options: dict[str, Any] = {"unique": kind == "unique"}
        if kind == "partial":
            options["postgresql_where"] = text("id > 10")
        if kind == "hash":
            options["postgresql_using"] = "hash"
        if kind == "include":
            options["postgresql_include"] = ["id"]
        Index(name, *on, _table=table, **options)
    if declared["other"]:  # a second table, keyed onto this one
        kit.workspace_table(OTHER, table.metadata, Column("id", Integer, primary_key=True),
                            Column("thing_id", Integer),
                            kit.workspace_reference("thing_id", TABLE,
                                                    ondelete=declared["other"]))
    return table


def _things(package: Package) -> Table:
    return next(table for table in package.tables if table.name == TABLE)


def _package(table: Table) -> tuple[Package, list[Package]]:
    registry = DatabaseRegistry(send_signals=False)
    package = registry.register_database(package_name="things", schema=table.metadata,
                                         version="1.0.0")
    return package, registry.ordered()


async def _castable(raw: Any, old: Table, new: Table) -> bool:
    """Whether PostgreSQL casts each column whose type changes to its new type: by a
    cast of its catalog, or through text (to and from the string types, and to an enum,
    as the comparison's SQL casts to one)."""
    for column in new.columns:
        before = old.c.get(column.name)
        if before is None or isinstance(column.type, Enum) \
                or {"text", "varchar"} & {_TYPE_OF[type(t)] for t in (before.type, column.type)
                                          if type(t) in _TYPE_OF}:
            continue
        source, target = (t.type.compile(dialect=postgresql.dialect()) for t in (before, column))
        if source != target and not await raw.fetchval(
                "SELECT count(*) FROM pg_cast WHERE castsource = $1::regtype "
                "AND casttarget = $2::regtype", source, target):
            return False
    return True


_TYPE_OF = {Text: "text", String: "varchar"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=_declaration, after=_declaration)
async def test_a_table_agrees_with_itself_and_its_differences_sql_converges(
    core: AsyncEngine, before: dict[str, Any], after: dict[str, Any]
) -> None:
    (old, old_all), (new, new_all) = _package(_table(before)), _package(_table(after))
    gone = old.table_names  # a table no longer declared is compared, as the daemon does
    async with core.connect() as conn:
        transaction = await conn.begin()
        try:
            await conn.execute(text("SELECT 1"))  # BEGIN, which the driver's own calls lack
            raw = await driver(conn)
            for statement in ddl.create_statements(old.tables):
                await raw.execute(statement)
            assert [d.words for d in await diff.compare(conn, old, old_all)] == []

            if not await _castable(raw, _things(old), _things(new)) \
                    or (_enum(before) or _enum(after)) != (_enum(after) or _enum(before)):
                # PostgreSQL cannot: no cast; a label removed (a REVIEW placeholder); a
                # label added is not used in the transaction that added it.
                return
            found = await diff.compare(conn, new, new_all, tables=gone)
            for _ in range(2):  # idempotent: the second time changes nothing
                for statement in (s for d in found for s in d.statements):
                    await raw.execute(statement)
            assert [d.words for d in await diff.compare(conn, new, new_all, tables=gone)] == []
        finally:
            await transaction.rollback()


def _plain(**columns: Any) -> dict[str, Any]:
    """A declaration of `columns` alone."""
    return {"columns": columns, "computed": None, "identity": False, "parent": None,
            "other": None, "check": None, "unique": None, "indexes": {}, "comment": None}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=_declaration, after=_declaration)
# A label added and used as the default, as a new column's default: in a file before.
@example(before=_plain(a=("enum", True, 4, None, None)),
         after=_plain(a=("enum+", True, 0, None, None)))
@example(before=_plain(a=("enum", True, 4, None, None)),
         after=_plain(a=("enum+", True, 4, None, None), b=("enum+", False, 0, None, None)))
async def test_the_migration_makemigration_writes_builds_the_declared_table(
    core: AsyncEngine, before: dict[str, Any], after: dict[str, Any]
) -> None:
    # Its files as the migrator runs them: one in a transaction, a `no-transaction` one
    # (its `_online` file) a statement at a time outside any; each twice.
    (old, _), (new, new_all) = _package(_table(before)), _package(_table(after))
    gone = old.table_names
    async with core.connect() as conn:
        raw = await driver(conn)
        await raw.execute(f"DROP TABLE IF EXISTS {OTHER}, {TABLE}; "
                          "DROP TYPE IF EXISTS ydtb_things_state")
        for statement in ddl.create_statements(old.tables):
            await raw.execute(statement)
        castable = await _castable(raw, _things(old), _things(new))
        found = await diff.compare(conn, new, new_all, tables=gone)
        await conn.commit()
        files = [text for _, text in generator.render_migration(new, found)] if found else []
        if not castable or any(not d.statements for d in found) or suggested_rename(found):
            # PostgreSQL cannot (see above), or the author reviews it: a placeholder to
            # write (a label removed), a column dropped and one added written as a rename.
            # A label added goes in a file before the one that may use it.
            return
        for _ in range(2):
            for file in files:
                if "-- runtime: no-transaction" in file.splitlines():
                    for statement in sql.parse(file):
                        await raw.execute(statement.text)
                    continue
                async with raw.transaction():
                    await raw.execute(file)
        assert [d.words for d in await diff.compare(conn, new, new_all, tables=gone)] == []
        await conn.rollback()
