"""Uninstalling against a real PostgreSQL: one transaction under the pipeline's lock."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Migration
from runtime.db import leftovers, migrator
from runtime.db.run import LOCK_ID


def registry_of(*names: str) -> DatabaseRegistry:
    registry = DatabaseRegistry(send_signals=False)
    for name in names:
        metadata = MetaData()
        Table(f"ydtb_{name}", metadata, Column("id", Integer, primary_key=True),
              Column("workspace_id", String(20),
                     ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"), nullable=False))
        registry.register_database(
            package_name=name, schema=metadata, version="1.0.0",
            migrations=[Migration("0001_create", f"CREATE TABLE IF NOT EXISTS ydtb_{name} "
                                  "(id int PRIMARY KEY, workspace_id varchar(20) NOT NULL "
                                  "REFERENCES ydtb_workspaces(id) ON DELETE CASCADE)")])
    return registry


async def state(engine: AsyncEngine) -> tuple[object, ...]:
    async with engine.connect() as conn:
        return tuple([(await conn.execute(text(sql))).scalar() for sql in (
            "SELECT to_regclass('ydtb_tags')::text",
            "SELECT count(*) FROM ydtb_schema_migrations WHERE package = 'tags'",
            "SELECT schema_fingerprint FROM ydtb_packages WHERE package = 'tags'")])


async def test_a_purge_failing_after_its_drop_leaves_everything_as_it_was(
    engine: AsyncEngine,
) -> None:
    await migrator.migrate(engine, registry_of("notes", "tags").ordered())
    packages = registry_of("notes").ordered()
    before = await state(engine)
    async with engine.begin() as conn:  # the ledger refuses, after the tables are dropped
        await conn.execute(text(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"))
        await conn.execute(text("CREATE TRIGGER refuse BEFORE DELETE ON ydtb_schema_migrations "
                                "FOR EACH ROW EXECUTE FUNCTION refuse()"))

    with pytest.raises(asyncpg.RaiseError, match="refused"):
        await leftovers.uninstall(engine, packages, "tags", purge=True)

    assert before[0] == "ydtb_tags" and await state(engine) == before
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER refuse ON ydtb_schema_migrations"))
    plan = await leftovers.uninstall(engine, packages, "tags", purge=True)
    assert plan.drop == ("ydtb_tags",)
    assert await state(engine) == (None, 0, None)


async def test_uninstall_waits_for_a_run_holding_the_lock(engine: AsyncEngine) -> None:
    await migrator.migrate(engine, registry_of("notes", "tags").ordered())
    packages = registry_of("notes").ordered()
    before = await state(engine)
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
        task = asyncio.create_task(leftovers.uninstall(engine, packages, "tags"))
        await asyncio.sleep(0.5)  # it tries for the lock, which is held, and waits
        assert not task.done()
        assert await state(engine) == before
        await holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
        await task

    assert await state(engine) == ("ydtb_tags", 1, "uninstalled")


async def test_a_package_known_by_its_migrations_alone_is_recorded_as_uninstalled(
    engine: AsyncEngine,
) -> None:
    await migrator.migrate(engine, registry_of("notes", "tags").ordered())
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM ydtb_packages WHERE package = 'tags'"))

    await leftovers.uninstall(engine, registry_of("notes").ordered(), "tags")

    assert await state(engine) == ("ydtb_tags", 1, "uninstalled")
    async with engine.connect() as conn:
        assert (await conn.execute(text(
            "SELECT version FROM ydtb_packages WHERE package = 'tags'"))).scalar() == "1.0.0"


async def test_the_types_a_purge_drops_are_those_only_its_tables_use(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        for statement in (
            "CREATE TYPE ydtb_a_kind AS ENUM ('x')", "CREATE TYPE ydtb_a_mood AS ENUM ('y')",
            "CREATE TYPE ydtb_shared AS ENUM ('z')", "CREATE TYPE ydtb_unused AS ENUM ('u')",
            "CREATE TABLE ydtb_a1 (kind ydtb_a_kind, moods ydtb_a_mood[], s ydtb_shared)",
            "CREATE TABLE ydtb_a2 (kind ydtb_a_kind)",
            "CREATE TABLE ydtb_b (s ydtb_shared)",
        ):
            await conn.execute(text(statement))
        raw = (await conn.get_raw_connection()).driver_connection

        # An array's element type counts; a type another table's column uses stays.
        assert await leftovers.types_only_of(raw, ["ydtb_a1", "ydtb_a2"]) == (
            "ydtb_a_kind", "ydtb_a_mood")
        assert await leftovers.types_only_of(raw, ["ydtb_a1"]) == ("ydtb_a_mood",)
        assert await leftovers.types_only_of(raw, ["ydtb_b"]) == ()
