"""Row-level security and workspace-scoped connections, seen by an ordinary role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Migration
from runtime.db import engine as db_engine
from runtime.db import migrator, urls
from runtime.db.engine import driver
from runtime.db.security import POLICY, TableSecurity, read_table_security
from runtime.db.workspace import current_workspace, set_workspace, workspace_connection
from runtime.errors import RowLevelSecurityError

CREATE = ("CREATE TABLE IF NOT EXISTS ydtb_secrets (id int PRIMARY KEY, "
          "workspace_id varchar(20) NOT NULL REFERENCES ydtb_workspaces(id) ON DELETE CASCADE, "
          "body text)")


def register(registry: DatabaseRegistry, *, rls: bool = True, version: str = "1.0.0",
             migrations: list[str] | None = None) -> None:
    metadata = MetaData()
    Table("ydtb_secrets", metadata, Column("id", Integer, primary_key=True),
          Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False),
          Column("body", String))
    registry.register_database(
        package_name="@t/secrets", schema=metadata, version=version, row_level_security=rls,
        migrations=[Migration(f"{i:04d}_step", sql)
                    for i, sql in enumerate(migrations or [CREATE], 1)])


async def security(engine: AsyncEngine) -> TableSecurity:
    async with engine.connect() as conn:
        raw = await driver(conn)
        return (await read_table_security(raw, ["ydtb_secrets"]))["ydtb_secrets"]


async def run(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.begin() as conn:
        return await conn.execute(text(sql), params)


@pytest.fixture
async def app(engine: AsyncEngine, database_url: str) -> AsyncIterator[AsyncEngine]:
    """`@t/secrets` migrated with two workspaces' rows, and an engine of an ordinary role."""
    registry = DatabaseRegistry(send_signals=False)
    register(registry)
    await migrator.migrate(engine, registry.ordered())
    role = f"app_{uuid.uuid4().hex[:8]}"
    await run(engine, f"CREATE ROLE {role} LOGIN PASSWORD 'app'")
    await run(engine, f"GRANT SELECT, INSERT, UPDATE, DELETE ON ydtb_secrets TO {role}")
    await run(engine, "INSERT INTO ydtb_workspaces (id, name, slug) VALUES "
                      "('w1', 'One', 'one'), ('w2', 'Two', 'two')")
    await run(engine, "INSERT INTO ydtb_secrets VALUES (1, 'w1', 'one'), (2, 'w2', 'two')")
    url = make_url(urls.to_async_url(database_url)).set(username=role, password="app")
    app = db_engine.create_engine(url.render_as_string(hide_password=False))
    try:
        yield app
    finally:
        await app.dispose()
        await run(engine, f"DROP OWNED BY {role}")
        await run(engine, f"DROP ROLE {role}")


async def test_an_opted_in_package_has_its_tables_isolated(app: AsyncEngine,
                                                           engine: AsyncEngine) -> None:
    assert await security(engine) == TableSecurity("ydtb_secrets", True, True, (POLICY,))


async def test_a_workspace_sees_only_its_rows(app: AsyncEngine) -> None:
    async with workspace_connection(app, "w1") as conn:
        seen = (await conn.execute(text("SELECT id, body FROM ydtb_secrets"))).all()
        scoped = await current_workspace(conn)
        deleted = (await conn.execute(text("DELETE FROM ydtb_secrets WHERE id = 2"))).rowcount

    assert [tuple(row) for row in seen] == [(1, "one")]
    assert (scoped, deleted) == ("w1", 0)


@pytest.mark.parametrize("sql", [
    pytest.param("INSERT INTO ydtb_secrets VALUES (3, 'w2', 'sneaky')", id="insert"),
    pytest.param("UPDATE ydtb_secrets SET workspace_id = 'w2' WHERE id = 1", id="update"),
])
async def test_a_workspace_cannot_write_another_workspaces_rows(app: AsyncEngine,
                                                                sql: str) -> None:
    with pytest.raises(DBAPIError, match='new row violates row-level security policy for '
                       'table "ydtb_secrets"'):
        async with workspace_connection(app, "w1") as conn:
            await conn.execute(text(sql))


