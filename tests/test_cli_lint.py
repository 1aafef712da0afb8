"""The safety lint in `check`, `migrate` and `migrate --plan`: output and exit codes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from support import create_sql, run_cli, write_package

from runtime.db.urls import plain_url

CACHED = "unchanged since their last load"
INDEX = "CREATE INDEX IF NOT EXISTS ix_ydtb_notes_title ON ydtb_notes (title);\n"
CREATE = create_sql("ydtb_notes", "title text", "body text")


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", migrations={"0001_create.sql": CREATE})
    return root


def args(command: str, packages: Path, url: str | None = None, *more: str) -> list[str]:
    return [command, "--packages", str(packages), "--no-entry-points",
            *(["--database-url", url] if url else []), *more]


def add(packages: Path, name: str, sql: str) -> None:
    (packages / "notes/migrations" / name).write_text(sql)


def findings(out: str) -> list[str]:
    """The code and place of each finding printed: `Y510 0002_index line 1`."""
    return [f"{line.rsplit('[', 1)[1][:-1]} {line.split('migration ')[1].split(':')[0]}"
            for line in out.splitlines() if line.startswith("  - ")]


def test_check_warns_and_exits_0(packages: Path) -> None:
    add(packages, "0002_index.sql", "-- the title is searched\n" + INDEX)

    code, out = run_cli(*args("check", packages))

    assert code == 0
    assert out.splitlines() == [
        "ok: 2 packages valid (@ydtb/core, notes)",
        "warning: 1 lint finding in migrations: statements that lock or rewrite a table "
        "holding rows, or break the code deployed with it",
        "  - notes: migration 0002_index, line 2: CREATE INDEX IF NOT EXISTS "
        "ix_ydtb_notes_title ON ydtb_notes (title): builds index ix_ydtb_notes_title while "
        "holding a SHARE lock on ydtb_notes, which blocks every write to it until the build "
        "ends (CREATE INDEX CONCURRENTLY, alone in a migration marked `-- runtime: "
        "no-transaction`; or silence it: -- runtime: allow Y510 and why) [Y510]"]


def test_check_strict_exits_1(packages: Path) -> None:
    add(packages, "0002_index.sql", INDEX)

    code, out = run_cli(*args("check", packages, None, "--strict"))

    assert code == 1
    assert out.splitlines()[1].startswith("error: 1 lint finding in migrations")


def test_a_silence_with_a_reason_quiets_the_strict_check(packages: Path) -> None:
    add(packages, "0002_index.sql", "-- runtime: allow Y510 notes are few\n" + INDEX)
    add(packages, "0003_drop.sql", "-- runtime: allow Y526\n"
        "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body;")

    code, out = run_cli(*args("check", packages, None, "--strict"))

    assert code == 1
    assert findings(out) == ["Y530 0003_drop, line 2", "Y526 0003_drop, line 2"]
    add(packages, "0003_drop.sql", "-- runtime: allow Y526 body is unused since 0.9\n"
        "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body;")
    assert run_cli(*args("check", packages, None, "--strict")) == (
        0, "ok: 2 packages valid (@ydtb/core, notes)\n")


def test_python_migrations_are_named_once_per_package(packages: Path) -> None:
    for name in ("0002_a.py", "0003_b.py"):
        add(packages, name, "async def up(conn):\n    pass\n")

    code, out = run_cli(*args("check", packages))

    assert (code, out.splitlines()[1:]) == (
        0, ["notes: not linted, Python migrations are not read: 0002_a, 0003_b"])


def test_a_cached_check_shows_the_same_findings_without_the_parser(packages: Path) -> None:
    add(packages, "0002_index.sql", INDEX)
    command = [sys.executable, "-X", "importtime", "-m", "runtime",
               *args("check", packages, None, "--strict")]
    env = {**os.environ, "RUNTIME_DATA_DIR": str(packages.parent / "data")}

    first = subprocess.run(command, capture_output=True, text=True, env=env)
    second = subprocess.run(command, capture_output=True, text=True, env=env)

    assert (first.returncode, second.returncode) == (1, 1)
    assert CACHED in second.stdout
    assert second.stdout.replace(f"; {CACHED}", "") == first.stdout
    assert "Y510" in first.stdout
    assert "pglast" not in second.stderr


def test_a_cached_check_after_migrate_keeps_the_findings(packages: Path,
                                                          database_url: str) -> None:
    add(packages, "0002_index.sql", INDEX)
    first = run_cli(*args("check", packages))
    # migrate loads the packages and stores the cache without linting them.
    (packages / "notes/migrations/0001_create.sql").touch()
    assert run_cli(*args("migrate", packages, database_url))[0] == 0

    code, out = run_cli(*args("check", packages))

    assert CACHED in out
    assert (code, out.replace(f"; {CACHED}", "")) == first


def test_migrate_plan_lints_the_pending_migrations_only(packages: Path,
                                                        database_url: str) -> None:
    add(packages, "0002_index.sql", INDEX)
    # A fresh install: the table is created by the same run, nothing is found.
    code, out = run_cli(*args("migrate", packages, database_url, "--plan"))
    assert (code, findings(out)) == (0, [])
    assert run_cli(*args("migrate", packages, database_url))[0] == 0
    add(packages, "0003_type.sql", "ALTER TABLE ydtb_notes ALTER COLUMN title TYPE varchar(20);")

    code, out = run_cli(*args("migrate", packages, database_url, "--plan"))

    assert (code, findings(out)) == (0, ["Y513 0003_type, line 1"])
    assert out.splitlines()[0].startswith("warning: 1 lint finding in the pending migrations")
    assert out.splitlines()[4:] == [
        "-- notes 0003_type",
        "ALTER TABLE ydtb_notes ALTER COLUMN title TYPE varchar(20);"]
    assert run_cli(*args("migrate", packages, database_url, "--plan", "--strict"))[0] == 1


async def applied(url: str) -> list[str]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return [r[0] for r in await conn.fetch(
            "SELECT migration FROM ydtb_schema_migrations WHERE package = 'notes' ORDER BY 1")]
    finally:
        await conn.close()


@pytest.mark.parametrize("transaction", ["", "-- runtime: no-transaction\n"],
                         ids=["streamed", "no-transaction"])
def test_migrate_strict_refuses_and_migrate_warns_then_applies(
        packages: Path, database_url: str, transaction: str) -> None:
    assert run_cli(*args("migrate", packages, database_url))[0] == 0
    add(packages, "0002_index.sql", transaction + INDEX)

    code, out = run_cli(*args("migrate", packages, database_url, "--strict"))

    assert code == 1
    assert findings(out) == [f"Y510 0002_index, line {1 + bool(transaction)}"]
    assert out.splitlines()[-1] == (
        "error: refused by --strict: 1 lint finding in the pending migrations, nothing "
        "applied (rewrite each as its fix says, or silence it with a comment: -- runtime: "
        "allow CODE and why)")
    assert asyncio.run(applied(database_url)) == ["0001_create"]

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 0
    assert out.splitlines()[0].startswith("warning: 1 lint finding in the pending migrations")
    assert out.splitlines()[2].startswith("notes  0002_index")
    assert asyncio.run(applied(database_url)) == ["0001_create", "0002_index"]


def test_a_drop_needs_a_new_major_version(packages: Path, database_url: str) -> None:
    assert run_cli(*args("migrate", packages, database_url))[0] == 0
    drop = {"0001_create.sql": CREATE, "0002_drop.sql":
            "-- runtime: allow Y526 no release reads body any more\n"
            "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body;"}
    write_package(packages, "notes", name="notes", version="1.1.0", migrations=drop)

    for more in ((), ("--plan",)):
        code, out = run_cli(*args("migrate", packages, database_url, *more))
        assert code == 1
        assert out.splitlines() == [
            "error: 1 ledger problem:",
            "  - notes: migration 0002_drop drops column ydtb_notes.body, which version "
            "1.0.0 recorded in the database declared, and version 1.1.0 keeps its major "
            "version (register version 2.0.0: a drop or rename breaks its dependents and "
            "the code deployed with it) [Y303]"]
    code, out = run_cli(*args("check", packages, database_url, "--db"))
    assert (code, "[Y303]" in out) == (1, True)
    assert asyncio.run(applied(database_url)) == ["0001_create"]

    write_package(packages, "notes", name="notes", version="2.0.0", migrations=drop)

    assert run_cli(*args("migrate", packages, database_url))[0] == 0
    assert asyncio.run(applied(database_url)) == ["0001_create", "0002_drop"]
