"""Reading a package's migrations from files: the one home of the rules (#17).

`runtime.kit.load_migrations` is how a package reads them; the load cache reads them
here too when only a package's SQL migration files changed since its last load, and
builds the package from the cache without importing its Python code
(`runtime.load.pipeline`). So both read a file alike, and neither imports SQLAlchemy.
"""

from __future__ import annotations

import inspect
import linecache
import os
import re
import traceback
from pathlib import Path
from typing import Any

from runtime.core.model import MIGRATION_ID, Migration, migration_sort_key
from runtime.errors import PackageLoadError

__all__ = ["SUFFIXES", "is_migration_file", "listed", "load_migrations", "read_sql"]

#: The suffixes of migration files: SQL, or Python defining `async def up(conn)`.
SUFFIXES = (".sql", ".py")
_NUMBERED = re.compile(r"^(?P<number>\d+)_")
# A SQL file opts out of the transaction with this comment line, the SQL-file spelling
# of a Python migration's `transactional = False`.
_NO_TRANSACTION = re.compile(r"^\s*--\s*runtime:\s*no-transaction\s*$", re.MULTILINE)


def is_migration_file(path: str | Path) -> bool:
    """Tell whether `load_migrations` reads the file `path` (by its name alone)."""
    name = os.path.basename(path)
    # `.SQL` too, to be refused by name (`listed`) rather than skipped without a word.
    return name.lower().endswith(SUFFIXES) and not name.startswith(("_", "."))


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
    files = listed(Path(directory))
    migrations = [read_sql(p) if p.suffix == ".sql" else _read_python(p) for p in files]
    return sorted(migrations, key=lambda m: migration_sort_key(m.id))


def listed(directory: Path) -> list[Path]:
    """List the migration files of `directory` that `load_migrations` reads, by name.

    Raises:
        PackageLoadError: as `load_migrations`, for the directory and the file names.
    """
    if not directory.is_dir():
        raise PackageLoadError(str(directory), "migrations directory does not exist; "
                               "create it, or fix the path given to load_migrations")
    # A link is listed whatever it points at (a dangling one, or one to itself, is
    # reported when read rather than skipped without a word), so only other entries
    # are asked whether they are files. Listed with os.scandir, whose entries know
    # their kind without a stat each: Path.iterdir and its stats were half of reading
    # the migrations of 300 packages (#17).
    with os.scandir(directory) as entries:
        names = sorted(e.name for e in entries
                       if is_migration_file(e.name) and (e.is_symlink() or e.is_file()))
    files = [directory / name for name in names]
    _check_names(files)
    return files


def _check_names(files: list[Path]) -> None:
    stems = [path.stem for path in files]
    numbers = [int(m["number"]) for stem in stems if (m := _NUMBERED.match(stem))]
    seen: dict[str, Path] = {}
    for path, stem in zip(files, stems, strict=True):
        if path.suffix not in SUFFIXES:
            raise PackageLoadError(str(path), "a migration file ends in .sql or .py, in lower "
                                   f"case; rename it to '{stem}{path.suffix.lower()}'")
        if not _NUMBERED.match(stem) or not MIGRATION_ID.match(stem):
            given = re.match(r"\d+", path.stem)
            number = given[0] if given else f"{max(numbers, default=0) + 1:04d}"
            words = re.sub(r"[^0-9A-Za-z]+", "_", path.stem[len(number) if given else 0:])
            better = f"{number}_{words.strip('_') or 'migration'}{path.suffix}"
            raise PackageLoadError(str(path), "a migration file name must be a number, an "
                                   "underscore and a name made of letters, digits and "
                                   f"underscores; rename it to '{better}'")
        if stem in seen:
            raise PackageLoadError(str(path), f"migration id '{stem}' is also used by "
                                   f"'{seen[stem].name}'; renumber one of them")
        seen[stem] = path


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


def read_sql(path: Path) -> Migration:
    """Read the SQL migration file `path` (see `load_migrations`).

    Raises:
        PackageLoadError: it is unreadable, not UTF-8, or holds a NUL character.
    """
    sql = _read_text(path)
    if "\0" in sql:  # the protocol ends a query string at a NUL: the server sees garbage
        line = sql.count("\n", 0, sql.index("\0")) + 1
        raise PackageLoadError(str(path), "holds a NUL character, which PostgreSQL does not "
                               "take in SQL; remove it", line=line)
    return Migration(path.stem, up=sql, source=str(path), transactional=_transactional(sql))


def _transactional(sql: str) -> bool:
    # The comment's words first: searching every line of every migration for it with
    # the pattern was a fifth of reading them (#17); without them it cannot match.
    return "no-transaction" not in sql or not _NO_TRANSACTION.search(sql)


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
