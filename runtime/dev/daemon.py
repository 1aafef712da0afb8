"""The dev daemon: keep the dev database in step with the package directories.

One anyio task group: the watcher feeds a stream, one reload worker drains it (a burst
of saves becomes one reload; one reload at a time). A reload works on a copy of the
registry: it re-imports the changed package directories afresh, re-validates them with
their dependents, applies their new migrations, and only then adopts the copy. Any
failure on the way is reported and the last good registry and database are kept.

The work of one reload grows with the changed packages' closure (their dependents),
never with the number of packages loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core import signals, validation
from runtime.core.registry import DatabaseRegistry
from runtime.db import migrator, notify
from runtime.db.migrator import MigrationReport
from runtime.dev import loader, watcher
from runtime.errors import (
    MigrationFailedError,
    PackageLoadError,
    Problem,
    RegistryError,
    ValidationError,
)

__all__ = ["Daemon"]

logger = logging.getLogger(__name__)


class Daemon:
    """Load, migrate, then watch and reload the packages of `directories`.

    Args:
        engine: the dev database.
        directories: package directories to load and watch (`packages_dev`).
        registry: the registry to keep current (a new one by default).
        entry_points: also load installed packages (loaded once, not watched).
        debounce_ms, step_ms: how watchfiles groups a burst of saves.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        directories: Iterable[Path],
        *,
        registry: DatabaseRegistry | None = None,
        entry_points: bool = True,
        debounce_ms: int = 50,
        step_ms: int = 10,
    ) -> None:
        self.engine = engine
        self.directories = [Path(d).resolve() for d in directories]
        self.registry = registry if registry is not None else DatabaseRegistry()
        self.entry_points = entry_points
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        #: Set once the watcher is in place: saves from then on are seen.
        self.watching = anyio.Event()
        self._sources: dict[Path, list[str]] = {}
        self._stop = anyio.Event()

    # -- start ---------------------------------------------------------------------

    async def start(self) -> MigrationReport:
        """Load every package and apply what is pending.

        Packages that fail to load or validate are reported (`validation_failed`) and
        left out, with the packages that depend on them; the others are migrated.
        """
        for directory in loader.discover(self.directories):
            await self._load_initial(directory)
        if self.entry_points:
            try:
                await anyio.to_thread.run_sync(loader.load_entry_points, self.registry)
            except RegistryError as exc:
                await self._failed(exc)
        await self._prune_invalid()
        return await migrator.migrate(self.engine, self.registry.ordered(), sender=self)

    async def _load_initial(self, directory: Path) -> None:
        candidate = self.registry.copy()
        try:
            names = await anyio.to_thread.run_sync(loader.load_directory, directory, candidate)
        except RegistryError as exc:
            self._sources[directory] = []
            await self._failed(exc)
            return
        self._sources[directory] = names
        for name in names:
            self.registry.register(candidate.get(name))

    async def _prune_invalid(self) -> None:
        problems = self.registry.problems()
        if not problems:
            return
        await self._failed(ValidationError(problems))
        bad = self.registry.closure(*{p.package for p in problems if p.package in self.registry})
        for name in reversed(bad):
            self.registry.unregister(name)

    # -- run -----------------------------------------------------------------------

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Start, then watch and reload until cancelled or `stop()`."""
        await self.start()
        send, receive = anyio.create_memory_object_stream[tuple[set[Path], float]](1000)
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, send)
            group.start_soon(self._work, receive)
            task_status.started()

    def stop(self) -> None:
        """Ask the watcher to stop; `run()` returns once the pending reload finished."""
        self._stop.set()

    async def _watch(self, send: MemoryObjectSendStream[tuple[set[Path], float]]) -> None:
        async with send:
            async for paths in watcher.watch(
                self.directories, debounce_ms=self.debounce_ms, step_ms=self.step_ms,
                stop_event=self._stop, ready=self.watching,
            ):
                await send.send((paths, time.perf_counter()))

    async def _work(self, receive: MemoryObjectReceiveStream[tuple[set[Path], float]]) -> None:
        async with receive:
            async for paths, seen in receive:
                # Saves that arrived while the last reload ran are handled together.
                while True:
                    try:
                        more, _ = receive.receive_nowait()
                    except anyio.WouldBlock:
                        break
                    paths |= more
                await self.reload(paths, seen=seen)

    # -- reload --------------------------------------------------------------------

    async def reload(self, paths: Iterable[Path], *, seen: float | None = None) -> bool:
        """Handle changed paths; return whether the change was applied.

        Args:
            paths: changed files or directories under the watched directories.
            seen: `time.perf_counter()` when the change was seen, for the timing.
        """
        seen = time.perf_counter() if seen is None else seen
        dirs = {d for p in paths if (d := watcher.package_directory(Path(p), self.directories))}
        if not dirs:
            return True
        candidate = self.registry.copy()
        try:
            sources, changed, removed = await self._load_changed(candidate, sorted(dirs))
            affected = candidate.closure(*changed) if changed else []
            problems = validation.check_set(candidate.packages, affected)
            if problems:
                raise ValidationError(problems)
            packages = [candidate.get(name) for name in affected]
            report = await migrator.migrate(self.engine, packages, rerun_edited=True,
                                            partial=True, sender=self)
        except RegistryError as exc:
            await self._failed(exc)
            await signals.emit_async(signals.reloaded, self, packages=(), applied=(),
                                     elapsed_ms=_ms(seen), error=exc)
            return False
        await self._adopt(candidate, sources, changed, removed, report)
        await signals.emit_async(
            signals.reloaded, self, packages=tuple(changed + removed),
            applied=tuple(f"{a.package} {a.migration}" for a in report.applied),
            elapsed_ms=_ms(seen), error=None)
        return True

    async def _load_changed(
        self, candidate: DatabaseRegistry, dirs: list[Path]
    ) -> tuple[dict[Path, list[str]], list[str], list[str]]:
        sources: dict[Path, list[str]] = {}
        changed: list[str] = []
        removed: list[str] = []
        for directory in dirs:
            if (directory / "package.py").is_file():
                names = await anyio.to_thread.run_sync(loader.load_directory, directory,
                                                       candidate)
            else:
                names = []
            sources[directory] = names
            changed.extend(names)
            removed.extend(n for n in self._sources.get(directory, []) if n not in names)
        for name in removed:
            if name in candidate:
                candidate.unregister(name)
        return sources, changed, removed

    async def _adopt(
        self,
        candidate: DatabaseRegistry,
        sources: dict[Path, list[str]],
        changed: list[str],
        removed: list[str],
        report: MigrationReport,
    ) -> None:
        for name in removed:
            if name in self.registry:
                self.registry.unregister(name)
        for name in candidate.closure(*changed) if changed else []:
            if name in changed:
                self.registry.register(candidate.get(name))
        self._sources.update(sources)
        by_package = report.by_package()
        async with self.engine.connect() as conn:
            raw = await migrator.driver(conn)
            for name, items in by_package.items():
                ids = tuple(i.migration for i in items)
                changes = tuple(f"{'re-ran edited' if i.rerun else 'applied'} {i.migration}"
                                for i in items)
                await signals.emit_async(signals.schema_changed, self, package=name,
                                         migrations=ids, changes=changes)
                await notify.publish(raw, "schema_changed", package=name,
                                     migrations=list(ids), changes=list(changes))
            for name in removed:
                await notify.publish(raw, "package_unregistered", package=name)

    async def _failed(self, error: RegistryError) -> None:
        package = _package_of(error)
        if not isinstance(error, MigrationFailedError):  # the pipeline sent migration_failed
            await signals.emit_async(signals.validation_failed, self, package=package,
                                     error=error)
        logger.debug("reload failed: %s", error)


def _package_of(error: RegistryError) -> str | None:
    if isinstance(error, PackageLoadError | MigrationFailedError):
        return error.package
    problems: tuple[Problem, ...] = getattr(error, "problems", ())
    return problems[0].package if problems else getattr(error, "package", None)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
