"""Fixtures of the database tests."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime import DatabaseRegistry
from runtime.db import migrator


@pytest.fixture
async def core(engine: AsyncEngine) -> AsyncEngine:
    """This test's database with the core's tables (`ydtb_workspaces`...) and nothing else."""
    await migrator.migrate(engine, DatabaseRegistry(send_signals=False).ordered())
    return engine
