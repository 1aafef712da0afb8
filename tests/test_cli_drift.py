"""`status` and `check --db` on schemas and migrations that disagree."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support import create_sql, run_cli, write_package

from runtime import DatabaseRegistry
from runtime.db import engine, sync
from runtime.load.loader import load_all


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Package `notes` declaring a column `color` its migration does not build."""
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": ['Column("color", Text)']},
                  migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes")})
    return tmp_path


def run(command: str, *args: str, root: Path, url: str) -> tuple[int, str]:
    return run_cli(command, *args, "--packages", str(root), "--database-url", url,
                   "--no-entry-points")


async def sync_dev_database(root: Path, url: str) -> str:
    """What the dev daemon does after an edit: sync `notes`; return the dev change's id."""
    registry = DatabaseRegistry(send_signals=False)
    load_all([root], registry, entry_points=False)
    db = engine.create_engine(url)
    try:
        result = await sync.sync_package(db, registry.get("notes"), registry)
    finally:
        await db.dispose()
    assert result.change is not None
    return result.change.migration


def test_status_shows_schema_drift_in_plain_words(root: Path, database_url: str) -> None:
    assert run("migrate", root=root, url=database_url)[0] == 0

    assert run("status", root=root, url=database_url) == (1, (
        "PACKAGE     VERSION  RECORDED  APPLIED  PENDING  DRIFT\n"
        "@ydtb/core  1.0.0    1.0.0     2        -        -\n"
        "notes       1.0.0    1.0.0     1        -        1 schema difference\n"
        "notes: the database differs from the declared schema:\n"
        "  table ydtb_notes: column color declared but missing\n"))
    code, out = run("status", "--json", root=root, url=database_url)
    assert code == 1
    assert json.loads(out)["packages"][1]["schema_drift"] == [{
        "kind": "add_column", "table": "ydtb_notes", "name": "color",
        "words": "table ydtb_notes: column color declared but missing", "destructive": False}]
    # The ledger alone: the schema is not compared.
    assert run("status", "--no-drift", root=root, url=database_url) == (0, (
        "PACKAGE     VERSION  RECORDED  APPLIED  PENDING  DRIFT\n"
        "@ydtb/core  1.0.0    1.0.0     2        -        -\n"
        "notes       1.0.0    1.0.0     1        -        -\n"))
    code, out = run("status", "--no-drift", "--json", root=root, url=database_url)
    assert (code, json.loads(out)["packages"][1]["schema_drift"]) == (0, None)


def test_status_lists_dev_changes_and_compares_no_package_with_pending_migrations(
    root: Path, database_url: str
) -> None:
    assert run("migrate", root=root, url=database_url)[0] == 0
    change = asyncio.run(sync_dev_database(root, database_url))
    (root / "notes/migrations/0002_later.sql").write_text("SELECT 1;")

    assert run("status", root=root, url=database_url) == (0, (
        "PACKAGE     VERSION  RECORDED  APPLIED  PENDING     DRIFT\n"
        "@ydtb/core  1.0.0    1.0.0     2        -           -\n"
        f"notes       1.0.0    1.0.0     1        0002_later  {change} not in a migration\n"
        f"notes: dev changes not in a migration yet: {change} (column ydtb_notes.color); "
        "write one: python -m runtime makemigration notes\n"))


def test_status_shows_a_synced_table_the_schema_no_longer_declares(
    root: Path, database_url: str
) -> None:
    # Issue #14: the dev change that built it stays booked, and the table is drift.
    assert run("migrate", root=root, url=database_url)[0] == 0
    write_package(root, "notes", name="notes", tables={"ydtb_notes": ['Column("color", Text)'],
                                                       "ydtb_tags": []}, migrations={})
    change = asyncio.run(sync_dev_database(root, database_url))
    write_package(root, "notes", name="notes", tables={"ydtb_notes": ['Column("color", Text)']},
                  migrations={})

    code, out = run("status", root=root, url=database_url)
    assert code == 1
    assert out.endswith(
        "notes: the database differs from the declared schema:\n"
        "  table ydtb_tags in the database but not declared\n"
        f"notes: dev changes not in a migration yet: {change} (column ydtb_notes.color, "
        "table ydtb_tags); write one: python -m runtime makemigration notes\n"), out


def test_check_db_fails_when_the_migrations_do_not_build_the_schema(
    root: Path, database_url: str
) -> None:
    assert run("check", "--db", root=root, url=database_url) == (1, (
        "error: 1 problem found:\n"
        "  - notes: its migrations do not build its declared schema: table ydtb_notes: column "
        "color declared but missing (change the schema to match, or write the difference as "
        "a migration: python -m runtime makemigration notes) [Y404]\n"))

    (root / "notes/migrations/0002_color.sql").write_text(
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color text;")
    assert run("check", "--db", root=root, url=database_url) == (0, (
        "ok: 2 packages valid (@ydtb/core, notes), every migration idempotent and building "
        "its declared schema\n"))
