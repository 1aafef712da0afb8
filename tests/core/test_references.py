"""Keys between workspace tables, on the declared schema (Y115, Y210, Y211), no database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, String, Table

from runtime import kit
from runtime.core.registry import DatabaseRegistry
from runtime.errors import ValidationError


def notes(registry: DatabaseRegistry, *extra: Any) -> None:
    metadata = kit.metadata()
    kit.workspace_table("ydtb_notes", metadata, Column("id", Integer, primary_key=True), *extra)
    registry.register_database(package_name="@t/notes", schema=metadata, version="1.0.0")


def tasks(registry: DatabaseRegistry, *extra: Any) -> list[str]:
    metadata = kit.metadata()
    kit.workspace_table("ydtb_tasks", metadata, Column("id", Integer, primary_key=True),
                        Column("note_id", Integer), *extra)
    try:
        registry.register_database(package_name="@t/tasks", schema=metadata, version="1.0.0",
                                   dependencies=["@t/notes"])
    except ValidationError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_a_key_inside_the_workspace_onto_its_unique_key_is_accepted() -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, kit.workspace_key())

    assert tasks(registry, kit.workspace_reference("note_id", "ydtb_notes",
                                                   ondelete="SET NULL")) == []
    [key] = [k for k in registry.get("@t/tasks").tables[0].foreign_key_constraints
             if k.elements[0].target_fullname.startswith("ydtb_notes")]
    assert key.ondelete == "SET NULL (note_id)"


def test_a_key_by_id_alone_is_refused_with_the_one_line_fix() -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, kit.workspace_key())
    problems = tasks(registry, Column("other_id", Integer, ForeignKey("ydtb_notes.id")))

    assert problems == [
        "@t/tasks: table 'ydtb_tasks' key other_id -> ydtb_notes leaves workspace_id out: a "
        "row of one workspace could point at a row of another (key workspace_id and other_id "
        "together onto workspace_id and id with runtime.kit.workspace_reference('other_id', "
        "'ydtb_notes'), or, if it must cross workspaces, say why with info={'cross_workspace':"
        " '...'} and ondelete='SET NULL') [Y210]"]


@pytest.mark.parametrize("action", ["SET NULL", "SET DEFAULT"])
def test_a_bare_set_null_would_null_workspace_id_too(action: str) -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry, kit.workspace_key())
    key = kit.workspace_reference("note_id", "ydtb_notes")
    key.ondelete = action

    [problem] = tasks(registry, key)

    assert problem.endswith(f"is ON DELETE {action}, which would set workspace_id too (name "
                            f"the columns it sets: ondelete='{action} (note_id)') [Y210]")


def test_the_target_needs_a_unique_key_and_its_owner_is_asked() -> None:
    registry = DatabaseRegistry(send_signals=False)
    notes(registry)  # no workspace_key()

    [problem] = tasks(registry, kit.workspace_reference("note_id", "ydtb_notes"))

    assert problem == (
        "@t/tasks: table 'ydtb_tasks' key (workspace_id, note_id) -> ydtb_notes references "
        "(workspace_id, id), which is no unique key of ydtb_notes (ask @t/notes, which owns "
        "ydtb_notes, to add runtime.kit.workspace_key() to it) [Y211]")


def test_a_key_into_the_workspaces_cascades() -> None:
    registry = DatabaseRegistry(send_signals=False)
    metadata = kit.metadata()
    Table("ydtb_loose", metadata, Column("id", Integer, primary_key=True),
          Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id"), nullable=False))

    with pytest.raises(ValidationError) as caught:
        registry.register_database(package_name="@t/loose", schema=metadata, version="1.0.0")

    assert [str(p) for p in caught.value.problems] == [
        "@t/loose: table 'ydtb_loose' key workspace_id into ydtb_workspaces is ON DELETE NO "
        "ACTION: deleting a workspace would stop at its rows (declare it ondelete='CASCADE', "
        "as runtime.kit.workspace_table does) [Y115]"]
