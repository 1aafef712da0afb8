"""What a package directory is, and which of its files count. The one home of both rules.

A package directory is a child of a packages root (`packages_dev/`) holding
`package.py`. Every file under it counts (its Python and SQL, and any data file it
reads at import) except what editors, version control and Python leave beside the
sources: hidden names (`.git`, `.#notes.py`, `.schema.py.swp`), `__pycache__`,
bytecode, backups ending in `~`, and the like. The loader, the load cache, the watcher,
the daemon and `makemigration` all ask here, so a file the cache counts is a file the
daemon reloads on, and the reverse.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "PACKAGE_FILE",
    "any_package",
    "counts",
    "directory_of",
    "discover",
    "discover_paths",
    "files",
    "is_package",
    "migrations_directory",
]

#: The file that makes a directory a package: it defines `register(registry)`.
PACKAGE_FILE = "package.py"

_IGNORED_NAMES = frozenset({"__pycache__", "node_modules"})
# Editors' and tools' leftovers, as watchfiles' DefaultFilter lists them.
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".pyd", "~", ".swp", ".swx", ".tmp")
_IGNORED_PREFIXES = (".", "flycheck_")


def _ignored(name: str) -> bool:
    return (name in _IGNORED_NAMES or name.startswith(_IGNORED_PREFIXES)
            or name.endswith(_IGNORED_SUFFIXES) or ".___jb_" in name)


def counts(path: str | Path, root: str | Path | None = None) -> bool:
    """Tell whether a change to `path` can change a package.

    Args:
        path: a file or directory.
        root: where to start reading `path`'s parts (a packages root): the parts above
            it are not judged, so a checkout under a hidden directory still works.
    """
    relative = Path(path)
    if root is not None and relative.is_relative_to(root):
        relative = relative.relative_to(root)
    return not any(_ignored(part) for part in relative.parts)


def is_package(directory: Path) -> bool:
    """Tell whether `directory` is a package directory: it holds `package.py`."""
    return (directory / PACKAGE_FILE).is_file() and not _ignored(directory.name)


def discover(roots: Iterable[Path]) -> list[Path]:
    """List the package directories under `roots` (each root's children), sorted per root."""
    return [root / name for root in roots for name in _package_names(root, ordered=True)]


def discover_paths(roots: Iterable[Path]) -> list[str]:
    """`discover`, as strings: the load cache's scan of 1,000 packages made a `Path` of
    each only to turn it back into a string (#17)."""
    return [os.path.join(root, name) for root in roots
            for name in _package_names(root, ordered=True)]


def any_package(roots: Iterable[Path]) -> bool:
    """Tell whether there is a package directory under `roots`, looking no further than
    the first: the CLI asks before every command, which then lists them all (#17)."""
    return any(True for root in roots for _ in _package_names(root, ordered=False))


def _package_names(root: Path, *, ordered: bool) -> Iterator[str]:
    # On names and os.path rather than Path objects: a no-op `migrate` lists every
    # package first, and at N = 1000 pathlib was half the time of that listing.
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries if not _ignored(e.name) and e.is_dir()]
    except (NotADirectoryError, FileNotFoundError):
        return
    for name in sorted(names) if ordered else names:
        if os.path.isfile(os.path.join(root, name, PACKAGE_FILE)):
            yield name


def directory_of(path: Path, roots: Iterable[Path]) -> Path | None:
    """Return the package directory `path` is in or is (the root's child), if any.

    The directory need not exist any more: a deleted package is reported by its path.
    """
    for root in roots:
        if path.is_relative_to(root) and path != root:
            return root / path.relative_to(root).parts[0]
    return None


def files(directory: str | Path) -> Iterator[os.DirEntry[str]]:
    """Yield every file of a package directory that counts, at any depth."""
    # A stack of directories, not a generator for each: a no-op `migrate` walks every
    # package directory, and at N = 1000 the nested generators were a third of it (#17).
    pending = [os.fspath(directory)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if _ignored(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    yield entry


def migrations_directory(source: str | None) -> Path | None:
    """Return the `migrations/` directory beside the file that registered a package, if any.

    Args:
        source: where the package was registered from (`Package.source`): a package
            directory's `package.py`, or an editable install's module; packages installed
            into site-packages or registered in code have no file, so no directory to
            write to.
    """
    if source is None or not source.endswith(".py") or not Path(source).is_file():
        return None
    directory = Path(source).parent / "migrations"
    return directory if directory.is_dir() else None
