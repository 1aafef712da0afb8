"""Load packages: directories of `packages_dev/` and installed entry points.

A package directory holds `package.py` defining `register(registry)`; it may import its
siblings relatively (`from .schema import metadata`). Each load imports the directory
afresh under its own module name, compiled straight from source: a stale `.pyc`
(same size, same mtime second, as in quick successive saves) can never be picked up,
and no module state survives a reload.

An installed package whose code lives outside site-packages (an editable install,
`pip install -e`) is loaded the same way from its source directory, under its own
import name (so `from ydtb_notes.schema import ...` gets the fresh file too): the daemon
watches and reloads it like a `packages_dev` one, and `makemigration` writes into it.
Packages installed into site-packages are imported once, as Python imports them.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.machinery
import importlib.util
import itertools
import logging
import os
import re
import signal
import site
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runtime.core.model import UNREGISTERED_MIGRATION
from runtime.errors import PackageLoadError, Problem, RegistryError, ValidationError
from runtime.load.bytecode import Bytecode, compiled
from runtime.load.packages import PACKAGE_FILE, discover
from runtime.load.watchdog import watched

if TYPE_CHECKING:  # the registry is the caller's: a load answered from the cache makes none
    from runtime.core.registry import DatabaseRegistry

__all__ = [
    "ENTRY_POINT_GROUP",
    "Installed",
    "LoadResult",
    "Sources",
    "editable",
    "load_all",
    "load_directory",
    "load_entry_points",
    "load_installed",
]

ENTRY_POINT_GROUP = "runtime.packages"
_PREFIX = "_ydtb_dev_"
_generation = itertools.count(1)
_OUR_NAME = re.compile(rf"{_PREFIX}\w*?_\d+(?:\.(?P<rest>[\w.]+))?")


_log = logging.getLogger(__name__)
#: The bytecode store of the `load_all` running in this context, if it was given one.
_bytecode: contextvars.ContextVar[Bytecode | None] = contextvars.ContextVar(
    "runtime_bytecode", default=None)


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compile from source, never from `.pyc`: bytecode caches key on mtime seconds and size.

    The code is kept by content instead (`runtime.load.bytecode`), which cannot be stale.
    """

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        store = _bytecode.get()
        source = self.get_data(path)
        return compiled(path, source) if store is None else store.code(path, source)


#: Import names of installed packages being loaded from their directories right now.
_claimed: set[str] = set()


def _ours(fullname: str) -> bool:
    return fullname.startswith(_PREFIX) or any(fullname.startswith(f"{root}.")
                                               for root in _claimed)


class _Finder:
    """Find the modules of loaded package directories, with `_SourceLoader`.

    A meta path finder is anything with `find_spec`: `importlib.abc`'s base class
    imports `importlib.resources`, 4 ms of a `migrate` that imports no package (#17).
    """

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if "." not in fullname or not path or not _ours(fullname):
            return None
        leaf = fullname.rpartition(".")[2]
        # On os.path rather than Path objects, as `packages.tree`: pathlib was a
        # fifth of this finder's time in a load of 300 packages (#17).
        for entry in path:
            directory = os.path.join(entry, leaf)
            package_init = os.path.join(directory, "__init__.py")
            if os.path.isfile(package_init):
                return importlib.util.spec_from_file_location(
                    fullname, package_init, loader=_SourceLoader(fullname, package_init),
                    submodule_search_locations=[directory])
            module = os.path.join(entry, f"{leaf}.py")
            if os.path.isfile(module):
                return importlib.util.spec_from_file_location(
                    fullname, module, loader=_SourceLoader(fullname, module))
        return None


_FINDER = _Finder()


def _install_finder() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


# What package code may raise: any error, and the exits it should not call. A
# KeyboardInterrupt is the user's Ctrl-C only where Python's own SIGINT handler raises
# it: on the main thread (signals arrive there), unless an event loop handles SIGINT
# itself (the CLI's does: Ctrl-C cancels its command, never raising in a load). Raised
# anywhere else, it came from the package.
_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


