"""Decide what a pipeline run must do from the packages and the ledger. No I/O.

The ledger holds one row per applied migration (never a high-water mark), so planning
is a set difference: every migration of every package, in dependency order, that has
no row. A row whose checksum differs from the migration's is an edited migration.

The dev daemon also records the schema changes it applied straight from a package's
declared schema (kind `dev`, one row per object: `dev:<fingerprint> <object>`,
`runtime.core.booking`). Those rows are not migrations:
they never make a migration applied, pending or unknown, and are listed on their own
until a migration takes them over.

The comparison of each package with the ledger is `runtime.core.recorded.compare`, the
same one the load cache's no-op path asks of a manifest (`is_up_to_date` there).

A package is recorded with the tables it declares. The run that creates the table they
are recorded in (the core's `0002_package_tables`) records every package it is given,
so a database migrated before it learns them all at once (`recorded_packages`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from runtime.config import TransactionMode
from runtime.core.names import CORE_PACKAGE, DEV_PREFIX, TABLES_MIGRATION
from runtime.core.recorded import Ledger, PlannedMigration, compare
from runtime.core.recorded import unregistered as unregistered_in
from runtime.errors import PROGRAM, Problem

if TYPE_CHECKING:
    # Only for types: `runtime.core.model` imports SQLAlchemy.
    from runtime.core.model import Migration, Package

__all__ = [
    "PackageStatus",
    "Plan",
    "Step",
    "build_order",
    "dev_change_id",
    "package_status",
    "plan_pending",
    "recorded_packages",
    "split_transactions",
]


def dev_change_id(package: Package) -> str:
    """Return the ledger id of a dev change bringing `package` to its declared schema."""
    return f"{DEV_PREFIX}{package.fingerprint}"


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

    @property
    def transactional(self) -> bool:
        """Whether its steps may run in a transaction: none is `no-transaction`."""
        return all(s.migration.transactional for s in self.steps)

    def pending(self, package: str) -> list[str]:
        """The ids of the migrations this plan runs for `package`."""
        return [s.migration.id for s in self.steps if s.package.name == package]


def _edited(package: Package, migration: PlannedMigration, recorded: str) -> Problem:
    checksums = f"checksum recorded {recorded[:12]}, now {migration.checksum[:12]}"
    # Imported on this error's path only: validation imports SQLAlchemy, which a
    # `migrate` of new SQL migrations does without (#17).
    from runtime.core.validation import derived_migration

    if derived_migration(package) is migration:
        # Derived from the schema (the package has no migrations): there is no file to
        # restore, and the schema is what changed.
        return Problem(
            package.name, "Y301",
            f"migration {migration.id}, derived from its schema, changed with the schema "
            f"after it was applied ({checksums})",
            f"declare the schema as it was when applied, run {PROGRAM} makemigration "
            f"{package.name} to write that migration out as its first file, "
            "then declare the change and run makemigration again",
            migration=migration.id,
        )
    return Problem(
        package.name, "Y301",
        f"migration {migration.id} was edited after it was applied ({checksums})",
        "restore its applied content and put the change in a new migration; "
        "the dev daemon re-runs edited migrations on a dev database",
        migration=migration.id,
    )


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
        downgrade, differing, record = compare(package, ledger)
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
    to_record = recorded_packages(steps, records, packages)
    unregistered = tuple(unregistered)
    if not complete and not unregistered:
        return Plan(tuple(steps), to_record)
    registered = {p.name for p in packages}
    gone = set(unregistered_in(ledger, registered)) if complete else set()
    gone |= {name for name in unregistered if name not in registered}
    return Plan(tuple(steps), to_record, tuple(sorted(gone)))


def recorded_packages(
    steps: Sequence[Step], records: Sequence[Package], packages: Sequence[Package]
) -> tuple[Package, ...]:
    """Return the packages a run of `steps` records: `records`, the changed ones, or all
    of `packages` when the run creates the table of their tables (see the module doc).
    """
    if any(s.migration.id == TABLES_MIGRATION and s.package.name == CORE_PACKAGE
           for s in steps):
        return tuple(packages)
    return tuple(records)


def split_transactions(plan: Plan, mode: TransactionMode = TransactionMode.ALL) -> list[Plan]:
    """Cut `plan` into the transactions a run commits one after the other, in order.

    Each is a plan of its own: the steps it runs, the packages it records, the
    unregistered packages whose tools it deactivates. A `no-transaction` step is always
    alone (its ledger row is written just after it); the steps between run together in
    modes `all` and `package`, each alone in mode `migration`. A package's record goes
    with its last step, so a package is recorded in the transaction that completes it:

    - `all`: the whole plan, the records with the last step;
    - `package`: each package's steps and record, in the plan's order; packages with
      only a record to write (a schema edited with no migration) come after;
    - `migration`: as `package`, each step on its own.

    The unregistered packages go with the last transaction, or one of their own.
    """
    scopes: dict[str | None, tuple[list[Step], list[Package]]] = {}
    for step in plan.steps:
        scopes.setdefault(_scope(step.package, mode), ([], []))[0].append(step)
    for package in plan.records:
        scopes.setdefault(_scope(package, mode), ([], []))[1].append(package)
    units: list[Plan] = []
    for steps, records in scopes.values():
        groups = _groups(steps, alone=mode is TransactionMode.MIGRATION) or [[]]
        units.extend(Plan(tuple(group)) for group in groups[:-1])
        units.append(Plan(tuple(groups[-1]), tuple(records)))
    if plan.unregistered:
        last = units.pop() if units else Plan()
        units.append(replace(last, unregistered=plan.unregistered))
    return units


def _scope(package: Package, mode: TransactionMode) -> str | None:
    return None if mode is TransactionMode.ALL else package.name


def _groups(steps: Iterable[Step], *, alone: bool) -> list[list[Step]]:
    """Runs of transactional steps (each step alone if `alone`); a `no-transaction` one alone."""
    groups: list[list[Step]] = []
    for step in steps:
        if (not alone and step.migration.transactional and groups
                and groups[-1][-1].migration.transactional):
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
    from runtime.core import graph  # see the imports
    from runtime.core.model import dependency_graph

    by_name = {p.name: p for p in packages}
    full = dependency_graph(by_name.values())
    needed = ({name} | graph.reachable(full, [name])) & set(by_name)
    sub = {n: tuple(d for d in full[n] if d in needed) for n in needed}
    return [by_name[n] for n in graph.dependency_order(sub)]
