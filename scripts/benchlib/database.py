"""The server the benchmark runs on, and a fresh database for each measurement."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.db.engine import create_database, create_engine, drop_database
from runtime.db.server import EmbeddedServer

__all__ = ["fresh_database", "fresh_engine", "server"]


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
    """Create an empty database for one measurement; drop it afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    url = await create_database(server_url, name)
    try:
        yield url
    finally:
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
