"""What the database recorded, and the one comparison of a package with it. No I/O.

`Ledger` is what `runtime.db.ledger` reads; `compare` is the question every run asks of
each package (which migrations are not applied as recorded, whether its version and
fingerprint must be recorded, whether it went down a version). `runtime.core.plan`
turns the answers into a plan; `is_up_to_date` asks only whether there is anything to
do, for a manifest (`runtime.core.manifest`) on the load cache's no-op path. That path
imports this module and nothing heavier: no SQLAlchemy, no `packaging` (5 ms of a
0.25 s process) unless a recorded version reads differently, and one dataclass.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from runtime.core.names import UNINSTALLED, UNREGISTERED
from runtime.errors import Problem

if TYPE_CHECKING:
    from packaging.version import Version

__all__ = ["Ledger", "Planned", "PlannedMigration", "compare", "is_up_to_date", "unregistered"]


@dataclass(frozen=True)
class Ledger:
    """What the database says was applied.

    Args:
        applied: checksum of each applied migration, by `(package, migration id)`.
        recorded: `(version, schema fingerprint)` of each recorded package, by name.
        dev: ids of the dev changes applied to each package and not yet taken over by
            a migration, by name.
    """

    applied: Mapping[tuple[str, str], str] = field(default_factory=dict)
    recorded: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    dev: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def applied_ids(self, package: str) -> list[str]:
        """The ids of the migrations applied for `package`."""
        return [m for (p, m) in self.applied if p == package]


class PlannedMigration(Protocol):
    """What planning reads of a migration: a `Migration`, or a manifest's entry."""

    @property
    def id(self) -> str: ...

    @property
    def checksum(self) -> str: ...


class Planned(Protocol):
    """What planning reads of a package: a `Package`, or a manifest's `Entry`."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> Version: ...

    @property
    def version_text(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def migrations(self) -> Sequence[PlannedMigration]: ...


def _downgrade(package: Planned, recorded: str) -> Problem | None:
    from packaging.version import InvalidVersion, Version  # see the imports

    try:
        if package.version >= Version(recorded):
            return None
    except InvalidVersion:
        return None
    return Problem(
        package.name, "Y302",
        f"registered version {package.version} is lower than {recorded} recorded in the "
        "database", f"register version {recorded} or later; downgrades are not applied",
    )


def unregistered(ledger: Ledger, registered: Collection[str]) -> tuple[str, ...]:
    """The packages `ledger` records as registered that are not among `registered`, sorted.

    Those already marked `UNREGISTERED` or `UNINSTALLED` are left out: their tools were
    deactivated.
    """
    return tuple(sorted(name for name, (_version, fingerprint) in ledger.recorded.items()
                        if name not in registered
                        and fingerprint not in (UNREGISTERED, UNINSTALLED)))


def compare(
    package: Planned, ledger: Ledger
) -> tuple[Problem | None, Sequence[tuple[int, str]], bool]:
    """Compare one package with the ledger: the one answer planning and the manifest use.

    Returns:
        A downgrade (and nothing else), or none and each migration not applied as
        recorded (its index, and the checksum recorded or "" when none is), and whether
        the package's version or fingerprint differ from the recorded ones.
    """
    # The hot loop of a no-op run (300 packages, scripts/bench): locals, and no list
    # unless a migration differs.
    name, version = package.name, package.version_text
    recorded = ledger.recorded.get(name)
    # Parsing and comparing versions costs more than the rest of a no-op plan
    # (issue #7); a recorded version that reads the same cannot be a downgrade.
    if (recorded is not None and recorded[0] != version
            and (problem := _downgrade(package, recorded[0]))):
        return problem, (), False
    applied = ledger.applied.get
    differing: list[tuple[int, str]] | None = None
    for index, migration in enumerate(package.migrations):
        checksum = applied((name, migration.id))
        if checksum != migration.checksum:
            if differing is None:
                differing = []
            differing.append((index, checksum or ""))
    return None, differing or (), recorded != (version, package.fingerprint)


def is_up_to_date(packages: Iterable[Planned], ledger: Ledger) -> bool:
    """Tell whether a full run of `packages` would write nothing and report nothing.

    The same comparison as `plan_pending(packages, ledger, complete=True)`, for what
    is not a `Package`: a manifest's entries (`runtime.core.manifest`), which the no-op
    path reads without importing SQLAlchemy.
    """
    packages = list(packages)
    for package in packages:
        downgrade, differing, record = compare(package, ledger)
        if downgrade is not None or differing or record:
            return False
    return not unregistered(ledger, {p.name for p in packages})
