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

When what changed is SQL migration files only (`_reread`: added, edited or deleted in
the directory every migration of the package came from, the package's code and every
module it imported unchanged), nothing is imported at all: the package is its cached
facts with its migrations read again from that directory, as `load_migrations` reads
them (`runtime.migration_files`), and checked by the same rules (Y110-Y112). The set's
rules read nothing a migration changes, so the cached valid set stays valid. The run
is the same partial run, on asyncpg alone (`runtime.db.engine.Database`): no
SQLAlchemy, which cost more than the rest of such a deploy (#17). A package whose
migrations are not exactly that directory's files, a Python migration edited or
pending, a problem or a load error: the package is imported, as above.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from runtime import migration_files
from runtime.config import TransactionMode
from runtime.core import signals
from runtime.core.facts import Skeleton, skeleton, with_migrations
from runtime.core.manifest import Entry
from runtime.core.model import Migration, Package, migration_problems, migration_sort_key
from runtime.core.names import CORE_PACKAGE
from runtime.core.recorded import Planned, compare, unregistered
from runtime.db import ledger, migrator, stream
from runtime.db.engine import Engine, connection, sqlalchemy_engine
from runtime.db.migrator import Vet
from runtime.db.run import MigrationReport
from runtime.errors import PackageLoadError, ProblemsError, RegistryError
from runtime.load import cache, loader
from runtime.load.packages import PACKAGE_FILE
from runtime.migration_files import is_migration_file

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from runtime.core.registry import DatabaseRegistry

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
    engine: Engine,
    directories: Iterable[Path],
    registry: DatabaseRegistry | Callable[[], DatabaseRegistry],
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
        engine: the database; a `runtime.db.engine.Database` is run on with asyncpg
            alone while no package code is imported (a change of SQL migration files
            only), and through its SQLAlchemy engine otherwise.
        registry: where the packages are registered, or a function making it, called
            only when packages are imported: a change of SQL migration files only
            registers nothing, and leaves the registry unmade (#17).
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
    made: list[DatabaseRegistry] = []

    def registered() -> DatabaseRegistry:
        if not made:
            made.append(registry() if callable(registry) else registry)
        return made[0]

    if changes is not None:
        changed = await _migrate_changed(engine, changes, registered, sender=sender, wait=wait,
                                         lock_retries=lock_retries, transaction=transaction,
                                         vet=vet)
        if changed is not None:
            return changed
    import anyio.from_thread  # 10 ms: a load answered from the cache has no thread

    engine = sqlalchemy_engine(engine)
    registry = registered()
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
    engine: Engine,
    changes: cache.Changes,
    registry: Callable[[], DatabaseRegistry],
    **run: Any,
) -> Outcome | None:
    """Load and migrate only what changed (see the module doc); None to load it all."""
    reread = _reread_all(changes)
    if reread is not None:
        done = await _migrate_reread(engine, changes, reread, **run)
        if done is not None:
            return done
    engine = sqlalchemy_engine(engine)  # package code is imported: it may need SQLAlchemy
    candidate = registry().copy()
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
    if not await _behind_is_loaded(engine, packages, [p for p in packages if p.name in loaded]):
        return None  # the database is behind the cached set: the full run says how
    report = await migrator.migrate(engine, [p for p in packages if p.name in loaded],
                                    partial=True, known=packages, **run)
    registry().adopt(candidate)
    return Outcome(load=result, packages=packages, report=report)


async def _behind_is_loaded(
    engine: Engine, packages: Sequence[Planned], loaded: Sequence[Package]
) -> bool:
    """Tell whether the ledger records each of `packages` not in `loaded` as it is, and
    no other package: then a partial run of `loaded` is what a full run would do.

    The Python migrations of a package read again from its files (`_reread`) must be
    applied too: they are not read, so they cannot run.
    """
    async with connection(engine) as raw:
        recorded = await ledger.read_ledger(raw)
    names = {p.name for p in loaded}
    placeholders = [(p.name, m) for p in loaded for m in p.migrations if m.up is _never_run]
    return not unregistered(recorded, {p.name for p in packages}) and all(
        compare(p, recorded) == (None, (), False) for p in packages
        if p.name not in names) and all(
        recorded.applied.get((name, m.id)) == m.checksum for name, m in placeholders)


def _reread_all(changes: cache.Changes) -> dict[Path, Skeleton] | None:
    """Each changed directory's package with its migrations read again, when every
    change is to SQL migration files only (#17); None when a package must be imported."""
    if not changes.directories:
        return None
    by_source: dict[object, list[Entry]] = {}
    for e in changes.manifest.entries:
        if isinstance(e.facts, list) and len(e.facts) > 3:
            by_source.setdefault(e.facts[3], []).append(e)
    reread = {}
    for directory in changes.directories:
        entries = by_source.get(str(directory.resolve() / PACKAGE_FILE), [])
        edited = changes.edited.get(directory)
        if len(entries) != 1 or edited is None:
            return None  # a new directory, or one registering no package or several
        entry = entries[0]
        try:
            package = _reread(skeleton(entry), directory, edited)
        except ValueError:  # the cache's facts are not what this version writes
            return None
        if package is None:
            return None
        reread[directory] = package
    return reread


def _reread(package: Skeleton, directory: Path, edited: frozenset[str]) -> Skeleton | None:
    """`package` with its migrations read again from their directory, when the files
    `edited` of `directory` are SQL migration files there and the package's migrations
    are exactly that directory's files, as `load_migrations` reads them; else None."""
    sources = package.migration_sources
    files = {source: (migration, transactional, python) for migration, (
        source, transactional, python) in zip(package.migrations, sources, strict=True)}
    folders = {os.path.dirname(f) for f in files if f is not None}
    if not files or None in files or len(folders) != 1:
        return None
    folder = folders.pop()
    resolved = directory.resolve()
    edited = frozenset(str(resolved / Path(p).relative_to(directory)) for p in edited)
    if not all(os.path.dirname(p) == folder and p.endswith(".sql") and is_migration_file(p)
               for p in edited):
        return None
    try:
        listed = [str(p) for p in migration_files.listed(Path(folder))]
    except PackageLoadError:
        return None  # the full load reports it, in its words
    if any(p not in files for p in listed if p not in edited) or any(
            p not in listed and p not in edited for p in files):
        return None  # the package leaves out, or adds, migrations of its own accord
    migrations = []
    for path in listed:
        if path in edited:
            try:
                migrations.append(migration_files.read_sql(Path(path)))
            except PackageLoadError:
                return None
            continue
        cached, transactional, python = files[path]
        if python:
            migrations.append(_placeholder(cached, transactional, path))
            continue
        try:
            migration = migration_files.read_sql(Path(path))
        except PackageLoadError:
            return None
        if (migration.id, migration.checksum, migration.transactional) != (
                cached.id, cached.checksum, transactional):
            return None  # the package changes what it reads: its code must say how
        migrations.append(migration)
    migrations.sort(key=lambda m: migration_sort_key(m.id))
    if not migrations or migration_problems(package.name, migrations):
        return None  # a derived migration, or a problem: the full load says which
    return with_migrations(package, migrations)


async def _never_run(conn: object) -> None:
    """The `up` of an unchanged Python migration of a package read again (`_reread`): the
    run goes ahead only when it is applied (`_behind_is_loaded`), so it never runs."""
    raise AssertionError("runtime: a Python migration answered from the load cache ran")


def _placeholder(cached: Migration, transactional: bool, source: str) -> Migration:
    # Its file kept as its source: the cache written after the run still knows it.
    migration = Migration(cached.id, up=_never_run, transactional=transactional,
                          source=source)
    object.__setattr__(migration, "checksum", cached.checksum)  # as __post_init__ sets it
    return migration


async def _migrate_reread(
    engine: Engine, changes: cache.Changes, reread: dict[Path, Skeleton], **run: Any
) -> Outcome | None:
    """Migrate the packages read again from their migration files over the cached set:
    nothing is imported, and SQLAlchemy need not be (#17)."""
    by_name = {p.name: p for p in reread.values()}
    if not await _behind_is_loaded(engine, changes.manifest.entries, list(by_name.values())):
        return None
    try:  # the others' tables are read by name only (whose table a migration touched)
        packages: list[Package] = [by_name.get(e.name) or skeleton(e)
                                   for e in changes.manifest.entries]
    except ValueError:
        return None
    report = await migrator.migrate(engine, [p for p in packages if p.name in by_name],
                                    partial=True, known=packages, **run)
    result = loader.LoadResult(packages={str(d): [p.name] for d, p in reread.items()})
    return Outcome(load=result, packages=packages, report=report)
