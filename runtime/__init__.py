"""runtime: the package database registry and hot-reload dev runtime of ydtb.

Packages register their schema with `registry`; the pipeline (`runtime.db`) applies
it to PostgreSQL and the dev daemon (`python -m runtime.dev`) keeps it live.

The names below are imported on first use (PEP 562): `python -m runtime migrate`
imports this package first, and a no-op run answered from the load cache never needs
SQLAlchemy, which alone takes longer to import than the whole run's budget.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.core import signals
    from runtime.core.model import Migration, Package, Tool
    from runtime.core.registry import DatabaseRegistry
    from runtime.errors import (
        DatabaseError,
        DatabaseUnavailableError,
        DependentsExistError,
        IsolationError,
        LedgerConflictError,
        MigrationFailedError,
        PackageLoadError,
        PackageNotFoundError,
        Problem,
        RegistryError,
        UsageError,
        ValidationError,
    )

    #: The process-wide registry that packages register with.
    registry: DatabaseRegistry

__all__ = [
    "DatabaseError",
    "DatabaseRegistry",
    "DatabaseUnavailableError",
    "DependentsExistError",
    "IsolationError",
    "LedgerConflictError",
    "Migration",
    "MigrationFailedError",
    "Package",
    "PackageLoadError",
    "PackageNotFoundError",
    "Problem",
    "RegistryError",
    "Tool",
    "UsageError",
    "ValidationError",
    "registry",
    "signals",
]

_HOMES = {
    "signals": "runtime.core",
    "Migration": "runtime.core.model",
    "Package": "runtime.core.model",
    "Tool": "runtime.core.model",
    "DatabaseRegistry": "runtime.core.registry",
    **dict.fromkeys(
        ["DatabaseError", "DatabaseUnavailableError", "DependentsExistError",
         "IsolationError", "LedgerConflictError", "MigrationFailedError", "PackageLoadError",
         "PackageNotFoundError", "Problem", "RegistryError", "UsageError", "ValidationError"],
        "runtime.errors"),
}


_LOCK = threading.Lock()


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    with _LOCK:  # two threads asking at once must get the same registry
        if name not in globals():
            if name == "registry":
                from runtime.core.registry import DatabaseRegistry

                globals()[name] = DatabaseRegistry()
            else:
                globals()[name] = getattr(importlib.import_module(_HOMES[name]), name)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
