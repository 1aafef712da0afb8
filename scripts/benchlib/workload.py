"""Seeded synthetic packages in the `packages_dev/` layout, for the benchmark.

Package `i` of N is `@bench/pNNN` in directory `pNNN/`: five workspace tables of 4 to 8
columns of varied types, one or two indexes each, keys inside the workspace (Y210) into
the tables of 0 to 3 earlier packages it depends on, and two migrations: `0001_create_tables` and
`0002_add_<column>` (a column and an index). `schema.py` declares the shape the
migrations produce, with the names of `runtime.kit.metadata()`'s naming convention, so
`verify` in `bench.py` can compare the two on a database.

Everything comes from one `random.Random(seed)`: the same N and seed give the same files.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Edit", "PackageSpec", "SchemaEdit", "Workload", "generate"]

TABLES_PER_PACKAGE = 5
MAX_DEPENDENCIES = 3


@dataclass(frozen=True)
class ColumnType:
    """A column type as SQL and as SQLAlchemy source, with a server default if it has one."""

    sql: str
    sa: str
    default_sql: str | None = None
    default_sa: str | None = None


TYPES = (
    ColumnType("text", "Text", "''", '""'),
    ColumnType("varchar(80)", "String(80)", "''", '""'),
    ColumnType("integer", "Integer", "0", 'text("0")'),
    ColumnType("bigint", "BigInteger", "0", 'text("0")'),
    ColumnType("boolean", "Boolean", "false", "false()"),
    ColumnType("timestamptz", "DateTime(timezone=True)", "now()", "func.now()"),
    ColumnType("numeric(12, 2)", "Numeric(12, 2)", "0", 'text("0")'),
    ColumnType("jsonb", "JSONB", "'{}'::jsonb", "text(\"'{}'::jsonb\")"),
    ColumnType("date", "Date"),
    ColumnType("double precision", "Float"),
    ColumnType("uuid", "Uuid"),
)
REFERENCE = ColumnType("bigint", "BigInteger")


@dataclass(frozen=True)
class ColumnSpec:
    """One column besides `id` and `workspace_id`; `references` names a table's `id`."""

    name: str
    type: ColumnType
    not_null: bool = False
    references: str | None = None

    def sql(self) -> str:
        """The column as it appears in CREATE TABLE and ADD COLUMN."""
        required = f" NOT NULL DEFAULT {self.type.default_sql}" if self.not_null else ""
        return f"{self.name} {self.type.sql}{required}"

    def sa(self) -> str:
        """The column as `schema.py` declares it."""
        args = [repr(self.name), self.type.sa]
        if self.not_null:
            args += ["nullable=False", f"server_default={self.type.default_sa}"]
        return f"Column({', '.join(args)})"

    def key_sa(self, table: str) -> str:
        """Its key inside the workspace (rule Y210), as `schema.py` declares it."""
        return (f"workspace_reference({self.name!r}, {self.references!r}, ondelete='SET NULL', "
                f"name={self.key_name(table)!r})")

    def key_name(self, table: str) -> str:
        return f"fk_{table}_{self.name}_{self.references}"


@dataclass(frozen=True)
class TableSpec:
    """A table in its final shape; `indexes` lists the column lists of the extra indexes."""

    name: str
    columns: tuple[ColumnSpec, ...]
    indexes: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class PackageSpec:
    """A package; migration 0002 adds `added` (the last column and index of `tables[0]`)."""

    number: int
    dependencies: tuple[str, ...]
    tables: tuple[TableSpec, ...]

    @property
    def name(self) -> str:
        return f"@bench/{self.directory}"

    @property
    def directory(self) -> str:
        return f"p{self.number:03d}"

    @property
    def added(self) -> ColumnSpec:
        return self.tables[0].columns[-1]

    def migrations(self) -> list[tuple[str, str]]:
        """`(id, SQL)` of the package's migrations, in order."""
        first, *rest = self.tables
        created = [_create_table(_without_added(first)), *map(_create_table, rest)]
        table, column = first.name, self.added
        added = (f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column.sql()};\n\n"
                 + _create_index(table, ("workspace_id", column.name)))
        return [("0001_create_tables", "\n".join(created)),
                (f"0002_add_{column.name}", added)]


@dataclass(frozen=True)
class Edit:
    """One new migration file, as the benchmark saves it into a package."""

    path: Path
    package: str
    migration: str
    sql: str
    figure = "reload"  # the bench's measurement key

    def save(self) -> None:
        self.path.write_text(self.sql)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def applied_in(self, changes: Iterable[Any]) -> bool:
        """Whether the `runtime.core.events.Change`s of a `reloaded` signal include it."""
        return any((c.package, c.migration) == (self.package, self.migration) for c in changes)


