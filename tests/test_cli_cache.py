"""`migrate` and `check` of unchanged packages answered from the load cache."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import execute, run_cli, write_package

from runtime.db.engine import create_database, drop_database
from runtime.db.urls import plain_url
from runtime.load import bytecode, loader

CACHED = "unchanged since their last load"


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes")
    return root


def args(command: str, packages: Path, url: str | None = None, *more: str) -> list[str]:
    return [command, "--packages", str(packages), "--no-entry-points",
            *(["--database-url", url] if url else []), *more]


def test_a_second_check_imports_neither_the_packages_nor_sqlalchemy(packages: Path) -> None:
    command = [sys.executable, "-X", "importtime", "-m", "runtime", *args("check", packages)]
    env = {**os.environ, "RUNTIME_DATA_DIR": str(packages.parent / "data")}

    first = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    second = subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    assert first.stdout == "ok: 2 packages valid (@ydtb/core, notes)\n"
    assert second.stdout == f"ok: 2 packages valid (@ydtb/core, notes); {CACHED}\n"
    assert re.search(r"\|\s+sqlalchemy$", first.stderr, re.MULTILINE)
    assert "sqlalchemy" not in second.stderr
    assert "_ydtb_dev_" not in second.stderr


def test_a_full_check_imports_no_database_driver_parser_or_orm(packages: Path) -> None:
    # `check` reads files: asyncpg, pglast (its lint is kept by content after the first)
    # and sqlalchemy.orm were 0.3 s of its full load at N = 300 (#17).
    command = [sys.executable, "-X", "importtime", "-m", "runtime",
               *args("check", packages, None, "--no-cache")]
    env = {**os.environ, "RUNTIME_DATA_DIR": str(packages.parent / "data")}
    subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    again = subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    assert again.stdout == "ok: 2 packages valid (@ydtb/core, notes)\n"
    imported = set(re.findall(r"\|\s+([\w.]+)$", again.stderr, re.MULTILINE))
    assert any(name.startswith("_ydtb_dev_notes") for name in imported)  # loaded
    assert not {"asyncpg", "pglast", "sqlalchemy.orm", "runtime.db.engine"} & imported


def test_a_second_migrate_reads_only_the_ledger(packages: Path, database_url: str) -> None:
    assert run_cli(*args("migrate", packages, database_url))[0] == 0

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 0
    assert out.startswith("nothing to apply: 2 packages up to date (")
    assert CACHED in out


def test_a_new_migration_is_applied(packages: Path, database_url: str) -> None:
    run_cli(*args("migrate", packages, database_url))
    (packages / "notes/migrations/0002_more.sql").write_text(
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS more text;")

    code, out = run_cli(*args("migrate", packages, database_url))

    assert (code, out.splitlines()[0].split(" (")[0]) == (0, "notes  0002_more")


def test_a_database_behind_the_cache_gets_the_full_run(packages: Path, database_url: str) -> None:
    run_cli(*args("migrate", packages, database_url))
    asyncio.run(execute(database_url, "DELETE FROM ydtb_schema_migrations WHERE package = 'notes'"))

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 0
    assert out.splitlines()[0].split(" (")[0] == "notes  0001_create_ydtb_notes"


def test_an_edited_applied_migration_is_still_refused(packages: Path, database_url: str) -> None:
    run_cli(*args("migrate", packages, database_url))
    migration = packages / "notes/migrations/0001_create_ydtb_notes.sql"
    migration.write_text(migration.read_text() + "-- edited\n")

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 1
    assert "migration 0001_create_ydtb_notes was edited after it was applied" in out


@pytest.mark.parametrize("more", [["--no-cache"], ["--plan"]])
def test_no_cache_and_plan_always_load(packages: Path, database_url: str, more: list[str]) -> None:
    run_cli(*args("migrate", packages, database_url))

    code, out = run_cli(*args("migrate", packages, database_url, *more))

    assert code == 0
    assert CACHED not in out
    assert out.startswith("nothing to apply" if more == ["--no-cache"] else "-- nothing to apply")


def test_no_cache_still_keeps_and_reads_the_compiled_package_code(
    packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[str] = []
    compile_afresh = bytecode.compiled.__wrapped__
    monkeypatch.setattr(bytecode, "compiled",
                        lambda path, source: compiled.append(path) or compile_afresh(path, source))
    first = run_cli(*args("check", packages, None, "--no-cache"))
    assert len(compiled) == 2  # package.py, schema.py

    second = run_cli(*args("check", packages, None, "--no-cache"))

    assert second == first == (0, "ok: 2 packages valid (@ydtb/core, notes)\n")
    assert len(compiled) == 2  # code kept by content cannot be stale (#17)
    assert list((packages.parent / "data/cache").glob("bytecode-*.bin"))


def test_an_unreachable_database_is_reported_by_the_full_run(packages: Path) -> None:
    run_cli(*args("check", packages))  # fills the cache

    code, out = run_cli(*args("migrate", packages, "postgresql://nobody:secret@127.0.0.1:1/x"))

    assert code == 2
    assert "127.0.0.1:1" in out
    assert "secret" not in out


def test_without_a_url_the_embedded_server_answers_and_is_stopped(
    packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    data = packages.parent / "data"  # RUNTIME_DATA_DIR, set by the fixture
    assert run_cli(*args("migrate", packages))[0] == 0

    code, out = run_cli(*args("migrate", packages))

    assert code == 0
    assert out.startswith("nothing to apply: 2 packages up to date (")
    assert CACHED in out
    assert not (data / "pgdata" / "postmaster.pid").exists()


def test_the_first_run_creating_the_data_directory_keeps_the_cache(
    packages: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `python -m` puts the project directory on sys.path; the first run creates
    # `.runtime/` in it, which must not look like an installed distribution (#17).
    project = packages.parent
    monkeypatch.delenv("RUNTIME_DATA_DIR")
    command = [sys.executable, "-m", "runtime", "migrate", "--packages", "packages",
               "--database-url", database_url]
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DATA_DIR"}

    def run() -> str:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=project,
                              check=True)
        return done.stdout

    run()
    assert (project / ".runtime").is_dir()

    assert CACHED in run()


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The package directories each command imports, by name."""
    names: list[str] = []
    load_directory = loader.load_directory

    def recording(directory: Path, *args: Any, **kwargs: Any) -> list[str]:
        names.append(directory.name)
        return load_directory(directory, *args, **kwargs)

    monkeypatch.setattr(loader, "load_directory", recording)
    return names


