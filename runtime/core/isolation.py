"""Workspace isolation on what migrations built: the rules, judged without a database.

`runtime.db.built` reads from PostgreSQL what each migration created, altered or dropped
(`Built`); `judge` says which of it a package may not do:

- Y501: a table its schema does not declare (the Y1xx rules could not hold for it);
- Y502: DDL on a table it does not own: a core table, another package's (dependencies
  included), or one no package owns;
- Y503: an object that belongs to no table (a type, a function, a view, a sequence of its
  own) named outside the package's namespace: such names start with the name of one of
  the package's tables (`ydtb_notes_touch()` for `ydtb_notes`), so two packages, whose
  tables never share a name, cannot collide; an enum type its schema declares (a column
  `Enum(..., name="ydtb_mood")`) is its own by that name;
- Y504: a kind of object no package builds (a schema, an event trigger, a cast, ...).

What belongs with its own tables is the package's: their indexes, constraints, triggers,
policies, rules, comments and the sequences their columns own. Extensions are the
database's, shared by every package, and may be created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runtime.errors import Problem

__all__ = ["Built", "judge"]

#: Objects that belong with a table: judged by whose table it is.
_OF_A_TABLE = frozenset({"table", "index", "table constraint", "trigger", "policy", "rule",
                         "table column", "sequence", "statistics object", "default value"})
#: Objects that belong to no table: judged by their name.
_NAMED = frozenset({"type", "function", "procedure", "aggregate", "view", "materialized view",
                    "domain constraint", "sequence"})
_SHARED = frozenset({"extension"})
_ONLY_OF_A_TABLE = _OF_A_TABLE - _NAMED
_CREATE_TABLE = ("CREATE TABLE", "CREATE TABLE AS", "SELECT INTO")
_VERBS = {"CREATE": "creates", "ALTER": "alters", "DROP": "drops"}


@dataclass(frozen=True)
class Built:
    """One object a migration created, altered or dropped, as PostgreSQL reported it.

    Attributes:
        package, migration: whose migration did it.
        command: the command tag (`CREATE TABLE`, `ALTER TABLE`, `DROP INDEX`, ...).
        kind: PostgreSQL's object type (`table`, `index`, `type`, `function`, ...).
        name: the object's name, without the `public.` schema.
        table: the table it belongs to, if it belongs to one.
    """

    package: str
    migration: str
    command: str
    kind: str
    name: str
    table: str | None = None


def judge(
    built: Iterable[Built],
    declared: Mapping[str, Iterable[str]],
    owners: Mapping[str, str],
    *,
    core: str,
) -> list[Problem]:
    """List what each package's migrations built that workspace isolation forbids.

    Args:
        built: what the migrations did, in order.
        declared: what each judged package declares in its schema: its tables, and the
            enum types their columns use.
        owners: every known table's package (the core's included), for the messages.
        core: the core package, which owns the core tables and is not judged.
    """
    own = {package: frozenset(tables) for package, tables in declared.items()}
    problems: list[Problem] = []
    said: set[tuple[str, str]] = set()  # (package, table or object): one problem each
    # Tables first: a table created undeclared is said as such (Y501), not as the DDL of
    # its index or key on a table the package does not own (Y502).
    for item in sorted(built, key=lambda item: item.kind != "table"):
        if item.package == core or item.package not in own:
            continue
        problem = _problem(item, own[item.package], owners, core)
        key = (item.package, item.table or item.name)
        if problem is not None and key not in said:
            said.add(key)
            problems.append(problem)
    return problems


def _problem(
    item: Built, own: frozenset[str], owners: Mapping[str, str], core: str
) -> Problem | None:
    if item.kind in _SHARED:
        return None
    if item.kind in _ONLY_OF_A_TABLE and item.table is None:
        return None  # gone again before it could be read (made and dropped in one migration)
    if item.kind in _OF_A_TABLE and item.table is not None and item.table in own:
        return None  # most of what a run builds: judged without building a message
    where = f"migration {item.migration}"
    if item.kind in _OF_A_TABLE and item.table is not None:
        if item.kind == "table" and item.command in _CREATE_TABLE and item.table not in owners:
            return Problem(item.package, "Y501",
                           f"{where} creates table {item.table}, which its schema does not "
                           "declare",
                           f"declare {item.table} in its schema.py, prefixed ydtb_ and with a "
                           "NOT NULL workspace_id referencing ydtb_workspaces.id, or take it "
                           "out of the migration", table=item.table, migration=item.migration)
        return Problem(item.package, "Y502",
                       f"{where} changes table {item.table} ({item.command}), which it does "
                       "not own", _ask_owner(item.table, owners, core), table=item.table,
                       migration=item.migration)
    verb = _VERBS.get(item.command.split(" ")[0], "changes")
    if item.kind in _NAMED:
        if item.name in own or any(item.name.startswith(table) for table in own):
            return None
        return Problem(item.package, "Y503",
                       f"{where} {verb} {item.kind} {item.name}, named outside the package's "
                       "namespace", _rename(item.name, own), migration=item.migration)
    return Problem(item.package, "Y504",
                   f"{where} {verb} {item.kind} {item.name}: a package builds only its own "
                   "tables and what belongs to them",
                   "ask the platform's core package to provide it", migration=item.migration)


def _ask_owner(table: str, owners: Mapping[str, str], core: str) -> str:
    owner = owners.get(table)
    if owner == core:
        return f"{table} is a core table, which no package changes"
    if owner is not None:
        return f"ask {owner}, which owns {table}, to make the change in its own migrations"
    return (f"{table} belongs to no registered package: declare it in this package's "
            "schema.py, or leave it alone")


def _rename(name: str, own: frozenset[str]) -> str:
    if not own:
        return ("objects that belong to no table are named after one of the package's "
                "tables; declare a table first")
    base = name.split("(")[0]
    suggested = f"{min(own)}_{base.removeprefix('ydtb_')}{name[len(base):]}"
    return (f"name it after one of the package's tables, such as {suggested}: what belongs "
            "to no table starts with the name of one of its tables, so two packages cannot "
            "collide")
