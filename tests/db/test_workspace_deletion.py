"""Deleting a workspace deletes its rows, and only its rows, whatever the keys' actions.

The example packages, and a package with a key of every ON DELETE action between its
workspace tables (rule Y210 scopes them all to the workspace), hold rows of two
workspaces; one workspace is deleted: none of its rows is left in any table, and every
row of the other is still there, unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, ForeignKey, Integer, text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import kit
from runtime.core.model import Migration
from runtime.core.registry import DatabaseRegistry
from runtime.db import migrator
from runtime.errors import ValidationError
from runtime.load.loader import load_all

EXAMPLES = Path(__file__).parent.parent.parent / "packages_dev"
ACTIONS = {"no_action": None, "restrict": "RESTRICT", "cascade": "CASCADE",
           "set_null": "SET NULL", "set_default": "SET DEFAULT"}


def actions(registry: DatabaseRegistry) -> None:
    """`@t/actions`: ydtb_act_target, and a table referencing it with each action."""
    metadata = kit.metadata()
    kit.workspace_table("ydtb_act_target", metadata, Column("id", Integer, primary_key=True),
                        Column("parent_id", Integer), kit.workspace_key(),
                        kit.workspace_reference("parent_id", "ydtb_act_target",
                                                ondelete="RESTRICT", name="fk_act_parent"))
    sql = [kit_sql("ydtb_act_target", "parent_id int",
                   "CONSTRAINT fk_act_parent FOREIGN KEY (workspace_id, parent_id) "
                   "REFERENCES ydtb_act_target (workspace_id, id) ON DELETE RESTRICT")]
    for name, action in ACTIONS.items():
        table = f"ydtb_act_{name}"
        kit.workspace_table(table, metadata, Column("id", Integer, primary_key=True),
                            Column("target_id", Integer),
                            kit.workspace_reference("target_id", "ydtb_act_target",
                                                    ondelete=action, name=f"fk_act_{name}"))
        clause = {None: "", "SET NULL": " ON DELETE SET NULL (target_id)",
                  "SET DEFAULT": " ON DELETE SET DEFAULT (target_id)"}.get(
                      action, f" ON DELETE {action}")
        sql.append(kit_sql(table, "target_id int",
                           f"CONSTRAINT fk_act_{name} FOREIGN KEY (workspace_id, target_id) "
                           f"REFERENCES ydtb_act_target (workspace_id, id){clause}"))
    registry.register_database(package_name="@t/actions", schema=metadata, version="1.0.0",
                               migrations=[Migration("0001_tables", up="\n".join(sql))])


def kit_sql(table: str, *columns: str) -> str:
    """What `kit.workspace_table(table, md, id, *columns, kit.workspace_key())` is."""
    body = ",\n".join([
        "workspace_id varchar(20) NOT NULL", "id integer NOT NULL", *columns,
        f"CONSTRAINT pk_{table} PRIMARY KEY (id)",
        f"CONSTRAINT fk_{table}_workspace_id_ydtb_workspaces FOREIGN KEY (workspace_id) "
        "REFERENCES ydtb_workspaces (id) ON DELETE CASCADE",
        f"CONSTRAINT uq_{table}_workspace_id_id UNIQUE (workspace_id, id)"])
    return (f"CREATE TABLE IF NOT EXISTS {table} ({body});\n"
            f"CREATE INDEX IF NOT EXISTS ix_{table}_workspace_id ON {table} (workspace_id);")


ROWS = """
INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('w1', 'One', 'one'), ('w2', 'Two', 'two');
INSERT INTO ydtb_notes (id, workspace_id, title) VALUES (1, 'w1', 'a'), (2, 'w2', 'b');
INSERT INTO ydtb_tasks (workspace_id, note_id, title) VALUES ('w1', 1, 'a'), ('w2', 2, 'b');
INSERT INTO ydtb_timer_entries (workspace_id, label) VALUES ('w1', 'a'), ('w2', 'b');
INSERT INTO ydtb_workspace_tools (workspace_id, tool_id)
    SELECT w, id FROM ydtb_tools, (VALUES ('w1'), ('w2')) AS ws (w);
INSERT INTO ydtb_act_target (workspace_id, id, parent_id) VALUES
    ('w1', 1, NULL), ('w1', 2, 1), ('w2', 3, NULL), ('w2', 4, 3);
"""


async def counts(engine: AsyncEngine, workspace: str) -> dict[str, int]:
    async with engine.connect() as conn:
        tables = (await conn.execute(text(
            "SELECT table_name FROM information_schema.columns WHERE column_name = "
            "'workspace_id' AND table_schema = 'public' ORDER BY 1"))).scalars().all()
        return {table: (await conn.execute(text(
            f"SELECT count(*) FROM {table} WHERE workspace_id = :w"), {"w": workspace})).scalar()
            for table in tables}


async def test_deleting_a_workspace_leaves_none_of_its_rows_and_all_of_the_others(
    engine: AsyncEngine,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    assert load_all([EXAMPLES], registry, entry_points=False).errors == []
    actions(registry)
    await migrator.migrate(engine, registry.ordered())
    async with engine.begin() as conn:
        for statement in ROWS.strip().split(";\n"):
            await conn.execute(text(statement))
        for name in ACTIONS:
            await conn.execute(text(f"INSERT INTO ydtb_act_{name} (workspace_id, id, target_id) "
                                    "VALUES ('w1', 1, 1), ('w1', 2, 2), ('w2', 3, 3)"))
    others_before = await counts(engine, "w2")

    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM ydtb_workspaces WHERE id = 'w1'"))

    assert set((await counts(engine, "w1")).values()) == {0}
    assert await counts(engine, "w2") == others_before
    assert min(others_before.values()) >= 1  # every table held a row of the other
    async with engine.connect() as conn:  # untouched, not only there
        assert (await conn.execute(text(
            "SELECT count(*) FROM ydtb_act_set_null WHERE target_id IS NULL"))).scalar() == 0


@pytest.mark.parametrize(("action", "code"), [
    ("CASCADE", "Y116"), ("RESTRICT", "Y116"), (None, "Y116"), ("SET NULL", None)])
def test_a_key_across_workspaces_must_say_why_and_set_null(
    action: str | None, code: str | None
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    actions(registry)
    metadata = kit.metadata()
    kit.workspace_table("ydtb_links", metadata, Column("id", Integer, primary_key=True),
                        Column("target_id", Integer, ForeignKey(
                            "ydtb_act_target.id", ondelete=action,
                            info={"cross_workspace": "links are shared between workspaces"})))

    def register() -> None:
        registry.register_database(package_name="@t/links", schema=metadata, version="1.0.0",
                                   dependencies=["@t/actions"])

    if code is None:
        register()
        return
    with pytest.raises(ValidationError) as caught:
        register()
    assert [p.code for p in caught.value.problems] == [code]

