"""Fixtures for the pure core: package schemas built in memory, a fresh registry, a signal log.

Nothing here touches a database or the filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

from runtime.core import signals
from runtime.core.model import Migration, Package
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


def _make_schema(*tables: str, fks: Mapping[str, str] | None = None) -> MetaData:
    metadata = MetaData()
    fks = fks or {}
    for name in tables:
        columns = [
            Column(local.partition(".")[2], Integer, ForeignKey(target))
            for local, target in fks.items()
            if local.partition(".")[0] == name
        ]
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
