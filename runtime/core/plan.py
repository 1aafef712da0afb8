"""Decide what a pipeline run must do from the packages and the ledger. No I/O.

The ledger holds one row per applied migration (never a high-water mark), so planning
is a set difference: every migration of every package, in dependency order, that has
no row. A row whose checksum differs from the migration's is an edited migration.

The dev daemon also records the schema changes it applied straight from a package's
declared schema (kind `dev`, id `dev:<fingerprint>`). Those rows are not migrations:
they never make a migration applied, pending or unknown, and are listed on their own
until a migration takes them over.

One comparison of a package with the ledger (`_compare`) answers both questions asked
of it: what a run must do (`plan_pending`) and whether it would do nothing
(`is_up_to_date`, which the load cache's no-op path asks of a manifest, without
SQLAlchemy: this module imports `runtime.core.model` only for its types).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from packaging.version import InvalidVersion, Version

from runtime.core import graph
from runtime.core.names import DEV_PREFIX, UNREGISTERED
from runtime.errors import Problem

if TYPE_CHECKING:
    # Only for types: the no-op path (`runtime.db.quick`) plans a manifest with this
    # module and must not import SQLAlchemy, which `runtime.core.model` does.
    from runtime.core.model import Migration, Package

__all__ = [
    "Ledger",
    "PackageStatus",
    "Plan",
    "Planned",
    "PlannedMigration",
    "Step",
    "build_order",
    "dev_change_id",
    "is_up_to_date",
    "package_status",
    "plan_pending",
    "split_transactions",
]


def dev_change_id(package: Package) -> str:
    """Return the ledger id of a dev change bringing `package` to its declared schema."""
    return f"{DEV_PREFIX}{package.fingerprint}"


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


@dataclass(frozen=True)
class Step:
    """One migration to run; `rerun` when it was applied before and has been edited."""

    package: Package
    migration: Migration
    rerun: bool = False


@dataclass(frozen=True)
class Plan:
    """What a run does, or the problems that stop it.

    Attributes:
        steps: the migrations to run, in order.
        records: the packages whose version or fingerprint the ledger must record.
        unregistered: packages recorded in the database and registered no more, whose
            tools the run deactivates.
        problems: why nothing may run (Y301 edited migrations, Y302 downgrades).
    """

    steps: tuple[Step, ...] = ()
    records: tuple[Package, ...] = ()
    unregistered: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to run, record or deactivate: a run would write nothing."""
        return not self.steps and not self.records and not self.unregistered

    def pending(self, package: str) -> list[str]:
        """The ids of the migrations this plan runs for `package`."""
        return [s.migration.id for s in self.steps if s.package.name == package]


def _edited(package: Planned, migration: PlannedMigration, recorded: str) -> Problem:
    return Problem(
        package.name, "Y301",
        f"migration {migration.id} was edited after it was applied "
        f"(checksum recorded {recorded[:12]}, now {migration.checksum[:12]})",
        "restore its applied content and put the change in a new migration; "
        "the dev daemon re-runs edited migrations on a dev database",
        migration=migration.id,
    )


def _downgrade(package: Planned, recorded: str) -> Problem | None:
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


def _unregistered(ledger: Ledger, registered: Collection[str]) -> tuple[str, ...]:
    return tuple(sorted(name for name, (_version, fingerprint) in ledger.recorded.items()
                        if name not in registered and fingerprint != UNREGISTERED))


