"""runtime: the package database registry and hot-reload dev runtime of ydtb.

Packages register their schema with `registry`; the pipeline (`runtime.db`) applies
it to PostgreSQL and the dev daemon (`python -m runtime.dev`) keeps it live.
"""

from __future__ import annotations

from runtime.core import signals
from runtime.core.model import Migration, Package, Tool
from runtime.core.registry import DatabaseRegistry
from runtime.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    DependentsExistError,
    LedgerConflictError,
    MigrationFailedError,
    PackageLoadError,
    PackageNotFoundError,
    Problem,
    RegistryError,
    ValidationError,
)

__all__ = [
    "DatabaseError",
    "DatabaseRegistry",
    "DatabaseUnavailableError",
    "DependentsExistError",
    "LedgerConflictError",
    "Migration",
    "MigrationFailedError",
    "Package",
    "PackageLoadError",
    "PackageNotFoundError",
    "Problem",
    "RegistryError",
    "Tool",
    "ValidationError",
    "registry",
    "signals",
]

#: The process-wide registry that packages register with.
registry = DatabaseRegistry()
