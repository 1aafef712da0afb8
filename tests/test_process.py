"""The CLI's tuning of its process around a load (`runtime.process`)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import process


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations collected from now on; what a test froze is unfrozen after."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.unfreeze()


def test_a_load_collects_nothing_and_freezes_what_it_made(collections: list[int]) -> None:
    interval, frozen = sys.getswitchinterval(), gc.get_freeze_count()
    with process.loading():
        assert not gc.isenabled()
        made = [[index] for index in range(300_000)]  # past any young generation's size

    assert collections == []
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)
    assert sys.getswitchinterval() == interval


def test_a_load_leaves_a_collector_that_was_off_off(collections: list[int]) -> None:
    gc.disable()
    try:
        with process.loading():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_lasting_process_keeps_collecting_while_it_loads(collections: list[int]) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with process.loading(lasting=True):
        assert gc.isenabled()
        assert gc.get_threshold()[0] == 100_000
        made = [[index] for index in range(300_000)]

    assert 0 in collections
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen
    assert len(made) == 300_000


def test_a_reload_collects_nothing_until_it_is_announced(collections: list[int]) -> None:
    with process.reloading():
        assert not gc.isenabled()
        made = [[index] for index in range(100_000)]  # past the young generation's size
        during = list(collections)
    assert during == []
    assert gc.isenabled()
    del made
    gc.disable()
    try:
        with process.reloading():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
