"""The tools catalog: which tools packages provide, and which each workspace has enabled.

Packages declare tools (`register_database(tools=[Tool(...)])`). The pipeline keeps
`ydtb_tools` in step with them, in the last transaction of a run:

- the tools of each package the run records (new, or its definition changed: the
  fingerprint covers its tools) are upserted, active, with the providing package; its
  tools it no longer declares are marked inactive;
- the tools of packages no longer registered are marked inactive. A full run finds those
  packages itself (recorded in `ydtb_packages`, not among the packages given); a partial
  run (the dev daemon's closure) only knows those its caller names, so it never touches
  the packages outside the closure.

An inactive tool keeps its row and the workspaces that enabled it, so nothing is lost
when its package comes back; `uninstall --purge` deletes them. A workspace enables and
disables active tools through `enable_tool` and `disable_tool`; `list_tools` shows the
active ones with its choice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from runtime.core.model import Package
from runtime.core.names import PACKAGES_TABLE, UNREGISTERED, WORKSPACES_TABLE
from runtime.errors import ToolInactiveError, ToolNotFoundError, WorkspaceNotFoundError

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "WorkspaceTool",
    "deactivate_package_tools",
    "deactivate_tools",
    "delete_package_tools",
    "disable_tool",
    "enable_tool",
    "list_tools",
    "package_tool_ids",
    "sync_tools",
]

_TOOLS = "ydtb_tools"
_WORKSPACE_TOOLS = "ydtb_workspace_tools"

# The pipeline's statements run on its asyncpg connection, like the ledger's.
_UPSERT = f"""
INSERT INTO {_TOOLS} (id, name, description, icon, is_active, package_name)
VALUES ($1, $2, $3, $4, true, $5)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, description = EXCLUDED.description, icon = EXCLUDED.icon,
    is_active = true, package_name = EXCLUDED.package_name
WHERE ({_TOOLS}.name, {_TOOLS}.description, {_TOOLS}.icon, {_TOOLS}.is_active,
       {_TOOLS}.package_name)
   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.icon, true,
                     EXCLUDED.package_name)
"""

_DEACTIVATE_DROPPED = f"""
UPDATE {_TOOLS} SET is_active = false
WHERE package_name = ANY($1::text[]) AND NOT (id = ANY($2::text[])) AND is_active
"""

_DEACTIVATE_PACKAGES = f"""
UPDATE {_TOOLS} SET is_active = false WHERE package_name = ANY($1::text[]) AND is_active
"""

_DELETE_PACKAGES = f"DELETE FROM {_TOOLS} WHERE package_name = ANY($1::text[])"

_PACKAGE_TOOLS = f"SELECT id FROM {_TOOLS} WHERE package_name = $1 ORDER BY id"

_MARK_UNREGISTERED = f"""
UPDATE {PACKAGES_TABLE} SET schema_fingerprint = '{UNREGISTERED}', updated_at = now()
WHERE package = ANY($1::text[])
"""

# The workspace-facing statements go through SQLAlchemy, like any application query.
_LOOKUP = (f"""
SELECT EXISTS (SELECT 1 FROM {WORKSPACES_TABLE} WHERE id = :workspace),
       (SELECT is_active FROM {_TOOLS} WHERE id = :tool),
       (SELECT package_name FROM {_TOOLS} WHERE id = :tool)
