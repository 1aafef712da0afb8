"""A save's comparison narrowed to the parts it changed finds what comparing the table finds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Package, kit
from runtime.core import ddl
from runtime.core.narrowing import Narrowing, narrowing
from runtime.db import diff
from runtime.db.agreement import Agreement

TABLE = "ydtb_items"

# -- which parts: no database -------------------------------------------------------------

def items(*more: Any, comment: str | None = None, extra: tuple[Any, ...] = ()) -> Table:
    return kit.workspace_table(TABLE, kit.metadata(), Column("id", Integer, primary_key=True),
                               Column("title", Text), Column("size", Integer), *more, *extra,
                               comment=comment)


def test_a_column_added_is_compared_with_the_primary_key() -> None:
    assert narrowing(items(), items(Column("color", Text)), "k") == Narrowing(
        "k", frozenset({"color", "id"}), frozenset())


def test_an_index_is_compared_with_its_columns_as_declared_before_and_now() -> None:
    before = items(Index("ix_items_by", "title"))
    after = items(Index("ix_items_by", "size"))

    assert narrowing(before, after, "k") == Narrowing(
        "k", frozenset({"id", "title", "size"}), frozenset({"ix_items_by"}))


@pytest.mark.parametrize("after", [
    pytest.param(items(UniqueConstraint("title")), id="unique-constraint"),
    pytest.param(items(CheckConstraint("size > 0", name="positive")), id="check"),
    pytest.param(items(comment="the items"), id="table-comment"),
    pytest.param(items(Index("ix_items_lower", func.lower(text("title")))), id="expression"),
    pytest.param(items(Index("ix_items_some", "title", postgresql_where=text("size > 0"))),
                 id="partial-index"),
    pytest.param(items(Index("ix_items_cover", "title", postgresql_include=["size"])),
                 id="include"),
])
def test_anything_but_columns_and_plain_indexes_is_compared_whole(after: Table) -> None:
    assert narrowing(items(), after, "k") is None


def test_an_unchanged_table_has_no_narrowing() -> None:
    assert narrowing(items(), items(), "k") is None


# -- the same differences: a real database ------------------------------------------------

# Columns a save may add or change, and indexes it may declare, on the table of `_table`.
_COLUMNS = ("title", "size", "note", "rank")
# A text default with quotes: alembic compared those wrongly (test_diff.py).
_KINDS = {
    "text": lambda name, null, default: Column(name, Text, nullable=null,
                                               server_default=default or None),
    "int": lambda name, null, default: Column(name, Integer, nullable=null,
                                              server_default="0" if default else None),
    "bigint": lambda name, null, default: Column(name, BigInteger, nullable=null,
                                                 comment="big" if default else None),
}
_column = st.tuples(st.sampled_from(sorted(_KINDS)), st.booleans(),
                    st.sampled_from(("", "x", "'x'", "it's")))
_index = st.tuples(st.lists(st.sampled_from(("workspace_id", *_COLUMNS)), min_size=1,
                            max_size=2, unique=True),
                   st.booleans(), st.sampled_from((None, "btree", "hash")))
_declaration = st.tuples(
    st.dictionaries(st.sampled_from(_COLUMNS), _column, max_size=4),
    st.dictionaries(st.sampled_from(("ix_a", "ix_b", "ix_c")), _index, max_size=3))


def _table(declaration: tuple[dict[str, Any], dict[str, Any]]) -> Table:
    columns, indexes = declaration
    table = kit.workspace_table(
        TABLE, kit.metadata(), Column("id", Integer, primary_key=True),
        *(_KINDS[kind](name, null, default) for name, (kind, null, default) in columns.items()))
    for name, (on, unique, using) in indexes.items():
        if all(column in table.c for column in on):
            # A hash index has one column and is never unique.
            hashed = using == "hash" and len(on) == 1 and not unique
            Index(name, *on, unique=unique, _table=table,
                  **({"postgresql_using": using} if using and (hashed or using != "hash")
                     else {}))
    return table


def _package(table: Table) -> tuple[Package, list[Package]]:
    registry = DatabaseRegistry(send_signals=False)
    metadata = table.metadata
    package = registry.register_database(package_name="items", schema=metadata,
                                         version="1.0.0")
    return package, registry.ordered()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=_declaration, after=_declaration)
async def test_the_narrowed_comparison_finds_what_the_whole_one_finds(
    core: AsyncEngine, before: Any, after: Any
) -> None:
    old, new = _table(before), _table(after)
    (package, packages), (edited, edited_all) = _package(old), _package(new)
    narrowed = narrowing(old, new, package.table_keys[TABLE])
    async with core.connect() as conn:
        transaction = await conn.begin()
        try:
            # The database as the declaration before the save built it, found to agree.
            for statement in ddl.create_statements([old]):
                await conn.exec_driver_sql(statement)
            agreed = Agreement()
            assert await diff.compare(conn, package, packages, agreed=agreed) == []
            # Every save here changes columns and indexes alone: narrowed, if anything.
            assert (narrowed is None) == (package.table_keys == edited.table_keys)

            whole = await diff.compare(conn, edited, edited_all)
            found = await diff.compare(conn, edited, edited_all, agreed=agreed,
                                       narrow={TABLE: narrowed} if narrowed else None)
        finally:
            await transaction.rollback()
    assert sorted(found, key=repr) == sorted(whole, key=repr)
