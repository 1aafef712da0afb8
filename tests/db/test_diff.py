"""The schema comparison against a real PostgreSQL: alembic finds, we describe and fix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Migration, Package, kit
from runtime.db import diff, migrator
from runtime.db.diff import Difference
from runtime.db.engine import driver
from runtime.load.loader import load_all

EXAMPLES = Path(__file__).parent.parent.parent / "packages_dev"

# What `kit.workspace_table("ydtb_notes", md, Column("id", Integer, primary_key=True))` is.
NOTES_SQL = """
CREATE TABLE ydtb_notes (
    workspace_id varchar(20) NOT NULL,
    id integer NOT NULL,
    CONSTRAINT pk_ydtb_notes PRIMARY KEY (id),
    CONSTRAINT fk_ydtb_notes_workspace_id_ydtb_workspaces FOREIGN KEY (workspace_id)
        REFERENCES ydtb_workspaces (id) ON DELETE CASCADE,
    CONSTRAINT uq_ydtb_notes_workspace_id_id UNIQUE (workspace_id, id)
);
CREATE INDEX ix_ydtb_notes_workspace_id ON ydtb_notes (workspace_id);
"""

Declare = Callable[[MetaData], list[Any]]


def notes(registry: DatabaseRegistry, declare: Declare, sql: str = "") -> Package:
    """Register `notes`: ydtb_notes with the columns `declare` adds, built by NOTES_SQL + sql."""
    metadata = kit.metadata()
    kit.workspace_table("ydtb_notes", metadata, Column("id", Integer, primary_key=True),
                        kit.workspace_key(), *declare(metadata))
    return registry.register_database(
        package_name="notes", schema=metadata, version="1.0.0",
        migrations=[Migration("0001_notes", up=NOTES_SQL + sql)])


async def compare(engine: AsyncEngine, package: Package, packages: Sequence[Package],
                  **kwargs: Any) -> list[Difference]:
    async with engine.connect() as conn:
        return await diff.compare(conn, package, packages, **kwargs)


async def run_twice(engine: AsyncEngine, differences: Sequence[Difference]) -> None:
    async with engine.connect() as conn:
        raw = await driver(conn)
        for _ in range(2):
            for statement in (s for d in differences for s in d.statements):
                await raw.execute(statement)


async def converged(engine: AsyncEngine, declare: Declare, sql: str) -> list[Difference]:
    """The differences between `declare` and the database `sql` builds; their SQL, run
    twice (idempotent: the second run changes nothing), leaves none."""
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, declare, sql)
    packages = registry.ordered()
    await migrator.migrate(engine, packages)
    found = await compare(engine, package, packages)
    await run_twice(engine, found)
    assert await compare(engine, package, packages) == []
    return found


def tags(metadata: MetaData) -> list[Any]:
    kit.workspace_table("ydtb_tags", metadata, Column("id", Integer, primary_key=True),
                        Column("note_id", Integer),
                        kit.workspace_reference("note_id", "ydtb_notes"))
    return []


CASES = [
    pytest.param(lambda md: [Column("color", Text)], "",
                 "table ydtb_notes: column color declared but missing", False,
                 id="add-nullable-column"),
    pytest.param(lambda md: [Column("color", Text, nullable=False, server_default="red")], "",
                 "table ydtb_notes: column color declared but missing", False,
                 id="add-column-with-default"),
    pytest.param(lambda md: [Column("color", Text, nullable=False)], "",
                 "table ydtb_notes: column color declared but missing", True,
                 id="add-not-null-column-without-default"),
    pytest.param(lambda md: [], "ALTER TABLE ydtb_notes ADD COLUMN color text;",
                 "table ydtb_notes: column color in the database but not declared", True,
                 id="remove-column"),
    pytest.param(lambda md: [Column("title", String(20))],
                 "ALTER TABLE ydtb_notes ADD COLUMN title varchar(10);",
                 "table ydtb_notes: column title is VARCHAR(10) in the database but declared "
                 "VARCHAR(20)", False, id="widen-type"),
    pytest.param(lambda md: [Column("title", String(5))],
                 "ALTER TABLE ydtb_notes ADD COLUMN title varchar(10);",
                 "table ydtb_notes: column title is VARCHAR(10) in the database but declared "
                 "VARCHAR(5)", True, id="narrow-type"),
    pytest.param(lambda md: [Column("views", BigInteger)],
                 "ALTER TABLE ydtb_notes ADD COLUMN views integer;",
                 "table ydtb_notes: column views is INTEGER in the database but declared BIGINT",
                 False, id="integer-to-bigint"),
    pytest.param(lambda md: [Column("title", Text, nullable=False)],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text;",
                 "table ydtb_notes: column title is nullable in the database but declared "
                 "NOT NULL", True, id="set-not-null"),
    pytest.param(lambda md: [Column("title", Text)],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text NOT NULL;",
                 "table ydtb_notes: column title is NOT NULL in the database but declared "
                 "nullable", False, id="drop-not-null"),
    pytest.param(lambda md: [Column("title", Text, server_default="b")],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text DEFAULT 'a';",
                 "table ydtb_notes: column title has default 'a'::text in the database but "
                 "declared default 'b'", False, id="change-default"),
    pytest.param(lambda md: [Column("color", Text, index=True)],
                 "ALTER TABLE ydtb_notes ADD COLUMN color text;",
                 "index ix_ydtb_notes_color declared but missing", False, id="add-index"),
    pytest.param(lambda md: [Column("color", Text)],
                 "ALTER TABLE ydtb_notes ADD COLUMN color text;\n"
                 "CREATE INDEX ix_stale ON ydtb_notes (color);",
                 "index ix_stale in the database but not declared", False, id="remove-index"),
    pytest.param(lambda md: [Column("color", Text), UniqueConstraint("color")],
                 "ALTER TABLE ydtb_notes ADD COLUMN color text;",
                 "unique constraint uq_ydtb_notes_color declared but missing", False,
                 id="add-unique-constraint"),
    pytest.param(lambda md: [Column("tool_id", String(20), ForeignKey("ydtb_tools.id"))],
                 "ALTER TABLE ydtb_notes ADD COLUMN tool_id varchar(20);",
                 "foreign key fk_ydtb_notes_tool_id_ydtb_tools declared but missing", False,
                 id="add-foreign-key"),
    pytest.param(lambda md: [Column("tool_id", String(20))],
                 "ALTER TABLE ydtb_notes ADD COLUMN tool_id varchar(20) "
                 "CONSTRAINT fk_old REFERENCES ydtb_tools (id);",
                 "foreign key fk_old in the database but not declared", False,
                 id="remove-foreign-key"),
    pytest.param(tags, "", "table ydtb_tags declared but missing", False, id="add-table"),
    # What alembic does not compare (runtime.db.catalog).
    pytest.param(lambda md: [], "ALTER TABLE ydtb_notes DROP CONSTRAINT pk_ydtb_notes;\n"
                 "ALTER TABLE ydtb_notes ADD CONSTRAINT pk_ydtb_notes PRIMARY KEY "
                 "(workspace_id, id);",
                 "table ydtb_notes: primary key is (workspace_id, id) in the database but "
                 "declared (id)", True, id="primary-key-columns"),
    pytest.param(lambda md: [Column("votes", Integer),
                             CheckConstraint("votes > 0", name="votes")],
                 "ALTER TABLE ydtb_notes ADD COLUMN votes integer "
                 "CONSTRAINT ck_ydtb_notes_votes CHECK (votes >= 0);",
                 "check constraint ck_ydtb_notes_votes is CHECK (votes >= 0) in the database "
                 "but declared CHECK (votes > 0)", False, id="check-expression"),
    pytest.param(lambda md: [Column("title", Text),
                             Index("ix_title", "title", postgresql_where=text("title <> ''"))],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text;\n"
                 "CREATE INDEX ix_title ON ydtb_notes (title) WHERE title IS NOT NULL;",
                 "index ix_title is USING btree (title) WHERE (title IS NOT NULL) in the "
                 "database but declared USING btree (title) WHERE (title <> ''::text)", False,
                 id="index-predicate"),
    pytest.param(lambda md: [Column("title", Text),
                             Index("ix_title", "title", postgresql_include=["id"])],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text;\n"
                 "CREATE INDEX ix_title ON ydtb_notes (title);",
                 "index ix_title is USING btree (title) in the database but declared USING "
                 "btree (title) INCLUDE (id)", False, id="index-include"),
    pytest.param(lambda md: [Column("title", Text),
                             Index("ix_title", "title", postgresql_using="hash")],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text;\n"
                 "CREATE INDEX ix_title ON ydtb_notes (title);",
                 "index ix_title is USING btree (title) in the database but declared USING "
                 "hash (title)", False, id="index-method"),
    pytest.param(lambda md: [Column("status", Enum("open", "doing", "done", name="ydtb_st"))],
                 "CREATE TYPE ydtb_st AS ENUM ('open', 'done');\n"
                 "ALTER TABLE ydtb_notes ADD COLUMN status ydtb_st;",
                 "enum type ydtb_st: label doing declared but missing", False,
                 id="enum-label"),
    pytest.param(lambda md: [Column("title", Text),
                             Column("size", Integer, Computed("octet_length(title)"))],
                 "ALTER TABLE ydtb_notes ADD COLUMN title text, ADD COLUMN size integer "
                 "GENERATED ALWAYS AS (length(title)) VIRTUAL;",
                 "table ydtb_notes: column size is generated as (length(title)) VIRTUAL in the "
                 "database but declared generated as (octet_length(title)) VIRTUAL", False,
                 id="computed-expression"),
    pytest.param(lambda md: [Column("size", Integer)],
                 "ALTER TABLE ydtb_notes ADD COLUMN size integer GENERATED ALWAYS AS (1) STORED;",
                 "table ydtb_notes: column size is generated as (1) STORED in the database but "
                 "declared not generated", False, id="computed-taken-away"),
    pytest.param(lambda md: [Column("tool_id", String(20)),
                             ForeignKeyConstraint(["tool_id"], ["ydtb_tools.id"],
                                                  name="fk_tool", ondelete="SET NULL")],
                 "ALTER TABLE ydtb_notes ADD COLUMN tool_id varchar(20) "
                 "CONSTRAINT fk_tool REFERENCES ydtb_tools (id) ON DELETE CASCADE;",
                 "foreign key fk_tool is ON DELETE CASCADE ON UPDATE NO ACTION in the database "
                 "but declared ON DELETE SET NULL ON UPDATE NO ACTION", False, id="fk-action"),
    pytest.param(lambda md: [Column("seq", Integer, Identity(), nullable=False)],
                 "ALTER TABLE ydtb_notes ADD COLUMN seq integer NOT NULL;",
                 "table ydtb_notes: column seq is not an identity column in the database but "
                 "declared GENERATED BY DEFAULT AS IDENTITY", False, id="identity"),
]


async def test_what_postgresql_renders_the_same_is_no_difference(engine: AsyncEngine) -> None:
    # Written otherwise than PostgreSQL renders them: compared in its rendering, equal.
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [
        Column("votes", Integer), Column("title", Text),
        Column("size", Integer, Computed("length( title )", persisted=True)),
        CheckConstraint("votes>=0 and votes<100", name="votes"),
        Index("ix_title", text("lower(title)"), postgresql_where=text("votes>0")),
        Index("ix_votes", "votes", "title", unique=True)],
        "ALTER TABLE ydtb_notes ADD COLUMN votes integer, ADD COLUMN title text, "
        "ADD COLUMN size integer GENERATED ALWAYS AS (length(title)) STORED, "
        "ADD CONSTRAINT ck_ydtb_notes_votes CHECK ((votes >= 0) AND (votes < 100));\n"
        "CREATE INDEX ix_title ON ydtb_notes (lower(title)) WHERE (votes > 0);\n"
        "CREATE UNIQUE INDEX ix_votes ON ydtb_notes USING btree (votes, title);")
    packages = registry.ordered()
    await migrator.migrate(engine, packages)

    assert await compare(engine, package, packages) == []


@pytest.mark.parametrize(("declare", "sql", "words", "destructive"), CASES)
async def test_each_difference_is_described_and_its_sql_makes_it_disappear(
    engine: AsyncEngine, declare: Declare, sql: str, words: str, destructive: bool
) -> None:
    found = await converged(engine, declare, sql)

    assert [(d.words, d.destructive) for d in found] == [(words, destructive)]


async def test_a_table_the_package_no_longer_declares_is_found_when_named(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [])
    packages = registry.ordered()
    await migrator.migrate(engine, packages)
    async with engine.begin() as conn:  # as a table left by an older schema.py stays
        await conn.execute(text("CREATE TABLE ydtb_gone (id int PRIMARY KEY)"))

    assert await compare(engine, package, packages) == []
    [gone] = await compare(engine, package, packages, tables=["ydtb_gone"])
    assert (gone.kind, gone.words, gone.destructive, gone.statements) == (
        "remove_table", "table ydtb_gone in the database but not declared", True,
        ("DROP TABLE IF EXISTS ydtb_gone",))


async def test_only_the_package_s_own_tables_are_compared(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [])
    packages = registry.ordered()
    await migrator.migrate(engine, packages)
    async with engine.begin() as conn:  # made by hand: no migration may (Y501, Y502)
        await conn.execute(text("CREATE TABLE ydtb_stray (id int PRIMARY KEY)"))
        await conn.execute(text("ALTER TABLE ydtb_tools ADD COLUMN extra text"))

    assert await compare(engine, package, packages) == []


async def test_function_defaults_compare_equal_to_themselves(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [
        Column("token", UUID, nullable=False, server_default=text("gen_random_uuid()")),
        Column("seen_at", Text, server_default=func.now()),
    ], "ALTER TABLE ydtb_notes ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid(),\n"
       "    ADD COLUMN seen_at text DEFAULT now();")
    packages = registry.ordered()
    await migrator.migrate(engine, packages)

    assert await compare(engine, package, packages) == []



def tags_onto_notes(metadata: MetaData) -> list[Any]:
    """No more of ydtb_notes; ydtb_tags beside it, keyed onto it."""
    kit.workspace_table("ydtb_tags", metadata, Column("id", Integer, primary_key=True),
                        Column("note_id", Integer),
                        kit.workspace_reference("note_id", "ydtb_notes"))
    return []


@pytest.mark.parametrize(("declare", "sql", "kinds"), [
    pytest.param(lambda md: [Column("size", BigInteger, server_default="0")],
                 "ALTER TABLE ydtb_notes ADD COLUMN size jsonb DEFAULT '{}'::jsonb;",
                 ["modify_type", "modify_default"], id="a-default-that-does-not-cast"),
    pytest.param(lambda md: [Column("state", Enum("draft", "done", name="ydtb_note_state"))],
                 "ALTER TABLE ydtb_notes ADD COLUMN state bigint;", ["modify_type"],
                 id="to-an-enum"),
    pytest.param(lambda md: [Column("tags", Text)],
                 "ALTER TABLE ydtb_notes ADD COLUMN tags text[];", ["modify_type"],
                 id="an-array-no-longer"),
    pytest.param(lambda md: [Column("tags", ARRAY(Text))],
                 "ALTER TABLE ydtb_notes ADD COLUMN tags text;", ["modify_type"],
                 id="made-an-array"),
    # PostgreSQL 18 refuses SET EXPRESSION on a virtual column of a table with a CHECK.
    pytest.param(lambda md: [Column("twice", Integer, Computed("id * 3")),
                             CheckConstraint("id > 0", name="positive")],
                 "ALTER TABLE ydtb_notes ADD COLUMN twice integer GENERATED ALWAYS AS "
                 "(id * 2) VIRTUAL, ADD CONSTRAINT ck_ydtb_notes_positive CHECK (id > 0);",
                 ["modify_computed"], id="virtual-expression-with-a-check"),
    # A unique key a foreign key stands on is dropped after the foreign key.
    # A new table keyed onto a unique key added to a table that exists: the key first.
    pytest.param(lambda md: tags_onto_notes(md),
                 "ALTER TABLE ydtb_notes DROP CONSTRAINT uq_ydtb_notes_workspace_id_id;",
                 ["add_constraint", "add_table"], id="a-table-keyed-onto-a-key-added"),
    pytest.param(lambda md: [Column("code", Integer), Column("parent_code", Integer)],
                 "ALTER TABLE ydtb_notes ADD COLUMN code integer, ADD COLUMN parent_code "
                 "integer, ADD CONSTRAINT uq_notes_code UNIQUE (workspace_id, code);\n"
                 "ALTER TABLE ydtb_notes ADD CONSTRAINT fk_notes_parent FOREIGN KEY "
                 "(workspace_id, parent_code) REFERENCES ydtb_notes (workspace_id, code);",
                 ["remove_fk", "remove_constraint"], id="a-key-and-the-key-on-it"),
])
async def test_each_change_is_found_and_its_sql_runs(
    engine: AsyncEngine, declare: Declare, sql: str, kinds: list[str]
) -> None:
    # Found by tests/db/test_comparison_properties.py: alembic saw TEXT[] and TEXT as one
    # type; the change's SQL failed on a default PostgreSQL cannot cast with the column,
    # on an enum type it did not create, and in the cases below.
    found = await converged(engine, declare, sql)

    assert [d.kind for d in found] == kinds


async def test_a_text_default_with_quotes_compares_equal_to_itself(engine: AsyncEngine) -> None:
    # alembic strips a quote from each end of a declared text default: `'draft'` (quotes
    # included) was compared with draft, and `it's` was a syntax error.
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [
        Column("state", Text, server_default="'draft'"),
        Column("said", Text, server_default="it's"),
        Column("plain", Text, server_default="x"),
    ], "ALTER TABLE ydtb_notes ADD COLUMN state text DEFAULT '''draft''',\n"
       "    ADD COLUMN said text DEFAULT 'it''s', ADD COLUMN plain text DEFAULT 'x';")
    packages = registry.ordered()
    await migrator.migrate(engine, packages)

    assert await compare(engine, package, packages) == []
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE ydtb_notes ALTER COLUMN state SET DEFAULT 'draft'"))
    assert [d.words for d in await compare(engine, package, packages)] == [
        "table ydtb_notes: column state has default 'draft'::text in the database but "
        "declared default '''draft'''"]


async def test_a_default_of_another_type_is_a_difference_not_a_failure(
    engine: AsyncEngine,
) -> None:
    # alembic asks the server `SELECT 0 = 'x'`, which fails: the comparison went with it,
    # and with it the transaction the dev sync compares in (found by tests/db/test_narrowing).
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [Column("rank", Text, server_default="x")],
                    "ALTER TABLE ydtb_notes ADD COLUMN rank integer DEFAULT 0;")
    packages = registry.ordered()
    await migrator.migrate(engine, packages)

    async with engine.connect() as conn, conn.begin():
        found = await diff.compare(conn, package, packages)
        assert await conn.scalar(text("SELECT 1")) == 1  # the transaction goes on

    assert [d.kind for d in found] == ["modify_type", "modify_default"]
    await run_twice(engine, found)
    assert await compare(engine, package, packages) == []

async def test_foreign_keys_into_a_dependency_resolve(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, lambda md: [])
    metadata = kit.metadata()
    Table("ydtb_tags", metadata, Column("id", Integer, primary_key=True),
          kit.workspace_column(), Column("note_id", Integer),
          kit.workspace_reference("note_id", "ydtb_notes"))
    tags_package = registry.register_database(
        package_name="tags", schema=metadata, version="1.0.0", dependencies=["notes"])
    packages = registry.ordered()
    await migrator.migrate(engine, packages)  # tags' migration is derived from its schema

    assert await compare(engine, tags_package, packages) == []


async def test_the_example_packages_show_no_drift_after_migrate(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    assert load_all([EXAMPLES], registry, entry_points=False).errors == []
    packages = registry.ordered()
    await migrator.migrate(engine, packages)

    found = {p.name: await compare(engine, p, packages) for p in packages[1:]}

    assert found == {"@ydtb/basic": [], "@ydtb/tasks": [], "@ydtb/timer": []}


async def test_a_key_onto_a_table_whose_own_keys_lead_further_compares(
    engine: AsyncEngine,
) -> None:
    """Three packages in a chain of references: comparing the last one copies the table
    it references, whose own key (onto the first package) is left unresolved."""
    registry = DatabaseRegistry(send_signals=False)
    previous: str | None = None
    for name in ("first", "second", "third"):
        metadata = kit.metadata()
        refs = [Column("up_id", Integer),
                kit.workspace_reference("up_id", f"ydtb_{previous}", ondelete="CASCADE")] \
            if previous else []
        kit.workspace_table(f"ydtb_{name}", metadata, Column("id", Integer, primary_key=True),
                            kit.workspace_key(), *refs)
        registry.register_database(package_name=name, schema=metadata, version="1.0.0",
                                   dependencies=[previous] if previous else [])
        previous = name
    packages = registry.ordered()
    await migrator.migrate(engine, packages)

    assert sorted(diff.schema_of([registry.get("third")], packages).tables) == [
        "ydtb_second", "ydtb_third", "ydtb_workspaces"]
    async with engine.connect() as conn:
        assert await diff.compare(conn, registry.get("third"), packages) == []


class _Unread:
    """A registered package whose tables a comparison of another must not read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table_names = (f"ydtb_{name}",)

    @property
    def tables(self) -> Any:
        raise AssertionError(f"the tables of {self.name} were read")


