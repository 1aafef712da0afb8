"""Engines on PostgreSQL: the connection check, and databases made for one use.

URLs are translated by `runtime.db.urls` (SQLAlchemy names the driver, asyncpg not).

The pipeline runs on an `Engine`: a SQLAlchemy `AsyncEngine`, or a `Database`, which
hands out asyncpg connections and makes its SQLAlchemy engine only when asked. `migrate`
opens a `Database`: a run of SQL migrations needs asyncpg alone, and importing
SQLAlchemy's asyncio extension (with the ORM it imports) cost more than the rest of a
one-migration deploy (#17). SQLAlchemy is imported here only when an engine is made.

Connection failures leave this module as `DatabaseUnavailableError`, with the password
hidden from the URL it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias, cast

import anyio
import anyio.to_thread
import asyncpg

from runtime.config import Settings
from runtime.db.urls import display_url, plain_url, to_async_url, with_database
from runtime.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from runtime.db.server import EmbeddedServer

__all__ = [
    "Database",
    "Engine",
    "check_connection",
    "connected",
    "connection",
    "create_database",
    "create_engine",
    "display",
    "driver",
    "drop_database",
    "lost",
    "open_database",
    "reach_database",
    "revive",
    "shielded",
    "sqlalchemy_engine",
]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0  # seconds; asyncpg's own default (60) hides a dead server too long
_CHECK_TIMEOUT = 5.0
_MAINTENANCE_DATABASE = "postgres"
_MAX_NAME_BYTES = 63  # PostgreSQL silently truncates longer identifiers

# The embedded server behind each engine `open_database` made, for `revive`.
_SERVERS: dict[int, EmbeddedServer] = {}

#: What a failed connection attempt raises; SQLAlchemy's wrapping of it (`DBAPIError`:
#: OperationalError, InterfaceError, ...) too, once SQLAlchemy is imported.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, no such socket
    TimeoutError,
    asyncpg.PostgresError,  # bad password, no such database, too many connections
    asyncpg.InterfaceError,
)


def _dbapi_error() -> type[BaseException] | None:
    """SQLAlchemy's `DBAPIError`, if SQLAlchemy is imported: else none can be raised."""
    module = sys.modules.get("sqlalchemy.exc")
    error = getattr(module, "DBAPIError", None)
    return error if isinstance(error, type) else None


def _connection_errors() -> tuple[type[BaseException], ...]:
    wrapped = _dbapi_error()
    return _CONNECTION_ERRORS if wrapped is None else (*_CONNECTION_ERRORS, wrapped)


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
    wrapped = _dbapi_error()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _LOST):
            return True
        if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
            return True  # "connection is closed": used after the server dropped it
        if (wrapped is not None and isinstance(error, wrapped)
                and getattr(error, "connection_invalidated", False)):
            return True
        orig = getattr(error, "orig", None)
        error = orig if isinstance(orig, BaseException) else error.__cause__
    return False


