"""What a run says while it runs: JSON, live lines, exit codes, logging, the script's name."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import NOTE_REFERENCE, NOTE_REFERENCE_SQL, create_sql, run_cli, write_package

from runtime.db.urls import plain_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "tags", name="tags", deps=["notes>=1"],
                  tables={"ydtb_tags": NOTE_REFERENCE},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", *NOTE_REFERENCE_SQL)})
    return root


def cli(command: str, packages: Path, url: str | None, *more: str) -> tuple[int, list[Any]]:
    code, out = run_cli(command, "--packages", str(packages), "--no-entry-points",
                        *(["--database-url", url] if url else []), "--json", *more)
    return code, [json.loads(line) for line in out.splitlines()]


def test_migrate_json_is_an_event_per_migration_then_a_summary(
    packages: Path, database_url: str
) -> None:
    code, events = cli("migrate", packages, database_url, "--no-cache")

    assert code == 0
    ran = [(e["package"], e["migration"]) for e in events if e["event"] == "ran"]
    applied = [(e["package"], e["migration"]) for e in events if e["event"] == "applied"]
    assert ran == applied == [("@ydtb/core", "0001_core_tables"),
                              ("@ydtb/core", "0002_package_tables"),
                              ("notes", "0001_create_ydtb_notes"), ("tags", "0001_tags")]
    assert all(isinstance(e["duration_ms"], float) for e in events if e["event"] == "applied")
    assert events[-1] | {"duration_ms": 0} == {
        "event": "summary", "ok": True, "applied": 4, "packages": 3, "changed": 3,
        "duration_ms": 0, "errors": [], "problems": [], "lint": []}

    code, events = cli("migrate", packages, database_url)  # the load cache answers

    assert (code, [e["event"] for e in events]) == (0, ["summary"])
    assert (events[0]["ok"], events[0]["applied"]) == (True, 0)


def test_a_failing_migrate_ends_its_json_with_the_error(packages: Path, database_url: str) -> None:
    (packages / "tags/migrations/0002_bad.sql").write_text("SELECT nope;")

    code, events = cli("migrate", packages, database_url)

    assert code == 1
    assert events[-1]["event"] == "summary"
    assert (events[-1]["ok"], events[-1]["error"], events[-1]["exit_code"]) == (
        False, "MigrationFailedError", 1)
    assert events[-1]["errors"][0].startswith("tags: migration 0002_bad failed")
    assert not [e for e in events if e["event"] == "applied"]


def test_lint_findings_are_in_the_json_of_migrate_and_check(
    packages: Path, database_url: str
) -> None:
    assert cli("migrate", packages, database_url)[0] == 0
    (packages / "notes/migrations/0002_index.sql").write_text(
        "CREATE INDEX ix_notes_id ON ydtb_notes (id);")

    code, events = cli("migrate", packages, database_url, "--strict")

    lint = [e for e in events if e["event"] == "lint"]
    assert (code, [(e["code"], e["migration"], e["table"]) for e in lint]) == (
        1, [("Y510", "0002_index", "ydtb_notes")])
    assert events[-1]["lint"] == [{k: v for k, v in lint[0].items() if k != "event"}]
    assert not [e for e in events if e["event"] == "applied"]

    code, [document] = cli("check", packages, None)

    assert (code, document["ok"], [f["code"] for f in document["lint"]]) == (0, True, ["Y510"])
    code, [document] = cli("check", packages, None, "--strict")  # from the load cache
    assert (code, document["ok"], document["cached"]) == (1, False, True)


def test_check_json_is_one_document_with_each_problem(packages: Path) -> None:
    schema = packages / "notes/schema.py"
    schema.write_text(schema.read_text().replace("'ydtb_notes'", "'notes'"))

    code, documents = cli("check", packages, None)

    assert code == 1
    [document] = documents
    assert document["ok"] is False
    y101 = [p for p in document["problems"] if p["code"] == "Y101"]
    assert y101[0] | {"text": ""} == {
        "package": "notes", "code": "Y101", "message": "table 'notes' must be prefixed 'ydtb_'",
        "hint": "rename it to 'ydtb_notes'", "table": "notes", "migration": None,
        "command": [], "dependency": None, "text": ""}
    assert y101[0]["text"].endswith("[Y101]")


@pytest.mark.parametrize("cached", [False, True])
def test_check_json_of_valid_packages_lists_them(packages: Path, cached: bool) -> None:
    if cached:
        assert cli("check", packages, None)[0] == 0  # stores the load cache
    code, [document] = cli("check", packages, None)

    assert code == 0
    assert (document["ok"], document["cached"]) == (True, cached)
    assert [p["name"] for p in document["packages"]] == ["@ydtb/core", "notes", "tags"]


def test_graph_json_lists_packages_in_dependency_order(packages: Path) -> None:
    code, [document] = cli("graph", packages, None)

    assert code == 0
    assert [(p["name"], p["dependencies"], p["tables"]) for p in document["packages"][1:]] == [
        ("notes", [], ["ydtb_notes"]),
        ("tags", [{"name": "notes", "specifier": ">=1"}], ["ydtb_tags"]),
    ]


def test_plan_json_lists_the_pending_steps(packages: Path, database_url: str) -> None:
    code, [document] = cli("migrate", packages, database_url, "--plan")

    assert (code, document["transaction"], len(document["transactions"])) == (0, "all", 1)
    assert document["transactions"][0]["records"] == ["@ydtb/core", "notes", "tags"]
    step = document["transactions"][0]["steps"][-1]
    assert (step["package"], step["migration"], step["transactional"], step["python"]) == (
        "tags", "0001_tags", True, None)
    assert step["statements"][0].startswith("CREATE TABLE IF NOT EXISTS ydtb_tags")


# -- processes --------------------------------------------------------------------------


def start(packages: Path, url: str, *argv: str, program: str = "runtime") -> subprocess.Popen[str]:
    command = ([str(Path(sys.executable).parent / "ydtb-runtime")] if program == "script"
               else [sys.executable, "-m", "runtime"])
    return subprocess.Popen(
        [*command, *argv, "--packages", str(packages), "--no-entry-points",
         "--database-url", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=packages.parent, env={**os.environ, "PYTHONPATH": str(ROOT)})


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.communicate()


def lines_until(process: subprocess.Popen[str], text: str) -> Iterator[str]:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        yield line
        if text in line or time.monotonic() > deadline:
            return


def add_slow(packages: Path) -> Path:
    """A package whose migration sleeps 30 s, after `notes` and `tags` are applied."""
    write_package(packages, "slow", name="slow", deps=["tags"], tables={},
                  migrations={"0001_sleep.sql": "SELECT pg_sleep(30);"})
    return packages


def sleeping(url: str) -> bool:
    """Whether a session of the database runs a migration's pg_sleep now."""
    async def look() -> bool:
        conn = await asyncpg.connect(plain_url(url))
        try:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                "AND pid <> pg_backend_pid()"))
        finally:
            await conn.close()

    return asyncio.run(look())


