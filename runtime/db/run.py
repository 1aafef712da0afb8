"""One pipeline run: the lock, the transactions, the ledger rows, the signals, the report.

Every way of changing the database's schema goes through a `Run`, as every step of
Alembic goes through its one `HeadMaintainer`: the full pipeline (`runtime.db.migrator`),
applying while packages load (`runtime.db.stream`), the dev daemon's reloads and its
dev syncs (`runtime.db.sync`). So one piece of code:

- holds the pipeline's session-level advisory lock, and reads the ledger only once it
  is held: two processes running at once apply each migration exactly once;
- runs each step (`run_step`: SQL on the asyncpg connection under SQLAlchemy's, with
  the simple query protocol, so a migration may hold several statements; a Python
  migration gets the SQLAlchemy `AsyncConnection`, inside a savepoint);
- watches what each step builds (`runtime.db.built`) and refuses, before its
  transaction commits, what workspace isolation forbids (`runtime.core.isolation`);
- writes each step's `LedgerRow` in the transaction that ran it, and the package
  records and the catalog (tools, row-level security) in the one the caller asks to
  `record` them (`runtime.core.plan.split_transactions` decides which: the last one,
  or each package's own);
- uninstalls a removed package (`uninstall`): its records, its tools, its tables;
- sends `migration_applied` once the transaction holding the migration committed,
  `migration_failed` once it rolled back (a lock timeout aside: the caller retries it),
  and `database_initialized` with the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import asyncpg
import asyncpg.transaction

from runtime.core import isolation, signals, sql
from runtime.core.events import Change, ChangeKind, Difference, LockHolder, LockWait
from runtime.core.model import Package
from runtime.core.names import CORE_PACKAGE, CORE_TABLES
from runtime.core.plan import Plan, Step
from runtime.core.recorded import Ledger
from runtime.db import ledger, locks, security, tools
from runtime.db.built import Capture, marker
from runtime.db.engine import Engine, connected, display, lost, shielded
from runtime.db.ledger import Kind, LedgerRow
from runtime.errors import (
    DatabaseUnavailableError,
    IsolationError,
    LockTimeoutError,
    MigrationFailedError,
    RunLockedError,
    SqlSyntaxError,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.core.leftovers import Uninstall  # `uninstall` only: not a migrate's (#17)

__all__ = [
    "LOCK_ID",
    "MigrationReport",
    "Run",
    "describe_holder",
    "describe_wait",
    "lock_holder",
    "run_step",
    "timed_out",
]

logger = logging.getLogger(__name__)

#: The advisory lock key every pipeline run holds ("ydtb_run" in ASCII).
LOCK_ID = 0x7964_7462_5F72_756E

_KINDS = {Kind.MIGRATION: ChangeKind.APPLIED, Kind.RERUN: ChangeKind.RERUN,
          Kind.DEV: ChangeKind.DEV_SYNC}


@dataclass(frozen=True)
class MigrationReport:
    """What one pipeline run did.

    Attributes:
        applied: the migrations run, in order (kind APPLIED, or RERUN for edited ones).
        recorded: the packages whose version or fingerprint the run recorded.
        duration_ms: the run's time, lock to report.
        unregistered: packages whose tools the run deactivated.
    """

    applied: tuple[Change, ...]
    recorded: tuple[str, ...]
    duration_ms: float
    unregistered: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the run wrote anything."""
        return bool(self.applied or self.recorded or self.unregistered)

    def by_package(self) -> dict[str, list[Change]]:
        """The applied migrations grouped by package, in the order they ran."""
        grouped: dict[str, list[Change]] = {}
        for item in self.applied:
            grouped.setdefault(item.package, []).append(item)
        return grouped


_IDEMPOTENT = ("it ran before and was edited, so it ran again: a migration must run twice "
               "without failing; guard it with CREATE TABLE IF NOT EXISTS, ADD COLUMN IF NOT "
               "EXISTS, CREATE INDEX IF NOT EXISTS, DROP ... IF EXISTS")


