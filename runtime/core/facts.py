"""What the rules across packages read of a package, as plain data, and a package back.

A `migrate` after one package changed used to import all N packages, because the set's
rules (`runtime.core.validation.check_member`) read every package (#17: 6.7 s at N = 300
for one new migration). They read little of each, though:

- its name, version, dependencies, tools and row-level security flag;
- its tables' names, and of each table the column names, the primary key, the unique
  keys (constraints and unique indexes), and every foreign key: its columns, its
  targets, its `ON DELETE` and the reason it crosses workspaces (`references`).

`describe` writes that down (the load cache keeps it in the manifest, beside the ledger
facts), and `skeleton` builds from it a `Package` whose tables hold exactly those parts.
The rules give a skeleton the answers they give the package it was described from, so
a set of skeletons of unchanged packages and the fully loaded changed ones validates
as the full load would: tests/core/test_facts.py holds the two to the same problems
for random sets and edits.

A skeleton is never migrated: its migrations carry the recorded ids and checksums only
(for the manifest), and their SQL raises if ever run. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runtime.core.manifest import Entry, Recorded
from runtime.core.model import Migration, Package, Tool
from runtime.core.names import CORE_TABLES

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table

__all__ = ["Skeleton", "crossings_of", "describe", "skeleton", "with_migrations"]

# SQLAlchemy is imported where a table is read or built, not above: a run answered from
# the cache (a change of SQL migration files only) reads no table and imports none (#17).

# The SQL of a skeleton's migrations: they are in the manifest for their ids and
# checksums; one run by mistake must fail, not pass as applied.
_NEVER_RUN = ("DO $$ BEGIN RAISE EXCEPTION 'runtime: a migration of a package answered "
              "from the load cache cannot run'; END $$")


def _unique_keys(table: Table) -> list[list[str]]:
    from sqlalchemy import Index, UniqueConstraint

    # The constraints themselves, not their `.columns`, which SQLAlchemy makes and keeps.
    keys = [[c.name for c in constraint] for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)]
    keys += [[c.name for c in index.columns] for index in table.indexes
             if isinstance(index, Index) and index.unique]
    return sorted(keys)


def _foreign_keys(table: Table) -> list[list[Any]]:
    from runtime.core.references import crossing_reason

    keys = [[[e.parent.name for e in key.elements], [e.target_fullname for e in key.elements],
             key.ondelete, crossing_reason(key)]
            for key in table.foreign_key_constraints]
    return sorted(keys, key=repr)


def _table(table: Table) -> list[Any]:
    return [table.name, [c.name for c in table.columns],
            [c.name for c in table.primary_key], _unique_keys(table),
            _foreign_keys(table)]


def describe(package: Package) -> Any:
    """Describe what the rules across packages read of `package`, JSON-ready."""
    if isinstance(package, Skeleton):
        return package.entry.facts
    tables = [_table(t) for t in package.tables]
    # The tables' parts as JSON text beside their names: a run of new SQL migrations
    # reads the names of every package's tables and the parts of none, and parsing the
    # parts of 1,000 packages was 16 ms of it (#17). A skeleton reads them when asked.
    return [[str(d) for d in package.dependencies],
            [[t.id, t.name, t.description, t.icon] for t in package.tools],
            package.row_level_security, package.source,
            [[t[0] for t in tables], json.dumps(tables, separators=(",", ":"))],
            list(package.type_names), _sources(package.migrations)]


def _sources(migrations: Sequence[Migration]) -> list[list[Any]]:
    # Where each migration came from: a change of SQL migration files only is read
    # from them again, without the package's code (`runtime.load.pipeline`).
    return [[m.source, m.transactional, m.statements is None] for m in migrations]


def _skeleton_table(data: list[Any], metadata: MetaData) -> Table:
    from sqlalchemy import (
        Column,
        ForeignKeyConstraint,
        PrimaryKeyConstraint,
        Table,
        UniqueConstraint,
    )

    from runtime.core.references import CROSS_WORKSPACE

    name, columns, primary, unique, keys = data
    parts: list[Any] = [Column(c) for c in columns]
    parts.append(PrimaryKeyConstraint(*primary))
    parts += [UniqueConstraint(*key) for key in unique]
    parts += [ForeignKeyConstraint(local, targets, ondelete=ondelete,
                                   info={CROSS_WORKSPACE: reason} if reason else {})
              for local, targets, ondelete, reason in keys]
    return Table(name, metadata, *parts)


class Skeleton(Package):
    """A package rebuilt from a manifest's entry, to be validated only (`skeleton`).

    Its tables are built when first read: SQLAlchemy takes about 1 ms a table, and a
    change is checked where it lands (`runtime.core.index`), so most skeletons of a
    large set are never read past their names.
    """

    #: The manifest's entry it was built from.
    entry: Entry
    #: The names of the tables it owns, and the non-core tables its foreign keys point
    #: at (`index`), read without building its tables; and of the enum types it owns.
    table_names: tuple[str, ...]
    referenced_tables: tuple[str, ...]
    type_names: tuple[str, ...]
    #: Each migration's file (None if none), whether it runs in a transaction, and
    #: whether it is Python: a change of SQL migration files is read from them again.
    migration_sources: tuple[tuple[str | None, bool, bool], ...]
    #: Each table's parts as `describe` lists them, parsed from their JSON text when
    #: first read (`_parsed_tables`).
    _tables: list[Any]

    def __init__(self, entry: Entry) -> None:
        try:
            dependencies, tools, row_level_security, source, tables, types, sources = \
                entry.facts
            names, parts = tables
            if type(parts) is not str:
                raise TypeError("the tables' parts are not JSON text")
            values = {
                "name": entry.name, "_dependencies": list(dependencies),
                "version_text": entry.version_text,  # as the ledger writes it, unparsed
                "fingerprint": entry.fingerprint, "tools": tuple(Tool(*t) for t in tools),
                "row_level_security": bool(row_level_security), "source": source,
                "entry": entry, "_parts": parts,
                "table_names": tuple(map(str, names)),
                "type_names": tuple(map(str, types)),
                "migration_sources": tuple((None if f is None else str(f), bool(t), bool(p))
                                           for f, t, p in sources),
            }
            if len(values["migration_sources"]) != len(entry.migrations):
                raise ValueError("one source a migration")
        except (TypeError, ValueError, IndexError) as exc:  # not this version's: load all
            raise ValueError(f"{entry.name}: no facts of the package: {exc}") from exc
        for name, value in values.items():
            object.__setattr__(self, name, value)  # frozen, as Package's __init__ does

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not set yet: the parts a run answered from the cache
        # does not read of the unchanged packages (300 of them cost 0.1 s, #17).
        if name in _LAZY:
            try:
                value = _LAZY[name](self)
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise ValueError(f"{self.name}: no facts of its {name}: {exc}") from exc
            object.__setattr__(self, name, value)
            return value
        if name not in ("schema", "tables"):
            raise AttributeError(name)
        from sqlalchemy import MetaData

        metadata = MetaData()
        try:
            tables = tuple(_skeleton_table(t, metadata) for t in self._tables)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{self.name}: no facts of its tables: {exc}") from exc
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "schema", metadata)
        return self.__dict__[name]


def _referenced_tables(package: Skeleton) -> tuple[str, ...]:
    # When asked: only a change checked where it lands reads it (`index`), and a
    # migrate of new SQL migrations makes a skeleton of every package (#17).
    targets = {t.rpartition(".")[0] for table in package._tables
               for _, to, _, _ in table[4] for t in to}
    return tuple(sorted(targets - CORE_TABLES))


def _version(package: Skeleton) -> Any:
    from runtime.core.versions import parse_version  # packaging: read rarely, 30 ms

    return parse_version(package.entry.version_text)


def _dependencies(package: Skeleton) -> Any:
    from runtime.core.versions import parse_dependency

    return tuple(parse_dependency(d) for d in package.__dict__["_dependencies"])


def _parsed_tables(package: Skeleton) -> list[Any]:
    tables = json.loads(package.__dict__["_parts"])
    if type(tables) is not list or [t[0] for t in tables] != list(package.table_names):
        raise ValueError("the tables' parts do not match their names")
    return tables


_LAZY: dict[str, Callable[[Skeleton], Any]] = {
    "_tables": _parsed_tables,
    "referenced_tables": _referenced_tables,
    "version": _version,
    "migrations": lambda p: tuple(_recorded(i, c) for i, c in p.entry.migrations),
    "dependencies": _dependencies,
}


def skeleton(entry: Entry) -> Skeleton:
    """Build the package a manifest's entry describes (`describe`), to be validated only.

    Raises:
        ValueError: the entry's facts are not what `describe` writes.
    """
    return Skeleton(entry)


def with_migrations(package: Skeleton, migrations: Sequence[Migration]) -> Skeleton:
    """Return `package` with `migrations` instead of its own, read again from their files
    when only they changed (#17); its manifest entry is theirs too.

    Its other facts stay those of the cache: the package's code did not change. It is
    migrated like a loaded package: what `migrations` run is real SQL.
    """
    facts = list(package.entry.facts)
    facts[6] = _sources(migrations)
    entry = replace(package.entry, migrations=tuple(Recorded(m.id, m.checksum) for m in migrations),
                    facts=facts)
    rebuilt = Skeleton(entry)
    object.__setattr__(rebuilt, "migrations", tuple(migrations))
    return rebuilt


def crossings_of(package: Package) -> tuple[str, ...]:
    """The package's keys that cross workspaces on purpose (`references.crossings`)."""
    if isinstance(package, Skeleton):
        return package.entry.crossings
    from runtime.core.references import crossings

    return crossings(package.tables)


def _recorded(migration_id: str, checksum: str) -> Migration:
    migration = Migration(migration_id, up=_NEVER_RUN)
    object.__setattr__(migration, "checksum", checksum)  # as __post_init__ sets it
    return migration
