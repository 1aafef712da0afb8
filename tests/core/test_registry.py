from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from packaging.version import Version
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Text
from sqlalchemy import event as sa_event

from runtime import kit
from runtime.core import ddl, graph, validation
from runtime.core.model import Migration, Package, Tool, dependency_graph
from runtime.core.registry import DatabaseRegistry, core_package
from runtime.core.schema import CORE_TABLES
from runtime.errors import (
    DependentsExistError,
    PackageNotFoundError,
    RegistryError,
    ValidationError,
)

Register = Callable[..., Package]
Event = tuple[str, object, dict[str, Any]]


def names(packages: list[Package]) -> list[str]:
    return [p.name for p in packages]


def test_a_new_registry_holds_only_the_core(registry: DatabaseRegistry) -> None:
    assert list(registry.packages) == ["@ydtb/core"]
    assert "@ydtb/core" in registry
    assert len(registry) == 1
    assert set(registry.get("@ydtb/core").table_names) == CORE_TABLES
    assert names(registry.ordered()) == ["@ydtb/core"]


def test_core_package_creates_every_core_table() -> None:
    core = core_package()

    statements = [s for m in core.migrations for s in m.statements or ()]
    created = {s.split()[5] for s in statements if s.startswith("CREATE TABLE")}
    assert created == set(CORE_TABLES)
    assert [m.id for m in core.migrations] == ["0001_core_tables", "0002_package_tables"]


def test_the_core_first_migration_reads_as_it_always_did() -> None:
    # Databases migrated before 0002 recorded this checksum: any other is an edited
    # migration (Y301) to every one of them. A new core table is a new migration.
    assert core_package().migrations[0].checksum == (
        "3ec8c309a3763edf85bd93b4fee805dfdd5ef30344577431d54b64d0139e7f4d")


