"""Workspace isolation on what migrations build, read from the database (Y501-Y504).

Every test runs twice: as a superuser (event triggers note what each migration does) and
as an ordinary role that may not create event triggers (the catalog is compared around
each migration). Both must give the same answer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Column, Enum, Integer, Text, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runtime import kit
from runtime.core.model import Migration
from runtime.core.registry import DatabaseRegistry
from runtime.db import built, checks, migrator, urls
from runtime.db import engine as db_engine
from runtime.errors import IsolationError

NOTES = ("CREATE TABLE IF NOT EXISTS ydtb_notes (id int PRIMARY KEY, workspace_id "
         "varchar(20) NOT NULL REFERENCES ydtb_workspaces (id) ON DELETE CASCADE);")


async def run(engine: AsyncEngine, sql: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql))


@pytest.fixture(params=["superuser", "ordinary role"])
async def db(request: pytest.FixtureRequest, engine: AsyncEngine,
             database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty database: as a superuser, or as an ordinary role owning it."""
    if request.param == "superuser":
        yield engine
        return
    role = f"owner_{uuid.uuid4().hex[:8]}"
    name = make_url(urls.to_async_url(database_url)).database
    await run(engine, f"CREATE ROLE {role} LOGIN PASSWORD 'owner'")
    await run(engine, f"ALTER DATABASE {name} OWNER TO {role}")
    await run(engine, f"ALTER SCHEMA public OWNER TO {role}")
    url = make_url(urls.to_async_url(database_url)).set(username=role, password="owner")
    owned = db_engine.create_engine(url.render_as_string(hide_password=False))
    try:
        yield owned
    finally:
        await owned.dispose()
        await run(engine, f"ALTER DATABASE {name} OWNER TO CURRENT_USER")
        await run(engine, "ALTER SCHEMA public OWNER TO pg_database_owner")
        await run(engine, f"DROP OWNED BY {role}")
        await run(engine, f"DROP ROLE {role}")


def notes(registry: DatabaseRegistry, *migrations: Migration, **kwargs: Any) -> None:
    """Register `@t/notes` (table ydtb_notes) with `NOTES` and `migrations` after it."""
    metadata = kit.metadata()
    kit.workspace_table("ydtb_notes", metadata, Column("id", Integer, primary_key=True),
                        *kwargs.pop("columns", ()))
    registry.register_database(package_name="@t/notes", schema=metadata, version="1.0.0",
                               migrations=[Migration("0001_notes", up=NOTES), *migrations],
                               **kwargs)


async def refused(db: AsyncEngine, registry: DatabaseRegistry) -> list[str]:
    with pytest.raises(IsolationError) as caught:
        await migrator.migrate(db, registry.ordered())
    return [str(p) for p in caught.value.problems]


async def tables(db: AsyncEngine) -> set[str]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT tablename FROM pg_tables "
                                       "WHERE schemaname = 'public'"))
        return {row[0] for row in rows}


async def test_an_undeclared_table_is_refused_and_nothing_is_kept(db: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_rogue", up="CREATE TABLE IF NOT EXISTS rogue_global "
                                                "(id int PRIMARY KEY, secret text);"))

    assert await refused(db, registry) == [
        "@t/notes: migration 0002_rogue creates table rogue_global, which its schema does "
        "not declare (declare rogue_global in its schema.py, prefixed ydtb_ and with a NOT "
        "NULL workspace_id referencing ydtb_workspaces.id, or take it out of the migration) "
        "[Y501]"]
    assert "rogue_global" not in await tables(db)
    assert "ydtb_notes" not in await tables(db)  # the whole run was rolled back


async def test_what_the_triggers_noted_is_read_whole_a_batch_at_a_time(
    db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read in batches, not all at once (#17): the rogue table, noted after the core's
    # tables and ydtb_notes, comes many batches later and is judged all the same.
    monkeypatch.setattr(built, "_BATCH", 2)
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_rogue", up="CREATE TABLE IF NOT EXISTS rogue_global "
                                                "(id int PRIMARY KEY, secret text);"))

    [problem] = await refused(db, registry)

    assert problem.startswith("@t/notes: migration 0002_rogue creates table rogue_global")


async def test_a_python_migration_is_read_from_the_database_too(db: AsyncEngine) -> None:
    async def rogue(conn: AsyncConnection) -> None:
        await conn.execute(text("CREATE TABLE ydtb_hidden (id int)"))

    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_python", up=rogue))

    [problem] = await refused(db, registry)
    assert problem.startswith("@t/notes: migration 0002_python creates table ydtb_hidden")
    assert problem.endswith("[Y501]")


