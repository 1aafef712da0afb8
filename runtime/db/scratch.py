"""Scratch databases: made on the server for one question, dropped after it.

`check --db`, `makemigration` and the dev daemon ask what a package's migrations build
on an empty database. They ask a fresh database on the same server, so the answer never
depends on the state of the dev database, and nothing is written to the ledger or
signalled: the migrations run as they are, in dependency order.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext

import anyio
import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runtime.core.booking import ObjectKey
from runtime.core.isolation import Built
from runtime.core.model import Package
from runtime.core.plan import Step, build_order
from runtime.db import diff, engine, objects
from runtime.db.built import Capture
from runtime.db.engine import driver
from runtime.db.run import run_step

__all__ = [
    "apply_migrations",
    "apply_step",
    "compare_migrations",
    "migrated_objects",
    "scratch_database",
    "server_url",
]


def server_url(db: AsyncEngine) -> str:
    """Return the URL of `db`, password included: scratch databases go on its server."""
    return db.url.render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[AsyncEngine]:
    """Yield an engine on a new empty database on the server of `server_url`, then drop it.

    Raises:
        DatabaseUnavailableError: the server cannot be reached.
    """
    name = f"runtime_scratch_{uuid.uuid4().hex[:12]}"
    db = engine.create_engine(await engine.create_database(server_url, name))
    try:
        yield db
    finally:
        # Shielded: a cancelled command must not leave its scratch database behind.
        with anyio.CancelScope(shield=True):
            await db.dispose()
            await engine.drop_database(server_url, name)


async def apply_step(
    conn: AsyncConnection, raw: asyncpg.Connection, step: Step, *, watch: bool = False
) -> list[Built]:
    """Run one migration in a transaction of its own (alone, if it is not transactional).

    Args:
        watch: note what it builds (`runtime.db.built`), and return it.

    Raises:
        MigrationFailedError: naming the package, migration, statement and line.
    """
    transactional = step.migration.transactional
    async with raw.transaction() if transactional else nullcontext():
        if not watch:
            await run_step(conn, raw, step)
            return []
        capture = Capture.start(raw, transactional=transactional)
        await capture.before(step)
        await run_step(conn, raw, step)
        await capture.after(step)
        return await capture.finish()


async def apply_migrations(db: AsyncEngine, packages: Sequence[Package]) -> None:
    """Run every migration of `packages`, in order, without the ledger or signals.

    Raises:
        MigrationFailedError: a migration failed; the ones before it stay applied.
    """
    async with db.connect() as conn:
        raw = await driver(conn)
        for package in packages:
            for migration in package.migrations:
                await apply_step(conn, raw, Step(package, migration))


async def compare_migrations(
    server_url: str, packages: Iterable[Package], name: str
) -> list[diff.Difference]:
    """List how the schema package `name`'s migrations build differs from its declared one.

    The migrations of the package, its dependencies and the core run on a scratch
    database, which is then compared with the declared schema.

    Args:
        server_url: any database URL on the server to use.
        packages: the registered packages.
        name: the package to compare.

    Raises:
        MigrationFailedError: a migration fails on an empty database.
    """
    needed = build_order(packages, name)
    package = next(p for p in needed if p.name == name)
    async with scratch_database(server_url) as db:
        await apply_migrations(db, needed)
        async with db.connect() as conn:
            return await diff.compare(conn, package, needed)


async def migrated_objects(
    server_url: str, packages: Iterable[Package], name: str, tables: Collection[str]
) -> dict[ObjectKey, str]:
    """Return what package `name`'s migrations build of `tables` on an empty database.

    The migrations of the package, its dependencies and the core run on a scratch
    database; its objects of `tables` are read (`runtime.db.objects`).

    Raises:
        MigrationFailedError: a migration fails on an empty database.
    """
    async with scratch_database(server_url) as db:
        await apply_migrations(db, build_order(packages, name))
        async with db.connect() as conn:
            return await objects.read_objects(await driver(conn), tables)
