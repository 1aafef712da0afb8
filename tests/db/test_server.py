"""The embedded server, started for real. Each start costs about a second: keep them few."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from support import create_sql, run_cli, write_package

from runtime.db.server import EmbeddedServer
from runtime.errors import DatabaseUnavailableError


async def select_one(url: str) -> object:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetchval("SELECT inet_server_addr() IS NULL")  # NULL on a socket
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    # A path too long for a unix socket inside it, so the /tmp fallback is used too.
    data_dir = tmp_path_factory.mktemp("server-" + "x" * 80)
    with EmbeddedServer(data_dir) as server:
        yield server


async def test_start_on_a_fresh_dir_gives_a_working_server_on_a_unix_socket(
    running: EmbeddedServer,
) -> None:
    assert (running.pgdata / "PG_VERSION").exists()
    assert running.url.startswith("postgresql://postgres@/postgres?host=/tmp/ydtb-runtime-")
    assert await select_one(running.url) is True


async def test_a_second_server_on_the_same_dir_reuses_it_and_its_stop_leaves_it_running(
    running: EmbeddedServer,
) -> None:
    other = EmbeddedServer(running.data_dir)

    assert other.start() == running.url
    other.stop()

    assert await select_one(running.url) is True


async def test_stop_stops_the_server_and_a_stale_pid_file_does_not_block_the_next_start(
    tmp_path: Path,
) -> None:
    server = EmbeddedServer(tmp_path)
    url = server.start()
    server.stop()

    assert not (server.pgdata / "postmaster.pid").exists()
    with pytest.raises(OSError):
        await select_one(url)

    # As after a crash and a container restart: the recorded pid now belongs to a
    # live process that is not PostgreSQL.
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (server.pgdata / "postmaster.pid").write_text(f"{other.pid}\n{server.pgdata}\n")
            with server:
                assert await select_one(server.url) is True
        finally:
            other.kill()


def test_a_broken_data_dir_raises_with_the_server_log(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir(mode=0o700)
    (pgdata / "PG_VERSION").write_text("18\n")  # and nothing else: a half-deleted data dir
    server = EmbeddedServer(tmp_path)

    with pytest.raises(DatabaseUnavailableError) as caught:
        server.start()

    message = str(caught.value)
    assert f"the embedded server in {pgdata}" in message
    assert "pg_ctl failed" in message
    log_tail = message.split(f"last lines of {tmp_path / 'postgres.log'}: ", 1)[1]
    assert "could not access the server configuration file" in log_tail


def test_url_before_start_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = EmbeddedServer(tmp_path).url


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_the_server_runs_as_its_own_user(running: EmbeddedServer) -> None:
    import pwd

    owner = pwd.getpwuid(running.pgdata.stat().st_uid).pw_name
    pid = int((running.pgdata / "postmaster.pid").read_text().split()[0])

    socket_dir = Path(running.url.partition("host=")[2]).stat()

    assert owner == "embedded_postgres"
    assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(owner).pw_uid
    # The /tmp socket directory is the server's alone, not world-writable.
    assert socket_dir.st_uid == pwd.getpwnam(owner).pw_uid
    assert socket_dir.st_mode & 0o777 == 0o700


async def test_one_transaction_may_hold_the_locks_of_a_thousand_packages_cold_start(
    running: EmbeddedServer,
) -> None:
    # A cold start of N = 1000 packages makes about 20,000 tables, indexes and sequences
    # in one transaction, each holding a lock; advisory locks fill the same lock table.
    conn = await asyncpg.connect(running.url, timeout=5)
    try:
        async with conn.transaction():
            held = await conn.fetchval("SELECT count(pg_advisory_xact_lock(i)) "
                                       "FROM generate_series(1, 30000) AS i")
    finally:
        await conn.close()
    assert held == 30000


def test_a_full_lock_table_says_how_to_run_with_fewer_locks(
    running: EmbeddedServer, tmp_path: Path
) -> None:
    many = "SELECT count(pg_advisory_xact_lock(i)) FROM generate_series(1, 200000) AS i;"
    write_package(tmp_path, "notes", name="notes",
                  migrations={"0001_create.sql": create_sql("ydtb_notes"), "0002_many.sql": many})

    code, out = run_cli("migrate", "--packages", str(tmp_path), "--database-url", running.url,
                        "--no-entry-points")

    assert code == 1
    assert ("notes: migration 0002_many failed in `SELECT count(pg_advisory_xact_lock(i)) FROM "
            "generate_series(1, 200000) AS i`: out of shared memory (a transaction locks each "
            "table and index it makes until it commits, and this one needs more locks than the "
            "server's lock table holds: run migrate with --transaction package, or raise "
            "max_locks_per_transaction on the server)") in out, out
