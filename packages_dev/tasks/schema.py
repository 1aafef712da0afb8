"""The final shape of @ydtb/tasks's tables; `migrations/` builds exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Text,
    false,
    func,
)

from runtime.kit import metadata as new_metadata
from runtime.kit import workspace_table

metadata = new_metadata()

tasks = workspace_table(
    "ydtb_tasks",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # A task outlives its note: deleting the note only detaches it.
    Column(
        "note_id",
        BigInteger,
        ForeignKey("ydtb_notes.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    Column("title", Text, nullable=False),
    Column("done", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Added by 0002_add_due_at.
    Column("due_at", DateTime(timezone=True), nullable=True),
    # The to-do list: a workspace's open tasks, soonest due first.
    Index(None, "workspace_id", "done", "due_at"),
)