@pytest.fixture
def two(packages: Path) -> Path:
    write_package(packages, "tags", name="tags", deps=["notes>=1.0"])
    return packages


def test_a_new_migration_imports_only_its_package(
    two: Path, database_url: str, loaded: list[str]
) -> None:
    run_cli(*args("migrate", two, database_url))
    assert sorted(loaded) == ["notes", "tags"]
    loaded.clear()
    (two / "tags/migrations/0002_more.sql").write_text(
        "ALTER TABLE ydtb_tags ADD COLUMN IF NOT EXISTS more text;")
    with (two / "tags/schema.py").open("a") as schema:  # its code changed: imported
        schema.write("# edited\n")

    code, out = run_cli(*args("migrate", two, database_url))

    assert (code, out.splitlines()[0].split(" (")[0]) == (0, "tags  0002_more")
    assert loaded == ["tags"]
    code, out = run_cli(*args("migrate", two, database_url))
    assert (code, CACHED in out) == (0, True)  # what the partial load kept is whole


def full_and_cached(
    packages: Path, database_url: str, change: Callable[[], object]
) -> tuple[tuple[int, str], tuple[int, str]]:
    """Migrate, change, then migrate from the cache and with --no-cache."""
    assert run_cli(*args("migrate", packages, database_url))[0] == 0
    change()
    cached = run_cli(*args("migrate", packages, database_url))
    full = run_cli(*args("migrate", packages, database_url, "--no-cache"))
    return (cached[0], timeless(cached[1])), (full[0], timeless(full[1]))


def timeless(out: str) -> str:
    return re.sub(r"\(\d+(\.\d+)? ms\)", "(ms)", out)


@pytest.mark.parametrize("change", ["version", "removed", "taken"])
def test_a_change_breaking_an_unchanged_package_is_reported_as_a_full_load_does(
    two: Path, database_url: str, loaded: list[str], change: str
) -> None:
    def breaking() -> None:
        if change == "version":
            write_package(two, "notes", name="notes", version="0.9.0")
        elif change == "removed":
            shutil.rmtree(two / "notes")
        else:  # a new directory takes the name of an unchanged one
            write_package(two, "copy", name="tags")

    cached, full = full_and_cached(two, database_url, breaking)

    assert cached == full
    assert cached[0] == 1
    assert {"version": "Y202", "removed": "Y201", "taken": "Y209"}[change] in cached[1]


def test_a_database_behind_an_unchanged_package_gets_the_full_run(
    two: Path, database_url: str, loaded: list[str]
) -> None:
    run_cli(*args("migrate", two, database_url))
    asyncio.run(execute(database_url, "DELETE FROM ydtb_schema_migrations WHERE package = 'notes'"))
    (two / "tags/migrations/0002_more.sql").write_text("SELECT 1;")
    loaded.clear()

    code, out = run_cli(*args("migrate", two, database_url))

    assert code == 0
    assert [line.split(" (")[0] for line in out.splitlines()[:2]] == [
        "notes  0001_create_ydtb_notes", "tags  0002_more"]
    assert loaded == ["tags", "notes", "tags"]  # the changed one, then all of them


