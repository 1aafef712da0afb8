"""What the database holds that no registered package owns. No I/O.

Two kinds of leftovers, which `status` lists (issue #13: nothing unowned goes unseen):

- packages the ledger records that are registered no more (their directory removed,
  their distribution uninstalled), each with the tables the ledger recorded for it that
  are still in the database and that no registered package declares now;
- tables that nothing owns: declared by no registered package nor the core, and
  recorded for no removed package. Made by hand, most often, or left by a package the
  ledger recorded before it kept tables.

A table is listed once: under the removed package it was recorded for, else as unowned.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.core.recorded import Ledger

if TYPE_CHECKING:
    from runtime.core.model import Package

__all__ = ["Leftovers", "Removed", "find_leftovers"]


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
    """

    package: str
    version: str | None
    tables: tuple[str, ...] | None
    rows: int


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
    rows: dict[str, int] = {}
    for package, _migration in ledger.applied:
        rows[package] = rows.get(package, 0) + 1
    for package, ids in ledger.dev.items():
        rows[package] = rows.get(package, 0) + len(ids)
    removed = []
    for name in sorted((set(ledger.recorded) | set(rows)) - names):
        recorded = ledger.recorded.get(name)
        left = None if name not in tables else tuple(
            sorted(t for t in tables[name] if t in present and t not in owned))
        removed.append(Removed(name, recorded[0] if recorded else None, left,
                               rows.get(name, 0)))
    theirs = {table for r in removed for table in r.tables or ()}
    return Leftovers(tuple(removed), tuple(sorted(set(present) - owned - theirs)))
