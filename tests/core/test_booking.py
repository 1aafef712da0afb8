"""How dev changes are booked object by object, and when a row is settled: no database."""

from __future__ import annotations

import pytest

from runtime.core import booking
from runtime.core.booking import ObjectKey
from runtime.core.events import Difference


def difference(kind: str, name: str | None = "color") -> Difference:
    return Difference(kind, "ydtb_notes", name, "words", False, ())


@pytest.mark.parametrize(("kind", "name", "key"), [
    ("add_table", None, "table ydtb_notes"),
    ("remove_table", None, "table ydtb_notes"),
    ("add_column", "color", "column ydtb_notes.color"),
    ("modify_type", "color", "column ydtb_notes.color"),
    ("modify_nullable", "color", "column ydtb_notes.color"),
    ("remove_index", "ix_color", "index ydtb_notes.ix_color"),
    ("add_fk", "ydtb_notes_tool_id_fkey", "constraint ydtb_notes.ydtb_notes_tool_id_fkey"),
    ("add_constraint", "ck_positive", "constraint ydtb_notes.ck_positive"),
    ("modify_constraint", "ck_positive", "constraint ydtb_notes.ck_positive"),
    ("modify_fk", "fk_tool", "constraint ydtb_notes.fk_tool"),
    ("modify_index", "ix_color", "index ydtb_notes.ix_color"),
    # A kind named nowhere here: the whole table is judged.
    ("add_enum_value", None, "whole ydtb_notes"),
    ("modify_check", "ck_positive", "whole ydtb_notes"),
], ids=lambda value: str(value))
def test_a_difference_is_booked_under_the_object_it_is_about(
    kind: str, name: str | None, key: str
) -> None:
    [found] = booking.keys_of(difference(kind, name))
    assert str(found) == key
    assert ObjectKey.parse(key) == found


def test_a_row_id_names_its_change_and_object_and_an_old_one_its_change_alone() -> None:
    key = ObjectKey("column", "ydtb_notes", "color")
    assert booking.row_id("dev:abc", key) == "dev:abc column ydtb_notes.color"
    assert booking.parse_row("dev:abc column ydtb_notes.color") == ("dev:abc", key)
    assert booking.parse_row("dev:abc") == ("dev:abc", None)
    assert booking.changes_of(["dev:b index t.i", "dev:a", "dev:b table t"]) == {
        "dev:a": (), "dev:b": (ObjectKey("index", "t", "i"), ObjectKey("table", "t"))}
    assert booking.tables_of(["dev:a", "dev:b index t.i"]) == {"t"}


def test_a_table_a_change_created_stands_for_its_objects_in_short() -> None:
    keys = [ObjectKey("column", "ydtb_tags", "id"), ObjectKey("table", "ydtb_tags"),
            ObjectKey("column", "ydtb_notes", "color")]
    assert booking.summary(keys) == "column ydtb_notes.color, table ydtb_tags"


COLOR, TAGS = ObjectKey("column", "t", "color"), ObjectKey("table", "tags")


@pytest.mark.parametrize(("dev", "migrated", "settled"), [
    pytest.param({COLOR: "text"}, {COLOR: "text"}, ["dev:a column t.color"], id="built-alike"),
    pytest.param({COLOR: "text"}, {}, [], id="not-built"),
    pytest.param({COLOR: "bigint"}, {COLOR: "integer"}, [], id="built-otherwise"),
    pytest.param({}, {}, ["dev:a column t.color"], id="dropped-since-and-never-built"),
])
def test_a_row_is_settled_when_the_migrations_build_its_object_as_the_dev_database_has_it(
    dev: dict[ObjectKey, str], migrated: dict[ObjectKey, str], settled: list[str]
) -> None:
    assert booking.settled(["dev:a column t.color"], dev, migrated) == settled


def test_rows_are_settled_one_by_one_and_an_old_row_when_everything_agrees() -> None:
    rows = ["dev:a column t.color", "dev:a table tags", "dev:old"]
    dev = {COLOR: "text", TAGS: "r"}
    assert booking.settled(rows, dev, {COLOR: "text"}) == ["dev:a column t.color"]
    assert booking.settled(rows, dev, dict(dev)) == sorted(rows)
