"""Planning against the ledger: dev changes stay apart from migrations. No database."""

from __future__ import annotations

from collections.abc import Callable

from runtime.core.model import Migration, Package
from runtime.core.plan import build_order, dev_change_id, package_status, plan_pending
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
