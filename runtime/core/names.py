"""The names the database and the ledger are built on, as plain strings.

Apart from `runtime.core.schema` because the no-op path (`runtime.db.quick`) reads the
ledger by these names without importing SQLAlchemy.
"""

from __future__ import annotations

__all__ = [
    "CORE_PACKAGE",
    "CORE_TABLES",
    "CORE_VERSION",
    "DEV_KIND",
    "DEV_PREFIX",
    "LEDGER_TABLE",
    "OWNED_TABLES",
    "PACKAGES_TABLE",
    "TABLES_MIGRATION",
    "TOOLS_TABLE",
    "UNINSTALLED",
    "UNREGISTERED",
    "WORKSPACES_TABLE",
    "WORKSPACE_TOOLS_TABLE",
]

CORE_PACKAGE = "@ydtb/core"
CORE_VERSION = "1.0.0"
WORKSPACES_TABLE = "ydtb_workspaces"
LEDGER_TABLE = "ydtb_schema_migrations"
PACKAGES_TABLE = "ydtb_packages"
#: The tables each package's schema declared when it was last recorded.
OWNED_TABLES = "ydtb_package_tables"
TOOLS_TABLE = "ydtb_tools"
WORKSPACE_TOOLS_TABLE = "ydtb_workspace_tools"
#: Every table of the core (`runtime.core.schema` builds them; a test holds the two equal).
CORE_TABLES = frozenset({WORKSPACES_TABLE, TOOLS_TABLE, WORKSPACE_TOOLS_TABLE, LEDGER_TABLE,
                         PACKAGES_TABLE, OWNED_TABLES})
#: The core's migration creating `OWNED_TABLES`.
TABLES_MIGRATION = "0002_package_tables"
#: The id of the migration a package with none of its own gets from its schema.
INITIAL_SCHEMA = "0001_initial_schema"

#: The fingerprint `ydtb_packages` records for a package once it is unregistered and its
#: tools deactivated: a later full run sees it and does not deactivate them again, and a
#: package registered again differs from it, so its run re-records it and its tools.
UNREGISTERED = "unregistered"

#: The fingerprint of a package `uninstall` took out keeping its data: as `UNREGISTERED`
#: (its tools deactivated, a registration again differs from it), and said apart by
#: `status`, as someone chose it.
UNINSTALLED = "uninstalled"

#: The ledger `kind` of a schema change the dev daemon applied from a declared schema.
DEV_KIND = "dev"
#: How the ids of those changes start: `dev:<schema fingerprint>`, then the object booked
#: (`runtime.core.booking`).
DEV_PREFIX = "dev:"