def test_register_then_ordered_puts_the_core_first_then_dependencies(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/tags", "ydtb_tags", dependencies=["@acme/base"])
    register("@acme/base", "ydtb_base_items")
    register("0-first", "ydtb_first", dependencies=["@ydtb/core>=1.0"])
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/base", "@acme/tags"])

    assert names(registry.ordered()) == [
        "@ydtb/core", "0-first", "@acme/base", "@acme/tags", "@acme/notes",
    ]


def test_register_returns_the_package_and_records_it(
    registry: DatabaseRegistry, register: Register
) -> None:
    package = register("@acme/notes", "ydtb_notes")

    assert registry.get("@acme/notes") is package
    assert registry.packages["@acme/notes"] is package
    assert "@acme/notes" in registry
    assert list(registry) == [registry.get("@ydtb/core"), package]
    with pytest.raises(TypeError):
        registry.packages["@acme/other"] = package  # type: ignore[index]


def test_dependencies_may_register_after_their_dependents(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/base>=1.0"],
             fks={"ydtb_notes.item_id": "ydtb_base_items.id"})
    with pytest.raises(ValidationError):
        registry.ordered()

    register("@acme/base", "ydtb_base_items")

    assert names(registry.ordered()) == ["@ydtb/core", "@acme/base", "@acme/notes"]


def test_ordered_raises_one_error_listing_every_problem(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/base"])
    register("@acme/tags", "ydtb_tags", dependencies=["@acme/labels>=2"],
             fks={"ydtb_tags.person_id": "ydtb_people.id"})

    with pytest.raises(ValidationError) as info:
        registry.ordered()

    assert str(info.value) == (
        "3 validation problems:\n"
        "  - @acme/notes: depends on '@acme/base', which is not registered (register "
        "@acme/base, or remove it from dependencies) [Y201]\n"
        "  - @acme/tags: depends on '@acme/labels', which is not registered (register "
        "@acme/labels, or remove it from dependencies) [Y201]\n"
        "  - @acme/tags: table 'ydtb_tags' column 'person_id' references 'ydtb_people.id', "
        "which no registered package owns (fix the name, or register and depend on the "
        "package that owns it) [Y206]"
    )
    assert info.value.packages == ("@acme/notes", "@acme/tags")
    assert registry.problems() == list(info.value.problems)


def test_ordered_sees_later_registrations(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/base", "ydtb_base_items")
    assert names(registry.ordered()) == ["@ydtb/core", "@acme/base"]

    register("@acme/notes", dependencies=["@acme/base"])

    assert names(registry.ordered()) == ["@ydtb/core", "@acme/base", "@acme/notes"]


def test_a_registered_table_keeps_only_the_event_dispatchers_with_listeners(
    registry: DatabaseRegistry,
) -> None:
    # Each schema item keeps a dispatcher of its own once attached: 25,000 at N = 300
    # packages, 7 MB held for nothing (#17). One with a listener stays.
    metadata = kit.metadata()
    attached: list[str] = []
    note = Column("note", Text)
    sa_event.listen(note, "after_parent_attach", lambda column, table: attached.append(table.name))
    table = kit.workspace_table("ydtb_notes", metadata, Column("id", Integer, primary_key=True),
                                note, kit.workspace_key())
    assert len([item for item in ddl.schema_items(table) if "dispatch" in vars(item)]) > 5

    registry.register_database(package_name="@acme/notes", schema=metadata, version="1.0.0")

    # workspace_id's: its ForeignKey listens for the column's table.
    assert [item for item in ddl.schema_items(table) if "dispatch" in vars(item)] == [
        table.c.workspace_id, note]
    assert attached == ["ydtb_notes"]
    copy = table.to_metadata(MetaData())  # SQLAlchemy makes the dispatchers it needs again
    assert [c.name for c in copy.columns] == ["workspace_id", "id", "note"]


def test_a_copy_may_leave_the_dispatchers_to_drop_after_it_is_adopted(
    registry: DatabaseRegistry,
) -> None:
    # The dev daemon registers a reloaded package into such a copy: dropping them was
    # 1.4 ms of every reload, done after the reload is announced (#14).
    copy = registry.copy(shed=False)
    table = kit.workspace_table("ydtb_notes", (metadata := kit.metadata()),
                                Column("id", Integer, primary_key=True), kit.workspace_key())
    copy.register_database(package_name="@acme/notes", schema=metadata, version="1.0.0")
    assert len([item for item in ddl.schema_items(table) if "dispatch" in vars(item)]) > 5

    registry.adopt(copy)
    registry.shed(["@acme/notes", "@acme/gone"])

    assert [item for item in ddl.schema_items(table) if "dispatch" in vars(item)] == [
        table.c.workspace_id]


def test_a_registry_of_one_command_keeps_the_dispatchers() -> None:
    # A command's process returns the memory as it ends: shedding was a tenth of
    # loading 300 packages (`check --no-cache`, #17).
    registry = DatabaseRegistry(send_signals=False, shed=False)
    table = kit.workspace_table("ydtb_notes", (metadata := kit.metadata()),
                                Column("id", Integer, primary_key=True), kit.workspace_key())
    registry.register_database(package_name="@acme/notes", schema=metadata, version="1.0.0")

    assert len([item for item in ddl.schema_items(table) if "dispatch" in vars(item)]) > 5
    # A copy of it is one too (a `migrate` loads the changed packages into a copy).
    tags = kit.workspace_table("ydtb_tags", (tags_metadata := kit.metadata()),
                               Column("id", Integer, primary_key=True), kit.workspace_key())
    registry.copy().register_database(package_name="@acme/tags", schema=tags_metadata,
                                      version="1.0.0")
    assert len([item for item in ddl.schema_items(tags) if "dispatch" in vars(item)]) > 5


def test_registering_the_same_definition_again_changes_nothing(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    first = register("@acme/notes", "ydtb_notes", dependencies=["@ydtb/core>=1.0"])
    received.clear()

    again = register("@acme/notes", "ydtb_notes", dependencies=["@ydtb/core>=1.0"])

    assert again is first
    assert registry.get("@acme/notes") is first
    assert received == []


def test_registering_sends_package_registered(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    register("@acme/notes", "ydtb_notes", version="1.2")

    assert received == [
        ("package_registered", registry,
         {"package": "@acme/notes", "version": "1.2", "replaced": False}),
    ]


def test_a_new_definition_replaces_the_old_one(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    old = register("@acme/notes", "ydtb_notes")
    received.clear()

    new = register("@acme/notes", "ydtb_notes", "ydtb_tags", version="1.1.0")

    assert registry.get("@acme/notes") is new is not old
    assert new.table_names == ("ydtb_notes", "ydtb_tags")
    assert received == [
        ("package_registered", registry,
         {"package": "@acme/notes", "version": "1.1.0", "replaced": True}),
    ]


def test_a_changed_schema_with_the_same_version_is_a_replacement(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    old = register("@acme/notes", "ydtb_notes")
    received.clear()

    new = register("@acme/notes", "ydtb_notes", fks={"ydtb_notes.tool_id": "ydtb_tools.id"})

    assert new.fingerprint != old.fingerprint
    assert registry.get("@acme/notes") is new
    assert [kwargs["replaced"] for _, _, kwargs in received] == [True]


def _refused_replacement_cases() -> list[Any]:
    return [
        pytest.param(
            {"dependencies": ["@acme/notes"]},
            "@acme/base: dependency cycle @acme/base -> @acme/notes -> @acme/base (remove one "
            "of these dependencies) [Y203]",
            id="creates-a-cycle",
        ),
        pytest.param(
            {"version": "0.9"},
            "@acme/notes: requires @acme/base>=1.0, but @acme/base 0.9 is registered (upgrade "
            "@acme/base, or relax the specifier '>=1.0') [Y202]",
            id="version-no-longer-satisfies",
        ),
        pytest.param(
            {"tables": ()},
            "@acme/notes: table 'ydtb_notes' column 'item_id' references 'ydtb_base_items.id', "
            "which no registered package owns (fix the name, or register and depend on the "
            "package that owns it) [Y206]",
            id="removes-a-referenced-table",
        ),
    ]


@pytest.mark.parametrize(("change", "problem"), _refused_replacement_cases())
def test_a_replacement_that_breaks_the_set_is_refused(
    registry: DatabaseRegistry,
    register: Register,
    received: list[Event],
    change: dict[str, Any],
    problem: str,
) -> None:
    base = register("@acme/base", "ydtb_base_items")
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/base>=1.0"],
             fks={"ydtb_notes.item_id": "ydtb_base_items.id"})
    before = registry.ordered()
    received.clear()
    tables = change.pop("tables", ("ydtb_base_items",))

    with pytest.raises(ValidationError) as info:
        register("@acme/base", *tables, **change)

    assert [str(p) for p in info.value.problems] == [problem]
    assert registry.get("@acme/base") is base
    assert registry.ordered() == before
    assert received == []


def test_a_refused_registration_leaves_the_registry_as_it_was(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    register("@acme/base", "ydtb_base_items")
    received.clear()

    with pytest.raises(ValidationError):
        register("@acme/notes", "ydtb_base_items")

    assert list(registry.packages) == ["@ydtb/core", "@acme/base"]
    assert received == []


MIGRATIONS_HINT = "write migrations=[Migration('0001_name', up=...)], or leave it out"
TOOLS_HINT = "write tools=[Tool(id='timer', name='Timer')], or leave it out"


@pytest.mark.parametrize(("arguments", "problem"), [
    pytest.param({"dependencies": None}, "notes: dependencies is None, not a list (write "
                 "dependencies=['@ydtb/core>=1.0'], or leave it out) [Y122]",
                 id="dependencies-none"),
    pytest.param({"dependencies": [None]}, "notes: dependency None is not a string (list "
                 "dependencies as strings like '@ydtb/core>=1.0') [Y122]",
                 id="dependencies-none-in-list"),
    pytest.param({"dependencies": {"@ydtb/core": ">=1.0"}}, "notes: dependencies is "
                 "{'@ydtb/core': '>=1.0'}, not a list (write dependencies=['@ydtb/core>=1.0'], "
                 "or leave it out) [Y122]", id="dependencies-mapping"),
    pytest.param({"migrations": 5}, f"notes: migrations is 5, not a list ({MIGRATIONS_HINT}) "
                 "[Y113]", id="migrations-int"),
    pytest.param({"migrations": "SELECT 1"}, "notes: migrations is 'SELECT 1', not a list "
                 f"({MIGRATIONS_HINT}) [Y113]", id="migrations-string"),
    pytest.param({"tools": 5}, f"notes: tools is 5, not a list ({TOOLS_HINT}) [Y130]",
                 id="tools-int"),
    pytest.param({"tools": None}, f"notes: tools is None, not a list ({TOOLS_HINT}) [Y130]",
                 id="tools-none"),
    pytest.param({"tools": [Tool(["timer"], "Timer")]}, "notes: tool id ['timer'] is not valid "  # type: ignore[arg-type]
                 "(use 1 to 20 lower case letters, digits, '_' or '-', starting with a letter) "
                 "[Y131]", id="tool-id-list"),
    pytest.param({"version": 1.10}, "notes: version 1.1 is not a string (write it as text, "
                 "like '1.0.0') [Y121]", id="version-float"),
    pytest.param({"version": None}, "notes: version None is not a string (write it as text, "
                 "like '1.0.0') [Y121]", id="version-none"),
    pytest.param({"source": 5}, "notes: source is 5, not a string (give the file the package "
                 "is defined in, or leave it out) [Y126]", id="source-int"),
    pytest.param({"package_name": None}, "None: package name None is not valid (use lower "
                 "case 'name' or '@scope/name') [Y120]", id="name-none"),
    pytest.param({"package_name": "@x/p\n"}, "'@x/p\\n': package name '@x/p\\n' is not valid "
                 "(use lower case 'name' or '@scope/name') [Y120]", id="name-trailing-newline"),
    pytest.param({"migrations": [Migration("0001_a\n", up="SELECT 1")]}, "notes: migration id "
                 "'0001_a\\n' must be a number, optionally followed by '_' or '-' and letters, "
                 "digits, '_', '.' or '-' (rename it '0001_a') [Y110]",
                 id="migration-id-trailing-newline"),
])
def test_a_wrong_argument_is_a_validation_error_naming_it(
    registry: DatabaseRegistry, arguments: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError) as info:
        registry.register_database(**{"package_name": "notes", "schema": MetaData(),
                                      "version": "1.0.0", **arguments})

    assert str(info.value) == f"1 validation problem:\n  - {problem}"
    assert list(registry.packages) == ["@ydtb/core"]


# The documented rules, written out again here rather than imported from the code under test.
NAME = re.compile(r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*")
MIGRATION_ID = re.compile(r"\d+(?:[_-][A-Za-z0-9_.-]+)?")
TOOL_ID = re.compile(r"[a-z][a-z0-9_-]{0,19}")


def _schema(*columns: Column[Any]) -> MetaData:
    schema = MetaData()
    Table("ydtb_notes", schema, Column("id", Integer, primary_key=True), *columns)
    return schema


async def _up(conn: object) -> None:
    pass


def _workspace_id() -> Column[str]:
    return Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False)


SCHEMA = _schema(_workspace_id())
# Values of every kind, for any argument or item.
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.binary(max_size=4), st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4)),
                                    max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.builds(object),
)


def _migrations(ids: list[str], ups: list[object]) -> st.SearchStrategy[Migration]:
    return st.builds(Migration, st.sampled_from(ids), up=st.sampled_from(ups),
                     transactional=st.booleans())


def _tools(ids: list[str], names: list[str]) -> st.SearchStrategy[Tool]:
    return st.builds(Tool, st.sampled_from(ids), st.sampled_from(names),
                     st.sampled_from(["", "Track time."]), st.sampled_from(["", "clock"]))


VALID = st.fixed_dictionaries({
    "package_name": st.from_regex(NAME, fullmatch=True),
    "schema": st.sampled_from([SCHEMA, MetaData()]),
    "version": st.sampled_from(["1.0.0", "2", "1.0rc1", " 1.0 ", "1!2.0.post3", "0.1.dev3"]),
    "migrations": st.one_of(st.none(), st.lists(
        _migrations(["0001_a", "0002_b", "12", "3-c.d"], ["SELECT 1", ("SELECT 1", "x"), _up]),
        max_size=3, unique_by=lambda m: m.id)),
    "dependencies": st.lists(st.sampled_from(["@ydtb/core>=1.0", "basic", "x>=1,<2",
                                              "@acme/base ~=1.2"]), max_size=3, unique=True),
    "tools": st.lists(_tools(["timer", "clock", "a-1"], ["Timer", "T" * 200]), max_size=2,
                      unique_by=lambda t: t.id),
    "row_level_security": st.booleans(),
    "source": st.one_of(st.none(), st.text(max_size=8)),
})
# Values that just miss a rule (a trailing newline, an id twice), lists holding anything.
NEAR_MISS: dict[str, st.SearchStrategy[object]] = {
    "package_name": st.one_of(st.sampled_from(["Notes", "@x/p\n", "notes\n", " notes", "",
                                               "@ydtb/", "a/b", "@ydtb/core"]),
                              st.text("@/az09._-\n A", max_size=8)),
    "schema": st.sampled_from([_schema(), _schema(_workspace_id(), Column("body"))]),
    "version": st.one_of(st.sampled_from(["one", "", "1.0\nx", "1..0"]),
                         st.text("0123456789.abrc+! \n", max_size=6)),
    "migrations": st.lists(st.one_of(_migrations(["0001_a", "0001_a\n", "create", "7x"],
                                                 ["SELECT 1", " ", []]), ANYTHING),
                           min_size=1, max_size=3),
    "dependencies": st.lists(st.one_of(st.sampled_from(
        ["basic 1.0", "@x/p\n", "Basic", "x>=1;<2", "basic", "basic>=2"]), ANYTHING),
        min_size=1, max_size=3),
    "tools": st.lists(st.one_of(
        _tools(["timer", "Timer!", "timer\n", ""], ["Timer", " ", "T" * 201]),
        st.builds(Tool, ANYTHING, ANYTHING, ANYTHING, ANYTHING), ANYTHING),
        min_size=1, max_size=3),
    "row_level_security": st.nothing(),  # no near miss: anything at all (0, None, "yes")
    "source": st.nothing(),
}
# Valid arguments, up to two of them replaced by a near miss or by anything at all.
ARGUMENTS = st.builds(
    lambda valid, wrong: {**valid, **wrong},
    VALID,
    st.lists(st.sampled_from(sorted(NEAR_MISS)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.one_of(NEAR_MISS[k], ANYTHING) for k in keys})),
)


def _assert_obeys_the_rules(package: Package, arguments: dict[str, Any]) -> None:
    assert NAME.fullmatch(package.name) and package.name == arguments["package_name"]
    assert isinstance(arguments["version"], str)
    assert package.version == Version(arguments["version"])
    assert isinstance(arguments["dependencies"], list | tuple)
    assert all(isinstance(d, str) for d in arguments["dependencies"])
    assert len(package.dependencies) == len(arguments["dependencies"])
    assert all(NAME.fullmatch(name) for name in package.dependency_names)
    ids = [m.id for m in package.migrations]
    assert all(MIGRATION_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
    if arguments["migrations"]:
        assert sorted(ids) == sorted(m.id for m in arguments["migrations"])
    for migration in package.migrations:
        if migration.statements is None:
            assert callable(migration.up)
        else:
            assert migration.statements and all(s.strip() for s in migration.statements)
    tool_ids = [t.id for t in package.tools]
    assert all(TOOL_ID.fullmatch(i) for i in tool_ids) and len(set(tool_ids)) == len(tool_ids)
    for tool in package.tools:
        assert isinstance(tool.name, str) and tool.name.strip() and len(tool.name) <= 200
        assert isinstance(tool.icon, str) and len(tool.icon) <= 200
        assert isinstance(tool.description, str)
    assert package.row_level_security is arguments["row_level_security"]
    assert package.source is None or isinstance(package.source, str)
    assert package.source == arguments["source"]
    assert validation.check_package(package) == []


@settings(max_examples=300, deadline=None, database=None)
@given(arguments=ARGUMENTS)
def test_register_database_accepts_what_the_rules_allow_and_refuses_the_rest(
    arguments: dict[str, Any],
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    try:
        package = registry.register_database(**arguments)
    except RegistryError:  # only a RegistryError: any other exception fails the test
        event("refused")
        assert list(registry.packages) == ["@ydtb/core"]
        return

    event("accepted")
    assert registry.get(package.name) is package
    _assert_obeys_the_rules(package, arguments)


def test_registering_the_core_is_refused(registry: DatabaseRegistry) -> None:
    with pytest.raises(ValidationError) as info:
        registry.register_database(package_name="@ydtb/core", schema=MetaData(), version="9.0")

    assert str(info.value) == (
        "1 validation problem:\n"
        "  - @ydtb/core: the core package is built in (choose another package name) [Y124]"
    )
    assert str(registry.get("@ydtb/core").version) == "1.0.0"


def test_get_an_unknown_package(registry: DatabaseRegistry, register: Register) -> None:
    register("@acme/notes")

    with pytest.raises(PackageNotFoundError) as info:
        registry.get("@acme/nope")

    assert str(info.value) == (
        "@acme/nope: package is not registered (registered: @acme/notes, @ydtb/core)"
    )
    assert info.value.package == "@acme/nope"
    assert isinstance(info.value, LookupError)


def test_unregister_removes_the_package_and_sends_package_unregistered(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    package = register("@acme/notes", "ydtb_notes")
    registry.ordered()
    received.clear()

    assert registry.unregister("@acme/notes") is package

    assert "@acme/notes" not in registry
    assert names(registry.ordered()) == ["@ydtb/core"]
    assert received == [("package_unregistered", registry, {"package": "@acme/notes"})]


@pytest.mark.parametrize(
    ("dependents", "message"),
    [
        pytest.param(
            ["@acme/notes"],
            "@acme/base: cannot unregister, @acme/notes depends on it (unregister it first)",
            id="one",
        ),
        pytest.param(
            ["@acme/tags", "@acme/notes"],
            "@acme/base: cannot unregister, @acme/notes, @acme/tags depend on it (unregister "
            "them first)",
            id="two",
        ),
    ],
)
def test_unregister_refuses_while_dependents_exist(
    registry: DatabaseRegistry,
    register: Register,
    received: list[Event],
    dependents: list[str],
    message: str,
) -> None:
    base = register("@acme/base")
    for name in dependents:
        register(name, dependencies=["@acme/base"])
    received.clear()

    with pytest.raises(DependentsExistError) as info:
        registry.unregister("@acme/base")

    assert str(info.value) == message
    assert info.value.dependents == tuple(sorted(dependents))
    assert registry.get("@acme/base") is base
    assert received == []


def test_unregister_names_only_direct_dependents(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/base")
    register("@acme/mid", dependencies=["@acme/base"])
    register("@acme/top", dependencies=["@acme/mid"])

    with pytest.raises(DependentsExistError) as info:
        registry.unregister("@acme/base")

    assert info.value.dependents == ("@acme/mid",)


def test_unregister_an_unknown_package(registry: DatabaseRegistry) -> None:
    with pytest.raises(PackageNotFoundError) as info:
        registry.unregister("@acme/nope")

    assert str(info.value) == "@acme/nope: package is not registered (registered: @ydtb/core)"


def test_unregister_the_core_is_refused(registry: DatabaseRegistry) -> None:
    with pytest.raises(ValidationError) as caught:
        registry.unregister("@ydtb/core")

    assert [str(p) for p in caught.value.problems] == [
        "@ydtb/core: the core package is built in and cannot be unregistered [Y124]"]

    assert "@ydtb/core" in registry


def test_closure_is_the_package_and_its_transitive_dependents_in_order(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/base")
    register("@acme/other")
    register("@acme/tags", dependencies=["@acme/notes"])
    register("@acme/notes", dependencies=["@acme/base", "@acme/other"])
    register("@acme/search", dependencies=["@acme/tags", "@acme/base"])

    assert registry.closure("@acme/base") == [
        "@acme/base", "@acme/notes", "@acme/tags", "@acme/search",
    ]
    assert registry.closure("@acme/tags") == ["@acme/tags", "@acme/search"]
    assert registry.closure("@acme/search") == ["@acme/search"]
    with pytest.raises(PackageNotFoundError):
        registry.closure("@acme/nope")


def test_dependents_are_direct_and_sorted(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/base")
    register("@acme/zeta", dependencies=["@acme/base"])
    register("@acme/alpha", dependencies=["@acme/base"])
    register("@acme/top", dependencies=["@acme/alpha"])

    assert registry.dependents("@acme/base") == ["@acme/alpha", "@acme/zeta"]


def test_copy_is_independent_and_sends_no_signals(
    registry: DatabaseRegistry, register: Register, received: list[Event]
) -> None:
    notes = register("@acme/notes", "ydtb_notes")
    received.clear()

    clone = registry.copy()
    clone.register_database(package_name="@acme/tags", schema=MetaData(), version="1")
    clone.unregister("@acme/notes")
    clone.copy().register_database(package_name="@acme/more", schema=MetaData(), version="1")

    assert received == []
    assert list(clone.packages) == ["@ydtb/core", "@acme/tags"]
    assert list(registry.packages) == ["@ydtb/core", "@acme/notes"]
    assert registry.get("@acme/notes") is notes
    assert names(registry.ordered()) == ["@ydtb/core", "@acme/notes"]


def test_a_copy_without_set_checks_accepts_the_first_half_of_a_joint_change(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("a", "ydtb_a", version="1.0.0")
    register("b", "ydtb_b", dependencies=["a<2"])
    candidate = registry.copy(check_set=False)

    candidate.register_database(package_name="a", schema=registry.get("a").schema,
                                version="2.0.0")

    assert str(candidate.get("a").version) == "2.0.0"
    assert [p.code for p in candidate.problems()] == ["Y202"]
    with pytest.raises(ValidationError):
        registry.copy().register_database(package_name="a", schema=registry.get("a").schema,
                                          version="2.0.0")


def test_the_closure_of_a_cycle_is_a_validation_error_naming_it(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("a", "ydtb_a")
    register("b", "ydtb_b", dependencies=["a"])
    candidate = registry.copy(check_set=False)  # as the dev daemon loads a change
    candidate.register_database(package_name="a", schema=registry.get("a").schema,
                                version="1.0.0", dependencies=["b"])

    with pytest.raises(ValidationError) as caught:
        candidate.closure("a")

    assert [str(p) for p in caught.value.problems] == [
        "a: dependency cycle a -> b -> a (remove one of these dependencies) [Y203]"]


def test_update_accepts_a_joint_change_that_one_registration_at_a_time_refuses(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("a", "ydtb_a", version="1.0.0")
    register("b", "ydtb_b", dependencies=["a<2"])
    a2 = registry.copy(check_set=False).register_database(
        package_name="a", schema=registry.get("a").schema, version="2.0.0")
    b2 = registry.copy(check_set=False).register_database(
        package_name="b", schema=registry.get("b").schema, version="1.0.0",
        dependencies=["a>=2"])

    with pytest.raises(ValidationError):
        registry.register(a2)
    registry.update([a2, b2])

    assert [str(p.version) for p in registry.ordered()] == ["1.0.0", "2.0.0", "1.0.0"]


def test_update_removes_a_package_together_with_its_dependents(
    registry: DatabaseRegistry, register: Register, received: list[tuple[str, Any, Any]]
) -> None:
    register("a", "ydtb_a")
    register("b", "ydtb_b", dependencies=["a"])
    with pytest.raises(DependentsExistError):
        registry.update(remove=["a"])
    received.clear()

    registry.update(remove=["a", "b"])

    assert list(registry.packages) == ["@ydtb/core"]
    assert [(name, kw["package"]) for name, _, kw in received] == [
        ("package_unregistered", "a"), ("package_unregistered", "b")]


def test_adopt_takes_a_copy_s_changes_and_signals_only_those(
    registry: DatabaseRegistry, register: Register, received: list[tuple[str, Any, Any]]
) -> None:
    register("a", "ydtb_a")
    register("b", "ydtb_b")
    register("c", "ydtb_c")
    candidate = registry.copy(check_set=False)
    candidate.register_database(package_name="a", schema=registry.get("a").schema,
                                version="2.0.0")
    candidate.unregister("c")
    received.clear()

    registry.adopt(candidate)

    assert sorted(registry.packages) == ["@ydtb/core", "a", "b"]
    assert str(registry.get("a").version) == "2.0.0"
    assert [(name, kw) for name, _, kw in received] == [
        ("package_unregistered", {"package": "c"}),
        ("package_registered", {"package": "a", "version": "2.0.0", "replaced": True})]


# -- remembered problems (issue #7): a change re-checks only what it can affect -------------


def test_ordered_after_a_dependency_registers_late(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/base"],
             fks={"ydtb_notes.item_id": "ydtb_base_items.id"})
    with pytest.raises(ValidationError) as info:
        registry.ordered()
    assert [p.code for p in info.value.problems] == ["Y201", "Y206"]

    register("@acme/base", "ydtb_base_items")

    assert registry.problems() == []
    assert names(registry.ordered()) == ["@ydtb/core", "@acme/base", "@acme/notes"]


def test_a_late_owner_outside_the_dependencies_leaves_a_problem_for_ordered(
    registry: DatabaseRegistry, register: Register
) -> None:
    # Nothing makes @acme/notes a dependent of @acme/base: it is found as a referrer.
    register("@acme/notes", "ydtb_notes", fks={"ydtb_notes.item_id": "ydtb_base_items.id"})
    register("@acme/base", "ydtb_base_items")

    assert [p.code for p in registry.problems()] == ["Y205"]
    with pytest.raises(ValidationError):
        registry.ordered()


def test_a_table_owned_twice_across_two_updates_is_refused(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/a", "ydtb_a")
    register("@acme/b", "ydtb_b")
    assert names(registry.ordered()) == ["@ydtb/core", "@acme/a", "@acme/b"]

    with pytest.raises(ValidationError) as info:
        register("@acme/b", "ydtb_b", "ydtb_a", version="1.1")

    assert [str(p) for p in info.value.problems] == [
        "@acme/b: table 'ydtb_a' is also declared by @acme/a (a table has one owner: rename "
        "one of them) [Y204]"]
    assert names(registry.ordered()) == ["@ydtb/core", "@acme/a", "@acme/b"]


def test_unregister_then_ordered(registry: DatabaseRegistry, register: Register) -> None:
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/gone"])
    register("@acme/base", "ydtb_base")
    with pytest.raises(ValidationError):
        registry.ordered()

    registry.unregister("@acme/notes")

    assert registry.problems() == []
    assert names(registry.ordered()) == ["@ydtb/core", "@acme/base"]
    registry.unregister("@acme/base")
    assert names(registry.ordered()) == ["@ydtb/core"]


def test_a_copy_without_set_checks_reports_every_problem(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/a", "ydtb_a")
    candidate = registry.copy(check_set=False)

    candidate.register_database(package_name="@acme/b", schema=registry.get("@acme/a").schema,
                                version="1", dependencies=["@acme/c", "@acme/b"])

    assert [(p.package, p.code) for p in candidate.problems()] == [
        ("@acme/a", "Y204"), ("@acme/b", "Y201"), ("@acme/b", "Y203"), ("@acme/b", "Y204")]
    with pytest.raises(ValidationError) as info:
        candidate.ordered()
    assert list(info.value.problems) == candidate.problems()
    assert registry.problems() == []


def test_adopting_a_copy_keeps_what_it_knows_of_the_set(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("a", "ydtb_a")
    register("b", "ydtb_b", dependencies=["a"])
    candidate = registry.copy(check_set=False)
    candidate.register_database(package_name="a", schema=registry.get("a").schema,
                                version="2.0.0")
    candidate.register_database(package_name="c", schema=registry.get("b").schema,
                                version="1", dependencies=["a>=3"])

    registry.adopt(candidate)

    assert [(p.package, p.code) for p in registry.problems()] == [
        ("b", "Y204"), ("c", "Y202"), ("c", "Y204")]
    registry.unregister("c")
    assert names(registry.ordered()) == ["@ydtb/core", "a", "b"]
    assert str(registry.get("a").version) == "2.0.0"


def test_a_new_migration_keeps_the_order_and_takes_the_new_package(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("a", "ydtb_a")
    register("b", "ydtb_b", dependencies=["a"])
    first = registry.ordered()

    new = register("a", "ydtb_a", migrations=[Migration("0001_a", up="SELECT 1"),
                                              Migration("0002_a", up="SELECT 2")])

    assert registry.ordered() == [first[0], new, first[2]]
    assert registry.closure("a") == ["a", "b"]
    assert registry.dependents("a") == ["b"]


# A model of the registry as it was before it remembered problems: each change checked
# against full checks of the set. The registry must refuse and accept exactly as it did.
def _old_update(
    before: dict[str, Package], packages: list[Package], remove: list[str], check: bool
) -> dict[str, Package] | RegistryError:
    after = dict(before)
    for name in remove:
        after.pop(name)
    changed = [p for p in packages if p.name not in before
               or not before[p.name].same_definition(p)]
    after.update((p.name, p) for p in changed)
    for name in remove:
        dependents = tuple(sorted(n for n, p in after.items() if name in p.dependency_names))
        if dependents:
            return DependentsExistError(name, dependents)
    if check and changed:
        changed_names = [p.name for p in changed]
        full = dependency_graph(after.values())
        reverse = {n: [m for m in full if n in full[m]] for n in full}
        affected = set(changed_names) | graph.reachable(reverse, changed_names)
        had = set(validation.check_set(before, affected & set(before)))
        new = [p for p in validation.check_set(after, affected) if p not in had
               and not (p.package in changed_names and p.code in {"Y201", "Y206"})]
        if new:
            return ValidationError(new)
    return after


def _update_like_before(
    registry: DatabaseRegistry, check: bool, packages: list[Package], remove: list[str]
) -> None:
    expected = _old_update(dict(registry.packages), packages, remove, check)
    if isinstance(expected, RegistryError):
        with pytest.raises(type(expected)) as info:
            registry.update(packages, remove)
        assert str(info.value) == str(expected)
    else:
        registry.update(packages, remove)
        assert list(registry.packages.items()) == list(expected.items())


def _assert_consistent(registry: DatabaseRegistry) -> None:
    problems = validation.check_set(dict(registry.packages))
    assert registry.problems() == problems
    if problems:
        with pytest.raises(ValidationError) as info:
            registry.ordered()
        assert list(info.value.problems) == problems
    else:
        order = graph.dependency_order(dependency_graph(registry.packages.values()))
        assert names(registry.ordered()) == order
    for name in registry.packages:
        assert registry.dependents(name) == sorted(
            n for n, p in registry.packages.items() if name in p.dependency_names)


_STEP = st.tuples(st.sampled_from(["register", "unregister", "joint", "swap", "adopt", "copy"]),
                  st.integers(0, 10_000), st.integers(0, 10_000))


@settings(max_examples=250, deadline=None, database=None)
@given(check=st.booleans(), steps=st.lists(_STEP, max_size=14))
# Unregistered and registered again in one update: a table's owners change order.
@example(check=False, steps=[("joint", 0, 152), ("swap", 4, 0)])
def test_remembered_problems_match_a_full_check(
    package_pool: tuple[Package, ...], check: bool, steps: list[tuple[str, int, int]]
) -> None:
    pool = package_pool
    pool_names = sorted({p.name for p in pool})
    registry = DatabaseRegistry(send_signals=False, check_set=check)
    for kind, i, j in steps:
        first, second = pool[i % len(pool)], pool[j % len(pool)]
        registered = [n for n in pool_names if n in registry]
        gone = [registered[j % len(registered)]] if registered else []
        if kind == "register":
            _update_like_before(registry, check, [first], [])
        elif kind == "unregister":
            _update_like_before(registry, check, [], gone)
        elif kind == "joint" and first.name != second.name:
            _update_like_before(registry, check, [first, second], [])
        elif kind == "swap":
            _update_like_before(registry, check, [first], gone)
        elif kind == "adopt":
            candidate = registry.copy(check_set=False)
            with contextlib.suppress(DependentsExistError):
                candidate.update([first], gone)
            registry.adopt(candidate)
        elif kind == "copy":
            check = i % 2 == 0
            registry = registry.copy(check_set=check)
        _assert_consistent(registry)
