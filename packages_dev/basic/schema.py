"""The final shape of @ydtb/basic's tables; `migrations/` builds exactly this."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Identity, Index, Text, false, func

from runtime.kit import metadata as new_metadata
from runtime.kit import workspace_key, workspace_primary_key, workspace_table

metadata = new_metadata()

notes = workspace_table(
    "ydtb_notes",
    metadata,
    Column("id", BigInteger, Identity()),
    Column("title", Text, nullable=False, server_default=""),
    Column("body", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Added by 0002_add_pinned.
    Column("pinned", Boolean, nullable=False, server_default=false()),
    # The notes list: a workspace's notes, newest first.
    Index(None, "workspace_id", "created_at"),
    # The pinned notes shown on top of that list.
    Index(None, "workspace_id", "pinned"),
    # Added by 0004_workspace_key: what tasks reference, inside a workspace. The primary
    # key covers the same columns since 0005, but ydtb_tasks' key was built on this one.
    workspace_key(),
    # (workspace_id, id) since 0005_citus_keys: ready for Citus (check --citus).
    workspace_primary_key(),
)
