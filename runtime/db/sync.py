"""Dev sync: bring the dev database to a package's declared schema, without a migration.

The dev daemon calls `sync_in` in the run that applies a reload's migrations, and
`sync_package` (a run of its own) at start and after migrations it announced.
The declared schema is compared with the dev database (`runtime.db.diff`); when every
difference adds something (a table, a nullable or defaulted column, an index, a foreign
key) they are applied at once and booked in the ledger as one dev change of the
package (`kind='dev'`, id `dev:<fingerprint>`, one row per object it touched:
`runtime.core.booking`), all in one transaction.

A package with a destructive difference is held whole: nothing of it is applied until
the developer writes a migration or restarts the daemon with `--allow-destructive`.
Holding back only the destructive part would be worse: a renamed column shows as a
drop plus an add, and applying the add alone leaves the data in the old column and
makes the renaming migration fail.

What the database has and the schema does not declare is dropped only when a dev
change built it (a row books it): what the migrations built, every database `migrate`
builds has too, so it is left alone and shown as drift ("declared nowhere"), unless
the schema just stopped declaring a table or column (a destructive difference: perhaps
a rename). The tables a package's dev changes built are compared with it even once its
schema no longer declares them, so one taken out of the schema shows as drift until a
migration or the sync removes it.

`reconcile` settles the dev rows whose objects the migrations, run on a scratch
database, build as the dev database has them (issue #14: never because the declared
schema matches, which says nothing of an object the schema stopped declaring).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runtime.core import booking
from runtime.core.booking import ObjectKey
from runtime.core.events import Change, ChangeKind, Difference, labels_first
from runtime.core.model import Migration, Package
from runtime.core.narrowing import Narrowing
from runtime.core.plan import Step, dev_change_id
from runtime.db import ledger, objects, scratch
from runtime.db.agreement import Agreement
from runtime.db.diff import compare
from runtime.db.engine import Engine, connected, driver
from runtime.db.run import Run, run_step, timed_out
from runtime.errors import MigrationFailedError, Problem, ProblemsError, RegistryError

__all__ = ["SyncResult", "reconcile", "sync_in", "sync_package"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    """What `sync_package` did for one package.

    Attributes:
        package: the package's name.
        change: the dev change applied and recorded; None when nothing was applied.
        held: the differences left alone: all of those found in the tables compared
            when some of them are destructive; else what the database has that no dev
            change built and the schema declares nowhere.
        revisits: the change touched an object a recorded dev change touched: the
            migrations may now build what the dev database has (`reconcile`).
        dev_built: of `held`, the removals of what only dev changes built: no migration
            builds it, so `makemigration` has nothing to write for them.
    """

    package: str
    change: Change | None = None
    held: tuple[Difference, ...] = ()
    revisits: bool = False
    dev_built: tuple[Difference, ...] = ()

    @property
    def applied(self) -> tuple[Difference, ...]:
        """The differences applied to the database."""
        return self.change.differences if self.change is not None else ()


async def sync_package(
    engine: AsyncEngine,
    package: Package,
    packages: Iterable[Package],
    *,
    allow_destructive: bool = False,
    tables: Iterable[str] = (),
    declared_before: frozenset[ObjectKey] = frozenset(),
    agreed: Agreement | None = None,
    defer: Collection[str] = (),
    only: Collection[str] | None = None,
    narrow: Mapping[str, Narrowing] | None = None,
) -> SyncResult:
    """Apply what `package` declares and the database lacks, and book it as a dev change.

    Runs in one transaction of a `Run` holding the pipeline's lock, so no migration runs
    between the comparison and the changes: `sync_in` on a run of its own.

    Raises:
        ProblemsError: a difference could not be applied (Y405); nothing was.
    """
    async with Run.open(engine, read=False) as run, run.transaction():
        return await sync_in(run, package, packages, allow_destructive=allow_destructive,
                             tables=tables, declared_before=declared_before, agreed=agreed,
                             defer=defer, only=only, narrow=narrow)


async def sync_in(
    run: Run,
    package: Package,
    packages: Iterable[Package],
    *,
    allow_destructive: bool = False,
    tables: Iterable[str] = (),
    declared_before: frozenset[ObjectKey] = frozenset(),
    agreed: Agreement | None = None,
    defer: Collection[str] = (),
    only: Collection[str] | None = None,
    narrow: Mapping[str, Narrowing] | None = None,
) -> SyncResult:
    """Apply what `package` declares and the database lacks in the open transaction of
    `run`, and book it as a dev change: it commits with what else the transaction holds
    (a reload's migrations: `runtime.db.migrator.migrate`'s `then`), or not at all.

    Args:
        run: a run with a transaction open, on an `AsyncEngine`.
        package: the package to sync, whose migrations were applied.
        packages: the registered packages (for the tables its foreign keys point at).
        allow_destructive: also apply drops, narrower types and NOT NULL, and drop what
            the migrations built and the schema does not declare (booked as a dev
            change, which stays until a migration drops it too).
        tables: tables the package declared before, compared too: a table it no longer
            declares is then found and dropped (a destructive difference). The tables
            its dev changes built are compared too.
        declared_before: the objects its schema declared before this change
            (`booking.declared_keys`). A table or column the schema just stopped
            declaring is a destructive difference; one it declared neither now nor
            before, no dev change built, is left alone.
        agreed: the tables that agreed with the database before, not compared again
            while unchanged (`runtime.db.agreement`; the daemon keeps one).
        defer, only, narrow: tables not to compare now, or the only ones to, and the
            parts of tables a save changed (`runtime.db.diff.compare_each`): what is
            held or applied is of the tables compared.

    Raises:
        ProblemsError: a difference could not be applied (Y405).
    """
    packages = list(packages)
    rows = run.dev_rows(package.name)  # read with the lock: a reload's run read them
    if rows is None:
        rows = (await ledger.read_ledger(run.raw, [package.name])).dev.get(package.name, ())
    built = {key for row in rows if (key := booking.parse_row(row)[1]) is not None}
    differences = await compare(run.sqlalchemy, package, packages, agreed=agreed,
                                tables={*tables, *_dev_tables(rows, package, packages)},
                                defer=defer, only=only, narrow=narrow)
    await run.sqlalchemy.commit()  # ends SQLAlchemy's savepoint, not our transaction
    declared = booking.declared_keys(package)
    kept = () if allow_destructive else tuple(
        d for d in differences if _left_alone(d, built, declared_before, declared))
    rest = [d for d in differences if d not in kept]
    if any(d.destructive for d in rest) and not allow_destructive:
        dev_built = tuple(d for d in differences if d.kind.startswith("remove_")
                          and set(booking.keys_of(d)) <= built)
        return SyncResult(package.name, held=tuple(differences), dev_built=dev_built)
    if not rest:
        return SyncResult(package.name, held=kept)
    change = await _apply(run, package, rest)
    logger.info("%s: synced %d schema changes as %s", package.name, len(rest),
                change.migration)
    touched = {key for d in rest for key in booking.keys_of(d)}
    return SyncResult(package.name, change=change, held=kept, revisits=bool(touched & built))


def _dev_tables(rows: Sequence[str], package: Package, packages: Iterable[Package]) -> set[str]:
    """The tables the dev rows `rows` booked that no other package declares now."""
    others = {t for p in packages if p.name != package.name for t in p.table_names}
    return set(booking.tables_of(rows)) - others


def _left_alone(
    difference: Difference, built: set[ObjectKey], declared_before: frozenset[ObjectKey],
    declared: frozenset[ObjectKey],
) -> bool:
    """Whether `difference` drops what the package's schema declares nowhere, neither
    before this save nor now, and no dev change built: a migration (or a hand) built
    it, every database `migrate` builds has it, so it stays, shown as drift.

    What the schema stopped declaring is dropped as the edit says (held if that may
    lose data); what it declares under that name now, changed, is dropped and added.
    """
    if not difference.kind.startswith("remove_"):
        return False
    keys = set(booking.keys_of(difference))
    return not (keys & built or keys & declared or keys & declared_before)


async def _apply(run: Run, package: Package, differences: Sequence[Difference]) -> Change:
    change_id = dev_change_id(package)
    started = time.perf_counter()
    labels = labels_first(differences)
    rest = [d for d in differences if d not in labels]
    if labels and run.engine is not None and not await run.raw.fetchval(_TYPES_LOCKED):
        await _add_labels(run.engine, package, change_id, labels)
        labels = []  # committed: booked below with the rest, not run again
    # Any label left goes first: a use of one before it is added is refused as no label
    # at all, after it with PostgreSQL's reason.
    for difference in [*labels, *rest]:
        # One step per difference, so a failure names the difference it came from.
        await _step(run.conn, run.raw, package, change_id, difference,
                    "nothing was applied; fix the declared schema, or write a migration "
                    "that prepares the data first")
    rows = await _booked(run, change_id, differences)
    return run.record_dev(package, change_id, rows, differences,
                          (time.perf_counter() - started) * 1000)


# Whether this transaction holds a lock on a type (a migration of the same reload altered
# one): a label added on another connection would wait for it to end, which it never
# would. The labels are then added in it, and a use of them is refused (Y405), saying why.
_TYPES_LOCKED = """SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid()
    AND locktype = 'object' AND classid = 'pg_type'::regclass)"""


async def _add_labels(
    engine: Engine, package: Package, change_id: str, labels: Sequence[Difference]
) -> None:
    """Add the enum labels of a save on a connection of their own, committed before the
    rest of its differences run.

    PostgreSQL does not let a transaction use a label it added ("unsafe use of new
    value"), so a label saved with a default or a column type using it could not be
    applied in one transaction. A label changes no row, and is booked with the rest of
    the change; if the rest fails, the label stays, as declared.
    """
    async with connected(engine) as (conn, raw):
        for label in labels:
            await _step(conn, raw, package, change_id, label,
                        "nothing else was applied; fix the declared schema")


async def _step(
    conn: AsyncConnection | None, raw: asyncpg.Connection, package: Package, change_id: str,
    difference: Difference, consequence: str,
) -> None:
    """Run `difference`'s statements as a step of dev change `change_id`.

    Raises:
        ProblemsError: it failed (Y405), naming the difference.
        MigrationFailedError: it waited too long for a lock (the run names the holder).
    """
    step = Step(package, Migration(change_id, up=list(difference.statements)))
    try:
        await run_step(conn, raw, step)
    except MigrationFailedError as exc:
        if timed_out(exc):
            raise  # the run says whose lock it waited for: not the schema's fault
        if "unsafe use of new value" in exc.reason:
            consequence = ("nothing was applied; PostgreSQL uses an enum label only once "
                           "the transaction that added it committed, and a migration of "
                           "this save altered the type: save the migration alone first, "
                           "then the use of the label")
        raise ProblemsError([Problem(
            package.name, "Y405",
            f"cannot apply to the dev database: {difference.words}: "
            f"{exc.reason.splitlines()[0]}", consequence,
            table=difference.table)]) from exc


async def _booked(
    run: Run, change_id: str, differences: Sequence[Difference]
) -> list[tuple[str, str]]:
    """The ledger rows booking what `differences` built: each object touched, and every
    object of a table created, with the checksum of its definition now."""
    keys = {key for d in differences for key in booking.keys_of(d)}
    now = await objects.read_objects(run.raw, {key.table for key in keys})
    created = {d.table for d in differences if d.kind == "add_table"}
    keys |= {key for key in now if key.table in created}
    return [(booking.row_id(change_id, key), booking.checksum(now.get(key)))
            for key in sorted(keys)]


async def reconcile(
    engine: AsyncEngine, packages: Iterable[Package], name: str
) -> tuple[Change, ...]:
    """Settle package `name`'s dev rows whose objects its migrations now build.

    The daemon calls it once a migration of the package ran, or a dev change touched
    what an earlier one did. The migrations run on a scratch database on the same
    server; a row whose object they build as the dev database has it is deleted, the
    others stay: the dev database still needs them. The rows and the dev database are
    read under the pipeline's lock, in the transaction that deletes, so a dev change
    booked meanwhile is judged too.

    Args:
        engine: the dev database.
        packages: the registered packages.
        name: the package.

    Returns:
        The dev changes whose last row went (kind RECONCILED), sorted; empty when there
        were none, or the migrations cannot be run on a scratch database (logged).
    """
    packages = list(packages)
    package = next(p for p in packages if p.name == name)
    async with engine.connect() as conn:
        rows = (await ledger.read_ledger(await driver(conn), [name])).dev.get(name, ())
    if not rows:
        return ()
    tables = set(package.table_names) | booking.tables_of(rows)
    try:
        migrated = await scratch.migrated_objects(scratch.server_url(engine), packages, name,
                                                  tables)
    except (RegistryError, asyncpg.PostgresError) as exc:
        logger.warning("%s: dev changes kept, cannot run the migrations on a scratch "
                       "database: %s", name, exc)
        return ()
    async with Run.open(engine, read=False) as run, run.transaction():
        rows = (await ledger.read_ledger(run.raw, [name])).dev.get(name, ())
        # A row booked meanwhile on a table not read above waits for the next time.
        judged = [r for r in rows if _on(r, tables)]
        dev = await objects.read_objects(run.raw, tables)
        gone = await run.forget_dev(name, booking.settled(judged, dev, migrated))
    kept = booking.changes_of(r for r in rows if r not in gone)
    if kept:
        logger.info("%s: dev changes kept, the migrations do not build %s", name,
                    "; ".join(f"{c} ({', '.join(map(str, keys)) or 'its objects'})"
                              for c, keys in kept.items()))
    return tuple(Change(ChangeKind.RECONCILED, name, change)
                 for change in booking.changes_of(gone) if change not in kept)


def _on(row: str, tables: set[str]) -> bool:
    """Whether dev row `row` books an object of `tables`, or no object at all."""
    key = booking.parse_row(row)[1]
    return key is None or key.table in tables
