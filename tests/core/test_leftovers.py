"""Finding what no registered package owns, from the ledger and the tables present. No database."""

from __future__ import annotations

from collections.abc import Callable

from runtime.core.leftovers import Leftovers, Removed, find_leftovers
from runtime.core.model import Package
from runtime.core.recorded import Ledger
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_TABLES


def test_each_table_is_listed_once_under_whom_it_was_recorded_for(
    registry: DatabaseRegistry, register: Callable[..., Package]
) -> None:
    register("notes", "ydtb_notes")
    ledger = Ledger(applied={("notes", "0001"): "c", ("old", "0001"): "c", ("old", "0002"): "c",
                             ("ghost", "0001"): "c"},
                    recorded={"notes": ("1.0.0", "f"), "old": ("2.0.0", "unregistered"),
                              "vague": ("1.0.0", "f")},
                    dev={"old": ("dev:1",)})
    tables = {"notes": ("ydtb_notes",), "old": ("ydtb_gone", "ydtb_notes", "ydtb_old"),
              "ghost": ()}
    present = {*CORE_TABLES, "ydtb_notes", "ydtb_old", "handmade"}

    found = find_leftovers(registry.ordered(), ledger, tables, present)

    # ydtb_notes is registered notes' now; ydtb_gone is no longer in the database.
    assert found == Leftovers(
        removed=(Removed("ghost", None, (), 1), Removed("old", "2.0.0", ("ydtb_old",), 3),
                 Removed("vague", "1.0.0", None, 0)),
        unowned=("handmade",))
    assert found.get("old") is found.removed[1] and found.get("notes") is None


def test_a_database_holding_only_what_is_registered_has_no_leftovers(
    registry: DatabaseRegistry, register: Callable[..., Package]
) -> None:
    register("notes", "ydtb_notes")
    ledger = Ledger(recorded={"notes": ("1.0.0", "f"), "@ydtb/core": ("1.0.0", "f")})

    assert find_leftovers(registry.ordered(), ledger, {}, {*CORE_TABLES, "ydtb_notes"}) == \
        Leftovers()