def _failing(script: str, error: BaseException) -> tuple[str | None, int | None]:
    """Find the statement of `script` that failed, and its line, for the error message.

    PostgreSQL gives the position of a syntax or name error within the script; the
    statement around it is quoted. Without a position only a one-statement script can
    be quoted: the script's first line would point at the wrong statement.
    """
    position = getattr(error, "position", None)
    if position:
        offset = int(position) - 1
        start = script.rfind(";", 0, offset) + 1
        end = script.find(";", offset)
        return script[start:len(script) if end < 0 else end], script.count("\n", 0, offset) + 1
    statements = [s for s in script.split(";") if _code(s)]
    return (statements[0], None) if len(statements) == 1 else (None, None)


def _code(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("--")
               for line in text.splitlines())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    return str(orig).strip() if orig is not None and str(orig).strip() else text


async def run_step(conn: AsyncConnection | None, raw: asyncpg.Connection, step: Step) -> None:
    """Run one migration on `conn` (its asyncpg connection `raw`), in the caller's transaction.

    Records nothing: `Run.apply` records; scratch databases (`runtime.db.scratch`) and
    the checks run steps unrecorded.

    Args:
        conn: the SQLAlchemy connection a Python migration is given; None on a
            `Database` run with asyncpg alone, which runs SQL migrations only (#17).

    Raises:
        MigrationFailedError: naming the package, migration, statement and line.
    """
    migration = step.migration
    statements = migration.statements
    if statements is None:
        if conn is None:  # the pipeline runs Python on SQLAlchemy's engine: never here
            raise MigrationFailedError(step.package.name, migration.id,
                                       "a Python migration needs a SQLAlchemy connection, "
                                       "and this run has none")
        try:
            await migration.up(conn)  # type: ignore[operator]
            await conn.commit()
        except Exception as exc:
            if lost(exc):
                raise  # not the migration's fault: the caller waits for the database
            await conn.rollback()
            raise MigrationFailedError(step.package.name, migration.id, _reason(exc),
                                       hint=_hint(step)) from exc
        return
    for statement, first_line in _units(step):
        try:
            await raw.execute(statement)
        except asyncpg.PostgresError as exc:
            if lost(exc):
                raise
            failing, line = _failing(statement, exc)
            if not line:  # a lone statement without a position: where it starts, if not 1
                line = first_line if failing and first_line > 1 else None
            else:
                line += first_line - 1
            full = _lock_table_full(exc)  # replaces the server's own hint
            reason = exc.message if full else _reason(exc)
            hint = full or _hint(step) or _halfway(step, statement)
            raise MigrationFailedError(step.package.name, migration.id, reason,
                                       statement=failing, line=line, hint=hint) from exc


def _units(step: Step) -> list[tuple[str, int]]:
    """Return what to send for `step`, one query each, with the line each starts on.

    A transactional script goes whole: one round trip. A `no-transaction` one goes
    statement by statement, split by PostgreSQL's own parser, because the server runs a
    multi-statement query as one implicit transaction, which `CREATE INDEX
    CONCURRENTLY` refuses.
    """
    texts = step.migration.statements or ()
    if step.migration.transactional:
        return [(text, 1) for text in texts if not _comments_alone(text)]
    units: list[tuple[str, int]] = []
    for text in texts:
        try:
            units.extend((s.text, s.line) for s in sql.parse(text))
        except SqlSyntaxError:
            units.append((text, 1))  # the server names the syntax error and its line
    return units


def _comments_alone(text: str) -> bool:
    """Whether `text` holds no statement: comments alone (`-- later`) run as nothing, as
    in psql. Sent, the server answers an empty query, which asyncpg cannot read."""
    head = text.lstrip()
    if not head.startswith(("--", "/*")):
        return not head  # a statement first: no need to parse (Y112 refuses blank SQL)
    try:
        return not sql.parse(text)
    except SqlSyntaxError:
        return False  # the server names the syntax error and its line


def _halfway(step: Step, statement: str) -> str | None:
    """Say what a failed `no-transaction` migration left: the statements before it stay."""
    if step.migration.transactional:
        return None
    units = [text for text, _ in _units(step)]
    if len(units) < 2 or units.index(statement) == 0:
        return None
    return (f"the {units.index(statement)} statement(s) before it ran and stay, outside any "
            "transaction; no ledger row was written, so the whole migration runs again next "
            "time: make each statement idempotent, as CREATE INDEX CONCURRENTLY IF NOT EXISTS")