@dataclass(frozen=True)
class SchemaEdit:
    """A `schema.py` saved with one more declaration: a nullable column, or an index.

    `text` is the whole file with this and the package's earlier edits; `sql` is what
    the dev sync should run for it (the floor runs it), `name` the column or index.
    """

    path: Path
    package: str
    kind: str  # "column" or "index"
    name: str
    sql: str
    text: str
    original: str

    @property
    def figure(self) -> str:
        return f"reload-{self.kind}"

    @property
    def migration(self) -> str:
        """The ledger id the floor records it under."""
        return f"dev:bench-{self.name}"

    def save(self) -> None:
        self.path.write_text(self.text)

    def remove(self) -> None:
        self.path.write_text(self.original)

    def applied_in(self, changes: Iterable[Any]) -> bool:
        """Whether a dev change of the package applied this declaration."""
        return any(c.package == self.package and c.kind == "dev_sync"
                   and any(d.name == self.name for d in c.differences) for c in changes)


@dataclass(frozen=True)
class Workload:
    """N packages written under `root`, in dependency order."""

    root: Path
    packages: tuple[PackageSpec, ...]

    @property
    def size(self) -> int:
        return len(self.packages)

    @property
    def table_count(self) -> int:
        return sum(len(p.tables) for p in self.packages)

    @property
    def migration_count(self) -> int:
        return 2 * len(self.packages)

    def migrations(self) -> list[tuple[str, str, str]]:
        """`(package, id, SQL)` of every migration, dependencies first."""
        return [(p.name, mid, sql) for p in self.packages for mid, sql in p.migrations()]

    def leaves(self) -> list[PackageSpec]:
        """The packages nothing depends on, last first (the last one always is a leaf)."""
        needed = {d for p in self.packages for d in p.dependencies}
        return [p for p in reversed(self.packages) if p.name not in needed]

    def edit(self, package: PackageSpec, serial: int) -> Edit:
        """A new migration for `package` that leaves the declared schema as it is.

        A data migration (a DELETE matching no row): `schema.py` stays true without a
        second file to save, which would make each edit a burst of two, and the
        daemon's dev sync, which compares the package with the database after its
        migrations ran, finds nothing to change (a table comment, say, it would undo).
        """
        migration = f"{serial + 2:04d}_bench_edit_{serial}"
        sql = f"DELETE FROM {package.tables[0].name} WHERE id = -{serial};\n"
        path = self.root / package.directory / "migrations" / f"{migration}.sql"
        return Edit(path, package.name, migration, sql)

    def schema_edits(self, count: int) -> tuple[list[SchemaEdit], list[SchemaEdit]]:
        """`count` saves of `schema.py` adding a nullable column, then `count` adding an
        index on it, going round the leaf packages as `edit` does.

        Each save keeps the package's earlier additions (removing one would be a
        destructive difference, which the dev sync holds), so the saves must be made in
        order: the columns first.
        """
        leaves = self.leaves()
        extra: dict[str, list[str]] = {}
        columns: list[SchemaEdit] = []
        indexes: list[SchemaEdit] = []
        for kind, out in (("column", columns), ("index", indexes)):
            for serial in range(1, count + 1):
                package = leaves[(serial - 1) % len(leaves)]
                table = package.tables[0].name
                column = f"bench_{serial}"
                if kind == "column":
                    name, item = column, f"Column({column!r}, Text)"
                    sql = f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} text"
                else:
                    name = f"ix_{table}_bench_{serial}"
                    item = f"Index({name!r}, {column!r})"
                    sql = f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})"
                added = extra.setdefault(package.name, [])
                added.append(item)
                path = self.root / package.directory / "schema.py"
                out.append(SchemaEdit(path, package.name, kind, name, sql,
                                      _schema_py(package, added), _schema_py(package)))
        return columns, indexes


# -- generating -------------------------------------------------------------------------


def generate(root: Path, size: int, seed: int) -> Workload:
    """Generate `size` packages from `seed` and write them under `root`."""
    rng = random.Random(f"{seed}:{size}")
    root = root.resolve()  # watchfiles reports resolved paths
    packages: list[PackageSpec] = []
    for number in range(size):
        earlier = rng.sample(packages, rng.randint(0, min(MAX_DEPENDENCIES, len(packages))))
        packages.append(_package(rng, number, sorted(earlier, key=lambda p: p.number)))
    root.mkdir(parents=True, exist_ok=True)
    for package in packages:
        _write(root, package)
    return Workload(root, tuple(packages))


def _package(rng: random.Random, number: int, dependencies: list[PackageSpec]) -> PackageSpec:
    names = [f"ydtb_p{number:03d}_t{t}" for t in range(TABLES_PER_PACKAGE)]
    references: dict[str, list[ColumnSpec]] = {name: [] for name in names}
    for dep in dependencies:
        # Each dependency is used: one of our tables points at one of its tables.
        target = rng.choice(dep.tables).name
        references[rng.choice(names)].append(
            ColumnSpec(f"{dep.directory}_ref_id", REFERENCE, references=target))
    tables = [_table(rng, name, references[name]) for name in names]
    added = ColumnSpec("extra_at", TYPES[5], not_null=rng.random() < 0.5)
    first = tables[0]
    tables[0] = TableSpec(first.name, (*first.columns, added),
                          (*first.indexes, ("workspace_id", added.name)))
    return PackageSpec(number, tuple(d.name for d in dependencies), tuple(tables))


