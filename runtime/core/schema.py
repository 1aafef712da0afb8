"""The core schema: workspaces, the tools catalog, and the ledger the pipeline keeps.

The core is itself a package, `@ydtb/core`, always registered: packages depend on it
by name (`"@ydtb/core>=1.0"`) and its migrations go through the same ledger. Those are
`CORE_MIGRATIONS`, each creating its tables: a table added later is a new migration, so
a database migrated before keeps its first migration's checksum.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from runtime.core.names import (
    CORE_PACKAGE,
    CORE_TABLES,
    CORE_VERSION,
    LEDGER_TABLE,
    OWNED_TABLES,
    PACKAGES_TABLE,
    TABLES_MIGRATION,
    TOOLS_TABLE,
    WORKSPACE_TOOLS_TABLE,
    WORKSPACES_TABLE,
)

__all__ = [
    "CORE_MIGRATIONS",
    "CORE_PACKAGE",
    "CORE_TABLES",
    "CORE_VERSION",
    "LEDGER_TABLE",
    "PACKAGES_TABLE",
    "WORKSPACES_TABLE",
    "core_metadata",
]

core_metadata = MetaData()

workspaces = Table(
    WORKSPACES_TABLE,
    core_metadata,
    Column("id", String(20), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("slug", String(100), nullable=False, unique=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

tools = Table(
    TOOLS_TABLE,
    core_metadata,
    Column("id", String(20), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("icon", String(200), nullable=False, server_default=""),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("package_name", String(214), nullable=False),
)

workspace_tools = Table(
    WORKSPACE_TOOLS_TABLE,
    core_metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column(
        "workspace_id",
        String(20),
        ForeignKey(f"{WORKSPACES_TABLE}.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tool_id", String(20), ForeignKey("ydtb_tools.id", ondelete="CASCADE"), nullable=False),
    Column("enabled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("workspace_id", "tool_id", name="uq_ydtb_workspace_tools_workspace_tool"),
)

# The ledger: one row per applied migration, never a high-water mark, so a migration
# that arrives later with an earlier id is still applied.
ledger = Table(
    LEDGER_TABLE,
    core_metadata,
    Column("package", String(214), primary_key=True),
    Column("migration", String(200), primary_key=True),
    Column("checksum", String(64), nullable=False),
    Column("package_version", String(64), nullable=False),
    Column("kind", String(16), nullable=False, server_default="migration"),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("duration_ms", Float, nullable=False, server_default=text("0")),
)

packages = Table(
    PACKAGES_TABLE,
    core_metadata,
    Column("package", String(214), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("schema_fingerprint", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The tables each package's schema declared when the ledger last recorded it: whose a
# table was once its package is gone (`status`, `uninstall --purge`). No row: recorded
# before this table existed, its tables are not known (issue #13).
package_tables = Table(
    OWNED_TABLES,
    core_metadata,
    Column("package", String(214), primary_key=True),
    Column("tables", ARRAY(Text), nullable=False),
)

#: The core's migrations, in order: each id and the tables it creates.
CORE_MIGRATIONS: tuple[tuple[str, tuple[Table, ...]], ...] = (
    ("0001_core_tables", (workspaces, tools, workspace_tools, ledger, packages)),
    (TABLES_MIGRATION, (package_tables,)),
)
