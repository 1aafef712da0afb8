"""Who a run waits for: the lock a statement wants and the sessions holding it.

A statement that waits longer than `lock_timeout` is cancelled with nothing to say who
it waited for, and by then the wait is over. So while a run's transaction is open, a
watcher on a second connection looks every half second at what the run's session
waits for (`pg_locks`) and who blocks it (`pg_blocking_pids`), and keeps the last
answer: the error of a lock timeout names them. A transaction shorter than the first
look costs a task and nothing on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from runtime.core.events import LockHolder, LockWait
from runtime.db.engine import Engine, connection

__all__ = ["Watch", "watching"]

_EVERY = 0.5  # seconds between looks

# `pg_locks` lists every lock of the server: a run creating 500 tables holds thousands,
# and four runs at once (`migrate --fleet`) made each look cost 7-25 ms of the server's
# CPU. The session's own wait event, one backend's entry, gates it: the initplan is a
# one-time filter, so a run that waits for no lock never reads `pg_locks` (#16).
_WAITING = """
SELECT coalesce(c.relname, l.locktype), l.mode
FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = $1 AND NOT l.granted
  AND EXISTS (SELECT FROM pg_stat_get_activity($1) a WHERE a.wait_event_type = 'Lock')
LIMIT 1
"""
_BLOCKERS = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
       date_trunc('second', coalesce(a.xact_start, a.state_change, a.backend_start))::text
FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1)) ORDER BY a.pid
"""


class Watch:
    """The last lock wait seen of the watched session, if any."""

    last: LockWait | None = None


@asynccontextmanager
async def watching(engine: Engine, pid: int) -> AsyncIterator[Watch]:
    """Watch the session `pid` for lock waits while the block runs."""
    watch = Watch()

    async def look() -> None:
        # asyncio's sleep, not anyio's: anyio's loads its asyncio backend, 40 ms of a
        # one-migration `migrate`, which otherwise needs none of it (#17).
        while True:
            await asyncio.sleep(_EVERY)
            try:
                async with connection(engine) as raw:
                    while True:
                        row = await raw.fetchrow(_WAITING, pid)
                        if row is not None:
                            holders = tuple(LockHolder(*r) for r in
                                            await raw.fetch(_BLOCKERS, pid))
                            # The wait may end between the two reads: a look that
                            # saw no holder does not replace one that did.
                            if holders or watch.last is None:
                                watch.last = LockWait(row[0], row[1], holders)
                        await asyncio.sleep(_EVERY)
            except Exception:  # a look that fails only says less
                continue

    # A bare task, not a task group: an error of the block (a failed migration) must
    # leave as itself, not wrapped in an ExceptionGroup.
    task = asyncio.get_running_loop().create_task(look())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
