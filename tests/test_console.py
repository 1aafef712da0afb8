"""What the dev daemon's console prints for schema signals."""

from __future__ import annotations

import io
from typing import Any

from blinker import Signal

from runtime.console import Console, report_signals
from runtime.core import signals
from runtime.core.events import Change, ChangeKind, Difference
from runtime.errors import DatabaseUnavailableError


def printed(*sends: tuple[Signal, dict[str, Any]]) -> list[str]:
    stream = io.StringIO()
    with report_signals(Console(stream, color=False)):
        for signal, kwargs in sends:
            signals.emit(signal, None, **kwargs)
    return stream.getvalue().splitlines()


COLOR = Difference("add_column", "ydtb_notes", "color",
                   "table ydtb_notes: column color declared but missing", False,
                   ("ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT",))
BODY = Difference("remove_column", "ydtb_notes", "body",
                  "table ydtb_notes: column body in the database but not declared", True,
                  ("ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body",))
SYNC = Change(ChangeKind.DEV_SYNC, "notes", "dev:1a2b", 3.0, (COLOR,))
APPLIED = Change(ChangeKind.APPLIED, "notes", "0002_x", 1.0)


def test_a_dev_sync_prints_what_it_resolved_and_a_migration_what_came_with_it() -> None:
    assert printed(
        (signals.schema_changed, {"package": "notes", "migrations": ("dev:1a2b",),
                                  "changes": (SYNC,)}),
        (signals.schema_changed, {"package": "notes", "migrations": ("0002_x",),
                                  "changes": (APPLIED, Change(ChangeKind.RECONCILED, "notes",
                                                              "dev:1a2b"))}),
        (signals.reloaded, {"packages": ("notes",), "applied": (APPLIED, SYNC),
                            "elapsed_ms": 12.0, "error": None}),
    ) == [
        "  synced notes to its declared schema (dev:1a2b):",
        "    table ydtb_notes: column color declared but missing",
        "  notes: dev change dev:1a2b is now in the migrations",
        "ok notes: 1 migration, 1 dev schema sync, change seen -> applied in 12 ms",
    ]


def test_held_changes_are_explained_with_how_to_proceed() -> None:
    assert printed((signals.schema_drift, {"package": "notes", "differences": (BODY,)})) == [
        "! notes: schema changes not applied to the dev database, some may lose data:",
        "    table ydtb_notes: column body in the database but not declared: would run ALTER "
        "TABLE ydtb_notes DROP COLUMN IF EXISTS body",
        "  if a migration made column ydtb_notes.body on purpose, declare it in the schema of "
        "notes; otherwise write a migration (python -m runtime makemigration notes), or "
        "restart the dev daemon with --allow-destructive to apply it to the dev database",
    ]


def test_a_drop_and_an_add_are_shown_as_the_rename_they_may_be() -> None:
    renamed = Difference("add_column", "ydtb_notes", "text", "table ydtb_notes: column text "
                         "declared but missing", False, ())
    [*_, hint] = printed((signals.schema_drift, {"package": "notes",
                                                 "differences": (BODY, renamed)}))
    assert hint == (
        "  if you renamed column ydtb_notes.body to text, write the rename in a migration "
        "(python -m runtime makemigration notes writes it, guarded to run twice); otherwise "
        "write a migration (python -m runtime makemigration notes), or restart the dev daemon "
        "with --allow-destructive to apply it to the dev database")


def test_a_lost_database_is_one_line_with_its_reason() -> None:
    url = "postgresql://me@/dev?host=/run/pg"
    error = DatabaseUnavailableError(url, "the connection was lost during the run: connection "
                                          "is closed; nothing of the run was kept")
    assert printed((signals.database_lost, {"url": url, "error": error}),
                   (signals.database_restored, {"url": url, "down_ms": 1100.0,
                                                "revived": True})) == [
        f"! the database at {url} went away (the connection was lost during the run: "
        "connection is closed; nothing of the run was kept); retrying, and what you save "
        "meanwhile is applied once it is back",
        f"the database at {url} is back after 1.1 s; the embedded server was started again",
    ]
