"""Tell whether a `migrate` would do nothing, from a manifest: one ledger read, no SQLAlchemy.

The CLI asks this before loading anything when the load cache holds the packages'
manifest (`runtime.dev.cache`). It reads the ledger without the pipeline's lock: a run
holding the lock has not committed its last transaction, which writes the package
records, so the answer is "up to date" only once a run is completely done. Any other
answer, or any failure, sends the CLI down the full path, which reports it properly.
"""

from __future__ import annotations

import asyncio

import asyncpg

from runtime.config import Settings
from runtime.core.manifest import Manifest
from runtime.core.names import LEDGER_TABLE, PACKAGES_TABLE, UNREGISTERED
from runtime.db.server import EmbeddedServer
from runtime.db.urls import plain_url

__all__ = ["up_to_date"]

_CONNECT_TIMEOUT = 10.0

_READ = f"""
SELECT 'm', package, migration, checksum FROM {LEDGER_TABLE}
UNION ALL
SELECT 'p', package, version, schema_fingerprint FROM {PACKAGES_TABLE}
WHERE schema_fingerprint <> '{UNREGISTERED}'
"""


async def _read(url: str, manifest: Manifest) -> bool:
    conn = await asyncpg.connect(plain_url(url), timeout=_CONNECT_TIMEOUT)
    try:
        rows = await conn.fetch(_READ)
    except asyncpg.UndefinedTableError:
        return False  # a fresh database
    finally:
        await conn.close()
    # Dev changes come along as applied rows no manifest migration has: they count for
    # nothing, as in the pipeline's plan.
    applied = {(r[1], r[2]): r[3] for r in rows if r[0] == "m"}
    recorded = {r[1]: (r[2], r[3]) for r in rows if r[0] == "p"}
    return manifest.up_to_date(applied, recorded)


async def up_to_date(settings: Settings, manifest: Manifest) -> bool:
    """Tell whether the database of `settings` holds everything `manifest` describes.

    Starts the embedded server when `settings` names no database, and stops it after.
    """
    if settings.database_url is not None:
        return await _read(settings.database_url, manifest)
    server = EmbeddedServer(settings.data_dir)
    url = await asyncio.to_thread(server.start)
    try:
        return await _read(url, manifest)
    finally:
        await asyncio.to_thread(server.stop)
