"""Migration files written from schema differences: names, numbers, content. No database."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import DatabaseRegistry, Package, kit, migration_files
from runtime.core import ddl
from runtime.core.lint import lint_package
from runtime.db.diff import Difference
from runtime.dev import generator

COLOR = Difference("add_column", "ydtb_notes", "color",
                   "table ydtb_notes: column color declared but missing", False,
                   ("ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT",))
INDEX = Difference("add_index", "ydtb_notes", "ix_ydtb_notes_color",
                   "index ix_ydtb_notes_color declared but missing", False,
                   ("CREATE INDEX IF NOT EXISTS ix_ydtb_notes_color ON ydtb_notes (color)",))
TAGS = Difference("add_table", "ydtb_tags", None, "table ydtb_tags declared but missing", False,
                  ("CREATE TABLE IF NOT EXISTS ydtb_tags (\n\tid INTEGER NOT NULL\n)",))
GONE = Difference("remove_column", "ydtb_tasks", "body",
                  "table ydtb_tasks: column body in the database but not declared", True,
                  ("ALTER TABLE ydtb_tasks DROP COLUMN IF EXISTS body",))
@pytest.fixture
def package() -> Package:
    """Package `notes`, whose name the files' headers give."""
    return DatabaseRegistry(send_signals=False).register_database(
        package_name="notes", schema=kit.metadata(), version="1.0.0")


BODY = Difference("remove_column", "ydtb_notes", "body",
                  "table ydtb_notes: column body in the database but not declared", True,
                  ("ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body",))


@pytest.mark.parametrize(("differences", "name"), [
    pytest.param([COLOR], "add_color", id="one-column"),
    pytest.param([TAGS], "create_ydtb_tags", id="one-table"),
    pytest.param([GONE], "drop_body", id="one-drop"),
    pytest.param([COLOR, INDEX], "update_ydtb_notes", id="one-table-changed"),
    pytest.param([COLOR, TAGS], "update_schema", id="several-tables"),
])
def test_a_migration_is_named_after_what_it_does(
    differences: list[Difference], name: str
) -> None:
    assert generator.default_name(differences) == name


@pytest.mark.parametrize(("existing", "expected"), [
    pytest.param([], "0001_add_color.sql", id="first"),
    pytest.param(["0001_a.sql", "0002_b.py", "README.md"], "0003_add_color.sql", id="after-py"),
    pytest.param(["9_a.sql"], "0010_add_color.sql", id="padded-to-four"),
    pytest.param(["00007_a.sql"], "00008_add_color.sql", id="keeps-wider-padding"),
])
def test_the_next_migration_is_numbered_after_the_highest(
    tmp_path: Path, existing: list[str], expected: str
) -> None:
    for name in existing:
        (tmp_path / name).write_text("")

    assert generator.next_migration_path(tmp_path, "Add color!").name == expected


def test_the_file_is_commented_sql_ending_each_statement(tmp_path: Path, package: Package) -> None:

    [(path, _)] = generator.write_migration(tmp_path, package, [COLOR, TAGS, GONE], "Sync Notes")

    assert path.name == "0001_sync_notes.sql"
    assert path.read_text() == (
        "-- Written by `python -m runtime makemigration notes`: what the declared\n"
        "-- schema has that the database built by the migrations before this one has not\n"
        '-- ("declared but missing"), and the reverse ("in the database but not declared").\n'
        "\n"
        "-- table ydtb_notes: column color declared but missing\n"
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT;\n"
        "\n"
        "-- table ydtb_tags declared but missing\n"
        "CREATE TABLE IF NOT EXISTS ydtb_tags (\n"
        "    id INTEGER NOT NULL\n"
        ");\n"
        "\n"
        "-- table ydtb_tasks: column body in the database but not declared (DESTRUCTIVE: "
        "review it)\n"
        "ALTER TABLE ydtb_tasks DROP COLUMN IF EXISTS body;\n")
    assert [p.name for p in tmp_path.iterdir()] == ["0001_sync_notes.sql"]


