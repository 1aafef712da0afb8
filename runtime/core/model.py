"""The values the registry deals in: migrations, tools and packages (frozen dataclasses)."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, TypeAlias

from runtime.core.names import CORE_PACKAGE
from runtime.errors import Problem, ValidationError, shown

if TYPE_CHECKING:
    from packaging.version import Version
    from sqlalchemy import MetaData, Table
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.core.versions import Dependency

__all__ = [
    "MIGRATION_ID",
    "UNREGISTERED_MIGRATION",
    "Migration",
    "MigrationUp",
    "Package",
    "Tool",
    "dependency_graph",
    "migration_problems",
    "migration_sort_key",
]

#: What a migration runs: SQL text, several SQL texts, or `async def up(conn)`.
MigrationUp: TypeAlias = "str | Sequence[str] | Callable[[AsyncConnection], Awaitable[None]]"

#: Migration ids start with a number so they sort: `0001_create_notes`. Anchored at `\Z`,
#: not `$` (which matches before a trailing newline), so `.match` checks the whole id.
MIGRATION_ID = re.compile(r"^(?P<number>\d+)(?:[_-][A-Za-z0-9_.-]+)?\Z")


def migration_sort_key(migration_id: str) -> tuple[int, str]:
    """Sort ids by their number first, so `10_x` comes after `9_y`."""
    match = MIGRATION_ID.match(migration_id)
    return (int(match["number"]) if match else -1, migration_id)


#: What the problems of a Migration's arguments are filed under: it belongs to no
#: package until one registers it (the loader adds the file and line of the call).
UNREGISTERED_MIGRATION = "runtime.Migration"


def _is_up(up: object) -> bool:
    if isinstance(up, str) or callable(up):
        return True
    return (isinstance(up, Sequence) and not isinstance(up, bytes | bytearray)
            and all(isinstance(s, str) for s in up))


def _argument_problems(migration: Migration) -> list[Problem]:
    """Check the types of a Migration's arguments; its rules wait for its package (Y11x)."""
    migration_id = migration.id if isinstance(migration.id, str) else None
    of = f" of migration {migration_id!r}" if migration_id is not None else ""

    def problem(code: str, message: str, hint: str) -> Problem:
        return Problem(UNREGISTERED_MIGRATION, code, message, hint, migration=migration_id)

    found = []
    if migration_id is None:
        found.append(problem("Y110", f"id is {shown(migration.id)}, not a string",
                             "give it an id like '0001_create_notes'"))
    if not _is_up(migration.up):
        found.append(problem("Y112", f"up{of} is {shown(migration.up)}, not SQL or a function",
                             "give it SQL text, a list of SQL texts or an async up(conn) "
                             "function"))
    if not isinstance(migration.transactional, bool):
        found.append(problem("Y114", f"transactional{of} is {shown(migration.transactional)}",
                             "set it to True or False"))
    for name, hint in (("source", "give the file it comes from, or leave it out"),
                       ("text", "give the text of the file up is defined in, or leave it out")):
        value = getattr(migration, name)
        if value is not None and not isinstance(value, str):
            found.append(problem("Y114", f"{name}{of} is {shown(value)}, not a string", hint))
    return found


def _checksum_of(up: object, text: str | None) -> str:
    if text is not None:
        content = text
    elif isinstance(up, str):
        content = up.strip()
    elif isinstance(up, Sequence):
        content = "\n;\n".join(str(s).strip() for s in up)
    elif callable(up):
        # The source, not the code object: a reformatted body is an edit the user made
        # on purpose, and the source survives across interpreter versions.
        try:
            content = inspect.getsource(up)
        except (OSError, TypeError):
            content = getattr(up, "__qualname__", repr(up))
    else:
        content = repr(up)
    return hashlib.sha256(content.encode()).hexdigest()


