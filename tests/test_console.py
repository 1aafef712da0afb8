"""What the dev daemon's console prints for schema signals."""

from __future__ import annotations

import io
from typing import Any

from blinker import Signal

from runtime.console import Console, report_signals
from runtime.core import signals


def printed(*sends: tuple[Signal, dict[str, Any]]) -> list[str]:
    stream = io.StringIO()
    with report_signals(Console(stream, color=False)):
        for signal, kwargs in sends:
            signals.emit(signal, None, **kwargs)
    return stream.getvalue().splitlines()


def test_a_dev_sync_prints_what_it_resolved_and_a_migration_what_came_with_it() -> None:
    assert printed(
        (signals.schema_changed, {"package": "notes", "migrations": ("dev:1a2b",),
                                  "changes": ("table ydtb_notes: column color declared but "
                                              "missing",)}),
        (signals.schema_changed, {"package": "notes", "migrations": ("0002_x",),
                                  "changes": ("applied 0002_x",
                                              "dev change dev:1a2b is now in the migrations")}),
        (signals.reloaded, {"packages": ("notes",), "applied": ("notes 0002_x", "notes dev:1a2b"),
                            "elapsed_ms": 12.0, "error": None}),
    ) == [
        "  synced notes to its declared schema (dev:1a2b):",
        "    table ydtb_notes: column color declared but missing",
        "  notes: dev change dev:1a2b is now in the migrations",
        "ok notes: 1 migration, 1 dev schema sync, change seen -> applied in 12 ms",
    ]


def test_held_changes_are_explained_with_how_to_proceed() -> None:
    assert printed((signals.schema_drift, {
        "package": "notes",
        "changes": ("table ydtb_notes: column body in the database but not declared: would run "
                    "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body",),
        "hint": "write a migration (python -m runtime makemigration notes), or restart the dev "
                "daemon with --allow-destructive to apply it to the dev database"})) == [
        "! notes: schema changes not applied to the dev database, some may lose data:",
        "    table ydtb_notes: column body in the database but not declared: would run ALTER "
        "TABLE ydtb_notes DROP COLUMN IF EXISTS body",
        "  write a migration (python -m runtime makemigration notes), or restart the dev daemon "
        "with --allow-destructive to apply it to the dev database",
    ]
