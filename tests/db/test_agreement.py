"""Skipping tables that agreed with the database: never at the cost of a missed change."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text, event, text
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Migration, Package, kit
from runtime.db import agreement, diff, migrator
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
                  listed: Any, kept: Any, narrowed: Any) -> Any:
        seen.append(set(tables))
        return await original(conn, targets, packages, tables, listed, kept, narrowed)

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


async def test_planner_settings_are_set_back_to_what_they_were(engine: AsyncEngine) -> None:
    package, packages = notes()
    await migrator.migrate(engine, packages)
    async with engine.connect() as conn:
        await conn.execute(text("SET enable_mergejoin = off"))  # the session's own choice
        await diff.compare(conn, package, packages, agreed=Agreement())
        settings = (await conn.execute(text(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
        ))).one()

    assert tuple(settings) == ("on", "off")


@pytest.fixture
def reflected(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The tables each reflection of columns read from the database."""
    seen: list[list[str]] = []
    original = Inspector.get_multi_columns

    def spy(self: Inspector, *args: Any, **kwargs: Any) -> Any:
        seen.append(sorted(kwargs.get("filter_names") or []))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Inspector, "get_multi_columns", spy)
    return seen


async def test_a_table_read_before_is_not_read_again_while_its_catalog_key_holds(
    engine: AsyncEngine, reflected: list[list[str]]
) -> None:
    package, packages = notes()
    await migrator.migrate(engine, packages)
    agreed = Agreement()
    assert await compare(engine, package, packages, agreed) == []
    reflected.clear()

    edited, packages = notes(Column("color", Text))
    assert await compare(engine, edited, packages, agreed) == [
        "table ydtb_notes: column color declared but missing"]
    assert reflected == []  # compared with ydtb_notes as read under the same key

    async with engine.begin() as conn:  # its key changes: read again
        await conn.execute(text("ALTER TABLE ydtb_notes ADD COLUMN shade text"))
    edited, packages = notes(Column("color", Text), Column("size", Integer))
    assert await compare(engine, edited, packages, agreed) == [
        "table ydtb_notes: column color declared but missing",
        "table ydtb_notes: column size declared but missing",
        "table ydtb_notes: column shade in the database but not declared"]
    assert reflected == [["ydtb_notes"]]


# A random walk of declared and hand-made changes, and syncs: the comparison of a daemon
# (its `Agreement` skipping tables and keeping readings) against a fresh one each step.
_BY_HAND = (
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS h{step} text",
    "CREATE INDEX IF NOT EXISTS ix_h{step} ON {table} (workspace_id, id)",
    "COMMENT ON COLUMN {table}.id IS 'step {step}'",
    "ALTER TABLE {table} ALTER COLUMN id SET DEFAULT {step}",
    "ALTER TABLE {table} ALTER COLUMN id DROP DEFAULT",
    "ALTER TABLE {table} ADD CONSTRAINT ck_h{step} CHECK (id > -{step})",
)


