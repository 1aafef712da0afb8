"""Distributing the schema by workspace_id with Citus (Y701-Y710), no database.

No Citus server runs here: each rule has a good and a bad example, several taken from
the Citus documentation (citusdata/citus_docs) or the expected output of its regression
tests (citusdata/citus src/test/regress/expected), renamed to `ydtb_` tables with
`workspace_id` for the tutorial's `company_id`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSTZRANGE, ExcludeConstraint

from runtime import DatabaseRegistry, kit
from runtime.core import citus
from runtime.core.citus import Kind, Placement
from runtime.core.schema import core_metadata
from runtime.errors import CitusProblemsError
from runtime.load.loader import load_all

EXAMPLES = Path(__file__).parent.parent.parent / "packages_dev"
PACKAGE = "@acme/ads"


def schema() -> MetaData:
    """A package's MetaData holding copies of the core's tables, so its keys resolve."""
    metadata = kit.metadata()
    for core in core_metadata.tables.values():
        core.to_metadata(metadata)
    return metadata


def table(name: str, metadata: MetaData, *columns: Any, key: bool = True) -> Table:
    """A workspace table; `key`: its primary key is (workspace_id, id), else id alone."""
    return kit.workspace_table(name, metadata, Column("id", BigInteger, Identity(),
                                                      primary_key=not key),
                               *columns, *([kit.workspace_primary_key()] if key else []))


def tables(metadata: MetaData) -> list[citus.Owned]:
    return citus.tables_of([]) + [(PACKAGE, t) for name, t in sorted(metadata.tables.items())
                                  if name not in core_metadata.tables]


def codes(metadata: MetaData) -> list[str]:
    return [p.code for p in citus.problems(tables(metadata))]


def messages(metadata: MetaData) -> list[str]:
    return [str(p) for p in citus.problems(tables(metadata))]


def tutorial(*, composite: bool) -> MetaData:
    """The multi-tenant tutorial's campaigns, ads and clicks (use_cases/multi_tenant.rst).

    `composite`: as the tutorial has them once prepared for Citus, keys composite with
    the tenant id; else as they were before, keyed by id alone.
    """
    metadata = schema()
    for name, parent in [("ydtb_campaigns", None), ("ydtb_ads", "ydtb_campaigns"),
                         ("ydtb_clicks", "ydtb_ads")]:
        reference: list[Any] = []
        if parent and composite:
            reference = [Column("parent_id", BigInteger),
                         kit.workspace_reference("parent_id", parent)]
        elif parent:
            reference = [Column("parent_id", BigInteger, ForeignKey(f"{parent}.id"))]
        table(name, metadata, Column("name", Text), *reference, key=composite)
    return metadata


def test_the_tutorial_schema_prepared_for_citus_is_distributed_in_key_order() -> None:
    plan = citus.plan(tables(tutorial(composite=True)))

    assert [p.statement for p in plan if p.statement] == [
        "SELECT create_reference_table('ydtb_tools');",
        "SELECT create_reference_table('ydtb_workspaces');",
        "SELECT create_reference_table('ydtb_workspace_tools');",
        "SELECT create_distributed_table('ydtb_campaigns', 'workspace_id', "
        "colocate_with => 'none');",
        "SELECT create_distributed_table('ydtb_ads', 'workspace_id', "
        "colocate_with => 'ydtb_campaigns');",
        "SELECT create_distributed_table('ydtb_clicks', 'workspace_id', "
        "colocate_with => 'ydtb_campaigns');",
    ]
    assert [(p.table, p.kind) for p in plan if not p.statement] == [
        ("ydtb_package_tables", Kind.LOCAL), ("ydtb_packages", Kind.LOCAL),
        ("ydtb_schema_migrations", Kind.LOCAL)]


def test_the_tutorial_schema_before_it_was_prepared_is_refused_with_each_fix() -> None:
    found = citus.problems(tables(tutorial(composite=False)))

    assert [(p.code, p.table) for p in found] == [
        ("Y701", "ydtb_ads"), ("Y704", "ydtb_ads"), ("Y701", "ydtb_campaigns"),
        ("Y701", "ydtb_clicks"), ("Y704", "ydtb_clicks")]
    assert [str(p) for p in found[:2]] == [
        f"{PACKAGE}: table 'ydtb_ads' primary key (id) leaves out workspace_id, which Citus "
        "refuses on a table distributed by it (declare it with "
        "runtime.kit.workspace_primary_key('id') and write the migration that changes it) "
        "[Y701]",
        f"{PACKAGE}: table 'ydtb_ads' key parent_id -> ydtb_campaigns leaves out workspace_id, "
        "which Citus refuses between distributed tables: a key stays on one node (key it "
        "with runtime.kit.workspace_reference, or drop it and keep the reference in the "
        "application) [Y704]"]
    with pytest.raises(CitusProblemsError) as refused:
        citus.plan(tables(tutorial(composite=False)))
    assert str(refused.value).startswith(
        "5 problems distributing by workspace_id with Citus:\n  - ")


@pytest.mark.parametrize(("constraint", "code"), [
    # develop/reference_ddl.rst: "ALTER TABLE ads ADD CONSTRAINT ads_unique_image
    # UNIQUE (account_id, image_url)", enforced per account.
    pytest.param(UniqueConstraint("workspace_id", "image_url"), None, id="unique-with"),
    pytest.param(UniqueConstraint("image_url"), "Y702", id="unique-without"),
    pytest.param(Index("ix_ads_image", "workspace_id", func.lower(text("image_url")),
                       unique=True), None, id="unique-index-with"),
    pytest.param(Index("ix_ads_image", func.lower(text("image_url")), unique=True), "Y702",
                 id="unique-index-expression"),
    pytest.param(Index("ix_ads_image", "image_url", unique=True), "Y702",
                 id="unique-index-without"),
    pytest.param(Index("ix_ads_image", "image_url"), None, id="plain-index"),
    pytest.param(ExcludeConstraint(("workspace_id", "="), ("during", "&&")), None,
                 id="exclusion-with"),
    pytest.param(ExcludeConstraint(("during", "&&")), "Y703", id="exclusion-without"),
])
def test_a_unique_key_includes_workspace_id(constraint: Any, code: str | None) -> None:
    metadata = schema()
    table("ydtb_ads", metadata, Column("image_url", Text), Column("during", TSTZRANGE),
          constraint)

    assert codes(metadata) == ([code] if code else [])


def test_a_unique_key_problem_names_its_columns_and_the_fix() -> None:
    metadata = schema()
    table("ydtb_ads", metadata, Column("image_url", Text, unique=True))

    assert messages(metadata) == [
        f"{PACKAGE}: table 'ydtb_ads' unique key (image_url) leaves out workspace_id, which "
        "Citus refuses on a table distributed by it (add workspace_id to it: Citus enforces "
        "uniqueness within a workspace; a value unique across workspaces belongs in a "
        "reference table) [Y702]"]


def test_a_key_that_crosses_workspaces_on_purpose_is_refused_by_citus() -> None:
    metadata = schema()
    table("ydtb_templates", metadata, kit.workspace_key())
    table("ydtb_ads", metadata, Column("template_id", BigInteger, ForeignKey(
        "ydtb_templates.id", ondelete="SET NULL",
        info={"cross_workspace": "templates are shared"})))

    [found] = messages(metadata)
    assert found.startswith(
        f"{PACKAGE}: table 'ydtb_ads' key template_id -> ydtb_templates leaves out "
        "workspace_id, which Citus refuses between distributed tables: a key stays on one "
        "node; it crosses workspaces on purpose: templates are shared (")


@pytest.mark.parametrize(("columns", "code"), [
    pytest.param(["workspace_id", "campaign_id"], None, id="workspace-id-onto-workspace-id"),
    # expected/multi_foreign_key.out: "column list are in incorrect order".
    pytest.param(["campaign_id", "workspace_id"], "Y704", id="workspace-id-onto-id"),
])
def test_a_key_pairs_workspace_id_with_workspace_id(columns: list[str], code: str | None) -> None:
    metadata = schema()
    table("ydtb_campaigns", metadata, kit.workspace_key())
    table("ydtb_ads", metadata, Column("campaign_id", BigInteger), ForeignKeyConstraint(
        columns, ["ydtb_campaigns.workspace_id", "ydtb_campaigns.id"]))

    assert codes(metadata) == ([code] if code else [])


@pytest.mark.parametrize(("ondelete", "onupdate", "codes_"), [
    pytest.param(None, None, [], id="no-action"),
    pytest.param("CASCADE", None, [], id="cascade"),
    pytest.param("RESTRICT", None, [], id="restrict"),
    # expected/pg15.out: "ok, Citus could relax this constraint in the future".
    pytest.param("SET NULL", None, ["Y705"], id="set-null-naming-its-column"),
    pytest.param("SET DEFAULT", None, ["Y705"], id="set-default-naming-its-column"),
    # expected/foreign_key_to_reference_table.out.
    pytest.param(None, "CASCADE", ["Y705"], id="on-update-cascade"),
    pytest.param("SET NULL", "SET NULL", ["Y705", "Y705"], id="both"),
])
def test_a_key_holding_workspace_id_never_sets_it(
    ondelete: str | None, onupdate: str | None, codes_: list[str]
) -> None:
    metadata = schema()
    table("ydtb_campaigns", metadata, kit.workspace_key())
    table("ydtb_ads", metadata, Column("campaign_id", BigInteger), kit.workspace_reference(
        "campaign_id", "ydtb_campaigns", ondelete=ondelete, onupdate=onupdate))

    assert codes(metadata) == codes_


def test_set_null_says_citus_refuses_it_even_naming_its_columns() -> None:
    metadata = schema()
    table("ydtb_campaigns", metadata)
    table("ydtb_ads", metadata, Column("campaign_id", BigInteger), kit.workspace_reference(
        "campaign_id", "ydtb_campaigns", ondelete="SET NULL"))

    assert messages(metadata) == [
        f"{PACKAGE}: table 'ydtb_ads' key (workspace_id, campaign_id) -> ydtb_campaigns is ON "
        "DELETE SET NULL and holds workspace_id, which Citus refuses even when it names the "
        "columns it sets (make it ondelete='CASCADE', or leave ondelete out and clear the "
        "column in the application before deleting) [Y705]"]


def test_the_key_into_ydtb_workspaces_cascades_on_delete_but_not_on_update() -> None:
    metadata = schema()
    Table("ydtb_ads", metadata, Column("id", BigInteger, primary_key=True), Column(
        "workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE",
                                               onupdate="CASCADE"), primary_key=True))

    assert codes(metadata) == ["Y705"]


def test_the_core_shared_tables_are_reference_tables_the_ledger_stays_local() -> None:
    core = citus.tables_of([])

    assert citus.kinds_of(core) == dict(citus.CORE_KINDS)
    assert citus.problems(core) == []


def test_distributing_ydtb_workspaces_like_the_tutorials_companies_needs_a_core_change() -> None:
    # The tutorials distribute their tenant table by its id; ours would lose its global
    # slug, and the tools a workspace enables (a reference table) could not point at it.
    core = citus.tables_of([])
    kinds = {**citus.CORE_KINDS, "ydtb_workspaces": Kind.DISTRIBUTED}

    found = citus.problems(core, kinds)

    assert [(p.code, p.table) for p in found] == [
        ("Y702", "ydtb_workspaces"), ("Y706", "ydtb_workspace_tools")]
    assert "unique key (slug) leaves out id" in found[0].message
    assert found[1].message == ("table 'ydtb_workspace_tools' key workspace_id -> "
                                "ydtb_workspaces goes from a reference table to a distributed "
                                "one, which Citus refuses")
    with_tools = {**kinds, "ydtb_workspace_tools": Kind.DISTRIBUTED}
    assert ("Y701", "ydtb_workspace_tools") in [
        (p.code, p.table) for p in citus.problems(core, with_tools)]


def test_a_key_into_the_ledger_is_refused_one_into_a_shared_core_table_is_not() -> None:
    metadata = schema()
    table("ydtb_ads", metadata,
          Column("tool_id", String(20), ForeignKey("ydtb_tools.id", ondelete="CASCADE")),
          Column("package", String(214), ForeignKey("ydtb_packages.package")))

    assert messages(metadata) == [
        f"{PACKAGE}: table 'ydtb_ads' key package -> ydtb_packages references a table that "
        "stays local to the coordinator, which Citus refuses from a distributed or reference "
        "table (reference only the core's shared tables: ydtb_workspaces, ydtb_tools, "
        "ydtb_workspace_tools) [Y706]"]


@pytest.mark.parametrize(("sets", "code"), [
    # expected/pg15.out, set_on_default_test_referencing: SET DEFAULT (col_3), a serial.
    pytest.param("col_3", "Y707", id="onto-a-sequence"),
    pytest.param("col_1", None, id="onto-a-plain-column"),
])
def test_set_default_onto_a_sequence_is_refused(sets: str, code: str | None) -> None:
    metadata = schema()
    Table("ydtb_codes", metadata, Column("col_1", Integer), Column("col_3", BigInteger),
          UniqueConstraint("col_1", "col_3"))
    table("ydtb_ads", metadata, Column("col_1", Integer, server_default="0"),
          Column("col_3", BigInteger, server_default=text("nextval('ydtb_ads_col_3_seq')")),
          ForeignKeyConstraint(["col_1", "col_3"], ["ydtb_codes.col_1", "ydtb_codes.col_3"],
                               ondelete=f"SET DEFAULT ({sets})"))

    assert citus.kinds_of(tables(metadata))["ydtb_codes"] is Kind.REFERENCE
    assert codes(metadata) == ([code] if code else [])


@pytest.mark.parametrize(("column", "code"), [
    pytest.param(Column("n", BigInteger, Identity()), None, id="bigint-identity"),
    # expected/generated_identity.out, int_identity_column.
    pytest.param(Column("n", Integer, Identity()), "Y708", id="int-identity"),
    # expected/multi_sequence_default.out: "nextval(sequence) calls in worker nodes are
    # not supported for column defaults of type int or smallint".
    pytest.param(Column("n", SmallInteger, server_default=text("nextval('ydtb_ads_n')")),
                 "Y708", id="smallint-nextval"),
    pytest.param(Column("n", Integer), None, id="int-no-sequence"),
])
def test_a_sequence_column_is_bigint(column: Column[Any], code: str | None) -> None:
    metadata = schema()
    table("ydtb_ads", metadata, column)

    assert codes(metadata) == ([code] if code else [])


def test_a_serial_key_says_how_to_widen_it() -> None:
    metadata = schema()
    kit.workspace_table("ydtb_ads", metadata, Column("id", Integer, primary_key=True))

    assert messages(metadata)[1] == (
        f"{PACKAGE}: table 'ydtb_ads' column 'id' takes its values from an integer sequence, "
        "which Citus cannot draw from on worker nodes: inserts made through them fail "
        "(declare it BigInteger, with a migration: ALTER TABLE ydtb_ads ALTER COLUMN id "
        "TYPE bigint) [Y708]")


@pytest.mark.parametrize(("kind", "code"), [
    pytest.param(String(20), None, id="varchar"),
    pytest.param(String(36), None, id="varchar-longer"),  # one type oid to Citus
    pytest.param(Text(), "Y709", id="text"),
    pytest.param(String(20, collation="C"), "Y709", id="collation"),
])
def test_workspace_id_has_the_type_of_ydtb_workspaces_id(kind: Any, code: str | None) -> None:
    metadata = schema()
    Table("ydtb_ads", metadata, Column("id", BigInteger, primary_key=True),
          Column("workspace_id", kind, ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
                 primary_key=True))

    assert codes(metadata) == ([code] if code else [])


def test_tables_keyed_in_a_cycle_cannot_be_ordered() -> None:
    metadata = schema()
    for name, other in [("ydtb_a", "ydtb_b"), ("ydtb_b", "ydtb_a")]:
        table(name, metadata, Column("other_id", BigInteger),
              kit.workspace_reference("other_id", other), kit.workspace_key())

    assert messages(metadata) == [
        f"{PACKAGE}: tables ydtb_a -> ydtb_b -> ydtb_a reference each other in a cycle: Citus "
        "distributes a key's target before the table that holds the key (drop one of these "
        "keys, distribute the tables, then add it back) [Y710]"]


def test_a_table_referencing_itself_is_no_cycle() -> None:
    metadata = schema()
    table("ydtb_a", metadata, Column("parent_id", BigInteger),
          kit.workspace_reference("parent_id", "ydtb_a"))

    assert codes(metadata) == []


def test_a_statement_quotes_the_table_as_postgresql_reads_it() -> None:
    assert Placement("p", "ydtb_Odd'", Kind.REFERENCE).statement == (
        """SELECT create_reference_table('"ydtb_Odd''"');""")
    assert Placement("p", "ydtb_x", Kind.LOCAL).statement is None


def test_the_example_packages_are_ready_and_planned_in_key_order() -> None:
    registry = DatabaseRegistry(send_signals=False)
    assert load_all([EXAMPLES], registry, entry_points=False).errors == []

    plan = citus.plan(citus.tables_of(registry.ordered()))

    assert [(p.package, p.statement) for p in plan if p.kind is Kind.DISTRIBUTED] == [
        ("@ydtb/basic", "SELECT create_distributed_table('ydtb_notes', 'workspace_id', "
                        "colocate_with => 'none');"),
        ("@ydtb/timer", "SELECT create_distributed_table('ydtb_timer_entries', 'workspace_id', "
                        "colocate_with => 'ydtb_notes');"),
        ("@ydtb/tasks", "SELECT create_distributed_table('ydtb_tasks', 'workspace_id', "
                        "colocate_with => 'ydtb_notes');"),
    ]
    assert [p.kind for p in plan] == [Kind.REFERENCE] * 3 + [Kind.DISTRIBUTED] * 3 + \
        [Kind.LOCAL] * 3


def test_every_rule_is_in_the_readme_code_table() -> None:
    source = (Path(citus.__file__)).read_text()
    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()

    rules = sorted(set(re.findall(r'"(Y7\d\d)"', source)))
    assert rules == [f"Y7{n:02}" for n in range(1, 11)]
    assert [code for code in rules if f"\n| {code} | " not in readme] == []
