"""@ydtb/tasks: tasks in a workspace, optionally attached to a note of @ydtb/basic."""

from __future__ import annotations

from pathlib import Path

from runtime import DatabaseRegistry
from runtime.kit import load_migrations

from .schema import metadata

HERE = Path(__file__).parent


def register(registry: DatabaseRegistry) -> None:
    """Register the tasks schema; its foreign key into ydtb_notes needs @ydtb/basic."""
    registry.register_database(
        package_name="@ydtb/tasks",
        version="1.2.0",
        schema=metadata,
        migrations=load_migrations(HERE / "migrations"),
        dependencies=["@ydtb/core>=1.0", "@ydtb/basic>=1.1"],
    )