def test_a_column_dropped_and_one_added_are_written_as_a_rename_to_review(
    tmp_path: Path, package: Package
) -> None:
    [(path, _)] = generator.write_migration(tmp_path, package, [COLOR, BODY])

    assert path.name == "0001_rename_body_to_color.sql"
    assert path.read_text().split("\n\n")[1] == (
        "-- table ydtb_notes: column body in the database but not declared\n"
        "-- table ydtb_notes: column color declared but missing\n"
        "-- Written as a rename of column ydtb_notes.body to color, which keeps the rows' "
        "values (REVIEW it: if they are two different things, delete the rename and "
        "uncomment the statements after it)\n"
        "DO $$\n"
        "BEGIN\n"
        "    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = 'ydtb_notes' AND column_name = 'body')\n"
        "       AND NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = 'ydtb_notes' AND column_name = 'color') THEN\n"
        "        ALTER TABLE ydtb_notes RENAME COLUMN body TO color;\n"
        "    END IF;\n"
        "END $$;\n"
        "-- ALTER TABLE ydtb_notes DROP COLUMN IF EXISTS body;\n"
        "-- ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT;\n")


KEY = Difference("add_fk", "ydtb_notes", "fk_notes_tag", "foreign key fk_notes_tag declared "
                 "but missing", False, ddl.checked_later(
                     "ALTER TABLE ydtb_notes ADD CONSTRAINT fk_notes_tag FOREIGN KEY(tag_id) "
                     "REFERENCES ydtb_tags (id)", "ydtb_notes", "fk_notes_tag"))
TAGS_INDEX = Difference("add_index", "ydtb_tags", "ix_ydtb_tags_id",
                        "index ix_ydtb_tags_id declared but missing", False,
                        ("CREATE INDEX IF NOT EXISTS ix_ydtb_tags_id ON ydtb_tags (id)",))


def test_what_would_block_writes_goes_in_a_no_transaction_migration_after(
    tmp_path: Path, package: Package
) -> None:
    """An index of a table that exists is built CONCURRENTLY, and a foreign key added NOT
    VALID is validated, in a second file that runs outside a transaction once the first
    committed (lint Y510, Y515); a new table's index stays with the table."""

    (first, _), (second, _) = generator.write_migration(
        tmp_path, package, [COLOR, INDEX, TAGS, TAGS_INDEX, KEY], "tags")

    assert (first.name, second.name) == ("0001_tags.sql", "0002_tags_online.sql")
    body = first.read_text().split("\n\n", 1)[1]
    assert body == (
        "-- table ydtb_notes: column color declared but missing\n"
        "ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS color TEXT;\n"
        "\n"
        "-- table ydtb_tags declared but missing\n"
        "CREATE TABLE IF NOT EXISTS ydtb_tags (\n"
        "    id INTEGER NOT NULL\n"
        ");\n"
        "\n"
        "-- index ix_ydtb_tags_id declared but missing\n"
        "CREATE INDEX IF NOT EXISTS ix_ydtb_tags_id ON ydtb_tags (id);\n"
        "\n"
        "-- foreign key fk_notes_tag declared but missing\n"
        "DO $$\n"
        "BEGIN\n"
        "    ALTER TABLE ydtb_notes ADD CONSTRAINT fk_notes_tag FOREIGN KEY(tag_id) "
        "REFERENCES ydtb_tags (id) NOT VALID;\n"
        "EXCEPTION WHEN duplicate_object OR duplicate_table THEN\n"
        "    NULL;  -- it exists already\n"
        "END $$;\n")
    later = second.read_text()
    assert later.startswith("-- runtime: no-transaction\n")
    assert later.split("\n\n", 1)[1] == (
        "-- index ix_ydtb_notes_color declared but missing\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_ydtb_notes_color ON ydtb_notes (color);\n"
        "\n"
        "-- foreign key fk_notes_tag declared but missing\n"
        "ALTER TABLE ydtb_notes VALIDATE CONSTRAINT fk_notes_tag;\n")
    lints = lint_package("notes", [migration_files.read_sql(p) for p in (first, second)])
    assert [(f.migration, f.code) for f in lints.findings] == []


def test_a_migration_of_indexes_alone_runs_outside_a_transaction(
    tmp_path: Path, package: Package
) -> None:
    [(path, _)] = generator.write_migration(tmp_path, package, [INDEX])

    migration = migration_files.read_sql(path)
    assert not migration.transactional
    assert path.read_text().endswith(
        "\n-- index ix_ydtb_notes_color declared but missing\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_ydtb_notes_color ON ydtb_notes (color);\n")
    assert list(lint_package("notes", [migration]).findings) == []