class Database:
    """A database reached with asyncpg, and its SQLAlchemy engine made when first asked.

    Args:
        url: any PostgreSQL URL.
        server_settings: session settings of each connection (`create_engine`).
        server: the embedded server it is on, if any (`revive`).
    """

    def __init__(
        self, url: str, *, server_settings: Mapping[str, str] | None = None,
        server: EmbeddedServer | None = None,
    ) -> None:
        self.url = url
        self._server_settings = dict(server_settings or {})
        self._server = server
        self._engine: AsyncEngine | None = None
        self._idle: asyncpg.Connection | None = None

    async def connect(self) -> asyncpg.Connection:
        """Hand out an asyncpg connection: the one given back last, or a new one.

        Give it back with `release`. One is kept: a `migrate` connects to check the
        database, reads the ledger, then runs, one after the other (#17).
        """
        idle, self._idle = self._idle, None
        if idle is not None and not idle.is_closed():
            return idle
        return await asyncpg.connect(plain_url(self.url), timeout=_CONNECT_TIMEOUT,
                                     server_settings=self._server_settings or None)

    async def release(self, raw: asyncpg.Connection) -> None:
        """Take back a connection of `connect`: kept if idle and none is, else closed."""
        if raw.is_closed():
            return
        if self._idle is None and not raw.is_in_transaction():
            self._idle = raw
            return
        await raw.close()

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine on the same database, made (and SQLAlchemy imported) on
        first use; `dispose` disposes of it."""
        if self._engine is None:
            self._engine = create_engine(self.url, server_settings=self._server_settings)
            if self._server is not None:
                _SERVERS[id(self._engine)] = self._server
        return self._engine

    async def dispose(self) -> None:
        """Close the idle connection, and dispose of the SQLAlchemy engine if one was made."""
        idle, self._idle = self._idle, None
        if idle is not None and not idle.is_closed():
            await idle.close()
        if self._engine is not None:
            _SERVERS.pop(id(self._engine), None)
            await self._engine.dispose()


#: What the pipeline runs on: see the module doc.
Engine: TypeAlias = "AsyncEngine | Database"


def sqlalchemy_engine(engine: Engine) -> AsyncEngine:
    """Return the SQLAlchemy engine of `engine` (made now for a `Database`)."""
    return engine.engine if isinstance(engine, Database) else engine


def display(engine: Engine) -> str:
    """The URL of `engine` for messages, its password hidden."""
    if isinstance(engine, Database):
        return display_url(engine.url)
    return display_url(engine.url.render_as_string(hide_password=False))


@asynccontextmanager
async def connected(
    engine: Engine,
) -> AsyncIterator[tuple[AsyncConnection | None, asyncpg.Connection]]:
    """Yield a connection of `engine`: SQLAlchemy's (None for a `Database`) and its
    asyncpg one, given back or closed when the block ends."""
    if isinstance(engine, Database):
        raw = await engine.connect()
        try:
            yield None, raw
        except BaseException:
            if not raw.is_closed():
                raw.terminate()  # in an unknown state: not handed out again
            raise
        await engine.release(raw)
        return
    async with engine.connect() as conn:
        yield conn, await driver(conn)


@asynccontextmanager
async def connection(engine: Engine) -> AsyncIterator[asyncpg.Connection]:
    """Yield an asyncpg connection of `engine` (`connected`)."""
    async with connected(engine) as (_, raw):
        yield raw


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
    from sqlalchemy.ext.asyncio import create_async_engine

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


async def check_connection(engine: Engine, *, timeout: float = _CHECK_TIMEOUT) -> None:
    """Run `SELECT 1` on `engine`, so a wrong URL fails here and not mid-migration.

    Raises:
        DatabaseUnavailableError: the server did not answer within `timeout` seconds,
            refused the connection, or refused the login or database.
    """
    url = engine.url if isinstance(engine, Database) else \
        engine.url.render_as_string(hide_password=False)
    try:
        # asyncio's timeout, not anyio's: anyio's loads its asyncio backend, 40 ms that
        # a one-migration `migrate` spends nowhere else (#17).
        async with asyncio.timeout(timeout):
            async with connection(engine) as raw:
                await raw.fetchval("SELECT 1")
    except TimeoutError as exc:
        raise _unavailable(url, exc, timeout) from exc
    except _connection_errors() as exc:
        raise _unavailable(url, exc) from exc


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Yield a checked SQLAlchemy engine on the database of `settings` (`reach_database`).

    Raises:
        DatabaseUnavailableError: the database cannot be reached or the server started.
    """
    async with reach_database(settings) as database:
        yield database.engine


@asynccontextmanager
async def reach_database(settings: Settings) -> AsyncIterator[Database]:
    """Yield a checked `Database` on `settings.database_url`, or on the embedded server.

    The embedded server starts in a worker thread, so the event loop keeps running;
    it is stopped on exit only if this call started it. The connection is checked with
    asyncpg: SQLAlchemy is imported only if its engine is asked for.

    Raises:
        DatabaseUnavailableError: the database cannot be reached or the server started.
    """
    server: EmbeddedServer | None = None
    url = settings.database_url
    if url is None:
        # Imported here: a named database does without it (with tempfile and shutil,
        # 2 ms of a `migrate` of one new migration, #17).
        from runtime.db.server import EmbeddedServer

        server = EmbeddedServer(settings.data_dir)
        # Not abandoned on cancel: a server started behind our back would outlive us.
        url = await anyio.to_thread.run_sync(server.start)
    try:
        database = Database(url, server_settings=settings.server_settings(), server=server)
        try:
            await check_connection(database)
            yield database
        finally:
            # Shielded: on shutdown we are being cancelled, and the cleanup must run.
            with shielded():
                await database.dispose()
    finally:
        if server is not None:
            with shielded():
                await anyio.to_thread.run_sync(server.stop)


def shielded() -> AbstractContextManager[object]:
    """Shield the cleanup of a block from anyio's cancellation, if any can reach it.

    anyio cancels a scope by cancelling its tasks again at each of their awaits, so a
    cleanup inside a cancelled scope must be shielded. A program of asyncio alone (the
    CLI's `migrate` of new SQL migrations) has no anyio scope, since making one loads
    anyio's event loop backend: then there is nothing to shield from, and the shield
    itself would load that backend, 40 ms of such a run (#17). A task cancelled by
    asyncio is cancelled once, and anyio's shield does not stop that either.
    """
    if any(name in sys.modules for name in _ANYIO_BACKENDS):
        return anyio.CancelScope(shield=True)
    return contextlib.nullcontext()


_ANYIO_BACKENDS = ("anyio._backends._asyncio", "anyio._backends._trio")


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
    except _connection_errors() as exc:
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
