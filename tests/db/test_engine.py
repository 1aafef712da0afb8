from __future__ import annotations

import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.config import Settings
from runtime.db.engine import (
    check_connection,
    create_database,
    create_engine,
    drop_database,
    open_database,
    shielded,
)
from runtime.errors import DatabaseUnavailableError

UNREACHABLE = "postgresql://nobody:secret@127.0.0.1:1/x"


async def test_check_connection_on_an_unreachable_server_names_it_without_password() -> None:
    engine = create_engine(UNREACHABLE)
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            await check_connection(engine)
    finally:
        await engine.dispose()

    assert caught.value.url == "postgresql://nobody:***@127.0.0.1:1/x"
    assert "secret" not in str(caught.value)
    assert "ConnectionRefusedError" in caught.value.reason
    assert "\n" not in caught.value.reason


async def test_check_connection_gives_up_on_a_server_that_never_answers() -> None:
    # The kernel completes the TCP handshake on a listening socket nobody accepts
    # from, so the client waits for a greeting that never comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        engine = create_engine(f"postgresql://nobody@127.0.0.1:{port}/x")
        try:
            with pytest.raises(DatabaseUnavailableError, match=r"no answer within 0\.2s"):
                await check_connection(engine, timeout=0.2)
        finally:
            await engine.dispose()


async def test_a_cleanup_is_shielded_from_a_cancelled_anyio_scope() -> None:
    done = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        with shielded():
            await anyio.sleep(0)  # cancelled here, were it not shielded
            done.append("cleaned up")
        await anyio.sleep(0)

    assert done == ["cleaned up"]


async def test_check_connection_on_a_missing_database_says_so(postgres_server_url: str) -> None:
    missing = urlunsplit(urlsplit(postgres_server_url)._replace(path="/t_missing"))
    engine = create_engine(missing)
    try:
        with pytest.raises(DatabaseUnavailableError, match='database "t_missing" does not'):
            await check_connection(engine)
    finally:
        await engine.dispose()


async def test_check_connection_passes_on_a_live_database(engine: AsyncEngine) -> None:
    await check_connection(engine)


async def test_open_database_with_a_url_yields_an_engine_on_it(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, packages=(), data_dir=tmp_path)

    async with open_database(settings) as engine, engine.connect() as conn:
        name = await conn.scalar(text("SELECT current_database()"))

    assert name == urlsplit(database_url).path.lstrip("/")
    assert not (tmp_path / "pgdata").exists()  # no embedded server was started


async def test_open_database_without_a_url_starts_and_stops_the_embedded_server(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=None, packages=(), data_dir=tmp_path)

    async with open_database(settings) as engine, engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1

    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


async def test_open_database_with_an_unreachable_url_raises() -> None:
    settings = Settings(database_url=UNREACHABLE, packages=(), data_dir=Path("/nonexistent"))

    with pytest.raises(DatabaseUnavailableError, match=r"nobody:\*\*\*@127\.0\.0\.1:1"):
        async with open_database(settings):
            pass


async def test_create_and_drop_database(postgres_server_url: str) -> None:
    name = f"t_{uuid.uuid4().hex[:16]}"

    url = await create_database(postgres_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT current_database()") == name
    finally:
        await conn.close()
    await drop_database(postgres_server_url, name)

    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(url)


async def test_drop_database_that_does_not_exist_is_a_no_op(postgres_server_url: str) -> None:
    await drop_database(postgres_server_url, "t_never_created")


async def test_create_database_rejects_a_name_postgresql_would_truncate(
    postgres_server_url: str,
) -> None:
    with pytest.raises(ValueError, match="1 to 63 bytes"):
        await create_database(postgres_server_url, "t" * 64)
