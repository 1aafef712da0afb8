"""Compile a package's SQLAlchemy tables to PostgreSQL DDL, without a database.

Packages name foreign-key targets by string (`ForeignKey("ydtb_workspaces.id")`) and
rarely carry the target tables in their own metadata, which SQLAlchemy needs to render
a REFERENCES clause. So each package's tables are copied into a scratch `MetaData` with
a stub for every table they point at, and compiled there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import (
    Column,
    Constraint,
    Enum,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.named_types import CreateEnumType
from sqlalchemy.schema import CreateIndex, CreateTable, SetColumnComment, SetTableComment

from runtime.core.schema import core_metadata

__all__ = ["FILL_IN", "backfill", "checked_later", "concurrently", "create_statements",
           "drop_statement", "enum_statements", "fingerprint", "foreign_key_targets",
           "is_validation", "quote", "schema_items", "unique_later", "unless_it_exists",
           "validated"]

#: What a backfill sets rows without a value to, until the author writes the value: run
#: as it is, it sets nothing, and the NOT NULL after it fails on those rows, saying so.
FILL_IN = "NULL /* FILL IN */"

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def foreign_key_targets(table: Table) -> list[tuple[str, str, Column[object]]]:
    """List `(target table, target column, local column)` for each foreign key of `table`.

    Read from the declared target string, so it works before the target table exists.
    """
    targets = []
    for fk in table.foreign_keys:
        spec = fk.target_fullname  # "table.column" or "schema.table.column"
        target_table, _, target_column = spec.rpartition(".")
        targets.append((target_table, target_column, fk.parent))
    return targets


def schema_items(table: Table) -> Iterator[object]:
    """Yield `table` and the schema items it holds: its constraints, indexes and
    columns, and each column's type, defaults, identity and foreign keys."""
    yield table
    yield from table.constraints
    yield from table.indexes
    for column in table.columns:
        yield column
        yield column.type
        yield from (item for item in (column.server_default, column.server_onupdate,
                                      column.identity, column.computed) if item is not None)
        yield from column.foreign_keys


def _scratch_metadata(tables: Iterable[Table]) -> MetaData:
    tables = list(tables)
    # Keep the package's naming convention: without it a column-level unique=True
    # renders unnamed and PostgreSQL would name it, not the convention.
    convention = tables[0].metadata.naming_convention if tables else None
    metadata = MetaData(naming_convention=convention) if convention else MetaData()
    for table in tables:
        table.to_metadata(metadata)
    for copy in metadata.tables.values():
        _order_constraints(copy)
    for table in tables:
        for target, column_name, local in foreign_key_targets(table):
            stub = metadata.tables.get(target)
            if stub is None:
                stub = Table(target, metadata)
            if column_name not in stub.c:
                stub.append_column(Column(column_name, _target_type(target, column_name,
                                                                   local), primary_key=True))
    return metadata


def _order_constraints(table: Table) -> None:
    # to_metadata() copies constraints out of a set, so their creation order, which is
    # the order CREATE TABLE lists them in, followed string-hash randomisation: the same
    # schema rendered differently in two processes and its checksum changed (found when
    # a second `migrate` reported the core migration as edited).
    kinds = {PrimaryKeyConstraint: 0, ForeignKeyConstraint: 1, UniqueConstraint: 2}

    def key(constraint: Constraint) -> tuple[int, str, str, str]:
        columns = ",".join(sorted(c.name for c in getattr(constraint, "columns", ())))
        text = str(getattr(constraint, "sqltext", ""))
        return (kinds.get(type(constraint), 3), str(constraint.name or ""), columns, text)

    for position, constraint in enumerate(sorted(table.constraints, key=key)):
        constraint._creation_order = position


def _target_type(table: str, column: str, local: Column[Any]) -> Any:
    # An untyped foreign-key column takes its type from the target (normal SQLAlchemy);
    # the core's columns are known here, other packages' come typed by the author.
    core = core_metadata.tables.get(table)
    if core is not None and column in core.c:
        return core.c[column].type
    return local.type


def enum_statements(columns: Iterable[Column[Any]]) -> list[str]:
    """Render a `CREATE TYPE` for each native enum type of `columns`, once each, idempotent.

    A native Enum column needs its type first; CREATE TYPE has no IF NOT EXISTS, so a
    second run skips it by catching the duplicate, as IF NOT EXISTS would.
    """
    statements: dict[str, str] = {}
    for column in columns:
        kind = column.type
        if (isinstance(kind, Enum) and kind.native_enum and kind.name
                and getattr(kind, "create_type", True)):
            create = str(CreateEnumType(kind).compile(dialect=_DIALECT)).strip()
            statements.setdefault(kind.name, f"DO $$ BEGIN\n    {create};\n"
                                  "EXCEPTION WHEN duplicate_object THEN NULL;\nEND $$")
    return list(statements.values())


