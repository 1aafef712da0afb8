"""Run queries for one workspace: the session setting row-level security policies read.

A package registered with `row_level_security=True` has its tables under a policy that
shows and accepts only the rows whose `workspace_id` is the transaction's
`ydtb.workspace_id` setting (see `runtime.db.security`). Code serving one workspace
opens its transactions here::

    async with workspace_connection(engine, workspace_id) as conn:
        rows = await conn.execute(select(notes))   # this workspace's notes, and no other

or, in a transaction it already holds (an ORM `AsyncSession` too), calls
`set_workspace(conn, workspace_id)` first.

The setting is `SET LOCAL`: it ends with the transaction, so a pooled connection never
carries one workspace's setting into another's work. Without it a policy shows nothing.
Superusers and roles with BYPASSRLS are not subject to policies at all: the application
must connect as an ordinary role for the policies to hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


__all__ = ["WORKSPACE_SETTING", "current_workspace", "set_workspace", "workspace_connection"]

#: The setting the row-level security policies compare `workspace_id` with.
WORKSPACE_SETTING = "ydtb.workspace_id"

_SET = (f"SELECT set_config('{WORKSPACE_SETTING}', :workspace, true)")
# current_setting(..., true) is NULL before the setting was ever made in the session and
# '' after a transaction that made it ended: both mean "no workspace".
_CURRENT = (f"SELECT nullif(current_setting('{WORKSPACE_SETTING}', true), '')")



def _text(sql: str) -> TextClause:
    # SQLAlchemy here, not at the top: a run imports this module, and runs without it (#17).
    from sqlalchemy import text

    return text(sql)

def _checked(workspace_id: str) -> str:
    if not isinstance(workspace_id, str) or not workspace_id:
        raise ValueError(f"workspace_id must be a non-empty string, not {workspace_id!r}")
    return workspace_id


async def set_workspace(conn: AsyncConnection | AsyncSession, workspace_id: str) -> None:
    """Scope the rest of the current transaction on `conn` to one workspace (`SET LOCAL`).

    Args:
        conn: an `AsyncConnection` or `AsyncSession` inside a transaction; outside one,
            the setting would end with the statement that makes it.
        workspace_id: the `ydtb_workspaces.id` of the workspace.

    Raises:
        ValueError: `workspace_id` is empty or not a string.
    """
    await conn.execute(_text(_SET), {"workspace": _checked(workspace_id)})


async def current_workspace(conn: AsyncConnection | AsyncSession) -> str | None:
    """Return the workspace the current transaction on `conn` is scoped to, if any."""
    result = await conn.execute(_text(_CURRENT))
    value: str | None = result.scalar()
    return value


@asynccontextmanager
async def workspace_connection(
    engine: AsyncEngine, workspace_id: str
) -> AsyncIterator[AsyncConnection]:
    """Open a transaction scoped to one workspace; commit on exit, roll back on error.

    Args:
        engine: the application's engine (an ordinary role, for policies to apply).
        workspace_id: the `ydtb_workspaces.id` of the workspace.

    Raises:
        ValueError: `workspace_id` is empty or not a string.
    """
    _checked(workspace_id)  # before connecting: a bad id costs no connection
    async with engine.begin() as conn:
        await set_workspace(conn, workspace_id)
        yield conn
