"""Skipping tables that agreed with the database: never at the cost of a missed change."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Migration, Package, kit
from runtime.db import diff, migrator
from runtime.db.agreement import Agreement

# Two tables: a change to one of them leaves the other agreeing.
SQL = """
CREATE TABLE ydtb_notes (
    workspace_id varchar(20) NOT NULL, id integer NOT NULL, title text DEFAULT 'a',
    body text NOT NULL,
    CONSTRAINT pk_ydtb_notes PRIMARY KEY (id),
    CONSTRAINT fk_ydtb_notes_workspace_id_ydtb_workspaces FOREIGN KEY (workspace_id)
        REFERENCES ydtb_workspaces (id) ON DELETE CASCADE,
    CONSTRAINT uq_ydtb_notes_workspace_id_id UNIQUE (workspace_id, id)
);
CREATE INDEX ix_ydtb_notes_workspace_id ON ydtb_notes (workspace_id);
CREATE TABLE ydtb_tags (
    workspace_id varchar(20) NOT NULL, id integer NOT NULL, name text,
    CONSTRAINT pk_ydtb_tags PRIMARY KEY (id),
    CONSTRAINT fk_ydtb_tags_workspace_id_ydtb_workspaces FOREIGN KEY (workspace_id)
        REFERENCES ydtb_workspaces (id) ON DELETE CASCADE,
    CONSTRAINT uq_ydtb_tags_workspace_id_id UNIQUE (workspace_id, id)
);
CREATE INDEX ix_ydtb_tags_workspace_id ON ydtb_tags (workspace_id);
ALTER TABLE ydtb_tags ADD COLUMN tool_id varchar(20)
    CONSTRAINT fk_ydtb_tags_tool_id_ydtb_tools REFERENCES ydtb_tools (id);
"""


def notes(*more: Any) -> tuple[Package, list[Package]]:
    """The package, declaring what SQL builds plus `more` columns or items of ydtb_notes."""
    registry = DatabaseRegistry(send_signals=False)
    metadata = kit.metadata()
    kit.workspace_table("ydtb_notes", metadata, Column("id", Integer, primary_key=True),
                        Column("title", Text, server_default="a"),
                        Column("body", Text, nullable=False), kit.workspace_key(), *more)
    kit.workspace_table("ydtb_tags", metadata, Column("id", Integer, primary_key=True),
                        Column("name", Text), kit.workspace_key(),
                        Column("tool_id", String(20), ForeignKey("ydtb_tools.id")))
    package = registry.register_database(
        package_name="notes", schema=metadata, version="1.0.0",
        migrations=[Migration("0001_notes", up=SQL)])
    return package, registry.ordered()


async def compare(engine: AsyncEngine, package: Package, packages: list[Package],
                  agreed: Agreement) -> list[str]:
    async with engine.connect() as conn:
        return [d.words for d in await diff.compare(conn, package, packages, agreed=agreed)]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The tables each comparison reflected and compared."""
    seen: list[set[str]] = []
    original = diff._compare_tables

    async def spy(conn: Any, targets: Any, packages: Any, tables: frozenset[str],
                  listed: Any) -> Any:
        seen.append(set(tables))
        return await original(conn, targets, packages, tables, listed)

    monkeypatch.setattr(diff, "_compare_tables", spy)
    return seen


async def test_tables_that_agreed_are_not_compared_again_while_unchanged(
    engine: AsyncEngine, compared: list[set[str]]
) -> None:
    package, packages = notes()
    await migrator.migrate(engine, packages)
    agreed = Agreement()

    assert await compare(engine, package, packages, agreed) == []
    assert await compare(engine, package, packages, agreed) == []
    edited, packages = notes(Column("color", Text))  # schema.py saved with a new column
    assert await compare(engine, edited, packages, agreed) == [
        "table ydtb_notes: column color declared but missing"]

    assert compared == [{"ydtb_notes", "ydtb_tags"}, {"ydtb_notes"}]


@pytest.mark.parametrize(("sql", "words"), [
    pytest.param("ALTER TABLE ydtb_notes ADD COLUMN color text",
                 "table ydtb_notes: column color in the database but not declared",
                 id="column"),
    pytest.param("CREATE INDEX ix_by_hand ON ydtb_notes (title)",
                 "index ix_by_hand in the database but not declared", id="index"),
    pytest.param("ALTER TABLE ydtb_notes ALTER COLUMN title SET DEFAULT 'b'",
                 "table ydtb_notes: column title has default 'b'::text in the database but "
                 "declared default 'a'", id="default"),
    pytest.param("ALTER TABLE ydtb_notes ALTER COLUMN body DROP NOT NULL",
                 "table ydtb_notes: column body is nullable in the database but declared "
                 "NOT NULL", id="nullability"),
    pytest.param("ALTER TABLE ydtb_notes ADD CONSTRAINT ck_by_hand CHECK (body <> '')",
                 "check constraint ck_by_hand in the database but not declared", id="check"),
    pytest.param("COMMENT ON COLUMN ydtb_notes.body IS 'by hand'",
                 "table ydtb_notes: column body has comment 'by hand' in the database but "
                 "declared no comment", id="comment"),
    # Only the core's table changed: what ydtb_tags' key reflects as changed with it.
    pytest.param("ALTER TABLE ydtb_tools RENAME COLUMN id TO tool",
                 "foreign key fk_ydtb_tags_tool_id_ydtb_tools in the database but not "
                 "declared; foreign key fk_ydtb_tags_tool_id_ydtb_tools declared but missing",
                 id="foreign-key-target"),
])
async def test_a_change_made_in_the_database_after_agreeing_is_found(
    engine: AsyncEngine, sql: str, words: str
) -> None:
    package, packages = notes()
    await migrator.migrate(engine, packages)
    agreed = Agreement()
    assert await compare(engine, package, packages, agreed) == []
    async with engine.begin() as conn:
        await conn.execute(text(sql))

    assert "; ".join(await compare(engine, package, packages, agreed)) == words


async def test_a_difference_found_is_compared_again_until_it_is_gone(
    engine: AsyncEngine, compared: list[set[str]]
) -> None:
    package, packages = notes(Index("ix_ydtb_notes_title", "title"))
    await migrator.migrate(engine, packages)
    agreed = Agreement()
    missing = ["index ix_ydtb_notes_title declared but missing"]

    assert await compare(engine, package, packages, agreed) == missing
    assert await compare(engine, package, packages, agreed) == missing
    assert compared == [{"ydtb_notes", "ydtb_tags"}, {"ydtb_notes"}]
