"""Row-level security: keep a package's rows inside their workspace, in PostgreSQL itself.

A package registered with `row_level_security=True` has each of its tables put under
one policy, `ydtb_workspace_isolation`, that shows and accepts only the rows whose
`workspace_id` is the transaction's `ydtb.workspace_id` setting (`runtime.db.workspace`).
With no workspace set, nothing is visible. `FORCE` applies it to the tables' owner too:
only superusers and BYPASSRLS roles are not subject to it. So the pipeline should run as
one of those; run as a plain owner, a later data migration of such a table (a backfill
`UPDATE`) would see no rows, and change none, without an error.

The pipeline calls `sync_row_level_security` in the last transaction of a run, for the
packages the run recorded and the opted-in ones it migrated: so it happens when a
package is first applied, when a migration of an opted-in package runs (a re-run may
have re-created a table), and when the flag changes (the fingerprint covers it).
Turning the flag off drops the policy, and turns row-level security off on tables left
with no other policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from runtime.core.model import Package
from runtime.db.workspace import WORKSPACE_SETTING
from runtime.errors import RowLevelSecurityError

__all__ = ["POLICY", "TableSecurity", "read_table_security", "sync_row_level_security"]

#: The name of the policy the pipeline manages on each table of an opted-in package.
POLICY = "ydtb_workspace_isolation"

_SAME_WORKSPACE = f"workspace_id = current_setting('{WORKSPACE_SETTING}', true)"

# The policies as text[]: asyncpg has no built-in codec for name[], and asked the server
# for its description on each new connection, 10 ms of a fresh database's time for
# every run (`migrate --fleet` pays it per database, #16).
_READ = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       array(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid
             ORDER BY p.polname)
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname = ANY($1::text[])
"""


@dataclass(frozen=True)
class TableSecurity:
    """Where one table stands: row-level security enabled, forced, and its policies."""

    table: str
    enabled: bool
    forced: bool
    policies: tuple[str, ...]

    @property
    def isolated(self) -> bool:
        """Whether the workspace policy holds for every role but superusers and BYPASSRLS."""
        return self.enabled and self.forced and POLICY in self.policies


async def read_table_security(
    raw: asyncpg.Connection, tables: Sequence[str]
) -> dict[str, TableSecurity]:
    """Read the row-level security of `tables` (in the current schema), by table name.

    Tables that do not exist are left out.
    """
    rows = await raw.fetch(_READ, list(tables))
    return {r[0]: TableSecurity(r[0], r[1], r[2], tuple(r[3])) for r in rows}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _isolate(state: TableSecurity) -> list[str]:
    table = _quote(state.table)
    statements = []
    if not (state.enabled and state.forced):
        statements.append(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, "
                          "FORCE ROW LEVEL SECURITY")
    if POLICY not in state.policies:
        statements.append(f"CREATE POLICY {POLICY} ON {table} USING ({_SAME_WORKSPACE}) "
                          f"WITH CHECK ({_SAME_WORKSPACE})")
    return statements


def _release(state: TableSecurity) -> list[str]:
    if POLICY not in state.policies:
        return []
    table = _quote(state.table)
    statements = [f"DROP POLICY IF EXISTS {POLICY} ON {table}"]
    # A policy the package wrote itself still needs row-level security on.
    if set(state.policies) == {POLICY}:
        statements.append(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY, "
                          "DISABLE ROW LEVEL SECURITY")
    return statements


async def sync_row_level_security(raw: asyncpg.Connection, packages: Iterable[Package]) -> None:
    """Put the tables of `packages` asking for row-level security under the workspace
    policy, and take it off the tables of those that do not; only what is missing or
    left over is changed.

    Args:
        raw: the asyncpg connection, inside the caller's transaction.
        packages: the packages a run recorded or migrated.

    Raises:
        RowLevelSecurityError: a table of an opted-in package does not exist, or
            PostgreSQL refused a statement; the caller's transaction is to be rolled back.
    """
    # By name: a skeleton (a package answered from the load cache) builds tables when read.
    packages = [p for p in packages if p.table_names]
    if not packages:
        return
    states = await read_table_security(raw, [t for p in packages for t in p.table_names])
    for package in packages:
        if package.row_level_security:
            missing = [t for t in package.table_names if t not in states]
            if missing:
                raise RowLevelSecurityError(package.name, f"table '{missing[0]}' does not "
                                            "exist")
            statements = [s for t in package.table_names for s in _isolate(states[t])]
        else:
            statements = [s for t in package.table_names if t in states
                          for s in _release(states[t])]
        if statements:
            try:
                await raw.execute(";\n".join(statements))
            except asyncpg.PostgresError as exc:
                raise RowLevelSecurityError(package.name, str(exc)) from exc
