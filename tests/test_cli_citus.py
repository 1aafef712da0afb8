"""`check --citus` and `graph --citus`: the schema distributed by workspace_id with Citus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_cli, write_package

EXAMPLES = Path(__file__).parent.parent / "packages_dev"
PLAN = """\
-- Distribute the registry with Citus, by workspace_id: run it once on the coordinator, \
after migrate.
SELECT create_reference_table('ydtb_tools');  -- @ydtb/core
SELECT create_reference_table('ydtb_workspaces');  -- @ydtb/core
SELECT create_reference_table('ydtb_workspace_tools');  -- @ydtb/core
SELECT create_distributed_table('ydtb_notes', 'workspace_id', colocate_with => 'none');  \
-- @ydtb/basic
SELECT create_distributed_table('ydtb_timer_entries', 'workspace_id', \
colocate_with => 'ydtb_notes');  -- @ydtb/timer
SELECT create_distributed_table('ydtb_tasks', 'workspace_id', \
colocate_with => 'ydtb_notes');  -- @ydtb/tasks
-- A table added later joins the group of ydtb_notes: create_distributed_table('<table>', \
'workspace_id', colocate_with => 'ydtb_notes')
-- ydtb_package_tables, ydtb_packages, ydtb_schema_migrations stay local to the \
coordinator: only runtime reads them, where it runs
"""


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))  # its own load cache


@pytest.fixture
def serial(tmp_path: Path) -> Path:
    """A package whose table is keyed by a serial `id` alone, as `write_package` writes it."""
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    return root


def test_the_examples_migrate_to_a_schema_citus_distributes(postgres_server_url: str) -> None:
    code, out = run_cli("check", "--packages", str(EXAMPLES), "--no-entry-points",
                        "--database-url", postgres_server_url, "--db", "--citus")

    # The lint's warnings follow (the examples' migrations build indexes in a transaction).
    assert (code, out.splitlines()[0]) == (
        0, "ok: 4 packages valid (@ydtb/core, @ydtb/basic, @ydtb/timer, @ydtb/tasks), every "
        "migration idempotent and building its declared schema, ready for Citus: 3 tables "
        "distributed by workspace_id, 3 tables copied to every node (graph --citus prints the "
        "plan)")


def test_graph_citus_prints_the_plan_of_the_examples() -> None:
    assert run_cli("graph", "--citus", "--packages", str(EXAMPLES), "--no-entry-points") == (
        0, PLAN)


def test_check_citus_fails_on_what_citus_refuses_even_after_a_cached_check(
    serial: Path,
) -> None:
    assert run_cli("check", "--packages", str(serial), "--no-entry-points")[0] == 0

    code, out = run_cli("check", "--citus", "--packages", str(serial), "--no-entry-points")

    assert code == 1
    assert out == (
        "error: 2 problems distributing by workspace_id with Citus:\n"
        "  - notes: table 'ydtb_notes' primary key (id) leaves out workspace_id, which Citus "
        "refuses on a table distributed by it (declare it with "
        "runtime.kit.workspace_primary_key('id') and write the migration that changes it) "
        "[Y701]\n"
        "  - notes: table 'ydtb_notes' column 'id' takes its values from an integer sequence, "
        "which Citus cannot draw from on worker nodes: inserts made through them fail "
        "(declare it BigInteger, with a migration: ALTER TABLE ydtb_notes ALTER COLUMN id "
        "TYPE bigint) [Y708]\n")


def test_graph_citus_prints_no_plan_citus_would_refuse(serial: Path) -> None:
    code, out = run_cli("graph", "--citus", "--packages", str(serial), "--no-entry-points")

    assert code == 1
    assert out.startswith("error: 2 problems distributing by workspace_id with Citus:\n")
    assert "SELECT" not in out


def test_the_plan_and_the_problems_in_json(serial: Path) -> None:
    code, out = run_cli("graph", "--packages", str(EXAMPLES), "--no-entry-points", "--citus",
                        "--json")

    placements = json.loads(out)["citus"]
    assert code == 0
    assert [p["kind"] for p in placements[:3]] == ["reference"] * 3
    assert placements[3]["statement"].startswith("SELECT create_distributed_table(")

    code, out = run_cli("check", "--packages", str(serial), "--no-entry-points", "--citus",
                        "--json")

    document = json.loads(out)
    assert (code, document["ok"]) == (1, False)
    assert {p["code"] for p in document["problems"]} >= {"Y701"}
