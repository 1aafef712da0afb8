"""The pytest plugin for package authors, registered through the `pytest11` entry point.

With ydtb-runtime installed, a package's own tests get a migrated database and a check
of the package, with no set-up::

    async def test_notes_start_empty(runtime_engine):      # a fresh database, migrated
        async with runtime_engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM ydtb_notes"))).scalar() == 0

    def test_the_package_is_sound(assert_package_ok):
        assert_package_ok("@acme/notes")                    # or its directory

Fixtures:

- `runtime_packages`: the package directories under test (session);
- `runtime_server_url`: the PostgreSQL server test databases are made on (session);
- `runtime_registry`: a new `DatabaseRegistry` with those packages, validated as a set;
- `runtime_database_url`: a database made for the test, migrated, dropped after it;
- `runtime_engine`: an `AsyncEngine` on it;
- `assert_package_ok(name_or_directory)`: fails listing every problem of a package
  (loading, validation, and migrations that cannot run twice; see `package_report`);
- `assert_workspaces_isolated(name)`: fails unless, through an ordinary role, no read,
  update, delete or insert crosses from one workspace into another in the package's
  tables (`runtime.db.proof`; it holds with `row_level_security=True`).

Which packages: `--runtime-packages DIR` (repeatable), else the ini option
`runtime_packages`, else `packages_dev` under the rootdir if there is one; or override
the `runtime_packages` fixture. The installed packages (the `runtime.packages` entry
points) are loaded too, as `migrate` loads them: a package's own repository, installed
with `pip install -e .`, needs no setting at all. `--runtime-no-entry-points` (or the
ini option `runtime_entry_points = false`) leaves them out. Which server:
`DATABASE_URL`, else an embedded PostgreSQL started the first time a test needs one and
stopped at the end of the session. Nothing starts unless one of these fixtures is used.

The fixtures are synchronous, so they work under any async test runner: their database
work runs in its own event loop on a worker thread, and `runtime_engine` keeps no
connection between uses (a `NullPool`), so it serves whichever loop the test runs in.
An `async def` test that uses them needs no async plugin: unless pytest-asyncio, anyio
or trio runs it (its marker, or `asyncio_mode = auto`), this plugin runs it in an event
loop of its own. Other async tests need a runner, as usual.
"""

from __future__ import annotations

import functools
import inspect
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from runtime.config import resolve_settings
from runtime.core import graph
from runtime.core.model import Package, dependency_graph
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_PACKAGE
from runtime.db import checks, migrator, proof
from runtime.db.engine import create_database, create_engine, drop_database
from runtime.db.server import EmbeddedServer
from runtime.db.urls import to_async_url
from runtime.errors import ProblemsError, RegistryError
from runtime.load import loader

__all__ = ["package_report", "pytest_addoption", "pytest_pyfunc_call"]

