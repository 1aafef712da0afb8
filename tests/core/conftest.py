"""Fixtures for the pure core: package schemas built in memory, a fresh registry, a signal log.

Nothing here touches a database or the filesystem.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from runtime.core import signals, validation
from runtime.core.model import Migration, Package, Tool
from runtime.core.registry import DatabaseRegistry


def _workspace_table(metadata: MetaData, name: str, *columns: Any) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column(
            "workspace_id",
            String(20),
            ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        *columns,
    )


def _reference(local: str, target: str) -> list[Any]:
    # Between workspace tables, a key includes workspace_id (Y210); to a core table, not.
    column = local.partition(".")[2]
    table = target.partition(".")[0]
    if table.startswith("ydtb_") and table not in ("ydtb_workspaces", "ydtb_tools"):
        return [Column(column, Integer), ForeignKeyConstraint(
            ["workspace_id", column], [f"{table}.workspace_id", target])]
    return [Column(column, Integer, ForeignKey(target, ondelete="CASCADE"))]


def _make_schema(*tables: str, fks: Mapping[str, str] | None = None) -> MetaData:
    metadata = MetaData()
    fks = fks or {}
    for name in tables:
        columns = [item for local, target in fks.items() if local.partition(".")[0] == name
                   for item in _reference(local, target)]
        # What references inside a workspace point at (Y211), from this package or others.
        columns.append(UniqueConstraint("workspace_id", "id"))
        _workspace_table(metadata, name, *columns)
    return metadata


@pytest.fixture
def workspace_table() -> Callable[..., Table]:
    """`workspace_table(md, name, *columns)`: a valid package table (id pk + workspace_id)."""
    return _workspace_table


@pytest.fixture
def make_schema() -> Callable[..., MetaData]:
    """`make_schema(*tables, fks={"table.column": "target.column"})`: a valid MetaData."""
    return _make_schema


@pytest.fixture
def registry() -> DatabaseRegistry:
    """A fresh registry holding only the core package."""
    return DatabaseRegistry()


@pytest.fixture
def register(registry: DatabaseRegistry) -> Callable[..., Package]:
    """Register a package of workspace tables into `registry`, with version 1.0.0."""

    def register(
        name: str,
        *tables: str,
        version: str = "1.0.0",
        dependencies: Iterable[str] = (),
        fks: Mapping[str, str] | None = None,
        migrations: Iterable[Migration] | None = None,
        schema: MetaData | None = None,
    ) -> Package:
        return registry.register_database(
            package_name=name,
            schema=schema if schema is not None else _make_schema(*tables, fks=fks),
            version=version,
            dependencies=dependencies,
            migrations=migrations,
        )

    return register


Event = tuple[str, object, dict[str, Any]]


@pytest.fixture
def received() -> Iterator[list[Event]]:
    """Every registry signal sent during the test, as `(signal name, sender, kwargs)`."""
    events: list[Event] = []

    def recorder(name: str) -> Callable[..., None]:
        def receive(sender: object, **kwargs: Any) -> None:
            events.append((name, sender, kwargs))

        return receive

    with ExitStack() as stack:
        for signal in (signals.package_registered, signals.package_unregistered):
            stack.enter_context(signal.connected_to(recorder(signal.name)))
        yield events


POOL_NAMES = ("a", "b", "c", "d")
_POOL_TABLES = ("ydtb_t1", "ydtb_t2", "ydtb_t3")


def _variant(name: str, seed: int) -> Package:
    rng = random.Random(f"{name}:{seed}")
    metadata = MetaData()
    tables = rng.sample(_POOL_TABLES, rng.randint(0, 2))
    for table in tables:
        columns: list[Any] = []
        # Another table of the package would make SQLAlchemy warn of a cycle between them.
        targets = [t for t in _POOL_TABLES if t == table or t not in tables]
        if rng.random() < 0.6:
            target = rng.choice(targets)
            column = "id" if target == table or rng.random() < 0.7 else "nope"
            columns.append(Column("ref", Integer, ForeignKey(f"{target}.{column}")))
        _workspace_table(metadata, table, *columns)
    others = [n for n in POOL_NAMES if n != name or rng.random() < 0.1] + ["z"]
    dependencies = [d + rng.choice(["", "", ">=2"]) for d in rng.sample(others, rng.randint(0, 3))]
    package, problems = validation.build_package(
        package_name=name, schema=metadata, migrations=None, dependencies=dependencies,
        version=rng.choice(["1.0", "2.0"]),
        tools=[Tool(rng.choice("xy"), "X")] if rng.random() < 0.5 else [])
    assert package is not None, problems
    return package


@pytest.fixture(scope="session")
def package_pool() -> tuple[Package, ...]:
    """Six seeded variants of each of `POOL_NAMES`, for property tests of the set rules.

    Their tables, foreign keys, tools and dependencies (on each other, on a package `z`
    that never registers, some needing version 2) overlap, so a random sequence of
    changes meets every problem of the set: missing, cycles, owned twice, keys.
    """
    return tuple(_variant(name, seed) for name in POOL_NAMES for seed in range(6))
