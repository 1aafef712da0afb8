from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.core.model import Migration, migration_sort_key
from runtime.core.registry import DatabaseRegistry
from runtime.errors import ValidationError

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


UP_HINT = "give it SQL text, a list of SQL texts or an async up(conn) function"


@pytest.mark.parametrize(("arguments", "problems"), [
    pytest.param({"id": 5, "up": NOTES}, ["id is 5, not a string (give it an id like "
                                          "'0001_create_notes') [Y110]"], id="id-int"),
    pytest.param({"id": "0001_a", "up": 5}, ["up of migration '0001_a' is 5, not SQL or a "
                                             f"function ({UP_HINT}) [Y112]"], id="up-int"),
    pytest.param({"id": "0001_a", "up": None}, ["up of migration '0001_a' is None, not SQL or "
                                                f"a function ({UP_HINT}) [Y112]"], id="up-none"),
    pytest.param({"id": "0001_a", "up": [NOTES, None]},
                 ["up of migration '0001_a' is ['CREATE TABLE ydtb_notes (id serial PRIMARY "
                  f"KEY)', None], not SQL or a function ({UP_HINT}) [Y112]"],
                 id="up-none-in-list"),
    pytest.param({"id": "0001_a", "up": b"SELECT 1"},
                 [f"up of migration '0001_a' is b'SELECT 1', not SQL or a function ({UP_HINT}) "
                  "[Y112]"], id="up-bytes"),
    pytest.param({"id": "0001_a", "up": NOTES, "transactional": "no"},
                 ["transactional of migration '0001_a' is 'no' (set it to True or False) "
                  "[Y114]"], id="transactional-text"),
    pytest.param({"id": "0001_a", "up": NOTES, "source": 5},
                 ["source of migration '0001_a' is 5, not a string (give the file it comes "
                  "from, or leave it out) [Y114]"], id="source-int"),
    pytest.param({"id": "0001_a", "up": add_pinned, "text": 5},
                 ["text of migration '0001_a' is 5, not a string (give the text of the file "
                  "up is defined in, or leave it out) [Y114]"], id="text-int"),
    pytest.param({"id": None, "up": None},
                 ["id is None, not a string (give it an id like '0001_create_notes') [Y110]",
                  f"up is None, not SQL or a function ({UP_HINT}) [Y112]"], id="id-and-up"),
])
def test_a_wrong_argument_is_a_validation_error_naming_it(
    arguments: dict[str, object], problems: list[str]
) -> None:
    with pytest.raises(ValidationError) as info:
        Migration(**arguments)  # type: ignore[arg-type]

    count = f"{len(problems)} validation problem{'s' if len(problems) > 1 else ''}"
    assert str(info.value) == count + ":" + "".join(
        f"\n  - runtime.Migration: {p}" for p in problems)


@pytest.mark.parametrize("up", [
    pytest.param(NOTES, id="str"),
    pytest.param(" ", id="blank"),  # refused when its package registers (Y112)
    pytest.param((NOTES, PINNED), id="tuple"),
    pytest.param([], id="empty-list"),
    pytest.param(add_pinned, id="callable"),
])
def test_a_migration_of_the_right_types_is_made(up: object) -> None:
    assert Migration("0001_a", up=up).up is up  # type: ignore[arg-type]


ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=4),
                    st.lists(st.one_of(st.none(), st.integers()), max_size=2),
                    st.builds(object))


@settings(max_examples=200, deadline=None, database=None)
@given(migration_id=st.one_of(st.text(max_size=8), ANYTHING),
       up=st.one_of(st.text(max_size=8), st.lists(st.one_of(st.text(max_size=8), ANYTHING),
                                                  max_size=3), st.just(add_pinned), ANYTHING),
       transactional=st.one_of(st.booleans(), ANYTHING),
       source=st.one_of(st.none(), st.text(max_size=8), ANYTHING),
       text=st.one_of(st.none(), st.text(max_size=8), ANYTHING))
def test_a_migration_is_made_of_the_documented_types_or_refused(
    migration_id: object, up: object, transactional: object, source: object, text: object
) -> None:
    try:
        migration = Migration(migration_id, up=up, transactional=transactional,  # type: ignore[arg-type]
                              source=source, text=text)  # type: ignore[arg-type]
    except ValidationError as exc:  # only a ValidationError: anything else fails the test
        assert {p.package for p in exc.problems} == {"runtime.Migration"}
        return

    assert isinstance(migration.id, str)
    assert isinstance(migration.up, str) or callable(migration.up) or all(
        isinstance(s, str) for s in migration.up)
    assert isinstance(migration.transactional, bool)
    assert all(v is None or isinstance(v, str) for v in (migration.source, migration.text))
    assert len(migration.checksum) == 64


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
