"""The rules on tools and row-level security (Y13x, Y208), and what the fingerprint covers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

from runtime.core import ddl, fingerprint, validation
from runtime.core.model import Package, Tool
from runtime.core.registry import DatabaseRegistry
from runtime.errors import ValidationError

TIMER = Tool("timer", "Timer", "Track time.", "clock")


def schema(table: str = "ydtb_notes") -> MetaData:
    metadata = MetaData()
    Table(table, metadata, Column("id", Integer, primary_key=True),
          Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False))
    return metadata


def build(**overrides: Any) -> Package:
    arguments: dict[str, Any] = {"package_name": "@acme/notes", "schema": schema(),
                                 "migrations": None, "dependencies": (), "version": "1.0.0",
                                 **overrides}
    package, problems = validation.build_package(**arguments)
    assert problems == []
    assert package is not None
    return package


@pytest.mark.parametrize(("tools", "rls", "expected"), [
    pytest.param(["timer"], False, "tool 'timer' is not a Tool (wrap it: Tool(id='timer', "
                 "name='Timer')) [Y130]", id="not-a-tool"),
    pytest.param([Tool("Timer!", "Timer")], False, "tool id 'Timer!' is not valid (use 1 to 20 "
                 "lower case letters, digits, '_' or '-', starting with a letter) [Y131]",
                 id="bad-id"),
    pytest.param([Tool("a" * 21, "A")], False, f"tool id '{'a' * 21}' is not valid (use 1 to 20 "
                 "lower case letters, digits, '_' or '-', starting with a letter) [Y131]",
                 id="long-id"),
    pytest.param([Tool("timer\n", "Timer")], False, "tool id 'timer\\n' is not valid (use 1 to "
                 "20 lower case letters, digits, '_' or '-', starting with a letter) [Y131]",
                 id="id-trailing-newline"),
    pytest.param([TIMER, Tool("timer", "Other")], False, "tool id 'timer' is used twice (give "
                 "each tool its own id) [Y132]", id="twice"),
    pytest.param([Tool("timer", " ")], False, "tool 'timer' has no name (give it the name "
                 "people see, e.g. Tool(..., name='Timer')) [Y133]", id="no-name"),
    pytest.param([Tool("timer", "T" * 201)], False, "tool 'timer' name is 201 characters long "
                 "(shorten it to 200 at most) [Y133]", id="long-name"),
    pytest.param([Tool("timer", "Timer", icon=None)], False,  # type: ignore[arg-type]
                 "tool 'timer' icon is None (give an icon name, or leave it out) [Y133]",
                 id="icon-none"),
    pytest.param([Tool("timer", "Timer", description=3)], False,  # type: ignore[arg-type]
                 "tool 'timer' description is 3 (give a text, or leave it out) [Y133]",
                 id="description-not-text"),
    pytest.param([], "yes", "row_level_security is 'yes' (set it to True or False) [Y134]",
                 id="rls-not-bool"),
])
def test_broken_tools_are_reported(tools: list[Any], rls: Any, expected: str) -> None:
    package, problems = validation.build_package(
        package_name="@acme/notes", schema=schema(), migrations=None, dependencies=(),
        version="1.0.0", tools=tools, row_level_security=rls)

    assert package is None
    assert [f"{p.package}: {p.message} ({p.hint}) [{p.code}]" for p in problems] == [
        f"@acme/notes: {expected}"]


def test_a_package_with_broken_tools_is_not_registered() -> None:
    registry = DatabaseRegistry(send_signals=False)

    with pytest.raises(ValidationError, match=r"\[Y131\]"):
        registry.register_database(package_name="@acme/notes", schema=schema(),
                                   version="1.0.0", tools=[Tool("", "Nothing")])

    assert "@acme/notes" not in registry


def test_a_tool_provided_by_two_packages_is_refused() -> None:
    registry = DatabaseRegistry(send_signals=False)
    registry.register_database(package_name="@acme/timer", schema=schema("ydtb_timer"),
                               version="1.0.0", tools=[TIMER])

    with pytest.raises(ValidationError) as caught:
        registry.register_database(package_name="@acme/clock", schema=schema("ydtb_clock"),
                                   version="1.0.0", tools=[Tool("timer", "Clock")])

    assert str(caught.value) == (
        "1 validation problem:\n  - @acme/clock: tool 'timer' is also provided by @acme/timer "
        "(a tool has one provider: change one of the ids) [Y208]")


def test_the_fingerprint_covers_tools_and_row_level_security_only_when_there_are_any() -> None:
    plain = build()
    assert plain.fingerprint == ddl.fingerprint(fingerprint.describe(plain.tables))
    fingerprints = {plain.fingerprint, build(tools=[TIMER]).fingerprint,
                    build(tools=[Tool("timer", "Timer", "Track time.", "watch")]).fingerprint,
                    build(row_level_security=True).fingerprint}
    assert len(fingerprints) == 4
    other = Tool("clock", "Clock")
    assert build(tools=[TIMER, other]).fingerprint == build(tools=[other, TIMER]).fingerprint