@pytest.mark.parametrize("spilling", [False, True], ids=["in-memory", "spilling"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_comparison_with_what_it_kept_finds_what_a_fresh_one_finds(
    engine: AsyncEngine, seed: int, spilling: bool
) -> None:
    rng = random.Random(seed)
    declared: list[Callable[[], Any]] = []  # fresh items each time: a Column has one table
    _, packages = notes()
    await migrator.migrate(engine, packages)
    agreed = Agreement()
    with agreed.spilling() if spilling else contextlib.nullcontext():
        await _walk(engine, rng, declared, agreed)


async def _walk(
    engine: AsyncEngine, rng: random.Random, declared: list[Callable[[], Any]],
    agreed: Agreement,
) -> None:
    for step in range(14):
        move = rng.choice(["declare", "declare", "by hand", "sync", "sync", "undeclare"])
        if move == "declare":
            name = f"d{step}"
            declared.append(rng.choice([
                lambda name=name: Column(name, Text),
                lambda name=name: Column(name, Integer, server_default=text("7")),
                lambda step=step: Index(f"ix_d{step}", "body"),
            ]))
        elif move == "undeclare" and declared:
            declared.pop(rng.randrange(len(declared)))
        package, packages = notes(*(make() for make in declared))
        differences: list[Any] = []
        async with engine.connect() as conn:
            kept = await diff.compare(conn, package, packages, agreed=agreed)
            fresh = (await diff.compare_each(conn, [package], packages))[package.name]
        assert sorted(d.words for d in kept) == sorted(d.words for d in fresh), step
        # What a save defers and compares after (`defer`, then `only`) is all of it.
        later = set(rng.sample(["ydtb_notes", "ydtb_tags"], rng.randrange(3)))
        async with engine.connect() as conn:
            split = [*await diff.compare(conn, package, packages, defer=later),
                     *await diff.compare(conn, package, packages, only=later)]
        assert sorted(d.words for d in split) == sorted(d.words for d in fresh), step
        differences = [d for d in fresh if not d.destructive]
        async with engine.begin() as conn:
            if move == "by hand":
                table = rng.choice(["ydtb_notes", "ydtb_tags"])
                await conn.execute(text(rng.choice(_BY_HAND).format(table=table, step=step)))
            elif move == "sync":
                for statement in (s for d in differences for s in d.statements):
                    await conn.execute(text(statement))


async def test_the_server_is_asked_once_whether_two_defaults_are_equal(
    engine: AsyncEngine,
) -> None:
    package, packages = notes()  # title: 'a'::text in the database, 'a' declared
    await migrator.migrate(engine, packages)
    agreed = Agreement()
    asked: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and statement.endswith("AS anon_1"):
            asked.append(statement)  # alembic's question: SELECT <one> = <other>

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        assert await compare(engine, package, packages, agreed) == []
        edited, packages = notes(Column("color", Text))
        assert await compare(engine, edited, packages, agreed) == [
            "table ydtb_notes: column color declared but missing"]
        async with engine.connect() as conn:  # without what it kept: asked again
            await diff.compare(conn, edited, packages)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)

    assert asked == ["SELECT 'a'::text = 'a' AS anon_1"] * 2


def _reading(table: str) -> dict[str, Any]:
    """A reading the size of alembic's reflection of a table of 8 columns (~1.7 kB)."""
    return {"columns": [{"name": f"{table}_c{i}", "type": Text(), "nullable": True,
                         "default": None, "comment": "x" * 100} for i in range(8)]}


def test_a_reading_is_a_copy_marking_it_leaves_what_is_kept() -> None:
    agreed = Agreement()
    agreed.keep("ydtb_notes", "reflected", "k1", _reading("ydtb_notes"))
    first = agreed.reading("ydtb_notes", "reflected", "k1")
    first["columns"].clear()
    assert len(agreed.reading("ydtb_notes", "reflected", "k1")["columns"]) == 8
    assert agreed.reading("ydtb_notes", "reflected", "k2") is None  # another catalog key


def test_the_readings_of_every_table_a_benchmark_goes_round_are_kept() -> None:
    # 30 packages of 5 tables, each read twice (reflection, shapes): at 256 readings,
    # the first packages' were gone by the time the next round of saves reached them.
    agreed = Agreement()
    tables = [f"ydtb_p{p:03d}_t{t}" for p in range(30) for t in range(5)]
    for name in tables:
        agreed.keep(name, "reflected", "k", _reading(name))
        agreed.keep(name, "shapes", "k", {"name": name})
    assert all(agreed.has_reading(name, "reflected", "k")
               and agreed.has_reading(name, "shapes", "k") for name in tables)


def test_the_oldest_readings_go_once_the_kept_bytes_are_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agreement, "KEPT_BYTES", 20_000)
    agreed = Agreement()
    tables = [f"ydtb_t{n}" for n in range(40)]
    for name in tables:
        agreed.keep(name, "reflected", "k", _reading(name))
    kept = [name for name in tables if agreed.has_reading(name, "reflected", "k")]
    assert kept == tables[-len(kept):]  # the latest, in order
    assert 0 < len(kept) < len(tables)
    agreed.keep(tables[-1], "reflected", None, _reading("gone"))  # gone from the database
    assert not agreed.has_reading(tables[-1], "reflected", "k")


_OPS = st.lists(st.tuples(
    st.sampled_from(["keep", "keep", "read", "gone"]),
    st.sampled_from(["ydtb_a", "ydtb_b", "ydtb_c"]),
    st.sampled_from(["reflected", "shapes"]),
    st.sampled_from(["k1", "k2"]),
    st.integers(0, 3)), max_size=40)


@given(_OPS)
@settings(max_examples=60, deadline=None)
def test_a_spilling_agreement_reads_back_what_it_kept_as_memory_would(
    ops: list[tuple[str, str, str, str, int]],
) -> None:
    model: dict[tuple[str, str], tuple[str, Any]] = {}  # every reading, kept forever
    agreed = Agreement()
    with agreed.spilling():
        assert agreed.spills
        for op, name, what, catalog, value in ops:
            reading = {"columns": [{"name": f"c{value}", "type": Text()}] * value}
            if op == "keep":
                agreed.keep(name, what, catalog, reading)
                model[(name, what)] = (catalog, reading)
            elif op == "gone":
                agreed.keep(name, what, None, reading)
                model.pop((name, what), None)
            kept = model.get((name, what))
            expected = kept[1] if kept is not None and kept[0] == catalog else None
            assert agreed.has_reading(name, what, catalog) == (expected is not None)
            assert repr(agreed.reading(name, what, catalog)) == repr(expected)
    assert not agreed.spills
    assert not any(agreed.has_reading(name, what, catalog)
                   for (name, what), (catalog, _) in model.items())


def test_with_no_temporary_file_the_readings_are_kept_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr(agreement.tempfile, "TemporaryFile", refused)
    agreed = Agreement()
    with agreed.spilling():
        assert not agreed.spills
        agreed.keep("ydtb_notes", "reflected", "k", _reading("ydtb_notes"))
        assert agreed.has_reading("ydtb_notes", "reflected", "k")


def test_a_full_disk_keeps_no_reading_and_breaks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agreed = Agreement()
    with agreed.spilling():
        agreed.keep("ydtb_notes", "reflected", "k1", _reading("ydtb_notes"))

        def full(*_args: Any) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(agreement.os, "pwrite", full)
        agreed.keep("ydtb_notes", "reflected", "k2", _reading("ydtb_notes"))
        assert agreed.reading("ydtb_notes", "reflected", "k2") is None  # read again
        assert agreed.reading("ydtb_notes", "reflected", "k1") is None  # not the old one
