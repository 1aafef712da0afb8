"""A fleet apply measured: the registry applied to many databases of the one server.

`python -m runtime migrate --fleet FILE --concurrency C` on D fresh databases, against
its floor: `python floor.py fleet`, asyncpg applying the same DDL and ledger rows to D
other fresh databases, C at once. Both are processes, so both pay a start-up; the
runtime's load (once, whatever D) is its part of the difference.
"""

from __future__ import annotations

from pathlib import Path

from benchlib import database
from benchlib.pipeline import FLOOR_SCRIPT, run_process
from benchlib.results import Collector
from benchlib.workload import Workload

__all__ = ["CONCURRENCY", "DATABASES", "fleet"]

DATABASES = 20
CONCURRENCY = 4


async def _fresh(server_url: str, count: int) -> list[str]:
    urls = []
    for _ in range(count):
        async with database.fresh_database(server_url) as url:  # dropped by `drop_left`
            urls.append(url)
    return urls


async def fleet(
    server_url: str, workload: Workload, plan_file: Path, workdir: Path, collect: Collector,
    *, floor_first: bool = True, databases: int = DATABASES, concurrency: int = CONCURRENCY,
) -> None:
    """One repeat: the runtime and its floor, each on `databases` fresh databases."""
    async def runtime() -> None:
        urls = await _fresh(server_url, databases)
        fleet_file = workdir / "fleet.txt"
        fleet_file.write_text("".join(f"cell{i} {url}\n" for i, url in enumerate(urls, 1)))
        command = ["-m", "runtime", "migrate", "--packages", str(workload.root),
                   "--no-entry-points", "--no-cache", "--fleet", str(fleet_file),
                   "--concurrency", str(concurrency)]
        collect.add("fleet", workload.size, value=run_process(
            command, expect=f"{databases} of {databases} databases migrated"))

    async def floor() -> None:
        urls = await _fresh(server_url, databases)
        collect.add("fleet", workload.size, floor=run_process(
            [str(FLOOR_SCRIPT), "fleet", str(plan_file), str(concurrency), *urls]))

    for step in (floor, runtime) if floor_first else (runtime, floor):
        await step()
