"""`fingerprint.describe` gives the very lines its reference gives, for any table.

Ledgers and load caches keep fingerprints: the shortcuts that made describing cheaper
(#17) must not change one character. `fingerprint_reference` is `describe` as it was,
the compiler's own answer for every part; each table here is described by both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fingerprint_reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import CompileError
from test_construct_matrix import CASES, SCHEMA, Case
from test_fingerprint import EDITS, kit_notes, notes

from runtime import kit
from runtime.core import fingerprint


class Lowered(TypeDecorator[str]):
    """A decorated type: compiled through its implementation."""

    impl = String(40)
    cache_ok = True


def same_lines(table: Table) -> list[str]:
    """Describe `table` both ways; assert they agree, or fail the same way."""
    try:
        lines = fingerprint.describe([table])
    except CompileError as exc:
        with pytest.raises(CompileError) as reference:
            fingerprint_reference.describe([table])
        assert str(exc) == str(reference.value)
        return []
    assert lines == fingerprint_reference.describe([table])
    return lines


@pytest.mark.parametrize("made", [pytest.param(notes, id="notes"),
                                  pytest.param(kit_notes, id="kit"), *EDITS])
def test_each_edited_table_is_described_as_before(made: Callable[[], Table]) -> None:
    assert same_lines(made())


def construct_tables(case: Case) -> list[Table]:
    """The construct matrix's before and after schemas, as `schema.py` declares them."""
    tables = []
    for extra in (case.before, case.after):
        lines = ",\n    ".join([*case.base, *extra, *([case.kwargs] if case.kwargs else [])])
        namespace: dict[str, Any] = {}
        exec(SCHEMA.format(lines=lines), namespace)
        tables.extend(namespace["metadata"].tables.values())
    return tables


@pytest.mark.parametrize("case", CASES)
def test_each_construct_is_described_as_before(case: Case) -> None:
    for table in construct_tables(case):
        same_lines(table)


def quoted_names() -> Table:
    # Names that need quoting: upper case, reserved words, spaces, a leading digit.
    metadata = MetaData(naming_convention=kit.NAMING_CONVENTION)
    return Table("ydtb_Quoted Notes", metadata,
                 Column("user", Integer, primary_key=True),
                 Column("Select", String(10), index=True, unique=True),
                 Column("1st", Text, CheckConstraint('"1st" <> \'\'', name="Not Empty")),
                 UniqueConstraint("user", "Select", name="order"),
                 Index("Index Of", "1st", postgresql_where=text("\"user\" > 0")))


def long_names() -> Table:
    # Names past PostgreSQL's 63 characters: truncated with a hash by the convention.
    metadata = kit.metadata()
    long = "c" * 70
    return kit.workspace_table("ydtb_" + "t" * 55, metadata,
                               Column("id", Integer, primary_key=True),
                               Column(long, Integer, index=True, unique=True),
                               ForeignKeyConstraint([long], [f"ydtb_other.{long}"]),
                               kit.workspace_key())


def dialect_options() -> Table:
    # Options on the table, its keys and indexes: rendered by the compiler.
    metadata = kit.metadata()
    return Table("ydtb_partitioned", metadata,
                 Column("id", Integer), Column("day", Date), Column("note", Text),
                 PrimaryKeyConstraint("id", "day", postgresql_include=["note"]),
                 UniqueConstraint("note", postgresql_nulls_not_distinct=True),
                 UniqueConstraint("day", "note", deferrable=True, initially="DEFERRED"),
                 Index(None, "note", postgresql_using="gin",
                       postgresql_ops={"note": "gin_trgm_ops"}),
                 postgresql_partition_by="RANGE (day)", postgresql_with={"fillfactor": 70},
                 prefixes=["UNLOGGED"], comment="by day")