# -- a change of SQL migration files only: nothing imported (#17) ----------------------


@pytest.fixture
async def other_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A second empty database, for the full load to run on beside the cached run."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = await create_database(postgres_server_url, name)
    try:
        yield url
    finally:
        await drop_database(postgres_server_url, name)


async def recorded(url: str) -> list[tuple[Any, ...]]:
    """What the database's ledger holds and what its migrations built, in order."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        rows = await conn.fetch("SELECT package, migration, checksum, package_version, kind "
                                "FROM ydtb_schema_migrations ORDER BY package, migration")
        rows += await conn.fetch("SELECT package, version, schema_fingerprint "
                                 "FROM ydtb_packages ORDER BY package")
        rows += await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                 "WHERE table_schema = 'public' ORDER BY 1, 2")
        rows += await conn.fetch("SELECT indexname FROM pg_indexes "
                                 "WHERE schemaname = 'public' ORDER BY 1")
        return [tuple(row) for row in rows]
    finally:
        await conn.close()


TAGS = "tags/migrations/"
#: Changes of SQL migration files, by id: each file written (None deletes it), whether
#: the run answered from the cache imports nothing, and what the run exits with.
MIGRATION_CHANGES: dict[str, tuple[dict[str, str | None], bool, int]] = {
    "new": ({"0002_more.sql": "ALTER TABLE ydtb_tags ADD COLUMN more text;"}, True, 0),
    "two new": ({"0002_more.sql": "ALTER TABLE ydtb_tags ADD COLUMN more text;",
                 "0003_most.sql": "ALTER TABLE ydtb_tags ADD COLUMN most text;"}, True, 0),
    "outside a transaction": ({"0002_index.sql": "-- runtime: no-transaction\n"
                               "CREATE INDEX CONCURRENTLY ix_tags_more ON ydtb_tags (id);"},
                              True, 0),
    "linted": ({"0002_index.sql": "CREATE INDEX ix_tags_id ON ydtb_tags (id);"}, True, 0),
    "failing": ({"0002_bad.sql": "ALTER TABLE ydtb_nowhere ADD COLUMN x text;"}, True, 1),
    "a syntax error": ({"0002_bad.sql": "ALTER TABEL ydtb_tags ADD COLUMN x text;"}, True, 1),
    "undeclared table": ({"0002_extra.sql": "CREATE TABLE ydtb_tags_extra (id int);"}, True, 1),
    "another's table": ({"0002_theirs.sql": "ALTER TABLE ydtb_notes ADD COLUMN x text;"},
                        True, 1),
    "applied edited": ({"0001_create_ydtb_tags.sql": "SELECT 1;"}, True, 1),
    "applied deleted": ({"0001_create_ydtb_tags.sql": None,
                         "0002_more.sql": "ALTER TABLE ydtb_tags ADD COLUMN more text;"}, True, 0),
    "empty": ({"0002_empty.sql": "\n"}, False, 1),
    "misnamed": ({"0002 more.sql": "SELECT 1;"}, False, 1),
    "not UTF-8": ({"0002_more.sql": "SELECT '\udcff';"}, False, 1),
}


def untimed(out: str) -> str:
    return re.sub(r"\d+(\.\d+)? ms\b", "ms", out)


def write_changes(root: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        path = root / TAGS / name
        if text is None:
            path.unlink()
        else:
            path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("change", list(MIGRATION_CHANGES), ids=list(MIGRATION_CHANGES))
def test_a_change_of_migration_files_runs_as_a_full_load_does(
    two: Path, database_url: str, other_url: str, loaded: list[str], change: str
) -> None:
    files, shortcut, exit_code = MIGRATION_CHANGES[change]
    for url in (database_url, other_url):
        assert run_cli(*args("migrate", two, url))[0] == 0
    write_changes(two, files)
    loaded.clear()

    cached = run_cli(*args("migrate", two, database_url))
    imported = list(loaded)
    full = run_cli(*args("migrate", two, other_url, "--no-cache"))

    assert (cached[0], untimed(cached[1])) == (full[0], untimed(full[1]))
    assert cached[0] == exit_code, cached[1]
    assert asyncio.run(recorded(database_url)) == asyncio.run(recorded(other_url))
    # Answered from the cache: no package imported; else the full load, which imports all.
    assert imported == ([] if shortcut else ["tags", "notes", "tags"])


def test_a_new_migration_imports_neither_the_package_nor_sqlalchemy(
    packages: Path, database_url: str
) -> None:
    command = [sys.executable, "-X", "importtime", "-m", "runtime",
               *args("migrate", packages, database_url)]
    env = {**os.environ, "RUNTIME_DATA_DIR": str(packages.parent / "data")}
    subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    (packages / "notes/migrations/0002_more.sql").write_text(
        "ALTER TABLE ydtb_notes ADD COLUMN more text;")

    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    assert done.stdout.startswith("notes  0002_more (")
    assert "sqlalchemy" not in done.stderr
    assert "_ydtb_dev_" not in done.stderr
    again = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert CACHED in again.stdout  # what the run kept is whole


#: Run the CLI, then print the modules it loaded: `-X importtime` misses those imported
#: with `importlib.import_module`, as anyio's event loop backend is.
LOADED = ("import sys; from runtime.cli import main; code = main(sys.argv[1:]); "
          "print(*sorted(sys.modules), sep='\\n', file=sys.stderr); sys.exit(code)")


def test_a_new_migration_runs_on_asyncio_alone(packages: Path, database_url: str) -> None:
    command = [sys.executable, "-c", LOADED, *args("migrate", packages, database_url)]
    env = {**os.environ, "RUNTIME_DATA_DIR": str(packages.parent / "data")}
    first = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    (packages / "notes/migrations/0002_more.sql").write_text(
        "ALTER TABLE ydtb_notes ADD COLUMN more text;")

    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    assert done.stdout.startswith("notes  0002_more (")
    # anyio's backend costs 40 ms at start-up (#17); the full load's task group needs it.
    # Nor what only other commands, or a breaking migration's lint, read.
    # Nor the embedded server's module (a database named), with tempfile and shutil.
    unneeded = {"anyio._backends._asyncio", "packaging.version", "runtime.core.booking",
                "runtime.db.leftovers", "runtime.core.fleet", "importlib.abc",
                "runtime.db.server", "tempfile", "shutil"}
    assert "anyio._backends._asyncio" in first.stderr.splitlines()
    assert unneeded.isdisjoint(done.stderr.splitlines())


def test_a_no_op_migrate_loads_only_what_it_reads(packages: Path, database_url: str) -> None:
    command = [sys.executable, "-c", LOADED, *args("migrate", packages, database_url)]
    env = {**os.environ, "RUNTIME_DATA_DIR": str(packages.parent / "data")}
    subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    again = subprocess.run(command, capture_output=True, text=True, env=env, check=True)

    assert CACHED in again.stdout
    # Each of these cost a no-op run milliseconds it did not need (#17): the signals
    # (no receiver), the lint (none kept), the embedded server (a URL given), argparse's
    # terminal width through shutil, and anything of a load.
    unneeded = {"blinker", "runtime.core.signals", "runtime.core.lint", "runtime.db.server",
                "shutil", "sqlalchemy", "runtime.load.loader", "runtime.commands"}
    assert unneeded.isdisjoint(again.stderr.splitlines())


def test_a_pending_python_migration_gets_the_full_load(
    two: Path, database_url: str, loaded: list[str]
) -> None:
    run_cli(*args("migrate", two, database_url))
    (two / TAGS / "0002_data.py").write_text(
        "async def up(conn):\n    pass\n")
    run_cli(*args("check", two))  # the cache now holds 0002_data, not applied
    (two / TAGS / "0003_more.sql").write_text("ALTER TABLE ydtb_tags ADD COLUMN more text;")
    loaded.clear()

    code, out = run_cli(*args("migrate", two, database_url))

    assert code == 0, out
    assert [line.split(" (")[0] for line in out.splitlines() if line.startswith("tags  ")] == [
        "tags  0002_data", "tags  0003_more"]
    assert loaded == ["tags"]  # its code imported: 0002 is Python, and pending


def test_an_applied_python_migration_stays_unread(
    two: Path, database_url: str, loaded: list[str]
) -> None:
    (two / TAGS / "0002_data.py").write_text("async def up(conn):\n    pass\n")
    assert run_cli(*args("migrate", two, database_url))[0] == 0

    for number in (3, 4):  # the cache the first run wrote still knows 0002's file
        (two / TAGS / f"000{number}_more.sql").write_text(
            f"ALTER TABLE ydtb_tags ADD COLUMN c{number} text;")
        loaded.clear()
        code, out = run_cli(*args("migrate", two, database_url))

        assert (code, out.splitlines()[0].split(" (")[0]) == (0, f"tags  000{number}_more")
        assert loaded == []