""")

_ACTIVE_IDS = (f"SELECT id FROM {_TOOLS} WHERE is_active ORDER BY id")

_ENABLE = (f"""
INSERT INTO {_WORKSPACE_TOOLS} (workspace_id, tool_id) VALUES (:workspace, :tool)
ON CONFLICT (workspace_id, tool_id) DO NOTHING RETURNING tool_id
""")

_DISABLE = (f"""
DELETE FROM {_WORKSPACE_TOOLS} WHERE workspace_id = :workspace AND tool_id = :tool
RETURNING tool_id
""")

_WORKSPACE_EXISTS = (f"SELECT EXISTS (SELECT 1 FROM {WORKSPACES_TABLE} WHERE id = :workspace)")

_LIST = (f"""
SELECT t.id, t.name, t.description, t.icon, t.package_name, wt.enabled_at
FROM {_TOOLS} t
LEFT JOIN {_WORKSPACE_TOOLS} wt ON wt.tool_id = t.id AND wt.workspace_id = :workspace
WHERE t.is_active
ORDER BY t.id
""")


@dataclass(frozen=True)
class WorkspaceTool:
    """An active tool as one workspace sees it.

    Attributes:
        id, name, description, icon: as the package declared them.
        package: the package providing it.
        enabled_at: when the workspace enabled it, or None.
    """

    id: str
    name: str
    description: str
    icon: str
    package: str
    enabled_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        """Whether the workspace has the tool enabled."""
        return self.enabled_at is not None


# -- the pipeline's side ----------------------------------------------------------------



def _text(sql: str) -> TextClause:
    # SQLAlchemy here, not at the top: a run imports this module, and runs without it (#17).
    from sqlalchemy import text

    return text(sql)

async def sync_tools(raw: asyncpg.Connection, packages: Sequence[Package]) -> None:
    """Upsert the tools of `packages`, active, and deactivate those they no longer declare.

    Args:
        raw: the asyncpg connection, inside the run's transaction.
        packages: the packages the run records.
    """
    if not packages:
        return
    rows = [(t.id, t.name, t.description, t.icon, p.name) for p in packages for t in p.tools]
    await raw.execute(_DEACTIVATE_DROPPED, [p.name for p in packages], [r[0] for r in rows])
    if rows:
        await raw.executemany(_UPSERT, rows)


async def deactivate_package_tools(raw: asyncpg.Connection, packages: Collection[str]) -> None:
    """Deactivate the tools of `packages`, which are no longer registered.

    Their `ydtb_packages` rows are marked `UNREGISTERED`, so a later full run does not
    do it again; the versions stay, so a downgrade is still refused on their return.
    The pipeline calls it: full runs find these packages themselves, partial runs take
    them from the caller (`migrate(..., unregistered=...)`).

    Args:
        raw: the asyncpg connection, preferably inside a transaction.
        packages: package names.
    """
    if not packages:
        return
    names = sorted(packages)
    await deactivate_tools(raw, names)
    await raw.execute(_MARK_UNREGISTERED, names)


async def deactivate_tools(raw: asyncpg.Connection, packages: Collection[str]) -> None:
    """Deactivate the tools of `packages`, keeping their rows and the workspaces' choices."""
    await raw.execute(_DEACTIVATE_PACKAGES, sorted(packages))


async def delete_package_tools(raw: asyncpg.Connection, packages: Collection[str]) -> None:
    """Delete the tools of `packages`, and the workspaces' choices of them (a purge)."""
    await raw.execute(_DELETE_PACKAGES, sorted(packages))


async def package_tool_ids(raw: asyncpg.Connection, package: str) -> tuple[str, ...]:
    """Return the ids of the tools `package` provides or provided, active or not, sorted."""
    return tuple(row[0] for row in await raw.fetch(_PACKAGE_TOOLS, package))


# -- the workspace's side ---------------------------------------------------------------


async def _lookup(conn: AsyncConnection, workspace_id: str, tool_id: str) -> tuple[bool, str]:
    """Check the workspace and the tool exist; return whether it is active, and its package.

    Raises:
        WorkspaceNotFoundError, ToolNotFoundError.
    """
    row = (await conn.execute(_text(_LOOKUP), {"workspace": workspace_id, "tool": tool_id})).one()
    workspace_exists, active, package = row
    if not workspace_exists:
        raise WorkspaceNotFoundError(workspace_id)
    if active is None:
        known = tuple((await conn.execute(_text(_ACTIVE_IDS))).scalars())
        raise ToolNotFoundError(workspace_id, tool_id, known)
    return bool(active), str(package)


async def enable_tool(engine: AsyncEngine, workspace_id: str, tool_id: str) -> bool:
    """Enable an active tool in a workspace.

    Returns:
        True if this call enabled it, False if it already was.

    Raises:
        WorkspaceNotFoundError: no such workspace.
        ToolNotFoundError: no package provides the tool; the error lists those available.
        ToolInactiveError: the package providing it is no longer registered.
    """
    async with engine.begin() as conn:
        active, package = await _lookup(conn, workspace_id, tool_id)
        if not active:
            raise ToolInactiveError(workspace_id, tool_id, package)
        result = await conn.execute(_text(_ENABLE), {"workspace": workspace_id, "tool": tool_id})
        return result.first() is not None


async def disable_tool(engine: AsyncEngine, workspace_id: str, tool_id: str) -> bool:
    """Disable a tool in a workspace; an inactive tool can be disabled too.

    Returns:
        True if this call disabled it, False if it was not enabled.

    Raises:
        WorkspaceNotFoundError: no such workspace.
        ToolNotFoundError: no package ever provided the tool.
    """
    async with engine.begin() as conn:
        await _lookup(conn, workspace_id, tool_id)
        result = await conn.execute(_text(_DISABLE), {"workspace": workspace_id, "tool": tool_id})
        return result.first() is not None


async def list_tools(engine: AsyncEngine, workspace_id: str) -> list[WorkspaceTool]:
    """List the active tools, sorted by id, each saying whether the workspace enabled it.

    Raises:
        WorkspaceNotFoundError: no such workspace.
    """
    async with engine.connect() as conn:
        if not (await conn.execute(_text(_WORKSPACE_EXISTS), {"workspace": workspace_id})).scalar():
            raise WorkspaceNotFoundError(workspace_id)
        rows = await conn.execute(_text(_LIST), {"workspace": workspace_id})
        return [WorkspaceTool(*row) for row in rows]
