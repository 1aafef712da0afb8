"""Tell other processes about schema changes with PostgreSQL `NOTIFY`.

Publishing is a signal receiver like the console: `publishing(engine, sender)` connects
one to the signals that travel between processes (`schema_changed`,
`package_registered`, `package_unregistered`) and publishes each on the channel
`ydtb_runtime` as JSON built from the same values:

    {"signal": "schema_changed", "package": "@ydtb/basic", "migrations": ["0004_x"],
     "changes": [{"kind": "applied", "package": "@ydtb/basic", "migration": "0004_x",
                  "duration_ms": 0.4, "differences": []}], "pid": 4242}

`listen()` yields those events; `relay()` re-sends each as the blinker signal of the
same name in the listening process, with the same values (`Change` objects again), so
an app server subscribes the same way whether the daemon runs in its process or not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack, asynccontextmanager
from typing import Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from blinker import NamedSignal
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core import signals
from runtime.core.events import Change
from runtime.db.engine import driver, lost
from runtime.db.urls import display_url
from runtime.errors import DatabaseUnavailableError

__all__ = ["CHANNEL", "decode", "encode", "listen", "publishing", "relay"]

logger = logging.getLogger(__name__)

_RETRY_FIRST, _RETRY_MOST = 0.1, 2.0  # seconds between tries to listen again

#: The channel the dev daemon publishes on.
CHANNEL = "ydtb_runtime"

# Only these signals travel between processes: their values have a JSON form.
_RELAYED: dict[str, NamedSignal] = {s.name: s for s in (
    signals.schema_changed, signals.package_registered, signals.package_unregistered)}


def encode(signal: NamedSignal, payload: Mapping[str, Any]) -> str:
    """Render a signal's keywords as the JSON of a notification."""
    body = {k: ([c.to_json() for c in v] if k == "changes" else
                list(v) if isinstance(v, tuple) else v) for k, v in payload.items()}
    return json.dumps({"signal": signal.name, **body, "pid": os.getpid()}, default=str)


def decode(event: Mapping[str, Any]) -> tuple[NamedSignal, dict[str, Any]] | None:
    """Read a notification back as its signal and keywords; None for what is not one."""
    signal = _RELAYED.get(str(event.get("signal")))
    if signal is None:
        return None
    kwargs = {k: tuple(v) if isinstance(v, list) else v
              for k, v in event.items() if k != "signal"}
    try:
        if "changes" in kwargs:
            kwargs["changes"] = tuple(Change.from_json(c) for c in kwargs["changes"])
    except (KeyError, TypeError, ValueError):
        logger.warning("ignoring a malformed %s notification: %r", CHANNEL, event)
        return None
    return signal, kwargs


@asynccontextmanager
async def publishing(engine: AsyncEngine, *senders: object) -> AsyncIterator[None]:
    """Publish on `CHANNEL` what `senders` signal (the daemon, its registry), in the block.

    A signal only queues its notification, in the order sent: a task publishes the
    queue, so the sender does not wait for a round trip to the database (the dev
    daemon's `reloaded` came 1.5-3 ms later for it, #14). What is queued when the block
    ends is published before it returns.
    """
    send, receive = anyio.create_memory_object_stream[str](math.inf)

    def receiver_for(signal: NamedSignal) -> Any:
        def publish(_sender: object, **payload: Any) -> None:
            send.send_nowait(encode(signal, payload))
        return publish

    async with anyio.create_task_group() as group:
        group.start_soon(_publish, engine, receive)
        with send, ExitStack() as stack:
            for signal in _RELAYED.values():
                receiver = receiver_for(signal)
                for sender in senders:
                    stack.enter_context(signal.connected_to(receiver, sender=sender))
            yield


async def _publish(engine: AsyncEngine, receive: MemoryObjectReceiveStream[str]) -> None:
    """Send each queued notification, those queued together on one connection."""
    async with receive:
        async for message in receive:
            try:
                async with engine.connect() as conn:
                    raw = await driver(conn)
                    while True:
                        await raw.execute("SELECT pg_notify($1, $2)", CHANNEL, message)
                        try:
                            message = receive.receive_nowait()
                        except anyio.WouldBlock:
                            break
            except Exception as exc:  # a notification lost is said, never fatal
                logger.warning("could not publish on %s: %s", CHANNEL, exc)


async def listen(engine: AsyncEngine) -> AsyncIterator[dict[str, Any]]:
    """Yield each event published on `CHANNEL`, holding one connection of `engine`.

    The connection listens from the first iteration until the iterator is closed.

    Raises:
        DatabaseUnavailableError: the connection closed (a server restart, a terminated
            backend); `relay` listens again.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        queue.put_nowait(cast(str, payload))  # asyncpg decodes the payload to str

    def on_close(_conn: object) -> None:
        queue.put_nowait(None)

    async with engine.connect() as conn:
        raw = await driver(conn)
        await raw.add_listener(CHANNEL, on_notify)
        raw.add_termination_listener(on_close)
        try:
            while (payload := await queue.get()) is not None:
                try:
                    yield json.loads(payload)
                except ValueError:
                    logger.warning("ignoring a malformed %s notification: %r", CHANNEL, payload)
            raise DatabaseUnavailableError(
                display_url(engine.url.render_as_string(hide_password=False)),
                "the connection listening for notifications closed")
        finally:
            if not raw.is_closed():
                raw.remove_termination_listener(on_close)
                await raw.remove_listener(CHANNEL, on_notify)


async def relay(engine: AsyncEngine, *, sender: object = CHANNEL) -> None:
    """Re-send every event published on `CHANNEL` as its blinker signal, until cancelled.

    Receivers get the event's keywords, with the values they were sent with, plus
    `pid`, the publishing process. A lost connection is replaced, with backoff; what was
    published while none listened is not seen (NOTIFY keeps nothing).
    """
    delay = _RETRY_FIRST
    while True:
        try:
            async for event in listen(engine):
                delay = _RETRY_FIRST
                decoded = decode(event)
                if decoded is not None:
                    signal, kwargs = decoded
                    await signals.emit_async(signal, sender, **kwargs)
        except Exception as exc:
            if not lost(exc):
                raise
            logger.warning("stopped listening on %s (%s); listening again in %.1f s",
                           CHANNEL, exc, delay)
        await engine.dispose()  # the pool's other connections went with this one
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MOST)