def _table(rng: random.Random, name: str, references: list[ColumnSpec]) -> TableSpec:
    # 4 to 8 columns in all: id and workspace_id, then 2 to 6 of varied types.
    count = rng.randint(2, 6)
    kinds = rng.sample(TYPES, count)
    columns = [ColumnSpec(f"c{i}_{k.sql.split('(')[0].split()[0]}", k,
                          not_null=k.default_sql is not None and rng.random() < 0.5)
               for i, k in enumerate(kinds)]
    # The workspace_id index comes with kit.workspace_table; half the tables get a second.
    indexes = [("workspace_id", rng.choice(columns).name)] if rng.random() < 0.5 else []
    return TableSpec(name, (*columns, *references), tuple(indexes))


def _without_added(table: TableSpec) -> TableSpec:
    return TableSpec(table.name, table.columns[:-1], table.indexes[:-1])


# -- rendering --------------------------------------------------------------------------


def _create_index(table: str, columns: tuple[str, ...]) -> str:
    name = f"ix_{table}_{'_'.join(columns)}"
    return f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)});\n"


def _create_table(table: TableSpec) -> str:
    name = table.name
    lines = [
        "workspace_id varchar(20) NOT NULL",
        "id bigint GENERATED BY DEFAULT AS IDENTITY",
        *(c.sql() for c in table.columns),
        f"CONSTRAINT pk_{name} PRIMARY KEY (id)",
        f"CONSTRAINT fk_{name}_workspace_id_ydtb_workspaces FOREIGN KEY (workspace_id) "
        "REFERENCES ydtb_workspaces (id) ON DELETE CASCADE",
        f"CONSTRAINT uq_{name}_workspace_id_id UNIQUE (workspace_id, id)",
        *(f"CONSTRAINT {c.key_name(name)} FOREIGN KEY (workspace_id, {c.name}) "
          f"REFERENCES {c.references} (workspace_id, id) ON DELETE SET NULL ({c.name})"
          for c in table.columns if c.references),
    ]
    body = ",\n    ".join(lines)
    indexes = [("workspace_id",), *table.indexes]
    return (f"CREATE TABLE IF NOT EXISTS {name} (\n    {body}\n);\n\n"
            + "".join(_create_index(name, columns) for columns in indexes))


_PACKAGE_PY = '''\
"""{name}: a synthetic package of the benchmark."""

from pathlib import Path

from runtime.kit import load_migrations

from .schema import metadata

HERE = Path(__file__).parent


def register(registry):
    registry.register_database(
        package_name={name!r},
        version="1.0.0",
        schema=metadata,
        migrations=load_migrations(HERE / "migrations"),
        dependencies={dependencies!r},
    )
'''

_SCHEMA_PY = '''\
"""The final shape of {name}'s tables; `migrations/` builds exactly this."""

from sqlalchemy import (
    BigInteger, Boolean, Column, Date, DateTime, Float, ForeignKey, Identity, Index,
    Integer, Numeric, String, Text, Uuid, false, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB

from runtime.kit import metadata as new_metadata
from runtime.kit import workspace_key, workspace_reference, workspace_table

metadata = new_metadata()
{tables}'''

_TABLE_PY = '''
workspace_table(
    {name!r},
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    {columns}
)
'''


def _schema_py(package: PackageSpec, extra: Iterable[str] = ()) -> str:
    """`schema.py` of `package`; `extra` are more items of its first table."""
    tables = []
    for number, table in enumerate(package.tables):
        items = [c.sa() for c in table.columns]
        items += list(extra) if number == 0 else []
        items += [c.key_sa(table.name) for c in table.columns if c.references]
        items += ["workspace_key()"]
        items += [f"Index(None, {', '.join(map(repr, cols))})" for cols in table.indexes]
        tables.append(_TABLE_PY.format(name=table.name, columns=",\n    ".join(items) + ","))
    return _SCHEMA_PY.format(name=package.name, tables="".join(tables))


def _write(root: Path, package: PackageSpec) -> None:
    directory = root / package.directory
    (directory / "migrations").mkdir(parents=True, exist_ok=True)
    dependencies = ["@ydtb/core>=1.0", *(f"{d}>=1.0" for d in package.dependencies)]
    (directory / "package.py").write_text(
        _PACKAGE_PY.format(name=package.name, dependencies=dependencies))
    (directory / "schema.py").write_text(_schema_py(package))
    for migration, sql in package.migrations():
        (directory / "migrations" / f"{migration}.sql").write_text(sql)