def wait_until_sleeping(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while not sleeping(url):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)


def test_a_long_migrate_says_what_it_applied_while_it_runs(
    packages: Path, database_url: str
) -> None:
    # Migration by migration, each is shown once it ran, before the next one runs.
    process = start(add_slow(packages), database_url, "migrate", "--transaction", "migration")
    try:
        wait_until_sleeping(process, database_url)
        seen = "".join(lines_until(process, "tags  0001_tags"))
        assert "tags  0001_tags" in seen
        assert sleeping(database_url), "the lines came only once the slow migration ended"
    finally:
        stop(process)


@pytest.mark.parametrize(("signum", "command", "code"), [
    (signal.SIGINT, "migrate", 130), (signal.SIGTERM, "migrate", 143),
    (signal.SIGTERM, "dev", 0),
])
def test_an_interrupted_command_exits_128_plus_the_signal_but_the_daemon_0(
    packages: Path, database_url: str, signum: int, command: str, code: int
) -> None:
    add_slow(packages)
    process = start(packages, database_url, command)
    try:
        wait_until_sleeping(process, database_url)  # the daemon applies at start too
        process.send_signal(signum)
        returned = process.wait(timeout=20)
        assert process.stdout is not None
        out = process.stdout.read()
        assert (returned, "stopped" in out) == (code, True), out
        assert not sleeping(database_url), "the migration was left running"
    finally:
        stop(process)


@pytest.mark.parametrize("command", ["check", "dev"])
def test_a_package_that_never_loads_is_named_and_a_second_ctrl_c_stops_at_once(
    packages: Path, database_url: str, command: str
) -> None:
    # Code a package runs when imported never returns: `check` runs it on the loop's
    # thread, the daemon in a worker thread its cancellation waits for. Neither stopped
    # on Ctrl-C, and neither said anything.
    write_package(packages, "stuck", name="stuck", tables={}, migrations={})
    with (packages / "stuck" / "schema.py").open("a") as schema:
        schema.write("\nwhile True:\n    pass\n")
    process = start(packages, database_url, command, "--no-cache")
    try:
        seen = "".join(lines_until(process, "still loading"))
        assert f"still loading {packages.resolve() / 'stuck'} after 5 s" in seen, seen
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None  # the first asks the command to stop: it cannot
        process.send_signal(signal.SIGINT)
        returned = process.wait(timeout=10)
        assert process.stdout is not None
        assert "stopped at once (asked twice)" in process.stdout.read()
        assert returned == (0 if command == "dev" else 130)
    finally:
        stop(process)


def test_the_console_script_spells_its_own_name_in_hints(
    packages: Path, database_url: str
) -> None:
    process = start(packages, database_url, "uninstall", "nope", program="script")
    out, _ = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "run ydtb-runtime migrate first" in out and "python -m runtime" not in out, out

    assert run_cli("migrate", "--packages", str(packages), "--no-entry-points",
                   "--database-url", database_url)[0] == 0
    shutil.rmtree(packages / "tags")
    process = start(packages, database_url, "status", program="script")
    out, _ = process.communicate(timeout=60)

    assert "(ydtb-runtime uninstall tags --purge to remove its tables" in out, out
    assert "python -m runtime" not in out


def test_verbose_logs_what_runs_to_stderr(packages: Path, database_url: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "runtime", "migrate", "-v", "--packages", str(packages),
         "--no-entry-points", "--database-url", database_url],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=packages.parent, timeout=60)

    assert process.returncode == 0
    assert " INFO runtime." in process.stderr
    assert " INFO " not in process.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly(
    packages: Path, database_url: str
) -> None:
    write_package(packages, "slow", name="slow", deps=["tags"], tables={},
                  migrations={"0001_sleep.sql": "SELECT pg_sleep(1);"})
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime", "migrate", "--packages", str(packages),
         "--no-entry-points", "--database-url", database_url, "--transaction", "migration"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=packages.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # as `| head -1` does: what the run prints next has no reader

    # The run goes on, silent, and ends as it would have.
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in process.stderr.read()
    process.stderr.close()
    assert sleeping_done(database_url)


def sleeping_done(url: str) -> bool:
    async def look() -> bool:
        conn = await asyncpg.connect(plain_url(url))
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM ydtb_schema_migrations "
                                            "WHERE package = 'slow'"))
        finally:
            await conn.close()

    return asyncio.run(look())
