"""The dev daemon end to end: a real watcher, real files, a real database."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import (
    NOTE_REFERENCE,
    NOTE_REFERENCE_SQL,
    columns,
    create_sql,
    dev_process,
    give_tool,
    listening,
    running,
    signal_log,
    write_package,
)

from runtime import DependentsExistError, IsolationError, PackageLoadError, ValidationError
from runtime.db import notify
from runtime.dev.daemon import Daemon
from runtime.errors import DatabaseInUseError

Log = list[tuple[str, dict[str, Any]]]
NAMES = ["package_registered", "package_unregistered", "schema_changed", "validation_failed",
         "migration_applied", "migration_failed", "reloaded"]


@pytest.fixture
def log() -> Iterator[Log]:
    """Every signal sent during the test, as (name, keywords in words: `support.readable`)."""
    with signal_log(*NAMES) as entries:
        yield entries


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "packages").mkdir()
    write_package(tmp_path / "packages", "notes", name="notes",
                  tables={"ydtb_notes": []})
    return tmp_path / "packages"


async def change(log: Log, edit: Callable[[], object],
                 until: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """Make an edit and return the first `reloaded` keywords after it matching `until`."""
    mark = len(log)
    edit()
    with anyio.fail_after(10):
        while True:
            for name, kwargs in log[mark:]:
                if name == "reloaded" and until(kwargs):
                    return kwargs
            await anyio.sleep(0.01)


def sent(log: Log, name: str) -> list[dict[str, Any]]:
    return [kwargs for n, kwargs in log if n == name]


async def query(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


async def test_start_applies_the_packages_on_disk(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    async with running(engine, root) as daemon:
        assert "notes" in daemon.registry
        assert await columns(engine, "ydtb_notes") == ["id", "workspace_id"]
    assert [(k["package"], k["migration"]) for k in sent(log, "migration_applied")][-1] == (
        "notes", "0001_create_ydtb_notes.sql".removesuffix(".sql"))


async def test_a_new_migration_is_applied_and_signalled(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    async with running(engine, root):
        result = await change(log, lambda: (root / "notes/migrations/0002_add_title.sql")
                              .write_text("ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS "
                                          "title text;"))
        assert result["error"] is None
        assert result["applied"] == ("notes 0002_add_title",)
        assert await columns(engine, "ydtb_notes") == ["id", "title", "workspace_id"]
    assert sent(log, "schema_changed")[-1] == {
        "package": "notes", "migrations": ("0002_add_title",),
        "changes": ("applied 0002_add_title",)}


async def test_a_new_package_directory_is_registered(
    engine: AsyncEngine, root: Path, tmp_path: Path, log: Log
) -> None:
    staged = write_package(tmp_path, "tags", name="tags", deps=["notes"],
                           tables={"ydtb_tags": NOTE_REFERENCE},
                           migrations={"0001_tags.sql": create_sql(
                               "ydtb_tags", *NOTE_REFERENCE_SQL)})
    async with running(engine, root) as daemon:
        result = await change(log, lambda: shutil.move(staged, root / "tags"),
                              until=lambda r: "tags" in r["packages"])
        assert result["applied"] == ("tags 0001_tags",)
        assert daemon.registry.get("tags").dependency_names == ("notes",)
    assert {"package": "tags", "version": "1.0.0", "replaced": False} in sent(
        log, "package_registered")


async def test_a_syntax_error_is_reported_then_the_fix_is_applied(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    package_py = root / "notes/package.py"
    good = package_py.read_text()
    async with running(engine, root) as daemon:
        before = daemon.registry.get("notes")
        result = await change(log, lambda: package_py.write_text(good + "\ndef broken(:\n"))
        error = result["error"]
        assert isinstance(error, PackageLoadError)
        assert (error.path, error.line) == (str(package_py.resolve()), 17)
        assert str(error).endswith("SyntaxError: invalid syntax (fix the file and save it again)")
        assert sent(log, "validation_failed")[-1]["error"] is error
        assert daemon.registry.get("notes") is before

        (root / "notes/migrations/0002_x.sql").write_text("SELECT 1;")
        result = await change(log, lambda: package_py.write_text(good),
                              until=lambda r: r["error"] is None)
        assert result["applied"] == ("notes 0002_x",)


async def test_a_dependent_is_revalidated_and_a_breaking_change_refused(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", deps=["notes"],
                  tables={"ydtb_tags": NOTE_REFERENCE},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", *NOTE_REFERENCE_SQL)})
    async with running(engine, root) as daemon:
        before = daemon.registry.get("notes")
        schema_py = root / "notes/schema.py"
        result = await change(log, lambda: schema_py.write_text(
            schema_py.read_text().replace("ydtb_notes", "ydtb_memos")))
        error = result["error"]
        assert isinstance(error, ValidationError)
        assert [str(p) for p in error.problems] == [
            "tags: table 'ydtb_tags' column 'note_id' references 'ydtb_notes.id', which no "
            "registered package owns (fix the name, or register and depend on the package "
            "that owns it) [Y206]"]
        assert daemon.registry.get("notes") is before
        assert await query(engine, "SELECT to_regclass('ydtb_memos')") is None


async def test_a_validation_error_leaves_the_database_untouched(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    async with running(engine, root):
        migrations = await query(engine, "SELECT count(*) FROM ydtb_schema_migrations")
        schema_py = root / "notes/schema.py"
        result = await change(log, lambda: schema_py.write_text(
            schema_py.read_text().replace("'ydtb_notes'", "'notes'")))
        assert [p.code for p in result["error"].problems] == ["Y101"]
        assert "rename it to 'ydtb_notes'" in str(result["error"])
        result = await change(log, lambda: (root / "notes/migrations/0002_more.sql").write_text(
            "CREATE TABLE IF NOT EXISTS ydtb_more (id int);"))
        assert [p.code for p in result["error"].problems] == ["Y101"]
        assert await query(engine, "SELECT to_regclass('ydtb_more')") is None
        assert await query(engine, "SELECT count(*) FROM ydtb_schema_migrations") == migrations


async def test_a_failing_migration_is_rolled_back_and_recovers(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    migration = root / "notes/migrations/0002_two.sql"
    async with running(engine, root) as daemon:
        add = "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS two int;\n"
        result = await change(log, lambda: migration.write_text(add + "SELECT * FROM nope;\n"))
        assert "notes: migration 0002_two failed at line 2" in str(result["error"])
        assert sent(log, "migration_failed")[-1]["migration"] == "0002_two"
        assert "two" not in await columns(engine, "ydtb_notes")
        assert [m.id for m in daemon.registry.get("notes").migrations] == ["0001_create_ydtb_notes"]

        result = await change(log, lambda: migration.write_text(add))
        assert result["applied"] == ("notes 0002_two",)


async def test_an_edited_applied_migration_is_rerun(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    first = root / "notes/migrations/0001_create_ydtb_notes.sql"
    async with running(engine, root):
        result = await change(log, lambda: first.write_text(
            first.read_text() + "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS body text;\n"))
        assert result["applied"] == ("notes 0001_create_ydtb_notes",)
        assert sent(log, "migration_applied")[-1]["rerun"] is True
        assert "body" in await columns(engine, "ydtb_notes")


async def test_a_removed_package_is_unregistered_unless_others_depend_on_it(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", deps=["notes"])
    async with running(engine, root) as daemon:
        result = await change(log, lambda: shutil.rmtree(root / "notes"),
                              until=lambda r: r["error"] is not None)
        assert isinstance(result["error"], DependentsExistError)
        assert str(result["error"]) == ("notes: cannot unregister, tags depends on it "
                                         "(unregister it first)")
        assert "notes" in daemon.registry

        result = await change(log, lambda: shutil.rmtree(root / "tags"),
                              until=lambda r: r["error"] is None and "tags" in r["packages"])
        assert "tags" not in daemon.registry
    assert {"package": "tags"} in sent(log, "package_unregistered")


async def test_changes_are_published_to_other_connections(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    events: list[dict[str, Any]] = []

    async def listen(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = notify.listen(engine)
        first = anyio.create_task_group()
        async with first:
            task_status.started()
            async for event in listener:
                events.append(event)

    async with running(engine, root), anyio.create_task_group() as group:
        await group.start(listen)
        await listening(engine)
        await change(log, lambda: (root / "notes/migrations/0002_x.sql").write_text("SELECT 2;"))

        def published() -> list[dict[str, Any]]:  # start-up's own may come before it
            return [e for e in events if e["signal"] == "schema_changed"
                    and e["migrations"] == ["0002_x"]]

        with anyio.fail_after(5):
            while not published():
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    [schema_changed] = published()
    assert schema_changed["package"] == "notes"
    assert [(c["kind"], c["migration"]) for c in schema_changed["changes"]] == [
        ("applied", "0002_x")]


async def test_a_removed_package_s_tools_are_deactivated(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    give_tool(root / "notes", "jot")
    async with running(engine, root):
        assert await query(engine, "SELECT is_active FROM ydtb_tools WHERE id = 'jot'") is True
        await change(log, lambda: shutil.rmtree(root / "notes"),
                     until=lambda r: "notes" in r["packages"])
        assert await query(engine, "SELECT is_active FROM ydtb_tools WHERE id = 'jot'") is False


async def test_packages_left_out_at_start_come_back_when_their_dependency_is_fixed(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", deps=["notes"])
    package_py = root / "notes/package.py"
    good = package_py.read_text()
    package_py.write_text(good + "\nbroken(\n")
    async with running(engine, root) as daemon:
        assert "notes" not in daemon.registry and "tags" not in daemon.registry

        result = await change(log, lambda: package_py.write_text(good))

        assert result["error"] is None
        assert sorted(result["applied"]) == ["notes 0001_create_ydtb_notes",
                                             "tags 0001_create_ydtb_tags"]
        assert "tags" in daemon.registry


async def test_two_packages_can_change_together_one_save_at_a_time(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", deps=["notes>=1,<2"])
    notes_py, tags_py = root / "notes/package.py", root / "tags/package.py"
    async with running(engine, root) as daemon:
        result = await change(log, lambda: notes_py.write_text(
            notes_py.read_text().replace("version='1.0.0'", "version='2.0.0'")))
        assert [p.code for p in result["error"].problems] == ["Y202"]
        assert str(daemon.registry.get("notes").version) == "1.0.0"

        result = await change(log, lambda: tags_py.write_text(
            tags_py.read_text().replace("notes>=1,<2", "notes>=2")))

        assert result["error"] is None
        assert str(daemon.registry.get("notes").version) == "2.0.0"
        assert str(daemon.registry.get("tags").dependencies[0]) == "notes>=2"


async def test_a_cycle_saved_is_an_error_and_undoing_it_recovers(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", deps=["notes"], tables={"ydtb_tags": []})
    async with running(engine, root) as daemon:
        result = await change(log, lambda: write_package(
            root, "notes", name="notes", deps=["tags"], tables={"ydtb_notes": []}))
        assert isinstance(result["error"], ValidationError)
        assert [p.code for p in result["error"].problems] == ["Y203"]
        assert daemon.registry.get("notes").dependency_names == ()

        result = await change(log, lambda: write_package(
            root, "notes", name="notes", version="1.0.1", tables={"ydtb_notes": []}))
        assert result["error"] is None
        assert str(daemon.registry.get("notes").version) == "1.0.1"


async def test_start_reruns_a_migration_edited_while_it_was_stopped(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    await Daemon(engine, [root], entry_points=False).start()
    # A branch switch: the applied migration now reads differently.
    (root / "notes/migrations/0001_create_ydtb_notes.sql").write_text(
        create_sql("ydtb_notes", "title text"))

    await Daemon(engine, [root], entry_points=False).start()

    assert [(k["migration"], k["rerun"]) for k in sent(log, "migration_applied")][-1] == (
        "0001_create_ydtb_notes", True)


async def test_start_holds_out_a_downgraded_package_and_runs_the_rest(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", tables={"ydtb_tags": []})
    write_package(root, "notes", name="notes", version="2.0.0", tables={"ydtb_notes": []})
    await Daemon(engine, [root], entry_points=False).start()
    write_package(root, "notes", name="notes", version="1.0.0", tables={"ydtb_notes": []})
    write_package(root, "tags", name="tags", tables={"ydtb_tags": ["Column('x', Integer)"]},
                  migrations={"0001_create_ydtb_tags.sql": create_sql("ydtb_tags"),
                              "0002_x.sql": "ALTER TABLE ydtb_tags ADD COLUMN IF NOT EXISTS x "
                                            "integer;"})

    daemon = Daemon(engine, [root], entry_points=False)
    await daemon.start()

    assert "notes" not in daemon.registry
    [failed] = sent(log, "validation_failed")
    assert [(p.package, p.code) for p in failed["error"].problems] == [("notes", "Y302")]
    assert await columns(engine, "ydtb_tags") == ["id", "workspace_id", "x"]

    write_package(root, "notes", name="notes", version="2.0.1", tables={"ydtb_notes": []})
    assert await daemon.reload([root / "notes"]) is True
    assert str(daemon.registry.get("notes").version) == "2.0.1"


async def test_start_holds_out_a_package_whose_migration_fails(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", deps=["notes"], tables={"ydtb_tags": []},
                  migrations={"0001_create_ydtb_tags.sql": "CREATE TABLE nonsense ("})
    write_package(root, "other", name="other", tables={"ydtb_other": []})

    daemon = Daemon(engine, [root], entry_points=False)
    await daemon.start()

    assert sorted(daemon.registry.packages) == ["@ydtb/core", "notes", "other"]
    [failed] = sent(log, "migration_failed")
    assert (failed["package"], failed["migration"]) == ("tags", "0001_create_ydtb_tags")
    assert await columns(engine, "ydtb_other") == ["id", "workspace_id"]

    write_package(root, "tags", name="tags", deps=["notes"], tables={"ydtb_tags": []})
    assert await daemon.reload([root / "tags"]) is True
    assert "tags" in daemon.registry


async def test_a_copied_package_is_refused_until_renamed(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    package_py = give_tool(root / "notes", "jot")
    async with running(engine, root) as daemon:
        result = await change(log, lambda: shutil.copytree(root / "notes", root / "notes2"),
                              until=lambda r: r["error"] is not None)
        assert [p.code for p in result["error"].problems] == ["Y209"]
        assert daemon.registry.get("notes").source == str(package_py.resolve())

        def rename() -> None:  # what one does with a copy: its own name, tables, tools
            for path in [root / "notes2/schema.py", *(root / "notes2/migrations").iterdir(),
                         root / "notes2/package.py"]:
                path.write_text(path.read_text().replace("ydtb_notes", "ydtb_notes2")
                                .replace("'notes'", "'notes2'").replace("'jot'", "'jot2'"))

        result = await change(log, rename, until=lambda r: "notes2" in r["packages"]
                              and r["error"] is None)
        assert sorted(daemon.registry.packages) == ["@ydtb/core", "notes", "notes2"]
    assert await query(engine, "SELECT package_name FROM ydtb_tools WHERE id = 'jot'") == "notes"


async def test_a_package_directory_renamed_is_the_same_package_from_its_new_place(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    moved, again = root / "notes_moved", root / "notes_again"
    daemon = Daemon(engine, [root], entry_points=False)
    await daemon.start()
    # One change, the old directory gone and the new one there: the package was
    # registered from the new one, then unregistered as the old one's ("notes: package
    # is not registered"), and the change refused.
    (root / "notes").rename(moved)
    assert await daemon.reload([root / "notes", moved]) is True
    assert daemon.registry.get("notes").source == str((moved / "package.py").resolve())
    # The new place seen before the old one's deletion: the name is not taken by a
    # package whose file is gone (Y209), and the deletion seen after leaves it alone.
    moved.rename(again)
    assert await daemon.reload([again]) is True
    assert await daemon.reload([moved]) is True
    assert daemon.registry.get("notes").source == str((again / "package.py").resolve())

    async with running(engine, root) as watching:  # as the watcher sees it, however grouped
        await change(log, functools.partial(again.rename, moved), until=lambda _: "notes"
                     in watching.registry and watching.registry.get("notes").source
                     == str((moved / "package.py").resolve()))
    assert await query(engine, "SELECT count(*) FROM ydtb_notes") == 0  # kept, as it was
    assert [e for e in sent(log, "reloaded") if e["error"] is not None] == []


@pytest.mark.parametrize("gap_s", [0.0, 0.5])
async def test_a_packages_root_deleted_and_made_again_is_watched_again(
    engine: AsyncEngine, root: Path, log: Log, tmp_path: Path, gap_s: float
) -> None:
    # `rm -r packages_dev` and a checkout bringing it back, at once (its inode number
    # reused) or a while later: the watch went with the directory, and the daemon saw
    # no save after it.
    shutil.copytree(root, tmp_path / "kept")
    async with running(engine, root) as watching:
        await change(log, functools.partial(shutil.rmtree, root),
                     until=lambda r: r["packages"] == ("notes",))
        assert "notes" not in watching.registry
        await anyio.sleep(gap_s)
        await change(log, functools.partial(shutil.copytree, tmp_path / "kept", root),
                     until=lambda _: "notes" in watching.registry)
        done = await change(log, lambda: (root / "notes" / "migrations" / "0002_more.sql")
                            .write_text("ALTER TABLE ydtb_notes ADD COLUMN more text;"),
                            until=lambda r: bool(r["applied"]))
    assert ["0002_more" in applied for applied in done["applied"]] == [True]
    assert await query(engine, "SELECT count(*) FROM information_schema.columns "
                       "WHERE table_name = 'ydtb_notes' AND column_name = 'more'") == 1


async def test_a_second_daemon_on_the_database_is_refused_naming_the_first(
    engine: AsyncEngine, root: Path, database_url: str
) -> None:
    async with running(engine, root):
        with pytest.raises(DatabaseInUseError) as caught:
            await Daemon(engine, [root], entry_points=False).run()
        # As a second terminal sees it: one line, exit 2, naming the running daemon.
        done = await anyio.run_process(
            [sys.executable, "-m", "runtime", "dev", "--packages", str(root),
             "--no-entry-points", "--database-url", database_url], check=False)

    assert f"ydtb-runtime dev pid {os.getpid()} on {socket.gethostname()}" in caught.value.holder
    said = done.stdout.decode().splitlines()
    assert done.returncode == 2, said
    assert said[0].startswith("runtime dev: database ")
    assert said[1].startswith("error: another dev daemon runs on the database at ")
    assert len(said) == 2 and f"pid {os.getpid()}" in said[1]
    # The claim ends with the daemon: a new one starts.
    async with running(engine, root):
        pass


@pytest.mark.parametrize("step", [
    "runtime.load.loader.load_directory", "runtime.db.migrator.migrate",
    "runtime.db.sync.sync_in", "runtime.core.registry.DatabaseRegistry.adopt",
], ids=lambda step: step.rpartition(".")[2])
async def test_a_bug_at_any_step_of_a_reload_is_said_and_the_daemon_goes_on(
    engine: AsyncEngine, root: Path, log: Log, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    async with running(engine, root) as daemon:
        monkeypatch.setattr(step, _bug)
        result = await change(log, lambda: write_package(  # a column: the dev sync runs too
            root, "notes", name="notes", tables={"ydtb_notes": ['Column("color", Text)']}),
            until=lambda r: r["error"] is not None)
        assert "internal error while reloading: RuntimeError('injected')" in str(result["error"])
        monkeypatch.undo()

        result = await change(log, lambda: (root / "notes/migrations/0002_x.sql").write_text(
            "SELECT 2;"), until=lambda r: r["error"] is None)
        assert "notes 0002_x" in result["applied"]
        assert "color" in await columns(engine, "ydtb_notes")
        assert "notes" in daemon.registry


def _bug(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("injected")


@pytest.mark.parametrize("state", ["idle", "applying"])
async def test_ctrl_c_stops_the_daemon_within_two_seconds(
    root: Path, database_url: str, state: str
) -> None:
    async with dev_process(root, database_url) as (process, _seen):
        if state == "applying":  # a migration that would hold the database for 30 s
            (root / "notes/migrations/0002_slow.sql").write_text("SELECT pg_sleep(30);")
            await anyio.sleep(1)
        process.send_signal(signal.SIGINT)
        started = time.perf_counter()
        with anyio.fail_after(10):
            code = await process.wait()
        stopped_in = time.perf_counter() - started
        rest = b"".join([chunk async for chunk in process.stdout])

    assert code == 0
    assert b"stopped" in rest
    assert stopped_in < 2, f"stopped in {stopped_in:.1f} s"


async def test_a_migration_that_breaks_isolation_is_refused_and_the_state_kept(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    rogue = root / "notes/migrations/0002_rogue.sql"
    async with running(engine, root) as daemon:
        result = await change(log, lambda: rogue.write_text(
            "CREATE TABLE IF NOT EXISTS rogue_global (id int PRIMARY KEY, secret text);\n"))
        assert isinstance(result["error"], IsolationError)
        assert [p.code for p in result["error"].problems] == ["Y501"]
        assert await query(engine, "SELECT to_regclass('rogue_global')") is None
        assert [m.id for m in daemon.registry.get("notes").migrations] == [
            "0001_create_ydtb_notes"]

        result = await change(log, lambda: rogue.write_text(
            "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS secret text;\n"))
        assert (result["error"], result["applied"]) == (None, ("notes 0002_rogue",))


async def test_start_holds_out_a_package_whose_migration_breaks_isolation(
    engine: AsyncEngine, root: Path, log: Log
) -> None:
    write_package(root, "tags", name="tags", migrations={
        "0001_tags.sql": create_sql("ydtb_tags") + "ALTER TABLE ydtb_workspaces ADD COLUMN "
                                                   "IF NOT EXISTS tag text;\n"})
    async with running(engine, root) as daemon:
        assert "notes" in daemon.registry
        assert "tags" not in daemon.registry
        [failed] = sent(log, "validation_failed")
        assert failed["package"] == "tags"
        assert [p.code for p in failed["error"].problems] == ["Y502"]
        assert await query(engine, "SELECT to_regclass('ydtb_tags')") is None
