"""`python -m runtime makemigration`: the schema edit written as the next migration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from support import create_sql, run_cli, write_package

from runtime.db.urls import plain_url

ENUM_SQL = ("DO $$ BEGIN CREATE TYPE ydtb_notes_status AS ENUM ('open', 'done');\n"
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n")
COLOR = ['Column("color", Text, index=True)',
         'Column("tool_id", String(20), ForeignKey("ydtb_tools.id"))']


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Package `notes` whose schema declares two columns its one migration does not build."""
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": COLOR},
                  migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes")})
    return tmp_path


def run(command: str, *args: str, root: Path, url: str) -> tuple[int, str]:
    return run_cli(command, *args, "--packages", str(root), "--database-url", url,
                   "--no-entry-points")


def assert_migrations_build_the_schema(root: Path, url: str) -> None:
    """`check --db` accepts package `notes`, and `makemigration` has nothing to write."""
    assert run("check", "--db", root=root, url=url)[0] == 0
    assert run("makemigration", "notes", root=root, url=url) == (
        0, "nothing to write: the migrations of notes build its declared schema\n")


def test_the_schema_edit_is_written_as_an_idempotent_migration_that_builds_it(
    root: Path, database_url: str
) -> None:
    code, out = run("makemigration", "notes", root=root, url=database_url)

    path = root / "notes/migrations/0002_update_ydtb_notes.sql"
    after = root / "notes/migrations/0003_update_ydtb_notes_online.sql"
    assert (code, out) == (0, f"wrote {path}:\n"
                              "  table ydtb_notes: column color declared but missing\n"
                              "  table ydtb_notes: column tool_id declared but missing\n"
                              "  index ix_ydtb_notes_color declared but missing\n"
                              "  foreign key ydtb_notes_tool_id_fkey declared but missing\n"
                              f"wrote {after}: to run after it, outside a transaction: it "
                              "builds indexes and checks keys without blocking writes\n")
    assert path.read_text().split("\n\n")[1:] == [
        "-- table ydtb_notes: column color declared but missing\n"
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT;",
        "-- table ydtb_notes: column tool_id declared but missing\n"
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS tool_id VARCHAR(20);",
        "-- foreign key ydtb_notes_tool_id_fkey declared but missing\n"
        "DO $$\n"
        "BEGIN\n"
        "    ALTER TABLE ydtb_notes ADD CONSTRAINT ydtb_notes_tool_id_fkey FOREIGN KEY(tool_id) "
        "REFERENCES ydtb_tools (id) NOT VALID;\n"
        "EXCEPTION WHEN duplicate_object OR duplicate_table THEN\n"
        "    NULL;  -- it exists already\n"
        "END $$;\n"]
    # What would block writes while it reads every row runs after, outside a transaction.
    assert after.read_text().split("\n\n")[1:] == [
        "-- index ix_ydtb_notes_color declared but missing\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_ydtb_notes_color ON ydtb_notes (color);",
        "-- foreign key ydtb_notes_tool_id_fkey declared but missing\n"
        "ALTER TABLE ydtb_notes VALIDATE CONSTRAINT ydtb_notes_tool_id_fkey;\n"]
    assert after.read_text().startswith("-- runtime: no-transaction\n")
    # The safety lint finds nothing in either.
    assert run("check", root=root, url=database_url) == (
        0, "ok: 2 packages valid (@ydtb/core, notes)\n")
    # On a fresh database: it applies, leaves no drift, runs twice, and is all there is.
    assert run("migrate", root=root, url=database_url)[0] == 0
    assert run("status", root=root, url=database_url)[0] == 0
    assert_migrations_build_the_schema(root, database_url)


def test_the_name_can_be_given(root: Path, database_url: str) -> None:
    code, _ = run("makemigration", "notes", "--name", "Colour & tools", root=root,
                  url=database_url)

    assert code == 0
    assert sorted(p.name for p in (root / "notes/migrations").iterdir()) == [
        "0001_create_ydtb_notes.sql", "0002_colour_tools.sql", "0003_colour_tools_online.sql"]


def test_a_destructive_difference_is_written_and_flagged(tmp_path: Path, database_url: str) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": []},
                  migrations={"0001_create.sql": create_sql("ydtb_notes", "body text")})

    code, out = run("makemigration", "notes", root=tmp_path, url=database_url)

    path = tmp_path / "notes/migrations/0002_drop_body.sql"
    assert (code, out) == (0, f"wrote {path}:\n"
                              "  table ydtb_notes: column body in the database but not declared\n"
                              "  destructive: it drops or narrows what the database holds, "
                              "and a running dev daemon applies it at once\n")
    assert path.read_text().endswith(
        "-- table ydtb_notes: column body in the database but not declared (DESTRUCTIVE: "
        "review it)\nALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body;\n")