async def test_a_core_table_is_nobody_s_to_change(db: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_core", up="ALTER TABLE ydtb_workspaces "
                                              "ADD COLUMN IF NOT EXISTS plan text;"))

    assert await refused(db, registry) == [
        "@t/notes: migration 0002_core changes table ydtb_workspaces (ALTER TABLE), which it "
        "does not own (ydtb_workspaces is a core table, which no package changes) [Y502]"]


async def test_a_dependency_s_table_is_its_owner_s_to_change(db: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry)
    metadata = kit.metadata()
    kit.workspace_table("ydtb_tasks", metadata, Column("id", Integer, primary_key=True))
    registry.register_database(
        package_name="@t/tasks", schema=metadata, version="1.0.0",
        dependencies=["@t/notes"], migrations=[Migration("0001_tasks", up=(
            "CREATE TABLE IF NOT EXISTS ydtb_tasks (id int PRIMARY KEY, workspace_id "
            "varchar(20) NOT NULL REFERENCES ydtb_workspaces (id) ON DELETE CASCADE);"
            "CREATE INDEX IF NOT EXISTS ydtb_notes_by_ws ON ydtb_notes (workspace_id);"))])

    assert await refused(db, registry) == [
        "@t/tasks: migration 0001_tasks changes table ydtb_notes (CREATE INDEX), which it "
        "does not own (ask @t/notes, which owns ydtb_notes, to make the change in its own "
        "migrations) [Y502]"]


async def test_what_belongs_with_its_own_tables_passes(db: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_own", up="""
        CREATE TYPE ydtb_mood AS ENUM ('calm', 'busy');
        ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS mood ydtb_mood,
            ADD COLUMN IF NOT EXISTS body text, ADD COLUMN IF NOT EXISTS n serial,
            ADD CONSTRAINT ydtb_notes_body_short CHECK (length(body) < 1000);
        CREATE INDEX IF NOT EXISTS ydtb_notes_mood ON ydtb_notes (mood);
        COMMENT ON TABLE ydtb_notes IS 'notes';
        CREATE OR REPLACE FUNCTION ydtb_notes_touch() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER ydtb_notes_touch BEFORE UPDATE ON ydtb_notes
            FOR EACH ROW EXECUTE FUNCTION ydtb_notes_touch();
        DROP INDEX ydtb_notes_mood;
    """), columns=[Column("mood", Enum("calm", "busy", name="ydtb_mood")),
                   Column("body", Text), Column("n", Integer)])

    report = await migrator.migrate(db, registry.ordered())

    assert [c.migration for c in report.applied if c.package == "@t/notes"] == [
        "0001_notes", "0002_own"]
    async with db.connect() as conn:  # nothing of the watching stays behind
        assert (await conn.execute(text("SELECT count(*) FROM pg_event_trigger"))).scalar() == 0


@pytest.mark.parametrize(("sql", "expected"), [
    pytest.param("CREATE FUNCTION touch() RETURNS int LANGUAGE sql AS 'SELECT 1';",
                 "@t/notes: migration 0002_x creates function touch(), named outside the "
                 "package's namespace (name it after one of the package's tables, such as "
                 "ydtb_notes_touch(): ...) [Y503]", id="function"),
    pytest.param("CREATE TYPE ydtb_status AS ENUM ('a');",
                 "@t/notes: migration 0002_x creates type ydtb_status, named outside the "
                 "package's namespace (name it after one of the package's tables, such as "
                 "ydtb_notes_status: ...) [Y503]", id="type"),
    pytest.param("CREATE SCHEMA IF NOT EXISTS reports;",
                 "@t/notes: migration 0002_x creates schema reports: a package builds only "
                 "its own tables and what belongs to them (ask the platform's core package "
                 "to provide it) [Y504]", id="schema"),
])
async def test_objects_of_no_table_are_named_after_the_package_s_tables(
    db: AsyncEngine, sql: str, expected: str
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_x", up=sql))

    [problem] = await refused(db, registry)

    head, elided, tail = expected.partition(" ...")  # the rest of the hint
    assert problem.startswith(head) and problem.endswith(tail) if elided else \
        problem == expected, problem


async def test_check_db_reports_it_too(db: AsyncEngine, postgres_server_url: str) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, Migration("0002_rogue", up="CREATE TABLE IF NOT EXISTS rogue (id int);"))

    problems = await checks.check_migrations(postgres_server_url, registry.ordered())

    assert [(p.code, p.package, p.migration, p.table) for p in problems
            if p.code.startswith("Y5")] == [("Y501", "@t/notes", "0002_rogue", "rogue")]
