"""The registry packages register their database schemas with.

It holds validated packages only: a registration that breaks a rule raises and leaves
the registry as it was. Dependencies may register after their dependents (a loader
meets packages in any order), so "missing" problems wait for `ordered()`.

The registry remembers the problems of its set, by package, and a change re-checks only
the packages it can affect (`runtime.core.index`): at N = 300 a full check cost 36 ms of
the 73 ms it took to add one migration (issue #7).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType, MemberDescriptorType

from sqlalchemy import MetaData, Table

from runtime.core import ddl, graph, signals, validation
from runtime.core.index import SetIndex
from runtime.core.model import Migration, Package, Tool
from runtime.core.schema import CORE_MIGRATIONS, CORE_PACKAGE, CORE_VERSION, core_metadata
from runtime.core.versions import parse_version
from runtime.errors import DependentsExistError, PackageNotFoundError, Problem, ValidationError

__all__ = ["DatabaseRegistry", "core_package"]

# Problems of a new registration that a later registration can fix (its dependency
# is simply not there yet); they are reported by ordered() instead.
_DEFERRED = frozenset({"Y201", "Y206"})


def core_package() -> Package:
    """Build the `@ydtb/core` package: the core tables, with the ledger."""
    migrations = tuple(Migration(migration_id, up=ddl.create_statements(tables))
                       for migration_id, tables in CORE_MIGRATIONS)
    return Package(
        name=CORE_PACKAGE,
        version=parse_version(CORE_VERSION),
        schema=core_metadata,
        migrations=migrations,
        dependencies=(),
        tables=tuple(core_metadata.sorted_tables),
        fingerprint=ddl.fingerprint(s for m in migrations for s in m.statements or ()),
    )


_CORE = core_package()
_CORE_INDEX = SetIndex.of([_CORE])


class DatabaseRegistry:
    """The set of registered packages, always valid on its own.

    `runtime.registry` is the process-wide one; make another for tests and tools. The
    core package `@ydtb/core` is always registered.

    Args:
        send_signals: False for scratch copies whose changes nobody should hear about.
        check_set: False to check each registration's own rules only, leaving the rules
            across packages to whoever validates the whole change at the end (the dev
            daemon, loading several packages that change together).
        require_row_level_security: the platform's policy that every package opts in to
            row-level security; one that does not is a problem of the set (Y135).
        shed: drop the idle event dispatchers SQLAlchemy leaves on what is registered
            (memory a long-lived process keeps); False for a registry that lives as long
            as one command, whose process returns the memory when it ends: shedding was
            a tenth of loading 300 packages (#17).
    """

    def __init__(
        self,
        *,
        send_signals: bool = True,
        check_set: bool = True,
        require_row_level_security: bool = False,
        shed: bool = True,
    ) -> None:
        self._index = _CORE_INDEX
        self._send_signals = send_signals
        self._check_set = check_set
        self.require_row_level_security = require_row_level_security
        self._lock = threading.RLock()
        # The set's problems by package, for every package not in _stale (a registry
        # that does not check its set leaves what a change affected to be checked later).
        self._problems: dict[str, list[Problem]] = {}
        self._stale: set[str] = {CORE_PACKAGE}
        self._order: list[str] | None = None  # the names in dependency order
        self._ordered: list[Package] | None = None
        self._shed = shed  # `register_database` drops idle event dispatchers (`shed`)

    # -- reading -------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._index.packages

    def __iter__(self) -> Iterator[Package]:
        return iter(list(self._index.packages.values()))

    def __len__(self) -> int:
        return len(self._index.packages)

    @property
    def packages(self) -> Mapping[str, Package]:
        """A read-only view of the registered packages by name."""
        return MappingProxyType(self._index.packages)

    def get(self, name: str) -> Package:
        """Return the package registered as `name`.

        Raises:
            PackageNotFoundError: it is not registered.
        """
        try:
            return self._index.packages[name]
        except KeyError:
            raise PackageNotFoundError(name, tuple(sorted(self._index.packages))) from None

    def copy(self, *, check_set: bool = True, shed: bool | None = None) -> DatabaseRegistry:
        """Return an independent registry with the same packages that sends no signals.

        The dev daemon loads a changed package into a copy and adopts it only once the
        database accepted its migrations.

        Args:
            check_set: see `DatabaseRegistry`.
            shed: drop the idle event dispatchers of what is registered into the copy as
                it is registered; False leaves that to `shed` later (the dev daemon, once
                it announced a reload: 1.4 ms of it); None, as this registry does.
        """
        clone = DatabaseRegistry(send_signals=False, check_set=check_set,
                                 require_row_level_security=self.require_row_level_security,
                                 shed=self._shed if shed is None else shed)
        with self._lock:
            clone._take(self)
        return clone

    def problems(self) -> list[Problem]:
        """Check the whole set: missing dependencies, versions, cycles, ownership, keys."""
        with self._lock:
            self._refresh()
            found = validation.merge_problems(self._problems[n] for n in sorted(self._problems))
            if self.require_row_level_security:
                found += validation.policy_problems(self._index.packages.values())
            return found

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
                if self._order is None:
                    self._order = graph.dependency_order(self._index.graph)
                self._ordered = [self._index.packages[name] for name in self._order]
            return list(self._ordered)

    def closure(self, *names: str) -> list[str]:
        """Return `names` and every package depending on them, in dependency order.

        That is what must be re-validated, and migrated, when they change.

        Raises:
            PackageNotFoundError: a name is not registered.
            ValidationError: the packages depend on each other in a cycle (Y203), which
                has no order; a copy changed without checking the set (the dev daemon's)
                can hold one.
        """
        members = self.affected(*names)
        index = self._index
        sub = {n: [d for d in index.graph[n] if d in members] for n in members}
        try:
            return graph.dependency_order(sub)
        except graph.CycleError as exc:
            raise ValidationError([validation.cycle_problem(exc.cycle)]) from None

    def affected(self, *names: str) -> set[str]:
        """Return `names` and every package depending on them, in no order (cycles too).

        Raises:
            PackageNotFoundError: a name is not registered.
        """
        for name in names:
            self.get(name)
        return set(names) | graph.reachable(self._index.dependents, names)

    def dependents(self, name: str) -> list[str]:
        """Return the packages that depend on `name` directly, sorted."""
        index = self._index
        # The index counts the dependency on the core every package has, declared or not.
        return sorted(n for n in index.dependents.get(name, ())
                      if name in index.packages[n].dependency_names)

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
        if self._shed:
            _shed_dispatchers(package.tables)
        return self.register(package)

    def shed(self, names: Iterable[str]) -> None:
        """Drop the idle event dispatchers of the packages `names` (those registered
        into a `copy(shed=False)` and adopted since); names not registered are skipped."""
        for name in names:
            if name in self:
                _shed_dispatchers(self.get(name).tables)

    def trust(self, packages: Iterable[Package]) -> None:
        """Register `packages` as a set known to be valid, without checking it.

        For the skeletons of the load cache's last valid set (`runtime.core.facts`): a
        change made after is checked where it lands, as any change, so a skeleton is
        read only as far as the change touches it (#17). Sends no signals.
        """
        with self._lock:
            self._commit(self._index.change(list(packages), ()), set(), {})

    def register(self, package: Package) -> Package:
        """Register an already built package (see `register_database`)."""
        self.update([package])
        return self._index.packages[package.name]

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
            before = self._index
            gone = list(remove)
            for name in gone:
                self.get(name)
            changed = [p for p in packages if p.name not in before.packages
                       or not before.packages[p.name].same_definition(p)]
            after = before.change(changed, gone)
            names = [p.name for p in changed]
            self._check_change(after, names, gone)
            affected = after.affected(before, [*names, *gone])
            if self._check_set and changed:
                found = self._checked(before, after, names, affected)
            else:
                found = None
            self._commit(after, affected, found)
            replaced = {name for name in names if name in before.packages}
        self._announce(gone, changed, replaced)

    def adopt(self, other: DatabaseRegistry) -> None:
        """Take the packages of `other`, a copy of this registry changed and validated since.

        The other half of `copy()`: the dev daemon loads a change into a copy, checks the
        changed packages' closure, applies it to the database, then adopts it here
        without checking it a second time. Signals are sent for what changed.
        """
        with self._lock:
            before, after = self._index.packages, other._index.packages
            gone = [name for name in before if name not in after]
            # Most packages are the very objects this registry holds (`copy()` shares them).
            changed = [p for name, p in after.items() if name not in before
                       or (before[name] is not p and not before[name].same_definition(p))]
            replaced = {p.name for p in changed if p.name in before}
            self._take(other)
        self._announce(gone, changed, replaced)

    def _announce(self, gone: list[str], changed: list[Package], replaced: set[str]) -> None:
        if not self._send_signals:
            return
        for name in gone:
            signals.emit(signals.package_unregistered, self, package=name)
        for package in changed:
            signals.emit(signals.package_registered, self, package=package.name,
                         version=package.version_text, replaced=package.name in replaced)

    def _check_change(self, after: SetIndex, changed: list[str], gone: list[str]) -> None:
        if CORE_PACKAGE in changed:
            raise ValidationError([Problem(CORE_PACKAGE, "Y124", "the core package is built "
                                           "in", "choose another package name")])
        if CORE_PACKAGE in gone:
            raise ValidationError([Problem(CORE_PACKAGE, "Y124", "the core package is built "
                                           "in and cannot be unregistered")])
        for name in gone:
            dependents = after.dependents.get(name)
            if dependents:
                raise DependentsExistError(name, tuple(sorted(dependents)))

    def _checked(
        self, before: SetIndex, after: SetIndex, names: list[str], affected: set[str]
    ) -> dict[str, list[Problem]]:
        """Check `affected` in `after`; raise if the change brings a new problem.

        New is judged as it always was: among the changed packages and their dependents,
        a problem the set did not have before, except the changed packages' own missing
        dependencies and tables (a later registration can bring them).

        Raises:
            ValidationError: listing the new problems; nothing changed.
        """
        self._refresh()
        found = {name: after.check(name) for name in affected}
        judged = sorted(set(names) | graph.reachable(after.dependents, names))
        had = {p for name in judged for p in self._problems.get(name, ())}
        new = [p for p in validation.merge_problems(found[n] for n in judged)
               if p not in had and not (p.package in names and p.code in _DEFERRED)]
        if new:
            raise ValidationError(new)
        return found

    def _refresh(self) -> None:
        """Check the packages a change left unchecked (see `check_set`)."""
        for name in self._stale:
            self._remember(name, self._index.check(name) if name in self._index.packages else [])
        self._stale = set()

    def _remember(self, name: str, problems: list[Problem]) -> None:
        if problems:
            self._problems[name] = problems
        else:
            self._problems.pop(name, None)

    def _commit(
        self, index: SetIndex, affected: set[str], found: dict[str, list[Problem]] | None
    ) -> None:
        before, self._index = self._index, index
        for name in before.packages.keys() - index.packages.keys():
            self._problems.pop(name, None)
            self._stale.discard(name)
        if found is None:
            self._stale |= affected
        else:
            for name, problems in found.items():
                self._remember(name, problems)
        self._ordered = None
        # A change that keeps every edge (a new migration, a new column) keeps the order.
        if before.packages.keys() != index.packages.keys() or any(
                before.graph[n] != index.graph[n] for n in affected if n in before.graph):
            self._order = None

    def _take(self, other: DatabaseRegistry) -> None:
        self._index = other._index
        self._problems = dict(other._problems)
        self._stale = set(other._stale)
        self._order = other._order
        self._ordered = None


def _shed_dispatchers(tables: Iterable[Table]) -> None:
    """Drop the event dispatchers SQLAlchemy left on the schema items of `tables`.

    Attaching an item to its parent gives it a dispatcher of its own, for listeners of
    that one item, which it keeps: 25,000 at N = 300 packages, 7 MB held for nothing,
    23 MB of the dev daemon's peak at N = 1000 (#17). One no listener uses is made
    again, as it was, if ever asked for; one with listeners stays.
    """
    for item in (item for table in tables for item in ddl.schema_items(table)):
        if not hasattr(type(item), "dispatch"):
            continue  # a type: asking for its attributes would make it a dict of them
        attributes: dict[str, object] = getattr(item, "__dict__", {})
        dispatch = attributes.get("dispatch")
        if dispatch is not None and _idle(dispatch):
            del attributes["dispatch"]


def _idle(dispatch: object) -> bool:
    """Whether no listener uses `dispatch`: each event of it is in a slot, never asked
    for or with no listeners. Laid out otherwise (not SQLAlchemy 2), it is kept."""
    names = getattr(dispatch, "_event_names", None)
    if names is None:
        return False
    kind = type(dispatch)
    for name in names:
        slot = kind.__dict__.get(name)
        if not isinstance(slot, MemberDescriptorType):
            return False
        try:
            event = slot.__get__(dispatch, kind)
        except AttributeError:
            continue  # never asked for (read through getattr, it would be made now)
        if getattr(event, "listeners", None) or getattr(event, "propagate", None):
            return False
    return True
