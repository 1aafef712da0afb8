"""Apply the registry to a fleet of databases, or read where each stands.

`apply` runs `migrator.migrate` on each database of a fleet (`runtime.core.fleet`): the
canary alone first, then the rest, at most `concurrency` at once, in the file's order.
The first failure stops new starts; the runs already started finish. Each run is the
single-database run, unchanged: its own engine with the settings' lock and statement
timeouts, the advisory lock, the ledger, the transaction mode. So two fleet runs at
once apply each migration once, as two `migrate` runs do.

Each run goes the way `migrate`'s does (`runtime.db.stream`), the packages all
arriving at once: in mode `all` the SQL of every pending migration is sent in one round
trip, and anything unusual (a failure, a migration outside a transaction) falls back to
`migrator.migrate`, which applies or reports it as always. One migration a round trip,
as `migrator.migrate` alone sends them, made a fleet apply of N = 100 to 20 databases
1.8 times its floor (scripts/bench): four runs at once keep the server busy, and each
round trip waits for a turn on its CPU.

A database that does not answer is a failure like any other (`DatabaseUnavailableError`
as its error), and stops new starts too: the next ones are likely behind the same
network. The packages are loaded once, by the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio

from runtime.config import TransactionMode
from runtime.core.fleet import Member
from runtime.core.model import Package
from runtime.core.plan import PackageStatus, package_status
from runtime.db import ledger, migrator, stream
from runtime.db.engine import check_connection, create_engine, driver, lost
from runtime.db.urls import display_url
from runtime.errors import DatabaseUnavailableError, RegistryError

__all__ = ["CONNECT_TIMEOUT", "Applied", "Standing", "apply", "read_each"]

logger = logging.getLogger(__name__)

#: Seconds a database of the fleet may take to answer before it counts as unreachable.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Applied:
    """How one database's run ended.

    Attributes:
        name, url: the database; `url` with its password hidden.
        applied: how many migrations its run applied.
        duration_ms: from connecting to the report (or the failure).
        error: why it failed; None when it did not.
    """

    name: str
    url: str
    applied: int
    duration_ms: float
    error: RegistryError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Standing:
    """Where one database stands against the packages; `error` when it did not answer."""

    name: str
    url: str
    statuses: tuple[PackageStatus, ...] = ()
    error: RegistryError | None = None


async def apply(
    members: Sequence[Member],
    packages: Sequence[Package],
    *,
    concurrency: int,
    server_settings: Mapping[str, str],
    done: Callable[[Applied], None],
    wait: float | None = None,
    lock_retries: int = 0,
    transaction: TransactionMode = TransactionMode.ALL,
    vet: migrator.Vet | None = None,
) -> list[Applied]:
    """Migrate each database of `members`: the first alone, then the rest concurrently.

    Args:
        members: the canary first (`runtime.core.fleet.canary_first`).
        packages: in dependency order, loaded and validated once.
        concurrency: how many runs at once after the canary.
        server_settings: each connection's session settings (`Settings.server_settings`).
        done: told of each database as its run ends, in the order they end.
        wait, lock_retries, transaction, vet: as `migrator.migrate` takes them, for each.

    Returns:
        How each database that started ended, in the order they ended; the others
        were not started, after a failure.
    """
    ended: list[Applied] = []

    async def one(member: Member) -> None:
        result = await _apply_one(member, packages, server_settings, wait=wait,
                                  lock_retries=lock_retries, transaction=transaction, vet=vet)
        ended.append(result)
        done(result)

    if not members:
        return ended
    await one(members[0])
    if ended[0].ok:
        await _bounded(members[1:], one, concurrency, failed=lambda: not all(
            r.ok for r in ended))
    return ended


async def _bounded(
    members: Sequence[Member], run: Callable[[Member], Awaitable[None]], concurrency: int,
    *, failed: Callable[[], bool],
) -> None:
    """Start `run(member)` in order, at most `concurrency` at once, until `failed()`."""
    limiter = anyio.Semaphore(max(1, concurrency))

    async def slot(member: Member) -> None:
        try:
            await run(member)
        finally:
            limiter.release()

    async with anyio.create_task_group() as group:
        for member in members:
            await limiter.acquire()  # a free slot: the runs before it may have failed
            if failed():
                limiter.release()
                break
            group.start_soon(slot, member)


async def _apply_one(
    member: Member, packages: Sequence[Package], server_settings: Mapping[str, str], *,
    wait: float | None, lock_retries: int, transaction: TransactionMode,
    vet: migrator.Vet | None,
) -> Applied:
    """One database's run, its failure caught: it must not end the others'."""
    started = time.perf_counter()
    shown = display_url(member.url)

    def ended(applied: int = 0, error: RegistryError | None = None) -> Applied:
        took = (time.perf_counter() - started) * 1000
        return Applied(member.name, shown, applied, took, error)

    engine = create_engine(member.url, server_settings=server_settings)
    try:
        await check_connection(engine, timeout=CONNECT_TIMEOUT)
        report = await stream.migrate_as_loaded(engine, _at_once(packages), lambda: packages,
                                                wait=wait, lock_retries=lock_retries,
                                                transaction=transaction, vet=vet)
        assert report is not None  # only a set `resolve` refuses reports None
        return ended(len(report.applied))
    except RegistryError as exc:
        logger.info("%s: %s", member.name, exc)
        return ended(error=exc)
    except Exception as exc:
        if not lost(exc):
            raise  # a bug, not the database's answer: said in full
        return ended(error=_gone(shown, exc))
    finally:
        with anyio.CancelScope(shield=True):
            await engine.dispose()


async def _at_once(packages: Sequence[Package]) -> AsyncIterator[Sequence[Package]]:
    """The packages as `stream.migrate_as_loaded` takes them: all arrived, at once."""
    yield packages


async def read_each(
    members: Sequence[Member], packages: Sequence[Package], *, concurrency: int,
    server_settings: Mapping[str, str],
) -> list[Standing]:
    """Read each database's ledger, `concurrency` at once; in the order of `members`.

    Read only: no lock is taken, so a run under way may change the answer at once.
    A database that does not answer within `CONNECT_TIMEOUT` has its error instead.
    """
    found: dict[str, Standing] = {}
    limiter = anyio.CapacityLimiter(max(1, concurrency))

    async def one(member: Member) -> None:
        async with limiter:
            found[member.name] = await _read_one(member, packages, server_settings)

    async with anyio.create_task_group() as group:
        for member in members:
            group.start_soon(one, member)
    return [found[m.name] for m in members]


async def _read_one(
    member: Member, packages: Sequence[Package], server_settings: Mapping[str, str]
) -> Standing:
    shown = display_url(member.url)
    engine = create_engine(member.url, server_settings=server_settings)
    try:
        await check_connection(engine, timeout=CONNECT_TIMEOUT)
        async with engine.connect() as conn:
            recorded = await ledger.read_ledger(await driver(conn))
        return Standing(member.name, shown, tuple(package_status(packages, recorded)))
    except RegistryError as exc:
        return Standing(member.name, shown, error=exc)
    except Exception as exc:
        if not lost(exc):
            raise
        return Standing(member.name, shown, error=_gone(shown, exc))
    finally:
        with anyio.CancelScope(shield=True):
            await engine.dispose()


def _gone(shown: str, exc: BaseException) -> DatabaseUnavailableError:
    """The connection went away mid-run: said as the database being unavailable."""
    said = str(exc).strip().splitlines()
    return DatabaseUnavailableError(
        shown, f"the connection was lost: {type(exc).__name__}: {said[0] if said else ''}"
        .rstrip(": "))