def _lock_table_full(exc: asyncpg.PostgresError) -> str | None:
    """The fix when the server's lock table is full: not the migration's fault alone."""
    if not isinstance(exc, asyncpg.OutOfMemoryError) or "max_locks_per_transaction" not in (
            exc.hint or ""):
        return None
    return ("a transaction locks each table and index it makes until it commits, and this "
            "one needs more locks than the server's lock table holds: run migrate with "
            "--transaction package, or raise max_locks_per_transaction on the server")


def _hint(step: Step) -> str | None:
    return _IDEMPOTENT if step.rerun else None


class Run:
    """One run on one connection holding the pipeline's lock; open it with `Run.open`.

    Attributes:
        conn, raw: the SQLAlchemy connection and its asyncpg one.
        ledger: what the ledger held when the lock was taken (empty if not read).
        sender: the sender of the signals the run sends.
    """

    def __init__(
        self,
        conn: AsyncConnection | None,
        raw: asyncpg.Connection,
        recorded: Ledger,
        sender: object,
        known: Collection[Package] = (),
    ) -> None:
        self.conn = conn
        self.raw = raw
        self.engine: Engine | None = None  # set by `open`: the lock watcher's
        self.ledger = recorded
        self.sender = sender
        self._known = {p.name: p for p in known}  # for whose table it is, in messages
        self._capture: Capture | None = None  # of the open transaction
        self._applied: dict[str, Package] = {}  # the packages it ran steps of
        self._transactional = True
        self._started = time.perf_counter()
        self._committed: list[Change] = []
        self._rows: list[LedgerRow] = []  # of the open transaction
        self._recorded: tuple[str, ...] = ()
        self._unregistered: tuple[str, ...] = ()
        self._to_record: Plan | None = None  # by the open transaction
        self._discard = False
        self._read_for: Collection[str] | None = ()  # whose rows `ledger` holds; None: all

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        engine: Engine,
        *,
        packages: Collection[str] | None = None,
        read: bool = True,
        sender: object = None,
        known: Collection[Package] = (),
        wait: float | None = None,
    ) -> AsyncIterator[Run]:
        """Take the lock on a connection of `engine`, read the ledger, yield the run.

        Args:
            packages: read only these packages' ledger rows (a reload's closure).
            read: read the ledger at all (a dev sync needs only the lock).
            sender: the sender of the signals sent.
            known: the registered packages, to name whose table a migration touched.
            wait: give up after this many seconds waiting for the lock another run
                holds (`RunLockedError`); None waits as long as it takes. After a
                second of waiting, `run_waiting` names the holder.
        """
        try:
            async with connected(engine) as (conn, raw):
                try:
                    await _take_lock(raw, sender, wait)
                    recorded = await ledger.read_ledger(raw, packages) if read else Ledger()
                    logger.info("took the pipeline's lock (backend pid %d); the ledger "
                                "records %d migrations", raw.get_server_pid(),
                                len(recorded.applied))
                    run = cls(conn, raw, recorded, sender, known)
                    run.engine = engine
                    run._read_for = (None if packages is None else frozenset(packages)) \
                        if read else ()
                    yield run
                finally:
                    # Also when taking it was cut short, and shielded: cancelled (a
                    # daemon stopped, a task group ending) while the server granted the
                    # lock, or in this unlock, the connection went back to the pool
                    # holding it, and the next run on another connection waited for it
                    # without end. All of this session's: it holds no other.
                    if not raw.is_closed():
                        with shielded():
                            try:
                                await raw.execute("SELECT pg_advisory_unlock_all()")
                            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                                raw.terminate()  # its session ends, and the lock with it
        except Exception as exc:
            # The server went away mid-run: its transaction died with the connection, so
            # the database is as it was; say that, not what the driver tripped on.
            if lost(exc) and not isinstance(exc, DatabaseUnavailableError):
                raise DatabaseUnavailableError(
                    display(engine), f"the connection was lost during the run: "
                    f"{_reason(exc)}; nothing of the run was kept") from exc
            raise

    def dev_rows(self, package: str) -> tuple[str, ...] | None:
        """The dev changes of `package` the ledger held when the lock was taken; None
        when the run did not read them (it read none, or other packages')."""
        if self._read_for is not None and package not in self._read_for:
            return None
        return self.ledger.dev.get(package, ())

    def know(self, packages: Collection[Package]) -> None:
        """Tell the run the registered packages, whose tables its messages name
        (`open`'s `known`), once they are known: a streamed run learns them last."""
        self._known.update((p.name, p) for p in packages)

    @property
    def sqlalchemy(self) -> AsyncConnection:
        """The run's SQLAlchemy connection, which a run on an `AsyncEngine` has.

        Raises:
            TypeError: the run is on a `Database`, with asyncpg alone.
        """
        if self.conn is None:
            raise TypeError("a run on a Database has no SQLAlchemy connection; open the run "
                            "on its engine (runtime.db.engine.sqlalchemy_engine)")
        return self.conn

    # -- transactions ---------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, transactional: bool = True) -> AsyncIterator[None]:
        """Make what the block applies and records one unit: all of it commits, or none.

        Args:
            transactional: False for a migration that must run outside a transaction
                (`CREATE INDEX CONCURRENTLY`): it runs alone, and its ledger row is
                written in a transaction after it.
        """
        self._rows, self._discard, self._to_record = [], False, None
        self._capture, self._transactional, self._applied = None, transactional, {}
        tx = self.raw.transaction()
        begun = False
        watch = locks.Watch()
        try:
            if transactional:
                await tx.start()
                begun = True
            if self.engine is None:
                yield
            else:
                async with locks.watching(self.engine, self.raw.get_server_pid()) as watch:
                    yield
            if not begun:
                await tx.start()
                begun = True
            if self._discard:
                begun = False
                await tx.rollback()
                self._rows, self._to_record = [], None
                return
            await self._judge()
            await ledger.write_rows(self.raw, self._rows)
            if self._to_record is not None:
                await self._write_records(self._to_record)
            begun = False
            await tx.commit()
            logger.info("committed %d migrations", len(self._rows))
        except BaseException as exc:
            self._rows, self._capture, self._to_record = [], None, None
            if begun:
                await _roll_back(tx)
            error = exc
            if isinstance(exc, MigrationFailedError) and timed_out(exc):
                error = LockTimeoutError(exc.package, exc.migration, describe_wait(watch.last),
                                         statement=exc.statement, wait=watch.last)
            if isinstance(error, MigrationFailedError) and self._committed:
                error = error.keeping(len(self._committed))
            # A lock timeout is the caller's to retry, or to raise once it gives up.
            if isinstance(error, MigrationFailedError) and not isinstance(error, LockTimeoutError):
                await signals.emit_async(signals.migration_failed, self.sender,
                                         package=error.package, migration=error.migration,
                                         error=error)
            if error is not exc:
                raise error from exc
            raise
        done, self._rows = self._rows, []
        if self._to_record is not None:
            recorded, self._to_record = self._to_record, None
            self._recorded += tuple(p.name for p in recorded.records)
            self._unregistered += recorded.unregistered
        for row in done:
            await self._announce(row)

    def _capturing(self) -> Capture:
        if self._capture is None:
            self._capture = Capture.start(self.raw, transactional=self._transactional)
        return self._capture

    async def _judge(self) -> None:
        """Refuse what the transaction's migrations built against workspace isolation."""
        if self._capture is None:
            return
        built, self._capture = await self._capture.finish(), None
        applied, self._applied = self._applied, {}
        if not built:  # most reloads: a data migration, or DDL run again to no effect
            return
        declared = {name: (*package.table_names, *package.type_names)
                    for name, package in applied.items()}
        owners = dict.fromkeys(CORE_TABLES, CORE_PACKAGE)
        for package in [*self._known.values(), *applied.values()]:
            owners.update(dict.fromkeys(package.table_names, package.name))
        problems = isolation.judge(built, declared, owners, core=CORE_PACKAGE)
        if problems:
            raise IsolationError(problems)

    def discard(self) -> None:
        """Roll the open transaction back when its block ends, without an error."""
        self._discard = True

    async def _announce(self, row: LedgerRow) -> None:
        if row.kind is Kind.DEV:
            return  # the daemon announces dev syncs, with their differences
        change = Change(_KINDS[row.kind], row.package, row.migration, row.duration_ms)
        self._committed.append(change)
        await signals.emit_async(signals.migration_applied, self.sender,
                                 package=change.package, migration=change.migration,
                                 duration_ms=change.duration_ms, rerun=change.rerun)

    # -- steps ----------------------------------------------------------------------

    async def apply(self, steps: Sequence[Step]) -> None:
        """Run `steps` one by one in the open transaction, recording each.

        Raises:
            MigrationFailedError: a step failed; the transaction will roll back.
        """
        capture = self._capturing()
        for step in steps:
            logger.debug("running %s %s", step.package.name, step.migration.id)
            started = time.perf_counter()
            await capture.before(step)
            await run_step(self.conn, self.raw, step)
            await capture.after(step)
            self._record(step, (time.perf_counter() - started) * 1000)

    async def apply_together(self, steps: Sequence[Step]) -> bool:
        """Run the SQL of `steps` in one round trip: one wait for the answer, not one each.

        While packages load, each answer waits for the GIL, which the loading thread
        holds: about 2 ms a round trip. The time is shared equally among the steps.

        Returns:
            False when the SQL failed: the transaction is aborted, and `apply` one by one
            names the culprit on a fresh one.
        """
        capture = self._capturing()
        if not capture.triggers:  # the catalog is compared around each migration
            try:
                await self.apply(steps)
            except MigrationFailedError:
                return False
            return True
        # Each migration's SQL is preceded by its marker: what it builds is its own.
        script = "\n;\n".join([*(s for step in steps for s in (
            capture.begin(step), *(step.migration.statements or ()))), marker(None)])
        started = time.perf_counter()
        try:
            await self.raw.execute(script)
        except asyncpg.PostgresError as exc:
            if lost(exc):
                raise
            return False
        ms = (time.perf_counter() - started) * 1000 / len(steps)
        for step in steps:
            self._record(step, ms)
        return True

    def _record(self, step: Step, ms: float) -> None:
        package, migration = step.package, step.migration
        self._applied[package.name] = package
        self._rows.append(LedgerRow(package.name, migration.id, migration.checksum,
                                    package.version_text,
                                    Kind.RERUN if step.rerun else Kind.MIGRATION, ms))
        signals.emit(signals.migration_ran, self.sender, package=package.name,
                     migration=migration.id, duration_ms=ms, rerun=step.rerun)

    def record_dev(
        self, package: Package, change_id: str, rows: Sequence[tuple[str, str]],
        differences: Sequence[Difference], ms: float,
    ) -> Change:
        """Book a dev change the open transaction applied, one ledger row per object
        (`rows`: each id and checksum); return it as a `Change`."""
        self._rows += [LedgerRow(package.name, row, checksum, package.version_text, Kind.DEV, ms)
                       for row, checksum in rows]
        return Change(ChangeKind.DEV_SYNC, package.name, change_id, ms, tuple(differences))

    async def forget_dev(self, package: str, rows: Collection[str]) -> list[str]:
        """Delete the dev rows `rows` of `package`, whose objects the migrations build;
        return the ids deleted."""
        return await ledger.forget_dev_changes(self.raw, package, rows)

    async def uninstall(self, plan: Uninstall) -> None:
        """Carry out `plan` in the open transaction: all of it, or nothing.

        Keeping the data, it deactivates the package's tools and marks it uninstalled;
        purging, it drops its tables and the enum types only they use, deletes its tools
        and every ledger row of it.
        """
        if not plan.purge:
            await tools.deactivate_tools(self.raw, [plan.name])
            await ledger.mark_uninstalled(self.raw, plan.name)
            return
        from runtime.core import ddl  # SQLAlchemy: not on a migration's path

        if plan.drop:
            await self.raw.execute(ddl.drop_statement(plan.drop))
        if plan.types:
            await self.raw.execute(f"DROP TYPE IF EXISTS {', '.join(map(ddl.quote, plan.types))}")
        await tools.delete_package_tools(self.raw, [plan.name])
        await ledger.forget_package(self.raw, plan.name)

    # -- the end --------------------------------------------------------------------

    def record(self, plan: Plan) -> None:
        """Record the packages of `plan` as the open transaction commits, with its ledger
        rows, and bring tools and row-level security in step.

        Written after the migrations of the transaction ran and were judged (a
        `no-transaction` one's included), so the record and the rows commit together.
        With nothing to record or deactivate, it writes nothing.
        """
        self._to_record = plan

    async def _write_records(self, plan: Plan) -> None:
        """Write what `record` asked, in the open transaction.

        Raises:
            RowLevelSecurityError: a table could not be put under its package's policy.
        """
        await ledger.write_packages(self.raw, plan.records)
        await tools.deactivate_package_tools(self.raw, plan.unregistered)
        await tools.sync_tools(self.raw, plan.records)
        # A migrated package without row-level security has no policy to take off unless
        # it was just turned off, which changes its fingerprint and so records it: only
        # opted-in ones are read (a catalog query per run saved, scripts/bench). The
        # DDL is the run's, no migration's: the transaction's migrations were judged.
        touched = ({s.package.name: s.package for s in plan.steps if s.package.row_level_security}
                   | {p.name: p for p in plan.records})
        await security.sync_row_level_security(self.raw, touched.values())

    async def report(self, earlier: Sequence[Run] = ()) -> MigrationReport:
        """Return what the run committed, and send `database_initialized` with it.

        Args:
            earlier: runs of the same call that committed part of it before they failed
                (a lock timeout in mode `package`): the report is of them all.
        """
        runs = [*earlier, self]
        report = MigrationReport(
            tuple(c for run in runs for c in run._committed),
            tuple(n for run in runs for n in run._recorded),
            (time.perf_counter() - runs[0]._started) * 1000,
            tuple(n for run in runs for n in run._unregistered))
        await signals.emit_async(signals.database_initialized, self.sender, report=report)
        return report


