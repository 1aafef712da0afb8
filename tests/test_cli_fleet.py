"""`migrate --fleet` and `status --fleet`: many databases of the test server, in order."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from support import create_sql, execute, run_cli, write_package

from runtime.db.engine import create_database, drop_database
from runtime.db.urls import plain_url

#: A URL nothing answers at: a unix socket in a directory that does not exist.
NOWHERE = "postgresql://postgres:hunter2@/nowhere?host=/nonexistent-runtime-fleet"
#: The migrations the packages below hold, besides the core's.
OURS = {"a:0001_a", "b:0001_b", "b:0002_b"}


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """a, then b; no migration may run twice (each CREATE fails the second time)."""
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    once = lambda sql: sql.replace(" IF NOT EXISTS", "")  # noqa: E731
    write_package(root, "a", name="a", migrations={"0001_a.sql": once(create_sql("ydtb_a"))})
    write_package(root, "b", name="b", deps=["a"], tables={
        "ydtb_b": ['Column("two", Integer)']}, migrations={
        "0001_b.sql": once(create_sql("ydtb_b")),
        "0002_b.sql": "ALTER TABLE ydtb_b ADD COLUMN two int;\n"})
    return root


@pytest.fixture
async def cells(postgres_server_url: str) -> AsyncIterator[dict[str, str]]:
    """Four empty databases, by name: c1 to c4."""
    names = {f"c{i}": f"fleet_{uuid.uuid4().hex[:12]}" for i in range(1, 5)}
    urls = {cell: await create_database(postgres_server_url, db) for cell, db in names.items()}
    try:
        yield urls
    finally:
        for db in names.values():
            await drop_database(postgres_server_url, db)


def _fleet(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "cells.txt"
    path.write_text("# the cells\n" + "\n".join(lines) + "\n")
    return path


def _migrate(packages: Path, fleet: Path, *more: str) -> tuple[int, str]:
    return run_cli("migrate", "--packages", str(packages), "--no-entry-points", "--no-cache",
                   "--fleet", str(fleet), *more)


async def _ledger(url: str) -> list[str]:
    """Our migrations in the ledger, a row each (so a migration recorded twice shows)."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        if await conn.fetchval("SELECT to_regclass('ydtb_schema_migrations')") is None:
            return []
        rows = await conn.fetch("SELECT package || ':' || migration FROM ydtb_schema_migrations"
                                " WHERE package <> '@ydtb/core' ORDER BY 1")
        return [r[0] for r in rows]
    finally:
        await conn.close()


def ledgers(cells: dict[str, str]) -> dict[str, list[str]]:
    return {cell: asyncio.run(_ledger(url)) for cell, url in cells.items()}


def _conflict(url: str) -> None:
    """Make a's migration fail in this database: its table is there already."""
    async def create() -> None:
        conn = await asyncpg.connect(plain_url(url))
        try:
            await conn.execute("CREATE TABLE ydtb_a (x int)")
        finally:
            await conn.close()

    asyncio.run(create())


