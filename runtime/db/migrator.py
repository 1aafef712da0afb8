"""The init pipeline: apply every package's pending migrations, recorded in the ledger.

`migrate` plans from the ledger read under the lock (`runtime.core.plan`) and feeds the
plan to one `Run` (`runtime.db.run`) in the transactions its mode asks
(`split_transactions`): in mode `all`, as few as it can (every transactional migration
in one, each non-transactional one, `CREATE INDEX CONCURRENTLY`, alone after the ones
before it are committed); in mode `package`, each package's own, in dependency order; in
mode `migration`, one per migration. A failing migration leaves the database as it was
before its transaction: what earlier transactions committed stays, recorded.

The transaction that records a package (in mode `all` the last one; else the one with
its last migration) also brings the tools catalog and row-level security in step with
it: a run with nothing to apply or record (one ledger read) touches neither.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio

from runtime.config import TransactionMode
from runtime.core import signals
from runtime.core.model import Package
from runtime.core.plan import Plan, Step, plan_pending, split_transactions
from runtime.core.recorded import Ledger
from runtime.db import ledger
from runtime.db.engine import Engine, connection
from runtime.db.run import MigrationReport, Run
from runtime.errors import LedgerConflictError, LockTimeoutError

__all__ = ["Then", "Vet", "migrate", "read_plan"]

#: Asked of the steps a run is about to apply, with the ledger, before it applies them;
#: raising refuses the run (`migrate` lints them: `runtime.core.lint`).
Vet = Callable[[Sequence[Step], Ledger], None]

#: Run in the run's last transaction, after its migrations and records: what it applies
#: commits with them, or none of it does (the dev daemon's sync of a reload).
Then = Callable[[Run], Awaitable[None]]

logger = logging.getLogger(__name__)

_BACKOFF_FIRST, _BACKOFF_MOST = 1.0, 30.0  # seconds before running again after a lock timeout


async def read_plan(
    engine: Engine, packages: Sequence[Package], *, rerun_edited: bool = False
) -> Plan:
    """Plan a full run without running it (no lock is taken: the answer may be stale at once)."""
    async with connection(engine) as raw:
        return plan_pending(packages, await ledger.read_ledger(raw),
                            rerun_edited=rerun_edited, complete=True)


async def migrate(
    engine: Engine,
    packages: Sequence[Package],
    *,
    rerun_edited: bool = False,
    partial: bool = False,
    unregistered: Sequence[str] = (),
    sender: object = None,
    known: Sequence[Package] = (),
    wait: float | None = None,
    lock_retries: int = 0,
    transaction: TransactionMode = TransactionMode.ALL,
    vet: Vet | None = None,
    then: Then | None = None,
) -> MigrationReport:
    """Apply the pending migrations of `packages` and record them.

    Args:
        engine: the database.
        packages: in dependency order, the core first (`DatabaseRegistry.ordered()`).
        rerun_edited: re-run applied migrations that were edited (the dev daemon).
        partial: `packages` is a subset (a reload's closure): read only their ledger rows.
        unregistered: packages the caller unregistered, whose tools are deactivated. A
            full run also finds them itself: recorded in the database, not in `packages`.
        sender: the sender of the signals sent (the registry, the daemon).
        known: the other registered packages (of a partial run), so that a migration
            touching one of their tables is told whose it is.
        wait: seconds to wait for another run's lock before giving up (`RunLockedError`);
            None waits as long as it takes.
        lock_retries: how many times to run again, after a backoff of 1 s, 2 s, 4 s...,
            when a migration times out waiting for a lock (`LockTimeoutError`): the run
            rolled back, so the application's queries queued behind it go on meanwhile.
            The run again starts after what committed (modes `package`, `migration`).
        transaction: what commits together: the whole run, each package, or each
            migration (`TransactionMode`).
        vet: asked of the pending steps, under the lock and before any is applied;
            what it raises ends the run with nothing applied.
        then: run in the last transaction (one of its own after a `no-transaction`
            migration); what it raises rolls that transaction back and ends the run.

    Raises:
        LedgerConflictError: an applied migration was edited, or a package downgraded.
        MigrationFailedError: a migration failed; its transaction was rolled back, the
            ones before it (modes `package`, `migration`) stay committed.
        LockTimeoutError: a migration waited for a lock too long, every time.
        RowLevelSecurityError: a package's tables could not be put under its policy.
        IsolationError: a migration built what workspace isolation forbids (Y5xx); its
            transaction was rolled back.
    """
    runs: list[Run] = []  # each attempt's: what the failed ones committed is reported too
    for attempt in range(lock_retries + 1):
        try:
            await _migrate(engine, packages, rerun_edited=rerun_edited, partial=partial,
                           unregistered=unregistered, sender=sender, known=known, wait=wait,
                           transaction=transaction, runs=runs, vet=vet, then=then)
            # Reported once the lock is released: a receiver may start a run of its own.
            return await runs[-1].report(earlier=runs[:-1])
        except LockTimeoutError as exc:
            if attempt == lock_retries:
                raise
            delay = min(_BACKOFF_FIRST * 2 ** attempt, _BACKOFF_MOST)
            await signals.emit_async(signals.migration_retrying, sender, error=exc,
                                     wait=exc.wait, attempt=attempt + 1, retries=lock_retries,
                                     delay_s=delay)
            await anyio.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


async def _migrate(
    engine: Engine,
    packages: Sequence[Package],
    *,
    rerun_edited: bool,
    partial: bool,
    unregistered: Sequence[str],
    sender: object,
    known: Sequence[Package],
    wait: float | None,
    transaction: TransactionMode,
    runs: list[Run],
    vet: Vet | None,
    then: Then | None,
) -> None:
    names = [p.name for p in packages] if partial else None
    async with Run.open(engine, packages=names, sender=sender,
                        known=[*known, *packages], wait=wait) as run:
        runs.append(run)
        plan = plan_pending(packages, run.ledger, rerun_edited=rerun_edited,
                            complete=not partial, unregistered=unregistered)
        if plan.problems:
            raise LedgerConflictError(plan.problems)
        if vet is not None:
            vet(plan.steps, run.ledger)
        units = split_transactions(plan, transaction)
        for number, unit in enumerate(units, 1):
            async with run.transaction(transactional=unit.transactional):
                if unit.steps:
                    await run.apply(unit.steps)
                run.record(unit)
                if then is not None and number == len(units) and unit.transactional:
                    await then(run)
                    then = None
        if then is not None:
            async with run.transaction():
                await then(run)
