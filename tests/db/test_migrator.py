"""The init pipeline against a real PostgreSQL, each test on its own database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Column, Enum, ForeignKey, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runtime import (
    DatabaseRegistry,
    LedgerConflictError,
    Migration,
    MigrationFailedError,
    kit,
    signals,
)
from runtime.db import checks, ledger, migrator
from runtime.db import engine as db_engine
from runtime.db.engine import driver
from runtime.db.run import MigrationReport


def schema(*tables: str, fks: dict[str, str] | None = None) -> MetaData:
    metadata = MetaData()
    for name in tables:
        # Keys between workspace tables include workspace_id (Y210).
        extra = [item for c, t in (fks or {}).items() if c.split(".")[0] == name
                 for item in (Column(c.split(".")[1], Integer),
                              kit.workspace_reference(c.split(".")[1], t.split(".")[0]))]
        Table(name, metadata, Column("id", Integer, primary_key=True),
              Column("workspace_id", String(20),
                     ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"), nullable=False),
              kit.workspace_key(), *extra)
    return metadata


def create(table: str, *extra: str) -> str:
    columns = ", ".join(["id int PRIMARY KEY",
                         "workspace_id varchar(20) NOT NULL REFERENCES ydtb_workspaces(id) "
                         "ON DELETE CASCADE", "UNIQUE (workspace_id, id)",
                         *extra])
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"


def reference(target: str) -> tuple[str, str]:
    """SQL of `{target}_id`, referencing `ydtb_{target}` inside the workspace."""
    return (f"{target}_id int", f"FOREIGN KEY (workspace_id, {target}_id) "
            f"REFERENCES ydtb_{target} (workspace_id, id)")


def register(registry: DatabaseRegistry, name: str, migrations: Sequence[Migration],
             *tables: str, version: str = "1.0.0", deps: Sequence[str] = (),
             fks: dict[str, str] | None = None) -> None:
    registry.register_database(package_name=name, schema=schema(*tables, fks=fks),
                               migrations=migrations, version=version, dependencies=deps)


@pytest.fixture
def registry() -> DatabaseRegistry:
    """Three packages: c depends on b depends on a, with foreign keys along the way."""
    registry = DatabaseRegistry()
    register(registry, "c", [Migration("0001_c", create("ydtb_c", *reference("b"))),],
             "ydtb_c", deps=["b"], fks={"ydtb_c.b_id": "ydtb_b.id"})
    register(registry, "b", [Migration("0001_b", create("ydtb_b", *reference("a"))),],
             "ydtb_b", deps=["a>=1"], fks={"ydtb_b.a_id": "ydtb_a.id"})
    register(registry, "a", [Migration("0001_a", create("ydtb_a"))], "ydtb_a")
    return registry


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


async def ledger_rows(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        result = await conn.execute(text(
            "SELECT package, migration FROM ydtb_schema_migrations ORDER BY applied_at, package"))
        return [(r[0], r[1]) for r in result]


async def test_cold_init_applies_every_package_in_dependency_order(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    report = await migrator.migrate(engine, registry.ordered())

    assert [(a.package, a.migration) for a in report.applied] == [
        ("@ydtb/core", "0001_core_tables"), ("@ydtb/core", "0002_package_tables"),
        ("a", "0001_a"), ("b", "0001_b"), ("c", "0001_c")]
    assert await scalar(engine, "SELECT count(*) FROM ydtb_c") == 0
    assert sorted(await ledger_rows(engine)) == sorted(
        (a.package, a.migration) for a in report.applied)
    assert await scalar(engine, "SELECT version FROM ydtb_packages WHERE package = 'b'") == "1.0.0"


async def test_second_run_does_nothing(engine: AsyncEngine, registry: DatabaseRegistry) -> None:
    await migrator.migrate(engine, registry.ordered())
    stamp = await scalar(engine, "SELECT max(applied_at) FROM ydtb_schema_migrations")

    report = await migrator.migrate(engine, registry.ordered())

    assert report.applied == () and report.recorded == ()
    assert not report.changed
    assert await scalar(engine, "SELECT max(applied_at) FROM ydtb_schema_migrations") == stamp


async def test_a_schema_without_migrations_creates_its_enum_types_idempotently(
    engine: AsyncEngine,
) -> None:
    metadata = schema("ydtb_days")
    metadata.tables["ydtb_days"].append_column(
        Column("mood", Enum("calm", "busy", name="ydtb_mood"), nullable=False))
    registry = DatabaseRegistry()
    registry.register_database(package_name="days", schema=metadata, version="1.0.0")
    await migrator.migrate(engine, registry.ordered())
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO ydtb_workspaces (id, name, slug) VALUES "
                                "('w1', 'One', 'one')"))
        await conn.execute(text("INSERT INTO ydtb_days VALUES (1, 'w1', 'busy')"))

    # Run again as written (IF NOT EXISTS, and the type's duplicate caught): no error.
    async with engine.connect() as conn:
        raw = await driver(conn)
        for statement in registry.get("days").migrations[0].statements or ():
            await raw.execute(statement)
        assert (await conn.execute(text("SELECT mood::text FROM ydtb_days"))).scalar() == "busy"


async def test_new_migrations_are_applied_alone(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    register(registry, "a", [Migration("0001_a", create("ydtb_a")),
                             Migration("0002_note", "ALTER TABLE ydtb_a ADD COLUMN IF NOT EXISTS "
                                       "note text")], "ydtb_a", version="1.1.0")

    report = await migrator.migrate(engine, registry.ordered())

    assert [(a.package, a.migration) for a in report.applied] == [("a", "0002_note")]
    assert report.recorded == ("a",)
    assert await scalar(engine, "SELECT version FROM ydtb_packages WHERE package = 'a'") == "1.1.0"


async def recorded_tables(engine: AsyncEngine) -> dict[str, tuple[str, ...]]:
    async with engine.connect() as conn:
        return await ledger.read_tables(await driver(conn))


async def test_each_package_is_recorded_with_the_tables_it_declares(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    register(registry, "a", [Migration("0001_a", create("ydtb_a")),
                             Migration("0002_more", create("ydtb_a_more"))],
             "ydtb_a", "ydtb_a_more")
    await migrator.migrate(engine, registry.ordered())

    tables = await recorded_tables(engine)

    assert {name: tables[name] for name in "abc"} == {
        "a": ("ydtb_a", "ydtb_a_more"), "b": ("ydtb_b",), "c": ("ydtb_c",)}
    assert "ydtb_package_tables" in tables["@ydtb/core"]


async def test_a_database_migrated_before_tables_were_recorded_learns_them_all(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    async with engine.begin() as conn:  # as a runtime before the core's 0002 left it
        await conn.execute(text("DROP TABLE ydtb_package_tables"))
        await conn.execute(text("DELETE FROM ydtb_schema_migrations "
                                "WHERE migration = '0002_package_tables'"))
    assert await recorded_tables(engine) == {}

    report = await migrator.migrate(engine, registry.ordered())

    assert [(a.package, a.migration) for a in report.applied] == [
        ("@ydtb/core", "0002_package_tables")]
    assert set(report.recorded) == {"@ydtb/core", "a", "b", "c"}
    assert (await recorded_tables(engine))["b"] == ("ydtb_b",)
    assert not (await migrator.migrate(engine, registry.ordered())).changed


async def test_a_migration_arriving_later_with_an_earlier_id_is_applied(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry()
    register(registry, "a", [Migration("0001_a", create("ydtb_a")),
                             Migration("0003_c", "SELECT 3")], "ydtb_a")
    await migrator.migrate(engine, registry.ordered())
    register(registry, "a", [Migration("0001_a", create("ydtb_a")), Migration("0002_b", "SELECT 2"),
                             Migration("0003_c", "SELECT 3")], "ydtb_a")

    report = await migrator.migrate(engine, registry.ordered())

    assert [a.migration for a in report.applied] == ["0002_b"]


async def test_a_failing_migration_rolls_back_the_whole_run(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    register(registry, "c", [Migration("0001_c", create("ydtb_c")),
                             Migration("0002_bad", "SELECT 1;\nSELECT * FROM ydtb_missing;")],
             "ydtb_c", deps=["b"])
    failures: list[dict[str, Any]] = []

    def failed(_sender: object, **kwargs: Any) -> None:
        failures.append(kwargs)

    with signals.migration_failed.connected_to(failed), \
            pytest.raises(MigrationFailedError) as caught:
        await migrator.migrate(engine, registry.ordered())

    assert str(caught.value) == (
        "c: migration 0002_bad failed at line 2 in `SELECT * FROM ydtb_missing`: relation "
        "\"ydtb_missing\" "
        "does not exist (nothing was applied; fix the migration and run again)")
    assert (caught.value.package, caught.value.migration, caught.value.line) == ("c", "0002_bad", 2)
    assert [f["migration"] for f in failures] == ["0002_bad"]
    assert await scalar(engine, "SELECT to_regclass('ydtb_a')") is None
    assert await scalar(engine, "SELECT to_regclass('ydtb_schema_migrations')") is None


async def test_an_edited_applied_migration_is_refused(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    before = registry.get("a").migrations[0]
    register(registry, "a", [Migration("0001_a", create("ydtb_a", "extra int")),
                             Migration("0002_x", "SELECT 1")], "ydtb_a")
    after = registry.get("a").migrations[0]

    with pytest.raises(LedgerConflictError) as caught:
        await migrator.migrate(engine, registry.ordered())

    assert str(caught.value.problems[0]) == (
        f"a: migration 0001_a was edited after it was applied (checksum recorded "
        f"{before.short_checksum}, now {after.short_checksum}) (restore its applied content "
        "and put the change in a new migration; the dev daemon re-runs edited migrations on a "
        "dev database) [Y301]")
    assert ("a", "0002_x") not in await ledger_rows(engine)


async def test_the_dev_daemon_mode_reruns_an_edited_migration(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    await migrator.migrate(engine, registry.ordered())
    register(registry, "a", [Migration("0001_a", [create("ydtb_a"), "ALTER TABLE ydtb_a ADD "
                                                  "COLUMN IF NOT EXISTS extra int"])], "ydtb_a")

    report = await migrator.migrate(engine, registry.ordered(), rerun_edited=True)

    assert [(a.migration, a.rerun) for a in report.applied] == [("0001_a", True)]
    assert await scalar(engine, "SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = 'ydtb_a' AND column_name = 'extra'") == 1
    assert await scalar(engine, "SELECT kind FROM ydtb_schema_migrations "
                        "WHERE package = 'a'") == "rerun"


async def test_a_downgrade_is_refused(engine: AsyncEngine, registry: DatabaseRegistry) -> None:
    register(registry, "a", [Migration("0001_a", create("ydtb_a"))], "ydtb_a", version="1.2.0")
    await migrator.migrate(engine, registry.ordered())
    register(registry, "a", [Migration("0001_a", create("ydtb_a"))], "ydtb_a", version="1.1.0")

    with pytest.raises(LedgerConflictError) as caught:
        await migrator.migrate(engine, registry.ordered())

    assert str(caught.value.problems[0]) == (
        "a: registered version 1.1.0 is lower than 1.2.0 recorded in the database (register "
        "version 1.2.0 or later; downgrades are not applied) [Y302]")


async def test_python_migrations_run_in_the_same_transaction(engine: AsyncEngine) -> None:
    async def seed(conn: AsyncConnection) -> None:
        await conn.execute(text("INSERT INTO ydtb_workspaces (id, name, slug) "
                                "VALUES ('w1', 'One', 'one')"))

    registry = DatabaseRegistry()
    register(registry, "a", [Migration("0001_a", create("ydtb_a")), Migration("0002_seed", seed),
                             Migration("0003_bad", "SELECT nope")], "ydtb_a")
    with pytest.raises(MigrationFailedError):
        await migrator.migrate(engine, registry.ordered())
    assert await scalar(engine, "SELECT to_regclass('ydtb_workspaces')") is None

    register(registry, "a", [Migration("0001_a", create("ydtb_a")), Migration("0002_seed", seed)],
             "ydtb_a")
    await migrator.migrate(engine, registry.ordered())
    assert await scalar(engine, "SELECT count(*) FROM ydtb_workspaces") == 1


async def test_a_failing_python_migration_names_itself(engine: AsyncEngine) -> None:
    async def broken(conn: AsyncConnection) -> None:
        raise RuntimeError("the backfill found a bad row")

    registry = DatabaseRegistry()
    register(registry, "a", [Migration("0001_a", create("ydtb_a")), Migration("0002_fix", broken)],
             "ydtb_a")
    with pytest.raises(MigrationFailedError, match=r"^a: migration 0002_fix failed: the backfill "
                       r"found a bad row \(nothing was applied"):
        await migrator.migrate(engine, registry.ordered())


async def test_a_non_transactional_migration_runs_after_the_ones_before_commit(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry()
    register(registry, "a", [
        Migration("0001_a", create("ydtb_a", "name text")),
        Migration("0002_index", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a_name "
                  "ON ydtb_a (name)", transactional=False),
        Migration("0003_more", "ALTER TABLE ydtb_a ADD COLUMN IF NOT EXISTS more int"),
    ], "ydtb_a")

    report = await migrator.migrate(engine, registry.ordered())

    assert [a.migration for a in report.applied][-3:] == ["0001_a", "0002_index", "0003_more"]
    assert await scalar(
        engine, "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_a_name'") == 1


async def test_a_non_transactional_script_runs_statement_by_statement(engine: AsyncEngine) -> None:
    # As one query, PostgreSQL runs the two statements in one implicit transaction, which
    # CREATE INDEX CONCURRENTLY refuses: "cannot run inside a transaction block".
    registry = DatabaseRegistry()
    register(registry, "a", [
        Migration("0001_a", create("ydtb_a", "name text", "note text")),
        Migration("0002_indexes", "-- runtime: no-transaction\n"
                  "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a_name ON ydtb_a (name);\n"
                  "/* a semicolon; in a comment */\n"
                  "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a_note ON ydtb_a (note);\n",
                  transactional=False),
    ], "ydtb_a")

    await migrator.migrate(engine, registry.ordered())

    assert await scalar(engine, "SELECT count(*) FROM pg_indexes "
                        "WHERE indexname IN ('ix_a_name', 'ix_a_note')") == 2


async def test_a_non_transactional_script_failing_halfway_says_what_stays(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry()
    register(registry, "a", [
        Migration("0001_a", create("ydtb_a", "name text")),
        Migration("0002_indexes", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a_name "
                  "ON ydtb_a (name);\n\nCREATE INDEX CONCURRENTLY ix_a_nope ON ydtb_a (nope);",
                  transactional=False),
    ], "ydtb_a")

    with pytest.raises(MigrationFailedError) as caught:
        await migrator.migrate(engine, registry.ordered())

    assert caught.value.line == 3
    assert "the 1 statement(s) before it ran and stay" in str(caught.value)
    assert await scalar(engine, "SELECT count(*) FROM pg_indexes "
                        "WHERE indexname = 'ix_a_name'") == 1
    assert await scalar(engine, "SELECT count(*) FROM ydtb_schema_migrations "
                        "WHERE migration = '0002_indexes'") == 0


async def test_two_pipelines_at_once_apply_each_migration_exactly_once(
    database_url: str, registry: DatabaseRegistry
) -> None:
    engines = [db_engine.create_engine(database_url) for _ in range(3)]
    try:
        reports = await asyncio.gather(*(migrator.migrate(e, registry.ordered()) for e in engines))
    finally:
        for each in engines:
            await each.dispose()

    applied = sorted((a.package, a.migration) for r in reports for a in r.applied)
    assert applied == sorted((p.name, m.id) for p in registry.ordered() for m in p.migrations)
    assert sum(1 for r in reports if r.applied) == 1


async def test_signals_report_each_migration_and_the_end_of_the_run(
    engine: AsyncEngine, registry: DatabaseRegistry
) -> None:
    seen: list[str] = []

    async def on_applied(_sender: object, *, package: str, migration: str, **_: Any) -> None:
        seen.append(f"{package} {migration}")

    def on_done(_sender: object, *, report: MigrationReport) -> None:
        seen.append(f"done {len(report.applied)}")

    with signals.migration_applied.connected_to(on_applied), \
            signals.database_initialized.connected_to(on_done):
        await migrator.migrate(engine, registry.ordered())

    assert seen == ["@ydtb/core 0001_core_tables", "@ydtb/core 0002_package_tables", "a 0001_a",
                    "b 0001_b", "c 0001_c", "done 5"]


async def test_the_idempotency_check_catches_migrations_that_cannot_run_twice(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry()
    register(registry, "a", [
        Migration("0001_a", create("ydtb_a", "name text")),
        Migration("0002_not_guarded", "CREATE TABLE ydtb_a2 (id int)"),
        Migration("0003_unnamed_index", "CREATE INDEX ON ydtb_a (name)"),
        Migration("0004_fine", "CREATE INDEX IF NOT EXISTS ix_fine ON ydtb_a (name)"),
    ], "ydtb_a")

    problems = await checks.check_idempotency(engine, registry.ordered())

    assert [(p.migration, p.code) for p in problems] == [
        ("0002_not_guarded", "Y402"), ("0003_unnamed_index", "Y403"),
        ("0002_not_guarded", "Y501")]  # ydtb_a2 is not declared either
    assert str(problems[0]).startswith(
        'a: migration 0002_not_guarded fails when run twice: relation "ydtb_a2" already exists '
        "(guard it so it can run twice: CREATE TABLE IF NOT EXISTS")
    assert "ydtb_a_name_idx1" in str(problems[1])


async def test_an_edited_migration_that_cannot_run_twice_says_why(engine: AsyncEngine) -> None:
    registry = DatabaseRegistry()
    register(registry, "a", [Migration("0001_a", "CREATE TABLE ydtb_a (id int PRIMARY KEY, "
                                       "workspace_id varchar(20) NOT NULL)")], "ydtb_a")
    await migrator.migrate(engine, registry.ordered())
    register(registry, "a", [Migration("0001_a", "-- edited\nCREATE TABLE ydtb_a (id int "
                                       "PRIMARY KEY, workspace_id varchar(20) NOT NULL)")],
             "ydtb_a")

    with pytest.raises(MigrationFailedError) as caught:
        await migrator.migrate(engine, registry.ordered(), rerun_edited=True)

    assert str(caught.value) == (
        "a: migration 0001_a failed in `CREATE TABLE ydtb_a (id int PRIMARY KEY, workspace_id "
        "varchar(20) NOT NULL)`: relation \"ydtb_a\" already exists (it ran before and was "
        "edited, so it ran again: a migration must run twice without failing; guard it with "
        "CREATE TABLE IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, CREATE INDEX IF NOT EXISTS, "
        "DROP ... IF EXISTS)")


@pytest.mark.parametrize("up", ["-- nothing yet", "/* later */\n-- and more later\n",
                                ["SELECT 1", "-- nothing"]],
                         ids=["line-comment", "block-comment", "one-of-several"])
@pytest.mark.parametrize("alone", [False, True], ids=["with-others", "alone"])
async def test_a_migration_of_comments_alone_runs_as_nothing_and_is_recorded(
    engine: AsyncEngine, up: Any, alone: bool
) -> None:
    """As psql runs such a file; sent as it was, the server's empty answer broke asyncpg."""
    first = Migration("0001_d", create("ydtb_d"))
    if alone:  # the other migration applied by an earlier run
        before = DatabaseRegistry()
        register(before, "d", [first], "ydtb_d")
        await migrator.migrate(engine, before.ordered())
    registry = DatabaseRegistry()
    register(registry, "d", [first, Migration("0002_d", up)], "ydtb_d")

    report = await migrator.migrate(engine, registry.ordered())

    assert ("d", "0002_d") in [(a.package, a.migration) for a in report.applied]
    assert ("d", "0002_d") in await ledger_rows(engine)


