"""The ledger read that tells whether a `migrate` would do nothing: one read, no SQLAlchemy.

The CLI reads it before loading anything when the load cache holds the packages'
manifest (`runtime.load.cache`). The ledger is read by the pipeline's one reader
(`runtime.db.ledger`) and compared by the pipeline's own comparison
(`Manifest.up_to_date`, which is `runtime.core.recorded.is_up_to_date`). It reads without
the pipeline's lock: a run holding the lock has not committed its last transaction,
which writes the package records, so the answer is "up to date" only once a run is
completely done. Any other answer, or any failure, sends the CLI down the full path,
which reports it properly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from runtime.core.recorded import Ledger
from runtime.db.ledger import read_ledger
from runtime.db.urls import plain_url

__all__ = ["read", "read_embedded"]

_CONNECT_TIMEOUT = 10.0


async def read(url: str) -> Ledger:
    """The ledger of the database at `url`, on a connection of its own."""
    conn = await asyncpg.connect(plain_url(url), timeout=_CONNECT_TIMEOUT)
    try:
        return await read_ledger(conn)
    finally:
        await conn.close()


async def read_embedded(data_dir: Path) -> Ledger:
    """The ledger of the embedded server's database in `data_dir`, started for it and
    stopped after (when no other process runs it)."""
    from runtime.db.server import EmbeddedServer  # a named database does without it

    server = EmbeddedServer(data_dir)
    url = await asyncio.to_thread(server.start)
    try:
        return await read(url)
    finally:
        await asyncio.to_thread(server.stop)
