"""A seeded soak: a week of edits, valid and broken, against one dev daemon.

After every edit the daemon is alive and its registry valid; at the end, once the files
are repaired, the dev database equals a fresh `migrate` of the final files: the same
tables, columns, indexes and constraints, and the same migrations in the ledger.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import create_sql, write_package

from runtime import DatabaseRegistry
from runtime.db import checks, migrator
from runtime.db import engine as db_engine
from runtime.db.engine import driver
from runtime.dev.daemon import Daemon
from runtime.load import loader

pytestmark = pytest.mark.slow

SEEDS = [7, 2026]
EDITS = 100


@dataclass
class Package:
    """What the soak keeps of one package, to write its files again."""

    name: str
    deps: list[str]
    version: tuple[int, int, int] = (1, 0, 0)
    columns: list[str] = field(default_factory=list)  # declared, each added by a migration
    migrations: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return f"ydtb_{self.name}"

    def write(self, root: Path) -> Path:
        version = ".".join(map(str, self.version))
        columns = [f'Column("{c}", Integer)' for c in self.columns]
        return write_package(root, self.name, name=self.name, version=version, deps=self.deps,
                             tables={self.table: columns}, migrations=self.migrations)


class Soak:
    """The package files, and the edits a developer makes to them."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root, self.rng = root, rng
        self.packages = {name: Package(name, deps, migrations={
            f"0001_create_{name}.sql": create_sql(f"ydtb_{name}")})
            for name, deps in [("notes", []), ("tags", ["notes"]), ("extra", [])]}
        for package in self.packages.values():
            package.write(root)

    def edits(self) -> list[Callable[[], list[Path]]]:
        return [self.add_column, self.broken_migration, self.broken_schema, self.cycle,
                self.copy, self.half_written, self.bump, self.rerun_edited]

    def _pick(self) -> Package:
        return self.packages[self.rng.choice(sorted(self.packages))]

    def _next_id(self, package: Package, name: str) -> str:
        return f"{len(package.migrations) + 1:04d}_{name}"

    def add_column(self) -> list[Path]:
        package = self._pick()
        column = f"c{len(package.columns) + 1}"
        package.columns.append(column)
        package.migrations[f"{self._next_id(package, column)}.sql"] = (
            f"ALTER TABLE {package.table} ADD COLUMN IF NOT EXISTS {column} integer;\n")
        return [package.write(self.root)]

    def broken_migration(self) -> list[Path]:
        package = self._pick()
        path = self.root / package.name / "migrations" / f"{self._next_id(package, 'bad')}.sql"
        path.write_text("-- a typo\nALTER TABLE nope ADD COLUMN x int;\n")
        return [path.parent.parent]

    def broken_schema(self) -> list[Path]:
        package = self._pick()
        (self.root / package.name / "schema.py").write_text("metadata = (\n")
        return [self.root / package.name]

    def cycle(self) -> list[Path]:
        notes = self.packages["notes"]
        write_package(self.root, "notes", name="notes", version=".".join(map(str, notes.version)),
                      deps=["tags"], tables={notes.table: [f'Column("{c}", Integer)'
                                                           for c in notes.columns]},
                      migrations=notes.migrations)
        return [self.root / "notes"]

    def copy(self) -> list[Path]:
        package = self._pick()
        shutil.copytree(self.root / package.name, self.root / f"{package.name}_copy",
                        dirs_exist_ok=True)
        return [self.root / f"{package.name}_copy"]

    def half_written(self) -> list[Path]:
        package = self._pick()
        path = self.root / package.name / "package.py"
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
        return [path.parent]

    def bump(self) -> list[Path]:
        package = self._pick()
        major, minor, patch = package.version
        package.version = (major, minor, patch + 1)
        return [package.write(self.root)]

    def rerun_edited(self) -> list[Path]:
        # Iterating on a migration: an idempotent addition to an applied one.
        package = self._pick()
        last = sorted(package.migrations)[-1]
        package.migrations[last] += f"SELECT {self.rng.randrange(1000)};\n"
        return [package.write(self.root)]

    def repair(self) -> list[Path]:
        """Put every file back as the soak's own state says, broken ones removed."""
        for extra in self.root.iterdir():
            if extra.name not in self.packages:
                shutil.rmtree(extra)
        for package in self.packages.values():
            for path in (self.root / package.name / "migrations").iterdir():
                if path.name not in package.migrations:
                    path.unlink()
            package.write(self.root)
        return sorted(self.root.iterdir())


async def _state(engine: AsyncEngine) -> tuple[frozenset[str], frozenset[tuple[str, ...]]]:
    async with engine.connect() as conn:
        raw = await driver(conn)
        ledger = await raw.fetch("SELECT package, migration, checksum FROM "
                                 "ydtb_schema_migrations WHERE kind <> 'dev'")
        return await checks.snapshot(raw), frozenset(tuple(r) for r in ledger)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_week_of_edits_leaves_the_daemon_alive_and_the_database_right(
    engine: AsyncEngine, postgres_server_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    soak = Soak(tmp_path / "packages", rng)
    daemon = Daemon(engine, [soak.root], entry_points=False)
    await daemon.start()
    broken = False
    outcomes: list[bool] = []
    for step in range(EDITS):
        # A broken edit is usually repaired next; sometimes another edit comes first.
        if broken and rng.random() < 0.7:
            paths, broken = soak.repair(), False
        else:
            edit = rng.choice(soak.edits())
            paths = edit()
            broken = edit.__name__ in {"broken_migration", "broken_schema", "cycle", "copy",
                                       "half_written"}
        outcomes.append(await daemon.reload(paths))
        assert daemon.registry.ordered(), f"seed {seed}, step {step}"
    assert await daemon.reload(soak.repair())
    # The soak tried both sides: edits applied and edits refused, with the daemon alive.
    assert outcomes.count(True) >= EDITS // 4 and outcomes.count(False) >= EDITS // 10, outcomes
    print(f"seed {seed}: {outcomes.count(True)} applied, {outcomes.count(False)} refused")

    registry = DatabaseRegistry(send_signals=False)
    assert not loader.load_all([soak.root], registry, entry_points=False).errors
    name = f"soak_{seed}_{rng.randrange(10**6)}"
    fresh = db_engine.create_engine(await db_engine.create_database(postgres_server_url, name))
    try:
        await migrator.migrate(fresh, registry.ordered())
        assert await _state(engine) == await _state(fresh), f"seed {seed}"
    finally:
        await fresh.dispose()
        await db_engine.drop_database(postgres_server_url, name)