def _interrupted(exc: BaseException) -> bool:
    main = threading.current_thread() is threading.main_thread()
    return isinstance(exc, KeyboardInterrupt) and main \
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _made_in_package_code(exc: RegistryError) -> bool:
    # A Migration(...) with wrong arguments fails where the package's code makes it, not
    # in the registry: its file and line are the useful part.
    problems = getattr(exc, "problems", ())
    return bool(problems) and all(p.package == UNREGISTERED_MIGRATION for p in problems)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the package called sys.exit({exc.code!r}); raise an exception instead"
    if isinstance(exc, KeyboardInterrupt):
        return "the package raised KeyboardInterrupt; raise another exception instead"
    text = f"{type(exc).__name__}: {getattr(exc, 'msg', None) or exc}"
    # The name a package is imported under is ours (a new one each load): an import
    # error names the module as the package's code does (`schema`, not `_ydtb_dev_x_3.schema`).
    return _OUR_NAME.sub(lambda m: m["rest"] or ".", text)


def _forget(prefix: str, before: set[str]) -> None:
    """Drop the modules named `prefix` or under it that were not in `before`."""
    # Only what the load added is looked at: a scan of all of sys.modules (some 2,000
    # names) for each package was 2% of loading N = 300 (#17).
    for name in [n for n in sys.modules.keys() - before
                 if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def _error_location(
    exc: BaseException, directory: Path, file: str
) -> tuple[str, int | None]:
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).is_relative_to(directory):
            return frame.filename, frame.lineno
    return file, None


