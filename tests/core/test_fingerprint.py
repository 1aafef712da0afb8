"""The structural fingerprint: every edit that changes a table's DDL changes it.

The dev daemon finds schema edits by comparing fingerprints, so each row of
`test_each_edit_changes_the_fingerprint` is a kind of edit it must not miss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Computed,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal,
    literal_column,
    text,
)
from sqlalchemy.exc import CompileError

from runtime import DatabaseRegistry, kit
from runtime.core import ddl, fingerprint

CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


def columns(**changes: Column[Any] | None) -> list[Column[Any]]:
    """The base columns, each replaced by `changes[name]` (None drops it), then new ones."""
    base: dict[str, Column[Any] | None] = {
        "id": Column("id", Integer, primary_key=True),
        "workspace_id": Column("workspace_id", String(20), ForeignKey(
            "ydtb_workspaces.id", ondelete="CASCADE"), nullable=False),
        "title": Column("title", String(20), nullable=False, server_default="untitled",
                        comment="shown in lists"),
        "body": Column("body", Text),
        "author_id": Column("author_id", Integer, ForeignKey("ydtb_people.id",
                                                             ondelete="SET NULL")),
        "mood": Column("mood", Enum("calm", "busy", name="ydtb_mood")),
        "rank": Column("rank", Integer),
    }
    return [column for column in {**base, **changes}.values() if column is not None]


def items() -> list[Any]:
    return [
        UniqueConstraint("workspace_id", "title"),  # named by the convention
        CheckConstraint("rank > 0", name="rank_positive"),
        Index("ix_notes_rank", "rank", text("lower(title)"), postgresql_where=text("rank > 0")),
    ]


def notes(
    *,
    name: str = "ydtb_notes",
    cols: Callable[[], list[Column[Any]]] = columns,
    extra: Callable[[], list[Any]] = items,
    convention: dict[str, str] = CONVENTION,
    **table_kwargs: Any,
) -> Table:
    """The base table in a fresh MetaData, or a variant of it."""
    table_kwargs.setdefault("comment", "a workspace's notes")
    return Table(name, MetaData(naming_convention=convention), *cols(), *extra(),
                 **table_kwargs)


def fk(target: str = "ydtb_people.id", **options: Any) -> Callable[[], list[Column[Any]]]:
    options.setdefault("ondelete", "SET NULL")
    return lambda: columns(author_id=Column("author_id", Integer, ForeignKey(target, **options)))


def index(*expressions: Any, **options: Any) -> Callable[[], list[Any]]:
    options.setdefault("postgresql_where", text("rank > 0"))
    name = options.pop("name", "ix_notes_rank")
    return lambda: [*items()[:2], Index(name, *(expressions or ("rank", text("lower(title)"))),
                                        **options)]


def constraints(*added: Any, unique: Any = None, check: Any = None) -> Callable[[], list[Any]]:
    """The base constraints with `unique` or `check` replaced, and `added`."""
    return lambda: [
        UniqueConstraint("workspace_id", "title") if unique is None else unique,
        CheckConstraint("rank > 0", name="rank_positive") if check is None else check,
        items()[2],
        *added,
    ]


def ordered(*names: str) -> list[Column[Any]]:
    by_name = {c.name: c for c in columns()}
    return [by_name[n] for n in names] + [c for c in by_name.values() if c.name not in names]


EDITS: list[Any] = [
    # the table
    pytest.param(lambda: notes(name="ydtb_memos"), id="table name"),
    pytest.param(lambda: notes(comment="notes"), id="table comment"),
    pytest.param(lambda: notes(postgresql_partition_by="RANGE (id)"), id="table dialect kwarg"),
    pytest.param(lambda: notes(prefixes=["UNLOGGED"]), id="table prefix"),
    # columns
    pytest.param(lambda: notes(cols=lambda: columns(body=None, content=Column("content", Text))),
                 id="column renamed"),
    pytest.param(lambda: notes(cols=lambda: ordered("id", "workspace_id", "body", "title")),
                 id="column order"),
    pytest.param(lambda: notes(cols=lambda: columns(pinned=Column("pinned", Integer))),
                 id="column added"),
    pytest.param(lambda: notes(cols=lambda: columns(body=None)), id="column dropped"),
    pytest.param(lambda: notes(cols=lambda: columns(title=Column(
        "title", String(30), nullable=False, server_default="untitled",
        comment="shown in lists"))), id="type length"),
    pytest.param(lambda: notes(cols=lambda: columns(body=Column("body", String(200)))),
                 id="type kind"),
    pytest.param(lambda: notes(cols=lambda: columns(mood=Column(
        "mood", Enum("calm", "idle", name="ydtb_mood")))), id="enum values"),
    pytest.param(lambda: notes(cols=lambda: columns(body=Column("body", Text, nullable=False))),
                 id="nullable"),
    pytest.param(lambda: notes(cols=lambda: columns(rank=Column("rank", Integer,
                                                                primary_key=True))),
                 id="primary key column added"),
    pytest.param(lambda: notes(cols=lambda: columns(title=Column(
        "title", String(20), nullable=False, server_default="new", comment="shown in lists"))),
                 id="server default changed"),
    pytest.param(lambda: notes(cols=lambda: columns(rank=Column(
        "rank", Integer, server_default=text("0")))), id="server default added"),
    pytest.param(lambda: notes(cols=lambda: columns(id=Column("id", Integer, Identity(),
                                                              primary_key=True))),
                 id="identity"),
    pytest.param(lambda: notes(cols=lambda: columns(id=Column("id", Integer, Identity(start=10),
                                                              primary_key=True))),
                 id="identity options"),
    pytest.param(lambda: notes(cols=lambda: columns(id=Column("id", Integer, primary_key=True,
                                                              autoincrement=False))),
                 id="autoincrement off"),
    pytest.param(lambda: notes(cols=lambda: columns(id=Column("id", Integer, primary_key=True,
                                                              default=1))),
                 id="client default turns serial off"),
    pytest.param(lambda: notes(cols=lambda: columns(body=Column("body", Text, unique=True))),
                 id="unique column"),
    pytest.param(lambda: notes(cols=lambda: columns(body=Column("body", Text, index=True))),
                 id="indexed column"),
    pytest.param(lambda: notes(cols=lambda: columns(title=Column(
        "title", String(20), nullable=False, server_default="untitled", comment="a title"))),
                 id="column comment"),
    pytest.param(lambda: notes(cols=lambda: columns(rank=Column(
        "rank", Integer, Computed("length(title)")))), id="computed column"),
    pytest.param(lambda: notes(cols=lambda: columns(rank=Column(
        "rank", Integer, CheckConstraint("rank < 10", name="top")))), id="column check constraint"),
    # foreign keys
    pytest.param(lambda: notes(cols=fk("ydtb_users.id")), id="foreign key table"),
    pytest.param(lambda: notes(cols=fk("ydtb_people.number")), id="foreign key column"),
    pytest.param(lambda: notes(cols=fk(ondelete="CASCADE")), id="on delete"),
    pytest.param(lambda: notes(cols=fk(onupdate="CASCADE")), id="on update"),
    pytest.param(lambda: notes(cols=fk(deferrable=True)), id="deferrable"),
    pytest.param(lambda: notes(cols=fk(deferrable=True, initially="DEFERRED")), id="initially"),
    pytest.param(lambda: notes(cols=fk(name="author")), id="foreign key name"),
    pytest.param(lambda: notes(cols=fk(match="FULL")), id="match"),
    pytest.param(lambda: notes(cols=fk(use_alter=True)), id="use alter"),
    # constraints
    pytest.param(lambda: notes(extra=constraints(unique=UniqueConstraint("workspace_id", "body"))),
                 id="unique constraint columns"),
    pytest.param(lambda: notes(extra=constraints(unique=UniqueConstraint(
        "workspace_id", "title", name="uq_title"))), id="unique constraint name"),
    pytest.param(lambda: notes(convention={**CONVENTION, "uq": "uq_%(column_0_N_name)s"}),
                 id="naming convention"),
    pytest.param(lambda: notes(extra=constraints(check=CheckConstraint(
        "rank > 1", name="rank_positive"))), id="check constraint text"),
    pytest.param(lambda: notes(extra=constraints(check=CheckConstraint(
        "rank > 0", name="rank_above"))), id="check constraint name"),
    pytest.param(lambda: notes(extra=constraints(CheckConstraint(
        "length(body) < 100", name="short"))), id="check constraint added"),
    pytest.param(lambda: notes(extra=constraints(unique=UniqueConstraint(
        "workspace_id", "title", deferrable=True))), id="constraint deferrable"),
    pytest.param(lambda: notes(
        cols=lambda: columns(id=Column("id", Integer)),
        extra=lambda: [*items(), PrimaryKeyConstraint("id", name="notes_pk")]),
                 id="primary key name"),
    pytest.param(lambda: notes(
        cols=lambda: columns(id=Column("id", Integer), rank=Column("rank", Integer)),
        extra=lambda: [*items(), PrimaryKeyConstraint("rank", "id")]),
                 id="primary key columns"),
    # indexes
    pytest.param(lambda: notes(extra=index(name="ix_notes_by_rank")), id="index name"),
    pytest.param(lambda: notes(extra=index(unique=True)), id="index unique"),
    pytest.param(lambda: notes(extra=index("rank", "body")), id="index columns"),
    pytest.param(lambda: notes(extra=index("rank", text("upper(title)"))), id="index expression"),
    pytest.param(lambda: notes(extra=index(postgresql_where=text("rank > 1"))), id="index where"),
    pytest.param(lambda: notes(extra=index(postgresql_using="hash")), id="index using"),
    pytest.param(lambda: notes(extra=index(postgresql_include=["body"])), id="index include"),
    pytest.param(lambda: notes(extra=index(postgresql_with={"fillfactor": 70})),
                 id="index dialect kwarg"),
    pytest.param(lambda: notes(extra=index(postgresql_ops={"rank": "int4_ops"})),
                 id="index operator class"),
    pytest.param(lambda: notes(extra=lambda: items()[:2]), id="index dropped"),
    pytest.param(lambda: using_hash(notes()), id="index kwarg set after construction"),
]


def using_hash(table: Table) -> Table:
    for index in table.indexes:
        index.dialect_kwargs["postgresql_using"] = "hash"
    return table


def fingerprint_of(table: Table) -> str:
    """The fingerprint `build_package` gives a package of this one table."""
    return ddl.fingerprint(fingerprint.describe([table]))


def test_the_same_schema_declared_again_has_the_same_fingerprint() -> None:
    first, second = notes(), notes()

    assert first.metadata is not second.metadata
    assert fingerprint.describe([first]) == fingerprint.describe([second])
    assert fingerprint_of(first) == fingerprint_of(second)


@pytest.mark.parametrize("edited", EDITS)
def test_each_edit_changes_the_fingerprint(edited: Callable[[], Table]) -> None:
    assert fingerprint_of(edited()) != fingerprint_of(notes())


def test_literal_values_in_expressions_are_part_of_the_fingerprint() -> None:
    # An expression keeps its values as bound parameters; they must be rendered.
    def table(limit: int) -> Table:
        return notes(extra=lambda: [CheckConstraint(literal_column("rank") < limit, name="top")])

    assert fingerprint.describe([table(10)]) != fingerprint.describe([table(20)])


def test_an_untyped_foreign_key_to_the_core_takes_the_core_column_type() -> None:
    typed = notes()
    untyped = notes(cols=lambda: columns(workspace_id=Column(
        "workspace_id", ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"), nullable=False)))

    assert fingerprint.describe([untyped]) == fingerprint.describe([typed])


def test_a_column_that_does_not_compile_raises_naming_the_column() -> None:
    table = notes(cols=lambda: columns(body=Column("body")))

    with pytest.raises(CompileError, match=r"^\(in table 'ydtb_notes', column 'body'\): "):
        fingerprint.describe([table])


def test_a_server_default_that_does_not_compile_raises() -> None:
    table = notes(cols=lambda: columns(rank=Column("rank", Integer, server_default=literal(1j))))

    with pytest.raises(CompileError, match="column 'rank'"):
        fingerprint.describe([table])


def test_an_index_without_a_name_raises() -> None:
    # A convention given without "ix" replaces SQLAlchemy's default one.
    table = notes(convention={"uq": CONVENTION["uq"]},
                  cols=lambda: columns(body=Column("body", Text, index=True)))

    with pytest.raises(CompileError, match=r"index on \(body\) has no name"):
        fingerprint.describe([table])


def test_describing_builds_no_dialect_options_on_columns() -> None:
    # Built on first read and kept: 16 MB at N = 300 (issue #7).
    table = notes()

    fingerprint.describe([table])

    assert not any("dialect_options" in vars(column) for column in table.columns)


def test_an_index_method_that_is_not_a_name_raises() -> None:
    table = notes(extra=index(postgresql_using="btree; DROP TABLE x"))

    with pytest.raises(CompileError, match="Unexpected SQL phrase"):
        fingerprint.describe([table])


def kit_notes() -> Table:
    """A table as packages declare them with `runtime.kit`, with a type of each kind."""
    from sqlalchemy import BigInteger, Boolean, DateTime, Float, Numeric, Uuid, false, func
    from sqlalchemy.dialects.postgresql import JSONB

    from runtime import kit

    metadata = kit.metadata()
    kit.workspace_table("ydtb_pinned_tags", metadata,
                        Column("id", BigInteger, Identity(), primary_key=True), kit.workspace_key())
    return kit.workspace_table(
        "ydtb_pinned", metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("done", Boolean, nullable=False, server_default=false()),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("amount", Numeric(12, 2), server_default=text("0")),
        Column("data", JSONB, server_default=text("'{}'::jsonb")),
        Column("ratio", Float), Column("token", Uuid), Column("tag_id", BigInteger),
        kit.workspace_reference("tag_id", "ydtb_pinned_tags", ondelete="SET NULL"),
        kit.workspace_key(), Index(None, "workspace_id", "at"),
        CheckConstraint("ratio >= 0", name="ratio_positive"),
    )


@pytest.mark.parametrize(("table", "expected"), [
    pytest.param(notes, "3b80cafe2e27cd11", id="notes"),
    pytest.param(kit_notes, "85f6c5b47b436b39", id="kit"),
])
def test_the_fingerprint_of_a_schema_stays_what_ledgers_recorded(
    table: Callable[[], Table], expected: str
) -> None:
    # Ledgers keep fingerprints: a new way of computing one must give the same value, or
    # every database would see every package as edited (#17).
    assert fingerprint_of(table()) == expected


def test_a_tables_key_changes_with_its_description_and_only_its_own() -> None:
    def registered(*more: Any) -> Any:
        metadata = kit.metadata()
        kit.workspace_table("ydtb_a", metadata, Column("id", Integer, primary_key=True), *more)
        kit.workspace_table("ydtb_b", metadata, Column("id", Integer, primary_key=True))
        return DatabaseRegistry(send_signals=False).register_database(
            package_name="keys", schema=metadata, version="1.0.0")

    package, edited = registered(), registered(Column("extra", Text))

    # Validation fills the keys from the description it made: the same as described anew.
    assert package.table_keys == {t.name: ddl.fingerprint(fingerprint.describe([t]))
                                  for t in package.tables}
    assert edited.table_keys["ydtb_a"] != package.table_keys["ydtb_a"]
    assert edited.table_keys["ydtb_b"] == package.table_keys["ydtb_b"]
