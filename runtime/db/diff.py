"""Compare a package's declared schema with a database, using alembic's autogenerate.

Why alembic and not a differ of our own: deciding whether a reflected PostgreSQL table
matches a SQLAlchemy `Table` is mostly special cases (`VARCHAR(20)` against
`String(20)`, `''::text` against `""`, unnamed foreign keys matched by their columns,
PostgreSQL's own index names), and alembic's comparator has met them all over a decade
of bug reports. This module only chooses what to compare, puts each difference into
plain words, tells the ones that may lose data, and renders the SQL that fixes it.

It runs what `produce_migrations` runs (the comparison `compare_metadata` makes, kept as
alembic's operation objects, which also render the SQL), minus the downgrade, with the
database's tables listed by name (see `_upgrade_ops`).

Choices made here:

- Only the package's own tables are compared (`include_name` for what is reflected, and
  only they are listed and reflected; `include_object` for what is declared), so the
  core's tables, the ledger and other packages' tables never show up as "not declared",
  and the work does not grow with the number of packages. The declared side is one
  `MetaData` holding copies of the package's tables and the tables their foreign keys
  reach: packages name foreign-key targets by string only
  (`ForeignKey("ydtb_workspaces.id")`), and alembic resolves them.
- Types are compared (`compare_type`; exact on SQLAlchemy 2).
- Server defaults are compared (`compare_server_default`): alembic asks the server
  whether two defaults are equal by evaluating both, which sees through casts (`''`
  against `''::text`), but finds `gen_random_uuid()` different from itself. So a
  difference between two calls of the same SQL function is dropped afterwards; alembic's
  hook for this, a callable `compare_server_default`, fails on identity columns
  (sqlalchemy/alembic#775, #821).
- The SQL is idempotent, so running it twice, or on a database that already has part of
  it, is harmless: `IF NOT EXISTS` / `IF EXISTS` where PostgreSQL has them, and for
  ADD CONSTRAINT, where it has not, a `DO` block that lets "already exists" pass.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from alembic.autogenerate import compare as autogenerate
from alembic.autogenerate.api import AutogenContext
from alembic.ddl.base import AddColumn
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from sqlalchemy import (
    BigInteger,
    Column,
    Enum,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import DefaultClause, SetColumnComment
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import ARRAY, TypeEngine

from runtime.core import booking, ddl
from runtime.core.events import Difference
from runtime.core.model import Package
from runtime.core.names import CORE_PACKAGE
from runtime.core.narrowing import Narrowing
from runtime.core.plan import PackageStatus
from runtime.core.recorded import Ledger
from runtime.core.schema import core_metadata
from runtime.db import agreement, catalog
from runtime.db.agreement import Agreement

__all__ = ["Difference", "compare", "compare_ahead", "compare_each", "drift", "schema_of"]

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_CALL = re.compile(r"^[A-Za-z_][\w.]*\(")
_INTEGER_RANKS = ((BigInteger, 3), (SmallInteger, 1), (Integer, 2))  # subclasses first


def schema_of(
    targets: Iterable[Package], packages: Iterable[Package], *,
    only: Collection[str] | None = None, narrowed: Mapping[str, Narrowing] | None = None,
) -> MetaData:
    """Return one `MetaData` holding copies of the tables of the `targets` (those named
    in `only`, if given) and of the tables their foreign keys reach (in `packages` or the
    core), so those resolve: of these, their columns alone (names and types), which is
    what resolving a key reads, and no keys of their own that would reach further.
    Of the tables `narrowed` names, the copy holds the narrowing's parts alone.
    """
    targets = list(targets)
    metadata = MetaData()
    # Only what the targets' foreign keys reach, not their dependencies' every table:
    # copying whole dependency chains was 45 ms of a 175 ms reload at N = 300. Of the
    # core's tables too: most packages reach `ydtb_workspaces` alone (#14). And not what
    # those reach in turn: at N = 300 a leaf's keys led through half the packages.
    compared = [t for target in targets for t in target.tables if only is None or t.name in only]
    narrowed = narrowed or {}
    for table in compared:
        if table.name in narrowed:
            _narrow_copy(table, narrowed[table.name], metadata)
        else:
            table.to_metadata(metadata)
    reached = {name for table in compared for name, _, _ in ddl.foreign_key_targets(table)}
    for name, declared in _declared(reached - set(metadata.tables), targets, packages).items():
        # A copy of each type: an enum binds itself to the table of its column.
        Table(name, metadata, *(Column(c.name, c.type.copy(), primary_key=c.primary_key)
                                for c in declared.columns))
    return metadata


def _narrow_copy(table: Table, narrowing: Narrowing, metadata: MetaData) -> Table:
    """A copy of `table` in `metadata` of the narrowing's columns and indexes alone
    (`runtime.core.narrowing`: plain indexes), with its comment and primary key."""
    copy = Table(table.name, metadata, *(c._copy() for c in table.columns
                                         if c.name in narrowing.columns),
                 comment=table.comment)
    # A column's own: its foreign key, its check, its `index=True` (made again below
    # when it is the narrowing's, from the table's, as for every index compared).
    for constraint in list(copy.constraints):
        if constraint is not copy.primary_key:
            copy.constraints.discard(constraint)
    copy.indexes.clear()
    for index in table.indexes:
        if index.name in narrowing.indexes:
            Index(index.name, *(copy.c[c.name] for c in index.columns), _table=copy,
                  unique=index.unique, **index.kwargs)
    return copy


def _declared(
    names: set[str], targets: list[Package], packages: Iterable[Package]
) -> dict[str, Table]:
    """The declared tables of `names`: the core's, the targets', then the packages'.

    Looked up by name: a dict of every package's tables was 1.5 ms of each comparison
    at N = 300, growing with N (#14).
    """
    found = {name: core_metadata.tables[name] for name in names
             if name in core_metadata.tables}
    for package in [*targets, *packages]:
        if len(found) == len(names):
            break
        for name in names.intersection(package.table_names).difference(found):
            found[name] = next(t for t in package.tables if t.name == name)
    return found


async def compare(
    conn: AsyncConnection,
    package: Package,
    packages: Iterable[Package],
    *,
    tables: Iterable[str] = (),
    agreed: Agreement | None = None,
    defer: Collection[str] = (),
    only: Collection[str] | None = None,
    narrow: Mapping[str, Narrowing] | None = None,
) -> list[Difference]:
    """List how the database on `conn` differs from `package`'s declared tables.

    Args:
        conn: the database, after the package's migrations ran.
        package: the package whose tables are compared.
        packages: the registered packages: the tables of the package's dependencies
            among them are declared too, so its foreign keys resolve.
        tables: more table names to compare, such as tables the package used to declare:
            found in the database, they are reported as not declared.
        agreed: what agreed with this database before (see `compare_each`).
        defer, only, narrow: tables not to compare now, or the only ones to, and the
            parts of tables a save changed (see `compare_each`).
    """
    found = await compare_each(conn, [package], packages, previous={package.name: tables},
                               agreed=agreed, reread=False, defer=defer, only=only,
                               narrow=narrow)
    return found[package.name]


async def compare_each(
    conn: AsyncConnection,
    targets: Iterable[Package],
    packages: Iterable[Package],
    *,
    previous: Mapping[str, Iterable[str]] | None = None,
    agreed: Agreement | None = None,
    reread: bool = True,
    defer: Collection[str] = (),
    only: Collection[str] | None = None,
    narrow: Mapping[str, Narrowing] | None = None,
) -> dict[str, list[Difference]]:
    """Compare several packages with the database in one pass (one reflection of it all).

    Args:
        conn: the database, after the packages' migrations ran.
        targets: the packages whose tables are compared.
        packages: the registered packages, for the tables foreign keys point at.
        previous: more table names to compare, by package (see `compare`).
        agreed: the tables that agreed with this database before: those unchanged on
            both sides since are not compared again; updated with what this finds.
        reread: read every compared table from the database. False (one package's
            sync, whose next save compares its tables again): what `agreed` kept of a
            table under its catalog key now is used, and what is read is kept.
        defer: tables not to compare now (the dev daemon compares them after it
            announced a save: the tables the save did not change).
        only: the only tables to compare, if given (those it deferred).
        narrow: the parts a save changed of some tables (`runtime.core.narrowing`):
            of a table that agreed with the database under its declaration before the
            save (in `agreed`) and its catalog key now, only those are compared.

    Returns:
        The differences of each package of `targets`, by name; empty lists included.
    """
    targets = list(targets)
    previous = previous or {}
    owners = {table: p.name for p in targets
              for table in (*p.table_names, *previous.get(p.name, ()))}
    asked = frozenset(owners.keys() if only is None else owners.keys() & set(only)) \
        - set(defer)
    listed, planner = await conn.run_sync(_listing, asked, agreed is not None) \
        if asked else ({}, {})
    declared = {name: key for p in targets for name, key in p.table_keys.items()} \
        if agreed is not None else {}
    compared = asked - (agreed.unchanged(declared, listed) if agreed else set())
    narrowed = {name: narrowing for name, narrowing in (narrow or {}).items()
                if name in compared and agreed is not None
                and agreed.agrees(name, narrowing.before, listed.get(name))}
    found: dict[str, list[Difference]] = {p.name: [] for p in targets}
    if compared:
        # Read afresh, the readings are kept only where they cost no memory.
        kept = agreed if agreed is not None and (not reread or agreed.spills) else None
        for difference in await _compare_tables(conn, targets, packages, compared, listed,
                                                kept, narrowed):
            found[owners[difference.table]].append(difference)
    if planner:
        await conn.execute(_PLANNER_BACK, planner)
    if agreed is not None:
        differing = {d.table for differences in found.values() for d in differences}
        for name in compared:
            agreed.record(name, declared.get(name) if name not in differing else None,
                          listed.get(name))
    return found


async def drift(
    conn: AsyncConnection, packages: Sequence[Package], statuses: Iterable[PackageStatus],
    recorded: Ledger,
) -> dict[str, list[Difference]]:
    """How the database differs from each package whose migrations are all applied
    (`status`, and each database of `status --fleet`); the others are behind, not drifted.

    The tables its dev changes built are compared too: one its schema no longer declares
    (and no other package does) is drift until a migration or the dev sync drops it.
    """
    complete = {s.package for s in statuses if not s.pending and not s.edited}
    targets = [p for p in packages if p.name in complete and p.name != CORE_PACKAGE]
    declared = {t for p in packages for t in p.table_names}
    built = {p.name: booking.tables_of(recorded.dev.get(p.name, ())) - declared
             for p in targets}
    return await compare_each(conn, targets, packages, previous=built)


async def compare_ahead(
    conn: AsyncConnection, package: Package, packages: Iterable[Package], agreed: Agreement,
    tables: Collection[str],
) -> None:
    """Compare `tables` of `package` as its next comparison will, keeping in `agreed`
    what is read under their catalog keys, and whether they agree.

    For the dev daemon, once it announced a change that altered them: the next save of
    `schema.py` then compares them without reading them first, and of a table that
    agrees, only the parts the save changed (`compare_each`'s `narrow`; #14).
    """
    await compare_each(conn, [package], packages, agreed=agreed, reread=False, only=tables)


async def _compare_tables(
    conn: AsyncConnection, targets: list[Package], packages: Iterable[Package],
    compared: frozenset[str], listed: Mapping[str, str], kept: Agreement | None,
    narrowed: Mapping[str, Narrowing],
) -> list[Difference]:
    """Compare the tables `compared` of `targets` (`listed`: those in the database,
    with their catalog keys), with what `kept` read of them under those keys; of those
    `narrowed` names, their narrowings' parts."""
    own = [t for p in targets for t in p.tables if t.name in compared]
    with _unmarked(own):
        return await _compare_copies(conn, targets, packages, compared, listed, kept,
                                     narrowed)


async def _compare_copies(
    conn: AsyncConnection, targets: list[Package], packages: Iterable[Package],
    compared: frozenset[str], listed: Mapping[str, str], kept: Agreement | None,
    narrowed: Mapping[str, Narrowing],
) -> list[Difference]:
    metadata = schema_of(targets, packages, only=compared, narrowed=narrowed)
    readings = _readings(kept, listed, compared, _REFLECTED)
    upgrade, read = await conn.run_sync(_upgrade_ops, metadata, compared,
                                        sorted(compared & set(listed)), readings,
                                        kept.answers if kept is not None else None, narrowed)
    _keep(kept, listed, read, _REFLECTED)
    added = {op.table_name for op in upgrade.ops if isinstance(op, ops.CreateTableOp)}
    present = compared - added
    differences = _differences(upgrade, metadata)
    if present:
        # The packages' own `Table`s, not their copies: the catalog caches by `Table`.
        own = {t.name: t for p in targets for t in p.tables if t.name in present}
        shapes = _readings(kept, listed, present, _SHAPES)
        known = set(shapes)
        differences += await conn.run_sync(_catalog_differences, metadata, own, present,
                                           differences, shapes)
        _keep(kept, listed, {n: s for n, s in shapes.items() if n not in known}, _SHAPES)
    return differences


# What SQLAlchemy keeps on a schema item the first time it is asked: copying a table
# (`to_metadata`) asks each item for its `dialect_options`, alembic each type for its
# `_type_affinity`. Left on the packages' own tables, they held 80 kB a package for the
# dev daemon's life: 80 MB of its 330 MB at N = 1000, after comparing every package at
# start-up (#17). Taking them away after is not enough: the first new attribute turns
# an item's compact attribute dict (keys shared by its class) into one of its own,
# three times its size, which stays. So the comparison works on a copy of each item's
# attributes, and the items get their own back after. An item's event dispatcher is
# made on demand too (a copy asks for it), and the registry drops it when no listener
# uses it (`runtime.core.registry`).
_MEMOS = frozenset({"dialect_options", "_type_affinity", "dispatch"})


@contextmanager
def _unmarked(tables: Iterable[Table]) -> Iterator[None]:
    """Leave `tables`' schema items as they were, but for what is not a memo."""
    items = [item for table in tables for item in ddl.schema_items(table)
             if hasattr(item, "__dict__")]
    kept = [vars(item) for item in items]
    for item, attributes in zip(items, kept, strict=True):
        item.__dict__ = dict(attributes)
    try:
        yield
    finally:
        for item, attributes in zip(items, kept, strict=True):
            used, item.__dict__ = vars(item), attributes
            attributes.update((key, value) for key, value in used.items()
                              if key not in _MEMOS and attributes.get(key) is not value)


# What is read of a table, kept by an `Agreement` under its catalog key.
_REFLECTED, _SHAPES = "reflected", "shapes"


def _readings(
    kept: Agreement | None, listed: Mapping[str, str], tables: Iterable[str], what: str
) -> dict[str, Any]:
    """What `kept` read of `tables` under their catalog keys now, by table."""
    if kept is None:
        return {}
    found = {name: kept.reading(name, what, listed.get(name)) for name in tables}
    return {name: reading for name, reading in found.items() if reading is not None}


def _keep(
    kept: Agreement | None, listed: Mapping[str, str], read: Mapping[str, Any], what: str
) -> None:
    if kept is not None:
        for name, reading in read.items():
            kept.keep(name, what, listed.get(name), reading)


def _catalog_differences(
    sync_conn: Connection, metadata: MetaData, own: Mapping[str, Table],
    tables: frozenset[str], known: list[Difference], shapes: dict[str, catalog.Shape],
) -> list[Difference]:
    """What alembic does not compare (`runtime.db.catalog`), for `tables`, in both.

    `shapes`: the database's shapes of some of the tables, read before; the others'
    are read and added to it.
    """
    declared = [own.get(name, metadata.tables[name]) for name in sorted(tables)
                if name in metadata.tables]
    unread = tables - set(shapes)
    if unread:
        shapes.update(catalog.shapes_of(sync_conn, unread))
    found = catalog.compare({name: shapes[name] for name in tables},
                            catalog.declared_shapes(sync_conn, declared),
                            {(d.table, d.name) for d in known})
    enums = catalog.declared_enums(declared)
    if enums:
        found += catalog.compare_enums(catalog.enum_labels(sync_conn, enums), enums, declared)
    return found


# SQLAlchemy's reflection queries of indexes and unique constraints join pg_attribute
# to `unnest(indkey)`, which the planner guesses at 1,000 rows: it then hashes or
# merges the whole of pg_attribute (every column of every table in the database), 25-40
# ms a query at N = 300 packages, and growing with N. With nested loops it looks up the
# few columns it needs by index: 0.5 ms, whatever N (#14). Only for the comparison's
# queries: `_LISTING` turns them off for the transaction, `_PLANNER_BACK` sets them back
# to what they were, which `_LISTING` read first (an uncorrelated subquery is computed
# once, before the first row's `set_config`; a lookup of `pg_settings` took 1 ms).
#
# `_LISTING` lists the tables to compare that exist, as SQLAlchemy's `get_table_names`
# would (visible, not temporary, not the system's) but looked up by name, with their
# catalog keys when an `Agreement` asks for them.
_LISTING = text(f"""
SELECT c.relname, CASE WHEN :keyed THEN {agreement.CATALOG_KEY} END,
       (SELECT current_setting('enable_hashjoin')), (SELECT current_setting('enable_mergejoin')),
       set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = ANY(:names) AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND pg_table_is_visible(c.oid) AND n.nspname <> 'pg_catalog'
""")
_PLANNER_BACK = text("SELECT set_config('enable_hashjoin', :hashjoin, true), "
                     "set_config('enable_mergejoin', :mergejoin, true)")


def _listing(
    sync_conn: Connection, names: frozenset[str], keyed: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """The tables of `names` in the database, each with its catalog key (or ''), and
    the planner's settings to set back (none when no table was listed)."""
    rows = sync_conn.execute(_LISTING, {"names": sorted(names), "keyed": keyed}).all()
    back = {"hashjoin": rows[0][2], "mergejoin": rows[0][3]} if rows else {}
    return {name: key or "" for name, key, *_ in rows}, back


def _upgrade_ops(
    sync_conn: Connection, metadata: MetaData, own: frozenset[str], present: list[str],
    readings: Mapping[str, dict[str, Any]], answers: dict[Any, bool] | None = None,
    narrowed: Mapping[str, Narrowing] | None = None,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Alembic's operations making the database's tables `present` (and `own` ones it
    lacks) what `metadata` declares, and what was read of the tables not in
    `readings` (alembic's reflection of each, by table). `answers`: what the server
    said of defaults before (`_remembering`), added to. Of the tables `narrowed`
    names, the database's are seen with the narrowing's parts alone, as `metadata`'s."""
    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in own

    def include_object(_obj: Any, name: str | None, type_: str, *_: Any) -> bool:
        return type_ != "table" or name in own

    context = MigrationContext.configure(sync_conn, opts={
        "include_name": include_name,
        "include_object": include_object,
        "compare_type": True,
        "compare_server_default": True,
    })
    # `produce_migrations` without its downgrade, which nothing reads, and with the
    # tables `_listing` found: alembic lists every table of the database, then filters
    # them with `include_name` (15 ms at N = 300 packages, growing with N).
    autogen = AutogenContext(context, metadata=metadata)
    autogen.inspector.get_table_names = lambda schema=None, **_: present  # type: ignore[method-assign]
    _remembering(context.impl, {} if answers is None else answers)
    _comparing_arrays(context.impl)
    unread = _reflect(autogen.inspector, present, readings)
    read = _reflected(autogen.inspector, unread)  # whole: what is kept is the table's
    for name, narrowing in (narrowed or {}).items():
        _narrow_reading(autogen.inspector.info_cache, name, narrowing)
    upgrade = ops.UpgradeOps([])
    with warnings.catch_warnings():
        # Alembic does not compare a generated column's expression, and warns so at
        # every comparison; `runtime.db.catalog` compares it.
        warnings.filterwarnings("ignore", "Computed default on", UserWarning)
        autogenerate._produce_net_changes(autogen, upgrade)
    return upgrade, read


def _remembering(impl: Any, answers: dict[Any, bool]) -> None:
    """Make alembic ask the server whether two defaults differ once per pair, not on
    every comparison: `SELECT <reflected> = <declared>`, a round trip for each column
    whose default is not written the same on both sides ('' against ''::text).

    The answer depends on the two texts alone, and on what alembic checks before it
    asks (a column's serial key, a numeric type, a default declared or not).
    """
    asked = impl.compare_server_default

    def compare_server_default(inspector_column: Any, metadata_column: Any,
                               rendered_metadata_default: Any,
                               rendered_inspector_default: Any) -> bool:
        key = (rendered_inspector_default, rendered_metadata_default,
               metadata_column.server_default is None,
               isinstance(inspector_column.type, Numeric | Float),
               metadata_column.primary_key
               and metadata_column is metadata_column.table._autoincrement_column)
        if key not in answers:
            quoted = _string_literal(inspector_column, metadata_column)
            try:
                with impl.connection.begin_nested():  # a failure leaves the rest alone
                    answers[key] = asked(inspector_column, metadata_column,
                                         rendered_metadata_default, rendered_inspector_default) \
                        if quoted is None or None in (rendered_inspector_default,
                                                      rendered_metadata_default) \
                        else not impl.connection.scalar(select(
                            literal_column(rendered_inspector_default) == literal_column(quoted)))
            except DBAPIError:
                # `SELECT 0 = 'x'`: the column's type changes too, its default with it.
                answers[key] = True
        return answers[key]

    impl.compare_server_default = compare_server_default


def _comparing_arrays(impl: Any) -> None:
    """Make alembic tell an array from its item type: it compares the types' names up
    to their brackets, so `TEXT[]` against `TEXT` was no difference, and a column made
    an array (or no longer one) in `schema.py` was never synced nor written."""
    asked = impl.compare_type

    def compare_type(inspector_column: Any, metadata_column: Any) -> bool:
        found, declared = inspector_column.type, metadata_column.type
        if not (isinstance(found, ARRAY) or isinstance(declared, ARRAY)):
            return bool(asked(inspector_column, metadata_column))
        if not (isinstance(found, ARRAY) and isinstance(declared, ARRAY)):
            return True
        return bool(asked(Column(inspector_column.name, found.item_type),
                          Column(metadata_column.name, declared.item_type)))

    impl.compare_type = compare_type


def _string_literal(inspector_column: Any, metadata_column: Any) -> str | None:
    """The SQL literal of a column's declared text default, as CREATE TABLE writes it
    (`server_default="it's"`: `'it''s'`); None for any other default, or a column that
    alembic compares otherwise (numbers, its serial key).

    alembic writes the literal by stripping a quote from each end and adding one: a
    default of `'draft'` (quotes included), which PostgreSQL holds as `'''draft'''`, was
    compared with `'draft'`, a drift no migration could mend; `it's` was a syntax error.
    """
    default = metadata_column.server_default
    value = getattr(default, "arg", None)
    if not isinstance(value, str) or isinstance(inspector_column.type, Numeric | Float) \
            or (metadata_column.primary_key
                and metadata_column is metadata_column.table._autoincrement_column):
        return None
    return "'" + value.replace("'", "''") + "'"


# What alembic reflects of each table, in one query per kind for all the tables it
# compares (`_InspectorConv.pre_cache_tables`), kept in the inspector's `info_cache`
# under `alembic_<kind>` as {(schema, table): reflected}. Put there beforehand, alembic
# reads it from there. Should alembic name its cache otherwise, it reflects everything
# again itself and nothing is kept: slower, never wrong.
_REFLECTION = ("columns", "pk_constraint", "foreign_keys", "indexes", "unique_constraints",
               "table_comment", "check_constraints", "table_options")


def _reflect(
    inspector: Any, present: list[str], readings: Mapping[str, dict[str, Any]]
) -> list[str]:
    """Fill alembic's cache with `readings` and the reflection of the other tables of
    `present`, which it returns."""
    unread = [name for name in present if name not in readings]
    for kind in _REFLECTION:
        found = dict(getattr(inspector, f"get_multi_{kind}")(filter_names=unread)) \
            if unread else {}
        found.update(((None, name), reading[kind]) for name, reading in readings.items())
        inspector.info_cache[f"alembic_{kind}"] = found
    return unread


def _narrow_reading(cache: dict[str, Any], name: str, narrowing: Narrowing) -> None:
    """Leave in alembic's cache (`_reflect`) the parts of table `name` a narrowed copy
    has (`_narrow_copy`): its columns, its indexes, its primary key and comment."""
    key = (None, name)
    for kind, parts in (("columns", narrowing.columns), ("indexes", narrowing.indexes)):
        found = cache[f"alembic_{kind}"]
        found[key] = [part for part in found.get(key, ()) if part["name"] in parts]
    for kind in ("foreign_keys", "unique_constraints", "check_constraints"):
        cache[f"alembic_{kind}"][key] = []


def _reflected(inspector: Any, tables: list[str]) -> dict[str, dict[str, Any]]:
    """What alembic's cache holds of each of `tables`, read whole."""
    cache = inspector.info_cache
    if not all(isinstance(cache.get(f"alembic_{kind}"), dict) for kind in _REFLECTION):
        return {}
    return {name: {kind: cache[f"alembic_{kind}"][(None, name)] for kind in _REFLECTION}
            for name in tables
            if all((None, name) in cache[f"alembic_{kind}"] for kind in _REFLECTION)}


def _retyped(op: Any, declared: Column[Any], alter: tuple[str, ...]) -> tuple[str, ...]:
    """`alter` (the column's type changed), with what it needs around it: its new enum
    type created first, and its default taken off before and put back after (the
    declared one): PostgreSQL casts the default with the column, and refuses one it
    cannot cast (`'{}'::jsonb` to bigint)."""
    table, column = ddl.quote(op.table_name), ddl.quote(op.column_name)
    before = ddl.enum_statements([declared])
    after: list[str] = []
    if op.existing_server_default not in (None, False):
        before.append(f"ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT")
        if declared.server_default is not None:
            compiler = _DIALECT.ddl_compiler(_DIALECT, None)  # type: ignore[arg-type]
            default = compiler.get_column_default_string(declared)
            after.append(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {default}")
    return (*before, *alter, *after)


def _same_call(old: Any, new: Any) -> bool:
    """Tell whether two defaults call the same SQL function (`now()`, `gen_random_uuid()`)."""
    texts = [re.sub(r"\s+", "", _sql(d).lower()) for d in (old, new) if d not in (None, False)]
    return len(texts) == 2 and texts[0] == texts[1] and bool(_CALL.match(texts[0]))


# -- from alembic's operations to differences ---------------------------------------


def _differences(upgrade: Any, metadata: MetaData) -> list[Difference]:
    added = {op.table_name for op in upgrade.ops if isinstance(op, ops.CreateTableOp)}
    removed = {op.table_name for op in upgrade.ops if isinstance(op, ops.DropTableOp)}
    found: list[Difference] = []
    flat = list(_flatten(upgrade.ops))
    changed = _changed_foreign_keys(flat)
    for op in flat:
        table = getattr(op, "table_name", None)
        if table in added | removed and not isinstance(op, ops.CreateTableOp | ops.DropTableOp):
            continue  # CREATE TABLE brings its indexes, DROP TABLE takes them away
        if id(op) in changed:
            if isinstance(op, ops.DropConstraintOp):
                found.append(_changed_foreign_key(op, changed[id(op)]))
            continue
        found.extend(_describe(op, metadata))
    # PostgreSQL refuses a unique key's drop while a foreign key stands on it, and a key
    # onto a unique key not yet there: foreign keys are dropped first and added last, and
    # new tables (whose keys are in their CREATE TABLE) come after the unique keys added
    # to the tables they point at. alembic's order is kept otherwise.
    return sorted(found, key=lambda difference: _ORDER.get(difference.kind, 1))


_ORDER = {"remove_fk": 0, "add_table": 2, "add_fk": 3}


def _changed_foreign_keys(flat: list[Any]) -> dict[int, Any]:
    """Pair each foreign key alembic drops with the one it adds on the same columns onto
    the same ones: a changed ON DELETE or ON UPDATE, which alembic shows as a drop and an
    add. A key onto other columns stays a drop and an add, said as such."""
    adds = {(op.source_table, tuple(op.local_cols),
             tuple(f"{op.referent_table}.{c}" for c in op.remote_cols)): op
            for op in flat if isinstance(op, ops.CreateForeignKeyOp)}
    pairs: dict[int, Any] = {}
    for op in flat:
        if isinstance(op, ops.DropConstraintOp) and op.constraint_type == "foreignkey":
            old: Any = op.to_constraint()  # a ForeignKeyConstraint
            onto = tuple(e.target_fullname for e in old.elements)
            add = adds.get((op.table_name, tuple(old.column_keys), onto))
            if add is not None:
                pairs[id(op)], pairs[id(add)] = add, op
    return pairs


def _changed_foreign_key(drop: Any, add: Any) -> Difference:
    old, new = drop.to_constraint(), add.to_constraint()
    name = add.constraint_name = add.constraint_name or drop.constraint_name
    [statement] = _render(add)
    # Dropped and added again: run twice, it drops the new one and adds it again.
    dropping = (f"ALTER TABLE {ddl.quote(drop.table_name)} DROP CONSTRAINT IF EXISTS "
                f"{ddl.quote(drop.constraint_name)}")
    return Difference("modify_fk", drop.table_name, name,
                      f"foreign key {name} is {_actions(old)} in the database but declared "
                      f"{_actions(new)}", False,
                      (dropping, f"{statement} NOT VALID", ddl.validated(drop.table_name, name)))


def _actions(key: Any) -> str:
    return (f"ON DELETE {(key.ondelete or 'NO ACTION').upper()} "
            f"ON UPDATE {(key.onupdate or 'NO ACTION').upper()}")


def _flatten(items: Iterable[Any]) -> Iterator[Any]:
    for op in items:
        if isinstance(op, ops.ModifyTableOps):
            yield from _flatten(op.ops)
        else:
            yield op


def _describe(op: Any, metadata: MetaData) -> list[Difference]:
    if isinstance(op, ops.AlterColumnOp):
        declared = metadata.tables[op.table_name].c[op.column_name]
        return [_alter(kind, op, old, new, declared) for kind, *_, old, new
                in op.to_diff_tuple()
                if not (kind == "modify_default" and _same_call(old, new))]
    for op_type, describe in _DESCRIBERS:
        if isinstance(op, op_type):
            return [describe(op, metadata)]
    diff = op.to_diff_tuple()
    kind = diff[0] if isinstance(diff, tuple) else type(op).__name__
    table = str(getattr(op, "table_name", "?"))
    # Something alembic found that we have no words for yet: show it, never apply it.
    return [Difference(kind, table, None, f"table {table}: {kind} ({diff!r})", True,
                       _render(op))]


def _add_table(op: Any, metadata: MetaData) -> Difference:
    table = metadata.tables[op.table_name]
    return Difference("add_table", op.table_name, None,
                      f"table {op.table_name} declared but missing", False,
                      tuple(ddl.create_statements([table])))


def _remove_table(op: Any, _metadata: MetaData) -> Difference:
    op.if_exists = True
    return Difference("remove_table", op.table_name, None,
                      f"table {op.table_name} in the database but not declared", True,
                      _render(op))


def _add_column(op: Any, _metadata: MetaData) -> Difference:
    column: Column[Any] = op.column
    needs_value = not column.nullable and column.server_default is None \
        and column.identity is None and column.computed is None
    added = column
    if needs_value:
        # Added as nullable, given a value, then NOT NULL: added NOT NULL at once, it
        # fails on a table holding rows.
        added = column._copy()
        added.nullable = True
    # AddColumn alone: alembic's add_column operation also creates the column's index
    # without IF NOT EXISTS, and the index comes as its own difference anyway.
    statement = AddColumn(op.table_name, added, if_not_exists=True)
    # A native enum column's type comes first: ADD COLUMN does not create it.
    statements = [*ddl.enum_statements([column]), str(statement.compile(dialect=_DIALECT)).strip()]
    if column.comment is not None:  # ADD COLUMN does not say it: a comparison later did
        statements.append(str(SetColumnComment(column).compile(dialect=_DIALECT)))
    if needs_value:
        statements += _not_null(op.table_name, column.name)
    return Difference("add_column", op.table_name, column.name,
                      f"table {op.table_name}: column {column.name} declared but missing",
                      needs_value, tuple(statements))


def _not_null(table: str, column: str) -> list[str]:
    return [ddl.backfill(table, column),
            f"ALTER TABLE {ddl.quote(table)} ALTER COLUMN {ddl.quote(column)} SET NOT NULL"]


def _remove_column(op: Any, _metadata: MetaData) -> Difference:
    op.if_exists = True
    return Difference("remove_column", op.table_name, op.column_name,
                      f"table {op.table_name}: column {op.column_name} in the database but "
                      "not declared", True, _render(op))


def _add_index(op: Any, _metadata: MetaData) -> Difference:
    op.if_not_exists = True
    return Difference("add_index", op.table_name, op.index_name,
                      f"index {op.index_name} declared but missing", False, _render(op))


def _remove_index(op: Any, _metadata: MetaData) -> Difference:
    op.if_exists = True
    return Difference("remove_index", op.table_name, op.index_name,
                      f"index {op.index_name} in the database but not declared", False,
                      _render(op))


def _add_constraint(op: Any, _metadata: MetaData) -> Difference:
    kind = "add_fk" if isinstance(op, ops.CreateForeignKeyOp) else "add_constraint"
    table = op.source_table if kind == "add_fk" else op.table_name
    columns = op.local_cols if kind == "add_fk" else op.columns
    suffix = "fkey" if kind == "add_fk" else "key"
    # An unnamed constraint gets the name PostgreSQL would give it: run again, an
    # unnamed ADD CONSTRAINT would add a second one (`..._fkey1`) instead of failing.
    op.constraint_name = op.constraint_name or f"{table}_{'_'.join(columns)}_{suffix}"
    noun = "foreign key" if kind == "add_fk" else "unique constraint"
    [statement] = _render(op)
    # A foreign key checks every row: added NOT VALID, then validated (`checked_later`).
    # A plain unique constraint is its index built first, then the constraint using it.
    statements: tuple[str, ...]
    if kind == "add_fk":
        statements = ddl.checked_later(statement, table, op.constraint_name)
    elif statement == _render(ops.CreateUniqueConstraintOp(
            op.constraint_name, table, list(columns)))[0]:
        statements = ddl.unique_later(table, op.constraint_name, columns)
    else:  # with options of its own (NULLS NOT DISTINCT, DEFERRABLE): as declared
        statements = (ddl.unless_it_exists(statement),)
    return Difference(kind, table, op.constraint_name,
                      f"{noun} {op.constraint_name} declared but missing", False, statements)


def _remove_constraint(op: Any, _metadata: MetaData) -> Difference:
    op.if_exists = True
    foreign = op.constraint_type == "foreignkey"
    noun = "foreign key" if foreign else f"{op.constraint_type or ''} constraint".strip()
    return Difference("remove_fk" if foreign else "remove_constraint", op.table_name,
                      op.constraint_name,
                      f"{noun} {op.constraint_name} in the database but not declared",
                      False, _render(op))


def _table_comment(op: Any, _metadata: MetaData) -> Difference:
    """A table's comment added, changed or taken away: COMMENT ON runs twice as it is."""
    new = getattr(op, "comment", None)
    return Difference("modify_table_comment", op.table_name, None,
                      f"table {op.table_name} has {_comment(op.existing_comment)} in the "
                      f"database but declared {_comment(new)}", False, _render(op))


def _comment(comment: str | None) -> str:
    return "no comment" if comment is None else "comment '" + comment.replace("'", "''") + "'"


_DESCRIBERS: tuple[tuple[type, Callable[[Any, MetaData], Difference]], ...] = (
    (ops.CreateTableCommentOp, _table_comment),
    (ops.DropTableCommentOp, _table_comment),
    (ops.CreateTableOp, _add_table),
    (ops.DropTableOp, _remove_table),
    (ops.AddColumnOp, _add_column),
    (ops.DropColumnOp, _remove_column),
    (ops.CreateIndexOp, _add_index),
    (ops.DropIndexOp, _remove_index),
    (ops.CreateForeignKeyOp, _add_constraint),
    (ops.CreateUniqueConstraintOp, _add_constraint),
    (ops.DropConstraintOp, _remove_constraint),
)

_ALTERED = {"modify_type": "modify_type", "modify_nullable": "modify_nullable",
            "modify_default": "modify_server_default", "modify_comment": "modify_comment"}


def _alter(kind: str, op: Any, old: Any, new: Any, declared: Column[Any]) -> Difference:
    """One change of a column, rendered alone so each difference has its own SQL."""
    existing = {"existing_type": op.existing_type, "existing_nullable": op.existing_nullable,
                "existing_server_default": op.existing_server_default}
    extra: dict[str, Any] = {}
    if kind == "modify_type":
        # Without USING, PostgreSQL refuses a change with no implicit cast (text to
        # integer, say): the cast runs on every row, and fails on one it cannot convert.
        # To an enum, through text: no other type casts to one.
        quoted = ddl.quote(op.column_name)
        through = "::text" if isinstance(new, Enum) else ""
        extra["postgresql_using"] = f"{quoted}{through}::{_sql(new)}"
    single = ops.AlterColumnOp(op.table_name, op.column_name, **existing,
                               **{_ALTERED.get(kind, kind): new}, **extra)
    where = f"table {op.table_name}: column {op.column_name}"
    if kind == "modify_type":
        words = f"{where} is {_sql(old)} in the database but declared {_sql(new)}"
        return Difference(kind, op.table_name, op.column_name, words, not _widens(old, new),
                          _retyped(op, declared, _render(single)))
    elif kind == "modify_nullable":
        words = (f"{where} is {'nullable' if old else 'NOT NULL'} in the database but "
                 f"declared {'nullable' if new else 'NOT NULL'}")
        destructive = not new
        if destructive:
            return Difference(kind, op.table_name, op.column_name, words, True,
                              tuple(_not_null(op.table_name, op.column_name)))
    elif kind == "modify_default" and (isinstance(old, Identity) or isinstance(new, Identity)):
        return _identity(op, old, new)
    elif kind == "modify_default":
        words = f"{where} has {_default(old)} in the database but declared {_default(new)}"
        destructive = False
    elif kind == "modify_comment":
        words = f"{where} has {_comment(old)} in the database but declared {_comment(new)}"
        destructive = False
    else:
        words = f"{where}: {kind.removeprefix('modify_')} differs"
        destructive = False
    return Difference(kind, op.table_name, op.column_name, words, destructive, _render(single))


def _identity(op: Any, old: Any, new: Any) -> Difference:
    """An identity added to a column or taken from it, guarded to run twice: PostgreSQL
    has ADD GENERATED and DROP IDENTITY IF EXISTS, but no ADD GENERATED IF NOT EXISTS."""
    table, column = ddl.quote(op.table_name), ddl.quote(op.column_name)
    def words(identity: Any) -> str:
        return (f"GENERATED {'ALWAYS' if identity.always else 'BY DEFAULT'} AS IDENTITY"
                if isinstance(identity, Identity) else "not an identity column")

    if not isinstance(new, Identity):
        statement = f"ALTER TABLE {table} ALTER COLUMN {column} DROP IDENTITY IF EXISTS"
    else:
        # SET GENERATED on a column that is one already; else ADD GENERATED.
        kind = "ALWAYS" if new.always else "BY DEFAULT"
        statement = (
            "DO $$\nBEGIN\n"
            "    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
            f"{_literal(table)}::regclass AND attname = {_literal(op.column_name)} "
            "AND attidentity <> '') THEN\n"
            f"        ALTER TABLE {table} ALTER COLUMN {column} SET GENERATED {kind};\n"
            "    ELSE\n"
            f"        ALTER TABLE {table} ALTER COLUMN {column} ADD GENERATED {kind} AS "
            "IDENTITY;\n"
            "    END IF;\nEND $$")
    return Difference("modify_identity", op.table_name, op.column_name,
                      f"table {op.table_name}: column {op.column_name} is {words(old)} in the "
                      f"database but declared {words(new)}", False, (statement,))


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _widens(old: TypeEngine[Any], new: TypeEngine[Any]) -> bool:
    """Tell whether every value of type `old` fits type `new` unchanged."""
    if isinstance(old, String) and isinstance(new, String):
        return new.length is None or (old.length is not None and new.length >= old.length)
    ranks = [next((r for t, r in _INTEGER_RANKS if isinstance(x, t)), None) for x in (old, new)]
    return ranks[0] is not None and ranks[1] is not None and ranks[1] >= ranks[0]


def _sql(value: Any) -> str:
    if isinstance(value, TypeEngine):
        return str(value.compile(dialect=_DIALECT))
    if isinstance(value, DefaultClause):
        value = value.arg
    if isinstance(value, ClauseElement):
        return str(value.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))
    return str(value)


def _default(value: Any) -> str:
    if value is None or value is False:
        return "no default"
    if isinstance(value, DefaultClause) and isinstance(value.arg, str):
        return "default '" + value.arg.replace("'", "''") + "'"  # a literal, not SQL
    return f"default {_sql(value)}"


# -- SQL ------------------------------------------------------------------------------


def _render(op: Any) -> tuple[str, ...]:
    """Render one alembic operation as PostgreSQL, offline (no connection needed)."""
    context, operations = _offline()
    buffer = context.impl.output_buffer = io.StringIO()
    operations.invoke(op)
    return (buffer.getvalue().strip().removesuffix(";"),)


@functools.cache
def _offline() -> tuple[MigrationContext, Operations]:
    """One offline context for every rendering: making one was 0.5 ms of each (#14)."""
    context = MigrationContext.configure(dialect_name="postgresql", opts={
        "as_sql": True, "output_buffer": io.StringIO(), "literal_binds": True})
    return context, Operations(context)
