"""Write package directories for tests, the way an author lays them out on disk."""

from __future__ import annotations

import gc
import io
import sys
import textwrap
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.cli import main
from runtime.console import Console, drift_hint, held
from runtime.core import signals
from runtime.core.events import Change, ChangeKind
from runtime.db.engine import driver
from runtime.db.urls import plain_url
from runtime.dev.daemon import Daemon

PACKAGE_PY = '''\
from pathlib import Path

from runtime.kit import load_migrations

from .schema import metadata


def register(registry):
    registry.register_database(
        package_name={name!r},
        schema=metadata,
        version={version!r},
        dependencies={deps!r},
        migrations=load_migrations(Path(__file__).parent / "migrations"),
    )
'''

SCHEMA_PY = '''\
from sqlalchemy import (
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
{tables}
'''

TABLE = '''
Table(
    {table!r}, metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
           nullable=False),
    UniqueConstraint("workspace_id", "id"),
    {columns}
)
'''


#: A `note_id` referencing `ydtb_notes` inside the workspace, as `write_package` columns.
NOTE_REFERENCE = ['Column("note_id", Integer)',
                  'ForeignKeyConstraint(["workspace_id", "note_id"], '
                  '["ydtb_notes.workspace_id", "ydtb_notes.id"])']
#: The same in SQL, for `create_sql`.
NOTE_REFERENCE_SQL = ("note_id int", "FOREIGN KEY (workspace_id, note_id) "
                      "REFERENCES ydtb_notes (workspace_id, id)")


def create_sql(table: str, *columns: str) -> str:
    """SQL creating a workspace table like the ones `write_package` declares."""
    body = ",\n    ".join(["id integer PRIMARY KEY",
                           "workspace_id varchar(20) NOT NULL REFERENCES ydtb_workspaces(id) "
                           "ON DELETE CASCADE",
                           "UNIQUE (workspace_id, id)",
                           *columns])
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {body}\n);\n"


def write_package(
    root: Path,
    directory: str,
    *,
    name: str,
    version: str = "1.0.0",
    deps: Sequence[str] = (),
    tables: Mapping[str, Sequence[str]] | None = None,
    migrations: Mapping[str, str] | None = None,
) -> Path:
    """Write `root/directory` as a package: package.py, schema.py, migrations/.

    Args:
        tables: table name -> extra Column(...) source lines.
        migrations: file name (`0001_x.sql`) -> content.
    """
    tables = {f"ydtb_{directory}": []} if tables is None else tables
    if migrations is None:
        migrations = {f"0001_create_{t}.sql": create_sql(t) for t in tables}
    path = root / directory
    (path / "migrations").mkdir(parents=True, exist_ok=True)
    rendered = "".join(TABLE.format(table=t, columns=", ".join(c)) for t, c in tables.items())
    (path / "schema.py").write_text(SCHEMA_PY.format(tables=rendered))
    for filename, content in migrations.items():
        (path / "migrations" / filename).write_text(textwrap.dedent(content))
    (path / "package.py").write_text(PACKAGE_PY.format(name=name, version=version,
                                                       deps=list(deps)))
    return path


def install_editable(
    tmp_path: Path, module: str, *, name: str, entry_point: str | None = None, **kwargs: Any
) -> tuple[Path, Path]:
    """Lay out what `pip install -e` leaves: the package's source in `tmp_path/src`, and a
    `dist-info` naming its entry point in `tmp_path/site`. Put both on `sys.path` (or
    PYTHONPATH) to install it; returns (site, the package's directory)."""
    directory = write_package(tmp_path / "src", module, name=name, **kwargs)
    (directory / "__init__.py").write_text("")
    info = tmp_path / "site" / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[runtime.packages]\n{module} = {entry_point or module + '.package:register'}\n")
    return tmp_path / "site", directory


@contextmanager
def editable_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, *, name: str, **kwargs: Any
) -> Iterator[Path]:
    """`install_editable`, on `sys.path` while the block runs, its modules forgotten after;
    yields the package's directory."""
    site, directory = install_editable(tmp_path, module, name=name, **kwargs)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.syspath_prepend(str(site))
    try:
        yield directory
    finally:
        for loaded in [n for n in sys.modules if n == module or n.startswith(f"{module}.")]:
            del sys.modules[loaded]


async def columns(engine: AsyncEngine, table: str) -> list[str]:
    """The column names of `table` in the database, sorted."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT column_name FROM information_schema.columns "
                                       "WHERE table_name = :t ORDER BY 1"), {"t": table})
        return [r[0] for r in rows]


async def execute(url: str, script: str) -> None:
    """Run `script` on the database at `url`, as a person with psql would."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(script)
    finally:
        await conn.close()


def run_cli(*argv: str) -> tuple[int, str]:
    """Run `python -m runtime ARGV` in this process; return its exit code and output."""
    out = io.StringIO()
    try:
        code = main(list(argv), console=Console(out, color=False))
    finally:
        # A command freezes what it loaded, as the process ends after it
        # (`runtime.process.loading`): this one goes on to the next test.
        gc.unfreeze()
    return code, out.getvalue()


