"""Transaction modes of the pipeline against a real PostgreSQL: what commits together.

Rows written by one transaction carry its id (`xmin`), so the ledger itself shows which
migrations and package records committed together.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import create_sql

from runtime import DatabaseRegistry, Migration, MigrationFailedError, kit, signals
from runtime.config import TransactionMode
from runtime.db import migrator
from runtime.db.engine import create_engine
from runtime.db.urls import plain_url

CORE = ["@ydtb/core:0001_core_tables", "@ydtb/core:0002_package_tables"]


def _register(registry: DatabaseRegistry, name: str, migrations: Sequence[Migration],
              deps: Sequence[str] = ()) -> None:
    metadata = MetaData()
    Table(f"ydtb_{name}", metadata, Column("id", Integer, primary_key=True),
          Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id",
                                                        ondelete="CASCADE"), nullable=False),
          kit.workspace_key())
    registry.register_database(package_name=name, schema=metadata, migrations=migrations,
                               version="1.0.0", dependencies=deps)


@pytest.fixture
def registry() -> DatabaseRegistry:
    """a, then b (a lone CREATE INDEX CONCURRENTLY among its three), then c."""
    registry = DatabaseRegistry()
    _register(registry, "a", [
        Migration("0001_a", create_sql("ydtb_a", "name text")),
        Migration("0002_a", "CREATE INDEX IF NOT EXISTS ix_a ON ydtb_a (name)")])
    _register(registry, "b", [
        Migration("0001_b", create_sql("ydtb_b", "name text")),
        Migration("0002_index", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_b ON ydtb_b (name)",
                  transactional=False),
        Migration("0003_b", "CREATE INDEX IF NOT EXISTS ix_b2 ON ydtb_b (id, name)")], ["a"])
    _register(registry, "c", [Migration("0001_c", create_sql("ydtb_c"))], ["b"])
    return registry


async def _transactions(engine: AsyncEngine) -> list[set[str]]:
    """What each transaction wrote to the ledger: `package:migration` rows, `+package`
    records; in the order they committed."""
    query = text("""
        SELECT xmin::text::bigint AS tx, package || ':' || migration FROM ydtb_schema_migrations
        UNION ALL SELECT xmin::text::bigint, '+' || package FROM ydtb_packages
        ORDER BY 1""")
    async with engine.connect() as conn:
        if (await conn.execute(text("SELECT to_regclass('ydtb_schema_migrations')"))).scalar() \
                is None:
            return []
        rows = (await conn.execute(query)).all()
    found: dict[int, set[str]] = {}
    for tx, item in rows:
        found.setdefault(tx, set()).add(item)
    return list(found.values())


APPLIED = [*CORE, "a:0001_a", "a:0002_a", "b:0001_b", "b:0002_index", "b:0003_b", "c:0001_c"]
COMMITTED = {
    TransactionMode.ALL: [
        {*CORE, "a:0001_a", "a:0002_a", "b:0001_b"}, {"b:0002_index"},
        {"b:0003_b", "c:0001_c", "+@ydtb/core", "+a", "+b", "+c"}],
    TransactionMode.PACKAGE: [
        {*CORE, "+@ydtb/core"}, {"a:0001_a", "a:0002_a", "+a"}, {"b:0001_b"},
        {"b:0002_index"}, {"b:0003_b", "+b"}, {"c:0001_c", "+c"}],
    TransactionMode.MIGRATION: [
        {CORE[0]}, {CORE[1], "+@ydtb/core"}, {"a:0001_a"}, {"a:0002_a", "+a"}, {"b:0001_b"},
        {"b:0002_index"}, {"b:0003_b", "+b"}, {"c:0001_c", "+c"}],
}


@pytest.mark.parametrize("mode", list(TransactionMode), ids=str)
async def test_each_mode_applies_what_all_applies_committing_its_units(
    engine: AsyncEngine, registry: DatabaseRegistry, mode: TransactionMode
) -> None:
    report = await migrator.migrate(engine, registry.ordered(), transaction=mode)

    assert [f"{c.package}:{c.migration}" for c in report.applied] == APPLIED
    assert report.recorded == ("@ydtb/core", "a", "b", "c")
    assert await _transactions(engine) == COMMITTED[mode]
    again = await migrator.migrate(engine, registry.ordered(), transaction=mode)
    assert not again.changed


@pytest.mark.parametrize(("mode", "kept"), [
    pytest.param(TransactionMode.ALL, 2, id="all"),
    pytest.param(TransactionMode.PACKAGE, 5, id="package"),
    pytest.param(TransactionMode.MIGRATION, 7, id="migration"),
])  # fmt: skip
async def test_a_failing_migration_keeps_what_committed_before_it_and_says_so(
    engine: AsyncEngine, registry: DatabaseRegistry, mode: TransactionMode, kept: int
) -> None:
    _register(registry, "c", [Migration("0001_c", create_sql("ydtb_c")),
                              Migration("0002_bad", "SELECT * FROM ydtb_missing")], ["b"])

    with pytest.raises(MigrationFailedError) as caught:
        await migrator.migrate(engine, registry.ordered(), transaction=mode)

    committed = COMMITTED[mode][:kept]
    if mode is TransactionMode.MIGRATION:
        committed = [*committed, {"c:0001_c"}]  # c's first migration, on its own
    migrations = sum(len([i for i in unit if ":" in i]) for unit in committed)
    assert str(caught.value) == (
        "c: migration 0002_bad failed at line 1 in `SELECT * FROM ydtb_missing`: relation "
        f'"ydtb_missing" does not exist (the {migrations} migrations committed before it '
        "stay, recorded in the ledger; fix the migration and run again)")
    # Every unit before the failing one, as it committed; nothing of the failing one.
    assert await _transactions(engine) == committed
    async with engine.connect() as conn:
        table = (await conn.execute(text("SELECT to_regclass('ydtb_c')"))).scalar()
    assert (table is not None) == (mode is TransactionMode.MIGRATION)


async def test_a_migration_failing_after_nothing_committed_says_nothing_was_applied(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    _register(registry, "a", [Migration("0001_bad", "SELECT * FROM ydtb_missing")])

    with pytest.raises(MigrationFailedError, match=r"\(nothing was applied; fix the migration"):
        await migrator.migrate(engine, registry.ordered(), transaction=TransactionMode.ALL)



async def test_a_lock_retry_goes_on_from_what_committed_and_reports_it_all(
    database_url: str,
) -> None:
    registry = DatabaseRegistry()
    _register(registry, "a", [Migration("0001_a", create_sql("ydtb_a"))])
    engine = create_engine(database_url, server_settings={"lock_timeout": "500ms"})
    app = await asyncpg.connect(plain_url(database_url))
    try:
        await migrator.migrate(engine, registry.ordered())
        _register(registry, "b", [Migration("0001_b", create_sql("ydtb_b"))], ["a"])
        _register(registry, "z", [Migration("0001_z", create_sql("ydtb_z")),
                                  Migration("0002_reads_a", "SELECT count(*) FROM ydtb_a")], ["b"])
        tx = app.transaction()
        await tx.start()
        await app.execute("LOCK TABLE ydtb_a IN ACCESS EXCLUSIVE MODE")

        async def let_go(_sender: object, **_: object) -> None:
            await tx.rollback()

        with signals.migration_retrying.connected_to(let_go):
            report = await migrator.migrate(engine, registry.ordered(), lock_retries=1,
                                            transaction=TransactionMode.PACKAGE)
        transactions = await _transactions(engine)
    finally:
        await app.close()
        await engine.dispose()

    # b committed before z timed out; z on the run again: the report has them both.
    assert [f"{c.package}:{c.migration}" for c in report.applied] == [
        "b:0001_b", "z:0001_z", "z:0002_reads_a"]
    assert report.recorded == ("b", "z")
    assert transactions[-2:] == [{"b:0001_b", "+b"}, {"z:0001_z", "z:0002_reads_a", "+z"}]
