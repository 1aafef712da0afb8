"""Applying packages as they arrive (`runtime.db.stream`), one round trip per arrival."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Column, Integer, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from support import NOTE_REFERENCE_SQL, create_sql

from runtime import DatabaseRegistry, Migration, Package, kit
from runtime.core.schema import CORE_PACKAGE
from runtime.db.stream import migrate_as_loaded
from runtime.kit import metadata, workspace_table


@pytest.fixture
def queries(engine: AsyncEngine) -> list[str]:
    """Every query the engine's connections send, as sent."""
    sent: list[str] = []

    def log(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda q: sent.append(q.query))

    event.listen(engine.sync_engine, "connect", log)
    return sent


def registry_of_two(*tags_after: Migration) -> DatabaseRegistry:
    registry = DatabaseRegistry(send_signals=False)
    notes = metadata()
    workspace_table("ydtb_notes", notes, Column("id", Integer, primary_key=True),
                    Column("more", Integer), kit.workspace_key())
    registry.register_database(
        package_name="notes", schema=notes, version="1.0.0",
        migrations=[Migration("0001_notes", create_sql("ydtb_notes")),
                    Migration("0002_more", "ALTER TABLE ydtb_notes ADD COLUMN more int")])
    tags = metadata()
    workspace_table("ydtb_tags", tags, Column("id", Integer, primary_key=True),
                    Column("note_id", Integer), kit.workspace_reference("note_id", "ydtb_notes"))
    registry.register_database(
        package_name="tags", schema=tags, version="1.0.0", dependencies=["notes>=1"],
        migrations=[Migration("0001_tags", create_sql(
            "ydtb_tags", *NOTE_REFERENCE_SQL)), *tags_after])
    return registry


async def arriving(*groups: Sequence[Package]) -> AsyncIterator[Sequence[Package]]:
    for group in groups:
        yield group


async def test_packages_that_arrive_together_are_sent_in_one_round_trip(
    engine: AsyncEngine, queries: list[str]
) -> None:
    registry = registry_of_two()
    core, notes, tags = (registry.get(n) for n in (CORE_PACKAGE, "notes", "tags"))

    report = await migrate_as_loaded(engine, arriving([core], [tags, notes]),
                                     registry.ordered)

    assert report is not None
    assert [(a.package, a.migration) for a in report.applied] == [
        (CORE_PACKAGE, "0001_core_tables"), (CORE_PACKAGE, "0002_package_tables"),
        ("notes", "0001_notes"), ("notes", "0002_more"), ("tags", "0001_tags")]
    # Notes before tags, which depends on it, whatever the order they came in.
    sent = [q for q in queries if "ydtb_notes" in q or "ydtb_tags" in q]
    assert len(sent) == 1
    assert sent[0].index("EXISTS ydtb_notes") < sent[0].index("ALTER TABLE ydtb_notes") \
        < sent[0].index("EXISTS ydtb_tags")
    times = {a.duration_ms for a in report.applied if a.package != CORE_PACKAGE}
    assert len(times) == 1 and times.pop() > 0  # the round trip's time, shared


async def test_packages_that_arrive_apart_are_sent_apart(
    engine: AsyncEngine, queries: list[str]
) -> None:
    registry = registry_of_two()
    core, notes, tags = (registry.get(n) for n in (CORE_PACKAGE, "notes", "tags"))

    await migrate_as_loaded(engine, arriving([core], [notes], [tags]), registry.ordered)

    created = [[t for t in ("ydtb_notes", "ydtb_tags") if f"EXISTS {t} (" in q]
               for q in queries]
    assert [tables for tables in created if tables] == [["ydtb_notes"], ["ydtb_tags"]]


async def test_a_python_migration_runs_alone_in_its_place(
    engine: AsyncEngine, queries: list[str]
) -> None:
    async def seed(conn: AsyncConnection) -> None:
        await conn.execute(text("ALTER TABLE ydtb_tags ADD COLUMN seeded int"))

    registry = registry_of_two(
        Migration("0002_seed", seed),
        Migration("0003_index", "CREATE INDEX ix_seeded ON ydtb_tags (seeded)"))
    core, notes, tags = (registry.get(n) for n in (CORE_PACKAGE, "notes", "tags"))

    report = await migrate_as_loaded(engine, arriving([core], [notes, tags]),
                                     registry.ordered)

    assert report is not None
    assert [a.migration for a in report.applied if a.package == "tags"] == [
        "0001_tags", "0002_seed", "0003_index"]
    # Streamed, not rolled back and run again: the tables are created once, by one
    # script, and the index after the Python migration made its column.
    sent = [q for q in queries if "ydtb_tags" in q]
    assert ["EXISTS ydtb_tags (" in q for q in sent] == [True, False]
    assert "EXISTS ydtb_notes (" in sent[0] and "ix_seeded" in sent[1]
