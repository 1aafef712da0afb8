"""A seeded soak of dev changes (issue #14): schema edits, new migrations, `makemigration`
and restarts on one package, a few at a time between reloads, as a developer saving
within seconds does.

At the end, every dev row the ledger still books is needed (the dev database differs
from a fresh `migrate` of the files on its object), and the dev database differs from
that fresh database only on objects a dev row books.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import create_sql, write_package

from runtime import DatabaseRegistry
from runtime.core import booking
from runtime.core.booking import ObjectKey
from runtime.core.model import Package
from runtime.db import diff, ledger, migrator, objects, scratch
from runtime.db import engine as db_engine
from runtime.db.engine import driver
from runtime.dev import generator
from runtime.dev.daemon import Daemon
from runtime.load import loader

pytestmark = pytest.mark.slow

SEEDS = [3, 2026]
STEPS = 18
TABLES = ("ydtb_notes", "ydtb_notes_a", "ydtb_notes_b")


class Files:
    """The package's files: what its schema declares, and its migrations directory."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root, self.rng = root, rng
        self.columns: dict[str, bool] = {}  # declared on ydtb_notes: name -> indexed
        self.tables: set[str] = set()  # more tables declared
        self.count = 0
        write_package(root, "notes", name="notes", tables={"ydtb_notes": []},
                      migrations={"0001_create.sql": create_sql("ydtb_notes")})

    @property
    def migrations(self) -> Path:
        return self.root / "notes" / "migrations"

    def write(self) -> None:
        notes = [f'Column("{c}", Integer, index={indexed})'
                 for c, indexed in sorted(self.columns.items())]
        tables = {"ydtb_notes": notes, **{t: [] for t in sorted(self.tables)}}
        write_package(self.root, "notes", name="notes", tables=tables, migrations={})

    def _new(self) -> str:
        self.count += 1
        return f"c{self.count}"

    def add_column(self) -> None:
        self.columns[self._new()] = False

    def drop_column(self) -> None:
        if self.columns:
            del self.columns[self.rng.choice(sorted(self.columns))]

    def toggle_index(self) -> None:
        if self.columns:
            column = self.rng.choice(sorted(self.columns))
            self.columns[column] = not self.columns[column]

    def toggle_table(self) -> None:
        # Not one a migration creates: it must stay declared (Y501), or be dropped by one.
        table = self.rng.choice(TABLES[1:])
        if not any(table in path.read_text() for path in self.migrations.iterdir()):
            self.tables ^= {table}

    def hand_migration(self) -> None:
        """A column added by a migration written by hand, and declared."""
        column = self._new()
        self.columns[column] = False
        path = generator.next_migration_path(self.migrations, f"add_{column}")
        path.write_text(f"ALTER TABLE ydtb_notes ADD COLUMN IF NOT EXISTS {column} integer;\n")

    async def makemigration(self, url: str) -> None:
        """What `python -m runtime makemigration notes` writes, from the files."""
        self.write()
        packages = load(self.root)
        differences = await scratch.compare_migrations(url, packages, "notes")
        if differences:
            generator.write_migration(self.migrations, packages[-1], differences)


def load(root: Path) -> list[Package]:
    registry = DatabaseRegistry(send_signals=False)
    assert not loader.load_all([root], registry, entry_points=False).errors
    return registry.ordered()


async def state(engine: AsyncEngine) -> tuple[dict[ObjectKey, str], tuple[str, ...]]:
    """The objects of the soak's tables, and the dev rows booked."""
    async with engine.connect() as conn:
        raw = await driver(conn)
        recorded = await ledger.read_ledger(raw, ["notes"])
        return await objects.read_objects(raw, TABLES), recorded.dev.get("notes", ())


async def drift(engine: AsyncEngine, root: Path) -> set[ObjectKey]:
    """The objects `status` shows as drift on the dev database."""
    packages = load(root)
    async with engine.connect() as conn:
        found = await diff.compare(conn, packages[-1], packages, tables=TABLES)
    return {key for difference in found for key in booking.keys_of(difference)}


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_dev_row_left_after_a_soak_is_needed_and_none_is_missing(
    engine: AsyncEngine, postgres_server_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    files = Files(tmp_path / "packages", rng)
    url = scratch.server_url(engine)
    daemon = Daemon(engine, [files.root], entry_points=False)
    await daemon.start()
    edits = [files.add_column, files.add_column, files.drop_column, files.toggle_index,
             files.toggle_table, files.hand_migration]
    for _ in range(STEPS):
        # Saves within seconds: one to three edits reach the daemon as one reload.
        for _ in range(rng.choice([1, 1, 2, 3])):
            roll = rng.random()
            if roll < 0.25:
                await files.makemigration(url)
            else:
                rng.choice(edits)()
                files.write()
        if rng.random() < 0.1:  # stopped, and started again
            daemon = Daemon(engine, [files.root], entry_points=False)
            await daemon.start()
        else:
            assert await daemon.reload([files.root / "notes"]), f"seed {seed}"

    name = f"booking_soak_{seed}_{rng.randrange(10**6)}"
    fresh = db_engine.create_engine(await db_engine.create_database(postgres_server_url, name))
    try:
        await migrator.migrate(fresh, load(files.root))
        built, _ = await state(fresh)
    finally:
        await fresh.dispose()
        await db_engine.drop_database(postgres_server_url, name)
    dev, rows = await state(engine)
    # Every row booked is needed: the dev database differs from a fresh one on its object.
    assert booking.settled(rows, dev, built) == [], f"seed {seed}"
    # ...and it differs nowhere else, but on what the daemon shows as drift: a column
    # the schema stopped declaring, or one a guarded rename left (its new name synced).
    booked = {key for row in rows if (key := booking.parse_row(row)[1]) is not None}
    shown = await drift(engine, files.root)
    differing = {key for key in {*dev, *built} if dev.get(key) != built.get(key)}
    assert {key for key in differing - shown - booked
            if ObjectKey("table", key.table) not in booked} == set(), f"seed {seed}"
    # A dev database that differs only by drift needs no dev change at all: this holds
    # for rows booked before objects were too (the soak's unreconciled rows).
    if not differing - (shown - booked):
        assert rows == (), f"seed {seed}"
    print(f"seed {seed}: {len(booking.changes_of(rows))} dev changes still needed, "
          f"{len(differing)} objects differ")
