"""Fixtures of the dev daemon's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import Sent, listened


@pytest.fixture
def sent() -> Iterator[Sent]:
    """The keywords of every schema_changed, schema_drift and reloaded sent, by signal, in
    words (`support.readable`); as sent under `NAME:typed`."""
    with listened("schema_changed", "schema_drift", "reloaded") as events:
        yield events
