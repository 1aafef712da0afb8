"""The dev daemon says what the safety lint finds in a migration as it applies it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from support import write_package

from runtime import signals
from runtime.console import Console, report_signals
from runtime.dev.daemon import Daemon


async def test_a_saved_migration_that_would_lock_a_table_is_applied_with_a_warning(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": []})
    daemon = Daemon(engine, [tmp_path], entry_points=False)
    await daemon.start()
    found: list[tuple[str, ...]] = []

    def receiver(_sender: object, *, package: str, findings: Any, **_: Any) -> None:
        found.append((package, *(f.code for f in findings)))

    (tmp_path / "notes/migrations/0002_index.sql").write_text(
        "CREATE INDEX IF NOT EXISTS ix_notes_id ON ydtb_notes (id);")
    out = io.StringIO()
    with signals.lint_found.connected_to(receiver), report_signals(Console(out, color=False)):
        assert await daemon.reload([tmp_path / "notes"]) is True

    assert found == [("notes", "Y510")]
    assert "! notes: 1 lint finding: on a database holding rows" in out.getvalue()
    assert "CREATE INDEX CONCURRENTLY" in out.getvalue()
    assert "applied notes 0002_index" in out.getvalue()  # warned, applied all the same

    # SQL the parser refuses fails to run, saying so itself: not a lint finding too.
    (tmp_path / "notes/migrations/0003_bad.sql").write_text("SELEC 1;")
    with signals.lint_found.connected_to(receiver):
        assert await daemon.reload([tmp_path / "notes"]) is False
    (tmp_path / "notes/migrations/0003_bad.sql").unlink()
    assert found == [("notes", "Y510")]

    # A fresh package creates its own tables: nothing to say.
    write_package(tmp_path, "tags", name="tags", tables={"ydtb_tags": []})
    with signals.lint_found.connected_to(receiver):
        assert await daemon.reload([tmp_path / "tags"]) is True
    assert found == [("notes", "Y510")]