def test_an_unknown_package_is_named_with_the_known_ones(root: Path, database_url: str) -> None:
    assert run("makemigration", "nope", root=root, url=database_url) == (
        1, "error: nope: package is not registered (registered: @ydtb/core, notes)\n")


def test_a_package_is_found_by_its_short_or_directory_name(
    tmp_path: Path, database_url: str
) -> None:
    for directory, name in (("basic", "@acme/notes"), ("other", "@acme/tags")):
        write_package(tmp_path, directory, name=name, tables={f"ydtb_{directory}": COLOR[:1]},
                      migrations={"0001_create.sql": create_sql(f"ydtb_{directory}")})

    for given in ("notes", "basic", "@acme/notes"):
        code, out = run("makemigration", given, root=tmp_path, url=database_url)
        assert (code, out.splitlines()[0]) == (
            0, f"wrote {tmp_path / 'basic/migrations/0002_update_ydtb_basic.sql'}:"), given
        for written in (tmp_path / "basic/migrations").glob("000[23]_*"):
            written.unlink()


def test_a_name_two_packages_answer_to_is_refused_naming_both(
    tmp_path: Path, database_url: str
) -> None:
    for directory, name in (("a", "@acme/notes"), ("b", "@other/notes")):
        write_package(tmp_path, directory, name=name, tables={f"ydtb_{directory}": []},
                      migrations={"0001_create.sql": create_sql(f"ydtb_{directory}")})

    assert run("makemigration", "notes", root=tmp_path, url=database_url) == (
        1, "error: notes: more than one package answers to it (@acme/notes, @other/notes); "
           "give the full name\n")


def test_a_package_with_a_schema_alone_gets_its_derived_migration_as_its_first_file(
    tmp_path: Path, database_url: str
) -> None:
    write_package(tmp_path, "notes", name="notes", migrations={},
                  tables={"ydtb_notes": ['Column("color", Text, index=True)']})
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0  # the derived 0001

    code, out = run("makemigration", "notes", root=tmp_path, url=database_url)

    first = tmp_path / "notes/migrations/0001_initial_schema.sql"
    assert (code, out) == (0, f"wrote {first}: the migration notes had, derived from its "
                              "schema\n")
    assert "CREATE INDEX IF NOT EXISTS ix_ydtb_notes_color" in first.read_text()
    # The same migration by its checksum: not an edit where it ran, and complete.
    assert run("migrate", root=tmp_path, url=database_url)[1].startswith("nothing to apply")
    assert_migrations_build_the_schema(tmp_path, database_url)


def test_a_schema_alone_changed_after_it_was_applied_says_how_to_go_on(
    tmp_path: Path, database_url: str
) -> None:
    before = ['Column("color", Text)']
    write_package(tmp_path, "notes", name="notes", migrations={},
                  tables={"ydtb_notes": before})
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    after = [*before, 'Column("size", Integer)']
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": after},
                  migrations={})

    code, out = run("migrate", root=tmp_path, url=database_url)

    # Not "restore its applied content": it has no file.
    assert code == 1
    assert "migration 0001_initial_schema, derived from its schema, changed with the " \
           "schema after it was applied" in out
    assert "declare the schema as it was when applied, run python -m runtime makemigration " \
           "notes to write that migration out as its first file" in out
    # The way the hint says.
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": before},
                  migrations={})
    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": after},
                  migrations={})
    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0
    code, out = run("migrate", root=tmp_path, url=database_url)
    assert code == 0, out
    assert run("check", "--db", root=tmp_path, url=database_url)[0] == 0


def test_a_package_with_a_schema_alone_builds_its_comments(
    tmp_path: Path, database_url: str
) -> None:
    # CREATE TABLE leaves comments out: the derived migration built the table without
    # them, and `check --db` refused the package (Y404) though it had no migration.
    write_package(tmp_path, "notes", name="notes", migrations={}, tables={"ydtb_notes": [
        'Column("color", Text, comment="the note\'s colour")', 'comment="a workspace\'s notes"']})

    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    assert run("check", "--db", root=tmp_path, url=database_url)[0] == 0
    assert run("status", root=tmp_path, url=database_url)[1].count("difference") == 0
    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0
    written = (tmp_path / "notes/migrations/0001_initial_schema.sql").read_text()
    assert "COMMENT ON TABLE ydtb_notes IS 'a workspace''s notes'" in written
    assert "COMMENT ON COLUMN ydtb_notes.color IS 'the note''s colour'" in written
    assert sorted(p.name for p in (tmp_path / "notes/migrations").iterdir()) == [
        "0001_initial_schema.sql"]  # the migration builds the schema: nothing more


