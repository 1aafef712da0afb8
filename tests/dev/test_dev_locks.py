"""The dev daemon behind an application's open transaction: it says who blocks it, backs
off, and applies once the lock is free, without a restart."""

from __future__ import annotations

import io
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from asyncpg.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import dev_process, running, signal_log, write_package

from runtime.config import DEV_LOCK_TIMEOUT, resolve_settings
from runtime.console import Console, report_signals
from runtime.db.engine import create_engine
from runtime.db.urls import plain_url
from runtime.dev import daemon as daemon_module

Log = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_package(tmp_path / "packages", "notes", name="notes", tables={"ydtb_notes": []})
    return tmp_path / "packages"


@pytest.fixture
async def dev_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine with the session settings `python -m runtime dev` gives its own."""
    settings = resolve_settings(database_url=database_url, application_name="ydtb-runtime dev",
                                default_lock_timeout=DEV_LOCK_TIMEOUT)
    assert settings.server_settings()["lock_timeout"] == "1000ms"
    engine = create_engine(database_url, server_settings=settings.server_settings())
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An application's connection."""
    conn = await asyncpg.connect(plain_url(database_url),
                                 server_settings={"application_name": "the-app"})
    try:
        yield conn
    finally:
        await conn.close()


async def _hold_notes(app: asyncpg.Connection) -> Transaction:
    """Open a transaction of the application holding ACCESS EXCLUSIVE on ydtb_notes."""
    tx = app.transaction()
    await tx.start()
    await app.execute("LOCK TABLE ydtb_notes IN ACCESS EXCLUSIVE MODE")
    return tx


def _save_touch(root: Path) -> None:
    """Save a migration that writes to ydtb_notes (ROW EXCLUSIVE)."""
    (root / "notes/migrations/0002_touch.sql").write_text("UPDATE ydtb_notes SET id = id;\n")


async def _until(log: Log, name: str, match: Any = lambda _: True, *, within: float = 20,
                 after: int = 0) -> dict[str, Any]:
    with anyio.fail_after(within):
        while True:
            for seen, kwargs in log[after:]:
                if seen == name and match(kwargs):
                    return kwargs
            await anyio.sleep(0.02)


async def _applied(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT migration FROM ydtb_schema_migrations "
                                       "WHERE package = 'notes' ORDER BY 1"))
        return [r[0] for r in rows]


async def test_a_reload_blocked_by_a_lock_says_who_holds_it_and_applies_once_it_is_free(
    dev_engine: AsyncEngine, root: Path, app: asyncpg.Connection
) -> None:
    out = io.StringIO()
    with signal_log("migration_retrying", "reloaded", "migration_failed") as log, \
            report_signals(Console(out, color=False)):
        async with running(dev_engine, root):
            tx = await _hold_notes(app)
            _save_touch(root)

            retrying = await _until(log, "migration_retrying")
            await tx.commit()
            done = await _until(log, "reloaded", lambda r: r["error"] is None)

            assert "notes 0002_touch" in done["applied"]
            assert await _applied(dev_engine) == ["0001_create_ydtb_notes", "0002_touch"]

    error, wait = retrying["error"], retrying["wait"]
    assert (error.package, error.migration) == ("notes", "0002_touch")
    assert (wait.relation, wait.mode) == ("ydtb_notes", "RowExclusiveLock")  # what UPDATE wants
    assert [(h.pid, h.application_name) for h in wait.holders] == [
        (app.get_server_pid(), "the-app")]
    assert (retrying["attempt"], retrying["retries"], retrying["delay_s"]) == (1, 8, 1.0)
    assert not [kwargs for name, kwargs in log if name == "migration_failed"]
    assert not [kwargs for name, kwargs in log if name == "reloaded" and kwargs["error"]]
    assert re.search(
        rf"! notes: migration 0002_touch waited longer than lock_timeout for "
        rf"RowExclusiveLock on ydtb_notes, held by pid {app.get_server_pid()} \(the-app, "
        r"idle in transaction since [^)]+\); rolled back, running again in 1 s "
        r"\(retry 1 of 8\)", out.getvalue()), out.getvalue()


async def test_a_save_while_blocked_runs_the_reload_again_at_once(
    dev_engine: AsyncEngine, root: Path, app: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "_BLOCKED_FIRST", 60.0)  # no retry by itself
    with signal_log("migration_retrying", "reloaded") as log:
        async with running(dev_engine, root):
            tx = await _hold_notes(app)
            _save_touch(root)
            await _until(log, "migration_retrying")
            await tx.rollback()

            mark = len(log)
            (root / "notes/migrations/0003_more.sql").write_text("SELECT 3;\n")
            done = await _until(log, "reloaded", lambda r: r["error"] is None, after=mark,
                                within=10)

    assert {"notes 0002_touch", "notes 0003_more"} <= set(done["applied"])


async def test_a_reload_blocked_too_long_gives_up_says_so_and_waits_for_a_save(
    dev_engine: AsyncEngine, root: Path, app: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "_BLOCKED_FIRST", 0.1)
    monkeypatch.setattr(daemon_module, "_BLOCKED_RETRIES", 2)
    with signal_log("migration_retrying", "reloaded", "validation_failed") as log:
        async with running(dev_engine, root):
            tx = await _hold_notes(app)
            _save_touch(root)
            failed = await _until(log, "reloaded", lambda r: r["error"] is not None)
            await tx.rollback()

            assert [k["attempt"] for n, k in log if n == "migration_retrying"] == [1, 2]
            assert "waited longer than lock_timeout for RowExclusiveLock on ydtb_notes" \
                in str(failed["error"])
            assert await _until(log, "validation_failed")
            mark = len(log)
            (root / "notes/migrations/0003_more.sql").write_text("SELECT 3;\n")
            done = await _until(log, "reloaded", lambda r: r["error"] is None, after=mark)

    assert {"notes 0002_touch", "notes 0003_more"} <= set(done["applied"])


@pytest.mark.slow
async def test_the_dev_command_gives_its_connections_a_one_second_lock_timeout(
    root: Path, database_url: str
) -> None:
    (root / "notes/migrations/0002_settings.sql").write_text(
        "DO $$ BEGIN\n"
        "  IF current_setting('application_name') <> 'ydtb-runtime dev'\n"
        "     OR current_setting('lock_timeout') <> '1s' THEN\n"
        "    RAISE EXCEPTION 'settings: %, %', current_setting('application_name'),\n"
        "      current_setting('lock_timeout');\n"
        "  END IF;\n"
        "END $$;\n")
    async with dev_process(root, database_url) as (process, seen):
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            await process.wait()

    assert b"applied notes 0002_settings" in seen, seen.decode()
