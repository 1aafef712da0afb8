"""The application entry point: migrate at start-up, listen for changes, close on exit.

An application server (FastAPI, Starlette, any asyncio program) opens `serve()` around
its life: it loads the packages, applies what is pending with the same pipeline and
options as `migrate` (its lock, lock timeouts and retries, transaction mode), and while
the application runs re-sends the dev daemon's NOTIFY events as blinker signals
(`runtime.db.notify.relay`), so a receiver of `schema_changed` works the same whether
the daemon runs in this process or another. `lifespan()` is `serve()` in the shape
Starlette and FastAPI take: the runtime lands in `request.state.runtime`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.config import DEFAULT_LOCK_TIMEOUT, Settings, resolve_settings
from runtime.core.model import Package
from runtime.core.registry import DatabaseRegistry
from runtime.db import engine as db_engine
from runtime.db import notify
from runtime.db.run import MigrationReport
from runtime.load import loader, pipeline

__all__ = ["Runtime", "lifespan", "serve"]


@dataclass(frozen=True)
class Runtime:
    """What `serve()` opened, for the application to use while it runs.

    Attributes:
        engine: the database, open until `serve()` exits.
        registry: the registered packages.
        packages: the packages in dependency order, the core first.
        report: what the start-up run applied; None when it did not migrate.
        settings: the settings it resolved.
    """

    engine: AsyncEngine
    registry: DatabaseRegistry
    packages: tuple[Package, ...]
    report: MigrationReport | None
    settings: Settings


@asynccontextmanager
async def serve(
    *,
    database_url: str | None = None,
    packages: Sequence[str | Path] | None = None,
    entry_points: bool = True,
    migrate: bool = True,
    listen: bool = True,
    transaction: str | None = None,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    lock_retries: int = 3,
    wait: float | None = None,
    require_rls: bool = False,
    application_name: str = "ydtb-runtime app",
    environ: Mapping[str, str] | None = None,
    project_dir: Path | None = None,
) -> AsyncIterator[Runtime]:
    """Open the database, load the packages, migrate, and relay changes until exit.

    Settings resolve as in the CLI (argument > `environ` > default); `environ` is read
    only when given (pass `os.environ` to honour `DATABASE_URL` and `RUNTIME_*`). With no
    URL, the embedded server of `project_dir/.runtime` starts, as in development.

    Args:
        migrate: apply the pending migrations at start-up (else only load and validate).
        listen: re-send the dev daemon's NOTIFY events as signals while the block runs.
        transaction, lock_timeout, statement_timeout, lock_retries, wait: as the
            `migrate` options of the same names.

    Raises:
        PackageLoadError: a package could not be imported (the first such error).
        ValidationError: the packages break a rule; nothing was applied.
        MigrationFailedError, LockTimeoutError, LedgerConflictError, IsolationError:
            as `migrate` raises them.
        DatabaseUnavailableError: the database cannot be reached.
    """
    settings = resolve_settings(
        database_url=database_url, packages=packages, require_rls=require_rls,
        lock_timeout=lock_timeout, statement_timeout=statement_timeout,
        application_name=application_name, transaction=transaction,
        default_lock_timeout=DEFAULT_LOCK_TIMEOUT, environ=environ or {},
        project_dir=project_dir)
    registry = DatabaseRegistry(require_row_level_security=settings.require_rls)
    async with db_engine.open_database(settings) as engine:
        ordered, report = await _start(engine, settings, registry, entry_points=entry_points,
                                       migrate=migrate, lock_retries=lock_retries, wait=wait)
        runtime = Runtime(engine, registry, tuple(ordered), report, settings)
        if not listen:
            yield runtime
            return
        async with anyio.create_task_group() as group:
            group.start_soon(notify.relay, engine)
            try:
                yield runtime
            finally:
                group.cancel_scope.cancel()


async def _start(
    engine: AsyncEngine, settings: Settings, registry: DatabaseRegistry, *,
    entry_points: bool, migrate: bool, lock_retries: int, wait: float | None,
) -> tuple[list[Package], MigrationReport | None]:
    """Load (and migrate); raise what stops the application from starting."""
    if not migrate:
        result = await anyio.to_thread.run_sync(
            lambda: loader.load_all(settings.packages, registry, entry_points=entry_points))
        if result.errors:
            raise result.errors[0]
        return registry.ordered(), None  # raises ValidationError
    outcome = await pipeline.load_and_migrate(
        engine, settings.packages, registry, entry_points=entry_points, wait=wait,
        lock_retries=lock_retries, transaction=settings.transaction)
    if outcome.load.errors:
        raise outcome.load.errors[0]
    if outcome.problems is not None:
        raise outcome.problems
    assert outcome.packages is not None  # loaded and valid, so resolved
    return outcome.packages, outcome.report


def lifespan(**options: Any) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Runtime]]]:
    """Return `serve(**options)` as a Starlette/FastAPI lifespan.

    `FastAPI(lifespan=runtime.app.lifespan(database_url=...))` migrates before the first
    request is served and puts the `Runtime` in the lifespan state: `request.state.runtime`.
    """
    @asynccontextmanager
    async def run(_app: Any) -> AsyncIterator[dict[str, Runtime]]:
        async with serve(**options) as runtime:
            yield {"runtime": runtime}

    return run
