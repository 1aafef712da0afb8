"""The blinker signals of the whole system, in one place.

Subscribe with ``@signals.migration_applied.connect`` (a plain function or a coroutine
function); in tests, ``signal.connected_to(receiver)`` and ``signal.muted()`` scope it.

Each signal lists its sender and keyword arguments. Package names are strings so that
signals re-sent from a PostgreSQL ``NOTIFY`` in another process carry the same values.

Signals are sent through `emit` (sync code) or `emit_async` (async code): both call
every receiver, sync or async, and a receiver that raises is logged and skipped, so a
faulty subscriber never breaks a registration or a reload.

A coroutine receiver runs on the application's event loop, never on one made for it
(its connections and tasks belong to that loop). `emit_async` awaits it. `emit` from
the loop's thread schedules it as a task on the loop. `emit` from another thread runs
it on the loop that thread works for, named with `owned_by(loop)`, and waits for it, so
its effect is visible when `emit` returns, as a sync receiver's is; the runtime's
loading layer does this for the worker threads that import packages. Sent from a
thread with no running loop and no owner, a coroutine receiver is not run: it is
closed and an error is logged naming it and the signal.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from blinker import NamedSignal, Namespace, Signal

__all__ = [
    "database_initialized",
    "database_lost",
    "database_restored",
    "emit",
    "emit_async",
    "lint_found",
    "load_slow",
    "migration_applied",
    "migration_failed",
    "migration_ran",
    "migration_retrying",
    "owned_by",
    "package_registered",
    "package_unregistered",
    "reloaded",
    "run_waiting",
    "schema_changed",
    "schema_drift",
    "validation_failed",
]

logger = logging.getLogger(__name__)
_signals = Namespace()

package_registered: NamedSignal = _signals.signal("package_registered", doc="""\
A package was registered or its definition replaced.
Sender: the DatabaseRegistry. Keywords: package (str), version (str), replaced (bool).""")

package_unregistered: NamedSignal = _signals.signal("package_unregistered", doc="""\
A package was removed from the registry.
Sender: the DatabaseRegistry. Keywords: package (str).""")

schema_changed: NamedSignal = _signals.signal("schema_changed", doc="""\
A package's schema changed in the live database (the dev daemon applied it).
Sender: the daemon, or the notify relay. Keywords: package (str), migrations (tuple of
str: the ledger ids of what ran: migrations, or the dev change `dev:<fingerprint>`),
changes (tuple of `runtime.core.events.Change`: each migration applied or re-run, the
dev change synced from the declared schema with its differences, or the dev changes
a migration took over, kind RECONCILED).""")

schema_drift: NamedSignal = _signals.signal("schema_drift", doc="""\
A package's declared schema differs from the live database in ways the dev daemon does
not apply on its own (some may lose data), so none of the package's were applied.
Sender: the daemon. Keywords: package (str), differences (tuple of
`runtime.core.events.Difference`, each with the SQL it would run), dev_built (those of
them removing what only the dev sync built, which no migration builds).""")

validation_failed: NamedSignal = _signals.signal("validation_failed", doc="""\
A package could not be loaded or validated; the last good state was kept.
Sender: the daemon. Keywords: package (str or None), error (RegistryError).""")

migration_applied: NamedSignal = _signals.signal("migration_applied", doc="""\
One migration was applied and recorded in the ledger; its transaction committed.
Sender: the pipeline's run. Keywords: package (str), migration (str), duration_ms
(float), rerun (bool: an edited migration re-run by the dev daemon).""")

lint_found: NamedSignal = _signals.signal("lint_found", doc="""\
The safety lint found statements in a package's migrations about to run that lock or
rewrite a table holding rows, or break the code deployed with it: warnings, the
migrations run all the same on the dev database.
Sender: the dev daemon. Keywords: package (str), findings (tuple of
`runtime.core.lint.Finding`).""")

migration_ran: NamedSignal = _signals.signal("migration_ran", doc="""\
One migration ran in its run's open transaction, not committed yet: `migration_applied`
follows when it commits, `migration_failed` if it rolls back. For showing progress.
Sender: the pipeline's run. Keywords: package (str), migration (str), duration_ms
(float), rerun (bool).""")

migration_failed: NamedSignal = _signals.signal("migration_failed", doc="""\
A migration failed; its transaction was rolled back. Not sent for a lock timeout, which
the pipeline's caller retries (`migration_retrying`) and raises once it gives up.
Sender: the pipeline's run. Keywords: package (str), migration (str), error
(MigrationFailedError).""")

migration_retrying: NamedSignal = _signals.signal("migration_retrying", doc="""\
A run timed out waiting for a lock, rolled back, and will run again after a backoff
(the dev daemon: or at once, on the next save).
Sender: the pipeline's caller (`migrate`'s, or the dev daemon). Keywords: error
(LockTimeoutError: package, migration), wait (`runtime.core.events.LockWait` or None
when it was not seen: the table, the lock mode, the sessions holding it), attempt (int:
this retry's number), retries (int), delay_s (float).""")

database_initialized: NamedSignal = _signals.signal("database_initialized", doc="""\
A pipeline run finished (it may have had nothing to do).
Sender: the pipeline's run. Keywords: report (`runtime.db.run.MigrationReport`).""")

database_lost: NamedSignal = _signals.signal("database_lost", doc="""\
The dev daemon lost its database (a restart, a terminated connection, a crash); it
retries with backoff, and applies what was saved meanwhile once it is back.
Sender: the daemon. Keywords: url (str, password hidden), error (BaseException).""")

database_restored: NamedSignal = _signals.signal("database_restored", doc="""\
The dev daemon's database answers again after `database_lost`.
Sender: the daemon. Keywords: url (str, password hidden), down_ms (float), revived
(bool: the daemon started the embedded server again).""")

run_waiting: NamedSignal = _signals.signal("run_waiting", doc="""\
A run has waited a second for the pipeline's lock, which another run holds.
Sender: the pipeline's run. Keywords: holder (`runtime.core.events.LockHolder` or None
when it let go meanwhile), waited_s (float).""")

load_slow: NamedSignal = _signals.signal("load_slow", doc="""\
A package's code has run for a while (5 s) as it loads and has not returned: an endless
loop or a slow call at module level, which holds the load until the process ends. Sent
once a load, from a thread of its own.
Sender: None. Keywords: source (str: the package directory, or the entry point),
seconds (float).""")

reloaded: NamedSignal = _signals.signal("reloaded", doc="""\
The dev daemon finished handling a change on disk, successfully or not.
Sender: the daemon. Keywords: packages (tuple of str), applied (tuple of
`runtime.core.events.Change`: the migrations run and dev changes synced), elapsed_ms
(float: change seen -> applied and signalled), error (RegistryError or None: the last
good state was kept).""")

_pending: set[asyncio.Task[Any]] = set()


def _name(signal: Signal) -> str:
    # Only named signals (ours) have a name; an anonymous Signal() is shown as itself.
    return str(getattr(signal, "name", signal))


def _finished(task: asyncio.Task[Any], receiver: Any, signal: Signal) -> None:
    _pending.discard(task)
    # A scheduled receiver fails after emit() returned: log it like a sync one.
    if not task.cancelled() and task.exception() is not None:
        logger.error("receiver %r of signal %r failed", receiver, _name(signal),
                     exc_info=task.exception())


class _Owner(threading.local):
    # The loop each thread works for, set by owned_by(); None in a thread it never ran in.
    loop: asyncio.AbstractEventLoop | None = None


_owner = _Owner()


@contextmanager
def owned_by(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Mark the current thread as working for `loop` until the block ends.

    Inside the block, `emit` from this thread runs coroutine receivers on `loop` and
    waits for each, so `loop` must keep running meanwhile (await the thread's work, as
    `await asyncio.to_thread(...)` does; never block on it). Blocks may nest.

    Args:
        loop: the running event loop the thread's work was started from.

    Yields:
        None; the previous owner, if any, is restored on exit.
    """
    previous, _owner.loop = _owner.loop, loop
    try:
        yield
    finally:
        _owner.loop = previous


def _schedule(result: Any, receiver: Any, signal: Signal) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _run_on_owner(result, receiver, signal)
        return
    # Keep a reference: the event loop holds tasks only weakly.
    task = loop.create_task(result)
    _pending.add(task)
    task.add_done_callback(lambda done: _finished(done, receiver, signal))


def _run_on_owner(result: Any, receiver: Any, signal: Signal) -> None:
    owner = _owner.loop
    if owner is None or not owner.is_running():
        # A loop made here would not be the one the receiver's resources belong to.
        # Closing the coroutine spares a "never awaited" warning far from the cause.
        if inspect.iscoroutine(result):
            result.close()
        logger.error("receiver %r of signal %r not run: it returned a coroutine, and no "
                     "event loop runs in this thread or owns it; send the signal from the "
                     "event loop's thread, or inside signals.owned_by(loop) while the loop "
                     "runs", receiver, _name(signal))
        return
    # Raises what the receiver raised, for emit() to log.
    asyncio.run_coroutine_threadsafe(result, owner).result()


def emit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send `signal` from sync code.

    Coroutine receivers are scheduled on the running loop, or, in a thread inside
    `owned_by(loop)`, run on `loop` one after the other; see the module docstring.
    """
    if signal.is_muted:
        return
    for receiver in list(signal.receivers_for(sender)):
        try:
            result = receiver(sender, **kwargs)
            if inspect.isawaitable(result):
                _schedule(result, receiver, signal)
        except Exception:
            logger.exception("receiver %r of signal %r failed", receiver, _name(signal))


async def emit_async(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send `signal` from async code, awaiting coroutine receivers in turn."""
    if signal.is_muted:
        return
    for receiver in list(signal.receivers_for(sender)):
        try:
            result = receiver(sender, **kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("receiver %r of signal %r failed", receiver, _name(signal))
