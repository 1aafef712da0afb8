"""Watch package directories for saves, with watchfiles.

Which changes count is decided where the package-directory rule lives
(`runtime.load.packages.counts`), so the daemon reloads on exactly the files the load
cache keeps: editors' swap and backup files, `__pycache__` and hidden names never
count. Directories pass too: a package moved in or deleted whole arrives as one event
for its directory alone.

A root deleted whole (`rm -r packages_dev`, a checkout of a branch without it) takes
the operating system's watch with it: it is watched again once it is back, and what it
holds then arrives as changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
from watchfiles import Change, awatch

from runtime.load import packages

__all__ = ["DEBOUNCE_MS", "STEP_MS", "PackageFilter", "watch"]


class PackageFilter:
    """Pass the changes that can alter a package under one of `roots`."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = [Path(root) for root in roots]

    def __call__(self, change: Change, path: str) -> bool:
        root = next((r for r in self.roots if Path(path).is_relative_to(r)), None)
        return packages.counts(path, root)


#: How watchfiles groups a burst of saves (see `watch`): the daemon's defaults.
DEBOUNCE_MS = 50
# A save is seen one to two steps after it is written: the last step finds nothing new.
# 10 ms took 16 ms at the median, 3 ms takes 6 (scripts/bench, reload group), for 0.6 %
# more of a core while idle. An editor's save (temporary file, rename) or a `cp -r` of
# a package takes well under a millisecond, so it is still one burst.
STEP_MS = 3


async def watch(
    roots: Iterable[Path],
    *,
    debounce_ms: int = DEBOUNCE_MS,
    step_ms: int = STEP_MS,
    stop_event: anyio.Event | None = None,
    ready: anyio.Event | None = None,
) -> AsyncIterator[set[Path]]:
    """Yield the set of changed paths under `roots`, one set per burst of changes.

    Args:
        debounce_ms, step_ms: watchfiles' grouping: a burst ends after `step_ms` of quiet,
            and is cut at `debounce_ms` (measured: 6 ms median to notice a save at 50/3,
            16 ms at 50/10, 74 ms with watchfiles' defaults of 1600/50).
        ready: set once the operating system's watch is in place, so a caller (a test)
            knows a write from now on will be seen.
    """
    roots = [root.resolve() for root in roots]
    watched = _present(roots)
    while stop_event is None or not stop_event.is_set():
        renewed: set[Path] = set()
        if watched:
            try:
                async for changes in awatch(
                    *watched, watch_filter=PackageFilter(roots), debounce=debounce_ms,
                    step=step_ms, stop_event=stop_event, rust_timeout=100,
                    yield_on_timeout=True,
                ):
                    if ready is not None and not ready.is_set():
                        ready.set()
                    paths = {Path(path) for _, path in changes}
                    if paths:
                        yield paths
                    # A root deleted (and perhaps made again since, its inode number
                    # reused) took its watch with it; one that was gone may be back.
                    renewed = {root for root in watched if not root.is_dir()
                               or (Change.deleted, str(root)) in changes}
                    if renewed or len(_present(roots)) != len(watched):
                        break
            except FileNotFoundError:  # a root went between the look and the watch
                renewed = set(watched)
                await anyio.sleep(_ABSENT_POLL_S)
        else:
            await anyio.sleep(_ABSENT_POLL_S)  # every root gone: look for them again
        present = _present(roots)
        back = [root for root in present if root not in watched or root in renewed]
        watched = present
        if back:
            yield {child for root in back for child in _children(root)}


#: How often roots that are gone are looked for, when no root is left to watch.
_ABSENT_POLL_S = 0.1


def _present(roots: list[Path]) -> list[Path]:
    return [root for root in roots if root.is_dir()]


def _children(root: Path) -> list[Path]:
    try:
        return [child for child in root.iterdir() if packages.counts(child, root)]
    except OSError:  # gone again: the next look says so
        return []
