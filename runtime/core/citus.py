"""Whether the registered schema can be distributed by `workspace_id` with Citus, and how. No I/O.

Where each table goes (`kinds_of`, README "Scaling out" says why):

- `ydtb_workspaces`, `ydtb_tools` and `ydtb_workspace_tools`, the core's shared tables,
  are reference tables, copied whole to every node. Citus allows keys from distributed
  tables to reference tables, and any unique key on a reference table: the global
  `ydtb_workspaces.slug` and `ydtb_workspace_tools`' key on `id` stay as they are
  (citus_docs develop/reference_ddl.rst, "Reference Tables" and "Adding/Removing
  Constraints").
- The ledger's tables stay local tables of the coordinator, where `runtime` runs.
- Every package table has `workspace_id` (Y104) and is distributed by it, all in one
  co-location group, so keys and joins between them stay on one node.

No Citus server runs where `runtime` is tested: each rule restates a refusal of Citus,
citing the page of its documentation (citusdata/citus_docs) or the regression test of
citusdata/citus whose expected output shows it; tests/core/test_citus.py has an example
of each, several from the documentation.

- Y701: a distributed table's primary key includes `workspace_id`
  (reference/common_errors.rst "Cannot create uniqueness constraint"; citus
  src/backend/distributed/commands/table.c: "Distributed relations cannot have UNIQUE,
  EXCLUDE, or PRIMARY KEY constraints that do not include the partition column").
- Y702: so do its unique constraints and unique indexes, as a column, not inside an
  expression (same sources; commands/index.c: "creating unique indexes on non-partition
  columns is currently unsupported").
- Y703: so do its exclusion constraints, with the `=` operator (same check in table.c).
- Y704: a key between distributed tables pairs `workspace_id` with `workspace_id`
  (develop/reference_ddl.rst: "between two colocated distributed tables when the key
  includes the distribution column"; expected/multi_foreign_key.out: "Foreign keys are
  supported in two cases, either in between two colocated tables including partition
  column in the same ordinal in the both tables or from distributed to reference
  tables"), which
  `references.key_problems` asks too (Y210), except of a key that crosses workspaces on
  purpose (Y116): Citus refuses those.
- Y705: a key whose columns include `workspace_id` is neither `ON DELETE SET NULL` nor
  `SET DEFAULT`, even naming the columns it sets, nor `ON UPDATE CASCADE`, `SET NULL` or
  `SET DEFAULT` (expected/foreign_key_to_reference_table.out, expected/pg15.out).
- Y706: no key from a reference or local table to a distributed one
  (develop/reference_ddl.rst: "Foreign keys from reference tables to distributed tables
  are not supported"), and none from a Citus table to a local one
  (commands/foreign_constraint.c: "referenced table must be a distributed table or a
  reference table").
- Y707: no `ON DELETE SET DEFAULT` onto a column whose default is a sequence
  (expected/pg15.out: "Citus does not support ON DELETE / UPDATE SET DEFAULT actions on
  the columns that default to sequences").
- Y708: a distributed table's identity or serial column is `bigint`: an `int` or
  `smallint` one fails inserts made through worker nodes (expected/multi_sequence_default.out:
  "nextval(sequence) calls in worker nodes are not supported for column defaults of type
  int or smallint"; expected/generated_identity.out).
- Y709: every `workspace_id` has the type of `ydtb_workspaces.id`: Citus co-locates only
  distribution columns of one type and collation (utils/colocation_utils.c: "Distribution
  column types don't match").
- Y710: the distributed tables' keys form no cycle: a key's target is distributed first
  (develop/reference_ddl.rst: "distribute the key destination table B first").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import BigInteger, Column, ForeignKeyConstraint, Integer, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql

from runtime.core import graph
from runtime.core.model import Package
from runtime.core.names import LEDGER_TABLE, OWNED_TABLES, PACKAGES_TABLE
from runtime.core.references import (
    WORKSPACE_ID,
    crossing_reason,
    delete_action,
    key_columns,
    key_pairs,
    key_target,
)
from runtime.core.schema import CORE_PACKAGE, WORKSPACES_TABLE, core_metadata
from runtime.errors import CitusProblemsError, Problem

__all__ = [
    "CORE_KINDS",
    "Kind",
    "Owned",
    "Placement",
    "distribution_column",
    "kinds_of",
    "plan",
    "problems",
    "tables_of",
]

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class Kind(enum.Enum):
    """What Citus makes of a table."""

    REFERENCE = "reference"  # one shard, copied to every node
    DISTRIBUTED = "distributed"  # sharded by workspace_id
    LOCAL = "local"  # a plain table of the coordinator


#: What the core's tables become: the shared ones reference tables, the ledger local.
CORE_KINDS: Mapping[str, Kind] = MappingProxyType({
    WORKSPACES_TABLE: Kind.REFERENCE,
    "ydtb_tools": Kind.REFERENCE,
    "ydtb_workspace_tools": Kind.REFERENCE,
    LEDGER_TABLE: Kind.LOCAL,
    PACKAGES_TABLE: Kind.LOCAL,
    OWNED_TABLES: Kind.LOCAL,
})

#: A table and the package that declares it.
Owned = tuple[str, Table]


@dataclass(frozen=True)
class Placement:
    """One step of the distribution plan: a table, its package, what it becomes.

    `colocate_with` is, for a distributed table, the table whose co-location group it
    joins; `'none'` starts the group (the first distributed table).
    """

    package: str
    table: str
    kind: Kind
    colocate_with: str = "none"
    column: str = WORKSPACE_ID

    @property
    def statement(self) -> str | None:
        """The SQL that distributes the table; None for a local table, which stays as it is."""
        name = _literal(_DIALECT.identifier_preparer.quote(self.table))
        if self.kind is Kind.REFERENCE:
            return f"SELECT create_reference_table({name});"
        if self.kind is Kind.DISTRIBUTED:
            return (f"SELECT create_distributed_table({name}, {_literal(self.column)}, "
                    f"colocate_with => {_literal(self.colocate_with)});")
        return None


def tables_of(packages: Iterable[Package]) -> list[Owned]:
    """Return every table of the registry with its package: the core's, then the packages'."""
    found: list[Owned] = [(CORE_PACKAGE, t) for t in core_metadata.sorted_tables]
    found += [(p.name, t) for p in packages if p.name != CORE_PACKAGE for t in p.tables]
    return found


def distribution_column(table: str) -> str:
    """Name the column a distributed table is distributed by: `workspace_id`.

    `ydtb_workspaces` itself, if it were distributed as the Citus tutorials distribute
    their tenant table, would be distributed by its `id`.
    """
    return "id" if table == WORKSPACES_TABLE else WORKSPACE_ID


def kinds_of(tables: Iterable[Owned]) -> dict[str, Kind]:
    """Say what each table becomes: the core's per `CORE_KINDS`, the others by `workspace_id`.

    A table without `workspace_id` (which Y104 refuses in a package) would be a reference
    table, the documentation's choice for a table no tenant owns.
    """
    return {table.name: CORE_KINDS.get(table.name) or (
        Kind.DISTRIBUTED if WORKSPACE_ID in table.c else Kind.REFERENCE)
        for _, table in tables}


def problems(tables: Sequence[Owned], kinds: Mapping[str, Kind] | None = None) -> list[Problem]:
    """Find what would stop Citus from distributing `tables` as `kinds` says (Y701-Y710).

    Args:
        tables: every table with its package (`tables_of`).
        kinds: what each table becomes; `kinds_of(tables)` when None.
    """
    kinds = kinds_of(tables) if kinds is None else kinds
    found: list[Problem] = []
    for package, table in tables:
        if kinds.get(table.name) is Kind.DISTRIBUTED:
            found.extend(_unique_problems(package, table))
            found.extend(_column_problems(package, table))
        for key in sorted(table.foreign_key_constraints, key=key_columns):
            found.extend(_key_problems(package, table, key, kinds))
    try:
        _order(tables, kinds)
    except graph.CycleError as exc:
        owner = dict((t.name, p) for p, t in tables)[exc.cycle[0]]
        found.append(Problem(
            owner, "Y710", f"tables {graph.format_cycle(exc.cycle)} reference each other in a "
            "cycle: Citus distributes a key's target before the table that holds the key",
            "drop one of these keys, distribute the tables, then add it back", table=exc.cycle[0]))
    return found


def plan(tables: Sequence[Owned], kinds: Mapping[str, Kind] | None = None) -> tuple[Placement, ...]:
    """Return the distribution plan: every table, each key's target before its holder.

    Reference tables come first, then the distributed ones, all co-located with the
    first; local tables come last, with no statement.

    Raises:
        CitusProblemsError: `problems` found some: Citus would refuse the plan.
    """
    kinds = kinds_of(tables) if kinds is None else kinds
    found = problems(tables, kinds)
    if found:
        raise CitusProblemsError(found)
    owners = {table.name: package for package, table in tables}
    placements: list[Placement] = []
    first: str | None = None
    for name in _order(tables, kinds):
        kind = kinds[name]
        if kind is Kind.DISTRIBUTED:
            column = distribution_column(name)
            placements.append(Placement(owners[name], name, kind, first or "none", column))
            first = first or name
        else:
            placements.append(Placement(owners[name], name, kind))
    return tuple(placements)


def _order(tables: Sequence[Owned], kinds: Mapping[str, Kind]) -> list[str]:
    """Order the tables reference, distributed, local, each key's target first.

    Raises:
        graph.CycleError: keys between tables of one kind form a cycle.
    """
    order: list[str] = []
    for kind in (Kind.REFERENCE, Kind.DISTRIBUTED, Kind.LOCAL):
        edges = {table.name: [t for key in table.foreign_key_constraints
                              if (t := key_target(key)) != table.name]
                 for _, table in tables if kinds.get(table.name) is kind}
        order.extend(graph.dependency_order(edges))
    return order


def _unique_problems(package: str, table: Table) -> list[Problem]:
    """Y701, Y702, Y703: the keys Citus enforces only with workspace_id in them."""
    found: list[Problem] = []
    column = distribution_column(table.name)
    refused = "which Citus refuses on a table distributed by it"

    def problem(code: str, what: str, columns: Iterable[str], hint: str) -> Problem:
        return Problem(package, code, f"table '{table.name}' {what} ({', '.join(columns)}) "
                       f"leaves out {column}, {refused}", hint, table=table.name)

    primary = [c.name for c in table.primary_key.columns]
    if primary and column not in primary:
        found.append(problem("Y701", "primary key", primary, "declare it with runtime.kit."
                             f"workspace_primary_key({', '.join(map(repr, primary))}) and "
                             "write the migration that changes it"))
    within = (f"add {column} to it: Citus enforces uniqueness within a workspace; a "
              "value unique across workspaces belongs in a reference table")
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and column not in constraint.columns:
            found.append(problem("Y702", "unique key", constraint.columns.keys(), within))
        elif (isinstance(constraint, postgresql.ExcludeConstraint)
              and constraint.operators.get(column) != "="):
            found.append(problem("Y703", "exclusion constraint", constraint.columns.keys(),
                                 f"add {column} WITH = to it"))
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if index.unique and column not in index.columns:
            shown = [str(e) for e in index.expressions]
            found.append(problem("Y702", "unique index", shown, f"{within}; as a column, "
                                 "not inside an expression"))
    return found


def _column_problems(package: str, table: Table) -> list[Problem]:
    """Y708, Y709: sequences that work on every node, a distribution column that co-locates."""
    found: list[Problem] = []
    for column in table.c:
        if _sequence_backed(column) and not isinstance(column.type, BigInteger) and \
                isinstance(column.type, Integer):
            found.append(Problem(
                package, "Y708", f"table '{table.name}' column '{column.name}' takes its "
                f"values from an {_type(column).lower()} sequence, which Citus cannot "
                "draw from on worker nodes: inserts made through them fail",
                f"declare it BigInteger, with a migration: ALTER TABLE {table.name} ALTER "
                f"COLUMN {column.name} TYPE bigint", table=table.name))
    core = core_metadata.tables[WORKSPACES_TABLE].c.id
    column = table.c[distribution_column(table.name)]
    if (_type(column), _collation(column)) != (_type(core), _collation(core)):
        found.append(Problem(
            package, "Y709", f"table '{table.name}' column '{column.name}' is "
            f"{_type(column)}{_collation(column)}, not {_type(core)} like {WORKSPACES_TABLE}.id: "
            "Citus co-locates only tables whose distribution columns have one type and "
            "collation", "declare it with runtime.kit.workspace_column()", table=table.name))
    return found


def _key_problems(
    package: str, table: Table, key: ForeignKeyConstraint, kinds: Mapping[str, Kind]
) -> list[Problem]:
    """Y704-Y707: one key, by what its table and its target become."""
    target = key_target(key)
    source_kind, target_kind = kinds.get(table.name), kinds.get(target)
    if source_kind is None or target_kind is None:
        return []  # a target no package owns: Y206 says so
    where = f"table '{table.name}' key {key_columns(key)} -> {target}"

    def problem(code: str, message: str, hint: str) -> Problem:
        return Problem(package, code, f"{where} {message}", hint, table=table.name)

    if target_kind is Kind.LOCAL and source_kind is not Kind.LOCAL:
        core = ", ".join(n for n, k in CORE_KINDS.items() if k is Kind.REFERENCE)
        return [problem("Y706", "references a table that stays local to the coordinator, "
                        "which Citus refuses from a distributed or reference table",
                        f"reference only the core's shared tables: {core}")]
    if target_kind is Kind.DISTRIBUTED and source_kind is not Kind.DISTRIBUTED:
        return [problem("Y706", f"goes from a {source_kind.value} table to a distributed "
                        "one, which Citus refuses", f"drop the key, or distribute {table.name} "
                        f"by {WORKSPACE_ID}")]
    pairs = key_pairs(key)
    column = distribution_column(table.name)
    if source_kind is Kind.DISTRIBUTED and target_kind is Kind.DISTRIBUTED \
            and pairs.get(column) != distribution_column(target):
        reason = crossing_reason(key)
        why = f"; it crosses workspaces on purpose: {reason}" if reason else ""
        return [problem("Y704", "leaves out workspace_id, which Citus refuses between "
                        f"distributed tables: a key stays on one node{why}",
                        "key it with runtime.kit.workspace_reference, or drop it and keep "
                        "the reference in the application")]
    found: list[Problem] = []
    action = delete_action(key)
    if source_kind is Kind.DISTRIBUTED and column in pairs:
        update = (key.onupdate or "").upper()
        if action in ("SET NULL", "SET DEFAULT"):
            found.append(problem("Y705", f"is ON DELETE {action} and holds workspace_id, "
                                 "which Citus refuses even when it names the columns it sets",
                                 "make it ondelete='CASCADE', or leave ondelete out and "
                                 "clear the column in the application before deleting"))
        if update in ("CASCADE", "SET NULL", "SET DEFAULT"):
            found.append(problem("Y705", f"is ON UPDATE {update} and holds workspace_id, "
                                 "which Citus refuses: a row never changes workspace",
                                 "leave onupdate out"))
    if action == "SET DEFAULT":
        named = (key.ondelete or "").partition("(")[2].rstrip(")").replace(" ", "")
        sets = named.split(",") if named else list(pairs)
        sequenced = [c for c in sets if c in table.c and _sequence_backed(table.c[c])]
        if sequenced:
            found.append(problem("Y707", f"is ON DELETE SET DEFAULT onto {', '.join(sequenced)}, "
                                 "whose default is a sequence, which Citus refuses",
                                 "make it ondelete='CASCADE', or leave ondelete out"))
    return found


def _sequence_backed(column: Column[object]) -> bool:
    """Whether the column's values come from a sequence: identity, serial or nextval()."""
    if column.identity is not None or column is column.table.autoincrement_column:
        return True
    default = getattr(column.server_default, "arg", None)
    return default is not None and "nextval(" in str(default).lower()


def _type(column: Column[object]) -> str:
    # The type without its modifier: VARCHAR(20) and VARCHAR(36) are one type to Citus,
    # which compares type oids (utils/colocation_utils.c, EnsureColumnTypeEquality).
    return re.sub(r"\(.*?\)", "", str(column.type.compile(dialect=_DIALECT))).strip()


def _collation(column: Column[object]) -> str:
    collation = getattr(column.type, "collation", None)
    return f" COLLATE {collation}" if collation else ""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
