"""`migrate` on a busy database: it never stalls behind a lock, and says who holds it."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import run_cli, write_package

from runtime.db.run import LOCK_ID
from runtime.db.urls import plain_url


class Session:
    """A client of the database in a thread of its own, as an application's would be."""

    def __init__(self, url: str, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.conn: asyncpg.Connection = self.run(asyncpg.connect(
            plain_url(url), server_settings={"application_name": name}))
        self.pid = self.conn.get_server_pid()

    def run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    def execute(self, sql: str, *args: Any) -> Any:
        return self.run(self.conn.execute(sql, *args))

    def close(self) -> None:
        self.run(self.conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    return root


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    client = Session(database_url, "the-app")
    yield client
    client.close()


def migrate(packages: Path, url: str, *more: str, cached: bool = False) -> tuple[int, str]:
    return run_cli("migrate", "--packages", str(packages), "--no-entry-points",
                   "--database-url", url, *([] if cached else ["--no-cache"]), *more)


#: Each run goes the full load's way, or the load cache's: a new SQL migration is then
#: read again from its file and run on asyncpg alone (#17), with the same settings.
WAYS = pytest.mark.parametrize("cached", [False, True], ids=["full load", "from the cache"])


@WAYS
def test_connections_carry_their_name_and_a_lock_timeout(
    packages: Path, database_url: str, cached: bool
) -> None:
    if cached:
        assert migrate(packages, database_url, cached=True)[0] == 0
    (packages / "notes/migrations/0002_settings.sql").write_text(
        "DO $$ BEGIN\n"
        "  IF current_setting('application_name') <> 'ydtb-runtime migrate'\n"
        "     OR current_setting('lock_timeout') <> '5s' THEN\n"
        "    RAISE EXCEPTION 'settings: %, %', current_setting('application_name'),\n"
        "      current_setting('lock_timeout');\n"
        "  END IF;\n"
        "END $$;\n")

    code, out = migrate(packages, database_url, cached=cached)

    assert code == 0, out
    assert "notes  0002_settings (" in out


@WAYS
def test_a_lock_held_by_the_application_times_out_retries_and_names_the_holder(
    packages: Path, database_url: str, session: Session, cached: bool
) -> None:
    assert migrate(packages, database_url, cached=cached)[0] == 0
    added = packages / "notes/migrations/0002_add_body.sql"
    added.write_text("ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS body text;\n")
    session.execute("BEGIN")
    session.execute("SELECT count(*) FROM ydtb_notes")  # an open transaction reading it

    started = time.monotonic()
    code, out = migrate(packages, database_url, "--lock-timeout", "1", "--lock-retries", "1",
                        cached=cached)

    assert code == 1
    assert time.monotonic() - started < 10
    holder = rf"pid {session.pid} \(the-app, idle in transaction since [^)]+\)"
    assert re.search(rf"notes: migration 0002_add_body waited longer than lock_timeout for "
                     rf"AccessExclusiveLock on ydtb_notes, held by {holder}; rolled back, "
                     r"running again in 1 s \(retry 1 of 1\)", out), out
    assert re.search(rf"error: notes: migration 0002_add_body failed in `ALTER TABLE "
                     rf"ydtb_notes ADD COLUMN IF NOT EXISTS body text`: it waited longer "
                     rf"than lock_timeout for AccessExclusiveLock on ydtb_notes, held by "
                     rf"{holder} \(nothing was applied; run again once they finish, or "
                     r"raise --lock-timeout\)", out), out

    session.execute("COMMIT")
    code, out = migrate(packages, database_url, cached=cached)
    assert (code, out.splitlines()[0].split(" (")[0]) == (0, "notes  0002_add_body")


def test_a_run_waiting_for_another_run_names_it_and_can_give_up(
    packages: Path, database_url: str, session: Session
) -> None:
    session.execute("SELECT pg_advisory_lock($1)", LOCK_ID)

    code, out = migrate(packages, database_url, "--wait", "1.5")

    holder = rf"pid {session.pid} \(the-app, idle since [^)]+\)"
    assert code == 1
    assert re.search(rf"waiting for the pipeline's lock, held by {holder}: another migrate, "
                     "or the dev daemon, is applying", out), out
    assert re.search(rf"error: another run holds the pipeline's lock on this database: "
                     rf"{holder}; gave up after 2 s \(wait longer with --wait SECONDS, or "
                     r"let that run finish\)", out), out

    session.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    assert migrate(packages, database_url, "--wait", "1.5")[0] == 0


def test_the_version_is_one_flag_away(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli("--version")  # printed by argparse's action, on stdout

    assert code == 0
    assert re.fullmatch(r"python -m runtime (\d+\.\d+\.\d+|\(not installed\))\n",
                        capsys.readouterr().out)
