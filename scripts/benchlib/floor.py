"""The floor: the same database work done by hand with asyncpg, and nothing else.

Imported by the benchmark for the in-process floors, and run as a script for the
process floors, so it imports only the standard library and asyncpg at the top (never
`runtime`): its start-up cost is the interpreter's and asyncpg's, no more.

    python floor.py apply URL PLAN.json   # the DDL in one transaction + ledger rows
    python floor.py fleet PLAN.json N URL...  # `apply` on each URL, N at once
    python floor.py read URL              # connect and read the ledger
    python floor.py one URL ROW.json SQL  # connect, read the ledger, run SQL + its row
    python floor.py scan DIR              # import sqlalchemy and read every file under DIR
    python floor.py tables DIR            # `scan`, and run every package's schema.py
    python floor.py baseline              # import runtime's libraries; print VmHWM (kB)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["LEDGER_INSERT", "LEDGER_READ", "Plan", "apply", "apply_each", "read_ledger",
           "run_one"]

LEDGER_INSERT = """
INSERT INTO ydtb_schema_migrations
    (package, migration, checksum, package_version, kind, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6)
"""
LEDGER_READ = """
SELECT 'm', package, migration, checksum FROM ydtb_schema_migrations
UNION ALL
SELECT 'p', package, version, schema_fingerprint FROM ydtb_packages
"""

Row = tuple[str, str, str, str, str, float]


@dataclass(frozen=True)
class Plan:
    """Statements in dependency order and one ledger row per migration."""

    statements: tuple[str, ...]
    rows: tuple[Row, ...]

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({"statements": self.statements, "rows": self.rows}))

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = json.loads(path.read_text())
        return cls(tuple(data["statements"]), tuple(tuple(r) for r in data["rows"]))


async def apply(url: str, plan: Plan) -> None:
    """Connect, run every statement and insert every ledger row in one transaction."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for statement in plan.statements:
                await conn.execute(statement)
            await conn.executemany(LEDGER_INSERT, plan.rows)
    finally:
        await conn.close()


async def apply_each(urls: Sequence[str], plan: Plan, concurrency: int) -> None:
    """`apply` on each database, at most `concurrency` at once: a fleet apply's floor."""
    slots = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with slots:
            await apply(url, plan)

    async with asyncio.TaskGroup() as group:
        for url in urls:
            group.create_task(one(url))


async def read_ledger(conn: Any) -> Sequence[Any]:
    """Read the ledger in one round trip, as a no-op run must."""
    result: Sequence[Any] = await conn.fetch(LEDGER_READ)
    return result


async def run_one(conn: Any, statement: str, row: Row) -> None:
    """Run one migration's SQL and record it, in one transaction."""
    async with conn.transaction():
        await conn.execute(statement)
        await conn.execute(LEDGER_INSERT, *row)


async def _read(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await read_ledger(conn)
    finally:
        await conn.close()


async def _one(url: str, row: Row, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await read_ledger(conn)  # what is applied: a run must know before it runs
        await run_one(conn, statement, row)
    finally:
        await conn.close()


def _scan(directory: Path) -> None:
    import sqlalchemy  # noqa: F401  (the library every schema.py needs, loaded once)

    for path in sorted(directory.rglob("*")):
        if path.is_file():
            path.read_bytes()


def _tables(directory: Path) -> None:
    # What SQLAlchemy alone spends building the tables the packages declare (their
    # `schema.py` imports `runtime.kit`, a small module over SQLAlchemy): the part of a
    # full load no loader can do without. Imported as Python imports, from its bytecode
    # cache once written, and with the collector off, as `runtime` loads.
    import gc
    import importlib.util

    _scan(directory)
    gc.disable()
    for path in sorted(directory.glob("*/schema.py")):
        spec = importlib.util.spec_from_file_location(f"schema_{path.parent.name}", path)
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _baseline() -> None:
    import anyio  # noqa: F401
    import blinker  # noqa: F401
    import packaging.version  # noqa: F401
    import sqlalchemy.dialects.postgresql
    import sqlalchemy.ext.asyncio  # noqa: F401
    import watchfiles  # noqa: F401

    status = Path("/proc/self/status").read_text()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "apply":
        asyncio.run(apply(args[0], Plan.load(Path(args[1]))))
    elif command == "fleet":
        plan, concurrency, *urls = args
        asyncio.run(apply_each(urls, Plan.load(Path(plan)), int(concurrency)))
    elif command == "read":
        asyncio.run(_read(args[0]))
    elif command == "one":
        asyncio.run(_one(args[0], tuple(json.loads(args[1])), args[2]))  # type: ignore[arg-type]
    elif command == "scan":
        _scan(Path(args[0]))
    elif command == "tables":
        _tables(Path(args[0]))
    elif command == "baseline":
        _baseline()
    else:
        raise SystemExit(f"unknown command {command!r}; see the module docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
