"""What a valid set of packages registered, as plain data: enough to answer a no-op run.

A `Manifest` keeps, for each package in dependency order, its version, schema
fingerprint and migration checksums: exactly what the pipeline compares with the
ledger. `runtime.dev.cache` stores one beside the state of the sources it came from, so
a `migrate` or `check` of unchanged sources answers without importing a package (or
SQLAlchemy). No I/O here, and no SQLAlchemy either: this module is imported on that path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.core.model import Package

__all__ = ["Entry", "Manifest"]


@dataclass(frozen=True)
class Entry:
    """One package of a manifest: what the ledger records of it."""

    name: str
    version: str
    fingerprint: str
    migrations: tuple[tuple[str, str], ...]  # (id, checksum), in order


@dataclass(frozen=True)
class Manifest:
    """The packages of a valid set, in dependency order, the core first."""

    entries: tuple[Entry, ...]

    @classmethod
    def of(cls, packages: Iterable[Package]) -> Manifest:
        """Describe `packages` (from `DatabaseRegistry.ordered()`)."""
        return cls(tuple(
            Entry(p.name, p.version_text, p.fingerprint,
                  tuple((m.id, m.checksum) for m in p.migrations))
            for p in packages))

    @property
    def names(self) -> list[str]:
        """The package names, in dependency order."""
        return [entry.name for entry in self.entries]

    def up_to_date(
        self, applied: Mapping[tuple[str, str], str], recorded: Mapping[str, tuple[str, str]]
    ) -> bool:
        """Tell whether a full pipeline run would do nothing against this ledger.

        That is: every migration applied with its checksum, every package recorded with
        its version and fingerprint, and no other package recorded (a full run would
        deactivate its tools). Anything else, a pending or edited migration, a
        downgrade, is for the full run to do or report.

        Args:
            applied: checksum by `(package, migration id)`, dev changes left out.
            recorded: `(version, fingerprint)` by package, unregistered ones left out.
        """
        if len(recorded) != len(self.entries):
            return False
        for entry in self.entries:
            if recorded.get(entry.name) != (entry.version, entry.fingerprint):
                return False
            for migration_id, checksum in entry.migrations:
                if applied.get((entry.name, migration_id)) != checksum:
                    return False
        return True

    def to_json(self) -> list[Any]:
        """A JSON-ready form; `from_json` reads it back."""
        return [[e.name, e.version, e.fingerprint, [list(m) for m in e.migrations]]
                for e in self.entries]

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Read what `to_json` wrote.

        Raises:
            ValueError: `data` is not in that form.
        """
        try:
            return cls(tuple(
                Entry(str(name), str(version), str(fingerprint),
                      tuple((str(i), str(c)) for i, c in migrations))
                for name, version, fingerprint, migrations in data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a manifest: {exc}") from exc