def test_a_key_of_a_table_the_migration_creates_is_validated_in_it(
    tmp_path: Path, package: Package
) -> None:
    """A new table has no rows to wait for: its key is added and validated at once."""
    key = Difference("add_fk", "ydtb_tags", "fk_tags_note", "foreign key fk_tags_note "
                     "declared but missing", False, ddl.checked_later(
                         "ALTER TABLE ydtb_tags ADD CONSTRAINT fk_tags_note FOREIGN KEY(note_id) "
                         "REFERENCES ydtb_notes (id)", "ydtb_tags", "fk_tags_note"))

    [(path, _)] = generator.write_migration(tmp_path, package, [TAGS, key])

    assert path.read_text().endswith(
        "END $$;\nALTER TABLE ydtb_tags VALIDATE CONSTRAINT fk_tags_note;\n")


# A unique key of a table that exists: built CONCURRENTLY, in the `_online` file.
WORKSPACE_KEY = Difference(
    "add_constraint", "ydtb_notes", "uq_ydtb_notes_workspace_id_id",
    "unique constraint uq_ydtb_notes_workspace_id_id declared but missing", False,
    ("CREATE UNIQUE INDEX IF NOT EXISTS uq_ydtb_notes_workspace_id_id ON ydtb_notes "
     "(workspace_id, id)",
     "ALTER TABLE ydtb_notes ADD CONSTRAINT uq_ydtb_notes_workspace_id_id UNIQUE USING "
     "INDEX uq_ydtb_notes_workspace_id_id"))


def test_a_foreign_key_on_a_key_the_file_after_builds_goes_after_it(
    tmp_path: Path, package: Package
) -> None:
    # Found by tests/db/test_comparison_properties.py: the key went to the first file,
    # and PostgreSQL refused it ("no unique constraint matching given keys").
    parent = Difference(
        "add_fk", "ydtb_notes", "fk_notes_parent", "foreign key fk_notes_parent declared but "
        "missing", False,
        ("ALTER TABLE ydtb_notes ADD CONSTRAINT fk_notes_parent FOREIGN KEY(workspace_id, "
         "parent_id) REFERENCES ydtb_notes (workspace_id, id) NOT VALID",
         "ALTER TABLE ydtb_notes VALIDATE CONSTRAINT fk_notes_parent"))

    (first, _), (second, _) = generator.write_migration(
        tmp_path, package, [COLOR, WORKSPACE_KEY, parent], "p")

    assert "fk_notes_parent" not in first.read_text()
    later = second.read_text()
    assert later.index("UNIQUE USING INDEX") < later.index("ADD CONSTRAINT fk_notes_parent") \
        < later.index("VALIDATE CONSTRAINT fk_notes_parent")


def test_a_new_table_keyed_onto_a_key_the_file_after_builds_goes_after_it(
    tmp_path: Path, package: Package
) -> None:
    tags = Difference(
        "add_table", "ydtb_tags", None, "table ydtb_tags declared but missing", False,
        ("CREATE TABLE IF NOT EXISTS ydtb_tags (\n\tworkspace_id VARCHAR(20) NOT NULL,\n"
         "\tnote_id INTEGER,\n\tFOREIGN KEY(workspace_id, note_id) REFERENCES ydtb_notes "
         "(workspace_id, id)\n)",))

    (first, _), (second, _) = generator.write_migration(
        tmp_path, package, [COLOR, WORKSPACE_KEY, tags], "t")

    assert "ydtb_tags" not in first.read_text()
    later = second.read_text()
    assert later.index("UNIQUE USING INDEX") < later.index("CREATE TABLE IF NOT EXISTS ydtb_tags")


def test_enum_labels_go_in_a_no_transaction_migration_before_what_may_use_them(
    tmp_path: Path, package: Package
) -> None:
    label = Difference("add_enum_value", "ydtb_notes", "away",
                       "enum type ydtb_mood: label away declared but missing", False,
                       ("ALTER TYPE ydtb_mood ADD VALUE IF NOT EXISTS 'away'",))

    written = generator.write_migration(tmp_path, package, [COLOR, label], "mood")

    assert [(w.path.name, w.part) for w in written] == [
        ("0001_mood_labels.sql", generator.BEFORE), ("0002_mood.sql", "")]
    assert migration_files.read_sql(written[0].path).transactional is False
    assert written[0].path.read_text().endswith(
        "-- enum type ydtb_mood: label away declared but missing\n"
        "ALTER TYPE ydtb_mood ADD VALUE IF NOT EXISTS 'away';\n")
    assert "ADD VALUE" not in written[1].path.read_text()
    # A label alone needs no file of its own: nothing else in its transaction uses it.
    (tmp_path / "alone").mkdir()
    [(alone, part)] = generator.write_migration(tmp_path / "alone", package, [label], "away")
    assert (alone.name, part) == ("0001_away.sql", "")
