"""The package rules (Y1xx, via build_package) and the set rules (Y2xx, via the registry).

Messages are part of the API: each names the package, the table or migration, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Text, literal

from runtime.core import ddl, fingerprint, validation
from runtime.core.model import Migration, Package, dependency_graph
from runtime.core.registry import DatabaseRegistry
from runtime.errors import Problem, ValidationError

WorkspaceTable = Callable[..., Table]
MakeSchema = Callable[..., MetaData]
Register = Callable[..., Package]

NAME = "@acme/notes"


def workspace_column(**kwargs: Any) -> Column[str]:
    options: dict[str, Any] = {"nullable": False, **kwargs}
    foreign_key = options.pop("foreign_key", True)
    keys = [ForeignKey("ydtb_workspaces.id", ondelete="CASCADE")] if foreign_key else []
    return Column("workspace_id", String(20), *keys, **options)


def build(**overrides: Any) -> tuple[Package | None, list[Problem]]:
    """Build `@acme/notes` 1.0.0 with one valid table, changed by `overrides`."""
    if "schema" not in overrides:
        schema = MetaData()
        Table("ydtb_notes", schema, Column("id", Integer, primary_key=True), workspace_column())
        overrides["schema"] = schema
    arguments: dict[str, Any] = {
        "package_name": NAME,
        "migrations": None,
        "dependencies": (),
        "version": "1.0.0",
        **overrides,
    }
    return validation.build_package(**arguments)


def schema_with(*columns: Any, name: str = "ydtb_notes", **table_options: Any) -> MetaData:
    schema = MetaData()
    Table(name, schema, *columns, **table_options)
    return schema


def id_column() -> Column[int]:
    return Column("id", Integer, primary_key=True)

WORKSPACE_HINT = (
    "add Column('workspace_id', String(20), ForeignKey('ydtb_workspaces.id', "
    "ondelete='CASCADE'), nullable=False, index=True), or declare it with "
    "runtime.kit.workspace_table"
)


# -- one package (Y1xx) ----------------------------------------------------------------


def test_build_package_accepts_a_valid_package() -> None:
    package, problems = build(dependencies=["@ydtb/core>=1.0"], version="1.2.0")

    assert problems == []
    assert package is not None
    assert package.name == NAME
    assert str(package.version) == "1.2.0"
    assert package.table_names == ("ydtb_notes",)
    assert package.dependency_names == ("@ydtb/core",)
    assert str(package.dependencies[0].specifier) == ">=1.0"


def test_a_package_without_migrations_gets_the_initial_schema() -> None:
    package, _ = build()

    assert package is not None
    statements = ddl.create_statements(package.tables)
    assert [m.id for m in package.migrations] == ["0001_initial_schema"]
    assert package.migrations[0].statements == tuple(statements)
    assert package.migration("0001_initial_schema") is package.migrations[0]
    assert package.fingerprint == ddl.fingerprint(fingerprint.describe(package.tables))
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS ydtb_notes (")


def test_a_package_without_tables_or_migrations_has_no_migrations() -> None:
    package, problems = build(schema=MetaData())

    assert problems == []
    assert package is not None
    assert package.migrations == ()


def test_given_migrations_are_sorted_by_number() -> None:
    migrations = [Migration("10_x", up="SELECT 10"), Migration("9_y", up="SELECT 9")]

    package, _ = build(migrations=migrations)

    assert package is not None
    assert [m.id for m in package.migrations] == ["9_y", "10_x"]
    with pytest.raises(KeyError):
        package.migration("0001_initial_schema")


def test_a_copy_of_a_core_table_is_a_reference_not_ownership() -> None:
    schema = MetaData()
    workspaces = Table(
        "ydtb_workspaces",
        schema,
        Column("id", String(20), primary_key=True),
        Column("name", String(200), nullable=False),
    )
    Table(
        "ydtb_notes",
        schema,
        id_column(),
        Column("workspace_id", String(20), ForeignKey(workspaces.c.id, ondelete="CASCADE"),
               nullable=False),
    )

    package, problems = build(schema=schema)

    assert problems == []
    assert package is not None
    assert package.table_names == ("ydtb_notes",)
    assert [s.splitlines()[0] for s in package.migrations[0].statements or ()] == [
        "CREATE TABLE IF NOT EXISTS ydtb_notes ("
    ]


def _problem_cases() -> list[Any]:
    def case(code: str, message: str, case_id: str, **overrides: Any) -> Any:
        return pytest.param(overrides, code, message, id=f"{code}-{case_id}")

    notes_migration = "CREATE TABLE ydtb_notes (id serial)"
    return [
        case("Y101", "table 'notes' must be prefixed 'ydtb_' (rename it to 'ydtb_notes')",
             "prefix", schema=schema_with(id_column(), workspace_column(), name="notes")),
        case("Y102", "table 'ydtb_tools' belongs to the core (rename it; packages reference "
             "core tables, they never define them)", "core-table",
             schema=schema_with(Column("id", String(20), primary_key=True),
                                Column("colour", Text), name="ydtb_tools")),
        case("Y103", "table 'ydtb_notes' has no primary key (mark a column primary_key=True)",
             "no-primary-key", schema=schema_with(Column("id", Integer), workspace_column())),
        case("Y104", f"table 'ydtb_notes' has no workspace_id column ({WORKSPACE_HINT})",
             "no-workspace-id", schema=schema_with(id_column())),
        case("Y105", "table 'ydtb_notes' column 'workspace_id' is nullable (declare it "
             "nullable=False: every row belongs to a workspace)", "nullable-workspace-id",
             schema=schema_with(id_column(), workspace_column(nullable=True))),
        case("Y106", "table 'ydtb_notes' column 'workspace_id' has no foreign key to "
             "'ydtb_workspaces.id' (add ForeignKey('ydtb_workspaces.id', ondelete='CASCADE'))",
             "no-workspace-foreign-key",
             schema=schema_with(id_column(), workspace_column(foreign_key=False))),
        case("Y108", "table 'ydtb_notes' is in schema 'acme' (drop schema=...; package tables "
             "live in the default schema)", "schema",
             schema=schema_with(id_column(), workspace_column(), schema="acme")),
        case("Y110", "migration id 'create_notes' does not start with a number (rename it like "
             "'0001_create_notes' so ids sort)", "unsortable-id",
             migrations=[Migration("create_notes", up=notes_migration)]),
        case("Y110", "migration id '0001_notes\\n' must be a number, optionally followed by "
             "'_' or '-' and letters, digits, '_', '.' or '-' (rename it '0001_notes')",
             "trailing-newline", migrations=[Migration("0001_notes\n", up=notes_migration)]),
        case("Y110", "migration id '7 notes' must be a number, optionally followed by '_' or "
             "'-' and letters, digits, '_', '.' or '-' (rename it '7_notes')", "no-separator",
             migrations=[Migration("7 notes", up=notes_migration)]),
        case("Y111", "migration id '0001_notes' is used twice (give each migration its own id)",
             "duplicate-id", migrations=[Migration("0001_notes", up=notes_migration),
                                         Migration("0001_notes", up="SELECT 1")]),
        case("Y112", "migration '0001_notes' has empty SQL (give it SQL text or an async "
             "up(conn) function)", "blank-sql", migrations=[Migration("0001_notes", up=" \n ")]),
        case("Y112", "migration '0001_notes' has empty SQL (give it SQL text or an async "
             "up(conn) function)", "empty-list", migrations=[Migration("0001_notes", up=[])]),
        case("Y112", "migration '0001_notes' has empty SQL (give it SQL text or an async "
             "up(conn) function)", "blank-statement-in-list",
             migrations=[Migration("0001_notes", up=[notes_migration, ""])]),
        case("Y112", "migration 'CREATE TABLE ydtb_notes (id serial)' is not a Migration "
             "(wrap it: Migration('0001_name', up=...))", "not-a-migration",
             migrations=[notes_migration]),
        case("Y120", "package name 'Notes' is not valid (use lower case 'name' or "
             "'@scope/name')", "name", package_name="Notes"),
        case("Y120", "package name '@x/p\\n' is not valid (use lower case 'name' or "
             "'@scope/name')", "name-trailing-newline", package_name="@x/p\n"),
        case("Y121", "version 'one' is not valid (use a form like '1.0.0')", "version",
             version="one"),
        case("Y122", "dependency 'basic 1.0' has an invalid version specifier '1.0' (use forms "
             "like '>=1.0', '~=1.2' or '>=1,<2')", "specifier", dependencies=["basic 1.0"]),
        case("Y122", "dependencies is the string '@ydtb/core>=1.0', not a list (write "
             "dependencies=['@ydtb/core>=1.0'])", "string", dependencies="@ydtb/core>=1.0"),
        case("Y123", "schema is {}, not a sqlalchemy MetaData (pass MetaData() or a "
             "declarative Base.metadata)", "schema-not-metadata", schema={}),
        case("Y125", "dependency '@ydtb/core' is listed twice (merge the specifiers into one "
             "entry)", "dependency-twice", dependencies=["@ydtb/core>=1.0", "@ydtb/core<2"]),
    ]


@pytest.mark.parametrize(("overrides", "code", "message"), _problem_cases())
def test_build_package_reports_a_broken_rule(
    overrides: dict[str, Any], code: str, message: str
) -> None:
    package, problems = build(**overrides)

    assert package is None
    assert [(p.code, p.message + (f" ({p.hint})" if p.hint else "")) for p in problems] == [
        (code, message)
    ]
    assert str(problems[0]) == f"{problems[0].package}: {message} [{code}]"


def test_table_problems_name_the_table_and_migration_problems_the_migration() -> None:
    _, table_problems = build(schema=schema_with(id_column()))
    _, migration_problems = build(migrations=[Migration("0001_notes", up="")])

    assert [(p.package, p.table, p.migration) for p in table_problems] == [
        (NAME, "ydtb_notes", None)
    ]
    assert [(p.package, p.table, p.migration) for p in migration_problems] == [
        (NAME, None, "0001_notes")
    ]


SQL_MIGRATIONS = [Migration("0001_notes", up="CREATE TABLE ydtb_notes ()")]


@pytest.mark.parametrize("migrations", [None, SQL_MIGRATIONS], ids=["derived", "given"])
def test_schema_that_does_not_compile_is_reported(migrations: list[Migration] | None) -> None:
    untyped = Column("body")  # NullType has no PostgreSQL DDL

    package, problems = build(schema=schema_with(id_column(), workspace_column(), untyped),
                              migrations=migrations)

    assert package is None
    assert [p.code for p in problems] == ["Y107"]
    assert problems[0].message.startswith(
        "schema does not compile to PostgreSQL: (in table 'ydtb_notes', column 'body'): "
    )
    assert problems[0].hint == "fix the table definition SQLAlchemy complains about"


@pytest.mark.parametrize("migrations", [None, SQL_MIGRATIONS], ids=["derived", "given"])
def test_a_server_default_that_does_not_compile_is_reported(
    migrations: list[Migration] | None,
) -> None:
    odd = Column("rank", Integer, server_default=literal(1j))  # no SQL literal for complex

    _, problems = build(schema=schema_with(id_column(), workspace_column(), odd),
                        migrations=migrations)

    assert [(p.code, p.message) for p in problems] == [
        ("Y107", "schema does not compile to PostgreSQL: (in table 'ydtb_notes', column "
         "'rank'): No literal value renderer is available for literal value \"1j\" with "
         "datatype NULL")]


def test_the_fingerprint_does_not_depend_on_the_migrations() -> None:
    derived, _ = build()
    given, _ = build(migrations=SQL_MIGRATIONS)

    assert derived is not None and given is not None
    assert derived.fingerprint == given.fingerprint


def test_a_package_with_migrations_is_built_without_compiling_its_ddl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Compiling the DDL only to hash it was 45% of loading 300 packages (issue #7).
    def refuse(*_: object) -> list[str]:
        raise AssertionError("create_statements called")

    monkeypatch.setattr(ddl, "create_statements", refuse)

    package, problems = build(migrations=SQL_MIGRATIONS)

    assert problems == []
    assert package is not None


def test_all_problems_of_a_package_are_reported_at_once(registry: DatabaseRegistry) -> None:
    schema = schema_with(id_column(), workspace_column(nullable=True), name="notes")
    Table("ydtb_tags", schema, Column("label", Text))

    with pytest.raises(ValidationError) as info:
        registry.register_database(
            package_name="@acme/notes",
            schema=schema,
            version="one",
            dependencies=["basic 1.0"],
            migrations=[Migration("create_notes", up="")],
        )

    assert [p.code for p in info.value.problems] == [
        "Y121", "Y122", "Y101", "Y105", "Y103", "Y104", "Y110", "Y112",
    ]
    assert str(info.value).startswith("8 validation problems:\n  - @acme/notes: version 'one' ")
    assert info.value.packages == ("@acme/notes",)
    assert list(registry.packages) == ["@ydtb/core"]


def test_problems_found_before_a_schema_that_is_not_metadata_are_kept() -> None:
    package, problems = build(package_name="Notes", version="one", schema=None)

    assert package is None
    assert [p.code for p in problems] == ["Y120", "Y121", "Y123"]
    assert str(problems[2]) == (
        "Notes: schema is None, not a sqlalchemy MetaData (pass MetaData() or a "
        "declarative Base.metadata) [Y123]"
    )


# -- the set of packages (Y2xx) ---------------------------------------------------------


def refused(call: Callable[[], object]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        call()
    return [str(p) for p in info.value.problems]


def test_missing_dependency_waits_for_ordered(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", "ydtb_notes", dependencies=["@acme/base>=1.0"])

    assert refused(registry.ordered) == [
        "@acme/notes: depends on '@acme/base', which is not registered (register @acme/base, "
        "or remove it from dependencies) [Y201]"
    ]


def test_unsatisfied_version_is_refused(registry: DatabaseRegistry, register: Register) -> None:
    register("@acme/base", "ydtb_base_items")

    assert refused(lambda: register("@acme/notes", dependencies=["@acme/base>=2.0"])) == [
        "@acme/notes: requires @acme/base>=2.0, but @acme/base 1.0.0 is registered (upgrade "
        "@acme/base, or relax the specifier '>=2.0') [Y202]"
    ]
    assert "@acme/notes" not in registry


def test_dependency_below_a_dependent_specifier_is_refused(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", dependencies=["@acme/base>=2.0"])

    assert refused(lambda: register("@acme/base", version="1.5")) == [
        "@acme/notes: requires @acme/base>=2.0, but @acme/base 1.5 is registered (upgrade "
        "@acme/base, or relax the specifier '>=2.0') [Y202]"
    ]
    assert "@acme/base" not in registry


def test_cycle_is_refused(registry: DatabaseRegistry, register: Register) -> None:
    register("@acme/a", dependencies=["@acme/b"])

    assert refused(lambda: register("@acme/b", dependencies=["@acme/a"])) == [
        "@acme/a: dependency cycle @acme/a -> @acme/b -> @acme/a (remove one of these "
        "dependencies) [Y203]"
    ]
    assert "@acme/b" not in registry


def test_self_dependency_is_a_cycle(registry: DatabaseRegistry, register: Register) -> None:
    assert refused(lambda: register("@acme/a", dependencies=["@acme/a"])) == [
        "@acme/a: dependency cycle @acme/a -> @acme/a (remove one of these dependencies) [Y203]"
    ]


def test_check_set_reports_a_cycle_once() -> None:
    packages = {}
    for name, dependency in [("c", "a"), ("a", "b"), ("b", "c")]:
        package, _ = validation.build_package(
            package_name=name, schema=MetaData(), migrations=None,
            dependencies=[dependency], version="1",
        )
        assert package is not None
        packages[name] = package

    problems = validation.check_set(packages)

    assert [str(p) for p in problems] == [
        "a: dependency cycle a -> b -> c -> a (remove one of these dependencies) [Y203]"
    ]


def test_table_owned_twice_is_refused(registry: DatabaseRegistry, register: Register) -> None:
    register("@acme/a", "ydtb_shared")

    assert refused(lambda: register("@acme/b", "ydtb_shared", "ydtb_b_own")) == [
        "@acme/b: table 'ydtb_shared' is also declared by @acme/a (a table has one owner: "
        "rename one of them) [Y204]"
    ]
    assert list(registry.packages) == ["@ydtb/core", "@acme/a"]


def test_foreign_key_into_a_package_that_is_not_a_dependency_is_refused(
    register: Register,
) -> None:
    register("@acme/base", "ydtb_base_items")

    problems = refused(lambda: register(
        "@acme/notes", "ydtb_notes", fks={"ydtb_notes.item_id": "ydtb_base_items.id"}
    ))

    assert problems == [
        "@acme/notes: table 'ydtb_notes' column 'item_id' references 'ydtb_base_items.id', "
        "owned by @acme/base, which is not a dependency (add '@acme/base' to dependencies) "
        "[Y205]"
    ]


def test_foreign_key_to_an_unknown_table_waits_for_ordered(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", "ydtb_notes", fks={"ydtb_notes.author_id": "ydtb_people.id"})

    assert refused(registry.ordered) == [
        "@acme/notes: table 'ydtb_notes' column 'author_id' references 'ydtb_people.id', which "
        "no registered package owns (fix the name, or register and depend on the package that "
        "owns it) [Y206]"
    ]


def test_foreign_key_to_an_unknown_column_is_refused(register: Register) -> None:
    register("@acme/base", "ydtb_base_items")

    problems = refused(lambda: register(
        "@acme/notes", "ydtb_notes", dependencies=["@acme/base"],
        fks={"ydtb_notes.item_id": "ydtb_base_items.uuid"},
    ))

    assert problems == [
        "@acme/notes: table 'ydtb_notes' column 'item_id' references 'ydtb_base_items.uuid', "
        "but @acme/base table 'ydtb_base_items' has no column 'uuid' (fix the column name) "
        "[Y207]"
    ]


def test_foreign_key_to_an_unknown_column_of_the_package_itself_is_refused(
    register: Register,
) -> None:
    problems = refused(lambda: register(
        "@acme/notes", "ydtb_notes", "ydtb_tags", fks={"ydtb_tags.note_id": "ydtb_notes.uuid"}
    ))

    assert problems == [
        "@acme/notes: table 'ydtb_tags' column 'note_id' references 'ydtb_notes.uuid', but "
        "@acme/notes table 'ydtb_notes' has no column 'uuid' (fix the column name) [Y207]"
    ]


def test_foreign_key_to_an_unknown_column_of_a_core_table_is_refused(
    register: Register,
) -> None:
    problems = refused(lambda: register(
        "@acme/notes", "ydtb_notes", fks={"ydtb_notes.owner": "ydtb_workspaces.uuid"}
    ))

    assert problems == [
        "@acme/notes: table 'ydtb_notes' column 'owner' references 'ydtb_workspaces.uuid', but "
        "@ydtb/core table 'ydtb_workspaces' has no column 'uuid' (fix the column name) [Y207]"
    ]


def test_foreign_keys_into_core_tables_need_no_dependency(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/notes", "ydtb_notes", fks={"ydtb_notes.tool_id": "ydtb_tools.id"})

    assert [p.name for p in registry.ordered()] == ["@ydtb/core", "@acme/notes"]


def test_foreign_key_into_a_transitive_dependency_is_allowed(
    registry: DatabaseRegistry, register: Register
) -> None:
    register("@acme/base", "ydtb_base_items")
    register("@acme/mid", "ydtb_mid_items", dependencies=["@acme/base"])
    register("@acme/top", "ydtb_top_items", dependencies=["@acme/mid"],
             fks={"ydtb_top_items.item_id": "ydtb_base_items.id"})

    assert registry.problems() == []
    assert [p.name for p in registry.ordered()][1:] == ["@acme/base", "@acme/mid", "@acme/top"]


def test_foreign_key_into_a_dependent_is_refused(register: Register) -> None:
    register("@acme/base", "ydtb_base_items")
    register("@acme/top", "ydtb_top_items", dependencies=["@acme/base"])

    problems = refused(lambda: register(
        "@acme/base", "ydtb_base_items", version="1.1",
        fks={"ydtb_base_items.top_id": "ydtb_top_items.id"},
    ))

    assert [p[-6:] for p in problems] == ["[Y205]"]


def test_check_set_is_check_member_for_each_name_with_each_cycle_once() -> None:
    packages = {}
    for name, dependencies in [("a", ["b", "x"]), ("b", ["a"]), ("c", ["a>=2"])]:
        package, _ = validation.build_package(
            package_name=name, schema=MetaData(), migrations=None,
            dependencies=dependencies, version="1",
        )
        assert package is not None
        packages[name] = package
    owners = validation.table_owners(packages.values())
    providers = validation.tool_owners(packages.values())
    deps = dependency_graph(packages.values())

    checked = [validation.check_member(packages, n, owners, providers, deps) for n in "abc"]

    assert [[p.code for p in problems] for problems in checked] == [
        ["Y201", "Y203"], ["Y203"], ["Y202"]]
    assert validation.merge_problems(checked) == validation.check_set(packages)
    assert [p.code for p in validation.check_set(packages)] == ["Y201", "Y203", "Y202"]
