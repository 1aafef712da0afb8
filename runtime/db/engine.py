"""Engines on PostgreSQL: the connection check, and databases made for one use.

URLs are translated by `runtime.db.urls` (SQLAlchemy names the driver, asyncpg not).

Connection failures leave this module as `DatabaseUnavailableError`, with the password
hidden from the URL it names.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import cast

import anyio
import anyio.to_thread
import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from runtime.config import Settings
from runtime.db.server import EmbeddedServer
from runtime.db.urls import display_url, plain_url, to_async_url, with_database
from runtime.errors import DatabaseUnavailableError

__all__ = [
    "check_connection",
    "create_database",
    "create_engine",
    "driver",
    "drop_database",
    "lost",
    "open_database",
    "revive",
]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0  # seconds; asyncpg's own default (60) hides a dead server too long
_CHECK_TIMEOUT = 5.0
_MAINTENANCE_DATABASE = "postgres"
_MAX_NAME_BYTES = 63  # PostgreSQL silently truncates longer identifiers

# The embedded server behind each engine `open_database` made, for `revive`.
_SERVERS: dict[int, EmbeddedServer] = {}

#: What a failed connection attempt raises, before and after SQLAlchemy wraps it.
_CONNECTION_ERRORS = (
    OSError,  # refused, unreachable, no such socket
    TimeoutError,
    asyncpg.PostgresError,  # bad password, no such database, too many connections
    asyncpg.InterfaceError,
    sa_exc.DBAPIError,  # SQLAlchemy's wrapping: OperationalError, InterfaceError, ...
)


#: What says the server or the connection went away: a restart, pg_terminate_backend,
#: a crash, a network failure. Not QueryCanceledError: a cancelled statement is not lost.
_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.AdminShutdownError,  # 57P01: terminated by an administrator
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting or stopping
    DatabaseUnavailableError,
)


def lost(exc: BaseException) -> bool:
    """Tell whether `exc` (or what it wraps) says the database connection went away."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _LOST):
            return True
        if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
            return True  # "connection is closed": used after the server dropped it
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        orig = getattr(error, "orig", None)
        error = orig if isinstance(orig, BaseException) else error.__cause__
    return False


async def revive(engine: AsyncEngine) -> bool:
    """Start the embedded server behind `engine` again if it stopped; return whether it did.

    Only for an engine of `open_database` on the embedded server; the pool's connections
    to the server that went away are discarded either way.
    """
    await engine.dispose()
    server = _SERVERS.get(id(engine))
    return server is not None and await anyio.to_thread.run_sync(server.revive)


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """Return the asyncpg connection underneath a SQLAlchemy one.

    The pipeline's statements are few, fixed and hot, so they skip SQLAlchemy's layers.
    """
    raw = await conn.get_raw_connection()
    # SQLAlchemy types `driver_connection` for every driver (`Any | None`; None once
    # invalidated). Engines here are all postgresql+asyncpg, on a checked-out connection.
    return cast(asyncpg.Connection, raw.driver_connection)


def create_engine(url: str, *, server_settings: Mapping[str, str] | None = None) -> AsyncEngine:
    """Create an async engine on `url` (any PostgreSQL URL; the driver is added).

    The pool is modest: a dev process runs a few tasks, and a test session opens an
    engine per test database on a server capped at 200 connections.

    Args:
        server_settings: session settings sent when each connection opens (its
            `application_name`, `lock_timeout`): no round trip of their own.
    """
    connect_args: dict[str, object] = {"timeout": _CONNECT_TIMEOUT}
    if server_settings:
        connect_args["server_settings"] = dict(server_settings)
    return create_async_engine(
        to_async_url(url),
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=False,
        connect_args=connect_args,
    )


async def check_connection(engine: AsyncEngine, *, timeout: float = _CHECK_TIMEOUT) -> None:
    """Run `SELECT 1` on `engine`, so a wrong URL fails here and not mid-migration.

    Raises:
        DatabaseUnavailableError: the server did not answer within `timeout` seconds,
            refused the connection, or refused the login or database.
    """
    try:
        with anyio.fail_after(timeout):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError as exc:
        raise _unavailable(engine.url.render_as_string(hide_password=False), exc, timeout) from exc
    except _CONNECTION_ERRORS as exc:
        raise _unavailable(engine.url.render_as_string(hide_password=False), exc) from exc


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Yield a checked engine on `settings.database_url`, or on the embedded server.

    The embedded server starts in a worker thread, so the event loop keeps running;
    it is stopped on exit only if this call started it.

    Raises:
        DatabaseUnavailableError: the database cannot be reached or the server started.
    """
    server: EmbeddedServer | None = None
    url = settings.database_url
    if url is None:
        server = EmbeddedServer(settings.data_dir)
        # Not abandoned on cancel: a server started behind our back would outlive us.
        url = await anyio.to_thread.run_sync(server.start)
    try:
        engine = create_engine(url, server_settings=settings.server_settings())
        if server is not None:
            _SERVERS[id(engine)] = server
        try:
            await check_connection(engine)
            yield engine
        finally:
            _SERVERS.pop(id(engine), None)
            # Shielded: on shutdown we are being cancelled, and the cleanup must run.
            with anyio.CancelScope(shield=True):
                await engine.dispose()
    finally:
        if server is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(server.stop)


async def create_database(server_url: str, name: str) -> str:
    """Create the database `name` on the server of `server_url` and return its URL.

    Raises:
        ValueError: `name` is longer than PostgreSQL keeps.
        DatabaseUnavailableError: the server cannot be reached.
    """
    statement = f"CREATE DATABASE {_quote_name(name)}"
    await _run_on_maintenance(server_url, statement)
    logger.debug("created database %s", name)
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop the database `name`, if it exists, closing its connections first.

    Raises:
        DatabaseUnavailableError: the server cannot be reached.
    """
    statement = f"DROP DATABASE IF EXISTS {_quote_name(name)} WITH (FORCE)"
    await _run_on_maintenance(server_url, statement)
    logger.debug("dropped database %s", name)


async def _run_on_maintenance(server_url: str, statement: str) -> None:
    # CREATE and DROP DATABASE cannot run in a transaction, and a database cannot be
    # dropped from inside itself: run them alone on the maintenance database.
    url = with_database(plain_url(server_url), _MAINTENANCE_DATABASE)
    try:
        conn = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
    except _CONNECTION_ERRORS as exc:
        raise _unavailable(url, exc) from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _quote_name(name: str) -> str:
    if not name or len(name.encode()) > _MAX_NAME_BYTES:
        raise ValueError(f"database name {name!r} must be 1 to {_MAX_NAME_BYTES} bytes long")
    return '"' + name.replace('"', '""') + '"'


def _unavailable(
    url: str, exc: BaseException, timeout: float | None = None
) -> DatabaseUnavailableError:
    shown = display_url(url)
    if timeout is not None:
        return DatabaseUnavailableError(shown, f"no answer within {timeout:g}s")
    # SQLAlchemy wraps the driver's error and appends a documentation link; the
    # driver's own first line says it best.
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    said = lines[0] if lines else ""
    return DatabaseUnavailableError(shown, f"{type(cause).__name__}: {said}".rstrip(": "))