def test_a_new_column_is_written_with_its_comment(tmp_path: Path, database_url: str) -> None:
    # ADD COLUMN leaves the comment out: `check --db` refused the migration written.
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("color", Text, comment="the note\'s colour")']},
        migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes")})

    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0

    written = (tmp_path / "notes/migrations/0002_add_color.sql").read_text()
    assert "COMMENT ON COLUMN ydtb_notes.color IS 'the note''s colour'" in written
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    assert_migrations_build_the_schema(tmp_path, database_url)


def migrate_with_status(root: Path, url: str) -> None:
    """Package `notes` with a column of enum type ydtb_notes_status (open, done), migrated."""
    write_package(root, "notes", name="notes", tables={"ydtb_notes": [
        'Column("status", Enum("open", "done", name="ydtb_notes_status"))']},
        migrations={"0001_create_ydtb_notes.sql": ENUM_SQL + create_sql(
            "ydtb_notes", "status ydtb_notes_status")})
    assert run("migrate", root=root, url=url)[0] == 0


def test_a_removed_enum_label_is_written_as_a_placeholder_that_fails_until_written(
    tmp_path: Path, database_url: str
) -> None:
    # No statement drops a label in place: the file was written with no statement,
    # ran as done, and `check --db` refused it.
    migrate_with_status(tmp_path, database_url)
    write_package(tmp_path, "notes", name="notes", version="2.0.0", tables={"ydtb_notes": [
        'Column("status", Enum("open", name="ydtb_notes_status"))']}, migrations={})

    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0

    [path] = (tmp_path / "notes/migrations").glob("0002_*.sql")
    written = path.read_text()
    assert "-- REVIEW: write it here, guarded to run twice" in written
    assert "PostgreSQL cannot drop or move a label of ydtb_notes_status in place" in written
    assert "runtime: no-transaction" not in written
    code, out = run("migrate", root=tmp_path, url=database_url)
    assert code == 1
    assert "this migration is to be written by hand: see its REVIEW comment" in out


def test_an_enum_column_is_written_with_its_type(tmp_path: Path, database_url: str) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("status", Enum("open", "done", name="ydtb_notes_status"))']},
        migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes")})

    code, _ = run("makemigration", "notes", root=tmp_path, url=database_url)

    written = (tmp_path / "notes/migrations/0002_add_status.sql").read_text()
    assert code == 0
    assert "CREATE TYPE ydtb_notes_status AS ENUM ('open', 'done');" in written
    assert written.index("CREATE TYPE") < written.index("ADD COLUMN IF NOT EXISTS status")
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    assert run("check", "--db", root=tmp_path, url=database_url)[0] == 0
    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0
    assert sorted(p.name for p in (tmp_path / "notes/migrations").iterdir()) == [
        "0001_create_ydtb_notes.sql", "0002_add_status.sql"]


def test_an_enum_label_and_its_use_are_written_as_two_migrations_that_apply(
    tmp_path: Path, database_url: str
) -> None:
    # PostgreSQL uses a label only once the transaction that added it committed, and a
    # run commits its migrations together: the label goes in a no-transaction file first.
    migrate_with_status(tmp_path, database_url)
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("status", Enum("open", "doing", "done", name="ydtb_notes_status"), '
        'server_default="doing")']}, migrations={})

    code, out = run("makemigration", "notes", "--name", "doing", root=tmp_path,
                    url=database_url)

    labels = tmp_path / "notes/migrations/0002_doing_labels.sql"
    path = tmp_path / "notes/migrations/0003_doing.sql"
    assert code == 0, out
    assert out.splitlines() == [
        f"wrote {labels}: to run first, outside a transaction: the enum labels the next one "
        "may use (PostgreSQL uses a label only once it is committed)",
        f"wrote {path}:",
        "  table ydtb_notes: column status has no default in the database but declared "
        "default 'doing'",
        "  enum type ydtb_notes_status: label doing declared but missing"]
    assert labels.read_text().startswith("-- runtime: no-transaction\n")
    assert labels.read_text().endswith(
        "ALTER TYPE ydtb_notes_status ADD VALUE IF NOT EXISTS 'doing' BEFORE 'done';\n")
    assert "ADD VALUE" not in path.read_text()
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    assert run("check", "--db", root=tmp_path, url=database_url)[0] == 0
    assert run("makemigration", "notes", root=tmp_path, url=database_url) == (
        0, "nothing to write: the migrations of notes build its declared schema\n")