@dataclass(frozen=True)
class Migration:
    """One step of a package's schema history.

    Args:
        id: unique within the package and sortable: it starts with a number (`0002_add_pinned`).
        up: SQL text, a list of SQL texts (each run on its own), or an async callable
            taking an `AsyncConnection`.
        transactional: False for statements PostgreSQL refuses inside a transaction
            (`CREATE INDEX CONCURRENTLY`); such a migration runs alone, after the ones
            before it are committed.
        source: the file it came from, for error messages.
        text: the whole text of that file, when `up` is a function defined in it: the
            checksum then covers the file (a helper or constant beside `up` is part of
            the migration), not only `up`'s own source.

    Raises:
        ValidationError: an argument has the wrong type (an id that is not a string, an
            `up` that is neither SQL nor a callable); its problems are filed under
            `runtime.Migration`. The rules on the values (Y110, Y112) are checked when a
            package registers it.
    """

    id: str
    up: MigrationUp
    transactional: bool = True
    source: str | None = None
    text: str | None = field(default=None, repr=False, compare=False)
    checksum: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        problems = _argument_problems(self)
        if problems:
            raise ValidationError(problems)
        object.__setattr__(self, "checksum", _checksum_of(self.up, self.text))

    @property
    def statements(self) -> tuple[str, ...] | None:
        """The SQL texts of a SQL migration, or None for a callable one."""
        if isinstance(self.up, str):
            return (self.up,)
        if isinstance(self.up, Sequence):
            return tuple(str(s) for s in self.up)
        return None

    @property
    def short_checksum(self) -> str:
        """The first 12 hex digits of the checksum, as shown to people."""
        return self.checksum[:12]


def _migration_id_problem(migration_id: str) -> tuple[str, str]:
    """Say what is wrong with an id `MIGRATION_ID` refuses, and the id to rename it to."""
    number = re.match(r"\d+", migration_id)
    if number is None:
        return (f"migration id {migration_id!r} does not start with a number",
                f"rename it like '0001_{migration_id}' so ids sort")
    # It starts with a number but goes on with something else ("7x", "0001 notes", or a
    # trailing newline that `$` used to let through).
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", migration_id[number.end():]).strip("_")
    better = f"{number[0]}_{name}" if name else number[0]
    return (f"migration id {migration_id!r} must be a number, optionally followed by '_' "
            "or '-' and letters, digits, '_', '.' or '-'", f"rename it '{better}'")


def migration_problems(package: str, migrations: Sequence[object]) -> list[Problem]:
    """Check a package's migrations once it registers them: ids (Y110, Y111), SQL (Y112)."""
    found: list[Problem] = []
    seen: set[str] = set()
    for migration in migrations:
        if not isinstance(migration, Migration):
            found.append(Problem(package, "Y112", f"migration {shown(migration)} is not a "
                                 "Migration", "wrap it: Migration('0001_name', up=...)"))
            continue

        def problem(code: str, message: str, hint: str, m: Migration = migration) -> Problem:
            return Problem(package, code, message, hint, migration=m.id)

        if not MIGRATION_ID.fullmatch(migration.id):
            found.append(problem("Y110", *_migration_id_problem(migration.id)))
        if migration.id in seen:
            found.append(problem("Y111", f"migration id '{migration.id}' is used twice",
                                 "give each migration its own id"))
        seen.add(migration.id)
        # A Migration checked the type of `up` when it was made: SQL text, SQL texts or
        # a callable (whose statements are None, and which has none to check).
        statements = migration.statements
        if statements is not None and not (statements and all(s.strip() for s in statements)):
            found.append(problem("Y112", f"migration '{migration.id}' has empty SQL",
                                 "give it SQL text or an async up(conn) function"))
    return found


@dataclass(frozen=True)
class Tool:
    """A workspace tool a package provides, upserted into `ydtb_tools`."""

    id: str
    name: str
    description: str = ""
    icon: str = ""


