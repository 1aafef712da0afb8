"""Dev sync: bring the dev database to a package's declared schema, without a migration.

The dev daemon calls `sync_package` once a reload applied the package's migrations.
The declared schema is compared with the dev database (`runtime.db.diff`); when every
difference adds something (a table, a nullable or defaulted column, an index, a foreign
key) they are applied at once and recorded in the ledger as one dev change of the
package (`kind='dev'`, id `dev:<fingerprint>`), all in one transaction.

A package with a destructive difference is held whole: nothing of it is applied until
the developer writes a migration or restarts the daemon with `--allow-destructive`.
Holding back only the destructive part would be worse: a renamed column shows as a
drop plus an add, and applying the add alone leaves the data in the old column and
makes the renaming migration fail.

When a migration takes the dev changes over (`python -m runtime makemigration` wrote
it, the daemon applied it: a no-op on the synced database), `reconcile` checks on a
scratch database that the migrations now build the declared schema, and deletes the
package's dev changes from the ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.core.events import Change, Difference
from runtime.core.model import Migration, Package
from runtime.core.plan import Step, dev_change_id
from runtime.db import ledger, scratch
from runtime.db.agreement import Agreement
from runtime.db.diff import compare
from runtime.db.engine import driver
from runtime.db.run import Run, run_step, timed_out
from runtime.errors import MigrationFailedError, Problem, ProblemsError, RegistryError

__all__ = ["SyncResult", "reconcile", "sync_package"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    """What `sync_package` did for one package.

    Attributes:
        package: the package's name.
        change: the dev change applied and recorded; None when nothing was applied.
        held: the differences left alone: all of the package's when some of them are
            destructive; else the indexes and constraints no schema of it declared.
    """

    package: str
    change: Change | None = None
    held: tuple[Difference, ...] = ()

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
    declared_before: frozenset[str] = frozenset(),
    agreed: Agreement | None = None,
) -> SyncResult:
    """Apply what `package` declares and the database lacks, and record it as a dev change.

    Runs in one transaction of a `Run` holding the pipeline's lock, so no migration runs
    between the comparison and the changes.

    Args:
        engine: the dev database, where the package's migrations were applied.
        package: the package to sync.
        packages: the registered packages (for the tables its foreign keys point at).
        allow_destructive: also apply drops, narrower types and NOT NULL.
        tables: tables the package declared before, compared too: a table it no longer
            declares is then found and dropped (a destructive difference).
        declared_before: the indexes and constraints its schema declared before this
            change. One in the database that the schema declares neither now nor before
            was built by a migration (or by hand): every database `migrate` builds has
            it, so it is never dropped here, but held and shown as drift, the rest of
            the package's differences applied. One the schema just stopped declaring is
            dropped.
        agreed: the tables that agreed with the database before, not compared again
            while unchanged (`runtime.db.agreement`; the daemon keeps one).

    Raises:
        ProblemsError: a difference could not be applied (Y405); nothing was.
    """
    async with Run.open(engine, read=False) as run, run.transaction():
        differences = await compare(run.conn, package, packages, tables=tables, agreed=agreed)
        await run.conn.commit()  # ends SQLAlchemy's savepoint, not our transaction
        if any(d.destructive for d in differences) and not allow_destructive:
            return SyncResult(package.name, held=tuple(differences))
        kept = () if allow_destructive else tuple(
            d for d in differences if _undeclared(d, declared_before))
        differences = [d for d in differences if d not in kept]
        if not differences:
            return SyncResult(package.name, held=kept)
        change = await _apply(run, package, differences)
    logger.info("%s: synced %d schema changes as %s", package.name, len(differences),
                change.migration)
    return SyncResult(package.name, change=change, held=kept)


def _undeclared(difference: Difference, declared_before: frozenset[str]) -> bool:
    """Whether `difference` drops an index or constraint no schema of the package declared."""
    return (difference.kind in ("remove_index", "remove_constraint", "remove_fk")
            and difference.name not in declared_before)


async def _apply(run: Run, package: Package, differences: Sequence[Difference]) -> Change:
    change_id = dev_change_id(package)
    started = time.perf_counter()
    for difference in differences:
        # One step per difference, so a failure names the difference it came from.
        step = Step(package, Migration(change_id, up=list(difference.statements)))
        try:
            await run_step(run.conn, run.raw, step)
        except MigrationFailedError as exc:
            if timed_out(exc):
                raise  # the run says whose lock it waited for: not the schema's fault
            raise ProblemsError([Problem(
                package.name, "Y405",
                f"cannot apply to the dev database: {difference.words}: "
                f"{exc.reason.splitlines()[0]}",
                "nothing was applied; fix the declared schema, or write a migration that "
                "prepares the data first",
                table=difference.table)]) from exc
    # Recorded with the checksum a migration of all these statements would have.
    whole = Migration(change_id, up=[s for d in differences for s in d.statements])
    return run.record_dev(package, change_id, whole.checksum, differences,
                          (time.perf_counter() - started) * 1000)


async def reconcile(
    engine: AsyncEngine, packages: Iterable[Package], name: str
) -> tuple[Change, ...]:
    """Forget package `name`'s dev changes once its migrations build its declared schema.

    The daemon calls it after applying a new migration of the package. Whether the
    migrations now build the declared schema is checked on a scratch database on the
    same server; while they do not, the dev changes stay recorded.

    Args:
        engine: the dev database.
        packages: the registered packages.
        name: the package.

    Returns:
        The dev changes forgotten (kind RECONCILED), sorted; empty when there were none
        or the migrations still fall short.
    """
    async with engine.connect() as conn:
        if not (await ledger.read_ledger(await driver(conn), [name])).dev.get(name):
            return ()
    try:
        remaining = await scratch.compare_migrations(scratch.server_url(engine), packages, name)
    except (RegistryError, asyncpg.PostgresError) as exc:
        logger.warning("%s: dev changes kept, cannot check the migrations on a scratch "
                       "database: %s", name, exc)
        return ()
    if remaining:
        logger.info("%s: dev changes kept, the migrations do not build %s", name,
                    "; ".join(d.words for d in remaining))
        return ()
    async with Run.open(engine, read=False) as run, run.transaction():
        return await run.forget_dev(name)
