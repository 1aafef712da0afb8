"""Check a workload is what it claims: valid, and its schema.py is what its migrations build.

Two fresh databases: one gets the migrations (the floor's plan), the other the DDL that
`runtime.core.ddl` compiles from each package's declared tables. Their schemas, as
`runtime.db.checks.snapshot` describes them, must be the same.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from benchlib import database, floor
from benchlib.workload import Workload
from runtime.core import ddl
from runtime.core.registry import DatabaseRegistry
from runtime.db.checks import snapshot
from runtime.load import loader

__all__ = ["verify"]


def _declared_plan(workload: Workload) -> floor.Plan:
    registry = DatabaseRegistry(send_signals=False)
    result = loader.load_all([workload.root], registry, entry_points=False)
    if result.errors:
        raise RuntimeError(f"the workload does not load: {result.errors[0]}")
    packages = registry.ordered()  # raises ValidationError listing every problem
    statements = [s for p in packages for s in ddl.create_statements(p.tables)]
    return floor.Plan(tuple(statements), ())


async def _schema_of(server_url: str, plan: floor.Plan) -> frozenset[str]:
    async with database.fresh_database(server_url) as url:
        await floor.apply(url, plan)
        conn: Any = await asyncpg.connect(url)
        try:
            return await snapshot(conn)
        finally:
            await conn.close()


async def verify(server_url: str, workload: Workload, migrations: floor.Plan) -> None:
    """Raise RuntimeError naming the differences if schema.py and migrations disagree."""
    built = await _schema_of(server_url, migrations)
    declared = await _schema_of(server_url, _declared_plan(workload))
    if built != declared:
        only_built = sorted(built - declared)[:5]
        only_declared = sorted(declared - built)[:5]
        raise RuntimeError(f"N={workload.size}: migrations and schema.py differ; only built "
                           f"by migrations: {only_built}; only declared: {only_declared}")
