"""What no registered package owns: `status` lists it, `uninstall` takes a package away."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import (
    NOTE_REFERENCE,
    NOTE_REFERENCE_SQL,
    create_sql,
    give_tool,
    run_cli,
    write_package,
)

from runtime.db.urls import plain_url

HINT = "(declare each in a package's schema.py, or drop it)"


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`notes`, and `tags` depending on it with a foreign key into its table."""
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))  # its own load cache
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "tags", name="tags", deps=["notes>=1"],
                  tables={"ydtb_tags": NOTE_REFERENCE, "ydtb_tag_names": []},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", *NOTE_REFERENCE_SQL)
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
            if any(words in line for words in ("no package owns", ": not registered any more;",
                                               ": uninstalled, its data kept;"))]


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
        "ledger_rows": 1, "uninstalled": False}]
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


def snapshot(url: str) -> tuple[list[Any], ...]:
    """Everything `uninstall` may change: tables, ledger, records, tools, choices, and
    the rows of `ydtb_tags` (none when it is gone)."""
    tables = query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "ORDER BY 1")
    return (tables,
            query(url, "SELECT package || ' ' || migration FROM ydtb_schema_migrations "
                       "ORDER BY 1"),
            query(url, "SELECT package || ' ' || schema_fingerprint FROM ydtb_packages "
                       "ORDER BY 1"),
            query(url, "SELECT package FROM ydtb_package_tables ORDER BY 1"),
            query(url, "SELECT id || ' ' || is_active FROM ydtb_tools ORDER BY 1"),
            query(url, "SELECT tool_id FROM ydtb_workspace_tools ORDER BY 1"),
            query(url, "SELECT count(*) FROM ydtb_tags") if "ydtb_tags" in tables else [])


@pytest.fixture
def installed(packages: Path, database_url: str) -> Path:
    """Both packages migrated, `tags` providing a tool a workspace enabled and holding a
    row; then `tags` taken out of the packages."""
    give_tool(packages / "tags", "tagger")
    assert run("migrate", packages, database_url)[0] == 0
    query(database_url, "INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('w1', 'W', 'w'); "
          "INSERT INTO ydtb_workspace_tools (workspace_id, tool_id) VALUES ('w1', 'tagger'); "
          "INSERT INTO ydtb_tags (id, workspace_id) VALUES (1, 'w1');")
    shutil.rmtree(packages / "tags")
    return packages


def put_back_tags(packages: Path) -> None:
    write_package(packages, "tags", name="tags", deps=["notes>=1"],
                  tables={"ydtb_tags": NOTE_REFERENCE, "ydtb_tag_names": []},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", *NOTE_REFERENCE_SQL)
                              + create_sql("ydtb_tag_names")})
    give_tool(packages / "tags", "tagger")


def test_uninstall_is_refused_while_registered_packages_depend_on_it(
    packages: Path, database_url: str
) -> None:
    assert run("migrate", packages, database_url)[0] == 0
    before = snapshot(database_url)

    assert run("uninstall", packages, database_url, "notes") == (1, (
        "error: notes: cannot uninstall, it is still registered, from "
        f"{(packages / 'notes/package.py').resolve()} (take it and its dependents tags out of "
        "the packages first, by removing the directory or uninstalling the distribution: the "
        "next migrate would install it again)\n"))
    shutil.rmtree(packages / "notes")
    assert run("uninstall", packages, database_url, "notes", "--purge") == (1, (
        "error: notes: cannot uninstall, tags depends on it (take it out of the packages "
        "too, or drop its dependency on notes, first)\n"))
    assert snapshot(database_url) == before


def test_uninstall_names_the_packages_it_can_take_when_it_does_not_know_one(
    installed: Path, database_url: str
) -> None:
    assert run("uninstall", installed, database_url, "tag") == (1, (
        "error: tag: the database records no such package (recorded and registered no more: "
        "tags; check the name)\n"))
    assert run("uninstall", installed, database_url, "@ydtb/core") == (1, (
        "error: @ydtb/core: cannot uninstall, it is built in (the core holds the workspaces, "
        "the tools catalog and the ledger of every package)\n"))


def test_uninstall_plan_says_what_it_would_do_and_changes_nothing(
    installed: Path, database_url: str
) -> None:
    before = snapshot(database_url)

    assert run("uninstall", installed, database_url, "tags", "--plan") == (0, (
        "would uninstall tags 1.0.0, keeping its data (--plan: nothing changed):\n"
        "  tables kept, with their rows: ydtb_tag_names, ydtb_tags\n"
        "  tools deactivated, the workspaces' choices of them kept: tagger\n"
        "  ledger: its 1 ledger row kept, so registered again it runs only the migrations it "
        "has not run; its record marked uninstalled\n"
        "  to drop its tables and records too: python -m runtime uninstall tags --purge\n"))
    assert run("uninstall", installed, database_url, "tags", "--purge", "--plan") == (0, (
        "would uninstall tags 1.0.0, purging it (--plan: nothing changed):\n"
        "  tables dropped: ydtb_tag_names, ydtb_tags\n"
        "  tools deleted, with the workspaces' choices of them: tagger\n"
        "  ledger: its 1 ledger row and its record deleted, so registered again it installs "
        "afresh from its first migration\n"))
    assert snapshot(database_url) == before


