"""Helpers for package authors: workspace-scoped tables and migrations read from files.

A package typically looks like this::

    # schema.py
    metadata = kit.metadata()
    notes = kit.workspace_table("ydtb_notes", metadata, Column("id", BigInteger, primary_key=True))

    # package.py
    def register(registry):
        registry.register_database(
            package_name="@ydtb/notes", version="1.0.0", schema=metadata,
            migrations=kit.load_migrations(HERE / "migrations"),
        )
"""

from __future__ import annotations

import inspect
import linecache
import os
import re
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from runtime.core.model import MIGRATION_ID, Migration, migration_sort_key
from runtime.core.schema import WORKSPACES_TABLE
from runtime.errors import PackageLoadError

__all__ = [
    "NAMING_CONVENTION",
    "WorkspaceScoped",
    "load_migrations",
    "metadata",
    "workspace_column",
    "workspace_key",
    "workspace_primary_key",
    "workspace_reference",
    "workspace_table",
]

#: Constraint and index names derived from their table and columns, so the same schema
#: always gets the same names: migrations can refer to them and schema diffs stay quiet.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_WORKSPACE_ID_LENGTH = 20  # the length of ydtb_workspaces.id
_MIGRATION_SUFFIXES = (".sql", ".py")
_NUMBERED = re.compile(r"^(?P<number>\d+)_")
# A SQL file opts out of the transaction with this comment line, the SQL-file spelling
# of a Python migration's `transactional = False`.
_NO_TRANSACTION = re.compile(r"^\s*--\s*runtime:\s*no-transaction\s*$", re.MULTILINE)


def metadata() -> MetaData:
    """Return a new `MetaData` that names constraints and indexes by `NAMING_CONVENTION`.

    `Column("title", Text, index=True)` on `ydtb_notes` gets the index
    `ix_ydtb_notes_title`, its primary key `pk_ydtb_notes`, and a foreign key from
    `workspace_id` the name `fk_ydtb_notes_workspace_id_ydtb_workspaces`.
    """
    return MetaData(naming_convention=NAMING_CONVENTION)


