"""Loading and migrating at once: packages applied while the next ones load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import NOTE_REFERENCE, NOTE_REFERENCE_SQL, create_sql, write_package

from runtime import DatabaseRegistry, LedgerConflictError, MigrationFailedError, signals
from runtime.db import ledger
from runtime.db.engine import driver
from runtime.load.pipeline import _queued, load_and_migrate


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """`a_tags` depends on `z_notes`, which loads after it (directories load by name)."""
    root = tmp_path / "packages"
    write_package(root, "z_notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "a_tags", name="tags", deps=["notes>=1"],
                  tables={"ydtb_tags": NOTE_REFERENCE},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", *NOTE_REFERENCE_SQL)})
    return root


async def run(engine: AsyncEngine, root: Path) -> Any:
    return await load_and_migrate(engine, [root], DatabaseRegistry(send_signals=False),
                                  entry_points=False)


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = "
                                       "'public'"))
        return {row[0] for row in rows}


async def test_applies_every_package_dependencies_first(engine: AsyncEngine, root: Path) -> None:
    applied: list[str] = []

    def note(sender: object, **kw: Any) -> None:
        applied.append(f"{kw['package']} {kw['migration']}")

    with signals.migration_applied.connected_to(note):
        outcome = await run(engine, root)

    assert [p.name for p in outcome.packages] == ["@ydtb/core", "notes", "tags"]
    assert [f"{a.package} {a.migration}" for a in outcome.report.applied] == applied == [
        "@ydtb/core 0001_core_tables", "@ydtb/core 0002_package_tables",
        "notes 0001_create_ydtb_notes", "tags 0001_tags"]
    assert outcome.report.recorded == ("@ydtb/core", "notes", "tags")
    async with engine.connect() as conn:
        recorded = await ledger.read_ledger(await driver(conn))
    assert set(recorded.recorded) == {"@ydtb/core", "notes", "tags"}
    assert ("tags", "0001_tags") in recorded.applied


async def test_a_second_run_applies_nothing(engine: AsyncEngine, root: Path) -> None:
    await run(engine, root)
    outcome = await run(engine, root)
    assert (outcome.report.applied, outcome.report.recorded) == ((), ())


async def test_a_run_creating_the_table_of_tables_records_every_package(
    engine: AsyncEngine, root: Path
) -> None:
    await run(engine, root)
    async with engine.begin() as conn:  # as a runtime before the core's 0002 left it
        await conn.execute(text("DROP TABLE ydtb_package_tables"))
        await conn.execute(text("DELETE FROM ydtb_schema_migrations "
                                "WHERE migration = '0002_package_tables'"))

    outcome = await run(engine, root)

    assert [a.migration for a in outcome.report.applied] == ["0002_package_tables"]
    assert outcome.report.recorded == ("@ydtb/core", "notes", "tags")
    async with engine.connect() as conn:
        assert (await ledger.read_tables(await driver(conn)))["tags"] == ("ydtb_tags",)


async def test_an_invalid_set_applies_nothing(engine: AsyncEngine, root: Path) -> None:
    # tags references ydtb_notes without depending on notes: found once all have loaded.
    write_package(root, "a_tags", name="tags", tables={"ydtb_tags": NOTE_REFERENCE},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", "note_id int")})

    outcome = await run(engine, root)

    assert outcome.report is None and outcome.packages is None
    assert "[Y205]" in str(outcome.problems)
    assert await tables(engine) == set()


async def test_a_directory_that_fails_to_load_applies_nothing(
    engine: AsyncEngine, root: Path
) -> None:
    (root / "z_notes/package.py").write_text("def register(registry):\n    1 / 0\n")

    outcome = await run(engine, root)

    assert outcome.report is None
    assert "ZeroDivisionError" in str(outcome.load.errors[0])
    assert await tables(engine) == set()


async def test_a_failing_migration_raises_and_applies_nothing(
    engine: AsyncEngine, root: Path
) -> None:
    (root / "a_tags/migrations/0002_bad.sql").write_text("SELECT nope;")

    with pytest.raises(MigrationFailedError, match="tags: migration 0002_bad failed"):
        await run(engine, root)

    assert await tables(engine) == set()


async def test_a_migration_outside_a_transaction_runs_on_the_ordinary_path(
    engine: AsyncEngine, root: Path
) -> None:
    (root / "z_notes/migrations/0002_index.sql").write_text(
        "-- runtime: no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_n ON ydtb_notes (id);")

    outcome = await run(engine, root)

    assert [a.migration for a in outcome.report.applied] == [
        "0001_core_tables", "0002_package_tables", "0001_create_ydtb_notes", "0002_index",
        "0001_tags"]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT to_regclass('ix_n')"))).scalar() == "ix_n"


async def test_an_edited_applied_migration_is_refused(engine: AsyncEngine, root: Path) -> None:
    await run(engine, root)
    sql = root / "a_tags/migrations/0001_tags.sql"
    sql.write_text(sql.read_text() + "-- edited\n")

    with pytest.raises(LedgerConflictError, match="0001_tags was edited after it was applied"):
        await run(engine, root)


async def test_what_arrived_meanwhile_is_taken_along() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Any]](10)
    for group in (["a"], ["b", "c"], ["d"]):
        send.send_nowait(group)
    send.close()

    with receive:
        assert await receive.receive() == ["a"]
        assert _queued(receive) == ["b", "c", "d"]
        assert _queued(receive) == []
