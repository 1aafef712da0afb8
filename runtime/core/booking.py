"""How the dev daemon books what a dev change built: one ledger row per object. No I/O.

A dev change (`runtime.db.sync`) is booked as one ledger row (kind `dev`) per object it
touched, its id the change's id and the object: `dev:<fingerprint> column ydtb_notes.color`.
A table it created is booked with each of its columns, indexes and constraints, as the
dev database had them right after: what the change built, not just its name.

A row is settled, and deleted, once the migrations on a scratch database build its object
as the dev database has it (`settled`): then the dev database no longer needs the dev
change for it. A change is "in the migrations" once its last row goes. So a change that
built a table the schema then stopped declaring stays booked, while an unrelated
migration settles the rest (issue #14).

A row recorded before objects were booked (`dev:<fingerprint>` alone) names no object:
it settles once the migrations build every object of the package's tables as the dev
database has it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runtime.core.events import Difference
from runtime.core.model import Package

__all__ = [
    "ObjectKey",
    "State",
    "changes_of",
    "checksum",
    "declared_keys",
    "keys_of",
    "parse_row",
    "row_id",
    "settled",
    "summary",
    "tables_of",
]

_NOUNS = ("table", "column", "index", "constraint", "whole")
_BY_KIND = {
    "add_table": "table", "remove_table": "table",
    "add_column": "column", "remove_column": "column",
    "add_index": "index", "remove_index": "index",
    "add_constraint": "constraint", "remove_constraint": "constraint",
    "add_fk": "constraint", "remove_fk": "constraint",
    "modify_type": "column", "modify_nullable": "column", "modify_default": "column",
    "modify_server_default": "column", "modify_comment": "column",
    # Changed under their name, compared whole by PostgreSQL's rendering of them.
    "modify_constraint": "constraint", "modify_fk": "constraint", "modify_index": "index",
}


@dataclass(frozen=True, order=True)
class ObjectKey:
    """One object of a table, as the catalog names it.

    Attributes:
        noun: `table` (that it exists), `column`, `index`, `constraint`, or `whole` (every
            object of the table: for a difference of a kind named nowhere here).
        table: the table.
        name: the column, index or constraint; None for `table` and `whole`.
    """

    noun: str
    table: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.noun} {self.table}" if self.name is None \
            else f"{self.noun} {self.table}.{self.name}"

    @classmethod
    def parse(cls, text: str) -> ObjectKey | None:
        """Read what `str` wrote; None for text that names no object."""
        noun, _, rest = text.partition(" ")
        if noun not in _NOUNS or not rest:
            return None
        if noun in ("table", "whole"):
            return cls(noun, rest)
        table, dot, name = rest.partition(".")
        return cls(noun, table, name) if dot and name else None


#: What a database has of some tables: each object's definition, by key.
State = Mapping[ObjectKey, str]


def keys_of(difference: Difference) -> tuple[ObjectKey, ...]:
    """The objects `difference` is about: a column's changes are the column's."""
    # A kind named nowhere here (another comparison's) is judged on the whole table:
    # never settled before the migrations build all of it as the dev database has it.
    noun = _BY_KIND.get(difference.kind)
    if noun == "table" or (noun is not None and difference.name):
        return (ObjectKey(noun, difference.table, None if noun == "table" else difference.name),)
    return (ObjectKey("whole", difference.table),)


def declared_keys(package: Package) -> frozenset[ObjectKey]:
    """The tables, columns and named indexes and constraints `package` declares."""
    keys = {ObjectKey("table", table.name) for table in package.tables}
    for table in package.tables:
        keys.update(ObjectKey("column", table.name, str(c.name)) for c in table.columns)
        keys.update(ObjectKey("index", table.name, str(i.name)) for i in table.indexes if i.name)
        keys.update(ObjectKey("constraint", table.name, str(c.name))
                    for c in table.constraints if c.name)
    return frozenset(keys)


def row_id(change: str, key: ObjectKey) -> str:
    """The ledger id of the row booking `key` for dev change `change`."""
    return f"{change} {key}"


def parse_row(row: str) -> tuple[str, ObjectKey | None]:
    """Split a dev row's id into its change's id and its object (None: booked before
    objects were)."""
    change, _, key = row.partition(" ")
    return change, ObjectKey.parse(key) if key else None


def changes_of(rows: Iterable[str]) -> dict[str, tuple[ObjectKey, ...]]:
    """Group dev rows by change, in order of id: each change's objects, sorted."""
    found: dict[str, set[ObjectKey]] = {}
    for row in rows:
        change, key = parse_row(row)
        found.setdefault(change, set()).update([key] if key is not None else [])
    return {change: tuple(sorted(found[change])) for change in sorted(found)}


def summary(keys: Iterable[ObjectKey]) -> str:
    """Name the objects of a change in short: a table it created stands for its objects."""
    keys = sorted(keys)
    tables = {key.table for key in keys if key.noun == "table"}
    return ", ".join(str(key) for key in keys if key.noun == "table" or key.table not in tables)


def tables_of(rows: Iterable[str]) -> frozenset[str]:
    """The tables whose objects the dev rows `rows` booked."""
    return frozenset(key.table for row in rows if (key := parse_row(row)[1]) is not None)


def checksum(definition: str | None) -> str:
    """The checksum a row records: of the object's definition once the change ran."""
    return hashlib.sha256((definition or "absent").encode()).hexdigest()


def settled(rows: Iterable[str], dev: State, migrated: State) -> list[str]:
    """The rows whose object the migrations build as the dev database has it.

    Args:
        rows: the dev rows of one package.
        dev: the dev database's objects of the rows' tables and the package's.
        migrated: the same tables on a scratch database where only the migrations ran.

    Returns:
        The settled rows, sorted. An object both lack is settled too: a later change
        dropped it, as the migrations never built it. A row that names no object
        settles only when `dev` and `migrated` agree on everything.
    """
    found = []
    for row in rows:
        key = parse_row(row)[1]
        if key is None:
            agree = dict(dev) == dict(migrated)
        else:
            agree = _definition(dev, key) == _definition(migrated, key)
        if agree:
            found.append(row)
    return sorted(found)


def _definition(state: State, key: ObjectKey) -> str | tuple[str, ...] | None:
    if key.noun != "whole":
        return state.get(key)
    return tuple(f"{k} {state[k]}" for k in sorted(state) if k.table == key.table)
