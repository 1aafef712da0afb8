"""Finding what no registered package owns, from the ledger and the tables present. No database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runtime.core.leftovers import Leftovers, Removed, Uninstall, find_leftovers, plan_uninstall
from runtime.core.model import Package
from runtime.core.recorded import Ledger
from runtime.core.registry import DatabaseRegistry
from runtime.core.schema import CORE_TABLES
from runtime.errors import UninstallRefusedError


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


def test_a_purge_keeps_a_table_another_removed_package_recorded_too(
    registry: DatabaseRegistry,
) -> None:
    core = registry.ordered()
    ledger = Ledger(applied={("@ydtb/core", m.id): m.checksum for m in core[0].migrations},
                    recorded={"old": ("1.0.0", "f"), "newer": ("2.0.0", "uninstalled")})
    tables = {"old": ("ydtb_old", "ydtb_moved"), "newer": ("ydtb_moved",)}
    found = find_leftovers(core, ledger, tables, {*CORE_TABLES, "ydtb_old", "ydtb_moved"})

    def plan(name: str, purge: bool) -> Uninstall:
        return plan_uninstall(name, purge=purge, registered=core, ledger=ledger,
                              leftovers=found, tables=tables)

    assert (plan("old", True).drop, plan("old", True).shared) == (("ydtb_old",), ("ydtb_moved",))
    assert plan("old", False).drop == () and not plan("old", False).done
    assert plan("newer", False).done and not plan("newer", True).done


def test_uninstall_waits_for_the_ledger_to_be_as_new_as_the_runtime(
    registry: DatabaseRegistry,
) -> None:
    core = registry.ordered()
    ledger = Ledger(applied={("@ydtb/core", "0001_core_tables"): "c"},
                    recorded={"old": ("1.0.0", "f")})

    with pytest.raises(UninstallRefusedError, match="run python -m runtime migrate first"):
        plan_uninstall("old", purge=True, registered=core, ledger=ledger,
                       leftovers=find_leftovers(core, ledger, {}, set()), tables={})
