"""One dev daemon per database: the running one holds a claim, a second is told who.

Two daemons on one dev database would both apply each save, and each would hold back
the other's dev syncs as drift. So a daemon claims its database with a session-level
advisory lock on a connection of its own, named (`application_name`) after its
process and host; a second daemon finds the lock taken and reads that name from
`pg_stat_activity` to say which daemon holds it. The claim ends with the connection:
a daemon killed with -9 leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.db.urls import display_url, plain_url
from runtime.errors import DatabaseInUseError

__all__ = ["CLAIM_ID", "Claim", "claimed"]

logger = logging.getLogger(__name__)

#: The advisory lock key a dev daemon holds on its database ("ydtb_dev" in ASCII).
CLAIM_ID = 0x7964_7462_5F64_6576

_CONNECT_TIMEOUT = 10.0
_NAME_BYTES = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1

# pg_locks shows a bigint advisory key as two halves: classid (high), objid (low).
_HOLDER = """
SELECT a.application_name, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = $1 AND l.objid = $2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def _name() -> str:
    return f"ydtb-runtime dev pid {os.getpid()} on {socket.gethostname()}"[:_NAME_BYTES]


class Claim:
    """This process's claim on a dev database; `claimed` takes it and lets it go."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._url = engine.url.render_as_string(hide_password=False)
        self._conn: asyncpg.Connection | None = None

    async def take(self) -> None:
        """Take the claim on a connection of its own.

        Raises:
            DatabaseInUseError: another daemon holds it; the error names it.
        """
        conn = await asyncpg.connect(plain_url(self._url), timeout=_CONNECT_TIMEOUT,
                                     server_settings={"application_name": _name()})
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", CLAIM_ID):
                row = await conn.fetchrow(_HOLDER, CLAIM_ID >> 32, CLAIM_ID & 0xFFFF_FFFF)
                holder = row[0] if row is not None and row[0] else "another process"
                since = f", since {row[1]:%Y-%m-%d %H:%M:%S}" if row is not None else ""
                raise DatabaseInUseError(display_url(self._url), f"{holder}{since}")
        except BaseException:
            await _close(conn)
            raise
        self._conn = conn

    async def retake(self) -> None:
        """Take the claim again if its connection went away with the database.

        Raises:
            DatabaseInUseError: another daemon took the database meanwhile.
        """
        if self._conn is not None and not self._conn.is_closed():
            return
        await self.release()
        await self.take()
        logger.info("claimed %s again", display_url(self._url))

    async def release(self) -> None:
        """Let the claim go (closing its connection ends the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        conn.terminate()  # the server went away with the claim


@asynccontextmanager
async def claimed(engine: AsyncEngine) -> AsyncIterator[Claim]:
    """Hold `engine`'s database for this process's dev daemon while the block runs.

    Raises:
        DatabaseInUseError: another daemon holds it; the error names it.
    """
    claim = Claim(engine)
    await claim.take()
    try:
        yield claim
    finally:
        await claim.release()