@dataclass(frozen=True, eq=False)
class Package:
    """A registered package: its schema, ordered migrations and dependencies.

    Built by `DatabaseRegistry.register_database`; `migrations` are sorted by id and
    `fingerprint` hashes what the database must reflect: a structural description of its
    declared tables (`runtime.core.fingerprint.describe`: whatever their DDL depends on,
    without compiling it), its tools and its row-level security flag. The core package's
    is the hash of its DDL. A new fingerprint is a schema edit to the dev daemon.
    """

    name: str
    version: Version
    schema: MetaData
    migrations: tuple[Migration, ...]
    dependencies: tuple[Dependency, ...]
    tables: tuple[Table, ...]
    fingerprint: str
    tools: tuple[Tool, ...] = ()
    row_level_security: bool = False
    source: str | None = None

    # Cached: validation reads these for every package on every check (181,000 calls
    # in a full check at N = 300, scripts/bench); a frozen package never changes them.
    @cached_property
    def dependency_names(self) -> tuple[str, ...]:
        """The names of the packages this one depends on."""
        return tuple(d.name for d in self.dependencies)

    @cached_property
    def version_text(self) -> str:
        """The version as written in the ledger (`str(version)`, which is not cheap)."""
        return str(self.version)

    @cached_property
    def table_names(self) -> tuple[str, ...]:
        """The names of the tables this package owns."""
        return tuple(t.name for t in self.tables)

    @cached_property
    def table_keys(self) -> dict[str, str]:
        """A hash of each table's structural description (`fingerprint.describe`, what
        the package's fingerprint is made of), by name: a schema edit changes the keys
        of the tables it changes, and only theirs."""
        # Here, not at the top: a package answered from the load cache is planned and
        # migrated without SQLAlchemy (#17). Validation fills it as it describes them.
        from runtime.core import ddl, fingerprint

        return {t.name: ddl.fingerprint(fingerprint.describe([t])) for t in self.tables}

    @cached_property
    def object_names(self) -> frozenset[str]:
        """The names of the indexes and constraints its tables declare (named ones)."""
        names: list[object] = [i.name for table in self.tables for i in table.indexes]
        names += [c.name for table in self.tables for c in table.constraints]
        return frozenset(str(name) for name in names if name)

    @cached_property
    def type_names(self) -> tuple[str, ...]:
        """The names of the enum types its tables' columns declare, which it owns too."""
        # Here, not at the top: a package answered from the load cache is planned and
        # migrated without SQLAlchemy (#17).
        from sqlalchemy import Enum

        return tuple(dict.fromkeys(
            column.type.name for table in self.tables for column in table.columns
            if isinstance(column.type, Enum) and column.type.native_enum
            and column.type.name))

    def migration(self, migration_id: str) -> Migration:
        """Return the migration with this id.

        Raises:
            KeyError: no such migration.
        """
        for migration in self.migrations:
            if migration.id == migration_id:
                return migration
        raise KeyError(migration_id)

    def same_definition(self, other: Package) -> bool:
        """Tell whether `other` defines the same package (re-registering it changes nothing)."""
        return (
            self.name == other.name
            and self.version == other.version
            and self.fingerprint == other.fingerprint
            and self.dependencies == other.dependencies
            and [(m.id, m.checksum, m.transactional) for m in self.migrations]
            == [(m.id, m.checksum, m.transactional) for m in other.migrations]
            and self.tools == other.tools
            and self.row_level_security == other.row_level_security
            # Its file: a package directory renamed registers it from its new place.
            and self.source == other.source
        )


def dependency_graph(packages: Iterable[Package]) -> dict[str, tuple[str, ...]]:
    """Map each package to the packages it depends on, the core included.

    Every package depends on the core, declared or not: its tables come first.
    """
    return {p.name: p.dependency_names if p.name == CORE_PACKAGE
            or CORE_PACKAGE in p.dependency_names else (*p.dependency_names, CORE_PACKAGE)
            for p in packages}
