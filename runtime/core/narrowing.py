"""What a save of `schema.py` changed of one table, so its comparison may look at that
alone (#14).

The dev daemon compares a saved table with its database before it announces the save.
alembic compares every column, index and key of the table, which grows with its width:
at 25 columns and 17 indexes, 12 ms of a 50 ms save, though the save added one index.
When the rest of the table agreed with the database (`runtime.db.agreement`: under the
table's declaration before the save and its catalog key now), comparing the parts the
save changed finds what comparing the whole table finds: alembic matches columns and
indexes by name and compares each pair alone, and the unchanged parts agreed.

So a narrowing is made only where that holds: the parts changed are columns and plain
indexes (named, on columns only, no option but `postgresql_using`); the table's own line
and its keys (primary, foreign, unique, check) are as they were. Anything else is
compared whole. The columns kept are those changed, those of the indexes changed (as
declared before and now: the database's index is on the columns it had), and the
primary key's. tests/db/test_narrowing.py holds the two comparisons equal over random
saves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Index, Table

from runtime.core import fingerprint

__all__ = ["Narrowing", "narrowing"]

_PLAIN_OPTIONS = frozenset({"postgresql_using"})


@dataclass(frozen=True)
class Narrowing:
    """The parts of a table a save changed, to compare alone.

    Attributes:
        before: the table's declared key before the save (`Package.table_keys`): the
            narrowing holds only while the database agreed with that declaration.
        columns: the columns to compare, by name.
        indexes: the indexes to compare, by name.
    """

    before: str
    columns: frozenset[str]
    indexes: frozenset[str]


def narrowing(before: Table, after: Table, key: str) -> Narrowing | None:
    """The parts of `after` that differ from `before` (whose declared key was `key`),
    or None when the table must be compared whole."""
    old, new = fingerprint.parts(before), fingerprint.parts(after)
    changed = {part for part in old.keys() | new.keys() if old.get(part) != new.get(part)}
    if not changed or any(kind not in ("column", "index") for kind, _ in changed):
        return None
    indexes = {name for kind, name in changed if kind == "index"}
    touched = [i for table in (before, after) for i in table.indexes if i.name in indexes]
    if not all(_plain(index) for index in touched):
        return None
    columns = {name for kind, name in changed if kind == "column"}
    columns.update(c.name for index in touched for c in index.columns)
    columns.update(c.name for table in (before, after) for c in table.primary_key)
    return Narrowing(key, frozenset(columns), frozenset(indexes))


def _plain(index: Index) -> bool:
    options = index.dialect_kwargs if "dialect_options" in vars(index) else {}
    return (isinstance(index.name, str) and bool(index.name)
            and all(isinstance(e, Column) for e in index.expressions)
            and set(options) <= _PLAIN_OPTIONS)
