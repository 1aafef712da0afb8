"""Apply the registry to a fleet of databases, or read where each stands.

`migrate --fleet` runs the canary of a fleet (`runtime.core.fleet`) alone first, through
`apply_one`, as `migrate` would (it loads the packages while applying them: its DDL
hides their import), then `apply` runs the rest, at most `concurrency` at once, in
the file's order.
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
network. The packages are loaded once, by the canary's run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.config import TransactionMode
from runtime.core.events import Difference
from runtime.core.fleet import Member
from runtime.core.model import Package
from runtime.core.plan import PackageStatus, package_status
from runtime.db import ledger, migrator, stream
from runtime.db.engine import check_connection, create_engine, driver, lost
from runtime.db.run import MigrationReport
from runtime.db.urls import display_url
from runtime.errors import DatabaseUnavailableError, RegistryError

__all__ = [
    "CONNECT_TIMEOUT",
    "Applied",
    "Migrate",
    "Standing",
    "apply",
    "apply_one",
    "migrate_loaded",
    "read_each",
]

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
    """Where one database stands against the packages; `error` when it did not answer.

    `drift`: how the database differs from each package whose migrations it has all
    applied (`diff.drift`, as `status` compares one database), by package; None when
    not compared.
    """

    name: str
    url: str
    statuses: tuple[PackageStatus, ...] = ()
    error: RegistryError | None = None
    drift: Mapping[str, Sequence[Difference]] | None = None


#: One database's run, given its engine, checked: what it applied; None when it
#: applied nothing because the packages did not load (the canary's, which loads them).
Migrate = Callable[[AsyncEngine], Awaitable[MigrationReport | None]]


def migrate_loaded(
    packages: Sequence[Package], *, wait: float | None = None, lock_retries: int = 0,
    transaction: TransactionMode = TransactionMode.ALL, vet: migrator.Vet | None = None,
) -> Migrate:
    """The run of a database once the packages are loaded and valid: `migrate`'s.

    Args:
        packages: in dependency order, the core first.
        wait, lock_retries, transaction, vet: as `migrator.migrate` takes them.
    """
    async def run(engine: AsyncEngine) -> MigrationReport | None:
        return await stream.migrate_as_loaded(engine, _at_once(packages), lambda: packages,
                                              wait=wait, lock_retries=lock_retries,
                                              transaction=transaction, vet=vet)

    return run


async def apply_one(
    member: Member, run: Migrate, server_settings: Mapping[str, str]
) -> Applied | None:
    """Run `run` on the database of `member`, its failure caught: it must not end the
    others' (the canary's run, which loads the packages, goes through here too).

    Args:
        server_settings: each connection's session settings (`Settings.server_settings`).

    Returns:
        How it ended; None when `run` returned None.
    """
    started = time.perf_counter()
    shown = display_url(member.url)

    def ended(applied: int = 0, error: RegistryError | None = None) -> Applied:
        took = (time.perf_counter() - started) * 1000
        return Applied(member.name, shown, applied, took, error)

    engine = create_engine(member.url, server_settings=server_settings)
    try:
        await check_connection(engine, timeout=CONNECT_TIMEOUT)
        report = await run(engine)
        return None if report is None else ended(len(report.applied))
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


async def apply(
    members: Sequence[Member],
    run: Migrate,
    *,
    concurrency: int,
    server_settings: Mapping[str, str],
    done: Callable[[Applied], None],
) -> list[Applied]:
    """Run `run` on each database of `members`, in order, `concurrency` at once, with
    no new start after the first failure (the canary's run is the caller's).

    Args:
        run: each database's (`migrate_loaded`).
        done: told of each database as its run ends, in the order they end.

    Returns:
        How each database that started ended, in the order they ended.
    """
    ended: list[Applied] = []

    async def one(member: Member) -> None:
        result = await apply_one(member, run, server_settings)
        assert result is not None  # `migrate_loaded` reports, or raises
        ended.append(result)
        done(result)

    await _bounded(members, one, concurrency, failed=lambda: not all(r.ok for r in ended))
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


async def _at_once(packages: Sequence[Package]) -> AsyncIterator[Sequence[Package]]:
    """The packages as `stream.migrate_as_loaded` takes them: all arrived, at once."""
    yield packages


async def read_each(
    members: Sequence[Member], packages: Sequence[Package], *, concurrency: int,
    server_settings: Mapping[str, str], drift: bool = True,
) -> list[Standing]:
    """Read each database's ledger and compare its schema with the packages,
    `concurrency` at once; in the order of `members`.

    Read only: no lock is taken, so a run under way may change the answer at once.
    A database that does not answer within `CONNECT_TIMEOUT` has its error instead.
    Without `drift`, the schemas are not compared.
    """
    found: dict[str, Standing] = {}
    limiter = anyio.CapacityLimiter(max(1, concurrency))

    async def one(member: Member) -> None:
        async with limiter:
            found[member.name] = await _read_one(member, packages, server_settings, drift)

    async with anyio.create_task_group() as group:
        for member in members:
            group.start_soon(one, member)
    return [found[m.name] for m in members]


async def _read_one(
    member: Member, packages: Sequence[Package], server_settings: Mapping[str, str],
    drift: bool,
) -> Standing:
    from runtime.db import diff  # alembic: not on `migrate --fleet`'s path

    shown = display_url(member.url)
    engine = create_engine(member.url, server_settings=server_settings)
    try:
        await check_connection(engine, timeout=CONNECT_TIMEOUT)
        async with engine.connect() as conn:
            recorded = await ledger.read_ledger(await driver(conn))
            statuses = package_status(packages, recorded)
            differences = await diff.drift(conn, packages, statuses, recorded) if drift else None
        return Standing(member.name, shown, tuple(statuses), drift=differences)
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
