"""A load held by a package's code is named while it lasts (`signals.load_slow`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import write_package

from runtime.core import signals
from runtime.core.registry import DatabaseRegistry
from runtime.load import loader, watchdog


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(watchdog, "SLOW_S", 0.2)
    heard: list[dict[str, Any]] = []

    def slow(_sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    with signals.load_slow.connected_to(slow):
        yield heard


def _package(tmp_path: Path, name: str, pause_s: float) -> Path:
    write_package(tmp_path, name, name=name, tables={}, migrations={})
    with (tmp_path / name / "schema.py").open("a") as schema:
        schema.write(f"\nimport time\ntime.sleep({pause_s})\n")
    return tmp_path / name


def test_a_load_held_by_the_package_is_named_once(tmp_path: Path, told: Any) -> None:
    directory = _package(tmp_path, "sleepy", 1.0)

    names = loader.load_directory(directory, DatabaseRegistry(send_signals=False))

    assert names == ["sleepy"]
    assert len(told) == 1
    assert told[0]["source"] == str(directory.resolve())
    assert 0.2 <= told[0]["seconds"] < 1.0


def test_a_quick_load_is_not_named(tmp_path: Path, told: Any) -> None:
    for number in range(3):
        loader.load_directory(_package(tmp_path, f"quick{number}", 0.0),
                              DatabaseRegistry(send_signals=False))
    time.sleep(0.5)  # the watchdog looked again since

    assert told == []


def test_loads_in_two_threads_are_each_named(tmp_path: Path, told: Any) -> None:
    directories = [_package(tmp_path, f"slow{number}", 0.8) for number in range(2)]
    threads = [threading.Thread(target=loader.load_directory,
                                args=(d, DatabaseRegistry(send_signals=False)))
               for d in directories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(t["source"] for t in told) == sorted(str(d.resolve()) for d in directories)
