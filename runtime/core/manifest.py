"""What a valid set of packages registered, as plain data: enough to answer a no-op run.

A `Manifest` keeps, for each package in dependency order, its version, schema
fingerprint and migration checksums: exactly what the pipeline compares with the
ledger. `runtime.load.cache` stores one beside the state of the sources it came from, so
a `migrate` or `check` of unchanged sources answers without importing a package (or
SQLAlchemy). No I/O here, and no SQLAlchemy either: this module is imported on that path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from runtime.core.recorded import Ledger, is_up_to_date

if TYPE_CHECKING:
    from packaging.version import Version

    from runtime.core.model import Package

__all__ = ["Entry", "Manifest", "Recorded"]


class Recorded(NamedTuple):
    """One migration of a manifest entry: what the ledger records of it."""

    id: str
    checksum: str


@dataclass(frozen=True)
class Entry:
    """One package of a manifest: what the ledger records of it.

    It has every attribute planning reads of a `Package` (`runtime.core.recorded.Planned`).
    """

    name: str
    version_text: str
    fingerprint: str
    migrations: tuple[Recorded, ...]  # in order
    #: Its keys that cross workspaces on purpose, in words, for `check` to list.
    crossings: tuple[str, ...] = ()

    @cached_property
    def version(self) -> Version:
        """The version, parsed (only asked when the recorded one reads differently)."""
        from packaging.version import Version  # not on the no-op path: see the module doc

        return Version(self.version_text)


@dataclass(frozen=True)
class Manifest:
    """The packages of a valid set, in dependency order, the core first."""

    entries: tuple[Entry, ...]

    @classmethod
    def of(cls, packages: Iterable[Package]) -> Manifest:
        """Describe `packages` (from `DatabaseRegistry.ordered()`)."""
        from runtime.core.references import crossings  # SQLAlchemy: not on the no-op path

        return cls(tuple(
            Entry(p.name, p.version_text, p.fingerprint,
                  tuple(Recorded(m.id, m.checksum) for m in p.migrations),
                  crossings(p.tables))
            for p in packages))

    @property
    def names(self) -> list[str]:
        """The package names, in dependency order."""
        return [entry.name for entry in self.entries]

    def up_to_date(self, ledger: Ledger) -> bool:
        """Tell whether a full pipeline run of these packages would do nothing.

        The pipeline's own comparison (`runtime.core.recorded.is_up_to_date`): every
        migration applied with its checksum, every package recorded with its version
        and fingerprint, and no other package recorded (a full run would deactivate its
        tools). Anything else, a pending or edited migration, a downgrade, is for the
        full run to do or report.
        """
        return is_up_to_date(self.entries, ledger)

    def to_json(self) -> list[Any]:
        """A JSON-ready form; `from_json` reads it back."""
        return [[e.name, e.version_text, e.fingerprint, [list(m) for m in e.migrations],
                 list(e.crossings)] for e in self.entries]

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Read what `to_json` wrote.

        Raises:
            ValueError: `data` is not in that form.
        """
        try:
            return cls(tuple(
                Entry(str(name), str(version), str(fingerprint),
                      tuple(Recorded(str(i), str(c)) for i, c in migrations),
                      tuple(map(str, crossings)))
                for name, version, fingerprint, migrations, crossings in data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a manifest: {exc}") from exc
