from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Enum, ForeignKey, Index, Integer, MetaData, String, Table, Text

from runtime.core import ddl

WorkspaceTable = Callable[..., Table]

NOTES_DDL = """\
CREATE TABLE IF NOT EXISTS ydtb_notes (
\tid SERIAL NOT NULL, \n\
\tworkspace_id VARCHAR(20) NOT NULL, \n\
\tbody TEXT, \n\
\tPRIMARY KEY (id), \n\
\tFOREIGN KEY(workspace_id) REFERENCES ydtb_workspaces (id) ON DELETE CASCADE
)"""


def test_create_statements_renders_create_table_if_not_exists(
    workspace_table: WorkspaceTable,
) -> None:
    notes = workspace_table(MetaData(), "ydtb_notes", Column("body", Text))

    assert ddl.create_statements([notes]) == [NOTES_DDL]


def test_create_statements_renders_indexes_if_not_exists(workspace_table: WorkspaceTable) -> None:
    notes = workspace_table(
        MetaData(), "ydtb_notes", Column("title", String(200), index=True), Column("rank", Integer)
    )
    Index("uq_ydtb_notes_rank", notes.c.workspace_id, notes.c.rank, unique=True)

    statements = ddl.create_statements([notes])

    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS ydtb_notes (")
    assert statements[1:] == [
        "CREATE INDEX IF NOT EXISTS ix_ydtb_notes_title ON ydtb_notes (title)",
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_ydtb_notes_rank ON ydtb_notes (workspace_id, rank)",
    ]


def test_create_statements_references_tables_outside_the_metadata_without_creating_them(
    workspace_table: WorkspaceTable,
) -> None:
    notes = workspace_table(
        MetaData(), "ydtb_notes", Column("author_id", String(36), ForeignKey("ydtb_people.uuid"))
    )

    statements = ddl.create_statements([notes])

    assert len(statements) == 1
    assert "author_id VARCHAR(36)" in statements[0]
    assert "FOREIGN KEY(author_id) REFERENCES ydtb_people (uuid)" in statements[0]
    assert "REFERENCES ydtb_workspaces (id) ON DELETE CASCADE" in statements[0]


def test_create_statements_leaves_the_given_metadata_alone(workspace_table: WorkspaceTable) -> None:
    metadata = MetaData()
    workspace_table(metadata, "ydtb_notes")

    ddl.create_statements(metadata.tables.values())

    assert list(metadata.tables) == ["ydtb_notes"]


def test_create_statements_puts_tables_in_foreign_key_order(
    workspace_table: WorkspaceTable,
) -> None:
    metadata = MetaData()
    comments = workspace_table(
        metadata, "ydtb_a_comments", Column("note_id", ForeignKey("ydtb_z_notes.id"))
    )
    notes = workspace_table(metadata, "ydtb_z_notes")

    statements = ddl.create_statements([comments, notes])

    assert [s.splitlines()[0] for s in statements] == [
        "CREATE TABLE IF NOT EXISTS ydtb_z_notes (",
        "CREATE TABLE IF NOT EXISTS ydtb_a_comments (",
    ]
    # A key to a table of the same metadata takes its type from the target.
    assert "note_id INTEGER" in statements[1]


def test_foreign_key_targets_reads_the_declared_strings(workspace_table: WorkspaceTable) -> None:
    notes = workspace_table(
        MetaData(), "ydtb_notes", Column("author_id", Integer, ForeignKey("ydtb_people.id"))
    )

    targets = sorted((table, column, local.name)
                     for table, column, local in ddl.foreign_key_targets(notes))

    assert targets == [
        ("ydtb_people", "id", "author_id"),
        ("ydtb_workspaces", "id", "workspace_id"),
    ]


def test_fingerprint_is_stable(workspace_table: WorkspaceTable) -> None:
    first = workspace_table(MetaData(), "ydtb_notes", Column("body", Text))
    second = workspace_table(MetaData(), "ydtb_notes", Column("body", Text))

    fingerprint = ddl.fingerprint(ddl.create_statements([first]))

    assert fingerprint == ddl.fingerprint(ddl.create_statements([second]))
    assert len(fingerprint) == 16
    assert int(fingerprint, 16) >= 0


def test_fingerprint_changes_when_a_column_is_added(workspace_table: WorkspaceTable) -> None:
    before = workspace_table(MetaData(), "ydtb_notes", Column("body", Text))
    after = workspace_table(MetaData(), "ydtb_notes", Column("body", Text), Column("pinned", Text))

    assert ddl.fingerprint(ddl.create_statements([before])) != ddl.fingerprint(
        ddl.create_statements([after])
    )


def test_fingerprint_changes_when_a_type_changes() -> None:
    def table(length: int) -> Table:
        return Table("ydtb_notes", MetaData(), Column("id", String(length), primary_key=True))

    assert ddl.fingerprint(ddl.create_statements([table(20)])) != ddl.fingerprint(
        ddl.create_statements([table(40)])
    )


def test_an_untyped_foreign_key_to_the_core_takes_the_core_column_type() -> None:
    metadata = MetaData()
    table = Table("ydtb_a", metadata, Column("id", Integer, primary_key=True),
                  Column("workspace_id", ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False))

    assert "workspace_id VARCHAR(20) NOT NULL" in ddl.create_statements([table])[0]


def test_the_naming_convention_of_the_package_names_its_constraints() -> None:
    metadata = MetaData(naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"})
    table = Table("ydtb_a", metadata, Column("id", Integer, primary_key=True),
                  Column("code", Text, unique=True))

    assert "CONSTRAINT uq_ydtb_a_code UNIQUE (code)" in ddl.create_statements([table])[0]


def test_a_native_enum_gets_its_type_created_first_and_only_once(
    workspace_table: WorkspaceTable,
) -> None:
    mood = Enum("calm", "busy", name="ydtb_mood")
    metadata = MetaData()
    workspace_table(metadata, "ydtb_days", Column("mood", mood))
    workspace_table(metadata, "ydtb_weeks", Column("mood", mood))
    workspace_table(metadata, "ydtb_notes", Column("kind", Enum("a", "b", native_enum=False)))

    statements = ddl.create_statements(metadata.tables.values())

    assert statements[0] == ("DO $$ BEGIN\n    CREATE TYPE ydtb_mood AS ENUM ('calm', 'busy');\n"
                             "EXCEPTION WHEN duplicate_object THEN NULL;\nEND $$")
    assert [s for s in statements if "CREATE TYPE" in s] == [statements[0]]