def _import_package(directory: Path, root: str, module: str) -> ModuleType:
    """Import `directory` as the package `root` and return its module `module`."""
    _install_finder()
    init = directory / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            root, init, loader=_SourceLoader(root, str(init)),
            submodule_search_locations=[str(directory)])
    else:
        spec = importlib.machinery.ModuleSpec(root, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
    assert spec is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[root] = package
    if spec.loader is not None:
        spec.loader.exec_module(package)
    return package if module == root else importlib.import_module(module)


#: Which source registered each package: a package directory's `package.py`, or an
#: entry point. A package belongs to the source that registered it.
Sources = Mapping[str, str]


class _Recorder:
    """The registry as `register(registry)` sees it: it notes what the directory registers,
    and refuses a name another source registered (a copied directory keeps the name of
    the one it was copied from: it must not take that package over)."""

    def __init__(
        self, registry: DatabaseRegistry, source: str, taken: Sources, refused: set[str]
    ) -> None:
        self._registry = registry
        self._source = source
        self._taken = taken
        self._refused = refused
        self.names: list[str] = []

    def register_database(self, **kwargs: Any) -> Any:
        kwargs.setdefault("source", self._source)
        name = kwargs.get("package_name")
        other = self._taken.get(name) if isinstance(name, str) else None
        if other is not None and other != self._source:
            raise ValidationError([Problem(
                str(name), "Y209", f"registered by two sources, {other} and {self._source}",
                f"a package belongs to one directory; a copy keeps its original's name: give "
                f"{self._source} a package_name of its own, or remove one of them")])
        try:
            package = self._registry.register_database(**kwargs)
        except RegistryError:
            if isinstance(name, str):
                self._refused.add(name)
            raise
        self.names.append(package.name)
        return package

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


def load_directory(
    directory: Path,
    registry: DatabaseRegistry,
    *,
    taken: Sources | None = None,
    refused: set[str] | None = None,
) -> list[str]:
    """Import a package directory afresh and run its `register(registry)`.

    Args:
        directory: the package directory.
        registry: where its packages are registered.
        taken: the packages other sources registered, which this one may not (Y209).
        refused: where to note the names of packages the registry refused.

    Returns:
        The names of the packages it registered.

    Raises:
        PackageLoadError: the code could not be imported or has no `register`; the error
            names the file and line.
        ValidationError: a package it registered breaks a rule.
    """
    directory = directory.resolve()
    root = f"{_PREFIX}{re.sub(r'[^0-9A-Za-z_]', '_', directory.name)}_{next(_generation)}"
    recorder = _Recorder(registry, str(directory / PACKAGE_FILE), taken or {},
                         set() if refused is None else refused)
    before = set(sys.modules)
    try:
        _register(recorder, directory, root, f"{root}.package", "register")
    finally:
        # Objects the package defined keep its modules alive as long as they are used;
        # dropping them from sys.modules keeps every reload fresh and memory flat.
        _forget(root, before)
    return recorder.names


def _register(
    recorder: _Recorder, directory: Path, root: str, module: str, attr: str | None
) -> None:
    """Import `module` of `directory` (the package `root`) and call its register."""
    file = str(directory / PACKAGE_FILE)
    try:
        with watched(str(directory)):
            target = _import_package(directory, root, module)
            file = getattr(target, "__file__", None) or file
            register = getattr(target, attr or "register", None if attr else target)
            if not callable(register):
                raise PackageLoadError(file, f"defines no {attr or 'register'}(registry) "
                                       "function")
            register(recorder)
    except RegistryError as exc:
        if not _made_in_package_code(exc):
            raise
        path, line = _error_location(exc, directory, file)
        reason = "; ".join(str(p) for p in getattr(exc, "problems", ()))
        raise PackageLoadError(path, reason, line=line) from exc
    except _FAILURES as exc:
        if _interrupted(exc):
            raise
        path, line = _error_location(exc, directory, file)
        raise PackageLoadError(path, _reason(exc), line=line) from exc


@dataclass(frozen=True)
class Installed:
    """An installed package whose code lives outside site-packages (an editable install).

    It is loaded afresh from `directory`, the directory of the import package `package`
    that holds the entry point's `module`, like a package directory.
    """

    name: str  # the entry point's
    value: str  # the entry point's, `module:attr`
    directory: Path
    package: str
    module: str
    attr: str | None

    @property
    def source(self) -> str:
        return f"entry point {self.name} ({self.value})"


def _site_directories() -> list[Path]:
    import sysconfig  # only for installed packages: 1 ms of every `migrate` otherwise

    found = {*site.getsitepackages(), site.getusersitepackages(),
             sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(d).resolve() for d in found if d]


def _locate(module: str) -> tuple[str, Path] | None:
    """Find the import package holding `module` and its one directory, importing nothing.

    None when it is a top-level module or a namespace package: no directory is its own.
    """
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        package, found = parts[0], spec
        for index in range(1, len(parts)):
            locations = list(found.submodule_search_locations or []) if found else []
            if not locations:
                break
            found = importlib.machinery.PathFinder.find_spec(".".join(parts[:index + 1]),
                                                             locations)
            if found is not None and found.submodule_search_locations is not None:
                package, spec = found.name, found
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or spec.submodule_search_locations is None:
        return None
    locations = list(spec.submodule_search_locations)
    return (package, Path(locations[0]).resolve()) if len(locations) == 1 else None


def editable(group: str = ENTRY_POINT_GROUP) -> list[Installed]:
    """List the entry points of `group` whose package lives outside site-packages.

    One per directory: a second entry point into the same directory is imported once,
    as an installed package.
    """
    sites = _site_directories()
    found: dict[Path, Installed] = {}
    import importlib.metadata  # 30 ms: only a load with entry points reads them

    for entry_point in importlib.metadata.entry_points(group=group):
        located = _locate(entry_point.module)
        if located is None:
            continue
        package, directory = located
        if directory in found or any(directory.is_relative_to(s) for s in sites):
            continue
        found[directory] = Installed(entry_point.name, entry_point.value, directory, package,
                                     entry_point.module, entry_point.attr)
    return list(found.values())


def load_installed(
    installed: Installed,
    registry: DatabaseRegistry,
    *,
    taken: Sources | None = None,
    refused: set[str] | None = None,
) -> list[str]:
    """Import an editable-installed package afresh from its directory and register it.

    It is imported under its own name, so its absolute imports of itself get the fresh
    files too; the modules of that name loaded before are put back afterwards. Its
    packages' source is the file of the entry point's module (`makemigration` writes
    into the `migrations/` beside it). Arguments and errors as for `load_directory`.
    """
    if not installed.directory.is_dir():
        raise PackageLoadError(
            str(installed.directory),
            f"the source directory of the editable install {installed.source} is gone",
            hint="put it back, or uninstall its distribution with pip uninstall")
    root = installed.package
    kept = {n: sys.modules.pop(n) for n in [n for n in sys.modules
                                            if n == root or n.startswith(f"{root}.")]}
    file = _module_file(installed)
    recorder = _Recorder(registry, file, taken or {}, set() if refused is None else refused)
    _claimed.add(root)
    before = set(sys.modules)
    try:
        _register(recorder, installed.directory, root, installed.module, installed.attr)
    finally:
        _claimed.discard(root)
        _forget(root, before)
        sys.modules.update(kept)
        parent, _, leaf = root.rpartition(".")
        if parent in sys.modules and root in kept:
            setattr(sys.modules[parent], leaf, kept[root])
    return recorder.names


def _module_file(installed: Installed) -> str:
    leaf = installed.module[len(installed.package):].lstrip(".").replace(".", "/")
    if not leaf:
        return str(installed.directory / "__init__.py")
    as_package = installed.directory / leaf / "__init__.py"
    return str(as_package if as_package.is_file() else installed.directory / f"{leaf}.py")


def load_entry_points(
    registry: DatabaseRegistry,
    group: str = ENTRY_POINT_GROUP,
    *,
    taken: Sources | None = None,
    refused: set[str] | None = None,
    skip: Iterable[str] = (),
) -> list[str]:
    """Register the installed packages advertised in the entry-point `group`.

    Each entry point names a `register(registry)` callable, or a module defining one;
    `taken` and `refused` as for `load_directory`; `skip` names entry points loaded
    otherwise (`load_installed`).
    """
    names: list[str] = []
    skipped = set(skip)
    import importlib.metadata  # 30 ms: only a load with entry points reads them

    for entry_point in importlib.metadata.entry_points(group=group):
        if entry_point.name in skipped:
            continue
        source = f"entry point {entry_point.name} ({entry_point.value})"
        try:
            with watched(source):
                target = entry_point.load()
                register = getattr(target, "register", target)
                recorder = _Recorder(registry, source, taken or {},
                                     set() if refused is None else refused)
                register(recorder)
        except RegistryError:
            raise
        except _FAILURES as exc:
            if _interrupted(exc):
                raise
            raise PackageLoadError(source, _reason(exc)) from exc
        names.extend(recorder.names)
    return names


@dataclass
class LoadResult:
    """What `load_all` registered, and the errors it met, by source.

    A source is a package directory's path (an editable install's too), or
    `ENTRY_POINT_GROUP` for the other installed packages.
    """

    packages: dict[str, list[str]] = field(default_factory=dict)
    installed: dict[Path, Installed] = field(default_factory=dict)  # editable, by directory
    failed: dict[str, RegistryError] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # packages the registry refused

    def explained(self, problems: Iterable[Problem]) -> list[Problem]:
        """Leave out the set's problems that the load errors already explain.

        A package the registry refused (say, for closing a dependency cycle) is reported
        with its own error; its dependents' "not registered" (Y201) would be untrue.
        """
        return [p for p in problems if not (p.code == "Y201" and p.dependency in self.refused)]

    @property
    def errors(self) -> list[RegistryError]:
        """The errors met, in the order the sources were loaded."""
        return list(self.failed.values())


def load_all(
    directories: Iterable[Path],
    registry: DatabaseRegistry,
    *,
    entry_points: bool = True,
    each: Callable[[list[str]], None] | None = None,
    bytecode: Path | None = None,
) -> LoadResult:
    """Load every package directory and entry point, collecting errors instead of stopping.

    Args:
        each: called with the names each directory (and the entry points) registered,
            as soon as they are (`runtime.load.pipeline` applies them meanwhile).
        bytecode: a file to read the packages' compiled code from and keep it in
            (`runtime.load.bytecode.bytecode_file`); None compiles every file.
    """
    store = None if bytecode is None else Bytecode(bytecode)
    token = _bytecode.set(store)
    try:
        result = _load_all(directories, registry, entry_points=entry_points, each=each)
    finally:
        _bytecode.reset(token)
    if store is not None:
        try:
            store.save()
        except OSError as exc:  # a read-only checkout still loads, only slower
            _log.info("compiled package code not kept in %s: %s", bytecode, exc)
    return result


def _load_all(
    directories: Iterable[Path],
    registry: DatabaseRegistry,
    *,
    entry_points: bool,
    each: Callable[[list[str]], None] | None,
) -> LoadResult:
    result = LoadResult()
    taken: dict[str, str] = {}
    found = discover(directories)
    sources: list[tuple[str, Callable[[], list[str]]]] = [
        (str(directory), functools.partial(load_directory, directory, registry, taken=taken,
                                           refused=result.refused))
        for directory in found]
    if entry_points:
        # An editable install of a directory of `directories` is that package, once.
        known = {directory.resolve() for directory in found}
        editables = editable()
        result.installed = {i.directory: i for i in editables if i.directory not in known}
        sources.extend((str(directory), functools.partial(
            load_installed, installed, registry, taken=taken, refused=result.refused))
            for directory, installed in result.installed.items())
        sources.append((ENTRY_POINT_GROUP, functools.partial(
            load_entry_points, registry, taken=taken, refused=result.refused,
            skip=[i.name for i in editables])))
    for source, load in sources:
        try:
            result.packages[source] = names = load()
        except RegistryError as exc:
            result.failed[source] = exc
            continue
        taken.update((name, registry.get(name).source or source) for name in names)
        if each is not None:
            each(names)
    return result
