"""What the registry keeps about its set between changes, so a change is checked where it lands.

Checking the whole set after each change cost O(N): the table owners, tool providers
and dependency graph were rebuilt and every package checked again (36 ms of the 73 ms
"one new migration" at N = 300, issue #7). A `SetIndex` keeps those maps, updated from
what a change adds and removes, and `affected()` names the packages whose problems a
change can alter; every other package's problems stay what they were. No I/O.

A package's problems across the set (`validation.check_member`) read:

- its dependencies' presence and versions, and the graph it reaches (cycles, which
  packages it may reference): a change there makes it a transitive dependent of the
  changed package;
- the owners of its tables and the providers of its tools (owned twice);
- the owners of the tables its foreign keys point at, and their columns.

So the affected packages are the changed ones, their transitive dependents, and the
owners and referrers of every table, and the providers of every tool, that the changed
packages declared before or declare after.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from runtime.core import ddl, validation
from runtime.core.facts import Skeleton
from runtime.core.graph import reachable
from runtime.core.model import Package, dependency_graph
from runtime.core.schema import CORE_TABLES
from runtime.errors import Problem

__all__ = ["SetIndex"]

Members = Mapping[str, tuple[str, ...]]
_Keys = Callable[[Package], Iterable[str]]


def _references(package: Package) -> tuple[str, ...]:
    # Core tables are left out: what a package may reference there never depends on
    # the rest of the set, and every package references them.
    if isinstance(package, Skeleton):
        return package.referenced_tables  # without building its tables (#17)
    return tuple(sorted({target for table in package.tables
                         for target, _, _ in ddl.foreign_key_targets(table)
                         if target not in CORE_TABLES}))


def _tables(package: Package) -> tuple[str, ...]:
    return package.table_names


def _tools(package: Package) -> tuple[str, ...]:
    return tuple(tool.id for tool in package.tools)


@dataclass(frozen=True)
class SetIndex:
    """The registered packages with their indexes; changing it makes a new one.

    Never changed in place, so a registry and its copies share one until either changes.
    Each member list is in registration order (the order of `packages`), as
    `validation.table_owners` builds it, so messages do not depend on how the index
    was reached.

    Args:
        packages: by name, in registration order.
        graph: `model.dependency_graph` of `packages`.
        dependents: each package name, registered or not, to its direct dependents.
        owners: each table name to the packages declaring it.
        providers: each tool id to the packages providing it.
        references: each package to the non-core tables its foreign keys point at.
        referrers: each table name to the packages whose foreign keys point at it.
        positions: each package's place in the registration order.
    """

    packages: Mapping[str, Package] = field(default_factory=dict)
    graph: Members = field(default_factory=dict)
    dependents: Members = field(default_factory=dict)
    owners: Members = field(default_factory=dict)
    providers: Members = field(default_factory=dict)
    references: Members = field(default_factory=dict)
    referrers: Members = field(default_factory=dict)
    positions: Mapping[str, int] = field(default_factory=dict)
    next_position: int = 0

    @classmethod
    def of(cls, packages: Iterable[Package]) -> SetIndex:
        """Index `packages`, in that order."""
        return cls().change(list(packages), ())

    def change(self, changed: Sequence[Package], gone: Collection[str]) -> SetIndex:
        """Return the index after unregistering `gone`, then registering `changed`.

        A package replacing one of the same name keeps its place; a new one goes last.
        """
        packages, positions, next_position = self._placed(changed, gone)
        deps, references = dict(self.graph), dict(self.references)
        leaving = [self.packages[n] for n in {*gone, *(p.name for p in changed)}
                   if n in self.packages]
        for package in leaving:
            del deps[package.name], references[package.name]
        deps.update(dependency_graph(changed))
        references.update((p.name, _references(p)) for p in changed)
        # Unregistered and registered again in one change: a new place in the order.
        moved = set(gone) & {p.name for p in changed}

        def move(index: Members, before: _Keys, now: _Keys) -> Members:
            return _move(index, positions, moved, {p.name: before(p) for p in leaving},
                         {p.name: now(p) for p in changed})

        return SetIndex(
            packages, deps,
            dependents=move(self.dependents, lambda p: self.graph[p.name],
                            lambda p: deps[p.name]),
            owners=move(self.owners, _tables, _tables),
            providers=move(self.providers, _tools, _tools),
            references=references,
            referrers=move(self.referrers, lambda p: self.references[p.name],
                           lambda p: references[p.name]),
            positions=positions, next_position=next_position,
        )

    def _placed(
        self, changed: Sequence[Package], gone: Collection[str]
    ) -> tuple[dict[str, Package], dict[str, int], int]:
        packages, positions = dict(self.packages), dict(self.positions)
        next_position = self.next_position
        for name in gone:
            del packages[name], positions[name]
        for package in changed:
            if package.name not in positions:
                positions[package.name], next_position = next_position, next_position + 1
            packages[package.name] = package
        return packages, positions, next_position

    def affected(self, before: SetIndex, names: Collection[str]) -> set[str]:
        """Return the registered packages whose problems may differ from `before`'s.

        Args:
            before: the index this one was made from by `change`.
            names: the packages that change registered or unregistered.
        """
        tables: set[str] = set()
        tools: set[str] = set()
        for index in (before, self):
            for name in names:
                if (package := index.packages.get(name)) is not None:
                    tables.update(package.table_names)
                    tools.update(_tools(package))
        found = set(names) | reachable(self.dependents, names)
        for table in tables:
            found.update(self.owners.get(table, ()), self.referrers.get(table, ()))
        for tool in tools:
            found.update(self.providers.get(tool, ()))
        return found & self.packages.keys()

    def check(self, name: str) -> list[Problem]:
        """Check the rules across packages for `name` (see `validation.check_member`)."""
        return validation.check_member(self.packages, name, self.owners, self.providers,
                                       self.graph)


def _move(
    index: Members,
    positions: Mapping[str, int],
    moved: Collection[str],
    leaving: Mapping[str, Iterable[str]],
    arriving: Mapping[str, Iterable[str]],
) -> Members:
    """Update a key -> members index for the keys of packages leaving and arriving.

    Only keys whose members change are rebuilt (a new migration changes none), so a
    change costs what it touches, not the size of the set.
    """
    removed: dict[str, set[str]] = {}
    added: dict[str, set[str]] = {}
    for name in leaving.keys() | arriving.keys():
        before, after = set(leaving.get(name, ())), set(arriving.get(name, ()))
        if name not in moved:
            before, after = before - after, after - before
        for key in before:
            removed.setdefault(key, set()).add(name)
        for key in after:
            added.setdefault(key, set()).add(name)
    if not removed and not added:
        return index
    result = dict(index)
    for key in removed.keys() | added.keys():
        result[key] = _members(index.get(key, ()), positions, removed.get(key, set()),
                               added.get(key, set()))
        if not result[key]:
            del result[key]
    return result


def _members(
    members: tuple[str, ...], positions: Mapping[str, int], removed: set[str],
    added: set[str],
) -> tuple[str, ...]:
    """The members of a key, in registration order, after `removed` and `added`."""
    new = sorted(added, key=positions.__getitem__)
    if not removed and (not members or positions[new[0]] > positions[members[-1]]):
        # Packages registered after every member: they go last. Every package depends
        # on the core, so re-sorting its dependents for each registration made loading
        # N packages cost N² log N (1.5 s at N = 1000, #17).
        return members + tuple(new)
    kept = (set(members) - removed) | added
    return tuple(sorted(kept, key=positions.__getitem__))
