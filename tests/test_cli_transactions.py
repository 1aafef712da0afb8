"""`migrate --transaction`: what a kill -9 mid-run leaves, and what `--plan` says."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from support import create_sql, run_cli, write_package

from runtime.db.urls import plain_url

SLEEP = 2  # seconds the migration the run is killed in sleeps


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """a, then b, whose second migration sleeps, then c. No migration may run twice: each
    CREATE and ADD COLUMN fails the second time, so a rerun would be seen."""
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    once = lambda sql: sql.replace(" IF NOT EXISTS", "")  # noqa: E731
    write_package(root, "a", name="a", migrations={"0001_a.sql": once(create_sql("ydtb_a"))})
    write_package(root, "b", name="b", deps=["a"], tables={
        "ydtb_b": ['Column("two", Integer)', 'Column("three", Integer)']}, migrations={
        "0001_b.sql": once(create_sql("ydtb_b")),
        "0002_slow.sql": f"ALTER TABLE ydtb_b ADD COLUMN two int;\nSELECT pg_sleep({SLEEP});\n",
        "0003_b.sql": "ALTER TABLE ydtb_b ADD COLUMN three int;\n"})
    write_package(root, "c", name="c", deps=["b"], migrations={
        "0001_c.sql": once(create_sql("ydtb_c"))})
    return root


def _command(packages: Path, url: str, *more: str) -> list[str]:
    return ["migrate", "--packages", str(packages), "--no-entry-points", "--database-url",
            url, "--no-cache", *more]


#: What each migration leaves in the database, to hold against the ledger.
EFFECTS = {
    "a:0001_a": "to_regclass('ydtb_a') IS NOT NULL",
    "b:0001_b": "to_regclass('ydtb_b') IS NOT NULL",
    "b:0002_slow": "EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('ydtb_b') "
                   "AND attname = 'two')",
    "b:0003_b": "EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('ydtb_b') "
                "AND attname = 'three')",
    "c:0001_c": "to_regclass('ydtb_c') IS NOT NULL",
}


async def _state(url: str) -> tuple[set[str], set[str], set[str]]:
    """The ledger's migrations, the packages recorded, and the migrations whose effect the
    database holds; the core's are left out."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        done = {name for name, sql in EFFECTS.items() if await conn.fetchval(f"SELECT {sql}")}
        if await conn.fetchval("SELECT to_regclass('ydtb_schema_migrations')") is None:
            return set(), set(), done
        rows = await conn.fetch("SELECT package || ':' || migration FROM ydtb_schema_migrations "
                                "WHERE package <> '@ydtb/core'")
        records = await conn.fetch("SELECT package FROM ydtb_packages "
                                   "WHERE package <> '@ydtb/core'")
        return {r[0] for r in rows}, {r[0] for r in records}, done
    finally:
        await conn.close()


async def _sleeping_backend(url: str, within: float = 60) -> int:
    """The pid of the run's session once it sleeps in b's migration."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = "
                "'ydtb-runtime migrate' AND query LIKE '%pg_sleep%' AND state = 'active'")
            if pid:
                return int(pid)
            await asyncio.sleep(0.05)
        raise AssertionError("the run never reached the sleeping migration")
    finally:
        await conn.close()


async def _gone(url: str, pid: int, within: float = 30) -> None:
    """Wait until the killed client's session has ended, its transaction rolled back."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        deadline = time.monotonic() + within
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            assert time.monotonic() < deadline, f"session {pid} outlived its client"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


#: What the ledger holds after the kill, besides the core: (migrations, records).
KILLED = {
    "all": (set(), set()),
    "package": ({"a:0001_a"}, {"a"}),
    "migration": ({"a:0001_a", "b:0001_b"}, {"a"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["all", "package", "migration"])
def test_kill_9_mid_run_leaves_every_unit_before_or_after(
    packages: Path, database_url: str, mode: str
) -> None:
    command = [sys.executable, "-m", "runtime",
               *_command(packages, database_url, "--transaction", mode)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        try:
            pid = asyncio.run(_sleeping_backend(database_url))
            os.kill(run.pid, signal.SIGKILL)  # as the OOM killer, or a deploy's kill -9
        finally:
            run.kill()
    asyncio.run(_gone(database_url, pid))

    ledger, recorded, done = asyncio.run(_state(database_url))
    assert (ledger, recorded) == KILLED[mode]
    assert done == ledger  # the database holds exactly what the ledger says

    code, out = run_cli(*_command(packages, database_url, "--transaction", mode))
    assert code == 0, out  # nothing ran twice: each CREATE and ADD COLUMN would fail
    ledger, recorded, done = asyncio.run(_state(database_url))
    assert ledger == done == set(EFFECTS)
    assert recorded == {"a", "b", "c"}


def test_plan_says_the_mode_and_each_transaction(packages: Path, database_url: str) -> None:
    code, out = run_cli(*_command(packages, database_url, "--plan", "--transaction", "package"))

    assert code == 0, out
    said = [line for line in out.splitlines() if line.startswith("-- ")]
    assert said == [
        "-- --transaction package: each package commits with its record, in order, "
        "4 transactions",
        "-- transaction 1: records @ydtb/core",
        "-- @ydtb/core 0001_core_tables", "-- @ydtb/core 0002_package_tables",
        "-- transaction 2: records a", "-- a 0001_a",
        "-- transaction 3: records b", "-- b 0001_b", "-- b 0002_slow", "-- b 0003_b",
        "-- transaction 4: records c", "-- c 0001_c"]


def test_the_mode_comes_from_the_environment(
    packages: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_TRANSACTION", "migration")

    code, out = run_cli(*_command(packages, database_url, "--plan"))

    assert out.startswith("-- --transaction migration: each migration commits on its own, "
                          "7 transactions\n")

    monkeypatch.setenv("RUNTIME_TRANSACTION", "sometimes")
    code, out = run_cli(*_command(packages, database_url, "--plan"))
    assert (code, out) == (2, "error: RUNTIME_TRANSACTION='sometimes' is not a transaction "
                              "mode; give one of all, package, migration\n")
