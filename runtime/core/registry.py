"""The registry packages register their database schemas with.

It holds validated packages only: a registration that breaks a rule raises and leaves
the registry as it was. Dependencies may register after their dependents (a loader
meets packages in any order), so "missing" problems wait for `ordered()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from sqlalchemy import MetaData

from runtime.core import ddl, graph, signals, validation
from runtime.core.model import Migration, Package, Tool
from runtime.core.schema import CORE_PACKAGE, CORE_VERSION, core_metadata
from runtime.core.versions import parse_version
from runtime.errors import DependentsExistError, PackageNotFoundError, Problem, ValidationError

__all__ = ["DatabaseRegistry", "core_package"]

# Problems of a new registration that a later registration can fix (its dependency
# is simply not there yet); they are reported by ordered() instead.
_DEFERRED = frozenset({"Y201", "Y206"})


def core_package() -> Package:
    """Build the `@ydtb/core` package: the core tables, with the ledger."""
    statements = ddl.create_statements(core_metadata.sorted_tables)
    return Package(
        name=CORE_PACKAGE,
        version=parse_version(CORE_VERSION),
        schema=core_metadata,
        migrations=(Migration("0001_core_tables", up=statements),),
        dependencies=(),
        tables=tuple(core_metadata.sorted_tables),
        fingerprint=ddl.fingerprint(statements),
    )


_CORE = core_package()


def _with_core(name: str, dependencies: tuple[str, ...]) -> tuple[str, ...]:
    if name == CORE_PACKAGE or CORE_PACKAGE in dependencies:
        return dependencies
    return (*dependencies, CORE_PACKAGE)


class DatabaseRegistry:
    """The set of registered packages, always valid on its own.

    `runtime.registry` is the process-wide one; make another for tests and tools. The
    core package `@ydtb/core` is always registered.

    Args:
        send_signals: False for scratch copies whose changes nobody should hear about.
    """

    def __init__(self, *, send_signals: bool = True) -> None:
        self._packages: dict[str, Package] = {CORE_PACKAGE: _CORE}
        self._send_signals = send_signals
        self._lock = threading.RLock()
        self._ordered: list[Package] | None = None

    # -- reading -------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._packages

    def __iter__(self) -> Iterator[Package]:
        return iter(list(self._packages.values()))

    def __len__(self) -> int:
        return len(self._packages)

    @property
    def packages(self) -> Mapping[str, Package]:
        """A read-only view of the registered packages by name."""
        return MappingProxyType(self._packages)

    def get(self, name: str) -> Package:
        """Return the package registered as `name`.

        Raises:
            PackageNotFoundError: it is not registered.
        """
        try:
            return self._packages[name]
        except KeyError:
            raise PackageNotFoundError(name, tuple(sorted(self._packages))) from None

    def copy(self) -> DatabaseRegistry:
        """Return an independent registry with the same packages that sends no signals.

        The dev daemon loads a changed package into a copy and adopts it only once the
        database accepted its migrations.
        """
        clone = DatabaseRegistry(send_signals=False)
        clone._packages = dict(self._packages)
        return clone

    def problems(self) -> list[Problem]:
        """Check the whole set: missing dependencies, versions, cycles, ownership, keys."""
        return validation.check_set(self._packages)

    def ordered(self) -> list[Package]:
        """Resolve the whole set and return it in dependency order, dependencies first.

        Raises:
            ValidationError: listing every problem of the set.
        """
        with self._lock:
            if self._ordered is None:
                problems = self.problems()
                if problems:
                    raise ValidationError(problems)
                names = graph.dependency_order(self._graph())
                self._ordered = [self._packages[name] for name in names]
            return list(self._ordered)

    def closure(self, *names: str) -> list[str]:
        """Return `names` and every package depending on them, in dependency order.

        That is what must be re-validated, and migrated, when they change.
        """
        full = self._graph()
        members = set(names)
        for name in names:
            self.get(name)
            members |= graph.dependents(full, name)
        sub = {n: [d for d in full[n] if d in members] for n in members}
        return graph.dependency_order(sub)

    def dependents(self, name: str) -> list[str]:
        """Return the packages that depend on `name` directly, sorted."""
        return sorted(n for n, p in self._packages.items() if name in p.dependency_names)

    # -- changing ------------------------------------------------------------------

    def register_database(
        self,
        *,
        package_name: str,
        schema: MetaData,
        version: str,
        migrations: Iterable[Migration] | None = None,
        dependencies: Iterable[str] = (),
        tools: Iterable[Tool] = (),
        row_level_security: bool = False,
        source: str | None = None,
    ) -> Package:
        """Validate a package and register it, replacing any earlier definition.

        Args:
            package_name: `name` or `@scope/name`.
            schema: the package's tables, as a `sqlalchemy.MetaData`.
            version: the package version (PEP 440, e.g. `1.0.0`).
            migrations: ordered by id; without any, one is derived from the schema.
            dependencies: package names, each optionally with a version specifier.
            tools: workspace tools the package provides.
            row_level_security: restrict rows to the session's workspace in PostgreSQL.
            source: where the definition came from, for error messages.

        Raises:
            ValidationError: the package breaks a rule, or replacing the old definition
                would break the set (a cycle, a dependent); nothing changed.
        """
        package, problems = validation.build_package(
            package_name=package_name, schema=schema, migrations=migrations,
            dependencies=dependencies, version=version, tools=tools,
            row_level_security=row_level_security, source=source,
        )
        if package is None:
            raise ValidationError(problems)
        return self.register(package)

    def register(self, package: Package) -> Package:
        """Register an already built package (see `register_database`)."""
        with self._lock:
            if package.name == CORE_PACKAGE:
                raise ValidationError([Problem(package.name, "Y124", "the core package is "
                                               "built in", "choose another package name")])
            old = self._packages.get(package.name)
            if old is not None and old.same_definition(package):
                return old
            after = dict(self._packages)
            after[package.name] = package
            new = self._new_problems(after, package.name)
            if new:
                raise ValidationError(new)
            self._commit(after)
        if self._send_signals:
            signals.emit(signals.package_registered, self, package=package.name,
                         version=str(package.version), replaced=old is not None)
        return package

    def unregister(self, name: str) -> Package:
        """Remove a package.

        Raises:
            PackageNotFoundError: it is not registered.
            DependentsExistError: other packages depend on it; they are named.
        """
        with self._lock:
            package = self.get(name)
            if name == CORE_PACKAGE:
                raise ValidationError([Problem(name, "Y124", "the core package is built in "
                                               "and cannot be unregistered")])
            dependents = tuple(self.dependents(name))
            if dependents:
                raise DependentsExistError(name, dependents)
            after = dict(self._packages)
            del after[name]
            self._commit(after)
        if self._send_signals:
            signals.emit(signals.package_unregistered, self, package=name)
        return package

    def _graph(self, packages: Mapping[str, Package] | None = None) -> dict[str, tuple[str, ...]]:
        packages = self._packages if packages is None else packages
        # Every package depends on the core, declared or not: its tables come first.
        return {name: _with_core(name, p.dependency_names) for name, p in packages.items()}

    def _new_problems(self, after: Mapping[str, Package], name: str) -> list[Problem]:
        affected = {name} | graph.dependents(self._graph(after), name)
        before = set(validation.check_set(self._packages, affected & set(self._packages)))
        found = validation.check_set(after, affected)
        return [p for p in found
                if p not in before and not (p.package == name and p.code in _DEFERRED)]

    def _commit(self, packages: dict[str, Package]) -> None:
        self._packages = packages
        self._ordered = None
