"""The load cache: what unchanged package sources registered, without importing them.

Loading imports every package, and SQLAlchemy with them: seconds at N = 300 packages,
for a `migrate` that then finds nothing to do (scripts/bench). So after each good load
the CLI stores the set's `Manifest` beside the state of everything the load read, and
the next `migrate` or `check` uses the manifest while that state holds. The lint's
findings, which only `check` computes, are carried over from the manifest replaced, for
each package whose migrations did not change.

The state, like make's or ruff's, is each file's size and modification time:

- every file of every package directory that counts (`runtime.load.packages`: a new,
  edited or deleted file), and which directories hold a `package.py`; the same for the
  source directories of editable installs the load found (`loader.editable`). What each
  directory held is kept with its time too, so the next scan lists only the directories
  whose time changed (`_Lister`); the files are all stated each time;
- every module file the loading process had imported outside the standard library
  (SQLAlchemy, helpers the packages import, this runtime's own code);
- with entry points, what of each `sys.path` directory decides what Python imports and
  which distributions are installed: the names of its modules and packages, and its
  distributions' metadata (`.dist-info`, `.egg-info`, `.pth`) with their times. Its own
  time is only a shortcut: it changes with any new entry, and the first run creating
  `.runtime/` in the project directory (on `sys.path` under `python -m`) must not
  look like an install (#17).

A file written within `_RACY_NS` of the scan may change again within the same clock
tick without its time changing (git's "racy" entries), so its content hash is kept and
checked too. What a package reads from the environment is not seen: `--no-cache`.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeGuard, cast

from runtime.core.manifest import Manifest
from runtime.load import packages

__all__ = ["Changes", "Listings", "Sources", "cache_file", "changes", "listings", "lookup",
           "scan", "store"]

_FORMAT = 10  # 9: the directories' listings; 10: tables' parts kept as text (facts)
_RACY_NS = 2_000_000_000
_KEPT = 32  # cache files: one per set of package directories loaded, the newest kept
_STDLIB = os.path.dirname(os.__file__)

# path -> [size, mtime_ns] or [size, mtime_ns, sha256 of the content]
Stats = dict[str, list[Any]]


# directory -> [mtime_ns, follow, file names, directory names] (`packages.listing`)
Listings = dict[str, list[Any]]


@dataclass(frozen=True)
class Sources:
    """The package files as scanned before a load, and when.

    `listings`: what each directory the scan listed held, for the next scan (`scan`).
    `directories`: the package directories found under the roots, in order (one gone
    while it was listed too).
    """

    files: Stats
    scanned_ns: int
    listings: Listings = field(default_factory=dict)
    directories: tuple[str, ...] = ()


def cache_file(
    data_dir: Path, directories: Sequence[Path], entry_points: bool, *,
    require_rls: bool = False,
) -> Path:
    """Where the cache of loading `directories` (and entry points, or not) is kept; a
    policy that changes what is valid (`require_rls`, Y135) has its own."""
    key = json.dumps([_FORMAT, sys.version, sys.executable, entry_points,
                      [str(d) for d in directories], require_rls])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return data_dir / "cache" / f"load-{digest}.json"


class _Lister:
    """Lists directories for a scan: a directory whose time is what it was when an
    earlier scan listed it holds the same names (creating, deleting or renaming an entry
    sets its directory's time), so it is not read again, only stated (#17: at N = 1000,
    listing the 2,000 directories was 15 ms of a no-op `migrate`'s 35 ms scan).

    A listing is kept for later scans only if its directory's time is older than
    `_RACY_NS` before this scan began: an entry added within the same clock tick as
    the change the time records would leave the time as it was (git's racy entries).
    """

    def __init__(self, known: Listings, started_ns: int) -> None:
        self.known = known
        self.trusted_before = started_ns - _RACY_NS
        self.listings: Listings = {}
        self._seen: dict[tuple[str, bool], packages.Listing] = {}

    def __call__(self, directory: str, follow: bool) -> packages.Listing:
        key = (directory, follow)
        seen = self._seen.get(key)
        if seen is not None:
            return seen
        mtime = os.stat(directory).st_mtime_ns
        kept = self.known.get(directory)
        if _kept(kept, mtime, follow):
            found: packages.Listing = (kept[2], kept[3])
        else:
            found = packages.listing(directory, follow)
        self._seen[key] = found
        if mtime < self.trusted_before:
            self.listings[directory] = [mtime, follow, found[0], found[1]]
        return found


def _kept(kept: Any, mtime: int, follow: bool) -> TypeGuard[list[Any]]:
    """Tell whether `kept` is a listing of a directory of time `mtime` (read as `follow`
    says); anything else (another time, or a cache file damaged) is listed again."""
    if not (type(kept) is list and len(kept) == 4 and kept[0] == mtime
            and kept[1] is follow and type(kept[2]) is list and type(kept[3]) is list):
        return False
    try:  # names all strings: joined in C, 30x faster than a check of each (#17)
        "".join(kept[2])
        "".join(kept[3])
    except TypeError:
        return False
    return True


def scan(
    directories: Iterable[Path], installed: Iterable[Path] = (), known: Listings | None = None,
) -> Sources:
    """Stat every file that counts of every package directory under `directories`, and
    of the `installed` package directories.

    Args:
        known: the listings of an earlier scan (`Sources.listings`, kept by `store`):
            a directory unchanged since is not listed again.
    """
    started = time.time_ns()
    lister = _Lister(known or {}, started)
    files: Stats = {}
    found_directories = []
    for root in directories:
        if not root.is_dir():
            files[str(root)] = []  # absent: appearing later changes the state
            continue
        for path, found in packages.tree(str(root), lister):
            found_directories.append(path)
            if found is None:
                files[path] = []  # gone while listed: the load says what is there
            else:
                _stat_files(path, files, lister)
    for directory in installed:
        if directory.is_dir():
            _stat_files(str(directory), files, lister)
        else:
            files[str(directory)] = []
    return Sources(files, started, lister.listings, tuple(found_directories))


def _stat_files(directory: str, files: Stats, lister: _Lister) -> None:
    try:
        paths = list(packages.files(directory, lister))
    except OSError:  # removed since listed: the load says what is there
        files[directory] = []
        return
    stat = os.stat
    for path in paths:
        try:
            found = stat(path)
        except OSError:  # a dangling link, or removed since listed: the load says which
            files[path] = []
            continue
        files[path] = [found.st_size, found.st_mtime_ns]


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _with_racy_hashes(files: Stats, scanned_ns: int) -> Stats:
    return {path: [*stat, _digest(path)] if stat and stat[1] >= scanned_ns - _RACY_NS else stat
            for path, stat in files.items()}


def _same(stored: Stats, current: Stats) -> bool:
    if stored == current:
        return True  # compared in C; no hash kept (most runs): 4,000 files in 0.2 ms
    if stored.keys() != current.keys():
        return False
    for path, stat in stored.items():
        if stat[:2] != current[path][:2]:
            return False
        if len(stat) > 2 and stat[2] != _digest(path):
            return False
    return True


def _stat_all(paths: Iterable[str]) -> Stats:
    files: Stats = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            files[path] = []
            continue
        files[path] = [stat.st_size, stat.st_mtime_ns]
    return files


def _module_files() -> list[str]:
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and not path.startswith(_STDLIB) and os.path.isfile(path):
            found.add(path)
    return sorted(found)


def _path_dirs() -> list[str]:
    return sorted({os.path.abspath(p or ".") for p in sys.path if os.path.isdir(p or ".")})


_IMPORTABLE = tuple(importlib.machinery.all_suffixes())
_DISTRIBUTION = (".dist-info", ".egg-info", ".egg-link", ".egg", ".pth")


def _listing(directory: str) -> str | None:
    """Digest what of `directory` can change an import or the installed distributions.

    A name that is no module (`.runtime`, `notes.txt`, an editor's `.x.swp`) does not
    count; a distribution's metadata counts with its time, which a reinstall changes.
    """
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(_DISTRIBUTION):
                    found.append(f"{name}\0{entry.stat().st_mtime_ns}")
                elif name.partition(".")[0].isidentifier() and (
                        entry.is_dir() or name.endswith(_IMPORTABLE)):
                    found.append(name)
    except OSError:
        return None
    return hashlib.sha256("\n".join(sorted(found)).encode()).hexdigest()


def _stat_path(directories: Iterable[str]) -> Stats:
    # path -> [mtime_ns, digest of its listing]
    return {d: [stat[1], _listing(d)] if stat else []
            for d, stat in _stat_all(directories).items()}


def _same_path(stored: Stats, listed_ns: int) -> bool:
    current = _stat_all(stored)
    for directory, kept in stored.items():
        now = current[directory]
        if not kept or not now:
            if bool(kept) != bool(now):
                return False
        elif kept[0] == now[1] and kept[0] < listed_ns - _RACY_NS:
            continue  # untouched since it was listed
        elif kept[1] != _listing(directory):
            return False
    return True


def store(
    path: Path,
    manifest: Manifest,
    sources: Sources,
    *,
    entry_points: bool,
    installed: Iterable[Path] = (),
) -> None:
    """Keep `manifest` as what the scanned `sources` register, in `path` (atomically).

    Args:
        installed: the editable installs' directories the load found; their files are
            scanned now, and nothing is kept if one changed since `sources` were.
    """
    old = _read(path)
    if manifest.lints is None:
        manifest = manifest.with_lints_of(_manifest(old) or Manifest(()))
    kept = sorted(str(d) for d in installed)
    scanned = scan((), map(Path, kept))
    files = scanned.files
    if any(stat and stat[1] > sources.scanned_ns for stat in files.values()):
        return  # saved while loading: which version was read is unknown
    # A load that imported only the changed packages did not import what the others
    # import: what the last load imported is kept while it is unchanged (checked only
    # for what this process did not import: stated already, #17).
    imported = _stat_all(_module_files())
    modules = {**_unchanged({path: stat for path, stat in old.get("modules", {}).items()
                             if path not in imported}), **imported}
    # Made before the sys.path directories are listed: the data directory may be in one.
    path.parent.mkdir(parents=True, exist_ok=True)
    listed_ns = time.time_ns()
    stamp = os.urandom(16).hex()  # uuid's module: 5 ms of every no-op `migrate`
    data = {
        "format": _FORMAT,
        "installed": kept,
        "packages": _with_racy_hashes({**sources.files, **files}, sources.scanned_ns),
        "listings": {**sources.listings, **scanned.listings},
        "modules": _with_racy_hashes(modules, sources.scanned_ns),
        "path": _stat_path(_path_dirs()) if entry_points else {},
        "listed_ns": listed_ns,
        "manifest": manifest.to_json(facts=False),
        "stamp": stamp,
    }
    # The facts, three quarters of the whole, in a file of their own: a no-op run does
    # not read them. The stamp ties them to the manifest they describe.
    _write_facts(_facts_file(path), stamp, manifest)
    _write(path, data)
    _prune(path.parent)


def _facts_file(path: Path) -> Path:
    return path.with_name(path.name.replace("load-", "facts-", 1))


def _encode(data: Any) -> str:
    # No check for cycles (plain data has none): it was 40 % of the facts' encoding,
    # written after every `migrate` of a new migration (#17).
    return json.dumps(data, separators=(",", ":"), check_circular=False)


def _write(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, _encode(data))


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)  # a reader sees the old file or the new one, never half


# The lines of the facts file `changes` read last, by the identity of the facts each
# holds (kept alive with it): id -> (facts, package name, line).
_lines: dict[int, tuple[Any, str, str]] = {}


def _write_facts(path: Path, stamp: str, manifest: Manifest) -> None:
    """Write the facts of `manifest`'s packages, a line each after a line of `stamp`.

    A package whose facts are those `changes` read has its line written back as read,
    not encoded again: a deploy of one package's migration changes one line, and the
    facts of 1,000 packages took 23 ms to encode (#17).
    """
    lines = [_encode({"stamp": stamp})]
    for entry in manifest.entries:
        kept = _lines.get(id(entry.facts))
        if kept is not None and kept[0] is entry.facts and kept[1] == entry.name:
            lines.append(kept[2])
        else:
            lines.append(_encode([entry.name, entry.facts]))
    _write_text(path, "\n".join(lines) + "\n")


def _read_facts(path: Path) -> tuple[str, dict[str, Any]]:
    """The stamp and the facts by package name of the facts file `path` (`_write_facts`).

    Raises:
        OSError, ValueError, KeyError, TypeError: no such file, or not in this form.
    """
    # JSON escapes every line break inside a string: a line is a package.
    header, *lines = path.read_text().rstrip("\n").split("\n")
    stamp = json.loads(header)["stamp"]
    rows = json.loads(f"[{','.join(lines)}]")  # one parse, not one a line
    facts: dict[str, Any] = {}
    _lines.clear()
    for (name, value), line in zip(rows, lines, strict=True):
        facts[str(name)] = value
        _lines[id(value)] = (value, str(name), line)
    return str(stamp), facts


def _prune(directory: Path) -> None:
    # Each set of directories has its own file (tests load hundreds of temporary ones).
    files = sorted(directory.glob("load-*.json"), key=lambda p: p.stat().st_mtime_ns)
    for old in files[:-_KEPT]:
        old.unlink(missing_ok=True)
        _facts_file(old).unlink(missing_ok=True)


# The cache file read last: its identity (path, inode, size, times), what it holds, and
# its manifest once read. A `migrate` of a new migration reads the file three times
# (`lookup`, `changes`, `store`: 4 ms each at N = 300, #17). A version kept by mistake
# would be an older cache, checked against the sources as any is: never a wrong answer.
_last: list[Any] = [None, {}, None]


def _read(path: Path) -> dict[str, Any]:
    """What the cache file `path` holds, if in this format; else nothing.

    Callers read it only: it is the copy kept for the next call.
    """
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
            if key == _last[0]:
                return cast(dict[str, Any], _last[1])
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    data = data if isinstance(data, dict) and data.get("format") == _FORMAT else {}
    _last[:] = [key, data, None]
    return data


def _manifest(data: dict[str, Any]) -> Manifest | None:
    """The manifest of `data` (`_read`), kept with it; None if it holds none."""
    if data is _last[1] and _last[2] is not None:
        return cast(Manifest, _last[2])
    try:
        manifest = Manifest.from_json(data["manifest"])
    except (ValueError, KeyError, TypeError):
        return None
    if data is _last[1]:
        _last[2] = manifest
    return manifest


def _unchanged(stored: Stats) -> Stats:
    current = _stat_all(stored)
    return {path: stat for path, stat in stored.items()
            if _same({path: stat}, {path: current[path]})}


def listings(path: Path) -> Listings:
    """What the cache file `path` keeps of the directories its load listed, for `scan`."""
    found = _read(path).get("listings")
    return found if isinstance(found, dict) else {}


def lookup(
    path: Path, directories: Iterable[Path], scanned: Sources | None = None
) -> Manifest | None:
    """Return the cached manifest if nothing it was loaded from changed since; else None.

    `scanned` is `scan(directories)` if the caller made it (`changes` takes it too).
    """
    data = _read(path)
    try:
        if not data:
            return None
        installed = [Path(d) for d in data["installed"]]
        known = listings(path)
        files = scan(directories, installed, known).files if scanned is None else {
            **scanned.files, **scan((), installed, known).files}
        if not _same(data["packages"], files):
            return None
        if not _same(data["modules"], _stat_all(data["modules"])):
            return None
        if not _same_path(data["path"], data["listed_ns"]):
            return None
        return _manifest(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from another version: load for real


@dataclass(frozen=True)
class Changes:
    """The cached set, and which of its package directories changed since (`changes`).

    Attributes:
        manifest: the set as last loaded, with each package's facts.
        directories: the package directories to load: new, or with a file added,
            edited or deleted.
        unchanged_directories: the package directories that did not change.
        edited: the files added, edited or deleted in each changed directory the cached
            set had (a new directory is not in it).
    """

    manifest: Manifest
    directories: tuple[Path, ...]
    unchanged_directories: tuple[str, ...]
    edited: Mapping[Path, frozenset[str]] = field(default_factory=dict)

    @cached_property
    def kept(self) -> frozenset[str]:
        """The sources (`package.py` files) of the unchanged package directories."""
        # Resolved when asked: a change of migration files only never asks (#17).
        return frozenset(str(Path(d).resolve() / packages.PACKAGE_FILE)
                         for d in self.unchanged_directories)

    def unchanged(self, source: str | None) -> bool:
        """Tell whether what `source` registered is as cached: a package directory that
        did not change, or an installed package (the module and `sys.path` state held)."""
        if source is None:
            return False
        return source in self.kept or not source.endswith(os.sep + packages.PACKAGE_FILE)


def _directory(path: str, prefixes: Sequence[str]) -> str | None:
    """The package directory `path` is in or is (a root's child); None if in none."""
    for prefix in prefixes:
        if path.startswith(prefix):
            end = path.find(os.sep, len(prefix))
            return path if end < 0 else path[:end]
    return None


def _holds(files: Stats, directory: str, edited: set[str]) -> bool:
    """Tell whether `files` (the cached state) has a file of `directory`: one it had
    and that changed, or else one that did not."""
    inside = directory + os.sep
    return any(f in files for f in edited) or any(
        f.startswith(inside) or f == directory for f in files)


def changes(
    path: Path, directories: Iterable[Path], scanned: Sources | None = None
) -> Changes | None:
    """Say which package directories changed since the cached load, if only they did.

    `scanned` is `scan(directories)` if the caller made it (a scan of 300 packages
    costs 30 ms).

    None when anything else the load read changed (a module it imported, a
    distribution installed or removed, a root appearing or going), when the load found
    editable installs (loaded as a whole), or when there is no cache: load them all.
    """
    roots = list(directories)
    data = _read(path)
    try:
        if not data or data["installed"] or not _same(data["modules"],
                                                      _stat_all(data["modules"])):
            return None
        if not _same_path(data["path"], data["listed_ns"]):
            return None
        current = scanned or scan(roots, (), listings(path))
        stored_files: Stats = data["packages"]
        if type(stored_files) is not dict:
            return None
        # Only the files that differ are placed in their package directory (#17: grouping
        # all 8,000 paths of both sides at N = 1000 was 5 ms of a one-migration deploy).
        prefixes = [f"{root}{os.sep}" for root in roots]
        edited_in: dict[str, set[str]] = {}
        for file in _differing(stored_files, current.files):
            directory = _directory(file, prefixes)
            if directory is None:
                return None  # a root appeared or went
            edited_in.setdefault(directory, set()).add(file)
        changed = sorted(d for d in current.directories if d in edited_in)
        edited = {Path(d): frozenset(edited_in[d]) for d in changed
                  if _holds(stored_files, d, edited_in[d])}
        kept = tuple(d for d in current.directories if d not in edited_in)
        stamp, facts = _read_facts(_facts_file(path))
        if stamp != data["stamp"]:
            return None  # written by another store than the manifest: which is unknown
        manifest = _manifest(data)
        if manifest is None:
            return None
        manifest = manifest.with_facts(facts)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Changes(manifest, tuple(map(Path, changed)), kept, edited)


def _differing(stored: Stats, current: Stats) -> list[str]:
    """The paths added, deleted or changed between `stored` and `current`."""
    if stored == current:
        return []
    found = [path for path in stored if path not in current]
    for path, stat in current.items():
        kept = stored.get(path)
        if kept != stat and (kept is None or not _same({path: kept}, {path: stat})):
            found.append(path)
    return found
