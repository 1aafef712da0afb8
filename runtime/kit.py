"""Helpers for package authors: workspace-scoped tables and migrations read from files.

A package typically looks like this::

    # schema.py
    metadata = kit.metadata()
    notes = kit.workspace_table("ydtb_notes", metadata, Column("id", BigInteger, primary_key=True))

    # package.py
    def register(registry):
        registry.register_database(
            package_name="@ydtb/notes", version="1.0.0", schema=metadata,
            migrations=kit.load_migrations(HERE / "migrations"),
        )
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from runtime.core.schema import WORKSPACES_TABLE
from runtime.migration_files import load_migrations

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapped, declared_attr

__all__ = [
    "NAMING_CONVENTION",
    "WorkspaceScoped",
    "load_migrations",
    "metadata",
    "workspace_column",
    "workspace_key",
    "workspace_primary_key",
    "workspace_reference",
    "workspace_table",
]

#: Constraint and index names derived from their table and columns, so the same schema
#: always gets the same names: migrations can refer to them and schema diffs stay quiet.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_WORKSPACE_ID_LENGTH = 20  # the length of ydtb_workspaces.id


def metadata() -> MetaData:
    """Return a new `MetaData` that names constraints and indexes by `NAMING_CONVENTION`.

    `Column("title", Text, index=True)` on `ydtb_notes` gets the index
    `ix_ydtb_notes_title`, its primary key `pk_ydtb_notes`, and a foreign key from
    `workspace_id` the name `fk_ydtb_notes_workspace_id_ydtb_workspaces`.
    """
    return MetaData(naming_convention=NAMING_CONVENTION)


def workspace_column() -> Column[str]:
    """Return a new `workspace_id` column: non-null, indexed, deleted with its workspace."""
    return Column(
        "workspace_id",
        String(_WORKSPACE_ID_LENGTH),
        ForeignKey(f"{WORKSPACES_TABLE}.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def workspace_table(
    name: str, metadata: MetaData, *columns_and_constraints: Any, **table_kwargs: Any
) -> Table:
    """Define a table whose rows belong to a workspace.

    The `workspace_id` column comes first, then the author's columns and constraints;
    the author still declares the primary key.

    Args:
        name: the table name, prefixed `ydtb_`.
        metadata: the package's `MetaData` (see `metadata()`).
        *columns_and_constraints: as for `sqlalchemy.Table`.
        **table_kwargs: as for `sqlalchemy.Table`.

    Returns:
        The table, added to `metadata`.
    """
    return Table(name, metadata, workspace_column(), *columns_and_constraints, **table_kwargs)


def workspace_key(*columns: str) -> UniqueConstraint:
    """Return the unique key `(workspace_id, id)` that workspace references point at.

    Put it in a table other tables reference (`workspace_reference`); `columns` are the
    table's own key, `id` by default.
    """
    return UniqueConstraint("workspace_id", *(columns or ("id",)))


def workspace_primary_key(*columns: str) -> PrimaryKeyConstraint:
    """Return the primary key `(workspace_id, id)`: the one Citus can distribute.

    A table distributed by `workspace_id` has a primary key that includes it (rule Y701,
    `check --citus`); `columns` are the table's own key, `id` by default. Declare the
    columns without `primary_key=True`. Other tables may reference it as they would a
    `workspace_key()`.
    """
    return PrimaryKeyConstraint("workspace_id", *(columns or ("id",)))


def workspace_reference(
    column: str, target: str, *, to: str = "id", ondelete: str | None = None,
    **kwargs: Any,
) -> ForeignKeyConstraint:
    """Return a key from `(workspace_id, column)` to `(workspace_id, to)` of `target`.

    PostgreSQL itself then refuses a row that points at a row of another workspace (rule
    Y210). The target declares `workspace_key()`. `ondelete="SET NULL"` (or
    `SET DEFAULT`) acts on `column` alone, keeping `workspace_id` (PostgreSQL 15+);
    Citus refuses either on a key holding `workspace_id` (Y705, `check --citus`).

    Example::

        workspace_table("ydtb_tasks", metadata, Column("id", BigInteger, primary_key=True),
                        Column("note_id", BigInteger),
                        workspace_reference("note_id", "ydtb_notes", ondelete="SET NULL"))
    """
    if ondelete is not None and ondelete.upper() in ("SET NULL", "SET DEFAULT"):
        ondelete = f"{ondelete.upper()} ({column})"
    return ForeignKeyConstraint(["workspace_id", column],
                                [f"{target}.workspace_id", f"{target}.{to}"],
                                ondelete=ondelete, **kwargs)


def _workspace_id(cls: Any) -> Mapped[str]:
    """The `workspace_id` column of a class mapped with `WorkspaceScoped`."""
    from sqlalchemy.orm import mapped_column

    return mapped_column(
        String(_WORKSPACE_ID_LENGTH),
        ForeignKey(f"{WORKSPACES_TABLE}.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


_DOC = """Declarative mixin adding the `workspace_id` column of `workspace_table`.

    Example::

        class Note(WorkspaceScoped, Base):
            __tablename__ = "ydtb_notes"
            id: Mapped[int] = mapped_column(primary_key=True)
    """

if TYPE_CHECKING:
    class WorkspaceScoped:
        """Declarative mixin adding the `workspace_id` column of `workspace_table`."""

        workspace_id = declared_attr(_workspace_id)
else:
    _defining = threading.Lock()

    def __getattr__(name: str) -> Any:
        """Define `WorkspaceScoped` when it is first asked for.

        Defining it imports `sqlalchemy.orm` (0.12 s), which packages declaring tables
        with `Table` or `workspace_table` never use: 4% of loading 300 of them (#17).
        """
        if name != "WorkspaceScoped":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from sqlalchemy.orm import Mapped, declared_attr

        with _defining:  # one class, whichever thread asks first
            if name not in globals():
                # Declarative reads the annotation of `_workspace_id` in this module.
                globals()["Mapped"] = Mapped
                # A declared_attr, not a plain attribute: each mapped class needs its
                # own column and its own ForeignKey object.
                globals()[name] = type(name, (), {
                    "__doc__": _DOC, "__module__": __name__, "__qualname__": name,
                    "workspace_id": declared_attr(_workspace_id)})
        return globals()[name]

    def __dir__() -> list[str]:
        return sorted({*globals(), "WorkspaceScoped"})
