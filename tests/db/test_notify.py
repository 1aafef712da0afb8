"""NOTIFY between processes: a receiver publishes, `relay` re-sends the same values."""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import listening

from runtime.core import signals
from runtime.core.events import Change, ChangeKind, Difference
from runtime.db import notify
from runtime.db.engine import driver

COLOR = Difference("add_column", "ydtb_notes", "color",
                   "table ydtb_notes: column color declared but missing", False,
                   ("ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT",))
CHANGES = (Change(ChangeKind.APPLIED, "notes", "0002_x", 1.5),
           Change(ChangeKind.DEV_SYNC, "notes", "dev:1a2b", 3.0, (COLOR,)),
           Change(ChangeKind.RECONCILED, "notes", "dev:0f0f"))


def test_encode_and_decode_give_back_the_values() -> None:
    body = json.loads(notify.encode(signals.schema_changed, {
        "package": "notes", "migrations": ("0002_x",), "changes": CHANGES}))

    assert body["signal"] == "schema_changed"
    assert body["pid"] == os.getpid()
    assert body["changes"][1]["kind"] == "dev_sync"
    assert notify.decode(body) == (signals.schema_changed, {
        "package": "notes", "migrations": ("0002_x",), "changes": CHANGES,
        "pid": os.getpid()})


@pytest.mark.parametrize("event", [
    {"signal": "migration_applied", "package": "notes"},  # not one that travels
    {"signal": "schema_changed", "package": "notes", "changes": [{"kind": "exploded"}]},
    {"package": "notes"},
], ids=["local-signal", "bad-change", "no-signal"])
def test_what_is_not_an_event_decodes_to_nothing(event: dict[str, Any]) -> None:
    assert notify.decode(event) is None


async def test_relay_resends_what_another_sender_published(engine: AsyncEngine) -> None:
    received: list[dict[str, Any]] = []

    def receiver(_sender: object, **kwargs: Any) -> None:
        received.append(kwargs)

    publisher = object()  # as the daemon: only what it sends is published
    with signals.schema_changed.connected_to(receiver, sender=notify.CHANNEL), \
            signals.package_unregistered.connected_to(receiver, sender=notify.CHANNEL):
        async with anyio.create_task_group() as group:
            group.start_soon(notify.relay, engine)
            await listening(engine)
            async with engine.connect() as conn:  # garbage on the channel is skipped
                await (await driver(conn)).execute(
                    "SELECT pg_notify($1, 'not json')", notify.CHANNEL)
            async with notify.publishing(engine, publisher):
                await signals.emit_async(signals.schema_changed, object(), package="other",
                                         migrations=(), changes=())
                await signals.emit_async(signals.schema_changed, publisher, package="notes",
                                         migrations=("0002_x",), changes=CHANGES)
                await signals.emit_async(signals.package_unregistered, publisher,
                                         package="tags")
            with anyio.fail_after(5):
                while len(received) < 2:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()

    assert received == [
        {"package": "notes", "migrations": ("0002_x",), "changes": CHANGES,
         "pid": os.getpid()},
        {"package": "tags", "pid": os.getpid()},
    ]


# Terminating every backend kills the engine's pooled connections too; SQLAlchemy's
# asyncpg adapter drops such a connection without closing it, and asyncpg warns when it
# is collected (seen on e1fb3d1 too, in 3 runs of 6): not the relay's doing.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Connection.__del__:pytest.PytestUnraisableExceptionWarning")
async def test_relay_listens_again_after_its_connection_is_terminated(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[str] = []

    def receiver(_sender: object, *, package: str, **_: Any) -> None:
        received.append(package)

    publisher = object()
    with signals.package_unregistered.connected_to(receiver, sender=notify.CHANNEL):
        async with notify.publishing(engine, publisher), anyio.create_task_group() as group:
            group.start_soon(notify.relay, engine)
            await listening(engine)
            async with engine.connect() as conn:
                await (await driver(conn)).execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "datname = current_database() AND pid <> pg_backend_pid()")
            with anyio.fail_after(10):  # published until a listener hears it
                while not received:
                    await signals.emit_async(signals.package_unregistered, publisher,
                                             package="tags")
                    await anyio.sleep(0.2)
            group.cancel_scope.cancel()

    assert received[0] == "tags"
    assert "stopped listening on ydtb_runtime" in caplog.text



async def test_signals_sent_in_a_burst_are_published_in_order_and_all_by_the_end(
    engine: AsyncEngine,
) -> None:
    received: list[str] = []

    def receiver(_sender: object, *, package: str, **_: Any) -> None:
        received.append(package)

    publisher = object()
    names = [f"p{index:02d}" for index in range(30)]
    with signals.package_unregistered.connected_to(receiver, sender=notify.CHANNEL):
        async with anyio.create_task_group() as group:
            group.start_soon(notify.relay, engine)
            await listening(engine)
            async with notify.publishing(engine, publisher):
                for name in names:  # each send only queues: none waits for the database
                    signals.emit(signals.package_unregistered, publisher, package=name)
            with anyio.fail_after(5):
                while len(received) < len(names):
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()

    assert received == names
