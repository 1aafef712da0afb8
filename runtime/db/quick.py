"""Tell whether a `migrate` would do nothing, from a manifest: one ledger read, no SQLAlchemy.

The CLI asks this before loading anything when the load cache holds the packages'
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

import asyncpg

from runtime.config import Settings
from runtime.core.manifest import Manifest
from runtime.core.recorded import Ledger
from runtime.db.ledger import read_ledger
from runtime.db.urls import plain_url

__all__ = ["read", "up_to_date"]

_CONNECT_TIMEOUT = 10.0


async def read(url: str) -> Ledger:
    """The ledger of the database at `url`, on a connection of its own."""
    conn = await asyncpg.connect(plain_url(url), timeout=_CONNECT_TIMEOUT)
    try:
        return await read_ledger(conn)
    finally:
        await conn.close()


async def up_to_date(settings: Settings, manifest: Manifest) -> bool:
    """Tell whether the database of `settings` holds everything `manifest` describes.

    Starts the embedded server when `settings` names no database, and stops it after.
    """
    if settings.database_url is not None:
        return manifest.up_to_date(await read(settings.database_url))
    from runtime.db.server import EmbeddedServer  # a named database does without it

    server = EmbeddedServer(settings.data_dir)
    url = await asyncio.to_thread(server.start)
    try:
        return manifest.up_to_date(await read(url))
    finally:
        await asyncio.to_thread(server.stop)