def columns_of_every_kind() -> Table:
    metadata = kit.metadata()
    return kit.workspace_table(
        "ydtb_kinds", metadata,
        Column("id", BigInteger, Sequence("ydtb_kinds_seq"), primary_key=True),
        Column("n", Integer, Identity(start=3, increment=2, cycle=True)),
        Column("total", Numeric(10, 3), Computed("n * 2", persisted=True)),
        Column("tags", ARRAY(String(20), dimensions=2)),
        Column("mood", Enum("calm", "busy", name="ydtb_mood", schema="public")),
        Column("flag", Boolean(create_constraint=True, name="flag"), server_default=false()),
        Column("lowered", Lowered, server_default="x", comment="it's lower"),
        Column("at", DateTime, default=func.now(), onupdate=func.now()),
        Column("data", JSONB(none_as_null=True), server_default=text("'{}'")),
        Column("ratio", Float(precision=24), nullable=False),
        Column("token", Uuid(as_uuid=False)), Column("body", String(30, collation="C")),
        Column("parent_id", BigInteger, ForeignKey("ydtb_kinds.id", onupdate="CASCADE",
                                                   deferrable=True, match="FULL")),
        Column("untyped", ForeignKey("ydtb_workspaces.id")),
        CheckConstraint("n > 0", name="n_positive"), UniqueConstraint(name="empty"),
        PrimaryKeyConstraint(name="empty_key"), kit.workspace_key())


@pytest.mark.parametrize("made", [quoted_names, long_names, dialect_options,
                                  columns_of_every_kind])
def test_tables_of_rare_parts_are_described_as_before(made: Callable[[], Table]) -> None:
    assert same_lines(made())


NAMES = st.sampled_from(["id", "title", "user", "Mixed", "with space", "order", "x1",
                         "2nd", "a" * 64, "ydtb_notes_id"])
TYPES = st.sampled_from([Integer(), BigInteger(), Text(), String(20), String(80),
                         Numeric(12, 2), Numeric(), Boolean(), DateTime(timezone=True),
                         DateTime(), Date(), Float(), Uuid(), JSONB(), ARRAY(Integer),
                         Enum("a", "b", name="ydtb_kind"), Enum("a", native_enum=False),
                         Lowered()])
DEFAULTS = st.sampled_from([None, "x", text("0"), func.now(), false(), text("'{}'::jsonb")])


@st.composite
def tables(draw: st.DrawFn) -> Table:
    """A table of random columns, keys, checks and indexes, named by the kit's convention."""
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    metadata = draw(st.sampled_from([kit.metadata, MetaData]))()
    items: list[Any] = [
        Column(name, draw(TYPES), nullable=draw(st.booleans()),
               server_default=draw(DEFAULTS), unique=draw(st.booleans()),
               index=draw(st.booleans()), comment=draw(st.sampled_from([None, "a 'note'"])),
               primary_key=index == 0)
        for index, name in enumerate(names)]
    chosen = st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)
    for _ in range(draw(st.integers(0, 2))):
        items.append(UniqueConstraint(*draw(chosen), name=draw(st.sampled_from([None, "uq"])),
                                      deferrable=draw(st.sampled_from([None, True]))))
    for _ in range(draw(st.integers(0, 2))):
        columns = draw(chosen)
        items.append(ForeignKeyConstraint(
            columns, [f"ydtb_target.{c}" for c in columns],
            ondelete=draw(st.sampled_from([None, "CASCADE", "SET NULL"])),
            onupdate=draw(st.sampled_from([None, "RESTRICT"]))))
    if draw(st.booleans()):
        items.append(CheckConstraint(f'"{names[0]}" IS NOT NULL', name="present"))
    if draw(st.booleans()):
        items.append(Index(draw(st.sampled_from(["ix_some", "Ix Quoted"])), *draw(chosen),
                           unique=draw(st.booleans())))
    name = draw(st.sampled_from(["ydtb_notes", "ydtb_Notes", "ydtb_" + "n" * 60]))
    return Table(name, metadata, *items, comment=draw(st.sampled_from([None, "notes"])))


@settings(max_examples=300, deadline=None)
@given(tables())
def test_any_table_is_described_as_before(table: Table) -> None:
    same_lines(table)
