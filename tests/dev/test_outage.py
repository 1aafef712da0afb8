"""The dev daemon outlives its database: terminated connections, a restarted server."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import running, signal_log, write_package

from runtime.config import Settings
from runtime.db import engine as db_engine
from runtime.dev.daemon import Daemon
from runtime.errors import DatabaseInUseError

Log = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def log() -> Iterator[Log]:
    with signal_log("reloaded", "database_lost", "database_restored") as entries:
        yield entries


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_package(tmp_path / "packages", "notes", name="notes", tables={"ydtb_notes": []})
    return tmp_path / "packages"


async def applied(log: Log, wanted: str, *, within: float = 60) -> None:
    with anyio.fail_after(within):
        while not any(name == "reloaded" and wanted in kwargs["applied"]
                      for name, kwargs in log):
            await anyio.sleep(0.02)


async def test_terminated_connections_are_replaced_and_the_edit_applied(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    async with running(engine, root):
        async with engine.connect() as conn:  # the daemon's pooled connections die
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        (root / "notes/migrations/0002_x.sql").write_text("SELECT 2;")

        await applied(log, "notes 0002_x")
        # Its claim on the database went with its connections, and was taken again.
        with pytest.raises(DatabaseInUseError), anyio.fail_after(10):
            await Daemon(engine, [root], entry_points=False).run()

    errors = [kwargs["error"] for name, kwargs in log if name == "reloaded"]
    assert errors == [None]


async def test_a_killed_embedded_server_is_started_again_and_the_edit_applied(
    tmp_path: Path, root: Path, log: Log
) -> None:
    settings = Settings(database_url=None, packages=(root,), data_dir=tmp_path / "data")
    async with db_engine.open_database(settings) as engine, running(engine, root):
        pid = int((tmp_path / "data/pgdata/postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)  # as a crash, or `kill -9`
        with anyio.fail_after(10):
            while (tmp_path / "data/pgdata/postmaster.pid").exists() and _alive(pid):
                await anyio.sleep(0.05)
        (root / "notes/migrations/0002_x.sql").write_text("SELECT 2;")

        await applied(log, "notes 0002_x")

        names = [name for name, _ in log]
        assert names[:1] == ["database_lost"] and "database_restored" in names
        [restored] = [kwargs for name, kwargs in log if name == "database_restored"]
        assert restored["revived"] is True
        async with engine.connect() as conn:
            assert (await conn.execute(text(
                "SELECT count(*) FROM ydtb_schema_migrations WHERE migration = '0002_x'"
            ))).scalar() == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_database_recreated_under_it_is_rebuilt_then_the_edit_applied(
    postgres_server_url: str, database_url: str, engine: AsyncEngine, root: Path, log: Log
) -> None:
    name = database_url.rpartition("/")[2].partition("?")[0]
    async with running(engine, root):
        await db_engine.drop_database(postgres_server_url, name)  # as a restore would
        await db_engine.create_database(postgres_server_url, name)
        (root / "notes/migrations/0002_x.sql").write_text("SELECT 2;")

        await applied(log, "notes 0002_x")

    async with engine.connect() as conn:
        assert (await conn.execute(text(
            "SELECT count(*) FROM ydtb_schema_migrations WHERE migration LIKE '0001_%'"
        ))).scalar() == 2  # the core's and notes' first migrations, applied again
