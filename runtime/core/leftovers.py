"""What the database holds that no registered package owns. No I/O.

Two kinds of leftovers, which `status` lists (issue #13: nothing unowned goes unseen):

- packages the ledger records that are registered no more (their directory removed,
  their distribution uninstalled), each with the tables the ledger recorded for it that
  are still in the database and that no registered package declares now;
- tables that nothing owns: declared by no registered package nor the core, and
  recorded for no removed package. Made by hand, most often, or left by a package the
  ledger recorded before it kept tables.

A table is listed once: under the removed package it was recorded for, else as unowned.

`plan_uninstall` decides what `uninstall` does to one removed package: keep its data
(deactivate its tools, mark it uninstalled, keep its tables and ledger rows, so that
registered again it runs only the migrations it has not run) or purge it (drop its
tables, delete its tools and ledger rows, so that registered again it installs afresh).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.core import booking
from runtime.core.names import CORE_PACKAGE, UNINSTALLED
from runtime.core.recorded import Ledger
from runtime.errors import PROGRAM, PackageNotRecordedError, UninstallRefusedError

if TYPE_CHECKING:
    from runtime.core.model import Package

__all__ = ["Leftovers", "Removed", "Uninstall", "find_leftovers", "plan_uninstall"]


@dataclass(frozen=True)
class Removed:
    """A package the ledger records and no package registers any more.

    Attributes:
        package: its name.
        version: the version recorded, or None when only ledger rows name it.
        tables: the tables recorded for it that are still in the database and that no
            registered package declares, sorted; None when the ledger does not record
            its tables (recorded before it kept them).
        rows: its rows in the migration ledger: migrations and dev changes.
        uninstalled: `uninstall` took it out keeping its data, rather than its package
            going away unsaid.
    """

    package: str
    version: str | None
    tables: tuple[str, ...] | None
    rows: int
    uninstalled: bool = False


@dataclass(frozen=True)
class Leftovers:
    """Removed packages and unowned tables, each sorted by name."""

    removed: tuple[Removed, ...] = ()
    unowned: tuple[str, ...] = ()

    def get(self, package: str) -> Removed | None:
        """The removed package named `package`, if it is one."""
        return next((r for r in self.removed if r.package == package), None)


def find_leftovers(
    registered: Iterable[Package],
    ledger: Ledger,
    tables: Mapping[str, Sequence[str]],
    present: Collection[str],
) -> Leftovers:
    """Find what the database holds that the registered packages do not own.

    Args:
        registered: every registered package, the core included.
        ledger: what the ledger records (`runtime.db.ledger.read_ledger`).
        tables: the tables recorded for each package (`runtime.db.ledger.read_tables`).
        present: the tables in the database's `public` schema.
    """
    registered = list(registered)
    names = {p.name for p in registered}
    owned = {table for p in registered for table in p.table_names}
    # A table a registered package's dev change built is that package's drift (`status`).
    owned |= {table for name in names for table in booking.tables_of(ledger.dev.get(name, ()))}
    rows: dict[str, int] = {}
    for package, _migration in ledger.applied:
        rows[package] = rows.get(package, 0) + 1
    for package, ids in ledger.dev.items():
        rows[package] = rows.get(package, 0) + len(ids)
    removed = []
    for name in sorted((set(ledger.recorded) | set(rows)) - names):
        version, fingerprint = ledger.recorded.get(name) or (None, None)
        left = None if name not in tables else tuple(
            sorted(t for t in tables[name] if t in present and t not in owned))
        removed.append(Removed(name, version, left, rows.get(name, 0),
                               fingerprint == UNINSTALLED))
    theirs = {table for r in removed for table in r.tables or ()}
    return Leftovers(tuple(removed), tuple(sorted(set(present) - owned - theirs)))


@dataclass(frozen=True)
class Uninstall:
    """What `uninstall` does to one removed package.

    Attributes:
        removed: the removed package, as `status` lists it.
        purge: drop its tables and forget it, rather than keep its data.
        drop: the tables a purge drops: its tables, but those recorded for another
            package too (`shared`), which stay.
        shared: its tables recorded for another removed package too, kept.
        tools: the ids of the tools it provided: deleted by a purge (with the workspaces'
            choices of them), else deactivated.
        done: nothing to do: it is uninstalled already, and not purged.
        types: the enum types a purge drops after the tables: those that only the
            columns of `drop` use (read from the database, `runtime.db.leftovers`).
    """

    removed: Removed
    purge: bool
    drop: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    done: bool = False
    types: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The package's name."""
        return self.removed.package


def plan_uninstall(
    name: str,
    *,
    purge: bool,
    registered: Sequence[Package],
    ledger: Ledger,
    leftovers: Leftovers,
    tables: Mapping[str, Sequence[str]],
    tools: Sequence[str] = (),
) -> Uninstall:
    """Decide what uninstalling `name` does (`find_leftovers` for the arguments).

    Args:
        tools: the ids of the tools the package provided.

    Raises:
        UninstallRefusedError: it is the core, or still registered, or the core's
            migrations are not all applied (`migrate` first).
        PackageNotRecordedError: the ledger does not record it; naming the ones it can
            uninstall.
    """
    by_name = {p.name: p for p in registered}
    if name == CORE_PACKAGE:
        raise UninstallRefusedError(name, "it is built in", "the core holds the workspaces, "
                                    "the tools catalog and the ledger of every package")
    if name in by_name:
        raise _still_registered(by_name[name], registered)
    core = by_name[CORE_PACKAGE]
    if any((CORE_PACKAGE, m.id) not in ledger.applied for m in core.migrations):
        raise UninstallRefusedError(name, f"the database lacks migrations of {CORE_PACKAGE}",
                                    f"run {PROGRAM} migrate first")
    removed = leftovers.get(name)
    if removed is None:
        raise PackageNotRecordedError(name, tuple(r.package for r in leftovers.removed))
    others = {t for package, names in tables.items() if package != name for t in names}
    mine = removed.tables or ()
    return Uninstall(
        removed, purge, tuple(t for t in mine if t not in others) if purge else (),
        tuple(t for t in mine if t in others), tuple(tools),
        done=not purge and removed.uninstalled)


def _still_registered(package: Package, registered: Sequence[Package]) -> UninstallRefusedError:
    dependents = [p.name for p in registered if package.name in p.dependency_names]
    them = f"it and its dependents {', '.join(dependents)}" if dependents else "it"
    where = f", from {package.source}" if package.source else ""
    return UninstallRefusedError(
        package.name, f"it is still registered{where}",
        f"take {them} out of the packages first, by removing the directory or uninstalling "
        "the distribution: the next migrate would install it again")
