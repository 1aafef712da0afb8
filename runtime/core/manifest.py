"""What a valid set of packages registered, as plain data: enough to answer a no-op run.

A `Manifest` keeps, for each package in dependency order, its version, schema
fingerprint and migration checksums: exactly what the pipeline compares with the
ledger. `runtime.load.cache` stores one beside the state of the sources it came from, so
a `migrate` or `check` of unchanged sources answers without importing a package (or
SQLAlchemy). No I/O here, and no SQLAlchemy either: this module is imported on that path.

An entry also keeps what the safety lint found in the package's migrations, each judged
alone (`runtime.core.lint`), so that `check` answered from the cache shows the same
findings without reading a migration. Linting costs about 1 ms a package (0.28 s at
N = 300), so it is done by `check` only: a manifest from another command's load has
none, and `runtime.load.cache` keeps the lint of an unchanged package from the
manifest it replaces.

An entry also keeps what the rules across packages read of the package
(`runtime.core.facts`): when some packages changed, a `migrate` imports those only and
validates them against skeletons of the others built from it (#17).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from runtime.core.recorded import Ledger, is_up_to_date

if TYPE_CHECKING:
    from packaging.version import Version

    from runtime.core.lint import PackageLint
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
    #: What the safety lint found in its migrations; None when not linted.
    lint: PackageLint | None = None
    #: What the rules across packages read of it (`runtime.core.facts.describe`).
    facts: Any = field(default=None, compare=False, repr=False)

    def same_migrations(self, other: Entry) -> bool:
        """Tell whether `other` is the same package with the same migrations."""
        return (self.name, self.version_text, self.fingerprint, self.migrations) == (
            other.name, other.version_text, other.fingerprint, other.migrations)

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
    def of(
        cls, packages: Iterable[Package], lints: Iterable[PackageLint] = (), *,
        facts: bool = True,
    ) -> Manifest:
        """Describe `packages` (from `DatabaseRegistry.ordered()`), with what the lint
        found in their migrations (`lint_all`), if it ran.

        Args:
            facts: describe what the rules across packages read of each package, which
                only the load cache keeps (`check --no-cache` stores nothing).
        """
        from runtime.core.facts import Skeleton, crossings_of, describe

        found = {lint.package: lint for lint in lints}
        return cls(tuple(
            # A skeleton is its entry (with a lint, if one ran): unchanged since read.
            # Kept as it is when its lint is the one given: 300 copies cost 2 ms (#17).
            (p.entry if p.entry.lint is found.get(p.name) else
             replace(p.entry, lint=found.get(p.name))) if isinstance(p, Skeleton) else
            Entry(p.name, p.version_text, p.fingerprint,
                  tuple(Recorded(m.id, m.checksum) for m in p.migrations),
                  crossings_of(p), found.get(p.name), describe(p) if facts else None)
            for p in packages))

    @property
    def lints(self) -> list[PackageLint] | None:
        """What the lint found in each package, or None when a package was not linted."""
        lints = [entry.lint for entry in self.entries]
        return None if any(lint is None for lint in lints) else \
            [lint for lint in lints if lint is not None]

    def with_lints_of(self, other: Manifest) -> Manifest:
        """Take the lint of each entry not linted from the same package in `other`."""
        kept = {e.name: e for e in other.entries if e.lint is not None}
        return Manifest(tuple(
            replace(e, lint=kept[e.name].lint) if e.lint is None and e.name in kept
            and e.same_migrations(kept[e.name]) else e for e in self.entries))

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

    def to_json(self, *, facts: bool = True) -> list[Any]:
        """A JSON-ready form; `from_json` reads it back.

        Args:
            facts: keep the entries' facts; without, `with_facts` puts them back.
        """
        return [[e.name, e.version_text, e.fingerprint, [list(m) for m in e.migrations],
                 list(e.crossings), _lint_json(e.lint), e.facts if facts else None]
                for e in self.entries]

    @property
    def facts(self) -> dict[str, Any]:
        """Each entry's facts, by package name."""
        return {e.name: e.facts for e in self.entries}

    def with_facts(self, facts: Mapping[str, Any]) -> Manifest:
        """Give each entry its facts from `facts` (`Manifest.facts`); None where absent."""
        return Manifest(tuple(replace(e, facts=facts.get(e.name)) for e in self.entries))

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
                      tuple(map(str, crossings)), _lint_of(str(name), lint), facts)
                for name, version, fingerprint, migrations, crossings, lint, facts in data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a manifest: {exc}") from exc


def _lint_json(lint: PackageLint | None) -> Any:
    if lint is None:
        return None
    return [[f.to_json() for f in lint.findings], list(lint.python)]


def _lint_of(package: str, data: Any) -> PackageLint | None:
    if data is None:
        return None
    # Here, not at the top: a cache holds the lint only once `check` ran, and a no-op
    # `migrate` before that need not import the lint's module (1.5 ms).
    from runtime.core.lint import Finding, PackageLint

    findings, python = data
    return PackageLint(package, tuple(Finding.from_json(f) for f in findings),
                       python=tuple(map(str, python)))
