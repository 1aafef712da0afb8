"""@ydtb/timer's schema as declarative ORM models; `migrations/` builds exactly this."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.kit import WorkspaceScoped, workspace_primary_key
from runtime.kit import metadata as new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class TimerEntry(WorkspaceScoped, Base):
    """One timed stretch of work; `stopped_at` is None while the timer runs."""

    __tablename__ = "ydtb_timer_entries"
    __table_args__ = (
        CheckConstraint("stopped_at IS NULL OR stopped_at >= started_at",
                        name="stopped_after_started"),
        # A workspace's entries, latest first.
        Index(None, "workspace_id", "started_at"),
        # (workspace_id, id) since 0002_citus_keys: ready for Citus (check --citus).
        workspace_primary_key(),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity())
    label: Mapped[str] = mapped_column(Text, server_default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
