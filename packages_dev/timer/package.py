"""@ydtb/timer: a time tracker, offered to workspaces as the "Timer" tool."""

from __future__ import annotations

from pathlib import Path

from runtime import DatabaseRegistry, Tool
from runtime.kit import load_migrations

from .models import Base

HERE = Path(__file__).parent

TIMER = Tool(
    id="timer",
    name="Timer",
    description="Track the time spent on work, one entry per start and stop.",
    icon="timer",
)


def register(registry: DatabaseRegistry) -> None:
    """Register the timer's table and the tool workspaces can enable."""
    registry.register_database(
        package_name="@ydtb/timer",
        version="1.1.0",
        schema=Base.metadata,
        migrations=load_migrations(HERE / "migrations"),
        dependencies=["@ydtb/core>=1.0"],
        tools=[TIMER],
    )