def test_uninstall_keeps_the_data_and_a_package_registered_again_finds_it(
    installed: Path, database_url: str
) -> None:
    code, out = run("uninstall", installed, database_url, "tags")

    assert (code, out.splitlines()[0]) == (0, "uninstalled tags 1.0.0, keeping its data:")
    tables, migrations, records, _owned, tools, choices, rows = snapshot(database_url)
    assert {"ydtb_tags", "ydtb_tag_names"} <= set(tables) and rows == [1]
    assert "tags 0001_tags" in migrations and "tags uninstalled" in records
    assert (tools, choices) == (["tagger false"], ["tagger"])
    assert leftovers(run("status", installed, database_url)[1]) == [
        "tags 1.0.0: uninstalled, its data kept; its tables are still in the database: "
        "ydtb_tag_names, ydtb_tags (python -m runtime uninstall tags --purge to remove its "
        "tables and records, or register it again)"]
    assert run("uninstall", installed, database_url, "tags") == (0, (
        "tags is uninstalled already, its data kept (to drop its tables and records: "
        "python -m runtime uninstall tags --purge)\n"))
    # A full run leaves it so: its tools are deactivated already.
    assert run("migrate", installed, database_url)[1].startswith("nothing to apply")
    assert "tags uninstalled" in snapshot(database_url)[2]

    put_back_tags(installed)
    code, out = run("migrate", installed, database_url)

    assert (code, out.split(" (")[0]) == (0, "nothing to apply: 3 packages up to date")
    assert snapshot(database_url)[4:] == (["tagger true"], ["tagger"], [1])
    assert leftovers(run("status", installed, database_url)[1]) == []


def test_purge_drops_the_tables_and_the_records_and_a_reinstall_is_a_first_install(
    installed: Path, database_url: str
) -> None:
    code, out = run("uninstall", installed, database_url, "tags", "--purge")

    assert (code, out.splitlines()[:2]) == (0, [
        "uninstalled tags 1.0.0, purging it:", "  tables dropped: ydtb_tag_names, ydtb_tags"])
    tables, migrations, records, owned, tools, choices, = snapshot(database_url)[:6]
    assert not {"ydtb_tags", "ydtb_tag_names"} & set(tables)
    assert [m for m in migrations if m.startswith("tags")] == []
    assert [r for r in records if r.startswith("tags")] == []
    assert "tags" not in owned and (tools, choices) == ([], [])
    assert leftovers(run("status", installed, database_url)[1]) == []

    put_back_tags(installed)
    code, out = run("migrate", installed, database_url)

    assert (code, out.splitlines()[0].split(" (")[0]) == (0, "tags  0001_tags")
    assert snapshot(database_url)[4:] == (["tagger true"], [], [0])  # a new, empty table


def test_purge_is_refused_while_the_database_holds_what_depends_on_its_tables(
    installed: Path, database_url: str
) -> None:
    write_package(installed, "other", name="other")  # a run of no packages is refused
    assert run("migrate", installed, database_url)[0] == 0
    shutil.rmtree(installed / "notes")
    before = snapshot(database_url)

    code, out = run("uninstall", installed, database_url, "notes", "--purge")

    assert (code, out) == (1, (
        "error: notes: cannot uninstall, what the database holds depends on its tables: "
        "constraint ydtb_tags_workspace_id_note_id_fkey on table ydtb_tags depends on table "
        "ydtb_notes (uninstall the package owning it with --purge first, or drop it "
        "yourself; nothing was changed)\n"))
    assert snapshot(database_url) == before
    assert run("uninstall", installed, database_url, "tags", "--purge")[0] == 0
    assert run("uninstall", installed, database_url, "notes", "--purge")[0] == 0
    assert leftovers(run("status", installed, database_url)[1]) == []


def test_purge_drops_the_enum_types_of_its_tables_and_a_reinstall_makes_them_afresh(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left behind, a reinstall's guarded CREATE TYPE kept the old labels.
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"

    def labels_package(*labels: str) -> None:
        quoted = ", ".join(f"'{label}'" for label in labels)
        write_package(root, "labels", name="labels", tables={"ydtb_labels": [
            f'Column("color", Enum({quoted}, name="ydtb_labels_color"))']}, migrations={
            "0001_labels.sql": f"DO $$ BEGIN CREATE TYPE ydtb_labels_color AS ENUM ({quoted});"
                               "\nEXCEPTION WHEN duplicate_object THEN NULL; END $$;\n"
                               + create_sql("ydtb_labels", "color ydtb_labels_color")})

    labels_package("red", "blue")
    assert run("migrate", root, database_url)[0] == 0
    shutil.rmtree(root / "labels")
    write_package(root, "notes", name="notes")  # a run of no packages is refused

    code, out = run("uninstall", root, database_url, "labels", "--purge", "--plan")
    assert code == 0
    assert "  types dropped, used by those tables only: ydtb_labels_color" in out.splitlines()
    assert run("uninstall", root, database_url, "labels", "--purge")[0] == 0
    assert query(database_url, "SELECT typname FROM pg_type WHERE typname LIKE "
                               "'ydtb_labels%'") == []

    labels_package("green")
    assert run("migrate", root, database_url)[0] == 0
    assert query(database_url, "SELECT unnest(enum_range(NULL::ydtb_labels_color))::text") \
        == ["green"]
    assert run("check", root, database_url, "--db")[0] == 0
