"""Planning against the ledger: dev changes stay apart from migrations. No database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runtime.config import TransactionMode
from runtime.core.model import Migration, Package
from runtime.core.plan import (
    Plan,
    Step,
    build_order,
    dev_change_id,
    package_status,
    plan_pending,
    split_transactions,
)
from runtime.core.recorded import Ledger
from runtime.core.registry import DatabaseRegistry


def test_dev_changes_are_neither_applied_pending_nor_unknown(
    registry: DatabaseRegistry, register: Callable[..., Package]
) -> None:
    notes = register("notes", "ydtb_notes", migrations=[Migration("0001_notes", "SELECT 1")])
    ledger = Ledger(applied={("notes", "0001_notes"): notes.migrations[0].checksum},
                    recorded={"notes": ("1.0.0", notes.fingerprint)},
                    dev={"notes": (dev_change_id(notes),)})

    [status] = package_status([notes], ledger)

    assert (status.applied, status.pending, status.unknown) == (("0001_notes",), (), ())
    assert status.dev == (f"dev:{notes.fingerprint}",)
    assert status.up_to_date
    assert plan_pending([notes], ledger).empty


def test_build_order_is_the_core_the_dependencies_and_the_package(
    registry: DatabaseRegistry, register: Callable[..., Package]
) -> None:
    register("a", "ydtb_a")
    register("b", "ydtb_b", dependencies=["a"])
    register("c", "ydtb_c", dependencies=["b"])
    register("unrelated", "ydtb_unrelated")

    shuffled = list(reversed(registry.ordered()))

    assert [p.name for p in build_order(shuffled, "c")] == ["@ydtb/core", "a", "b", "c"]
    assert [p.name for p in build_order(shuffled, "a")] == ["@ydtb/core", "a"]


def test_plan_compares_recorded_versions_as_versions_and_records_a_new_text(
    registry: DatabaseRegistry, register: Callable[..., Package]
) -> None:
    notes = register("notes", "ydtb_notes", version="1.0.0",
                     migrations=[Migration("0001_notes", "SELECT 1")])
    applied = {("notes", "0001_notes"): notes.migrations[0].checksum}

    def plan(recorded: str) -> tuple[list[str], list[str]]:
        result = plan_pending([notes], Ledger(applied, {"notes": (recorded, notes.fingerprint)}))
        return [p.code for p in result.problems], [p.name for p in result.records]

    assert plan("1.0.0") == ([], [])
    assert plan("1.0") == ([], ["notes"])  # the same version, recorded again as "1.0.0"
    assert plan("0.9") == ([], ["notes"])
    assert plan("1.0.1") == (["Y302"], [])
    assert plan("not a version") == ([], ["notes"])


def _described(units: list[Plan]) -> list[str]:
    """Each transaction as `a:1 a:2 | records a | unregistered old`, `~` marking no-transaction."""
    return [" ".join([*(f"{s.package.name}:{s.migration.id}" + ("" if s.migration.transactional
                                                                else "~") for s in unit.steps),
                      *(f"+{p.name}" for p in unit.records),
                      *(f"-{name}" for name in unit.unregistered)])
            for unit in units]


@pytest.fixture
def rollout(register: Callable[..., Package]) -> Plan:
    """Two packages, b after a: a has two migrations, b a lone CONCURRENTLY one between two;
    a record-only package c, and an unregistered one."""
    a = register("a", "ydtb_a", migrations=[Migration("1", "SELECT 1"), Migration("2", "SELECT 2")])
    b = register("b", "ydtb_b", dependencies=["a"], migrations=[
        Migration("1", "SELECT 1"), Migration("2", "SELECT 2", transactional=False),
        Migration("3", "SELECT 3")])
    c = register("c", "ydtb_c")
    steps = [Step(p, m) for p in (a, b) for m in p.migrations]
    return Plan(tuple(steps), (a, b, c), ("old",))


@pytest.mark.parametrize(("mode", "expected"), [
    pytest.param(TransactionMode.ALL, ["a:1 a:2 b:1", "b:2~", "b:3 +a +b +c -old"], id="all"),
    pytest.param(TransactionMode.PACKAGE,
                 ["a:1 a:2 +a", "b:1", "b:2~", "b:3 +b", "+c -old"], id="package"),
    pytest.param(TransactionMode.MIGRATION,
                 ["a:1", "a:2 +a", "b:1", "b:2~", "b:3 +b", "+c -old"], id="migration"),
])  # fmt: skip
def test_split_transactions_commits_each_unit_with_its_records(
    rollout: Plan, mode: TransactionMode, expected: list[str]
) -> None:
    units = split_transactions(rollout, mode)

    assert _described(units) == expected
    assert [s for unit in units for s in unit.steps] == list(rollout.steps)  # in order, once
    assert [unit.transactional for unit in units] == ["~" not in e for e in expected]


@pytest.mark.parametrize("mode", list(TransactionMode), ids=str)
def test_split_transactions_of_an_empty_plan_is_no_transaction(mode: TransactionMode) -> None:
    assert split_transactions(Plan(), mode) == []


@pytest.mark.parametrize("mode", list(TransactionMode), ids=str)
def test_a_package_ending_outside_a_transaction_is_recorded_with_its_ledger_row(
    register: Callable[..., Package], mode: TransactionMode
) -> None:
    a = register("a", "ydtb_a", migrations=[
        Migration("1", "SELECT 1"), Migration("2", "SELECT 2", transactional=False)])

    units = split_transactions(Plan(tuple(Step(a, m) for m in a.migrations), (a,)), mode)

    assert _described(units)[-1] == "a:2~ +a"


def test_only_unregistered_packages_make_one_transaction() -> None:
    assert _described(split_transactions(Plan(unregistered=("old",)),
                                         TransactionMode.PACKAGE)) == ["-old"]