@pytest.mark.parametrize("last", ["transactional", "no-transaction"])
async def test_what_then_does_commits_with_the_runs_last_transaction(
    engine: AsyncEngine, last: str
) -> None:
    """`then` runs in the run's last transaction (after a `no-transaction` migration, in
    one of its own): what it raises rolls that transaction back, records included."""
    registry = DatabaseRegistry()
    await migrator.migrate(engine, registry.ordered())  # the core, committed before
    index = Migration("0002_index", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a_id "
                      "ON ydtb_a (id)", transactional=False)
    register(registry, "a", [Migration("0001_a", create("ydtb_a")),
                             *([index] if last == "no-transaction" else [])], "ydtb_a")
    seen: list[bool] = []

    async def then(run: Any) -> None:
        seen.append(run.raw.is_in_transaction())
        await run.raw.execute("INSERT INTO ydtb_workspaces (id, name, slug) "
                              "VALUES ('w1', 'W', 'w1')")
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await migrator.migrate(engine, registry.ordered(), then=then)

    assert seen == [True]
    assert await scalar(engine, "SELECT count(*) FROM ydtb_workspaces") == 0
    applied = await scalar(engine, "SELECT array_agg(migration ORDER BY migration) FROM "
                                   "ydtb_schema_migrations WHERE package = 'a'")
    # In one transaction, everything went; a `no-transaction` migration commits alone.
    assert applied == (["0001_a", "0002_index"] if last == "no-transaction" else None)
