"""What no registered package owns: `status` lists it, `uninstall` takes a package away."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import create_sql, run_cli, write_package

from runtime.db.urls import plain_url

HINT = "(declare each in a package's schema.py, or drop it)"


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    """`notes`, and `tags` depending on it with a foreign key into its table."""
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "tags", name="tags", deps=["notes>=1"],
                  tables={"ydtb_tags": ['Column("note_id", Integer, ForeignKey("ydtb_notes.id"))'],
                          "ydtb_tag_names": []},
                  migrations={"0001_tags.sql": create_sql(
                      "ydtb_tags", "note_id int REFERENCES ydtb_notes(id)")
                      + create_sql("ydtb_tag_names")})
    return root


def run(command: str, packages: Path, url: str, *more: str) -> tuple[int, str]:
    return run_cli(command, "--packages", str(packages), "--no-entry-points",
                   "--database-url", url, *more)


def query(url: str, statement: str) -> list[Any]:
    """Run `statement` (several, if they return nothing) on the database at `url`; return
    the first value of each row."""
    async def go() -> list[Any]:
        conn = await asyncpg.connect(plain_url(url))
        try:
            if ";" in statement:
                await conn.execute(statement)
                return []
            return [row[0] for row in await conn.fetch(statement)]
        finally:
            await conn.close()
    return asyncio.run(go())


def leftovers(out: str) -> list[str]:
    """The lines `status` prints after its table."""
    return [line for line in out.splitlines()
            if "no package owns" in line or "not registered any more" in line]


def test_status_lists_a_table_no_package_owns(packages: Path, database_url: str) -> None:
    assert run("migrate", packages, database_url)[0] == 0
    query(database_url, "CREATE TABLE handmade (id int); "
          "CREATE TABLE ydtb_log (id int, at date) PARTITION BY RANGE (at); "
          "CREATE TABLE ydtb_log_2024 PARTITION OF ydtb_log "
          "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01'); "
          "CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.ydtb_other (id int)")

    code, out = run("status", packages, database_url)

    assert code == 0  # seen, not a failure: an application may keep tables of its own
    assert leftovers(out) == [f"2 tables no package owns: handmade, ydtb_log {HINT}"]
    code, out = run("status", packages, database_url, "--json")
    assert json.loads(out)["unowned_tables"] == ["handmade", "ydtb_log"]
    assert json.loads(out)["removed"] == []


def test_status_lists_a_removed_package_with_its_tables(
    packages: Path, database_url: str
) -> None:
    assert run("migrate", packages, database_url)[0] == 0
    shutil.rmtree(packages / "tags")
    expected = ("tags 1.0.0: not registered any more; its tables are still in the database: "
                "ydtb_tag_names, ydtb_tags (python -m runtime uninstall tags --purge to remove "
                "its tables and records, or register it again)")

    assert leftovers(run("status", packages, database_url)[1]) == [expected]
    assert run("migrate", packages, database_url)[0] == 0  # deactivates its tools: the same
    assert leftovers(run("status", packages, database_url)[1]) == [expected]
    out = run("status", packages, database_url, "--json")[1]
    assert json.loads(out)["removed"] == [{
        "package": "tags", "version": "1.0.0", "tables": ["ydtb_tag_names", "ydtb_tags"],
        "ledger_rows": 1}]
    assert json.loads(out)["unowned_tables"] == []


def test_status_says_when_the_ledger_does_not_know_a_removed_package_s_tables(
    packages: Path, database_url: str
) -> None:
    assert run("migrate", packages, database_url)[0] == 0
    query(database_url, "DELETE FROM ydtb_package_tables WHERE package = 'tags'")
    shutil.rmtree(packages / "tags")

    lines = leftovers(run("status", packages, database_url)[1])

    assert lines == [
        "tags 1.0.0: not registered any more; the ledger does not record its tables, as it "
        "was recorded before it kept them: look among the tables no package owns "
        "(python -m runtime uninstall tags --purge to remove its tables and records, or "
        "register it again)",
        f"2 tables no package owns: ydtb_tag_names, ydtb_tags {HINT}"]