async def test_without_a_workspace_nothing_is_visible_or_writable(app: AsyncEngine) -> None:
    async with app.begin() as conn:
        seen = (await conn.execute(text("SELECT count(*) FROM ydtb_secrets"))).scalar()
        scoped = await current_workspace(conn)
    async with workspace_connection(app, "w2"):
        pass  # the setting ends with its transaction, even on a reused connection
    async with app.connect() as conn:
        after = (await conn.execute(text("SELECT count(*) FROM ydtb_secrets"))).scalar()

    assert (seen, scoped, after) == (0, None, 0)
    with pytest.raises(DBAPIError, match="violates row-level security policy"):
        await run(app, "INSERT INTO ydtb_secrets VALUES (3, 'w1', 'no workspace')")


async def test_set_workspace_scopes_a_transaction_already_open(app: AsyncEngine) -> None:
    async with app.begin() as conn:
        await set_workspace(conn, "w2")
        seen = (await conn.execute(text("SELECT body FROM ydtb_secrets"))).scalars().all()

    assert seen == ["two"]
    with pytest.raises(ValueError, match=r"^workspace_id must be a non-empty string, not ''$"):
        async with workspace_connection(app, ""):
            pass


async def test_switching_the_flag_on_and_off_later_is_noticed(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    register(registry, rls=False)
    await migrator.migrate(engine, registry.ordered())
    before = await security(engine)
    register(registry, rls=True)

    switched_on = await migrator.migrate(engine, registry.ordered())
    on = await security(engine)
    unchanged = await migrator.migrate(engine, registry.ordered())
    register(registry, rls=False)
    switched_off = await migrator.migrate(engine, registry.ordered())

    assert before == TableSecurity("ydtb_secrets", False, False, ())
    assert (switched_on.applied, switched_on.recorded) == ((), ("@t/secrets",))
    assert on.isolated and not unchanged.changed
    assert switched_off.recorded == ("@t/secrets",)
    assert await security(engine) == before


async def test_a_policy_of_the_package_keeps_row_level_security_on(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    own = ("ALTER TABLE ydtb_secrets ENABLE ROW LEVEL SECURITY; "
           "DROP POLICY IF EXISTS own ON ydtb_secrets; "
           "CREATE POLICY own ON ydtb_secrets FOR SELECT USING (body <> 'hidden')")
    register(registry, migrations=[CREATE, own])
    await migrator.migrate(engine, registry.ordered())
    register(registry, rls=False, migrations=[CREATE, own])

    await migrator.migrate(engine, registry.ordered())

    assert await security(engine) == TableSecurity("ydtb_secrets", True, True, ("own",))


async def test_a_re_run_migration_that_re_creates_a_table_gets_the_policy_back(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    register(registry)
    await migrator.migrate(engine, registry.ordered())
    register(registry, migrations=[f"DROP TABLE IF EXISTS ydtb_secrets; {CREATE}"])

    report = await migrator.migrate(engine, registry.ordered(), rerun_edited=True)

    assert [(a.migration, a.rerun) for a in report.applied] == [("0001_step", True)]
    assert (await security(engine)).isolated


async def test_a_declared_table_the_migrations_never_create_fails_the_run(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    register(registry, migrations=["SELECT 1"])

    with pytest.raises(RowLevelSecurityError) as caught:
        await migrator.migrate(engine, registry.ordered())

    assert str(caught.value) == (
        "@t/secrets: cannot enable row-level security: table 'ydtb_secrets' does not exist "
        "(the run's last transaction was rolled back; make the migrations create every table "
        "the schema declares, or set row_level_security=False)")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT to_regclass('ydtb_packages')"))).scalar() is None


async def test_reading_it_asks_the_server_to_describe_no_type(
        app: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncpg describes a type it has no codec for (name[]) with two extra queries on
    each new connection: 10 ms of a fresh database's time for every run (#16)."""
    described: list[object] = []
    original = asyncpg.Connection._introspect_types

    async def spy(self: asyncpg.Connection, *args: Any) -> Any:
        described.append(args[0])
        return await original(self, *args)

    monkeypatch.setattr(asyncpg.Connection, "_introspect_types", spy)
    fresh = db_engine.create_engine(database_url)
    try:
        assert await security(fresh) == TableSecurity("ydtb_secrets", True, True, (POLICY,))
    finally:
        await fresh.dispose()
    assert described == []