def test_a_type_change_is_written_with_a_cast_that_converts_the_rows(
    tmp_path: Path, database_url: str
) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("votes", Text)']},
        migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes", "votes text")})
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    sql(database_url, "INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('w1', 'W', 'w')",
        "INSERT INTO ydtb_notes (id, workspace_id, votes) VALUES (1, 'w1', '12')")
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("votes", Integer)']}, migrations={})

    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0

    assert sql(database_url, "SELECT votes FROM ydtb_notes") == 12


def sql(url: str, *statements: str) -> object:
    """Run `statements` on the database of `url`; return the last one's first value."""
    async def go() -> object:
        conn = await asyncpg.connect(plain_url(url))
        try:
            for statement in statements[:-1]:
                await conn.execute(statement)
            return await conn.fetchval(statements[-1])
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.parametrize(("old", "new", "renamed"), [
    ("color", "colour", "color TO colour"),
    # Reserved words: `RENAME COLUMN user TO owner` was a syntax error.
    ("user", "owner", '"user" TO owner'),
    ("color", "order", 'color TO "order"'),
])
def test_a_renamed_column_is_written_as_a_rename_that_keeps_the_values(
    tmp_path: Path, database_url: str, old: str, new: str, renamed: str
) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        f'Column("{old}", Text)']},
        migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes", f'"{old}" text')})
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    sql(database_url, "INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('w1', 'W', 'w')",
        f'INSERT INTO ydtb_notes (id, workspace_id, "{old}") VALUES (1, \'w1\', \'red\')')
    # A rename breaks the code deployed with it: a new major version (Y303).
    write_package(tmp_path, "notes", name="notes", version="2.0.0", tables={"ydtb_notes": [
        f'Column("{new}", Text)']}, migrations={})

    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0

    written = (tmp_path / f"notes/migrations/0002_rename_{old}_to_{new}.sql").read_text()
    assert f"RENAME COLUMN {renamed};" in written
    assert f"-- ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS {renamed.split(' TO ')[0]};" \
        in written
    code, out = run("migrate", root=tmp_path, url=database_url)
    assert code == 0, out
    assert sql(database_url, f'SELECT "{new}" FROM ydtb_notes') == "red"
    assert run("check", "--db", root=tmp_path, url=database_url)[0] == 0  # runs twice


def test_not_null_is_written_after_a_backfill_the_author_fills_in(
    tmp_path: Path, database_url: str
) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("title", Text)']},
        migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes", "title text")})
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    sql(database_url, "INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('w1', 'W', 'w')",
        "INSERT INTO ydtb_notes (id, workspace_id) VALUES (1, 'w1')")
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("title", Text, nullable=False)']}, migrations={})
    assert run("makemigration", "notes", "--name", "title_required", root=tmp_path,
               url=database_url)[0] == 0
    path = tmp_path / "notes/migrations/0002_title_required.sql"
    written = path.read_text()
    assert "UPDATE ydtb_notes SET title = NULL /* FILL IN */ WHERE title IS NULL;" in written

    code, out = run("migrate", root=tmp_path, url=database_url)  # not filled in: refused
    assert code == 1 and 'column "title" of relation "ydtb_notes" contains null values' in out

    path.write_text(written.replace("NULL /* FILL IN */", "'untitled'"))
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    assert sql(database_url, "SELECT title FROM ydtb_notes") == "untitled"


def test_a_check_constraint_is_compared_and_written(tmp_path: Path, database_url: str) -> None:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": [
        'Column("votes", Integer)', 'CheckConstraint("votes >= 0", name="votes_positive")']},
        migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes", "votes integer")})

    code, out = run("check", "--db", root=tmp_path, url=database_url)
    assert code == 1 and "check constraint votes_positive declared but missing" in out

    assert run("makemigration", "notes", root=tmp_path, url=database_url)[0] == 0
    assert run("migrate", root=tmp_path, url=database_url)[0] == 0
    assert run("check", "--db", root=tmp_path, url=database_url)[0] == 0
    assert run("status", root=tmp_path, url=database_url)[0] == 0
