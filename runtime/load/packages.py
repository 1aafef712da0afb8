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
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "PACKAGE_FILE",
    "Lister",
    "Listing",
    "any_package",
    "counts",
    "directory_of",
    "discover",
    "files",
    "is_package",
    "listing",
    "migrations_directory",
    "tree",
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
    return [Path(directory) for root in roots
            for directory, found in tree(os.fspath(root)) if found is not None]


def any_package(roots: Iterable[Path]) -> bool:
    """Tell whether there is a package directory under `roots`, looking no further than
    the first: the CLI asks before every command, which then lists them all (#17)."""
    return any(found is not None for root in roots for _, found in tree(os.fspath(root)))


def directory_of(path: Path, roots: Iterable[Path]) -> Path | None:
    """Return the package directory `path` is in or is (the root's child), if any.

    The directory need not exist any more: a deleted package is reported by its path.
    """
    for root in roots:
        if path.is_relative_to(root) and path != root:
            return root / path.relative_to(root).parts[0]
    return None


#: What a directory holds that counts: the names of its files and of its directories.
Listing = tuple[Sequence[str], Sequence[str]]
#: Lists a directory (`listing`, or a cache of listings): the path, and whether a
#: link to a directory counts as a directory (a packages root) or as a file (inside a
#: package, as the loader and the watcher see it).
Lister = Callable[[str, bool], Listing]


def listing(directory: str, follow: bool = False) -> Listing:
    """The names in `directory` that count: (files, directories).

    Raises:
        OSError: `directory` cannot be listed (gone, or not a directory).
    """
    found: tuple[list[str], list[str]] = ([], [])
    with os.scandir(directory) as entries:
        for entry in entries:
            if not _ignored(entry.name):
                found[entry.is_dir(follow_symlinks=follow)].append(entry.name)
    return found


def files(directory: str | Path, listed: Lister = listing) -> Iterator[str]:
    """Yield the path of every file of a package directory that counts, at any depth.

    Raises:
        OSError: a directory of it cannot be listed.
    """
    # A stack of directories, not a generator for each: a no-op `migrate` walks every
    # package directory, and at N = 1000 the nested generators were a third of it (#17).
    pending = [os.fspath(directory)]
    while pending:
        current = pending.pop()
        names, directories = listed(current, False)
        # Names from a listing are never absolute: joined without os.path.join's checks.
        prefix = current + os.sep
        for name in names:
            yield prefix + name
        pending.extend(prefix + name for name in directories)


def tree(root: str, listed: Lister = listing) -> Iterator[tuple[str, Listing | None]]:
    """Yield each package directory under `root`, sorted, with its own listing (None if
    it went while listed): `discover`'s rule, on `listed`'s listings (the load cache's
    scan, which lists only the directories changed since it last did, #17)."""
    try:
        _, children = listed(root, True)
    except OSError:
        return
    for name in sorted(children):
        directory = os.path.join(root, name)
        try:
            found = listed(directory, False)
        except OSError:
            yield directory, None
            continue
        if PACKAGE_FILE in found[0]:
            yield directory, found


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
