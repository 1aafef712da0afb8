"""Dev changes booked truthfully (issue #14): a dev change is "in the migrations" only once
the migrations build what it built; what a schema stops declaring shows as drift.

Each test calls `Daemon.reload` right after editing the files, as the watcher would.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from support import (
    Sent,
    columns,
    create_sql,
    declare_notes,
    started_daemon,
)

from runtime.core import booking
from runtime.db import ledger, scratch
from runtime.db.engine import driver
from runtime.dev import generator
from runtime.dev.daemon import Daemon

NOTES = create_sql("ydtb_notes")


async def booked(engine: AsyncEngine) -> dict[str, tuple[str, ...]]:
    """The dev changes the ledger books, each with the objects it booked."""
    async with engine.connect() as conn:
        rows = (await ledger.read_ledger(await driver(conn))).dev.get("notes", ())
    return {change: tuple(map(str, keys)) for change, keys in booking.changes_of(rows).items()}


async def makemigration(engine: AsyncEngine, daemon: Daemon, root: Path) -> list[Path]:
    """What `python -m runtime makemigration notes` writes."""
    packages = daemon.registry.ordered()
    differences = await scratch.compare_migrations(scratch.server_url(engine), packages, "notes")
    return generator.write_migration(root / "notes/migrations", packages[-1], differences)


def change_of(daemon: Daemon) -> str:
    return f"dev:{daemon.registry.get('notes').fingerprint}"


def reconciled(sent: Sent) -> list[str]:
    return [c for event in sent["schema_changed"] for c in event["changes"]
            if c.endswith("is now in the migrations")]


TAGS_DRIFT = ("table ydtb_tags in the database but not declared: would run DROP TABLE IF "
              "EXISTS ydtb_tags")


async def test_a_synced_table_taken_out_of_the_schema_stays_booked_and_shows_as_drift(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": [], "ydtb_tags": []})
    await daemon.reload([tmp_path / "notes"])
    tags = change_of(daemon)
    # The table is booked with what it was built with, object by object.
    assert {"table ydtb_tags", "column ydtb_tags.id", "index ydtb_tags.ydtb_tags_pkey"} \
        <= set((await booked(engine))[tags])
    declare_notes(tmp_path, {"ydtb_notes": []})
    await daemon.reload([tmp_path / "notes"])
    # An unrelated edit, and the migration makemigration writes for it.
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    await makemigration(engine, daemon, tmp_path)
    sent.clear()
    assert await daemon.reload([tmp_path / "notes"]) is True

    # No migration creates ydtb_tags: the change that did is still needed, and shown.
    assert reconciled(sent) == []
    assert tags in await booked(engine)
    assert await columns(engine, "ydtb_tags") == ["id", "workspace_id"]
    assert sent["schema_drift"][-1]["changes"] == (TAGS_DRIFT,)


async def test_a_synced_column_taken_out_of_the_schema_is_held_with_a_hint_that_works(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    declare_notes(tmp_path, {"ydtb_notes": []})
    await daemon.reload([tmp_path / "notes"])

    # makemigration has nothing to write for it: the hint does not send people there.
    assert sent["schema_drift"][-1]["hint"] == (
        "only the dev sync made column ydtb_notes.color, no migration builds it: restart the "
        "dev daemon with --allow-destructive to drop it from the dev database, or run the SQL "
        "above yourself")
    differences = await scratch.compare_migrations(scratch.server_url(engine),
                                                   daemon.registry.ordered(), "notes")
    assert differences == []


async def test_a_synced_table_taken_out_of_the_schema_is_dropped_with_allow_destructive(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path, allow_destructive=True)
    declare_notes(tmp_path, {"ydtb_notes": [], "ydtb_tags": []})
    await daemon.reload([tmp_path / "notes"])

    declare_notes(tmp_path, {"ydtb_notes": []})
    assert await daemon.reload([tmp_path / "notes"]) is True

    # Dropped: the dev database is again what the migrations build, nothing to book.
    assert await columns(engine, "ydtb_tags") == []
    assert await booked(engine) == {}


async def test_an_index_a_dev_change_built_goes_with_the_schema_and_its_booking(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']},
            [create_sql("ydtb_notes", "title text")])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text, index=True)']})
    await daemon.reload([tmp_path / "notes"])
    assert list(await booked(engine)) == [change_of(daemon)]

    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert await index_names(engine) == ["ydtb_notes_pkey", "ydtb_notes_workspace_id_id_key"]
    assert await booked(engine) == {}


async def index_names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(await (await driver(conn)).fetchval(
            "SELECT array_agg(indexname ORDER BY indexname) FROM pg_indexes "
            "WHERE tablename = 'ydtb_notes'"))


async def test_a_column_a_migration_built_and_no_schema_declares_is_kept_and_the_rest_synced(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    (tmp_path / "notes/migrations/0002_legacy.sql").write_text(
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS legacy text;")
    await daemon.reload([tmp_path / "notes"])

    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert await columns(engine, "ydtb_notes") == ["color", "id", "legacy", "workspace_id"]
    assert sent["schema_drift"][-1] == {
        "package": "notes",
        "changes": ("table ydtb_notes: column legacy in the database but not declared: would "
                    "run ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS legacy",),
        "hint": "if a migration made column ydtb_notes.legacy on purpose, declare it in the "
                "schema of notes; otherwise write a migration (python -m runtime "
                "makemigration notes), or restart the dev daemon with --allow-destructive to "
                "apply it to the dev database"}
    assert list(await booked(engine)) == [change_of(daemon)]


async def test_a_migration_and_a_schema_edit_in_one_reload_settle_what_the_migration_builds(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    # A cause of the soak's unreconciled rows: the reload that applied the migration
    # also synced a change, and then settled nothing.
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    color = change_of(daemon)
    await makemigration(engine, daemon, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)', 'Column("size", Integer)']})

    assert await daemon.reload([tmp_path / "notes"]) is True

    assert reconciled(sent) == [f"dev change {color} is now in the migrations"]
    assert await booked(engine) == {change_of(daemon): ("column ydtb_notes.size",)}


async def test_a_migration_applied_at_start_settles_the_dev_changes_it_builds(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    color = change_of(daemon)
    await makemigration(engine, daemon, tmp_path)  # ...while the daemon is stopped

    await started_daemon(engine, tmp_path)

    assert reconciled(sent) == [f"dev change {color} is now in the migrations"]
    assert await booked(engine) == {}


async def test_drift_left_alone_does_not_keep_dev_changes_the_migrations_build(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']},
            [create_sql("ydtb_notes", "title text"),
             "CREATE INDEX IF NOT EXISTS ix_notes_title ON ydtb_notes (title);"])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)', 'Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    assert sent["schema_drift"]  # the index no schema declares

    (tmp_path / "notes/migrations/0003_color.sql").write_text(
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color text;")
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert await booked(engine) == {}


async def test_a_migration_of_a_reload_that_failed_after_it_is_settled_by_the_next_one(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    color = change_of(daemon)
    await makemigration(engine, daemon, tmp_path)
    # ...saved with an edit the dev database refuses (Y405): the migration stays applied.
    declare_notes(tmp_path, {"ydtb_notes": [
        'Column("color", Text)', 'Column("tool_id", Integer, ForeignKey("ydtb_tools.id"))']})
    assert await daemon.reload([tmp_path / "notes"]) is False

    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert reconciled(sent) == [f"dev change {color} is now in the migrations"]
    assert await booked(engine) == {}