def test_applies_to_every_database_once_with_a_line_each(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    fleet = _fleet(tmp_path, [f"{cell} {url}" for cell, url in cells.items()])

    code, out = _migrate(packages, fleet)

    assert code == 0, out
    assert ledgers(cells) == {cell: sorted(OURS) for cell in cells}
    lines = out.splitlines()
    assert lines[0].startswith("c1: 5 migrations applied (")  # the canary, alone, first
    assert sorted(line.split(":")[0] for line in lines[:4]) == ["c1", "c2", "c3", "c4"]
    assert lines[-1].startswith("4 of 4 databases migrated: 20 migrations applied in ")

    code, out = _migrate(packages, fleet)  # nothing left: each database says so
    assert code == 0, out
    assert "c3: 0 migrations applied" in out
    assert ledgers(cells) == {cell: sorted(OURS) for cell in cells}


def test_an_unreachable_database_is_reported_the_others_migrated(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    fleet = _fleet(tmp_path, [*(f"{c} {u}" for c, u in cells.items()), f"gone {NOWHERE}"])

    code, out = _migrate(packages, fleet, "--concurrency", "4")

    assert code == 1, out
    assert ledgers(cells) == {cell: sorted(OURS) for cell in cells}
    assert "gone: failed after" in out
    assert "ms: cannot reach the database: FileNotFoundError: [Errno 2]" in out
    assert "hunter2" not in out
    assert ("error: 4 of 5 databases migrated; 1 failed: gone (fix what failed and run "
            "again" in out)


def test_a_failure_stops_new_starts(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    _conflict(cells["c2"])
    fleet = _fleet(tmp_path, [f"{cell} {url}" for cell, url in cells.items()])

    code, out = _migrate(packages, fleet, "--concurrency", "1")

    assert code == 1, out
    assert ledgers(cells) == {"c1": sorted(OURS), "c2": [], "c3": [], "c4": []}
    assert "c2: failed after" in out and "a: migration 0001_a failed" in out
    assert ("error: 1 of 4 databases migrated; 1 failed: c2; 2 not started after the first "
            "failure: c3, c4" in out)


def test_a_canary_failure_stops_everything(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    _conflict(cells["c3"])
    fleet = _fleet(tmp_path, [f"{cell} {url}" for cell, url in cells.items()])

    code, out = _migrate(packages, fleet, "--canary", "c3", "--concurrency", "8")

    assert code == 1, out
    assert ledgers(cells) == {cell: [] for cell in cells}
    assert out.startswith("c3: failed after")
    assert ("error: 0 of 4 databases migrated; 1 failed: c3; 3 not started after the first "
            "failure: c1, c2, c4" in out)


def test_two_fleet_runs_at_once_migrate_each_database_once(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    fleet = _fleet(tmp_path, [f"{cell} {url}" for cell, url in cells.items()])
    command = [sys.executable, "-m", "runtime", "migrate", "--packages", str(packages),
               "--no-entry-points", "--no-cache", "--fleet", str(fleet), "--json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    assert ledgers(cells) == {cell: sorted(OURS) for cell in cells}
    applied: dict[str, int] = {}
    for stdout, _ in outputs:
        for event in map(json.loads, stdout.splitlines()):
            if event["event"] == "database":
                applied[event["name"]] = applied.get(event["name"], 0) + event["applied"]
    assert applied == {cell: 5 for cell in cells}  # the core's 2 and ours, by one run


def test_json_has_an_event_per_database_then_a_summary(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    fleet = _fleet(tmp_path, [f"c1 {cells['c1']}", f"c2 {cells['c2']}", f"gone {NOWHERE}"])

    code, out = _migrate(packages, fleet, "--json")

    assert code == 1
    events = [json.loads(line) for line in out.splitlines()]
    databases = {e["name"]: e for e in events if e["event"] == "database"}
    assert set(databases) == {"c1", "c2", "gone"}
    assert set(databases["c1"]) == {"event", "name", "url", "ok", "applied", "duration_ms",
                                    "error", "error_type"}
    assert databases["c1"]["ok"] and databases["c1"]["applied"] == 5
    assert databases["c1"]["error"] is None and databases["c1"]["duration_ms"] > 0
    assert databases["gone"]["ok"] is False
    assert databases["gone"]["error_type"] == "DatabaseUnavailableError"
    assert databases["gone"]["url"] == "postgresql://postgres:***@/nowhere?host=/nonexistent-" \
        "runtime-fleet"
    summary = events[-1]
    assert summary["event"] == "summary" and summary["ok"] is False
    assert (summary["databases"], summary["succeeded"], summary["failed"],
            summary["not_started"], summary["applied"]) == (3, ["c1", "c2"], ["gone"], [], 10)


def test_status_shows_each_database_read_only(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    code, out = _migrate(packages, _fleet(tmp_path, [f"c1 {cells['c1']}"]))
    assert code == 0, out
    fleet = _fleet(tmp_path, [f"c1 {cells['c1']}", f"c2 {cells['c2']}", f"gone {NOWHERE}"])
    command = ["status", "--packages", str(packages), "--no-entry-points", "--fleet",
               str(fleet)]

    code, out = run_cli(*command)

    assert code == 1, out  # a database did not answer
    assert out.splitlines()[:4] == [
        "DATABASE  PENDING  EDITED  UNDECLARED  DRIFT  STATE",
        "c1        0        0       0           0      up to date",
        "c2        5        0       0           0      behind",
        "gone      -        -       -           -      unreachable",
    ]
    assert "gone: cannot reach the database: FileNotFoundError" in out
    assert ledgers({"c2": cells["c2"]}) == {"c2": []}  # read only

    code, out = run_cli(*command, "--json")
    document = json.loads(out)
    assert document["ok"] is False
    c1, c2, gone = document["databases"]
    assert (c1["state"], c1["pending"], c1["reachable"], c1["drift"]) == (
        "up to date", [], True, [])
    assert c2["state"] == "behind"
    assert {"package": "a", "migration": "0001_a"} in c2["pending"]
    assert (gone["reachable"], gone["state"]) == (False, "unreachable")
    assert gone["error"].startswith("cannot reach the database: FileNotFoundError")


def test_status_shows_each_database_drift(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    fleet = _fleet(tmp_path, [f"c1 {cells['c1']}", f"c2 {cells['c2']}"])
    code, out = _migrate(packages, fleet)
    assert code == 0, out
    asyncio.run(execute(cells["c2"], "ALTER TABLE ydtb_b ADD COLUMN by_hand int"))
    command = ["status", "--packages", str(packages), "--no-entry-points", "--fleet",
               str(fleet)]

    code, out = run_cli(*command)

    assert code == 1, out  # as `status` of one database that drifted
    assert out.splitlines()[:3] == [
        "DATABASE  PENDING  EDITED  UNDECLARED  DRIFT  STATE",
        "c1        0        0       0           0      up to date",
        "c2        0        0       0           1      drifted",
    ]
    assert "c2: b: table ydtb_b: column by_hand in the database but not declared" in out, out

    code, out = run_cli(*command, "--json")
    c1, c2 = json.loads(out)["databases"]
    assert c1["drift"] == []
    assert [(d["package"], d["table"], d["name"]) for d in c2["drift"]] == [
        ("b", "ydtb_b", "by_hand")]

    code, out = run_cli(*command, "--no-drift")
    assert code == 0, out  # the ledgers alone: both up to date, their schemas not compared
    assert out.splitlines()[2] == "c2        0        0       0           -      up to date"


@pytest.mark.parametrize(("lines", "more", "message"), [
    pytest.param(["c1 postgresql://h/a", "c2 postgresql://h/b extra"], (),
                 "cells.txt:3: 3 fields", id="malformed"),
    pytest.param(["c1 postgresql://h/a"], ("--canary", "c9"),
                 "--canary: {path} names no database 'c9'", id="unknown-canary"),
    pytest.param(["c1 postgresql://h/a"], ("--database-url", "postgresql://h/a"),
                 "--fleet: and --database-url both name the databases", id="and-a-url"),
])
def test_a_fleet_that_cannot_work_is_a_usage_error(
    packages: Path, tmp_path: Path, lines: list[str], more: tuple[str, ...], message: str
) -> None:
    fleet = _fleet(tmp_path, lines)

    code, out = _migrate(packages, fleet, *more)

    assert code == 2, out
    assert message.format(path=fleet) in out


def test_canary_needs_a_fleet(packages: Path, database_url: str) -> None:
    code, out = run_cli("migrate", "--packages", str(packages), "--no-entry-points",
                        "--database-url", database_url, "--canary", "c1")
    assert code == 2
    assert "--canary: names the first database of a fleet (give --fleet FILE too)" in out



def test_packages_that_do_not_load_start_no_database(
    packages: Path, cells: dict[str, str], tmp_path: Path
) -> None:
    (packages / "b" / "package.py").write_text("raise RuntimeError('broken')\n")
    fleet = _fleet(tmp_path, [f"c1 {cells['c1']}", f"c2 {cells['c2']}"])

    code, out = _migrate(packages, fleet, "--json")

    assert code == 1
    summary = json.loads(out.splitlines()[-1])
    assert (summary["ok"], summary["not_started"], summary["applied"]) == (
        False, ["c1", "c2"], 0)
    assert "broken" in summary["errors"][0]
    assert ledgers({"c1": cells["c1"]}) == {"c1": []}