def test_a_comparison_reads_only_the_tables_its_keys_reach() -> None:
    """The tables a compared package's keys reach are looked up by name: the other
    packages' tables are not read, so the comparison does not grow with N (#14)."""
    registry = DatabaseRegistry(send_signals=False)
    for name, up in (("first", None), ("second", "first")):
        metadata = kit.metadata()
        refs = [Column("up_id", Integer),
                kit.workspace_reference("up_id", f"ydtb_{up}", ondelete="CASCADE")] if up else []
        kit.workspace_table(f"ydtb_{name}", metadata, Column("id", Integer, primary_key=True),
                            kit.workspace_key(), *refs)
        registry.register_database(package_name=name, schema=metadata, version="1.0.0",
                                   dependencies=[up] if up else [])
    others: list[Any] = [_Unread(f"other{i}") for i in range(50)]

    metadata = diff.schema_of([registry.get("second")],
                              [*others, *registry.ordered(), *others])

    assert sorted(metadata.tables) == ["ydtb_first", "ydtb_second", "ydtb_workspaces"]
    assert sorted(c.name for c in metadata.tables["ydtb_first"].columns) == [
        "id", "workspace_id"]


async def test_a_comparison_leaves_the_declared_tables_as_they_were(
    engine: AsyncEngine,
) -> None:
    # SQLAlchemy keeps what a copy reads on the copied items: kept on every declared
    # table the dev daemon compared at start-up, 80 MB at N = 1000 packages (#17).
    registry = DatabaseRegistry(send_signals=False)
    package = notes(registry, lambda md: [
        Column("title", Text), Index("ix_title", "title", postgresql_using="hash")],
        "ALTER TABLE ydtb_notes ADD COLUMN title text;\n"
        "CREATE INDEX ix_title ON ydtb_notes USING hash (title);")
    packages = registry.ordered()
    await migrator.migrate(engine, packages)
    [table] = package.tables
    items = [table, *table.constraints, *table.indexes, *table.columns,
             *(c.type for c in table.columns)]
    before = [dict(vars(item)) for item in items]

    assert await compare(engine, package, packages) == []

    assert [dict(vars(item)) for item in items] == before


def test_each_operation_is_rendered_alone_by_the_one_offline_context() -> None:
    from alembic.operations import ops

    first = diff._render(ops.CreateIndexOp("ix_a", "ydtb_notes", ["title"], if_not_exists=True))
    second = diff._render(ops.DropIndexOp("ix_b", table_name="ydtb_tags", if_exists=True))

    assert first == ("CREATE INDEX IF NOT EXISTS ix_a ON ydtb_notes (title)",)
    assert second == ("DROP INDEX IF EXISTS ix_b",)
