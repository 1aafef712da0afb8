"""The blinker signals of the whole system, in one place.

Subscribe with ``@signals.migration_applied.connect`` (a plain function or a coroutine
function); in tests, ``signal.connected_to(receiver)`` and ``signal.muted()`` scope it.

Each signal lists its sender and keyword arguments. Package names are strings so that
signals re-sent from a PostgreSQL ``NOTIFY`` in another process carry the same values.

Signals are sent through `emit` (sync code) or `emit_async` (async code): both call
every receiver, sync or async, and a receiver that raises is logged and skipped, so a
faulty subscriber never breaks a registration or a reload.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from blinker import Namespace, Signal

__all__ = [
    "database_initialized",
    "emit",
    "emit_async",
    "migration_applied",
    "migration_failed",
    "package_registered",
    "package_unregistered",
    "reloaded",
    "schema_changed",
    "schema_drift",
    "validation_failed",
]

logger = logging.getLogger(__name__)
_signals = Namespace()

package_registered: Signal = _signals.signal("package-registered", doc="""\
A package was registered or its definition replaced.
Sender: the DatabaseRegistry. Keywords: package (str), version (str), replaced (bool).""")

package_unregistered: Signal = _signals.signal("package-unregistered", doc="""\
A package was removed from the registry.
Sender: the DatabaseRegistry. Keywords: package (str).""")

schema_changed: Signal = _signals.signal("schema-changed", doc="""\
A package's schema changed in the live database (the dev daemon applied it).
Sender: the daemon, or the notify listener. Keywords: package (str), migrations
(tuple of migration ids applied, or the one dev change `dev:<fingerprint>` synced from
the declared schema), changes (tuple of str: one per migration applied, then anything
else that came with them, such as dev changes a migration took over; for a dev change,
each difference it resolved, in plain words).""")

schema_drift: Signal = _signals.signal("schema-drift", doc="""\
A package's declared schema differs from the live database in ways the dev daemon does
not apply on its own (some may lose data), so none of the package's were applied.
Sender: the daemon. Keywords: package (str), changes (tuple of str: each difference in
plain words, with the SQL it would run when destructive), hint (str: how to proceed).""")

validation_failed: Signal = _signals.signal("validation-failed", doc="""\
A package could not be loaded or validated; the last good state was kept.
Sender: the daemon. Keywords: package (str or None), error (RegistryError).""")

migration_applied: Signal = _signals.signal("migration-applied", doc="""\
One migration was applied and recorded in the ledger.
Sender: the pipeline. Keywords: package (str), migration (str), duration_ms (float),
rerun (bool: an edited migration re-run by the dev daemon).""")

migration_failed: Signal = _signals.signal("migration-failed", doc="""\
A migration failed; its transaction was rolled back.
Sender: the pipeline. Keywords: package (str), migration (str), error (MigrationFailedError).""")

database_initialized: Signal = _signals.signal("database-initialized", doc="""\
A pipeline run finished (it may have had nothing to do).
Sender: the pipeline. Keywords: report (MigrationReport).""")

reloaded: Signal = _signals.signal("reloaded", doc="""\
The dev daemon finished handling a change on disk, successfully or not.
Sender: the daemon. Keywords: packages (tuple of str), applied (tuple of "package
migration" str; a dev change synced from a declared schema is "package dev:<fingerprint>"),
elapsed_ms (float: change seen -> applied and signalled), error (RegistryError or None:
the last good state was kept).""")

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


def _schedule(result: Any, receiver: Any, signal: Signal) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(result)
        return
    # Keep a reference: the event loop holds tasks only weakly.
    task = loop.create_task(result)
    _pending.add(task)
    task.add_done_callback(lambda done: _finished(done, receiver, signal))


def emit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send `signal` from sync code; coroutine receivers are scheduled on the running loop."""
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