# The lock key split as pg_locks shows a bigint advisory key: high and low 32 bits.
_HOLDER = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
       date_trunc('second', coalesce(a.xact_start, a.state_change, a.backend_start))::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2
  AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())
"""
_SAY_AFTER = 1.0  # seconds of waiting before the holder is named


async def _take_lock(raw: asyncpg.Connection, sender: object, wait: float | None) -> None:
    """Take the pipeline's lock, polling: a blocking pg_advisory_lock could neither say
    who holds it nor give up, and `lock_timeout` would cut it short."""
    take = "SELECT pg_try_advisory_lock($1)"
    if await raw.fetchval(take, LOCK_ID):
        return
    started, delay, said = time.monotonic(), 0.05, False
    while True:
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.5)
        if await raw.fetchval(take, LOCK_ID):
            return
        waited = time.monotonic() - started
        if waited >= _SAY_AFTER and not said:
            said = True
            await signals.emit_async(signals.run_waiting, sender,
                                     holder=await lock_holder(raw), waited_s=waited)
        if wait is not None and waited >= wait:
            holder = await lock_holder(raw)
            raise RunLockedError(waited, describe_holder(holder))


async def lock_holder(raw: asyncpg.Connection) -> LockHolder | None:
    """The session holding the pipeline's lock, if any does."""
    row = await raw.fetchrow(_HOLDER, LOCK_ID >> 32, LOCK_ID & 0xFFFF_FFFF)
    return LockHolder(*row) if row else None


def timed_out(exc: BaseException) -> bool:
    """Tell whether a lock timeout (SQLSTATE 55P03) caused `exc`, however wrapped."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == "55P03":
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def describe_wait(wait: LockWait | None) -> str:
    """A lock wait in words, for messages."""
    if wait is None:
        return "a lock (who held it was not seen)"
    holders = ", ".join(describe_holder(h) for h in wait.holders) or "a session now gone"
    return f"{wait.mode} on {wait.relation}, held by {holders}"


def describe_holder(holder: LockHolder | None) -> str:
    """A lock holder in words, for messages."""
    if holder is None:
        return "a session that let go meanwhile"
    name = holder.application_name or "an unnamed client"
    return f"pid {holder.pid} ({name}, {holder.state or 'state unknown'} since {holder.since})"


async def _roll_back(tx: asyncpg.transaction.Transaction) -> None:
    # The error on its way out says what went wrong; a connection the server closed
    # (a restart, pg_terminate_backend) cannot roll back, and has nothing to keep.
    try:
        await tx.rollback()
    except (asyncpg.InterfaceError, OSError) as exc:
        logger.debug("rollback impossible, the connection is gone: %s", exc)
