"""@ydtb/basic: notes in a workspace, the smallest complete package."""

from __future__ import annotations

from pathlib import Path

from runtime import DatabaseRegistry
from runtime.kit import load_migrations

from .schema import metadata

HERE = Path(__file__).parent


def register(registry: DatabaseRegistry) -> None:
    """Register the notes schema and its migrations."""
    registry.register_database(
        package_name="@ydtb/basic",
        version="1.2.0",
        schema=metadata,
        migrations=load_migrations(HERE / "migrations"),
        dependencies=["@ydtb/core>=1.0"],
    )
