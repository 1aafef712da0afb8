"""Dev sync: the daemon brings the dev database to an edited schema, or explains why not.

Most tests call `Daemon.reload` right after editing the files, as the watcher would;
one goes through the watcher end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.ext.asyncio import AsyncEngine
from support import (
    Sent,
    columns,
    create_sql,
    declare_notes,
    started_daemon,
)

from runtime.core import booking, signals
from runtime.core.events import Change, ChangeKind
from runtime.db import diff, ledger, scratch
from runtime.db.engine import driver
from runtime.dev import generator
from runtime.dev.daemon import Daemon
from runtime.errors import ProblemsError

DROP_HINT = ("write a migration (python -m runtime makemigration notes), or restart the dev "
             "daemon with --allow-destructive to apply it to the dev database")


async def dev_rows(engine: AsyncEngine) -> dict[str, tuple[str, ...]]:
    """The dev changes booked, by package (each booked as a row per object)."""
    async with engine.connect() as conn:
        dev = (await ledger.read_ledger(await driver(conn))).dev
    return {name: tuple(booking.changes_of(rows)) for name, rows in dev.items()}


async def drift(engine: AsyncEngine, daemon: Daemon) -> list[str]:
    async with engine.connect() as conn:
        found = await diff.compare(conn, daemon.registry.get("notes"),
                                   daemon.registry.packages.values())
    return [d.words for d in found]


NOTES = create_sql("ydtb_notes")
WITH_COLOR = create_sql("ydtb_notes", "color text")
WITH_TITLE = create_sql("ydtb_notes", "title text")

ADDITIVE = [
    pytest.param({"ydtb_notes": ['Column("color", Text)']},
                 ["table ydtb_notes: column color declared but missing"], id="nullable-column"),
    pytest.param({"ydtb_notes": ['Column("color", Text, nullable=False, server_default="red")']},
                 ["table ydtb_notes: column color declared but missing"],
                 id="column-with-default"),
    pytest.param({"ydtb_notes": ['Column("color", Text, index=True)']},
                 ["table ydtb_notes: column color declared but missing",
                  "index ix_ydtb_notes_color declared but missing"], id="index"),
    pytest.param({"ydtb_notes": [], "ydtb_tags": []},
                 ["table ydtb_tags declared but missing"], id="table"),
    pytest.param({"ydtb_notes": ['Column("status", Enum("open", "done", '
                                 'name="ydtb_notes_status"))']},
                 ["table ydtb_notes: column status declared but missing"], id="enum-column"),
    pytest.param({"ydtb_notes": ['CheckConstraint("id > 0", name="positive_id")']},
                 ["check constraint positive_id declared but missing"], id="check"),
    pytest.param({"ydtb_notes": ['Column("tool_id", String(20), ForeignKey("ydtb_tools.id"))']},
                 ["table ydtb_notes: column tool_id declared but missing",
                  "foreign key ydtb_notes_tool_id_fkey declared but missing"],
                 id="foreign-key"),
]


@pytest.mark.parametrize(("tables", "words"), ADDITIVE)
async def test_an_additive_schema_edit_is_synced_and_recorded_as_a_dev_change(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, tables: dict[str, list[str]],
    words: list[str],
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)

    declare_notes(tmp_path, tables)
    assert await daemon.reload([tmp_path / "notes"]) is True

    change = f"dev:{daemon.registry.get('notes').fingerprint}"
    assert sent["schema_changed"] == [
        {"package": "notes", "migrations": (change,), "changes": tuple(words)}]
    [[synced]] = [event["changes"] for event in sent["schema_changed:typed"]]
    assert (synced.kind, synced.package, synced.migration) == (
        ChangeKind.DEV_SYNC, "notes", change)
    assert [d.words for d in synced.differences] == words
    assert sent["reloaded"][-1]["applied"] == (f"notes {change}",)
    assert await dev_rows(engine) == {"notes": (change,)}
    assert await drift(engine, daemon) == []
    # Nothing left to do: a reload without an edit syncs nothing.
    assert await daemon.reload([tmp_path / "notes"]) is True
    assert len(sent["schema_changed"]) == 1


DESTRUCTIVE = [
    pytest.param({"ydtb_notes": ['Column("color", Text)']}, [WITH_COLOR],
                 {"ydtb_notes": []},
                 ["table ydtb_notes: column color in the database but not declared: would run "
                  "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS color"],
                 "if a migration made column ydtb_notes.color on purpose, declare it in the "
                 "schema of notes; otherwise " + DROP_HINT, id="drop-column"),
    pytest.param({"ydtb_notes": [], "ydtb_tags": []}, [NOTES, create_sql("ydtb_tags")],
                 {"ydtb_notes": []},
                 ["table ydtb_tags in the database but not declared: would run DROP TABLE IF "
                  "EXISTS ydtb_tags"],
                 "if a migration made table ydtb_tags on purpose, declare it in the schema of "
                 "notes; otherwise " + DROP_HINT, id="drop-table"),
    pytest.param({"ydtb_notes": ['Column("title", String(10))']},
                 [create_sql("ydtb_notes", "title varchar(10)")],
                 {"ydtb_notes": ['Column("title", String(5))']},
                 ["table ydtb_notes: column title is VARCHAR(10) in the database but declared "
                  "VARCHAR(5): would run ALTER TABLE ydtb_notes ALTER COLUMN title TYPE "
                  "VARCHAR(5) USING title::VARCHAR(5)"], DROP_HINT, id="narrow-type"),
    pytest.param({"ydtb_notes": ['Column("title", Text)']}, [WITH_TITLE],
                 {"ydtb_notes": ['Column("title", Text, nullable=False)']},
                 ["table ydtb_notes: column title is nullable in the database but declared NOT "
                  "NULL: would run UPDATE ydtb_notes SET title = NULL /* FILL IN */ WHERE title "
                  "IS NULL; ALTER TABLE ydtb_notes ALTER COLUMN title SET NOT NULL"],
                 DROP_HINT, id="set-not-null"),
    pytest.param({"ydtb_notes": []}, [NOTES],
                 {"ydtb_notes": ['Column("title", Text, nullable=False)']},
                 ["table ydtb_notes: column title declared but missing: would run ALTER TABLE "
                  "ydtb_notes ADD COLUMN IF NOT EXISTS title TEXT; UPDATE ydtb_notes SET title = "
                  "NULL /* FILL IN */ WHERE title IS NULL; ALTER TABLE ydtb_notes ALTER COLUMN "
                  "title SET NOT NULL"],
                 DROP_HINT, id="not-null-column-without-default"),
    pytest.param({"ydtb_notes": ['Column("color", Text)']}, [WITH_COLOR],
                 {"ydtb_notes": ['Column("colour", Text)']},
                 ["table ydtb_notes: column colour declared but missing",
                  "table ydtb_notes: column color in the database but not declared: would run "
                  "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS color"],
                 "if you renamed column ydtb_notes.color to colour, write the rename in a "
                 "migration (python -m runtime makemigration notes writes it, guarded to run "
                 "twice); otherwise " + DROP_HINT,
                 id="rename-column"),
]


@pytest.mark.parametrize(("before", "sql", "after", "changes", "hint"), DESTRUCTIVE)
async def test_a_destructive_schema_edit_is_explained_and_not_applied(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, before: dict[str, list[str]],
    sql: list[str], after: dict[str, list[str]], changes: list[str], hint: str,
) -> None:
    declare_notes(tmp_path, before, sql)
    daemon = await started_daemon(engine, tmp_path)
    tables = {t: await columns(engine, t) for t in ("ydtb_notes", "ydtb_tags")}

    declare_notes(tmp_path, after)
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert sent["schema_drift"] == [{"package": "notes", "changes": tuple(changes), "hint": hint}]
    assert sent["schema_changed"] == []
    assert {t: await columns(engine, t) for t in tables} == tables
    assert await dev_rows(engine) == {}


@pytest.mark.parametrize(("before", "sql", "after", "changes", "hint"), DESTRUCTIVE)
async def test_a_destructive_schema_edit_is_applied_with_allow_destructive(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, before: dict[str, list[str]],
    sql: list[str], after: dict[str, list[str]], changes: list[str], hint: str,
) -> None:
    declare_notes(tmp_path, before, sql)
    daemon = await started_daemon(engine, tmp_path, allow_destructive=True)

    declare_notes(tmp_path, after)
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert sent["schema_drift"] == []
    [synced] = sent["schema_changed"]
    assert synced["changes"] == tuple(c.partition(": would run")[0] for c in changes)
    assert await drift(engine, daemon) == []


async def test_a_generated_migration_takes_the_dev_change_over(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    [change] = (await dev_rows(engine))["notes"]

    packages = daemon.registry.ordered()
    differences = await scratch.compare_migrations(scratch.server_url(engine), packages, "notes")
    [(path, _)] = generator.write_migration(tmp_path / "notes/migrations", packages[-1],
                                       differences)
    assert await daemon.reload([path]) is True

    assert sent["reloaded"][-1]["applied"] == ("notes 0002_add_color",)
    # The migration is announced at once; the takeover, found by the comparison that
    # follows the reload, in its own signal.
    assert sent["schema_changed"][-2:] == [
        {"package": "notes", "migrations": ("0002_add_color",),
         "changes": ("applied 0002_add_color",)},
        {"package": "notes", "migrations": (),
         "changes": (f"dev change {change} is now in the migrations",)}]
    assert sent["schema_changed:typed"][-1]["changes"] == (
        Change(ChangeKind.RECONCILED, "notes", change),)
    assert await dev_rows(engine) == {}


async def test_a_hand_written_migration_that_falls_short_keeps_the_dev_change(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    await daemon.reload([tmp_path / "notes"])
    rows = await dev_rows(engine)

    (tmp_path / "notes/migrations/0002_other.sql").write_text("SELECT 1;")
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert sent["schema_changed"][-1]["changes"] == ("applied 0002_other",)
    assert await dev_rows(engine) == rows


async def test_schema_edits_made_while_the_daemon_was_stopped_are_synced_at_start(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})

    await started_daemon(engine, tmp_path)

    assert [s["changes"] for s in sent["schema_changed"]] == [
        ("table ydtb_notes: column color declared but missing",)]
    assert await columns(engine, "ydtb_notes") == ["color", "id", "workspace_id"]


async def test_a_change_the_database_refuses_is_rolled_back_and_reported(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)

    # ydtb_tools.id is varchar: PostgreSQL refuses an integer column referencing it.
    declare_notes(tmp_path,
                  {"ydtb_notes": ['Column("tool_id", Integer, ForeignKey("ydtb_tools.id"))']})
    assert await daemon.reload([tmp_path / "notes"]) is False

    error = sent["reloaded"][-1]["error"]
    assert isinstance(error, ProblemsError)
    assert [str(p) for p in error.problems] == [
        'notes: cannot apply to the dev database: foreign key ydtb_notes_tool_id_fkey declared '
        'but missing: foreign key constraint "ydtb_notes_tool_id_fkey" cannot be implemented '
        "(nothing was applied; fix the declared schema, or write a migration that prepares "
        "the data first) [Y405]"]
    assert await columns(engine, "ydtb_notes") == ["id", "workspace_id"]
    assert daemon.registry.get("notes").tables[0].c.keys() == ["id", "workspace_id"]


MOOD = 'Column("mood", Enum("calm", "busy", {more}name="ydtb_mood"){default})'


@pytest.mark.parametrize("columns_after", [
    pytest.param([MOOD.format(more='"away", ', default=', server_default="away"')],
                 id="as-its-default"),
    pytest.param([MOOD.format(more='"away", ', default=""),
                  'Column("was", Enum("calm", "busy", "away", name="ydtb_mood"), '
                  'server_default="away")'], id="as-a-new-columns-default"),
])
async def test_an_enum_label_saved_with_its_use_is_synced(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, columns_after: list[str]
) -> None:
    # PostgreSQL refuses a label in the transaction that added it ("unsafe use of new
    # value"): the label is committed first, the rest in the reload's transaction.
    declare_notes(tmp_path, {"ydtb_notes": [MOOD.format(more="", default="")]}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)

    declare_notes(tmp_path, {"ydtb_notes": columns_after})
    assert await daemon.reload([tmp_path / "notes"]) is True, sent["reloaded"][-1]

    [synced] = sent["schema_changed"][-1:]
    assert "enum type ydtb_mood: label away declared but missing" in synced["changes"]
    assert await drift(engine, daemon) == []
    async with engine.connect() as conn:
        raw = await driver(conn)
        assert await raw.fetchval("SELECT enum_range(NULL::ydtb_mood)::text") == (
            "{calm,busy,away}")
        await raw.execute("INSERT INTO ydtb_workspaces (id, slug, name) VALUES "
                          "('w1', 'w1', 'w1')")
        await raw.execute("INSERT INTO ydtb_notes (id, workspace_id) VALUES (1, 'w1')")
        assert await raw.fetchval("SELECT count(*) FROM ydtb_notes WHERE 'away' IN "
                                  "(mood::text, to_jsonb(ydtb_notes)->>'was')") == 1


async def test_an_enum_label_used_after_a_migration_altered_its_type_is_refused_at_once(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    # The reload's transaction holds the type's lock: a label added on another
    # connection would wait for it forever (lock timeouts, retried). It is added in the
    # transaction instead, and its use refused, saying why.
    declare_notes(tmp_path, {"ydtb_notes": [MOOD.format(more="", default="")]}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)

    declare_notes(tmp_path, {"ydtb_notes": [
        MOOD.format(more='"x", "y", ', default=', server_default="y"')]},
        [NOTES, "ALTER TYPE ydtb_mood ADD VALUE IF NOT EXISTS 'x';"])
    assert await daemon.reload([tmp_path / "notes"]) is False

    error = sent["reloaded"][-1]["error"]
    assert isinstance(error, ProblemsError), error
    [problem] = error.problems
    assert problem.code == "Y405"
    assert 'unsafe use of new value "y"' in str(problem)
    assert "save the migration alone first, then the use of the label" in str(problem)


async def test_an_enum_label_stays_when_the_rest_of_its_save_is_refused(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": [MOOD.format(more="", default="")]}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    booked = await dev_rows(engine)

    # ydtb_tools.id is varchar: PostgreSQL refuses an integer column referencing it.
    declare_notes(tmp_path, {"ydtb_notes": [
        MOOD.format(more='"away", ', default=', server_default="away"'),
        'Column("tool_id", Integer, ForeignKey("ydtb_tools.id"))']})
    assert await daemon.reload([tmp_path / "notes"]) is False

    assert "foreign key ydtb_notes_tool_id_fkey" in str(sent["reloaded"][-1]["error"])
    assert await columns(engine, "ydtb_notes") == ["id", "mood", "workspace_id"]
    async with engine.connect() as conn:  # the label is declared: it stays, and changes no row
        assert await (await driver(conn)).fetchval(
            "SELECT enum_range(NULL::ydtb_mood)::text") == "{calm,busy,away}"
    assert await dev_rows(engine) == booked  # the refused save booked nothing


async def test_a_reloads_migrations_and_its_sync_commit_together_or_not_at_all(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    """A reload applies its migrations and syncs its schema in one transaction: when the
    sync is refused, the migration saved with it is not applied either."""
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    add_title = "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS title text;"

    declare_notes(tmp_path, {"ydtb_notes": [
        'Column("title", Text)', 'Column("tool_id", Integer, ForeignKey("ydtb_tools.id"))']},
        [NOTES, add_title])
    assert await daemon.reload([tmp_path / "notes"]) is False

    assert [p.code for p in sent["reloaded"][-1]["error"].problems] == ["Y405"]
    assert await columns(engine, "ydtb_notes") == ["id", "workspace_id"]
    async with engine.connect() as conn:
        applied = (await ledger.read_ledger(await driver(conn), ["notes"])).applied
    assert sorted(m for _, m in applied) == ["0001_m1"]

    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']}, [NOTES, add_title])
    assert await daemon.reload([tmp_path / "notes"]) is True
    assert sent["reloaded"][-1]["applied"] == ("notes 0002_m2",)
    assert await columns(engine, "ydtb_notes") == ["id", "title", "workspace_id"]


async def test_a_schema_edit_is_synced_through_the_watcher(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = Daemon(engine, [tmp_path], entry_points=False)
    async with anyio.create_task_group() as group:
        with anyio.fail_after(20):
            await group.start(daemon.run)
            await daemon.watching.wait()
            declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
            while not any(r["applied"] for r in sent["reloaded"]):
                await anyio.sleep(0.01)
        daemon.stop()
        group.cancel_scope.cancel()

    assert sent["reloaded"][-1]["applied"] == (
        f"notes dev:{daemon.registry.get('notes').fingerprint}",)
    assert await columns(engine, "ydtb_notes") == ["color", "id", "workspace_id"]


async def index_names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(await (await driver(conn)).fetchval(
            "SELECT array_agg(indexname ORDER BY indexname) FROM pg_indexes "
            "WHERE tablename = 'ydtb_notes'"))


async def test_an_index_a_migration_built_is_kept_and_shown_as_drift(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    # Every database `migrate` builds has the index: the dev sync must not drop it.
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']}, [WITH_TITLE])
    daemon = await started_daemon(engine, tmp_path)
    (tmp_path / "notes/migrations/0002_index.sql").write_text(
        "CREATE INDEX IF NOT EXISTS ix_notes_title ON ydtb_notes (title);")
    # ...and the same reload adds a column to the schema: that part is synced.
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)', 'Column("color", Text)']})
    (tmp_path / "notes/migrations/0002_index.sql").write_text(
        "CREATE INDEX IF NOT EXISTS ix_notes_title ON ydtb_notes (title);")

    assert await daemon.reload([tmp_path / "notes"]) is True

    assert "ix_notes_title" in await index_names(engine)
    assert "color" in await columns(engine, "ydtb_notes")
    assert sent["schema_drift"] == [{
        "package": "notes", "changes": ("index ix_notes_title in the database but not declared",),
        "hint": "if a migration made index ix_notes_title on purpose, declare it in the schema "
                "of notes; otherwise " + DROP_HINT}]


async def test_an_index_the_schema_stopped_declaring_is_dropped_as_a_dev_change(
    engine: AsyncEngine, tmp_path: Path, sent: Sent
) -> None:
    # The edit says so, as adding it would: dropped and booked, it shows as a dev change
    # not in a migration yet until makemigration writes the drop (one declared nowhere,
    # before or now, is kept: test_an_index_a_migration_built_is_kept_and_shown_as_drift).
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text, index=True)']},
            [WITH_TITLE + "CREATE INDEX IF NOT EXISTS ix_ydtb_notes_title ON ydtb_notes "
             "(title);\n"])
    daemon = await started_daemon(engine, tmp_path)
    assert "ix_ydtb_notes_title" in await index_names(engine)

    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert "ix_ydtb_notes_title" not in await index_names(engine)
    assert sent["schema_drift"] == []
    assert list(await dev_rows(engine)) == ["notes"]


async def test_after_a_sync_the_next_save_compares_without_reading_the_table_again(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True
    read: list[tuple[int, list[str]]] = []  # the signals sent by then, the tables read
    original = Inspector.get_multi_columns

    def spy(self: Inspector, *args: Any, **kwargs: Any) -> Any:
        read.append((len(sent["reloaded"]), sorted(kwargs.get("filter_names") or [])))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Inspector, "get_multi_columns", spy)
    signalled = len(sent["reloaded"])
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)', 'Column("size", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True

    # Read once, after the change was announced, for the save after it: not before.
    assert read == [(signalled + 1, ["ydtb_notes"])]
    assert await columns(engine, "ydtb_notes") == ["color", "id", "size", "workspace_id"]
    assert await drift(engine, daemon) == []


async def test_a_reload_runs_in_the_reloading_context_up_to_its_signal(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    inside: list[bool] = []
    events: list[str] = []

    @contextmanager
    def reloading() -> Iterator[None]:
        inside.append(True)
        try:
            yield
        finally:
            inside.pop()

    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path, reloading=reloading)
    with signals.reloaded.connected_to(lambda _s, **_k: events.append(f"signal {inside}")):
        declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
        assert await daemon.reload([tmp_path / "notes"]) is True

    assert events == ["signal [True]"]
    assert inside == []


async def test_a_comparison_ahead_that_fails_is_not_the_developers_concern(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": []}, [NOTES])
    daemon = await started_daemon(engine, tmp_path)

    async def refused(*_: Any) -> None:
        raise RuntimeError("permission denied for table ydtb_notes")

    monkeypatch.setattr(diff, "compare_ahead", refused)
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True
    monkeypatch.undo()  # the next save reads the table itself
    declare_notes(tmp_path, {"ydtb_notes": ['Column("color", Text)', 'Column("size", Text)']})
    assert await daemon.reload([tmp_path / "notes"]) is True

    assert [event["error"] for event in sent["reloaded"][-2:]] == [None, None]
    assert await columns(engine, "ydtb_notes") == ["color", "id", "size", "workspace_id"]


@contextmanager
def reads(sent: Sent, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, list[str]]]]:
    """The tables alembic's comparison reflects, each with the `reloaded` signals sent by
    then."""
    read: list[tuple[int, list[str]]] = []
    original = Inspector.get_multi_columns

    def spy(self: Inspector, *args: Any, **kwargs: Any) -> Any:
        read.append((len(sent["reloaded"]), sorted(kwargs.get("filter_names") or [])))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Inspector, "get_multi_columns", spy)
    yield read


TWO_TABLES = {"ydtb_notes": [], "ydtb_tags": []}


async def test_a_first_save_after_a_restart_compares_the_table_it_changed_first(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restarted on a database in step, the daemon compares no package: a first save
    # compares the table it changed before it is announced, the package's others after.
    declare_notes(tmp_path, TWO_TABLES, [NOTES + create_sql("ydtb_tags")])
    await started_daemon(engine, tmp_path)
    daemon = await started_daemon(engine, tmp_path)
    async with engine.begin() as conn:  # drift made by hand: found all the same
        await (await driver(conn)).execute("ALTER TABLE ydtb_tags ADD COLUMN extra text")
    with reads(sent, monkeypatch) as read:
        declare_notes(tmp_path, {**TWO_TABLES, "ydtb_notes": ['Column("color", Text)']})
        assert await daemon.reload([tmp_path / "notes"]) is True

    signalled = len(sent["reloaded"])
    assert read[0] == (signalled - 1, ["ydtb_notes"])  # before the signal: the table saved
    assert (signalled, ["ydtb_tags"]) in read  # after it: the package's others
    assert await columns(engine, "ydtb_notes") == ["color", "id", "workspace_id"]
    assert [d["changes"] for d in sent["schema_drift"]][-1] == (
        "table ydtb_tags: column extra in the database but not declared: would run "
        "ALTER TABLE ydtb_tags DROP COLUMN IF EXISTS extra",)


async def test_a_first_save_of_a_package_start_up_compared_reads_no_table(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Start-up applies the migrations and compares the packages: what it read is kept
    # (in a file, while the daemon runs), and a first save compares with it.
    declare_notes(tmp_path, TWO_TABLES, [NOTES + create_sql("ydtb_tags")])
    daemon = Daemon(engine, [tmp_path], entry_points=False)
    async with anyio.create_task_group() as group:
        with anyio.fail_after(20):
            await group.start(daemon.run)
            await daemon.watching.wait()
            with reads(sent, monkeypatch) as read:
                declare_notes(tmp_path, {**TWO_TABLES, "ydtb_notes": ['Column("color", Text)']})
                while not any(r["applied"] for r in sent["reloaded"]):
                    await anyio.sleep(0.01)
        daemon.stop()
        group.cancel_scope.cancel()

    assert [tables for signalled, tables in read if signalled == 0] == []
    assert await columns(engine, "ydtb_notes") == ["color", "id", "workspace_id"]
    assert await drift(engine, daemon) == []


@contextmanager
def narrowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, set[str], set[str]]]]:
    """The tables each comparison narrowed: the columns and indexes it compared."""
    seen: list[tuple[str, set[str], set[str]]] = []
    original = diff._narrow_copy

    def spy(table: Any, narrowing: Any, metadata: Any) -> Any:
        seen.append((table.name, set(narrowing.columns), set(narrowing.indexes)))
        return original(table, narrowing, metadata)

    monkeypatch.setattr(diff, "_narrow_copy", spy)
    yield seen


async def test_a_save_compares_only_what_it_changed_of_a_table_that_agreed(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']}, [WITH_TITLE])
    daemon = await started_daemon(engine, tmp_path)
    with narrowed(monkeypatch) as seen:
        declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)', 'Column("color", Text)']})
        assert await daemon.reload([tmp_path / "notes"]) is True
        declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)',
                                                'Column("color", Text, index=True)']})
        assert await daemon.reload([tmp_path / "notes"]) is True

    assert seen == [("ydtb_notes", {"color", "id"}, set()),
                    ("ydtb_notes", {"color", "id"}, {"ix_ydtb_notes_color"})]
    assert "ix_ydtb_notes_color" in await index_names(engine)
    assert await drift(engine, daemon) == []


async def test_what_changed_by_hand_between_two_saves_is_compared_whole(
    engine: AsyncEngine, tmp_path: Path, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table agreed with its declaration before the save, but not as the database
    # is now: a narrowed comparison would miss the column added by hand.
    declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text)']}, [WITH_TITLE])
    daemon = await started_daemon(engine, tmp_path)
    async with engine.begin() as conn:
        await (await driver(conn)).execute("ALTER TABLE ydtb_notes ADD COLUMN extra text")
    with narrowed(monkeypatch) as seen:
        declare_notes(tmp_path, {"ydtb_notes": ['Column("title", Text, index=True)']})
        assert await daemon.reload([tmp_path / "notes"]) is True

    assert seen == []
    assert "ix_ydtb_notes_title" in await index_names(engine)
    assert [d["changes"] for d in sent["schema_drift"]][-1] == (
        "table ydtb_notes: column extra in the database but not declared: would run "
        "ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS extra",)
