from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.core.model import Migration, migration_sort_key
from runtime.core.registry import DatabaseRegistry

NOTES = "CREATE TABLE ydtb_notes (id serial PRIMARY KEY)"
PINNED = "ALTER TABLE ydtb_notes ADD COLUMN pinned boolean"


async def add_pinned(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql(PINNED)


async def add_archived(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql("ALTER TABLE ydtb_notes ADD COLUMN archived boolean")


def test_checksum_is_sha256_of_the_stripped_sql() -> None:
    migration = Migration("0001_notes", up=f"\n  {NOTES}  \n")

    assert migration.checksum == hashlib.sha256(NOTES.encode()).hexdigest()
    assert migration.short_checksum == migration.checksum[:12]


def test_checksum_is_stable_for_the_same_sql() -> None:
    assert Migration("0001_a", up=NOTES).checksum == Migration("0001_b", up=NOTES).checksum


def test_checksum_changes_when_the_sql_changes() -> None:
    edited = NOTES.replace("serial", "bigserial")

    assert Migration("0001_a", up=NOTES).checksum != Migration("0001_a", up=edited).checksum


def test_checksum_of_a_list_depends_on_each_statement_and_their_order() -> None:
    both = Migration("0001_a", up=[NOTES, PINNED])

    assert both.checksum == Migration("0001_a", up=(NOTES, PINNED)).checksum
    assert both.checksum != Migration("0001_a", up=[PINNED, NOTES]).checksum
    assert both.checksum != Migration("0001_a", up=[NOTES]).checksum
    assert both.checksum != Migration("0001_a", up=NOTES).checksum


def test_checksum_of_a_one_statement_list_equals_the_string() -> None:
    # Wrapping the same SQL in a list is not an edit: the same statement runs.
    assert Migration("0001_a", up=[NOTES]).checksum == Migration("0001_a", up=NOTES).checksum


def test_checksum_of_a_callable_comes_from_its_source() -> None:
    first = Migration("0002_pinned", up=add_pinned)

    assert first.checksum == Migration("0002_pinned", up=add_pinned).checksum
    assert first.checksum != Migration("0002_pinned", up=add_archived).checksum
    assert first.checksum != Migration("0002_pinned", up=PINNED).checksum


def test_checksum_is_not_compared() -> None:
    assert Migration("0001_a", up=NOTES) == Migration("0001_a", up=NOTES)
    assert Migration("0001_a", up=NOTES) != Migration("0001_a", up=PINNED)


@pytest.mark.parametrize(
    ("up", "statements"),
    [
        pytest.param(NOTES, (NOTES,), id="str"),
        pytest.param([NOTES, PINNED], (NOTES, PINNED), id="list"),
        pytest.param(add_pinned, None, id="callable"),
    ],
)
def test_statements(up: object, statements: tuple[str, ...] | None) -> None:
    assert Migration("0001_a", up=up).statements == statements  # type: ignore[arg-type]


def test_migration_sort_key_sorts_by_number() -> None:
    ids = ["10_x", "9_y", "0002_b", "0001_a", "100-z", "0001"]
    ordered = sorted(ids, key=migration_sort_key)

    assert ordered == ["0001", "0001_a", "0002_b", "9_y", "10_x", "100-z"]


@pytest.mark.parametrize(
    ("migration_id", "key"),
    [
        pytest.param("0007_add_pinned", (7, "0007_add_pinned"), id="number-and-name"),
        pytest.param("12", (12, "12"), id="number-only"),
        pytest.param("add_pinned", (-1, "add_pinned"), id="unsortable-first"),
        pytest.param("7x", (-1, "7x"), id="no-separator"),
        pytest.param("0001_a\n", (-1, "0001_a\n"), id="trailing-newline"),
    ],
)
def test_migration_sort_key(migration_id: str, key: tuple[int, str]) -> None:
    assert migration_sort_key(migration_id) == key


@pytest.mark.parametrize("version", ["1.0", "1.0.0", "2.1rc1", "1!2.0.post3"])
def test_version_text_is_the_version_as_registered_and_recorded(version: str) -> None:
    registry = DatabaseRegistry(send_signals=False)
    package = registry.register_database(package_name="notes", schema=MetaData(),
                                         version=version)

    # "1.0" and "1.0.0" are equal versions; the ledger keeps what was written.
    assert package.version_text == str(package.version) == version
