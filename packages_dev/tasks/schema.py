"""The final shape of @ydtb/tasks's tables; `migrations/` builds exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Text,
    false,
    func,
)

from runtime.kit import metadata as new_metadata
from runtime.kit import workspace_primary_key, workspace_reference, workspace_table

metadata = new_metadata()

tasks = workspace_table(
    "ydtb_tasks",
    metadata,
    Column("id", BigInteger, Identity()),
    # The key includes workspace_id (0003_scope_note_reference), so a task points at its
    # own workspace's notes only. Deleting a note tasks point at is refused until the
    # application detaches them (0004_citus_keys): Citus refuses ON DELETE SET NULL on a
    # key holding workspace_id (check --citus, Y705).
    Column("note_id", BigInteger, nullable=True, index=True),
    workspace_reference("note_id", "ydtb_notes"),
    Column("title", Text, nullable=False),
    Column("done", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Added by 0002_add_due_at.
    Column("due_at", DateTime(timezone=True), nullable=True),
    # The to-do list: a workspace's open tasks, soonest due first.
    Index(None, "workspace_id", "done", "due_at"),
    # (workspace_id, id) since 0004_citus_keys: ready for Citus (check --citus).
    workspace_primary_key(),
)
