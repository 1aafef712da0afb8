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
from runtime.core.model import Migration, Package, Tool, dependency_graph
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



class DatabaseRegistry:
    """The set of registered packages, always valid on its own.

    `runtime.registry` is the process-wide one; make another for tests and tools. The
    core package `@ydtb/core` is always registered.

    Args:
        send_signals: False for scratch copies whose changes nobody should hear about.
        check_set: False to check each registration's own rules only, leaving the rules
            across packages to whoever validates the whole change at the end (the dev
            daemon, loading several packages that change together).
    """

    def __init__(self, *, send_signals: bool = True, check_set: bool = True) -> None:
        self._packages: dict[str, Package] = {CORE_PACKAGE: _CORE}
        self._send_signals = send_signals
        self._check_set = check_set
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

    def copy(self, *, check_set: bool = True) -> DatabaseRegistry:
        """Return an independent registry with the same packages that sends no signals.

        The dev daemon loads a changed package into a copy and adopts it only once the
        database accepted its migrations.

        Args:
            check_set: see `DatabaseRegistry`.
        """
        clone = DatabaseRegistry(send_signals=False, check_set=check_set)
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
        self.update([package])
        return self._packages[package.name]

    def unregister(self, name: str) -> Package:
        """Remove a package.

        Raises:
            PackageNotFoundError: it is not registered.
            DependentsExistError: other packages depend on it; they are named.
        """
        package = self.get(name)
        self.update(remove=[name])
        return package

    def update(self, packages: Iterable[Package] = (), remove: Iterable[str] = ()) -> None:
        """Register `packages` and unregister `remove` as one change, checked as a whole.

        Two packages that must change together (a version bump and the dependent that
        requires it) can only be accepted together. Signals are sent once it is done.

        Raises:
            ValidationError: the change would break the set; nothing changed.
            PackageNotFoundError: a package to remove is not registered.
            DependentsExistError: a package to remove has dependents that stay.
        """
        with self._lock:
            after = dict(self._packages)
            gone = list(remove)
            for name in gone:
                self.get(name)
                after.pop(name)
            changed = [p for p in packages if p.name not in self._packages
                       or not self._packages[p.name].same_definition(p)]
            after.update((p.name, p) for p in changed)
            self._check_change(after, [p.name for p in changed], gone)
            replaced = {p.name for p in changed if p.name in self._packages}
            self._commit(after)
        self._announce(gone, changed, replaced)

    def adopt(self, other: DatabaseRegistry) -> None:
        """Take the packages of `other`, a copy of this registry changed and validated since.

        The other half of `copy()`: the dev daemon loads a change into a copy, checks the
        changed packages' closure, applies it to the database, then adopts it here
        without checking it a second time. Signals are sent for what changed.
        """
        with self._lock:
            before, after = self._packages, dict(other._packages)
            gone = [name for name in before if name not in after]
            changed = [p for name, p in after.items() if name not in before
                       or not before[name].same_definition(p)]
            replaced = {p.name for p in changed if p.name in before}
            self._commit(after)
        self._announce(gone, changed, replaced)

    def _announce(self, gone: list[str], changed: list[Package], replaced: set[str]) -> None:
        if not self._send_signals:
            return
        for name in gone:
            signals.emit(signals.package_unregistered, self, package=name)
        for package in changed:
            signals.emit(signals.package_registered, self, package=package.name,
                         version=str(package.version), replaced=package.name in replaced)

    def _check_change(
        self, after: Mapping[str, Package], changed: list[str], gone: list[str]
    ) -> None:
        if CORE_PACKAGE in changed:
            raise ValidationError([Problem(CORE_PACKAGE, "Y124", "the core package is built "
                                           "in", "choose another package name")])
        if CORE_PACKAGE in gone:
            raise ValidationError([Problem(CORE_PACKAGE, "Y124", "the core package is built "
                                           "in and cannot be unregistered")])
        for name in gone:
            dependents = tuple(sorted(n for n, p in after.items() if name in p.dependency_names))
            if dependents:
                raise DependentsExistError(name, dependents)
        new = self._new_problems(after, changed) if self._check_set and changed else []
        if new:
            raise ValidationError(new)

    def _graph(self, packages: Mapping[str, Package] | None = None) -> dict[str, tuple[str, ...]]:
        return dependency_graph((self._packages if packages is None else packages).values())

    def _new_problems(self, after: Mapping[str, Package], names: list[str]) -> list[Problem]:
        full = self._graph(after)
        affected = set(names).union(*(graph.dependents(full, name) for name in names))
        before = set(validation.check_set(self._packages, affected & set(self._packages)))
        found = validation.check_set(after, affected)
        return [p for p in found
                if p not in before and not (p.package in names and p.code in _DEFERRED)]

    def _commit(self, packages: dict[str, Package]) -> None:
        self._packages = packages
        self._ordered = None
