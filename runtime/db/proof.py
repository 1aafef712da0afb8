"""Prove, with rows, that a package keeps its workspaces apart (`assert_workspaces_isolated`).

On a scratch database the package and its dependencies are migrated, and every table of
theirs gets one row for each of two workspaces (written by the migrating role, which
row-level security does not bind). Then a role that is neither superuser nor
`BYPASSRLS`, in a transaction scoped to the first workspace (`set_workspace`), tries each
way across to the second: reading its rows, updating them, deleting them, inserting a
row into it, and moving one of its own rows there. Each one that gets through is a line
of the answer.
"""

from __future__ import annotations

import datetime
import decimal
import graphlib
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runtime.core.model import Package
from runtime.core.plan import build_order
from runtime.core.schema import CORE_PACKAGE
from runtime.db import engine, migrator, urls
from runtime.db.scratch import scratch_database
from runtime.db.workspace import set_workspace

__all__ = ["prove_isolation"]

_MINE, _THEIRS = "ydtb_proof_a", "ydtb_proof_b"
_HINT = "register the package with row_level_security=True"


async def prove_isolation(server_url: str, packages: Sequence[Package], name: str) -> list[str]:
    """Try every way from one workspace into another in package `name`'s tables.

    Args:
        server_url: the server to make the scratch database on (a superuser's URL).
        packages: the registered packages, the core first.
        name: the package to prove.

    Returns:
        What crossed, a line each; empty when nothing did.
    """
    needed = build_order(packages, name)
    package = next(p for p in needed if p.name == name)
    role = f"ydtb_proof_{uuid.uuid4().hex[:8]}"
    async with scratch_database(server_url) as db:
        await migrator.migrate(db, needed)
        tables = _in_key_order([t for p in needed if p.name != CORE_PACKAGE
                                for t in p.tables if "workspace_id" in t.c])
        async with db.begin() as conn:
            await conn.execute(sa.text(
                f"INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('{_MINE}', 'A', "
                f"'{_MINE}'), ('{_THEIRS}', 'B', '{_THEIRS}')"))
            rows = {t.name: await _insert_rows(conn, t) for t in tables}
            await conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{role}' "
                                       "NOSUPERUSER NOBYPASSRLS"))
            await conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            await conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES "
                                       f"IN SCHEMA public TO {role}"))
            await conn.execute(sa.text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "
                                       f"{role}"))
        app = engine.create_engine(make_url(urls.to_async_url(db.url.render_as_string(
            hide_password=False))).set(username=role, password=role)
            .render_as_string(hide_password=False))
        try:
            return [line for table in package.tables
                    for line in await _crossings(app, table, rows[table.name])]
        finally:
            await app.dispose()
            async with db.begin() as conn:
                await conn.execute(sa.text(f"DROP OWNED BY {role}"))
                await conn.execute(sa.text(f"DROP ROLE {role}"))


def _in_key_order(tables: list[sa.Table]) -> list[sa.Table]:
    # Read from the keys' target names: each package's tables are in its own MetaData.
    by_name = {t.name: t for t in tables}
    targets = {t.name: {k.target_fullname.rpartition(".")[0] for k in t.foreign_keys}
               & by_name.keys() - {t.name} for t in tables}
    return [by_name[name] for name in graphlib.TopologicalSorter(targets).static_order()]


async def _crossings(app: AsyncEngine, table: sa.Table, row: dict[str, Any]) -> list[str]:
    """The ways across from workspace `_MINE` into `_THEIRS` that `table` lets through."""
    name, found = table.name, []
    target = sa.table(name, sa.column("workspace_id"))
    theirs = target.c.workspace_id == _THEIRS
    tries: list[tuple[str, Any]] = [
        ("reads", sa.select(sa.func.count()).select_from(target).where(theirs)),
        ("updates", sa.update(target).where(theirs).values(workspace_id=_THEIRS)),
        ("deletes", sa.delete(target).where(theirs)),
        ("moves one of its rows into", sa.update(target).where(
            target.c.workspace_id == _MINE).values(workspace_id=_THEIRS)),
        ("inserts", table.insert().values({**row, "workspace_id": _THEIRS})),
    ]
    for verb, statement in tries:
        async with app.connect() as conn, conn.begin() as tx:
            await set_workspace(conn, _MINE)
            try:
                result = await conn.execute(statement)
            except sa.exc.DBAPIError:
                crossed = 0  # refused: a policy or a check stopped it
            else:
                crossed = (result.scalar() if verb == "reads" else result.rowcount) or 0

            await tx.rollback()
        if crossed > 0:
            found.append(f"{name}: a session of one workspace {verb} another workspace's "
                         f"rows ({_HINT})")
    return found


async def _insert_rows(conn: AsyncConnection, table: sa.Table) -> dict[str, Any]:
    """Insert a row of `table` for each workspace; return the values of the second one,
    without its key, as the row to try inserting into it."""
    for number, workspace in enumerate((_MINE, _THEIRS), start=1):
        try:
            async with conn.begin_nested():
                await conn.execute(table.insert().values(_row(table, workspace, number)))
        except sa.exc.DBAPIError as exc:
            raise ValueError(f"{table.name}: cannot write a sample row ({exc.orig}); give "
                             "the columns nothing can be made up for a server default") from exc
    # A third row of theirs, new key, its references to their rows: only a policy may
    # refuse it.
    return _row(table, _THEIRS, 3, refers_to=2)


def _row(table: sa.Table, workspace: str, number: int, refers_to: int = 0) -> dict[str, Any]:
    # Keys are given (row n of each table has key n, so a key into another table of the
    # same workspace finds its row); other columns only when nothing else fills them.
    values: dict[str, Any] = {"workspace_id": workspace}
    for column in table.columns:
        if column.name == "workspace_id":
            continue
        filled = column.nullable or column.server_default is not None \
            or column.identity is not None
        if column.foreign_keys and not column.primary_key:
            if not column.nullable:
                values[column.name] = _value(column, refers_to or number)
        elif column.primary_key or not filled:
            values[column.name] = _value(column, number)
    return values


def _value(column: sa.Column[Any], number: int) -> Any:
    kind = column.type
    if isinstance(kind, sa.Enum):
        return kind.enums[0]
    python = _python_type(kind)
    samples: dict[type, Any] = {
        int: number, str: f"{number}", bool: False, float: 0.0,
        decimal.Decimal: decimal.Decimal(0), datetime.datetime: datetime.datetime.now(datetime.UTC),
        datetime.date: datetime.date.today(), uuid.UUID: uuid.UUID(int=number), dict: {},
        list: [],
    }
    if python in samples:
        return samples[python]
    raise ValueError(f"{column.table.name}.{column.name}: cannot make up a value of type "
                     f"{kind}; give it a server default for the proof")


def _python_type(kind: sa.types.TypeEngine[Any]) -> type | None:
    try:
        return kind.python_type
    except NotImplementedError:
        return None