def create_statements(tables: Iterable[Table]) -> list[str]:
    """Render `CREATE TABLE IF NOT EXISTS` and `CREATE INDEX IF NOT EXISTS` for `tables`.

    Tables come in foreign-key order, after the enum types their columns use; stubs
    for tables outside `tables` are not rendered. A table's and its columns' comments
    follow it (`COMMENT ON` sets them again to the same on a second run): CREATE TABLE
    leaves them out, and a package of a schema alone was built without them, which
    `check --db` then refused (Y404).
    """
    tables = list(tables)
    own = {table.name for table in tables}
    metadata = _scratch_metadata(tables)
    statements = enum_statements(column for table in tables for column in table.columns)
    for table in metadata.sorted_tables:
        if table.name not in own:
            continue
        ddl = CreateTable(table, if_not_exists=True).compile(dialect=_DIALECT)
        statements.append(str(ddl).strip())
        if table.comment is not None:
            statements.append(str(SetTableComment(table).compile(dialect=_DIALECT)))
        statements += [str(SetColumnComment(column).compile(dialect=_DIALECT))
                       for column in table.columns if column.comment is not None]
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            ddl = CreateIndex(index, if_not_exists=True).compile(dialect=_DIALECT)
            statements.append(str(ddl).strip())
    return statements


def quote(name: str) -> str:
    """Quote an identifier where PostgreSQL needs it, as the DDL this module renders."""
    return str(_DIALECT.identifier_preparer.quote(name))


def drop_statement(tables: Iterable[str]) -> str:
    """Render one `DROP TABLE IF EXISTS` of `tables`, each name quoted where it needs it.

    One statement: PostgreSQL then drops tables that reference each other in any order.
    """
    return f"DROP TABLE IF EXISTS {', '.join(quote(t) for t in tables)}"


def fingerprint(statements: Iterable[str]) -> str:
    """Hash DDL statements into a short stable fingerprint of a schema."""
    digest = hashlib.sha256("\n;\n".join(statements).encode())
    return digest.hexdigest()[:16]


def unless_it_exists(statement: str) -> str:
    """Make an ADD CONSTRAINT idempotent: PostgreSQL has no IF NOT EXISTS for it.

    Catching "already exists" rather than asking `pg_constraint` first also holds for a
    name PostgreSQL truncated to 63 bytes; a unique constraint's index is a relation.
    """
    return (
        "DO $$\nBEGIN\n"
        f"    {statement};\n"
        "EXCEPTION WHEN duplicate_object OR duplicate_table THEN\n"
        "    NULL;  -- it exists already\n"
        "END $$"
    )


def checked_later(statement: str, table: str, name: str) -> tuple[str, str]:
    """Split an ADD CONSTRAINT that checks every row (a foreign key, a CHECK) in two:
    added NOT VALID (idempotent), which checks new rows only, then validated.

    VALIDATE CONSTRAINT checks the rows under a lock that lets writes go on, where the
    ADD would block them (lint Y515, Y516), once the transaction that added it
    committed: a migration written with it puts it in a `no-transaction` file after
    (`runtime.dev.generator`). Run again, it does nothing.
    """
    return unless_it_exists(f"{statement} NOT VALID"), validated(table, name)


def validated(table: str, name: str) -> str:
    """The VALIDATE CONSTRAINT of constraint `name`, added NOT VALID (`checked_later`)."""
    quote = _DIALECT.identifier_preparer.quote
    return f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(name)}"


def unique_later(table: str, name: str, columns: Iterable[str]) -> tuple[str, str]:
    """A unique constraint on `columns` as its index, then the constraint using it: the
    index can be built without blocking writes (`concurrently`), the ADD CONSTRAINT
    would build it under a lock that blocks reads too (lint Y519). Both idempotent."""
    quote = _DIALECT.identifier_preparer.quote
    keys = ", ".join(quote(c) for c in columns)
    # Asked of the catalog: added once, the index belongs to the constraint, and adding
    # it again fails as "already associated with a constraint", not as a duplicate.
    return (f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({keys})",
            "DO $$\nBEGIN\n"
            f"    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = "
            f"{_literal(quote(table))}::regclass AND conname = {_literal(name)}) THEN\n"
            f"        ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} "
            f"UNIQUE USING INDEX {quote(name)};\n"
            "    END IF;\n"
            "END $$")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def is_validation(statement: str) -> bool:
    """Whether `statement` is a VALIDATE CONSTRAINT (`validated`)."""
    return statement.startswith("ALTER TABLE ") and " VALIDATE CONSTRAINT " in statement


def concurrently(statement: str) -> str | None:
    """`statement`, a CREATE or DROP INDEX, run without blocking writes (lint Y510,
    Y511), to run outside a transaction; None if it is not one."""
    for head in ("CREATE INDEX ", "CREATE UNIQUE INDEX ", "DROP INDEX "):
        if statement.startswith(head) and not statement.startswith(f"{head}CONCURRENTLY "):
            return f"{head}CONCURRENTLY {statement[len(head):]}"
    return None


def backfill(table: str, column: str) -> str:
    """Render the UPDATE that gives the rows of `table` without a `column` a value, to
    run before SET NOT NULL: the value is `FILL_IN`, for the author to write."""
    quote = _DIALECT.identifier_preparer.quote
    return (f"UPDATE {quote(table)} SET {quote(column)} = {FILL_IN} "
            f"WHERE {quote(column)} IS NULL")
