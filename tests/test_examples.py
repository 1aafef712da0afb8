"""The example packages of `packages_dev/`, which `./scripts/dev` runs on a fresh machine."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from runtime import DatabaseRegistry, Package, Tool
from runtime.load.loader import load_all

EXAMPLES = Path(__file__).parent.parent / "packages_dev"
NAMES = ["@ydtb/basic", "@ydtb/tasks", "@ydtb/timer"]


def load() -> DatabaseRegistry:
    registry = DatabaseRegistry(send_signals=False)
    result = load_all([EXAMPLES], registry, entry_points=False)
    assert result.errors == []
    return registry


@pytest.fixture(scope="module")
def registry() -> DatabaseRegistry:
    return load()


def sql_of(package: Package) -> str:
    return "\n".join(s for m in package.migrations for s in m.statements or ())


def test_examples_load_in_dependency_order(registry: DatabaseRegistry) -> None:
    names = [p.name for p in registry.ordered()]

    assert names[0] == "@ydtb/core"
    assert sorted(names[1:]) == NAMES
    assert names.index("@ydtb/basic") < names.index("@ydtb/tasks")


def test_basic_has_sql_and_python_migrations(registry: DatabaseRegistry) -> None:
    basic = registry.get("@ydtb/basic")

    assert [m.id for m in basic.migrations] == [
        "0001_create_notes", "0002_add_pinned", "0003_backfill_titles", "0004_workspace_key",
        "0005_citus_keys"]
    assert basic.migrations[2].statements is None
    assert str(basic.version) == "1.2.0"
    assert [str(d) for d in basic.dependencies] == ["@ydtb/core>=1.0"]


def test_tasks_reference_notes(registry: DatabaseRegistry) -> None:
    tasks = registry.get("@ydtb/tasks")
    [key] = [k for k in tasks.schema.tables["ydtb_tasks"].foreign_key_constraints
             if k.elements[0].target_fullname.startswith("ydtb_notes.")]

    # Inside one workspace (Y210), with no ON DELETE action Citus refuses (Y705).
    assert [(e.parent.name, e.target_fullname) for e in key.elements] == [
        ("workspace_id", "ydtb_notes.workspace_id"), ("note_id", "ydtb_notes.id")]
    assert key.ondelete is None
    assert "@ydtb/basic" in tasks.dependency_names
    assert len(tasks.migrations) >= 2


def test_timer_provides_its_tool(registry: DatabaseRegistry) -> None:
    [tool] = registry.get("@ydtb/timer").tools

    assert tool == Tool(id="timer", name="Timer", description=tool.description, icon="timer")
    assert tool.description


def test_checksums_are_stable_across_fresh_loads(registry: DatabaseRegistry) -> None:
    again = load()

    for name in NAMES:
        before, after = registry.get(name), again.get(name)
        assert before is not after
        assert [m.checksum for m in before.migrations] == [m.checksum for m in after.migrations]
    # The Python migration is checksummed by its source, not by the fallback name.
    backfill = registry.get("@ydtb/basic").migration("0003_backfill_titles")
    assert backfill.checksum != hashlib.sha256(b"up").hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_migrations_declare_what_the_schema_does(registry: DatabaseRegistry, name: str) -> None:
    # A cheap, database-free guard; the real comparison runs against PostgreSQL.
    package = registry.get(name)
    sql = sql_of(package)

    for table in package.tables:
        assert f"CREATE TABLE IF NOT EXISTS {table.name} (" in sql
        for column in table.c:
            assert re.search(rf"\b{column.name}\b", sql), f"{table.name}.{column.name}"
        for item in [*table.constraints, *table.indexes]:
            assert re.search(rf"\b{item.name}\b", sql), f"{table.name}: {item.name}"
        assert "workspace_id" in table.c


@pytest.mark.parametrize("name", NAMES)
def test_migrations_can_run_twice(registry: DatabaseRegistry, name: str) -> None:
    sql = re.sub(r"--[^\n]*", "", sql_of(registry.get(name)))

    for match in re.finditer(r"\b(CREATE (?:UNIQUE )?INDEX|CREATE TABLE|ADD COLUMN)\b", sql):
        assert sql[match.end():].lstrip().startswith("IF NOT EXISTS"), sql[match.start():][:60]
