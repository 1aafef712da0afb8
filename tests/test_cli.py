"""`python -m runtime`: output and exit codes, against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import NOTE_REFERENCE, NOTE_REFERENCE_SQL, create_sql, run_cli, write_package


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "tags", name="tags", deps=["notes>=1"],
                  tables={"ydtb_tags": NOTE_REFERENCE},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags", *NOTE_REFERENCE_SQL)})
    return root


def args(command: str, packages: Path, url: str | None = None, *more: str) -> list[str]:
    return [command, "--packages", str(packages), "--no-entry-points",
            *(["--database-url", url] if url else []), *more]


def test_check_lists_the_valid_packages(packages: Path) -> None:
    assert run_cli(*args("check", packages)) == (
        0, "ok: 3 packages valid (@ydtb/core, notes, tags)\n")


def test_check_reports_every_problem_and_fails(packages: Path) -> None:
    schema = packages / "notes/schema.py"
    schema.write_text(schema.read_text().replace("'ydtb_notes'", "'notes'")
                      .replace('nullable=False', 'nullable=True'))

    code, out = run_cli(*args("check", packages))

    assert code == 1
    assert "notes: table 'notes' must be prefixed 'ydtb_' (rename it to 'ydtb_notes') [Y101]" in out
    assert "notes: table 'notes' column 'workspace_id' is nullable" in out


def test_check_names_the_file_and_line_of_a_syntax_error(packages: Path) -> None:
    (packages / "tags/package.py").write_text("def register(registry):\n    return (\n")

    code, out = run_cli(*args("check", packages))

    assert code == 1
    assert f"{packages.resolve()}/tags/package.py:2: SyntaxError: '(' was never closed" in out


def test_migrate_applies_then_finds_nothing_to_do(packages: Path, database_url: str) -> None:
    code, out = run_cli(*args("migrate", packages, database_url))
    lines = out.splitlines()
    assert code == 0
    # A line per migration as it runs, then the commit's.
    assert [line.split(" (")[0] for line in lines[:4]] == [
        "@ydtb/core  0001_core_tables", "@ydtb/core  0002_package_tables",
        "notes  0001_create_ydtb_notes", "tags  0001_tags"]
    assert lines[4].startswith("4 migrations applied to 3 packages in ")

    code, out = run_cli(*args("migrate", packages, database_url))
    assert code == 0
    assert out.startswith("nothing to apply: 3 packages up to date (")


def test_migrate_plan_prints_the_sql_and_changes_nothing(
    packages: Path, database_url: str
) -> None:
    code, out = run_cli(*args("migrate", packages, database_url, "--plan"))

    assert code == 0
    assert out.splitlines()[:3] == [
        "-- --transaction all: the run commits as one, or not at all, 1 transaction",
        "-- transaction 1: records @ydtb/core, notes, tags", "-- @ydtb/core 0001_core_tables"]
    assert "-- tags 0001_tags\nCREATE TABLE IF NOT EXISTS ydtb_tags (" in out
    code, out = run_cli(*args("status", packages, database_url))
    assert "notes       1.0.0    -         0        0001_create_ydtb_notes" in out


def test_a_failing_migration_exits_1_with_its_location(packages: Path, database_url: str) -> None:
    (packages / "tags/migrations/0002_bad.sql").write_text("SELECT 1;\nSELECT nope;\n")

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 1
    error = out[out.index("error: "):]
    assert error == ('error: tags: migration 0002_bad failed at line 2 in `SELECT nope`: '
                     'column "nope" does not exist (nothing was applied; fix the migration and '
                     'run again)\n')


def test_a_migration_breaking_isolation_exits_1_and_applies_nothing(
    packages: Path, database_url: str
) -> None:
    (packages / "tags/migrations/0002_rogue.sql").write_text(
        "CREATE TABLE IF NOT EXISTS rogue_global (id int PRIMARY KEY, secret text);\n")

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 1
    assert out[out.index("error: "):] == (
        "error: 1 workspace isolation problem in what the migrations built:\n"
        "  - tags: migration 0002_rogue creates table rogue_global, which its schema does not "
        "declare (declare rogue_global in its schema.py, prefixed ydtb_ and with a NOT NULL "
        "workspace_id referencing ydtb_workspaces.id, or take it out of the migration) [Y501]\n")
    code, out = run_cli(*args("status", packages, database_url))
    assert "tags        1.0.0    -         0        0001_tags, 0002_rogue" in out


def test_status_shows_versions_pending_and_drift(packages: Path, database_url: str) -> None:
    run_cli(*args("migrate", packages, database_url))
    (packages / "tags/migrations/0002_more.sql").write_text("SELECT 2;")
    first = packages / "notes/migrations/0001_create_ydtb_notes.sql"
    first.write_text(first.read_text() + "-- edited\n")

    code, out = run_cli(*args("status", packages, database_url))

    assert code == 1
    assert out.splitlines() == [
        "PACKAGE     VERSION  RECORDED  APPLIED  PENDING    DRIFT",
        "@ydtb/core  1.0.0    1.0.0     2        -          -",
        "notes       1.0.0    1.0.0     1        -          0001_create_ydtb_notes edited",
        "tags        1.0.0    1.0.0     1        0002_more  -",
    ]
    code, out = run_cli(*args("status", packages, database_url, "--json"))
    tags = json.loads(out)["packages"][2]
    assert (tags["package"], tags["pending"], tags["up_to_date"]) == ("tags", ["0002_more"], False)


def test_graph_in_three_formats(packages: Path) -> None:
    assert run_cli(*args("graph", packages))[1] == (
        "@ydtb/core 1.0.0  <- -\nnotes 1.0.0  <- -\ntags 1.0.0  <- notes>=1\n")
    mermaid = run_cli(*args("graph", packages, None, "--format", "mermaid"))[1]
    dot = run_cli(*args("graph", packages, None, "--format", "dot"))[1]
    assert "    p2 --> p1\n" in mermaid
    assert '    "tags" -> "notes";\n' in dot


def test_check_db_catches_a_migration_that_cannot_run_twice(
    packages: Path, postgres_server_url: str
) -> None:
    (packages / "tags/migrations/0002_twice.sql").write_text("CREATE TABLE ydtb_twice (id int);")

    code, out = run_cli(*args("check", packages, postgres_server_url, "--db"))

    assert code == 1
    assert ('tags: migration 0002_twice fails when run twice: relation "ydtb_twice" already '
            "exists (guard it so it can run twice") in out


def test_an_unreachable_database_is_one_line_and_exit_2(packages: Path) -> None:
    code, out = run_cli(*args("status", packages, "postgresql://me:secret@127.0.0.1:1/db"))

    assert code == 2
    assert out.startswith("error: cannot reach the database at postgresql://me:***@127.0.0.1:1/db")
    assert out.count("\n") == 1 and "secret" not in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("frobnicate")[0] == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize(("columns", "widest"), [("60", 58), ("120", 118), ("0", 78), ("x", 78)])
def test_help_fits_the_terminal_width_columns_gives(
    columns: str, widest: int, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As argparse sizes it (shutil's rule: $COLUMNS if a positive number, else the
    # terminal, else 80), two columns short; not a terminal under pytest.
    monkeypatch.setenv("COLUMNS", columns)

    assert run_cli("migrate", "--help")[0] == 0

    rest = capsys.readouterr().out.partition("\n\n")[2]  # past the usage: options unbroken
    lines = rest.splitlines()
    assert max(map(len, lines)) <= widest
    assert max(map(len, lines)) > widest - 12  # and uses it: help text wraps to fit


@pytest.mark.parametrize("name", ["", "@YDTB/Basic", "no spaces"])
@pytest.mark.parametrize("command", ["makemigration", "uninstall"])
def test_a_package_argument_that_is_no_package_name_is_a_usage_error(
    packages: Path, command: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*args(command, packages), name)[0] == 2
    assert f"argument PACKAGE: {name!r} is not a package name" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "abc", "99999999999999999999"])
def test_a_debounce_the_watcher_cannot_take_is_a_usage_error(
    packages: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # -1 went through to watchfiles: an OverflowError traceback after the load.
    assert run_cli(*args("dev", packages), "--debounce", value)[0] == 2
    assert f"argument --debounce: {value!r} is not " in capsys.readouterr().err


@pytest.mark.parametrize(("url", "said"), [
    ("garbage", "'garbage' is not a PostgreSQL URL"),
    ("mysql://me@host/db", "'mysql://me@host/db' is not a PostgreSQL URL"),
    ("postgresql://me:secret@host:99999/db",
     "'postgresql://me:***@host:99999/db': Port out of range 0-65535"),
], ids=["no-scheme", "other-scheme", "bad-port"])
@pytest.mark.parametrize("command", ["migrate", "status", "dev"])
def test_a_malformed_url_is_refused_before_anything_runs(
    packages: Path, command: str, url: str, said: str
) -> None:
    code, out = run_cli(*args(command, packages, url))

    assert code == 2
    assert out == (f"error: --database-url (or DATABASE_URL): {said} (write postgresql://"
                   "user:password@host:port/database, or leave it unset for the embedded "
                   "server)\n")


@pytest.mark.parametrize("command", ["migrate", "check", "dev"])
def test_a_missing_or_empty_packages_directory_is_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "not_a_package").mkdir()

    missing = run_cli(*args(command, tmp_path / "missing"))
    empty = run_cli(*args(command, tmp_path / "empty"))

    assert missing == (2, f"error: --packages: {tmp_path / 'missing'} is not a directory "
                          "(name the directory holding your package directories; the default "
                          "is packages_dev)\n")
    assert empty == (2, f"error: --packages: no package in {tmp_path / 'empty'} (a package is "
                        "a directory holding package.py; create one, or name the right "
                        "directory)\n")


def test_migrate_reports_a_register_that_exits_and_applies_nothing(
    packages: Path, database_url: str
) -> None:
    (packages / "tags/package.py").write_text("import sys\n\ndef register(registry):\n"
                                              "    sys.exit(0)\n")

    code, out = run_cli(*args("migrate", packages, database_url))

    assert code == 1
    error = out[out.index("error: "):]
    assert error == (f"error: {(packages / 'tags/package.py').resolve()}:4: the package "
                     "called sys.exit(0); raise an exception instead (fix the file and save it "
                     "again)\n")


def test_a_cycle_between_packages_is_reported_as_the_cycle_only(packages: Path) -> None:
    write_package(packages, "notes", name="notes", deps=["tags"], tables={"ydtb_notes": []})

    code, out = run_cli(*args("check", packages))

    assert code == 1
    assert out == ("error: 1 validation problem:\n  - notes: dependency cycle notes -> tags -> "
                   "notes (remove one of these dependencies) [Y203]\n")


def test_the_module_runs_as_a_process(packages: Path, database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", *args("migrate", packages, database_url)],
        capture_output=True, text=True, timeout=60)

    assert (done.returncode, done.stderr) == (0, "")
    assert "4 migrations applied to 3 packages" in done.stdout


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_a_process_keeps_its_exit_code_and_output(packages: Path, valid: bool) -> None:
    # The process ends with os._exit (cli.exit_now), skipping the interpreter's teardown:
    # its exit code, and its output written to a pipe, must still come out.
    if not valid:
        schema = packages / "notes/schema.py"
        schema.write_text(schema.read_text().replace("'ydtb_notes'", "'notes'"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

    done = subprocess.run([sys.executable, "-m", "runtime", *args("check", packages)],
                          capture_output=True, text=True, timeout=60, env=env)

    if valid:
        assert (done.returncode, done.stdout) == (
            0, "ok: 3 packages valid (@ydtb/core, notes, tags)\n")
    else:
        assert done.returncode == 1
        assert "notes: table 'notes' must be prefixed 'ydtb_'" in done.stdout + done.stderr


def test_check_lists_the_keys_that_cross_workspaces_with_their_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "links", name="links", deps=["notes"], tables={"ydtb_links": [
        'Column("note_id", Integer, ForeignKey("ydtb_notes.id", ondelete="SET NULL", '
        'info={"cross_workspace": "templates are shared"}))']})
    listed = "  links: crosses workspaces on purpose: ydtb_links note_id -> ydtb_notes: " \
             "templates are shared"

    loaded = run_cli("check", "--packages", str(root), "--no-entry-points")
    cached = run_cli("check", "--packages", str(root), "--no-entry-points")

    assert loaded == (0, "ok: 3 packages valid (@ydtb/core, notes, links)\n" + listed + "\n")
    assert cached[0] == 0 and cached[1].endswith("last load\n" + listed + "\n")


def test_row_level_security_can_be_required_by_flag_or_environment(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    command = ["check", "--packages", str(packages), "--no-entry-points"]
    assert run_cli(*command)[0] == 0  # and cached, without the policy

    by_flag = run_cli(*command, "--require-rls")
    monkeypatch.setenv("RUNTIME_REQUIRE_RLS", "yes")
    by_environment = run_cli(*command)

    assert by_flag == by_environment
    code, out = by_flag
    assert code == 1
    assert out.splitlines()[1:] == [
        f"  - {name}: row-level security is required by the platform (--require-rls, "
        "RUNTIME_REQUIRE_RLS), and the package does not opt in (register it with "
        "row_level_security=True) [Y135]" for name in ("notes", "tags")]
