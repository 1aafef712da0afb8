"""The dev daemon: keep the dev database in step with the package directories.

One anyio task group: the watcher feeds a stream, one reload worker drains it (a burst
of saves becomes one reload; one reload at a time). A reload works on a copy of the
registry: it re-imports the changed package directories afresh, re-validates them with
their dependents, applies their new migrations, and only then adopts the copy. Any
failure on the way is reported and the last good registry and database are kept.

After the migrations, each package whose schema or migrations changed is compared with
the dev database (`runtime.db.sync`): what its declared schema adds is applied at once
and booked as a dev change, one ledger row per object; what may lose data is explained
and left alone, unless the daemon runs with `allow_destructive`. Once a migration of a
package ran (in a reload, at start, or in a reload that failed after it), or a dev
change touched what an earlier one did, its dev rows are settled (`sync.reconcile`): a
row whose object the migrations build goes, the others stay.

The work of one reload grows with the changed packages' closure (their dependents),
never with the number of packages loaded.

A reload never hangs behind an application's open transaction: the CLI gives the
daemon's connections a short `lock_timeout` (`runtime.config.DEV_LOCK_TIMEOUT`, 1 s), and
a reload whose migration or dev sync times out waiting for a lock is rolled back, says
who blocks it (`migration_retrying`, with the lock and its holders) and runs again after
a growing pause (1 s, 2 s, 4 s... at most 10 s, 8 times), or at once when a file is
saved meanwhile. Then it gives up and says so; the next save tries again.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core import booking, narrowing, signals
from runtime.core.events import Difference
from runtime.core.lint import lint_steps
from runtime.core.model import Package
from runtime.core.narrowing import Narrowing
from runtime.core.plan import Step
from runtime.core.recorded import Ledger
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_PACKAGE
from runtime.db import agreement, diff, engine, ledger, migrator, notify, owner, sync, urls
from runtime.db.run import MigrationReport, Run
from runtime.db.sync import SyncResult
from runtime.dev import watcher
from runtime.errors import (
    DatabaseInUseError,
    IsolationError,
    LedgerConflictError,
    LockTimeoutError,
    MigrationFailedError,
    PackageLoadError,
    Problem,
    RegistryError,
    ValidationError,
)
from runtime.load import loader
from runtime.load.packages import directory_of, is_package

__all__ = ["Daemon"]

logger = logging.getLogger(__name__)

_COMPARE_CHUNK = 10  # packages compared with the database in one pass at start-up
_RETRY_FIRST, _RETRY_MOST = 0.1, 2.0  # seconds between tries while the database is away
_BLOCKED_FIRST, _BLOCKED_MOST = 1.0, 10.0  # seconds before a reload blocked by a lock retries
_BLOCKED_RETRIES = 8  # about a minute: then it waits for the next save
#: How many times start-up runs again after a lock timeout, backing off as `migrate` does.
_START_LOCK_RETRIES = 3


class Daemon:
    """Load, migrate, then watch and reload the packages of `directories`.

    Args:
        engine: the dev database.
        directories: package directories to load and watch (`packages_dev`).
        registry: the registry to keep current (a new one by default).
        entry_points: also load installed packages: editable installs are watched and
            reloaded from their source directories, the rest loaded once.
        debounce_ms, step_ms: how watchfiles groups a burst of saves.
        allow_destructive: also apply schema changes that may lose data (drops, narrower
            types, NOT NULL) to the dev database, instead of explaining them.
        between_passes: called between start-up's passes comparing packages with the
            database, each of which leaves its reflected tables as garbage; the CLI,
            which raised the collector's thresholds, collects there
            (`runtime.process.collect_young`). The daemon itself tunes nothing.
        reloading: a context each reload runs in, up to its `reloaded` signal; the
            CLI's holds the collector back meanwhile (`runtime.process.reloading`).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        directories: Iterable[Path],
        *,
        registry: DatabaseRegistry | None = None,
        entry_points: bool = True,
        debounce_ms: int = watcher.DEBOUNCE_MS,
        step_ms: int = watcher.STEP_MS,
        allow_destructive: bool = False,
        between_passes: Callable[[], object] = lambda: None,
        reloading: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.engine = engine
        self.directories = [Path(d).resolve() for d in directories]
        self.registry = registry if registry is not None else DatabaseRegistry()
        self.entry_points = entry_points
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.allow_destructive = allow_destructive
        self._between_passes = between_passes
        self._reloading = reloading
        #: Set once the watcher is in place: saves from then on are seen.
        self.watching = anyio.Event()
        self._sources: dict[Path, list[str]] = {}
        self._installed: dict[Path, loader.Installed] = {}  # editable installs, watched
        self._broken: set[Path] = set()  # directories whose packages are left out
        self._loaded = loader.LoadResult()  # what start-up loaded
        self._claim: owner.Claim | None = None  # held while `run` runs
        self._stop = anyio.Event()
        self._blocked: LockTimeoutError | None = None  # why the last reload must run again
        #: Packages whose dev rows may be settled now (`_settle`).
        self._unsettled: set[str] = set()
        #: Packages adopted whose idle event dispatchers are still to drop (`_reload`).
        self._unshed: set[str] = set()
        # The tables found to agree with the database: a save of schema.py compares the
        # tables it changed, not the package's every table (#14).
        self._agreed = agreement.Agreement()

    @property
    def watched(self) -> list[Path]:
        """The directories watched: the package roots, and each editable install's."""
        return [*self.directories, *self._installed]

    # -- start ---------------------------------------------------------------------

    async def start(self) -> MigrationReport:
        """Load every package and apply what is pending.

        Packages that fail to load or validate are reported (`validation_failed`) and
        left out, with the packages that depend on them; the others are migrated.
        """
        await self._load_initial()
        await self._prune_invalid()
        report = await self._migrate_at_start()
        packages = self.registry.ordered()
        # A schema edited while the daemon was not running has a new fingerprint, so the
        # run recorded it: only those, and the migrated ones, are compared, a few at a
        # time (all 300 at once took 7 s and 120 MB, scripts/bench). Drift made by hand
        # in the database is left to `status`.
        touched = set(report.recorded) | set(report.by_package())
        # Packages with dev changes are synced (one the schema stopped declaring shows)
        # and settled: a daemon stopped before it settled them leaves them to this one.
        booked = await self._booked()
        self._unsettled |= set(report.by_package()) | booked
        targets = [p for p in packages if p.name in touched and p.name != CORE_PACKAGE]
        found: dict[str, list[Difference]] = {}
        for start in range(0, len(targets), _COMPARE_CHUNK):
            async with self.engine.connect() as conn:
                found.update(await diff.compare_each(
                    conn, targets[start:start + _COMPARE_CHUNK], packages,
                    agreed=self._agreed))
            self._between_passes()
        try:
            synced = await self._sync(self.registry, [
                p.name for p in packages if found.get(p.name) or p.name in booked])
        except RegistryError as exc:
            await self._failed(exc)
        else:
            await self._announce(synced)
        await self._settle()
        return report

    async def _booked(self) -> set[str]:
        """The registered packages the ledger books dev changes of."""
        async with self.engine.connect() as conn:
            recorded = await ledger.read_ledger(await engine.driver(conn))
        return {name for name, rows in recorded.dev.items() if rows and name in self.registry}

    async def _load_initial(self) -> None:
        # Loaded in a worker thread into a copy that sends no signals; registered here,
        # on the loop, so receivers of `package_registered` run where the daemon runs.
        candidate = self.registry.copy()
        result = await anyio.to_thread.run_sync(functools.partial(
            loader.load_all, self.directories, candidate, entry_points=self.entry_points))
        self._loaded = result
        self._installed = result.installed
        for source, error in result.failed.items():
            if source != loader.ENTRY_POINT_GROUP:
                self._sources[Path(source)] = []
                self._broken.add(Path(source))
            await self._failed(error)
        for source, names in result.packages.items():
            if source != loader.ENTRY_POINT_GROUP:
                self._sources[Path(source)] = names
            for name in names:
                self.registry.register(candidate.get(name))

    async def _prune_invalid(self) -> None:
        problems = self.registry.problems()
        if not problems:
            return
        explained = self._loaded.explained(problems)  # not what a load error said already
        if explained:
            await self._failed(ValidationError(explained))
        self._hold_out({p.package for p in problems})

    def _hold_out(self, names: set[str]) -> None:
        """Leave `names` and their dependents out until a change brings them back."""
        bad = self.registry.affected(*(name for name in names if name in self.registry))
        self.registry.update(remove=sorted(bad))
        self._broken |= {d for d, loaded in self._sources.items() if set(loaded) & bad}

    async def _migrate_at_start(self) -> MigrationReport:
        """Apply what is pending, holding out each package that cannot be applied.

        The dev database is the daemon's: an applied migration edited while it was
        stopped (a branch switch) is re-run, as a running daemon does. A downgrade (Y302),
        a failing migration or one that breaks workspace isolation (Y5xx) holds out that
        package and its dependents, reported, and the rest is applied; a change to them
        brings them back.
        """
        while True:
            try:
                return await migrator.migrate(self.engine, self.registry.ordered(),
                                              rerun_edited=True, sender=self,
                                              lock_retries=_START_LOCK_RETRIES)
            except (LedgerConflictError, IsolationError) as exc:
                failed: set[str] = {p.package for p in exc.problems}
                await self._failed(exc)
            except MigrationFailedError as exc:
                failed = {exc.package}
                await self._failed(exc)
            if CORE_PACKAGE in failed:
                raise RegistryError("the core package's migrations cannot be applied to "
                                    "this database")
            self._hold_out(failed)

    # -- run -----------------------------------------------------------------------

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim the database, start, then watch and reload until cancelled or `stop()`.

        Raises:
            DatabaseInUseError: another daemon runs on the database (`runtime.db.owner`).
        """
        # What its comparisons read of the tables is kept in a file while it runs:
        # start-up reads every package it compares, which memory would keep at 2 kB a
        # table; a first save of any of them then compares it without reading it (#14).
        with self._agreed.spilling():
            async with owner.claimed(self.engine) as self._claim:
                await self._run(task_status)

    async def _run(self, task_status: Any) -> None:
        async with notify.publishing(self.engine, self, self.registry):
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
                self.watched, debounce_ms=self.debounce_ms,
                step_ms=self.step_ms, stop_event=self._stop, ready=self.watching,
            ):
                await send.send((paths, time.perf_counter()))

    async def _work(self, receive: MemoryObjectReceiveStream[tuple[set[Path], float]]) -> None:
        async with receive:
            retry: tuple[set[Path], float] | None = None  # a reload blocked by a lock
            attempt = 0
            while True:
                try:
                    paths, seen = await self._next(receive, retry, attempt)
                except anyio.EndOfStream:
                    return
                # Saves that arrived while the last reload ran are handled together.
                while True:
                    try:
                        more, _ = receive.receive_nowait()
                    except anyio.WouldBlock:
                        break
                    paths |= more
                try:
                    await self.reload(paths, seen=seen)
                except Exception as exc:  # a bug: said, and the daemon keeps watching
                    self._blocked = None
                    logger.exception("reloading %s failed", sorted(map(str, paths)))
                    error = RegistryError(f"internal error while reloading: {exc!r}; the "
                                          "last good state is kept (please report it)")
                    await signals.emit_async(signals.reloaded, self, packages=(), applied=(),
                                             elapsed_ms=_ms(seen), error=error)
                retry, attempt = await self._retry_blocked(paths, seen, attempt)

    @staticmethod
    async def _next(
        receive: MemoryObjectReceiveStream[tuple[set[Path], float]],
        retry: tuple[set[Path], float] | None,
        attempt: int,
    ) -> tuple[set[Path], float]:
        """The next save; with a blocked reload, that reload once its pause is over, or
        at once with the next save, which may be what unblocks it.

        Raises:
            anyio.EndOfStream: the watcher stopped.
        """
        if retry is None:
            return await receive.receive()
        with anyio.move_on_after(_backoff(attempt - 1)):
            paths, _ = await receive.receive()
            return retry[0] | paths, retry[1]
        return retry

    async def _retry_blocked(
        self, paths: set[Path], seen: float, attempt: int
    ) -> tuple[tuple[set[Path], float] | None, int]:
        """After a reload: if a lock blocked it, say who holds it and plan its retry, or
        give up after `_BLOCKED_RETRIES` and say that; return the retry and its number."""
        error, self._blocked = self._blocked, None
        if error is None:
            return None, 0
        if attempt >= _BLOCKED_RETRIES:
            await self._failed(error)
            await signals.emit_async(signals.reloaded, self, packages=(), applied=(),
                                     elapsed_ms=_ms(seen), error=error)
            return None, 0
        await signals.emit_async(signals.migration_retrying, self, error=error, wait=error.wait,
                                 attempt=attempt + 1, retries=_BLOCKED_RETRIES,
                                 delay_s=_backoff(attempt))
        return (paths, seen), attempt + 1

    # -- reload --------------------------------------------------------------------

    async def reload(self, paths: Iterable[Path], *, seen: float | None = None) -> bool:
        """Handle changed paths; return whether the change was applied.

        Args:
            paths: changed files or directories under the watched directories.
            seen: `time.perf_counter()` when the change was seen, for the timing.
        """
        seen = time.perf_counter() if seen is None else seen
        dirs = {d for p in paths if (d := self._directory_of(Path(p)))}
        if not dirs:
            return True
        # Directories left out after a failure come along: the change may be what they
        # were waiting for (a fixed dependency, or the other half of a version bump that
        # two packages must make together). If they still fail, the change goes alone.
        resync = False
        while True:
            try:
                if resync:
                    await self._resync()
                retry = self._broken - dirs
                if retry and await self._reload(dirs | retry, seen, quiet=True):
                    return True
                return await self._reload(dirs, seen)
            except _DatabaseLost as exc:
                # Nothing of the change was kept (its transaction died with the
                # connection): once the database is back, it is made again.
                await self._wait_for_database(exc.error)
                resync = True

    def _directory_of(self, path: Path) -> Path | None:
        """The package directory `path` belongs to: an editable install's, or a root's child."""
        installed = next((d for d in self._installed if path.is_relative_to(d)), None)
        return installed or directory_of(path, self.directories)

    async def _resync(self) -> None:
        """Bring a database that was away in step with the last good state.

        It may come back without its last commits, restored from a dump, or recreated:
        a full run, not a reload's partial one, applies whatever it lacks.
        """
        try:
            with _noticing_loss():
                await migrator.migrate(self.engine, self.registry.ordered(),
                                       rerun_edited=True, sender=self,
                                       lock_retries=_START_LOCK_RETRIES)
        except RegistryError as exc:
            await self._failed(exc)

    async def _wait_for_database(self, error: BaseException) -> None:
        """Retry, with backoff, until the database answers; restart the embedded server."""
        url = urls.display_url(self.engine.url.render_as_string(hide_password=False))
        await signals.emit_async(signals.database_lost, self, url=url, error=error)
        started, delay, revived = time.perf_counter(), _RETRY_FIRST, False
        while True:
            await anyio.sleep(delay)
            delay = min(delay * 2, _RETRY_MOST)
            try:
                revived = await engine.revive(self.engine) or revived
                await engine.check_connection(self.engine)
            except RegistryError as exc:
                logger.debug("the database is still away: %s", exc)
                continue
            await signals.emit_async(signals.database_restored, self, url=url,
                                     down_ms=_ms(started), revived=revived)
            if self._claim is not None:
                try:
                    await self._claim.retake()  # it went away with the connection
                except DatabaseInUseError as exc:
                    await self._failed(exc)  # another daemon started meanwhile
            return

    async def _reload(self, dirs: set[Path], seen: float, *, quiet: bool = False) -> bool:
        with self._reloading():  # up to the `reloaded` signal: what the developer waits for
            done = await self._change(dirs, seen, quiet=quiet)
        if done is None:
            return False
        migrated, synced, deferred = done
        self.registry.shed(self._unshed)  # memory, not the developer's wait
        self._unshed.clear()
        await self._follow(migrated)
        await self._follow(sorted(deferred), only=deferred)
        with _noticing_loss():
            await self._compare_ahead(synced)
            await self._settle()
        return True

    async def _change(
        self, dirs: set[Path], seen: float, *, quiet: bool
    ) -> tuple[list[str], list[SyncResult], dict[str, frozenset[str]]] | None:
        """Load, apply and sync the change to `dirs`, and say so with `reloaded`.

        Returns the packages whose migrations ran but whose schema is unchanged, what
        the dev sync did, and the tables it left to compare after (`_deferrable`); None
        when the change failed.
        """
        # The set is checked once everything changed is loaded (check_set below): one
        # package at a time, the first half of a joint change would be refused.
        candidate = self.registry.copy(check_set=False, shed=False)
        try:
            with _noticing_loss():
                sources, changed, removed = await self._load_changed(candidate, sorted(dirs))
                affected = candidate.closure(*changed) if changed else []
                # The copy re-checks only what the change touched (the kept set is valid).
                problems = candidate.problems()
                if problems:
                    raise ValidationError(problems)
                packages = [candidate.get(name) for name in affected]
                # The packages whose declared schema changed are synced in the run
                # that applies the migrations: one lock and one commit for the reload.
                edited = self._edited_schemas(candidate, affected)
                deferred = self._deferrable(candidate, edited)
                report, synced = await self._migrate(candidate, packages, removed, edited,
                                                     deferred, self._narrowings(candidate, edited))
                migrated = [name for name in report.by_package() if name not in edited]
        except RegistryError as exc:
            if quiet:
                return None
            self._broken |= dirs
            if isinstance(exc, LockTimeoutError):
                self._blocked = exc  # `_work` says who blocks it, and runs it again
                return None
            await self._failed(exc)
            await signals.emit_async(signals.reloaded, self, packages=(), applied=(),
                                     elapsed_ms=_ms(seen), error=exc)
            return None
        self._broken -= dirs
        await self._adopt(candidate, sources, report)
        self._unshed.update(changed)
        await self._announce(synced)
        applied = report.applied + tuple(r.change for r in synced if r.change is not None)
        await signals.emit_async(
            signals.reloaded, self, packages=tuple(changed + removed), applied=applied,
            elapsed_ms=_ms(seen), error=None)
        return migrated, synced, deferred

    async def _migrate(
        self, candidate: DatabaseRegistry, packages: list[Package], removed: list[str],
        edited: list[str], deferred: Mapping[str, frozenset[str]],
        narrowed: Mapping[str, Mapping[str, Narrowing]],
    ) -> tuple[MigrationReport, list[SyncResult]]:
        """Apply what `packages` have pending, then sync the schemas of `edited` in the
        same transaction; their dev rows are to be settled after.

        Also when it fails: a migration may have committed before (one that runs outside
        a transaction), and is settled after the next good reload (issue #14).
        """
        synced: list[SyncResult] = []

        async def sync_edited(run: Run) -> None:
            synced.extend(await self._sync(candidate, edited, run, defer=deferred,
                                           narrow=narrowed))

        try:
            report = await migrator.migrate(self.engine, packages, rerun_edited=True,
                                            partial=True, unregistered=removed, sender=self,
                                            known=list(candidate.packages.values()),
                                            vet=self._lint,
                                            then=sync_edited if edited else None)
        except BaseException:
            self._unsettled |= {p.name for p in packages}
            raise
        self._unsettled |= set(report.by_package())
        return report, synced

    async def _follow(
        self, names: list[str], only: Mapping[str, frozenset[str]] | None = None
    ) -> None:
        """Compare packages whose migrations ran but whose declared schema is unchanged,
        or (`only`) the tables a save left to compare after (`_deferrable`).

        Done after `reloaded`: the change the developer made (a migration, a table's
        declaration) is applied and announced at once, and the comparison (alembic,
        60-110 ms) only says whether the rest of the database still agrees.
        """
        if not names:
            return
        try:
            with _noticing_loss():
                synced = await self._sync(self.registry, names, only=only)
        except RegistryError as exc:
            await self._failed(exc)
            return
        await self._announce(synced)

    async def _compare_ahead(self, synced: list[SyncResult]) -> None:
        """Compare the tables a dev change just altered with the database, as the next
        save's comparison would.

        Done after `reloaded`: the `Agreement` keeps what is read under the tables'
        catalog keys and, when they agree with their declaration, that they do. The
        next save of the package then compares its tables with the database as read
        now, and of a table that agreed, only the parts the save changed
        (`runtime.core.narrowing`), without reading anything on its way to the
        developer (#14).
        """
        for result in synced:
            if result.change is None:
                continue
            tables = {difference.table for difference in result.change.differences}
            try:
                async with self.engine.connect() as conn:
                    await diff.compare_ahead(conn, self.registry.get(result.package),
                                             self.registry.packages.values(), self._agreed,
                                             tables)
            except Exception as exc:
                if engine.lost(exc):
                    raise  # the reload waits for the database, as for any loss
                # A head start only, never the developer's concern: the save compares.
                logger.debug("%s: its tables not compared ahead: %s", result.package, exc)

    async def _settle(self) -> None:
        """Settle the dev rows of the packages that may need it (`sync.reconcile`).

        Done after `reloaded`, as the migrations run on a scratch database meanwhile.
        A package is settled once, whatever the answer: the next migration of it, or
        dev change touching what an earlier one did, asks again.
        """
        for name in sorted(self._unsettled):
            if name not in self.registry or name == CORE_PACKAGE:
                self._unsettled.discard(name)
                continue
            try:
                changes = await sync.reconcile(self.engine, self.registry.packages.values(),
                                               name)
            except RegistryError as exc:
                await self._failed(exc)
                continue
            self._unsettled.discard(name)
            if changes:
                await signals.emit_async(signals.schema_changed, self, package=name,
                                         migrations=(), changes=changes)

    async def _load_changed(
        self, candidate: DatabaseRegistry, dirs: list[Path]
    ) -> tuple[dict[Path, list[str]], list[str], list[str]]:
        sources: dict[Path, list[str]] = {}
        changed: list[str] = []
        removed: list[str] = []
        # A package belongs to the directory that registered it: another directory (a
        # copy still carrying its name) registering it is refused (Y209).
        # One whose file is gone moved (its directory renamed, its deletion not seen yet).
        reloaded = {name for d in dirs for name in self._sources.get(d, [])}
        taken = {name: package.source or name for name, package in self.registry.packages.items()
                 if name not in reloaded and not _gone(package.source)}
        for directory in dirs:
            if directory in self._installed:
                names = await anyio.to_thread.run_sync(functools.partial(
                    loader.load_installed, self._installed[directory], candidate, taken=taken))
            elif is_package(directory):
                try:
                    names = await anyio.to_thread.run_sync(functools.partial(
                        loader.load_directory, directory, candidate, taken=taken))
                except PackageLoadError:
                    if is_package(directory):
                        raise
                    names = []  # renamed or deleted while it loaded: as if gone before
            else:
                names = []
            taken.update((name, candidate.get(name).source or name) for name in names)
            sources[directory] = names
            changed.extend(names)
            removed.extend(n for n in self._sources.get(directory, []) if n not in names)
        # A package another directory of the change registers moved there (a directory
        # renamed): removed, it was unregistered from its new place too.
        removed = [name for name in removed if name not in changed]
        candidate.update(remove=[name for name in removed if name in candidate])
        return sources, changed, removed

    async def _adopt(
        self,
        candidate: DatabaseRegistry,
        sources: dict[Path, list[str]],
        report: MigrationReport,
    ) -> None:
        self.registry.adopt(candidate)  # validated in _reload: not checked twice
        for directory, names in sources.items():  # moved here: no longer the old place's
            for other, loaded in self._sources.items():
                if other != directory and not set(loaded).isdisjoint(names):
                    self._sources[other] = [n for n in loaded if n not in names]
        self._sources.update(sources)
        for name, items in report.by_package().items():
            await signals.emit_async(
                signals.schema_changed, self, package=name,
                migrations=tuple(i.migration for i in items),
                changes=tuple(items))

    def _lint(self, steps: Sequence[Step], recorded: Ledger) -> None:
        """Say what the safety lint finds in the migrations a reload is about to run, as
        `migrate` will on every other database: warnings, applied all the same here."""
        lints, _major = lint_steps(steps, recorded)  # Y303 is a deploy's rule, not dev's
        for lint in lints:
            # SQL the parser refuses (Y531) fails to run a moment later, saying so itself.
            findings = tuple(f for f in lint.findings if f.code != "Y531")
            if findings:
                signals.emit(signals.lint_found, self, package=lint.package,
                             findings=findings)

    # -- dev sync --------------------------------------------------------------------

    def _edited_schemas(self, candidate: DatabaseRegistry, affected: list[str]) -> list[str]:
        """The packages whose schema may now differ from the database as the change
        says: new ones, and those whose declared schema changed (synced before the
        reload is announced; those that only had migrations applied are compared after
        it)."""
        return [name for name in affected if name not in self.registry
                or self.registry.get(name).fingerprint != candidate.get(name).fingerprint]

    def _deferrable(
        self, candidate: DatabaseRegistry, edited: list[str]
    ) -> dict[str, frozenset[str]]:
        """The tables of the packages `edited` that a save need not compare before it
        is announced: declared as before. Compared after (a change made to them by hand
        is found then), so a save compares the table it changed, not its every table,
        nor reads their catalog keys on the way (#14).
        """
        deferred = {}
        for name in edited:
            if name not in self.registry or name == CORE_PACKAGE:
                continue  # new: all of it is the change
            before, now = self.registry.get(name).table_keys, candidate.get(name).table_keys
            tables = frozenset(table for table, key in now.items()
                               if before.get(table) == key)
            if tables:
                deferred[name] = tables
        return deferred

    def _narrowings(
        self, candidate: DatabaseRegistry, edited: list[str]
    ) -> dict[str, dict[str, Narrowing]]:
        """The parts each saved table of the packages `edited` changed, where comparing
        those alone finds what comparing the table finds (`runtime.core.narrowing`;
        the comparison checks that the table agreed with the database before)."""
        found: dict[str, dict[str, Narrowing]] = {}
        for name in edited:
            if name not in self.registry or name == CORE_PACKAGE:
                continue
            before, now = self.registry.get(name), candidate.get(name)
            old = {t.name: t for t in before.tables}
            for table in now.tables:
                key = before.table_keys.get(table.name)
                if key is None or key == now.table_keys[table.name] \
                        or not self._agreed.knows(table.name):
                    continue
                narrowed = narrowing.narrowing(old[table.name], table, key)
                if narrowed is not None:
                    found.setdefault(name, {})[table.name] = narrowed
        return found

    async def _sync(
        self, registry: DatabaseRegistry, names: list[str], run: Run | None = None, *,
        defer: Mapping[str, frozenset[str]] | None = None,
        only: Mapping[str, frozenset[str]] | None = None,
        narrow: Mapping[str, Mapping[str, Narrowing]] | None = None,
    ) -> list[SyncResult]:
        """Bring the dev database to the declared schema of the packages `names`: in the
        open transaction of `run`, or each in a run of its own; of each package, not the
        tables `defer` names, or only those `only` names, and of those `narrow` names,
        the parts a save changed."""
        results = []
        for name in names:
            if name == CORE_PACKAGE:
                continue
            # Tables the package declared before: dropped from its schema, still in the
            # database, they are differences too.
            previous = self.registry.get(name) if name in self.registry else None
            sync_one = functools.partial(sync.sync_in, run) if run is not None \
                else functools.partial(sync.sync_package, self.engine)
            results.append(await sync_one(
                registry.get(name), registry.packages.values(),
                allow_destructive=self.allow_destructive,
                tables=previous.table_names if previous else (),
                declared_before=booking.declared_keys(previous) if previous else frozenset(),
                agreed=self._agreed, defer=(defer or {}).get(name, frozenset()),
                only=only[name] if only is not None else None,
                narrow=(narrow or {}).get(name)))
        self._unsettled |= {result.package for result in results if result.revisits}
        return results

    async def _announce(self, synced: list[SyncResult]) -> None:
        for result in synced:
            if result.held:
                logger.info("%s: schema changes held: %s", result.package,
                            "; ".join(d.words for d in result.held))
                await signals.emit_async(signals.schema_drift, self, package=result.package,
                                         differences=result.held, dev_built=result.dev_built)
            if result.change is not None:
                await signals.emit_async(signals.schema_changed, self, package=result.package,
                                         migrations=(result.change.migration,),
                                         changes=(result.change,))

    async def _failed(self, error: RegistryError) -> None:
        package = _package_of(error)
        # The pipeline sent migration_failed, for any failure but a lock timeout.
        if not isinstance(error, MigrationFailedError) or isinstance(error, LockTimeoutError):
            await signals.emit_async(signals.validation_failed, self, package=package,
                                     error=error)
        logger.debug("reload failed: %s", error)


def _package_of(error: RegistryError) -> str | None:
    if isinstance(error, PackageLoadError | MigrationFailedError):
        return error.package
    problems: tuple[Problem, ...] = getattr(error, "problems", ())
    return problems[0].package if problems else getattr(error, "package", None)


@contextmanager
def _noticing_loss() -> Iterator[None]:
    """Raise `_DatabaseLost` for any error that says the database went away."""
    try:
        yield
    except Exception as exc:
        if engine.lost(exc):
            raise _DatabaseLost(exc) from exc
        raise


class _DatabaseLost(Exception):
    """The database went away during a reload; `error` says how."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt + 1` of a reload blocked by a lock: 1, 2, 4... 10."""
    return float(min(_BLOCKED_FIRST * 2 ** attempt, _BLOCKED_MOST))


def _gone(source: str | None) -> bool:
    """Whether `source` is a file (a package directory's `package.py`, an editable
    install's module) that is no longer there; an entry point's source is no file."""
    return source is not None and os.path.isabs(source) and not os.path.exists(source)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