def workspace_column() -> Column[str]:
    """Return a new `workspace_id` column: non-null, indexed, deleted with its workspace."""
    return Column(
        "workspace_id",
        String(_WORKSPACE_ID_LENGTH),
        ForeignKey(f"{WORKSPACES_TABLE}.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def workspace_table(
    name: str, metadata: MetaData, *columns_and_constraints: Any, **table_kwargs: Any
) -> Table:
    """Define a table whose rows belong to a workspace.

    The `workspace_id` column comes first, then the author's columns and constraints;
    the author still declares the primary key.

    Args:
        name: the table name, prefixed `ydtb_`.
        metadata: the package's `MetaData` (see `metadata()`).
        *columns_and_constraints: as for `sqlalchemy.Table`.
        **table_kwargs: as for `sqlalchemy.Table`.

    Returns:
        The table, added to `metadata`.
    """
    return Table(name, metadata, workspace_column(), *columns_and_constraints, **table_kwargs)


def workspace_key(*columns: str) -> UniqueConstraint:
    """Return the unique key `(workspace_id, id)` that workspace references point at.

    Put it in a table other tables reference (`workspace_reference`); `columns` are the
    table's own key, `id` by default.
    """
    return UniqueConstraint("workspace_id", *(columns or ("id",)))


def workspace_primary_key(*columns: str) -> PrimaryKeyConstraint:
    """Return the primary key `(workspace_id, id)`: the one Citus can distribute.

    A table distributed by `workspace_id` has a primary key that includes it (rule Y701,
    `check --citus`); `columns` are the table's own key, `id` by default. Declare the
    columns without `primary_key=True`. Other tables may reference it as they would a
    `workspace_key()`.
    """
    return PrimaryKeyConstraint("workspace_id", *(columns or ("id",)))


def workspace_reference(
    column: str, target: str, *, to: str = "id", ondelete: str | None = None,
    **kwargs: Any,
) -> ForeignKeyConstraint:
    """Return a key from `(workspace_id, column)` to `(workspace_id, to)` of `target`.

    PostgreSQL itself then refuses a row that points at a row of another workspace (rule
    Y210). The target declares `workspace_key()`. `ondelete="SET NULL"` (or
    `SET DEFAULT`) acts on `column` alone, keeping `workspace_id` (PostgreSQL 15+);
    Citus refuses either on a key holding `workspace_id` (Y705, `check --citus`).

    Example::

        workspace_table("ydtb_tasks", metadata, Column("id", BigInteger, primary_key=True),
                        Column("note_id", BigInteger),
                        workspace_reference("note_id", "ydtb_notes", ondelete="SET NULL"))
    """
    if ondelete is not None and ondelete.upper() in ("SET NULL", "SET DEFAULT"):
        ondelete = f"{ondelete.upper()} ({column})"
    return ForeignKeyConstraint(["workspace_id", column],
                                [f"{target}.workspace_id", f"{target}.{to}"],
                                ondelete=ondelete, **kwargs)


class WorkspaceScoped:
    """Declarative mixin adding the `workspace_id` column of `workspace_table`.

    Example::

        class Note(WorkspaceScoped, Base):
            __tablename__ = "ydtb_notes"
            id: Mapped[int] = mapped_column(primary_key=True)
    """

    # A declared_attr, not a plain attribute: each mapped class needs its own column
    # and its own ForeignKey object.
    @declared_attr
    def workspace_id(cls) -> Mapped[str]:
        return mapped_column(
            String(_WORKSPACE_ID_LENGTH),
            ForeignKey(f"{WORKSPACES_TABLE}.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )


def load_migrations(directory: str | Path) -> list[Migration]:
    """Read the migrations of a package from `directory`, sorted by id.

    Each file is one migration whose id is its stem (`0002_add_pinned`):

    - `NNNN_name.sql`: SQL text, run as one script; a line `-- runtime: no-transaction`
      runs it outside a transaction (for `CREATE INDEX CONCURRENTLY`);
    - `NNNN_name.py`: defines `async def up(conn)` taking an SQLAlchemy `AsyncConnection`,
      and `transactional = False` if it must run outside a transaction.

    Python files are compiled from their source on every call, never from a bytecode
    cache and never kept in `sys.modules`, so an edit is always seen. Files whose name
    starts with `_` or `.` (`__init__.py`, editor backups) and files of other kinds
    (`README.md`, `__pycache__/`) are ignored.

    Raises:
        PackageLoadError: the directory is missing, a file is not named `NNNN_name`, two
            files share an id, or a Python file fails to import or defines no `up`; the
            error names the file and, when known, the line.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise PackageLoadError(str(directory), "migrations directory does not exist; "
                               "create it, or fix the path given to load_migrations")
    # A dangling link is listed too, to be reported rather than skipped without a word.
    files = sorted(p for p in directory.iterdir()
                   if p.suffix in _MIGRATION_SUFFIXES and (p.is_file() or p.is_symlink())
                   and not p.name.startswith(("_", ".")))
    _check_names(files)
    migrations = [_read_sql(p) if p.suffix == ".sql" else _read_python(p) for p in files]
    return sorted(migrations, key=lambda m: migration_sort_key(m.id))


def _check_names(files: list[Path]) -> None:
    numbers = [int(m["number"]) for p in files if (m := _NUMBERED.match(p.stem))]
    seen: dict[str, Path] = {}
    for path in files:
        if not _NUMBERED.match(path.stem) or not MIGRATION_ID.match(path.stem):
            given = re.match(r"\d+", path.stem)
            number = given[0] if given else f"{max(numbers, default=0) + 1:04d}"
            words = re.sub(r"[^0-9A-Za-z]+", "_", path.stem[len(number) if given else 0:])
            better = f"{number}_{words.strip('_') or 'migration'}{path.suffix}"
            raise PackageLoadError(str(path), "a migration file name must be a number, an "
                                   "underscore and a name made of letters, digits and "
                                   f"underscores; rename it to '{better}'")
        if path.stem in seen:
            raise PackageLoadError(str(path), f"migration id '{path.stem}' is also used by "
                                   f"'{seen[path.stem].name}'; renumber one of them")
        seen[path.stem] = path


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        if path.is_symlink() and not path.exists():
            raise PackageLoadError(str(path), f"links to {os.readlink(path)}, which does not "
                                   "exist; fix the link or remove it") from None
        raise PackageLoadError(str(path), f"unreadable: {exc.strerror or exc}; fix its "
                               "permissions or remove it") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PackageLoadError(str(path), f"not UTF-8 text (byte {exc.start + 1}); save it "
                               "as UTF-8", line=line) from None


def _read_sql(path: Path) -> Migration:
    sql = _read_text(path)
    if "\0" in sql:  # the protocol ends a query string at a NUL: the server sees garbage
        line = sql.count("\n", 0, sql.index("\0")) + 1
        raise PackageLoadError(str(path), "holds a NUL character, which PostgreSQL does not "
                               "take in SQL; remove it", line=line)
    return Migration(path.stem, up=sql, source=str(path),
                     transactional=not _NO_TRANSACTION.search(sql))


def _read_python(path: Path) -> Migration:
    filename = str(path)
    source = _read_text(path)
    # Migration checksums a callable by inspect.getsource, which reads through linecache;
    # code exec'd from a string has no module for it to find, so register the very text
    # we compile. mtime None keeps linecache.checkcache from swapping in a newer file.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"__name__": f"_ydtb_migration_{path.stem}", "__file__": filename}
    try:
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    except SyntaxError as exc:
        raise PackageLoadError(filename, f"SyntaxError: {exc.msg}", line=exc.lineno) from exc
    except Exception as exc:
        line = next((frame.lineno for frame in reversed(traceback.extract_tb(exc.__traceback__))
                     if frame.filename == filename), None)
        raise PackageLoadError(filename, f"{type(exc).__name__}: {exc}", line=line) from exc
    up = namespace.get("up")
    if up is None:
        raise PackageLoadError(filename, "defines no up function; a Python migration "
                               "defines `async def up(conn)`")
    if not inspect.iscoroutinefunction(up):
        raise PackageLoadError(filename, "up is not a coroutine function; declare it "
                               "`async def up(conn)`", line=_first_line(up))
    transactional = namespace.get("transactional", True)
    if not isinstance(transactional, bool):
        raise PackageLoadError(filename, f"transactional is {transactional!r}; set it to "
                               "True or False")
    return Migration(path.stem, up=up, transactional=transactional, source=filename,
                     text=source)


def _first_line(obj: object) -> int | None:
    code = getattr(obj, "__code__", None)
    return code.co_firstlineno if code is not None else None
