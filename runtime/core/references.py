"""Keys that keep a workspace's rows to themselves: the rules on declared foreign keys.

- Y115: a table's key into `ydtb_workspaces` is `ON DELETE CASCADE`: deleting a
  workspace deletes its rows.
- Y210: a key from one workspace table to another includes `workspace_id` on both sides,
  `(workspace_id, note_id) -> (workspace_id, id)`, so PostgreSQL itself refuses a row
  that points into another workspace. Its `SET NULL` or `SET DEFAULT` names the columns
  it sets (`SET NULL (note_id)`, PostgreSQL 15+): a bare one would null `workspace_id`.
- Y211: the referenced columns of such a key are a unique key of the target
  (`kit.workspace_key()`): PostgreSQL requires one.
- Y116: a key that opts out of Y210 on purpose (`info={"cross_workspace": "why"}` on the
  `ForeignKey` or `ForeignKeyConstraint`) is
  `ON DELETE SET NULL`: a cascade would delete another workspace's rows, and any other
  action could stop a workspace's deletion.

With keys scoped this way and every key into `ydtb_workspaces` cascading, deleting a
workspace always completes, whatever the keys' own `ON DELETE` action: PostgreSQL runs
the checks and actions of the rows a cascade deletes at the end of the outer `DELETE`,
when every row of the workspace is gone (tests/db/test_workspace_deletion.py proves it
for each action, `RESTRICT` included, on PostgreSQL 16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import ForeignKeyConstraint, Index, Table, UniqueConstraint

from runtime.core.schema import CORE_TABLES, WORKSPACES_TABLE
from runtime.errors import Problem

__all__ = [
    "CROSS_WORKSPACE",
    "cascade_problems",
    "crossing_reason",
    "crossings",
    "delete_action",
    "key_columns",
    "key_pairs",
    "key_problems",
    "key_target",
]

#: The `info` key of a foreign key that crosses workspaces on purpose; its value says why.
CROSS_WORKSPACE = "cross_workspace"
WORKSPACE_ID = "workspace_id"

#: The owner and the table of a table name, if a package owns it.
Resolve = Callable[[str], "tuple[str, Table] | None"]


def cascade_problems(package: str, table: Table) -> list[Problem]:
    """Y115: the table's keys into `ydtb_workspaces` cascade."""
    found = []
    for key in table.foreign_key_constraints:
        if key_target(key) == WORKSPACES_TABLE and delete_action(key) != "CASCADE":
            found.append(Problem(
                package, "Y115", f"table '{table.name}' key {key_columns(key)} into "
                f"{WORKSPACES_TABLE} is ON DELETE {delete_action(key) or 'NO ACTION'}: deleting a "
                "workspace would stop at its rows", "declare it ondelete='CASCADE', as "
                "runtime.kit.workspace_table does", table=table.name))
    return found


def key_problems(package: str, table: Table, resolve: Resolve) -> list[Problem]:
    """Y116, Y210, Y211: the table's keys to other workspace tables stay in a workspace."""
    if WORKSPACE_ID not in table.c:
        return []  # Y104 says so
    found = []
    for key in table.foreign_key_constraints:
        target_name = key_target(key)
        resolved = resolve(target_name) if target_name not in CORE_TABLES else None
        if resolved is None or WORKSPACE_ID not in resolved[1].c:
            continue
        owner, target = resolved
        where = f"table '{table.name}' key {key_columns(key)} -> {target_name}"

        def problem(code: str, message: str, hint: str, where: str = where) -> Problem:
            return Problem(package, code, f"{where} {message}", hint, table=table.name)

        if crossing_reason(key):
            if delete_action(key) != "SET NULL":
                found.append(problem(
                    "Y116", f"crosses workspaces on purpose and is ON DELETE "
                    f"{delete_action(key) or 'NO ACTION'}: deleting one workspace would "
                    "delete or hold another's rows", "declare it ondelete='SET NULL'"))
            continue
        pairs = key_pairs(key)
        if pairs.get(WORKSPACE_ID) != WORKSPACE_ID:
            local = next(iter(c for c in pairs if c != WORKSPACE_ID), "id")
            found.append(problem(
                "Y210", "leaves workspace_id out: a row of one workspace could point at a "
                "row of another", f"key workspace_id and {local} together onto workspace_id "
                f"and {pairs.get(local, 'id')} with runtime.kit.workspace_reference({local!r}, "
                f"{target_name!r}), or, if it must cross workspaces, say why with "
                f"info={{{CROSS_WORKSPACE!r}: '...'}} and ondelete='SET NULL'"))
            continue
        if delete_action(key) in ("SET NULL", "SET DEFAULT") and "(" not in (key.ondelete or ""):
            rest = ", ".join(c for c in pairs if c != WORKSPACE_ID)
            found.append(problem(
                "Y210", f"is ON DELETE {delete_action(key)}, which would set workspace_id too",
                f"name the columns it sets: ondelete='{delete_action(key)} ({rest})'"))
        if set(pairs.values()) <= set(target.c.keys()) and not _unique(target, set(pairs.values())):
            columns = ", ".join(pairs.values())
            fix = (f"add runtime.kit.workspace_key() to {target_name}" if owner == package
                   else f"ask {owner}, which owns {target_name}, to add "
                        "runtime.kit.workspace_key() to it")
            found.append(problem("Y211", f"references ({columns}), which is no unique key of "
                                 f"{target_name}", fix))
    return found


def crossings(tables: Iterable[Table]) -> tuple[str, ...]:
    """Describe the keys of `tables` that cross workspaces on purpose, with their reason."""
    found = []
    for table in tables:
        for key in table.foreign_key_constraints:
            reason = crossing_reason(key)
            if reason:
                found.append(f"{table.name} {key_columns(key)} -> {key_target(key)}: {reason}")
    return tuple(found)


def crossing_reason(key: ForeignKeyConstraint) -> str | None:
    """Return why `key` crosses workspaces on purpose (`info={"cross_workspace": why}`), or None."""
    reasons = [key.info.get(CROSS_WORKSPACE), *(e.info.get(CROSS_WORKSPACE)
                                                for e in key.elements)]
    return next((str(r) for r in reasons if r), None)


def key_pairs(key: ForeignKeyConstraint) -> dict[str, str]:
    """Map each column of `key` to the column of its target it references, in key order."""
    return {element.parent.name: element.target_fullname.rpartition(".")[2]
            for element in key.elements}


def key_target(key: ForeignKeyConstraint) -> str:
    """Return the name of the table `key` references."""
    return key.elements[0].target_fullname.rpartition(".")[0]


def key_columns(key: ForeignKeyConstraint) -> str:
    """Name the columns of `key` as messages show them: `note_id`, `(workspace_id, note_id)`."""
    names = [element.parent.name for element in key.elements]
    return names[0] if len(names) == 1 else f"({', '.join(names)})"


def delete_action(key: ForeignKeyConstraint) -> str:
    """Return the `ON DELETE` action of `key` in capitals, without its column list; '' for none."""
    # "SET NULL (note_id)" acts as SET NULL on the columns it names.
    return (key.ondelete or "").upper().split("(")[0].strip()


def _unique(table: Table, columns: set[str]) -> bool:
    # The constraints themselves, not their `.columns`, which SQLAlchemy makes and keeps.
    keys = [{c.name for c in table.primary_key}]
    keys += [{c.name for c in constraint} for constraint in table.constraints
             if isinstance(constraint, UniqueConstraint)]
    keys += [{c.name for c in index.columns} for index in table.indexes
             if isinstance(index, Index) and index.unique]
    return columns in keys
