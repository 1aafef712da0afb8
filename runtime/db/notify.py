"""Tell other processes about schema changes with PostgreSQL `NOTIFY`.

The dev daemon publishes each applied change on the channel `ydtb_runtime` as JSON:

    {"signal": "schema_changed", "package": "@ydtb/basic", "migrations": ["0004_x"],
     "changes": ["applied 0004_x"], "pid": 4242}

`listen()` yields those events; `relay()` re-sends each as the blinker signal of the
same name in the listening process, so an app server subscribes the same way whether
the daemon runs in its process or in another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core import signals
from runtime.db.migrator import driver

__all__ = ["CHANNEL", "listen", "publish", "relay"]

logger = logging.getLogger(__name__)

#: The channel the dev daemon publishes on.
CHANNEL = "ydtb_runtime"

# Only these signals travel between processes: their arguments are plain JSON values.
_RELAYED = {"schema_changed": signals.schema_changed,
            "package_registered": signals.package_registered,
            "package_unregistered": signals.package_unregistered}


async def publish(raw: Any, signal: str, **payload: Any) -> None:
    """Publish an event on `CHANNEL` through the asyncpg connection `raw`."""
    body = json.dumps({"signal": signal, **payload, "pid": os.getpid()}, default=str)
    await raw.execute("SELECT pg_notify($1, $2)", CHANNEL, body)


async def listen(engine: AsyncEngine) -> AsyncIterator[dict[str, Any]]:
    """Yield each event published on `CHANNEL`, holding one connection of `engine`.

    The connection listens from the first iteration until the iterator is closed.
    """
    queue: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        queue.put_nowait(payload)

    async with engine.connect() as conn:
        raw = await driver(conn)
        await raw.add_listener(CHANNEL, on_notify)
        try:
            while True:
                payload = await queue.get()
                try:
                    yield json.loads(payload)
                except ValueError:
                    logger.warning("ignoring a malformed %s notification: %r", CHANNEL, payload)
        finally:
            await raw.remove_listener(CHANNEL, on_notify)


async def relay(engine: AsyncEngine, *, sender: object = CHANNEL) -> None:
    """Re-send every event published on `CHANNEL` as its blinker signal, until cancelled.

    Receivers get the event's keywords plus `pid`, the publishing process.
    """
    async for event in listen(engine):
        signal = _RELAYED.get(str(event.get("signal")))
        if signal is not None:
            kwargs: Mapping[str, Any] = {k: v for k, v in event.items() if k != "signal"}
            await signals.emit_async(signal, sender, **kwargs)
