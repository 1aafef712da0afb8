"""An editable-installed package in the dev loop: watched, reloaded, written to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import columns, editable_install, run_cli, running, signal_log, write_package

Log = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`ydtb_inst` (package `@acme/inst`, table `ydtb_inst`), installed editable."""
    with editable_install(tmp_path, monkeypatch, "ydtb_inst", name="@acme/inst",
                          tables={"ydtb_inst": []}) as directory:
        yield directory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_package(tmp_path / "packages", "notes", name="notes", tables={"ydtb_notes": []})
    return tmp_path / "packages"


async def reloaded_after(log: Log, mark: int) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            found = [kwargs for name, kwargs in log[mark:] if name == "reloaded"]
            if found:
                return found[0]
            await anyio.sleep(0.01)


async def test_its_saves_are_applied_like_a_packages_dev_one(
    engine: AsyncEngine, root: Path, installed: Path
) -> None:
    with signal_log("reloaded") as log:
        async with running(engine, root, entry_points=True) as daemon:
            assert {"notes", "@acme/inst"} <= set(daemon.registry.packages)
            assert daemon.watched == [root.resolve(), installed.resolve()]
            assert await columns(engine, "ydtb_inst") == ["id", "workspace_id"]

            mark = len(log)
            (installed / "migrations/0002_more.sql").write_text(
                "CREATE INDEX IF NOT EXISTS ydtb_inst_ws ON ydtb_inst (workspace_id);")
            done = await reloaded_after(log, mark)
            assert (done["error"], done["packages"], done["applied"]) == (
                None, ("@acme/inst",), ("@acme/inst 0002_more",))

            mark = len(log)
            schema = installed / "schema.py"
            schema.write_text(schema.read_text().replace(
                'Column("id", Integer, primary_key=True),',
                'Column("id", Integer, primary_key=True), Column("title", Text),', 1))
            done = await reloaded_after(log, mark)
            assert done["error"] is None
            assert await columns(engine, "ydtb_inst") == ["id", "title", "workspace_id"]

            mark = len(log)
            schema.write_text("metadata = \n")
            done = await reloaded_after(log, mark)
            assert "schema.py" in str(done["error"])
            assert "@acme/inst" in daemon.registry  # the last good state is kept


def test_makemigration_writes_into_its_migrations_directory(
    installed: Path, root: Path, tmp_path: Path, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    args = ["--database-url", database_url, "--packages", str(root)]
    assert run_cli("migrate", *args)[0] == 0
    schema = installed / "schema.py"
    schema.write_text(schema.read_text().replace(
        'Column("id", Integer, primary_key=True),',
        'Column("id", Integer, primary_key=True), Column("title", Text),', 1))

    code, out = run_cli("makemigration", "@acme/inst", *args)

    assert code == 0, out
    written = sorted(p.name for p in (installed / "migrations").iterdir())
    assert written == ["0001_create_ydtb_inst.sql", "0002_add_title.sql"], out
    assert run_cli("migrate", *args)[0] == 0
