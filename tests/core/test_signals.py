from __future__ import annotations

import asyncio
import logging
import threading
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


async def test_emit_calls_sync_and_async_receivers_with_the_kwargs(
    signal: Signal, calls: Calls
) -> None:
    signal.connect(calls.coroutine)
    signal.connect(calls.sync)

    emit(signal, SENDER, package="@acme/notes", replaced=False)
    for _ in range(3):
        await asyncio.sleep(0)

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
    signal.connect(calls.sync)

    emit(signal, SENDER, package="@acme/notes")

    assert calls.log == [("sync", SENDER, {"package": "@acme/notes"})]
    assert failures(caplog) == [(logging.ERROR, "'test-signal' failed", "sync receiver failed")]


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


async def test_emit_in_a_thread_owned_by_the_loop_runs_async_receivers_on_it_in_turn(
    signal: Signal, calls: Calls
) -> None:
    loop_thread = threading.get_ident()
    ran_on: list[int] = []

    async def receiver(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        ran_on.append(threading.get_ident())

    signal.connect(receiver)
    signal.connect(calls.coroutine)
    loop = asyncio.get_running_loop()

    def work() -> tuple[int, list[int], int]:
        with signals.owned_by(loop):
            emit(signal, SENDER, package="@acme/notes")
        # Read in the thread, before returning: the receivers are done when emit returns.
        return threading.get_ident(), list(ran_on), len(calls.log)

    worker, seen, logged = await asyncio.to_thread(work)

    assert worker != loop_thread
    assert seen == [loop_thread]
    assert logged == 1
    assert calls.log == [("async", SENDER, {"package": "@acme/notes"})]


async def test_emit_in_a_thread_owned_by_the_loop_logs_a_failing_async_receiver(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.failing_coroutine)
    signal.connect(calls.coroutine)
    signal.connect(calls.sync)
    loop = asyncio.get_running_loop()

    def work() -> None:
        with signals.owned_by(loop):
            emit(signal, SENDER, package="@acme/notes")

    await asyncio.to_thread(work)

    assert sorted(calls.log, key=str) == [
        ("async", SENDER, {"package": "@acme/notes"}),
        ("sync", SENDER, {"package": "@acme/notes"}),
    ]
    assert failures(caplog) == [(logging.ERROR, "'test-signal' failed", "async receiver failed")]


def not_run(receiver: object) -> str:
    return (f"receiver {receiver!r} of signal 'test-signal' not run: it returned a coroutine, "
            "and no event loop runs in this thread or owns it; send the signal from the event "
            "loop's thread, or inside signals.owned_by(loop) while the loop runs")


async def test_emit_in_a_thread_without_an_owner_makes_no_loop_and_logs_the_receiver(
    signal: Signal,
    calls: Calls,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[object] = []

    def new_event_loop() -> asyncio.AbstractEventLoop:
        made.append(threading.get_ident())
        raise AssertionError("emit made an event loop")

    # asyncio.run and asyncio.new_event_loop both make their loop through this one.
    monkeypatch.setattr(asyncio.events, "new_event_loop", new_event_loop)
    monkeypatch.setattr(asyncio, "new_event_loop", new_event_loop)
    signal.connect(calls.coroutine)
    signal.connect(calls.sync)

    await asyncio.to_thread(emit, signal, SENDER)

    assert made == []
    assert calls.log == [("sync", SENDER, {})]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        not_run(calls.coroutine)
    ]


async def test_owned_by_marks_the_thread_only_for_its_block(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.coroutine)
    loop = asyncio.get_running_loop()

    def work() -> None:
        with signals.owned_by(loop), signals.owned_by(loop):
            pass
        emit(signal, SENDER)

    await asyncio.to_thread(work)

    assert calls.log == []
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        not_run(calls.coroutine)
    ]


def test_emit_without_a_loop_or_an_owner_closes_the_coroutine_and_logs_it(
    signal: Signal, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(calls.coroutine)

    emit(signal, SENDER)

    assert calls.log == []
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        not_run(calls.coroutine)
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
    "name", [n for n in signals.__all__ if n not in {"emit", "emit_async", "owned_by"}]
)
def test_every_signal_documents_its_sender_and_keywords(name: str) -> None:
    signal = getattr(signals, name)

    assert isinstance(signal, Signal)
    assert signal.name == name  # one spelling: the attribute, the name, NOTIFY's "signal"
    assert "Sender:" in (signal.__doc__ or "")
    assert "Keywords:" in (signal.__doc__ or "")