#: What `listened` collects: each signal's payloads in words, by name, and as sent under
#: `NAME:typed`.
Sent = dict[str, list[dict[str, Any]]]


@contextmanager
def listened(*names: str) -> Iterator[Sent]:
    """Collect the keywords of every signal of `names` sent meanwhile (`readable`)."""
    events: Sent = defaultdict(list)
    with ExitStack() as stack:
        for name in names:
            def receive(_sender: object, _name: str = name, **kwargs: Any) -> None:
                events[f"{_name}:typed"].append(kwargs)
                events[_name].append(readable(_name, kwargs))
            stack.enter_context(getattr(signals, name).connected_to(receive))
        yield events


def declare_notes(root: Path, tables: Mapping[str, Sequence[str]],
                  sql: Sequence[str] = ()) -> None:
    """(Re)write package `notes` declaring `tables`; `sql` are its first migrations."""
    migrations = {f"{i:04d}_m{i}.sql": s for i, s in enumerate(sql, 1)}
    write_package(root, "notes", name="notes", tables=tables, migrations=migrations)


async def started_daemon(engine: AsyncEngine, root: Path, **kwargs: Any) -> Daemon:
    """A dev daemon on `engine` watching `root`, started (not watching files yet)."""
    daemon = Daemon(engine, [root], entry_points=False, **kwargs)
    await daemon.start()
    return daemon


def readable(signal: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A signal's typed payload in the words the console shows, for short assertions.

    `reloaded`'s applied become `"package id"`; `schema_changed`'s changes their words
    (`applied 0002_x`, each difference a dev change resolved, `dev change ... is now in
    the migrations`); `schema_drift`'s differences the lines and the hint people read.
    """
    out = dict(payload)
    if signal == "reloaded":
        out["applied"] = tuple(f"{c.package} {c.migration}" for c in payload["applied"])
    elif signal == "schema_changed":
        out["changes"] = tuple(word for change in payload["changes"] for word in _words(change))
    elif signal == "schema_drift":
        differences = out.pop("differences")
        out["changes"] = tuple(held(d) for d in differences)
        out["hint"] = drift_hint(payload["package"], differences,
                                 dev_built=out.pop("dev_built", ()))
    return out


def _words(change: Change) -> list[str]:
    if change.kind is ChangeKind.DEV_SYNC:
        return [d.words for d in change.differences]
    if change.kind is ChangeKind.RECONCILED:
        return [f"dev change {change.migration} is now in the migrations"]
    return [f"{'re-ran edited' if change.rerun else 'applied'} {change.migration}"]


async def listening(engine: AsyncEngine) -> None:
    """Wait until a connection to `engine`'s database has run LISTEN (a relay's)."""
    with anyio.fail_after(10):
        while True:
            async with engine.connect() as conn:
                if await (await driver(conn)).fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND query LIKE 'LISTEN%'"):
                    return
            await anyio.sleep(0.05)


@contextmanager
def signal_log(*names: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Record the signals `names` sent in the block, as (name, keywords `readable`)."""
    entries: list[tuple[str, dict[str, Any]]] = []
    with ExitStack() as stack:
        for name in names:
            def receiver(_sender: object, _name: str = name, **kwargs: Any) -> None:
                entries.append((_name, readable(_name, kwargs)))
            stack.enter_context(getattr(signals, name).connected_to(receiver))
        yield entries


def give_tool(directory: Path, tool: str) -> Path:
    """Make the package in `directory` (from `write_package`) provide the tool `tool`."""
    package_py = directory / "package.py"
    package_py.write_text(package_py.read_text().replace(
        "migrations=load_migrations(", f"tools=[__import__('runtime').Tool({tool!r}, "
        f"{tool.title()!r})],\n        migrations=load_migrations("))
    return package_py


@asynccontextmanager
async def running(
    engine: AsyncEngine, root: Path, *, entry_points: bool = False
) -> AsyncIterator[Daemon]:
    """Run a dev daemon on the packages of `root` while the block runs, watching."""
    daemon = Daemon(engine, [root], entry_points=entry_points)  # watching as users do
    async with anyio.create_task_group() as group:
        with anyio.fail_after(20):
            await group.start(daemon.run)
            await daemon.watching.wait()
        try:
            yield daemon
        finally:
            daemon.stop()
            group.cancel_scope.cancel()


@asynccontextmanager
async def dev_process(root: Path, url: str) -> AsyncIterator[tuple[Any, bytes]]:
    """Run `python -m runtime dev` on `root`; yield it and what it printed until it watches."""
    command = [sys.executable, "-m", "runtime", "dev", "--packages", str(root),
               "--no-entry-points", "--database-url", url]
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None
        seen = b""
        with anyio.fail_after(30):
            async for chunk in process.stdout:
                seen += chunk
                if b"Ctrl-C to stop" in seen:
                    break
        yield process, seen
