"""Watch package directories for saves, with watchfiles.

Only files a package is made of count (`.py`, `.sql`), deletions, and directories;
watchfiles' default filter already drops editors' swap and backup files, `__pycache__`
and `.git`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
from watchfiles import Change, DefaultFilter, awatch

__all__ = ["PackageFilter", "package_directory", "watch"]


class PackageFilter(DefaultFilter):
    """Pass the changes that can alter a package: its Python and SQL files, and deletions."""

    extensions = (".py", ".sql")

    def __call__(self, change: Change, path: str) -> bool:
        # A path with no suffix is most likely a directory: a package moved in or
        # deleted whole arrives as one event for its directory alone.
        return super().__call__(change, path) and (
            path.endswith(self.extensions) or change == Change.deleted
            or "." not in path.rpartition("/")[2]
        )


def package_directory(path: Path, roots: Iterable[Path]) -> Path | None:
    """Return the package directory a changed path belongs to (the root's child), if any."""
    for root in roots:
        if path.is_relative_to(root) and path != root:
            return root / path.relative_to(root).parts[0]
    return None


async def watch(
    roots: Iterable[Path],
    *,
    debounce_ms: int = 50,
    step_ms: int = 10,
    stop_event: anyio.Event | None = None,
    ready: anyio.Event | None = None,
) -> AsyncIterator[set[Path]]:
    """Yield the set of changed paths under `roots`, one set per burst of changes.

    Args:
        debounce_ms, step_ms: watchfiles' grouping: a burst ends after `step_ms` of quiet,
            and is cut at `debounce_ms` (measured: 16 ms median to notice a save at 50/10,
            74 ms with watchfiles' defaults of 1600/50).
        ready: set once the operating system's watch is in place, so a caller (a test)
            knows a write from now on will be seen.
    """
    roots = [root.resolve() for root in roots]
    async for changes in awatch(
        *roots, watch_filter=PackageFilter(), debounce=debounce_ms, step=step_ms,
        stop_event=stop_event, rust_timeout=100, yield_on_timeout=True,
    ):
        if ready is not None and not ready.is_set():
            ready.set()
        if changes:
            yield {Path(path) for _, path in changes}
