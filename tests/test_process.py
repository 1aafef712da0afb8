"""The CLI's tuning of its process around a load (`runtime.process`)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import run_cli, write_package

from runtime import process
from runtime.load import cache


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


def test_a_command_collects_nothing_until_it_ends(collections: list[int]) -> None:
    with process.running():
        assert not gc.isenabled()
        made = [[index] for index in range(100_000)]
        during = list(collections)
    assert during == []
    assert gc.isenabled()
    assert len(made) == 100_000


def test_the_daemon_keeps_collecting(collections: list[int]) -> None:
    with process.running(lasting=True):
        assert gc.isenabled()


@pytest.mark.parametrize("command", ["check", "graph"])
def test_the_cli_runs_a_command_without_collections_and_restores_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str,
) -> None:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    write_package(tmp_path / "packages", "notes", name="notes")
    seen: list[bool] = []
    scan = cache.scan

    def scanned(*args: Any, **kwargs: Any) -> cache.Sources:
        seen.append(gc.isenabled())
        return scan(*args, **kwargs)

    monkeypatch.setattr(cache, "scan", scanned)

    code, _ = run_cli(command, "--packages", str(tmp_path / "packages"), "--no-entry-points")

    assert code == 0
    assert seen and not any(seen)  # off while the command ran
    assert gc.isenabled()