def _compare(
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


def plan_pending(
    packages: Sequence[Package],
    ledger: Ledger,
    *,
    rerun_edited: bool = False,
    complete: bool = False,
    unregistered: Iterable[str] = (),
) -> Plan:
    """Plan a run: pending migrations of `packages` (in the given, dependency, order).

    Args:
        packages: packages in dependency order, the core first.
        ledger: what the database recorded.
        rerun_edited: re-run an applied migration whose checksum changed (the dev daemon)
            instead of reporting it as a problem.
        complete: `packages` is every registered package (a full run), so a package the
            ledger records and `packages` lacks is unregistered.
        unregistered: packages the caller knows it unregistered (a partial run).
    """
    steps: list[Step] = []
    records: list[Package] = []
    problems: list[Problem] = []
    for package in packages:
        downgrade, differing, record = _compare(package, ledger)
        if downgrade is not None:
            problems.append(downgrade)
            continue
        for index, recorded in differing:
            migration = package.migrations[index]
            if not recorded:
                steps.append(Step(package, migration))
            elif rerun_edited:
                steps.append(Step(package, migration, rerun=True))
            else:
                problems.append(_edited(package, migration, recorded))
        if record:
            records.append(package)
    if problems:
        return Plan(problems=tuple(problems))
    unregistered = tuple(unregistered)
    if not complete and not unregistered:
        return Plan(tuple(steps), tuple(records))
    registered = {p.name for p in packages}
    gone = set(_unregistered(ledger, registered)) if complete else set()
    gone |= {name for name in unregistered if name not in registered}
    return Plan(tuple(steps), tuple(records), tuple(sorted(gone)))


def is_up_to_date(packages: Iterable[Planned], ledger: Ledger) -> bool:
    """Tell whether a full run of `packages` would write nothing and report nothing.

    The same comparison as `plan_pending(packages, ledger, complete=True)`, for what
    is not a `Package`: a manifest's entries (`runtime.core.manifest`), which the no-op
    path reads without importing SQLAlchemy.
    """
    packages = list(packages)
    for package in packages:
        downgrade, differing, record = _compare(package, ledger)
        if downgrade is not None or differing or record:
            return False
    return not _unregistered(ledger, {p.name for p in packages})


def split_transactions(steps: Iterable[Step]) -> list[list[Step]]:
    """Group steps into transactions: runs of transactional steps, and each other one alone."""
    groups: list[list[Step]] = []
    for step in steps:
        if step.migration.transactional and groups and groups[-1][-1].migration.transactional:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


@dataclass(frozen=True)
class PackageStatus:
    """Where one package stands against the ledger (`python -m runtime status`)."""

    package: str
    version: str
    recorded_version: str | None
    applied: tuple[str, ...]
    pending: tuple[str, ...]
    edited: tuple[str, ...]
    unknown: tuple[str, ...]
    dev: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """No pending or edited migrations, and the recorded version is the registered one."""
        return not self.pending and not self.edited and self.recorded_version == self.version


def package_status(packages: Sequence[Package], ledger: Ledger) -> list[PackageStatus]:
    """Compare each package with the ledger.

    `edited` lists applied migrations whose content changed; `unknown` lists applied
    migrations the package no longer declares (deleted or renamed files); `dev` lists the
    dev changes no migration has taken over yet.
    """
    statuses = []
    for package in packages:
        applied, pending, edited = [], [], []
        for migration in package.migrations:
            checksum = ledger.applied.get((package.name, migration.id))
            if checksum is None:
                pending.append(migration.id)
            else:
                applied.append(migration.id)
                if checksum != migration.checksum:
                    edited.append(migration.id)
        declared = {m.id for m in package.migrations}
        unknown = sorted(m for m in ledger.applied_ids(package.name) if m not in declared)
        recorded = ledger.recorded.get(package.name)
        statuses.append(PackageStatus(
            package.name, package.version_text, recorded[0] if recorded else None,
            tuple(applied), tuple(pending), tuple(edited), tuple(unknown),
            tuple(ledger.dev.get(package.name, ()))))
    return statuses


def build_order(packages: Iterable[Package], name: str) -> list[Package]:
    """Return the packages whose migrations build package `name` on an empty database.

    That is the core, the package's transitive dependencies found in `packages`, and
    the package itself, in dependency order (the core first, then ties by name).
    """
    from runtime.core.model import dependency_graph  # SQLAlchemy: see the imports

    by_name = {p.name: p for p in packages}
    full = dependency_graph(by_name.values())
    needed = ({name} | graph.reachable(full, [name])) & set(by_name)
    sub = {n: tuple(d for d in full[n] if d in needed) for n in needed}
    return [by_name[n] for n in graph.dependency_order(sub)]
