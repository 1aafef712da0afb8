"""An application migrates as it starts and hears the daemon's changes (runtime.app)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient
from support import create_sql, listening, signal_log, write_package

from runtime.app import serve
from runtime.db import notify
from runtime.errors import MigrationFailedError, ValidationError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    return root


async def publish(engine: AsyncEngine, package: str, migrations: list[str]) -> None:
    payload = notify.encode(notify.signals.schema_changed,
                            {"package": package, "migrations": migrations, "changes": ()})
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": notify.CHANNEL, "p": payload})


async def test_serve_migrates_then_relays_the_daemons_changes(
    packages: Path, database_url: str, engine: AsyncEngine
) -> None:
    with signal_log("schema_changed") as seen:
        async with serve(database_url=database_url, packages=[packages],
                         entry_points=False) as runtime:
            assert [p.name for p in runtime.packages] == ["@ydtb/core", "notes"]
            assert runtime.report is not None
            assert [a.migration for a in runtime.report.applied][-1] == "0001_create_ydtb_notes"
            await listening(engine)
            await publish(engine, "notes", ["0002_x"])
            with anyio.fail_after(10):
                while not seen:
                    await anyio.sleep(0.02)
        disposed = runtime.engine.pool.checkedout()

    assert seen[0][0] == "schema_changed"
    assert seen[0][1]["package"] == "notes"
    assert disposed == 0

    async with serve(database_url=database_url, packages=[packages], entry_points=False,
                     listen=False) as again:
        assert again.report is not None and not again.report.applied  # nothing to do


async def test_a_broken_package_stops_the_start(packages: Path, database_url: str) -> None:
    (packages / "notes/migrations/0002_bad.sql").write_text("SELECT nope;")

    with pytest.raises(MigrationFailedError, match="notes: migration 0002_bad failed"):
        async with serve(database_url=database_url, packages=[packages], entry_points=False):
            raise AssertionError("started")

    write_package(packages, "tags", name="tags", deps=["nowhere"], tables={"ydtb_tags": []},
                  migrations={"0001_tags.sql": create_sql("ydtb_tags")})
    with pytest.raises(ValidationError, match="nowhere"):
        async with serve(database_url=database_url, packages=[packages], entry_points=False,
                         migrate=False):
            raise AssertionError("started")


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- example: app .*?-->\n```python\n(.*?)```", readme, re.S)
    assert match, "the README's application example is gone"
    return match.group(1)


def test_the_readme_example_serves_after_migrating(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(ROOT)  # the example names packages_dev
    module: dict[str, Any] = {"__name__": "readme_app"}
    exec(compile(readme_example(), "README.md", "exec"), module)
    try:
        with TestClient(module["app"]) as client:
            answer = client.get("/health")
    finally:
        from runtime import signals

        signals.schema_changed.disconnect(module["schema_changed"])

    assert answer.status_code == 200
    body = json.loads(answer.text)
    assert body["packages"][0] == "@ydtb/core" and "@ydtb/basic" in body["packages"]
    assert body["applied_at_start"] > 0
    assert sys.modules.get("readme_app") is None
