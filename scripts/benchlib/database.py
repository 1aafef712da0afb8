"""The server the benchmark runs on, and a fresh database for each measurement.

Databases are dropped only when the run ends (`drop_left`), not after each
measurement. Dropping one of N = 300 deletes some 7,500 files, and for the next one
to five minutes ext4 makes every file creation step over those inodes
(`recently_deleted` in its inode allocator; seen as a third of the server's time with
`perf`): whichever cold apply came next took 19 s instead of 12 s, so floor and
runtime were compared under different conditions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.db.engine import create_database, create_engine, drop_database
from runtime.db.server import EmbeddedServer

__all__ = ["drop_left", "fresh_database", "fresh_engine", "server"]

_left: list[tuple[str, str]] = []  # (server URL, database name) to drop at the end


@contextmanager
def server(url: str | None, workdir: Path) -> Iterator[str]:
    """Yield a server URL: `url` as given, or an embedded server of our own in `workdir`.

    Our own server, not the project's `.runtime` one: the daemon someone runs there
    would share its CPU and its locks with the measurements.
    """
    if url is not None:
        yield url
        return
    with EmbeddedServer(workdir / "postgres") as embedded:
        yield embedded.url


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """Create an empty database for one measurement, to be dropped by `drop_left`."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    url = await create_database(server_url, name)
    _left.append((server_url, name))
    yield url


async def drop_left() -> None:
    """Drop every database `fresh_database` made (the end of a run)."""
    while _left:
        server_url, name = _left.pop()
        await drop_database(server_url, name)


@asynccontextmanager
async def fresh_engine(server_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A fresh database and an engine on it, not yet connected."""
    async with fresh_database(server_url) as url:
        engine = create_engine(url)
        try:
            yield url, engine
        finally:
            await engine.dispose()
