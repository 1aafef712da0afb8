"""Load packages and migrate the database at once: the whole init pipeline in one call.

The loader imports packages in a worker thread and hands each directory's packages to
`runtime.db.stream` as soon as they are registered, which applies them inside the
run's one transaction while the next ones load: at N = 300 the import (Python, one
core) hides behind the DDL (PostgreSQL, the other core). The set is validated when
loading ends; an invalid set, or a directory that failed to load, rolls everything back.

Given the load cache's `Changes` (some package directories changed, nothing else did),
it imports those directories only (#17). The others are skeletons of the cached valid
set (`runtime.core.facts`), trusted as valid; the change is checked where it lands, as
the dev daemon checks a reload (`DatabaseRegistry.update`). When every unchanged package
is as the ledger records it, the run is a partial one, of the loaded packages, as a
reload's. Anything else (a problem, a load error, a package the ledger records
differently or not at all) loads everything, which migrates or reports it in its own
words: the shortcut never answers what the full load would answer differently.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.config import TransactionMode
from runtime.core import signals
from runtime.core.facts import skeleton
from runtime.core.model import Package
from runtime.core.recorded import compare, unregistered
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_PACKAGE
from runtime.db import ledger, migrator, stream
from runtime.db.engine import driver
from runtime.db.migrator import Vet
from runtime.db.run import MigrationReport
from runtime.errors import ProblemsError, RegistryError
from runtime.load import cache, loader

__all__ = ["Outcome", "load_and_migrate"]

@dataclass
class Outcome:
    """What `load_and_migrate` did.

    Attributes:
        load: what each directory registered, and the errors met loading.
        packages: the set in dependency order; None when it did not load or is invalid.
        problems: why the set is invalid, if it is.
        report: what the run applied; None when nothing was, for either reason above.
    """

    load: loader.LoadResult = field(default_factory=loader.LoadResult)
    packages: list[Package] | None = None
    problems: ProblemsError | None = None
    report: MigrationReport | None = None


def _queued(receive: MemoryObjectReceiveStream[Sequence[Package]]) -> list[Package]:
    packages: list[Package] = []
    while True:
        try:
            packages.extend(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return packages


async def load_and_migrate(
    engine: AsyncEngine,
    directories: Iterable[Path],
    registry: DatabaseRegistry,
    *,
    entry_points: bool = True,
    sender: object = None,
    wait: float | None = None,
    lock_retries: int = 0,
    transaction: TransactionMode = TransactionMode.ALL,
    vet: Vet | None = None,
    changes: cache.Changes | None = None,
    bytecode: Path | None = None,
) -> Outcome:
    """Load the packages of `directories` (and entry points) into `registry` and migrate.

    It changes nothing of the process: a caller that owns it (the CLI) may tune the
    garbage collector and the switch interval around the call (`runtime.process`).

    Args:
        wait, lock_retries, transaction: as for `migrator.migrate`; in modes other than
            `all` the packages are applied once all are loaded and valid.
        vet: asked of the pending steps before they are applied (`migrator.migrate`).
        changes: what changed since the load cache's set (`cache.changes`): only the
            changed directories are loaded, when that answers as loading all would.
        bytecode: where the packages' compiled code is kept (`loader.load_all`).

    Raises:
        MigrationFailedError, LedgerConflictError: as `migrator.migrate` does, and what
            `vet` raises.
    """
    if changes is not None:
        changed = await _migrate_changed(engine, changes, registry, sender=sender, wait=wait,
                                         lock_retries=lock_retries, transaction=transaction,
                                         vet=vet)
        if changed is not None:
            return changed
    outcome = Outcome()
    send, receive = anyio.create_memory_object_stream[Sequence[Package]](math.inf)

    def arrived(names: list[str]) -> None:
        anyio.from_thread.run_sync(send.send_nowait, [registry.get(n) for n in names])

    loop = asyncio.get_running_loop()

    def load() -> None:
        # `registry` may send signals from this thread: their coroutine receivers run
        # on the caller's loop, not on one made for them.
        try:
            with signals.owned_by(loop):
                outcome.load = loader.load_all(directories, registry,
                                               entry_points=entry_points, each=arrived,
                                               bytecode=bytecode)
        finally:
            anyio.from_thread.run_sync(send.close)

    async def arrivals() -> AsyncIterator[Sequence[Package]]:
        yield [registry.get(CORE_PACKAGE)]
        async with receive:
            async for packages in receive:
                # What arrived while the last ones applied goes together: one round trip.
                yield [*packages, *_queued(receive)]

    def resolve() -> list[Package] | None:
        try:
            packages = registry.ordered()
        except ProblemsError as exc:
            outcome.problems = exc
            return None
        if outcome.load.errors:
            return None
        outcome.packages = packages
        return packages

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, load)
            outcome.report = await stream.migrate_as_loaded(engine, arrivals(), resolve,
                                                            sender=sender, wait=wait,
                                                            lock_retries=lock_retries,
                                                            transaction=transaction,
                                                            vet=vet)
    except BaseExceptionGroup as failed:
        # The loader collects its errors, so one task failed: raise its error as
        # `migrator.migrate` would, not wrapped in a group callers must unpack.
        raise failed.exceptions[0] from None
    finally:
        receive.close()  # unread when the run failed before it (its lock, say)
    return outcome


def _load_changed(changes: cache.Changes, registry: DatabaseRegistry) -> loader.LoadResult | None:
    """Load the changed directories over the skeletons of the cached set; None if the
    change is not plainly valid (the full load says why)."""
    result = loader.LoadResult()
    old = [skeleton(e) for e in changes.manifest.entries if e.name != CORE_PACKAGE]
    registry.trust(old)
    taken = {p.name: p.source or "" for p in old if changes.unchanged(p.source)}
    for directory in changes.directories:
        try:
            names = loader.load_directory(directory, registry, taken=taken,
                                          refused=result.refused)
        except RegistryError:
            return None
        result.packages[str(directory)] = names
        taken.update((name, registry.get(name).source or "") for name in names)
    gone = [p.name for p in old if p.name not in taken]
    try:
        registry.update(remove=gone)
        registry.ordered()
    except RegistryError:
        return None
    return result


async def _migrate_changed(
    engine: AsyncEngine,
    changes: cache.Changes,
    registry: DatabaseRegistry,
    **run: Any,
) -> Outcome | None:
    """Load and migrate only what changed (see the module doc); None to load it all."""
    candidate = registry.copy()
    loop = asyncio.get_running_loop()

    def load() -> loader.LoadResult | None:
        with signals.owned_by(loop):
            return _load_changed(changes, candidate)

    try:
        result = await anyio.to_thread.run_sync(load)
    except ValueError:  # the cache's facts are not what this version writes
        return None
    if result is None:
        return None
    packages = candidate.ordered()
    loaded = {name for names in result.packages.values() for name in names}
    async with engine.connect() as conn:
        recorded = await ledger.read_ledger(await driver(conn))
    if unregistered(recorded, candidate.packages) or any(
            compare(p, recorded) != (None, (), False) for p in packages if p.name not in loaded):
        return None  # the database is behind the cached set: the full run says how
    report = await migrator.migrate(engine, [p for p in packages if p.name in loaded],
                                    partial=True, known=packages, **run)
    registry.adopt(candidate)
    return Outcome(load=result, packages=packages, report=report)