_INI = "runtime_packages"
_INI_ENTRY_POINTS = "runtime_entry_points"
_DEFAULT_DIRECTORY = "packages_dev"
_T = TypeVar("_T")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--runtime-packages DIR` and the ini option `runtime_packages`."""
    group = parser.getgroup("ydtb-runtime", "ydtb runtime packages")
    group.addoption("--runtime-packages", action="append", metavar="DIR", default=None,
                    help="a directory of packages to load for the runtime_* fixtures "
                         f"(repeatable; default: the ini option {_INI}, else "
                         f"{_DEFAULT_DIRECTORY})")
    group.addoption("--runtime-no-entry-points", action="store_true", default=False,
                    help="leave out the installed packages (the 'runtime.packages' entry "
                         "points)")
    parser.addini(_INI, type="paths", default=[],
                  help="directories of packages to load for the runtime_* fixtures, "
                       "relative to the ini file")
    parser.addini(_INI_ENTRY_POINTS, type="bool", default=True,
                  help="load the installed packages (the 'runtime.packages' entry points) "
                       "too (default: true)")


def _run(function: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    # A worker thread with its own event loop: the calling thread may already run one
    # (an async test), and the fixtures must not depend on which runner the author uses.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime-testing") as pool:
        return pool.submit(anyio.run, function, *args).result()


def _load(
    directories: Sequence[Path], registry: DatabaseRegistry, *, entry_points: bool
) -> tuple[loader.LoadResult, list[str]]:
    """Load the packages of `directories` (and installed ones) into `registry`; return
    the result and what went wrong."""
    errors = [f"{d}: packages directory does not exist (pass --runtime-packages DIR, or set "
              f"{_INI} in the ini file)" for d in directories if not d.is_dir()]
    result = loader.load_all(directories, registry, entry_points=entry_points)
    return result, errors + [str(error) for error in result.errors]


def _entry_points(config: pytest.Config) -> bool:
    return not config.getoption("runtime_no_entry_points") and bool(
        config.getini(_INI_ENTRY_POINTS))


_RUNNERS = ("asyncio", "anyio", "trio")  # the markers of async test runners
_FIXTURES = ("runtime_", "assert_package_ok")


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an `async def` test using these fixtures that no async runner takes.

    The README's `async def test_notes(runtime_engine)` works as written, whether or not
    the author set up pytest-asyncio; a runner's marker (or its auto mode, which marks
    every async test) leaves the test to that runner.
    """
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    if any(pyfuncitem.get_closest_marker(runner) for runner in _RUNNERS):
        return None
    if not any(name.startswith(_FIXTURES) for name in pyfuncitem.fixturenames):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    anyio.run(functools.partial(function, **arguments))
    return True


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runtime_packages(pytestconfig: pytest.Config) -> list[Path]:
    """The directories whose packages are under test; override it to choose in code."""
    given: list[str] | None = pytestconfig.getoption("runtime_packages")
    if given:
        return [pytestconfig.invocation_params.dir / directory for directory in given]
    configured: list[Path] = pytestconfig.getini(_INI)
    default = pytestconfig.rootpath / _DEFAULT_DIRECTORY
    return configured or ([default] if default.is_dir() else [])


@pytest.fixture(scope="session")
def runtime_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server test databases are made on: `DATABASE_URL`, or an embedded server."""
    url = resolve_settings(environ=os.environ).database_url
    if url is not None:
        yield url
        return
    with EmbeddedServer(tmp_path_factory.mktemp("runtime-postgres")) as server:
        yield server.url


@pytest.fixture
def runtime_registry(
    runtime_packages: list[Path], pytestconfig: pytest.Config
) -> DatabaseRegistry:
    """A new registry holding the packages under test, validated as a set.

    It sends no signals; make a `DatabaseRegistry()` to test receivers. With
    `RUNTIME_REQUIRE_RLS` set, a package without row-level security is a problem (Y135).
    """
    policy = resolve_settings(environ=os.environ).require_rls
    registry = DatabaseRegistry(send_signals=False, require_row_level_security=policy)
    _, errors = _load(runtime_packages, registry, entry_points=_entry_points(pytestconfig))
    try:
        registry.ordered()
    except ProblemsError as exc:
        errors.append(str(exc))
    if len(registry) == 1 and not errors:
        errors.append(f"no packages found: no {_DEFAULT_DIRECTORY} directory under "
                      f"{pytestconfig.rootpath} and no installed package (entry point group "
                      f"{loader.ENTRY_POINT_GROUP}); install yours (pip install -e .), or "
                      "pass --runtime-packages DIR")
    if errors:
        pytest.fail("cannot load the packages under test:\n" + "\n".join(errors), pytrace=False)
    return registry


async def _create_and_migrate(server_url: str, name: str, packages: list[Package]) -> str:
    url = await create_database(server_url, name)
    engine = create_engine(url)
    try:
        await migrator.migrate(engine, packages)
    except BaseException:
        await engine.dispose()
        await drop_database(server_url, name)
        raise
    await engine.dispose()
    return url


@pytest.fixture
def runtime_database_url(
    runtime_server_url: str, runtime_registry: DatabaseRegistry
) -> Iterator[str]:
    """The URL of a database made for this test, migrated with `runtime_registry`."""
    name = f"runtime_test_{uuid.uuid4().hex[:12]}"
    try:
        url = _run(_create_and_migrate, runtime_server_url, name, runtime_registry.ordered())
    except RegistryError as exc:
        pytest.fail(f"cannot migrate the packages under test: {exc}", pytrace=False)
    try:
        yield url
    finally:
        _run(drop_database, runtime_server_url, name)


@pytest.fixture
def runtime_engine(runtime_database_url: str) -> AsyncEngine:
    """An async engine on `runtime_database_url`, usable from any event loop."""
    return create_async_engine(to_async_url(runtime_database_url), poolclass=NullPool)


@pytest.fixture
def assert_package_ok(
    runtime_packages: list[Path], runtime_server_url: str, pytestconfig: pytest.Config
) -> Callable[[str | os.PathLike[str]], None]:
    """`assert_package_ok(name_or_directory)`: fail listing every problem of a package.

    See `package_report` for what is checked.
    """

    def check(package: str | os.PathLike[str]) -> None:
        __tracebackhide__ = True
        problems = _run(functools.partial(
            package_report, runtime_server_url, runtime_packages, package,
            entry_points=_entry_points(pytestconfig)))
        if problems:
            noun = "problem" if len(problems) == 1 else "problems"
            raise AssertionError(f"{package}: {len(problems)} {noun}:\n"
                                 + "\n".join(f"  - {p}" for p in problems))

    return check


@pytest.fixture
def assert_workspaces_isolated(
    runtime_registry: DatabaseRegistry, runtime_server_url: str
) -> Callable[[str], None]:
    """`assert_workspaces_isolated(name)`: fail unless the package keeps workspaces apart.

    With a row of two workspaces in each of its tables, a role that is neither superuser
    nor `BYPASSRLS`, scoped to one workspace, may not read, update, delete, insert or
    move a row across to the other (`runtime.db.proof`). It holds for a package with
    `row_level_security=True`.
    """

    def check(name: str) -> None:
        __tracebackhide__ = True
        if name not in runtime_registry:
            raise AssertionError(f"{name}: not a package under test (registered: "
                                 f"{', '.join(p.name for p in runtime_registry)})")
        try:
            crossed = _run(proof.prove_isolation, runtime_server_url,
                           runtime_registry.ordered(), name)
        except ValueError as exc:  # a column no value can be made up for
            raise AssertionError(f"{name}: cannot prove isolation: {exc}") from None
        if crossed:
            raise AssertionError(f"{name}: workspaces are not isolated:\n"
                                 + "\n".join(f"  - {line}" for line in crossed))

    return check


# -- the check behind assert_package_ok ----------------------------------------------------


async def package_report(
    server_url: str,
    directories: Sequence[Path],
    package: str | os.PathLike[str],
    *,
    entry_points: bool = False,
) -> list[str]:
    """List every problem of one package, each a line; empty when it is sound.

    The packages of `directories` (and with `entry_points`, the installed ones) are
    loaded, then `package`: a registered name, or a package directory (loaded last, so
    it replaces a package of the same name, unless it was loaded already). Checked:
    loading every directory, the package's own rules and the set rules of the package
    with its dependencies (every `Y1xx` and `Y2xx` code), then, on a scratch database of
    `server_url`, that every migration of it and its dependencies runs twice and that
    they build its declared schema (`Y4xx`) and keep to workspace isolation (`Y5xx`).
    """
    registry = DatabaseRegistry(send_signals=False)
    result, errors = _load(directories, registry, entry_points=entry_points)
    wanted = Path(package).resolve()
    loaded = next((names for source, names in result.packages.items()
                   if source != loader.ENTRY_POINT_GROUP and Path(source).resolve() == wanted),
                  None)
    if isinstance(package, str) and package in registry:
        names = [package]
    elif loaded is not None:
        names = loaded
    elif Path(package).is_dir():
        try:
            names = loader.load_directory(Path(package), registry)
        except RegistryError as exc:
            return [*errors, str(exc)]
    else:
        known = ", ".join(p.name for p in registry if p.name != CORE_PACKAGE) or "none"
        return [*errors, f"{package}: not a registered package nor a package directory "
                f"(registered: {known})"]
    sub = DatabaseRegistry(send_signals=False)
    try:
        full = dependency_graph(registry)
        needed = set(names) | graph.reachable(full, names)
        for name in sorted(needed):
            if name != CORE_PACKAGE and name in registry:
                sub.register(registry.get(name))
        ordered = sub.ordered()
    except ProblemsError as exc:
        return [*errors, *(str(p) for p in exc.problems)]
    return [*errors, *(str(p) for p in await checks.check_migrations(server_url, ordered))]

