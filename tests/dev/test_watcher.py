"""The watcher alone: roots that go and come back."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from runtime.dev import watcher


async def test_a_root_gone_between_the_look_and_the_watch_is_watched_once_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "packages"
    present = watcher._present
    looks: list[int] = []

    def late(roots: list[Path]) -> list[Path]:
        looks.append(1)
        return roots if len(looks) == 1 else present(roots)  # as if it went just after

    monkeypatch.setattr(watcher, "_present", late)
    stop = anyio.Event()
    seen: list[set[Path]] = []

    async def watch() -> None:
        async for paths in watcher.watch([root], stop_event=stop):
            seen.append(paths)
            stop.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            await anyio.sleep(0.3)  # watchfiles found no such path: the watch goes on
            (root / "notes").mkdir(parents=True)

    assert seen == [{root / "notes"}]


async def test_a_root_whose_attributes_change_is_not_read_again(tmp_path: Path) -> None:
    # Only its deletion takes the watch away: `chmod` or `touch` of the root must not
    # reload every package under it.
    root = tmp_path / "packages"
    (root / "notes").mkdir(parents=True)
    ready, stop = anyio.Event(), anyio.Event()
    seen: list[set[Path]] = []
    saved = root / "notes" / "schema.py"

    async def watch() -> None:
        async for paths in watcher.watch([root], stop_event=stop, ready=ready):
            seen.append(paths)
            if saved in paths:
                stop.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            await ready.wait()
            root.chmod(0o700)
            await anyio.sleep(0.3)
            saved.write_text("# saved\n")

    assert {root / "notes"} not in seen  # the root's children, as if it came back
    assert any(saved in paths for paths in seen)
