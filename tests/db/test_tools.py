"""The tools catalog on a real database: what runs register, and each workspace's choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry, Migration, Tool
from runtime.core.names import UNREGISTERED
from runtime.db import engine as db_engine
from runtime.db import migrator
from runtime.db.tools import (
    WorkspaceTool,
    disable_tool,
    enable_tool,
    list_tools,
)
from runtime.errors import ToolInactiveError, ToolNotFoundError, WorkspaceNotFoundError

TIMER = Tool("timer", "Timer", "Track time.", "clock")
STOPWATCH = Tool("stopwatch", "Stopwatch")
NOTEPAD = Tool("notepad", "Notepad", "Write things down.", "pencil")


def register(registry: DatabaseRegistry, name: str, tools: Sequence[Tool],
             version: str = "1.0.0", **options: Any) -> None:
    table = "ydtb_" + name.rpartition("/")[2]
    metadata = MetaData()
    Table(table, metadata, Column("id", Integer, primary_key=True),
          Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False))
    create = (f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, "
              "workspace_id varchar(20) NOT NULL REFERENCES ydtb_workspaces(id) ON DELETE CASCADE)")
    registry.register_database(package_name=name, schema=metadata, version=version,
                               migrations=[Migration("0001_create", create)], tools=tools,
                               **options)


@pytest.fixture
def registry() -> DatabaseRegistry:
    registry = DatabaseRegistry(send_signals=False)
    register(registry, "@t/timer", [TIMER, STOPWATCH])
    register(registry, "@t/notes", [NOTEPAD])
    register(registry, "@t/plain", [])
    return registry


async def rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(text(
            "SELECT id, name, is_active, package_name FROM ydtb_tools ORDER BY id"))
        return [tuple(row) for row in result]


async def add_workspaces(engine: AsyncEngine, *ids: str) -> None:
    async with engine.begin() as conn:
        for workspace in ids:
            await conn.execute(text("INSERT INTO ydtb_workspaces (id, name, slug) "
                                    "VALUES (:id, :id, :id)"), {"id": workspace})


# -- what runs register ---------------------------------------------------------------


async def test_a_run_registers_every_tool_with_its_package(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())

    assert await rows(engine) == [("notepad", "Notepad", True, "@t/notes"),
                                  ("stopwatch", "Stopwatch", True, "@t/timer"),
                                  ("timer", "Timer", True, "@t/timer")]


async def test_a_no_op_run_is_still_one_ledger_read(
    engine: AsyncEngine, registry: DatabaseRegistry, database_url: str
) -> None:
    register(registry, "@t/secret", [], row_level_security=True)
    await migrator.migrate(engine, registry.ordered())
    watched = db_engine.create_engine(database_url)
    queries: list[str] = []

    @event.listens_for(watched.sync_engine, "connect")
    def log_queries(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda logged: queries.append(logged.query))

    try:
        report = await migrator.migrate(watched, registry.ordered())
    finally:
        await watched.dispose()

    reads = [q for q in queries if "advisory" not in q]
    assert not report.changed
    assert len(reads) == 1 and "ydtb_schema_migrations" in reads[0]


async def test_a_changed_tool_re_records_its_package(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    register(registry, "@t/timer", [Tool("timer", "Time tracker", "Track time.", "clock")])

    report = await migrator.migrate(engine, registry.ordered())

    assert (report.applied, report.recorded) == ((), ("@t/timer",))
    assert await rows(engine) == [("notepad", "Notepad", True, "@t/notes"),
                                  ("stopwatch", "Stopwatch", False, "@t/timer"),
                                  ("timer", "Time tracker", True, "@t/timer")]


async def test_a_full_run_deactivates_the_tools_of_unregistered_packages_once(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    registry.unregister("@t/timer")

    report = await migrator.migrate(engine, registry.ordered())
    again = await migrator.migrate(engine, registry.ordered())

    assert (report.recorded, report.unregistered, report.changed) == ((), ("@t/timer",), True)
    assert not again.changed
    assert [r[:3] for r in await rows(engine)] == [("notepad", "Notepad", True),
                                                  ("stopwatch", "Stopwatch", False),
                                                  ("timer", "Timer", False)]
    async with engine.connect() as conn:
        recorded = (await conn.execute(text("SELECT version, schema_fingerprint FROM "
                                            "ydtb_packages WHERE package = '@t/timer'"))).one()
    assert tuple(recorded) == ("1.0.0", UNREGISTERED)


async def test_a_package_registered_again_gets_its_tools_back(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    registry.unregister("@t/timer")
    await migrator.migrate(engine, registry.ordered())
    register(registry, "@t/timer", [TIMER, STOPWATCH])

    report = await migrator.migrate(engine, registry.ordered())

    assert (report.applied, report.recorded) == ((), ("@t/timer",))
    assert all(active for _, _, active, _ in await rows(engine))


async def test_a_partial_run_leaves_the_packages_outside_its_closure_alone(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    register(registry, "@t/notes", [NOTEPAD], version="1.1.0")

    report = await migrator.migrate(engine, [registry.get("@t/notes")], partial=True)

    assert (report.recorded, report.unregistered) == (("@t/notes",), ())
    assert all(active for _, _, active, _ in await rows(engine))


async def test_a_partial_run_deactivates_the_packages_its_caller_unregistered(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    registry.unregister("@t/timer")

    # What the dev daemon runs when a package directory is deleted: nothing else changed.
    report = await migrator.migrate(engine, [], partial=True, unregistered=["@t/timer"])

    assert (report.applied, report.recorded, report.unregistered) == ((), (), ("@t/timer",))
    assert [r[:3] for r in await rows(engine)] == [("notepad", "Notepad", True),
                                                  ("stopwatch", "Stopwatch", False),
                                                  ("timer", "Timer", False)]
    assert not (await migrator.migrate(engine, registry.ordered())).changed


# -- each workspace's choice ------------------------------------------------------------


@pytest.fixture
async def catalog(engine: AsyncEngine, registry: DatabaseRegistry) -> AsyncEngine:
    """The registry migrated, with workspaces w1 and w2."""
    await migrator.migrate(engine, registry.ordered())
    await add_workspaces(engine, "w1", "w2")
    return engine


async def test_a_workspace_enables_and_disables_a_tool(catalog: AsyncEngine) -> None:
    assert await enable_tool(catalog, "w1", "timer") is True
    assert await enable_tool(catalog, "w1", "timer") is False

    listed = await list_tools(catalog, "w1")
    other = await list_tools(catalog, "w2")

    assert [(t.id, t.name, t.package, t.enabled) for t in listed] == [
        ("notepad", "Notepad", "@t/notes", False), ("stopwatch", "Stopwatch", "@t/timer", False),
        ("timer", "Timer", "@t/timer", True)]
    assert listed[2] == WorkspaceTool("timer", "Timer", "Track time.", "clock", "@t/timer",
                                      listed[2].enabled_at)
    assert not any(t.enabled for t in other)
    assert await disable_tool(catalog, "w1", "timer") is True
    assert await disable_tool(catalog, "w1", "timer") is False
    assert not any(t.enabled for t in await list_tools(catalog, "w1"))


async def test_an_unknown_tool_is_named_with_those_available(catalog: AsyncEngine) -> None:
    with pytest.raises(ToolNotFoundError) as caught:
        await enable_tool(catalog, "w1", "timr")

    assert str(caught.value) == (
        "workspace 'w1': tool 'timr' is not registered (available: notepad, stopwatch, timer; "
        "check the id, or register the package that provides it)")
    with pytest.raises(ToolNotFoundError):
        await disable_tool(catalog, "w1", "timr")


async def test_an_unknown_workspace_is_named(catalog: AsyncEngine) -> None:
    message = ("workspace 'w9' does not exist (check the id, or create the workspace in "
               "ydtb_workspaces first)")
    for call in (enable_tool(catalog, "w9", "timer"), disable_tool(catalog, "w9", "timer"),
                 list_tools(catalog, "w9")):
        with pytest.raises(WorkspaceNotFoundError) as caught:
            await call
        assert str(caught.value) == message


async def test_an_inactive_tool_cannot_be_enabled_and_the_choice_survives(
    catalog: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await enable_tool(catalog, "w1", "timer")
    registry.unregister("@t/timer")
    await migrator.migrate(catalog, registry.ordered())

    with pytest.raises(ToolInactiveError) as caught:
        await enable_tool(catalog, "w2", "timer")
    hidden = [t.id for t in await list_tools(catalog, "w1")]
    register(registry, "@t/timer", [TIMER, STOPWATCH])
    await migrator.migrate(catalog, registry.ordered())

    assert str(caught.value) == (
        "workspace 'w2': tool 'timer' is inactive, its package @t/timer is no longer "
        "registered (register @t/timer again and migrate, then enable it)")
    assert hidden == ["notepad"]
    assert [t.id for t in await list_tools(catalog, "w1") if t.enabled] == ["timer"]
