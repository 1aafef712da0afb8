"""Proving a package keeps workspaces apart, with rows, through an ordinary role."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Enum, Integer, Text

from runtime import kit
from runtime.core.registry import DatabaseRegistry
from runtime.db.proof import prove_isolation


def register(registry: DatabaseRegistry, *, rls: bool) -> None:
    """`@t/notes`: two tables, one keyed into the other, columns nothing else fills."""
    metadata = kit.metadata()
    kit.workspace_table("ydtb_notes", metadata, Column("id", Integer, primary_key=True),
                        Column("title", Text, nullable=False),
                        Column("mood", Enum("calm", "busy", name="ydtb_mood"), nullable=False),
                        kit.workspace_key())
    kit.workspace_table("ydtb_notes_tags", metadata, Column("id", Integer, primary_key=True),
                        Column("note_id", Integer, nullable=False),
                        kit.workspace_reference("note_id", "ydtb_notes", ondelete="CASCADE"))
    registry.register_database(package_name="@t/notes", schema=metadata, version="1.0.0",
                               row_level_security=rls)


async def test_a_package_with_row_level_security_lets_nothing_across(
    postgres_server_url: str,
) -> None:
    registry = DatabaseRegistry(send_signals=False)
    register(registry, rls=True)

    assert await prove_isolation(postgres_server_url, registry.ordered(), "@t/notes") == []


async def test_without_it_every_way_across_is_named(postgres_server_url: str) -> None:
    registry = DatabaseRegistry(send_signals=False)
    register(registry, rls=False)

    crossed = await prove_isolation(postgres_server_url, registry.ordered(), "@t/notes")

    # Moving a row across is refused here all the same, by the keys inside the workspace
    # (Y210): a note with tags, a tag whose note stays behind.
    hint = "(register the package with row_level_security=True)"
    assert crossed == [
        f"{table}: a session of one workspace {verb} another workspace's rows {hint}"
        for table in ("ydtb_notes", "ydtb_notes_tags")
        for verb in ("reads", "updates", "deletes", "inserts")]


@pytest.mark.parametrize("require", [True, False])
def test_the_platform_may_require_row_level_security(require: bool) -> None:
    registry = DatabaseRegistry(send_signals=False, require_row_level_security=require)
    register(registry, rls=False)

    codes = [p.code for p in registry.problems()]

    assert codes == (["Y135"] if require else [])
    assert registry.copy().require_row_level_security is require
