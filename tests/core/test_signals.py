from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from blinker import NamedSignal, Signal

from runtime.core import signals
from runtime.core.signals import emit, emit_async

SENDER = object()
LOGGER = "runtime.core.signals"


class Boom(Exception):
    pass


class Calls:
    """Receivers that record what they were called with, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object, dict[str, Any]]] = []

    def sync(self, sender: object, **kwargs: Any) -> None:
        self.log.append(("sync", sender, kwargs))

    async def coroutine(self, sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        self.log.append(("async", sender, kwargs))

    def failing(self, sender: object, **kwargs: Any) -> None:
        raise Boom("sync receiver failed")

    async def failing_coroutine(self, sender: object, **kwargs: Any) -> None:
        raise Boom("async receiver failed")


@pytest.fixture
def signal() -> Signal:
    return NamedSignal("test-signal")


@pytest.fixture
def calls() -> Calls:
    return Calls()


def failures(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, str]]:
    """The failures logged, sorted: blinker calls receivers in no set order."""
    return sorted(
        (r.levelno, r.getMessage().split(" of signal ")[1], str(r.exc_info and r.exc_info[1]))
        for r in caplog.records
        if r.name == LOGGER
    )


def test_emit_calls_sync_and_async_receivers_with_the_kwargs(
    signal: Signal, calls: Calls
) -> None:
    signal.connect(calls.coroutine)
    signal.connect(calls.sync)

    emit(signal, SENDER, package="@acme/notes", replaced=False)

    assert sorted(calls.log, key=str) == [
        ("async", SENDER, {"package": "@acme/notes", "replaced": False}),
        ("sync", SENDER, {"package": "@acme/notes", "replaced": False}),
    ]


async def test_emit_async_awaits_sync_and_async_receivers(signal: Signal, calls: Calls) -> None:
    signal.connect(calls.coroutine)
    signal.connect(calls.sync)

    await emit_async(signal, SENDER, package="@acme/notes")

    assert sorted(calls.log, key=str) == [
        ("async", SENDER, {"package": "@acme/notes"}),
        ("sync", SENDER, {"package": "@acme/notes"}),
    ]


async def test_emit_in_a_running_loop_schedules_async_receivers(
    signal: Signal, calls: Calls
) -> None:
    signal.connect(calls.coroutine)

    emit(signal, SENDER, package="@acme/notes")
    assert calls.log == []
    for _ in range(3):
        await asyncio.sleep(0)

    assert calls.log == [("async", SENDER, {"package": "@acme/notes"})]


def test_emit_logs_a_failing_receiver_and_runs_the_others(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.failing)
    signal.connect(calls.failing_coroutine)
    signal.connect(calls.sync)

    emit(signal, SENDER, package="@acme/notes")

    assert calls.log == [("sync", SENDER, {"package": "@acme/notes"})]
    assert failures(caplog) == [
        (logging.ERROR, "'test-signal' failed", "async receiver failed"),
        (logging.ERROR, "'test-signal' failed", "sync receiver failed"),
    ]


async def test_emit_async_logs_a_failing_receiver_and_runs_the_others(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.failing_coroutine)
    signal.connect(calls.failing)
    signal.connect(calls.coroutine)

    await emit_async(signal, SENDER, package="@acme/notes")

    assert calls.log == [("async", SENDER, {"package": "@acme/notes"})]
    assert failures(caplog) == [
        (logging.ERROR, "'test-signal' failed", "async receiver failed"),
        (logging.ERROR, "'test-signal' failed", "sync receiver failed"),
    ]


async def test_emit_in_a_running_loop_logs_a_failing_scheduled_receiver(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.failing_coroutine)

    emit(signal, SENDER)
    for _ in range(3):
        await asyncio.sleep(0)

    assert failures(caplog) == [(logging.ERROR, "'test-signal' failed", "async receiver failed")]


def test_a_failing_receiver_names_itself_in_the_log(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.failing)

    emit(signal, SENDER)

    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        f"receiver {calls.failing!r} of signal 'test-signal' failed"
    ]


async def test_muted_silences_emit_and_emit_async(signal: Signal, calls: Calls) -> None:
    signal.connect(calls.sync)
    signal.connect(calls.coroutine)

    with signal.muted():
        emit(signal, SENDER)
        await emit_async(signal, SENDER)
    emit(signal, SENDER, after=True)

    assert calls.log == [("sync", SENDER, {"after": True})]


def test_connected_to_scopes_a_receiver(signal: Signal, calls: Calls) -> None:
    with signal.connected_to(calls.sync):
        emit(signal, SENDER, inside=True)
    emit(signal, SENDER, inside=False)

    assert calls.log == [("sync", SENDER, {"inside": True})]


def test_connected_to_a_sender_hears_only_that_sender(signal: Signal, calls: Calls) -> None:
    other = object()

    with signal.connected_to(calls.sync, sender=SENDER):
        emit(signal, other, n=1)
        emit(signal, SENDER, n=2)

    assert calls.log == [("sync", SENDER, {"n": 2})]


@pytest.mark.parametrize(
    "name", [n for n in signals.__all__ if n not in {"emit", "emit_async"}]
)
def test_every_signal_documents_its_sender_and_keywords(name: str) -> None:
    signal = getattr(signals, name)

    assert isinstance(signal, Signal)
    assert signal.name == name.replace("_", "-")
    assert "Sender:" in (signal.__doc__ or "")
    assert "Keywords:" in (signal.__doc__ or "")
