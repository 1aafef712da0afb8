"""Load packages and migrate the database at once: the whole init pipeline in one call.

The loader imports packages in a worker thread and hands each directory's packages to
`runtime.db.stream` as soon as they are registered, which applies them inside the
run's one transaction while the next ones load: at N = 300 the import (Python, one
core) hides behind the DDL (PostgreSQL, the other core). The set is validated when
loading ends; an invalid set, or a directory that failed to load, rolls everything back.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.config import TransactionMode
from runtime.core import signals
from runtime.core.model import Package
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_PACKAGE
from runtime.db import stream
from runtime.db.migrator import Vet
from runtime.db.run import MigrationReport
from runtime.errors import ProblemsError
from runtime.load import loader

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
) -> Outcome:
    """Load the packages of `directories` (and entry points) into `registry` and migrate.

    It changes nothing of the process: a caller that owns it (the CLI) may tune the
    garbage collector and the switch interval around the call (`runtime.process`).

    Args:
        wait, lock_retries, transaction: as for `migrator.migrate`; in modes other than
            `all` the packages are applied once all are loaded and valid.
        vet: asked of the pending steps before they are applied (`migrator.migrate`).

    Raises:
        MigrationFailedError, LedgerConflictError: as `migrator.migrate` does, and what
            `vet` raises.
    """
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
                                               entry_points=entry_points, each=arrived)
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
