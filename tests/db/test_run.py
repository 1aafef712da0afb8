"""The run: the one writer of the ledger, and the one reader it reads with."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import asyncpg
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

import runtime
from runtime import DatabaseRegistry, Migration, signals
from runtime.core.events import ChangeKind
from runtime.core.plan import plan_pending
from runtime.db import ledger, migrator
from runtime.db.engine import driver
from runtime.db.run import LOCK_ID, Run
from runtime.db.urls import plain_url

WRITES = re.compile(
    r"\b(write_rows|write_packages|forget_dev_changes|mark_uninstalled|forget_package)\(")


def test_only_the_run_writes_the_ledger() -> None:
    root = Path(runtime.__file__).parent
    writers = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                     if WRITES.search(path.read_text()))
    assert writers == ["db/ledger.py", "db/run.py"]


def _register(registry: DatabaseRegistry, name: str, sql: str) -> None:
    metadata = MetaData()
    Table(f"ydtb_{name}", metadata, Column("id", Integer, primary_key=True),
          Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False))
    registry.register_database(
        package_name=name, schema=metadata, version="1.0.0",
        migrations=[Migration("0001_create", f"CREATE TABLE IF NOT EXISTS ydtb_{name} "
                              "(id int PRIMARY KEY, workspace_id varchar(20) NOT NULL "
                              f"REFERENCES ydtb_workspaces(id) ON DELETE CASCADE){sql}")])


async def _kinds(engine: AsyncEngine) -> dict[tuple[str, str], str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT package, migration, kind FROM ydtb_schema_migrations WHERE package <> "
            "'@ydtb/core'"))
        return {(r[0], r[1]): r[2] for r in rows}


async def test_one_reader_reads_every_package_or_some(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    _register(registry, "notes", "")
    _register(registry, "tags", "")
    await migrator.migrate(engine, registry.ordered())

    async with engine.connect() as conn:
        raw = await driver(conn)
        everything = await ledger.read_ledger(raw)
        some = await ledger.read_ledger(raw, ["tags"])

    assert set(everything.recorded) == {"@ydtb/core", "notes", "tags"}
    assert set(some.recorded) == {"tags"}
    assert set(some.applied) == {("tags", "0001_create")}


async def test_a_run_answers_for_the_dev_changes_of_the_packages_it_read(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    _register(registry, "notes", "")
    _register(registry, "tags", "")
    await migrator.migrate(engine, registry.ordered())
    async with Run.open(engine) as run, run.transaction():
        run.record_dev(registry.get("notes"), "dev:1", [("dev:1 table ydtb_notes", "x")],
                       (), 1.0)

    async with Run.open(engine, packages=["notes"]) as run:
        assert run.dev_rows("notes") == ("dev:1 table ydtb_notes",)
        assert run.dev_rows("tags") is None  # not read: the caller reads it
    async with Run.open(engine) as run:
        assert run.dev_rows("tags") == ()
    async with Run.open(engine, read=False) as run:
        assert run.dev_rows("notes") is None


async def test_each_row_is_recorded_with_its_kind_and_announced_after_commit(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    _register(registry, "notes", "")
    await migrator.migrate(engine, registry.ordered())
    _register(registry, "notes", ";\nSELECT 1")  # the migration edited, as in a dev loop

    seen: list[tuple[str, int]] = []

    async def applied(_sender: object, *, migration: str, **_: object) -> None:
        async with engine.connect() as conn:  # another connection sees it: committed
            count = (await conn.execute(text(
                "SELECT count(*) FROM ydtb_schema_migrations WHERE kind = 'rerun'"))).scalar()
        seen.append((migration, int(count or 0)))

    with signals.migration_applied.connected_to(applied):
        report = await migrator.migrate(engine, registry.ordered(), rerun_edited=True)

    assert report.applied[0].kind is ChangeKind.RERUN
    assert seen == [("0001_create", 1)]
    assert await _kinds(engine) == {("notes", "0001_create"): "rerun"}


async def test_a_discarded_transaction_leaves_nothing(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry(send_signals=False)
    _register(registry, "notes", "")
    await migrator.migrate(engine, registry.ordered()[:1])  # the core alone

    async with Run.open(engine) as run:
        plan = plan_pending(registry.ordered(), run.ledger)
        async with run.transaction():
            await run.apply(plan.steps)
            run.discard()
    report = await run.report()

    assert [s.migration.id for s in plan.steps] == ["0001_create"]
    assert report.applied == ()
    assert await _kinds(engine) == {}
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT to_regclass('ydtb_notes')"))).scalar() is None


async def test_a_cancelled_run_lets_the_lock_go(engine: AsyncEngine, database_url: str) -> None:
    # Its unlock was cancelled with it, and the connection went back to the pool still
    # holding the lock: the next run on another connection (a daemon started again in
    # the same process, a `migrate` elsewhere) waited for it without end.
    with anyio.CancelScope() as scope:
        async with Run.open(engine):
            scope.cancel()
            await anyio.sleep(5)

    other = await asyncpg.connect(plain_url(database_url))
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID) is True
    finally:
        await other.close()
    async with engine.connect() as conn:  # and the pooled connection holds none either
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = " \
               "pg_backend_pid()"
        assert (await conn.execute(text(held))).scalar() == 0
