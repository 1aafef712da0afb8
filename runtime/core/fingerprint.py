"""Describe a package's tables structurally, for a fingerprint that needs no DDL.

Packages used to be fingerprinted by compiling their CREATE TABLE statements, which
meant copying every table into a scratch `MetaData` (foreign keys need their targets to
render): 45% of loading 300 packages (issue #7). `describe` lists instead what that DDL
is made of, one line per table, column, constraint and index, and compiles only the
small parts the dialect must spell (types, defaults, check and index expressions, names
after the naming convention). A part that does not compile raises, as the whole
statement would have, so validation still reports the schema (Y107).

A missed attribute is a missed schema edit for the dev daemon, so a line says more than
the DDL needs rather than less. Sets (constraints, indexes) are sorted: the description
must not depend on the process.

The lines are recorded in ledgers and load caches, so a faster way to a part must give
the very same text: describing 1,500 tables was 0.8 s of a full load (#17), and the
shortcuts below (identifiers quoted as plain strings first, no dialect options read
for a table or key given none, no default for a column without one) are checked against the
compiler's own output over many varied tables (tests/core/test_fingerprint_equivalence.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    Column,
    Enum,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Sequence,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.base import IDX_USING
from sqlalchemy.exc import CompileError
from sqlalchemy.sql.base import DialectKWArgs
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.elements import ClauseElement, ColumnClause
from sqlalchemy.types import TypeEngine

from runtime.core.schema import core_metadata

__all__ = ["describe", "parts"]

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def describe(tables: Iterable[Table]) -> list[str]:
    """List what the PostgreSQL DDL of `tables` depends on, one line per part.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a part does not compile to PostgreSQL.
    """
    # No statement: only the compiler's parts are used, each on one object.
    compiler = _DIALECT.ddl_compiler(_DIALECT, None)  # type: ignore[arg-type]
    lines: list[str] = []
    for table in tables:
        lines.extend(_table_lines(compiler, table))
    return lines


def parts(table: Table) -> dict[tuple[str, str], str]:
    """`describe`'s lines of `table`, each under the part it describes: `("table", "")`,
    `("column", name)`, `("index", name)`, or `("constraint", line)` (a key may be
    unnamed). Two declarations of a table differ in the parts whose lines differ.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a part does not compile to PostgreSQL.
    """
    compiler = _DIALECT.ddl_compiler(_DIALECT, None)  # type: ignore[arg-type]
    head, columns, constraints, indexes = _table_parts(compiler, table)
    found = {("table", ""): head}
    found.update((("column", str(c.name)), line)
                 for c, line in zip(table.columns, columns, strict=True))
    found.update((("constraint", line), line) for line in constraints)
    found.update((("index", str(i.name)), line)
                 for i, line in zip(table.indexes, indexes, strict=True))
    return found


def _table_lines(compiler: DDLCompiler, table: Table) -> list[str]:
    head, columns, constraints, indexes = _table_parts(compiler, table)
    return [head, *columns, *sorted([*constraints, *indexes])]


def _table_parts(
    compiler: DDLCompiler, table: Table
) -> tuple[str, list[str], list[str], list[str]]:
    """The table's line, its columns', its constraints' and its indexes' (in the
    table's order)."""
    preparer = compiler.preparer
    _quote_names(compiler, table)
    # PARTITION BY, WITH...: nothing for a table given no PostgreSQL option (each one's
    # default renders nothing), and reading them would build its dialect options.
    options = (compiler.post_create_table(table).replace("\n", "").strip()
               if _given_options(table) else "")
    head = _join("TABLE", *table._prefixes, preparer.format_table(table), options,
                 f"comment={table.comment!r}")
    # What picks SERIAL over the type in PostgreSQL's column DDL; asked once a table.
    serial = table._autoincrement_column
    columns = [_column_line(compiler, column, column is serial) for column in table.columns]
    constraints = [_constraint_line(compiler, c) for c in table.constraints
                   if c._should_create_for_compiler(compiler)]
    indexes = [_index_line(compiler, index) for index in table.indexes]
    return head, columns, constraints, indexes


def _column_line(compiler: DDLCompiler, column: Column[Any], autoincrement: bool) -> str:
    try:
        return _join(*_column_parts(compiler, column, autoincrement))
    except CompileError as exc:
        # The wording of CreateTable's own error, which Y107 messages have always shown.
        raise CompileError(f"(in table '{column.table.description}', column "
                           f"'{column.name}'): {exc.args[0]}") from exc


def _quote_names(compiler: DDLCompiler, table: Table) -> None:
    """Quote the table's identifiers first as plain strings, as the compiler will.

    The preparer keeps each identifier's quoting by its text. Asked first with one of
    SQLAlchemy's name objects, it spends 12 µs on the object's memoized lower(), for
    every new name: 0.1 s of describing 1,500 tables (#17). A plain string of the same
    text quotes the same, and later questions find it kept.
    """
    preparer = compiler.preparer
    kept = preparer._strings
    items: list[Any] = [table, *table.columns, *table.constraints, *table.indexes]
    for item in items:
        name = item.name
        if isinstance(name, str) and name not in kept and getattr(name, "quote", None) is None:
            preparer.quote(str(name))


def _column_parts(
    compiler: DDLCompiler, column: Column[Any], autoincrement: bool
) -> list[str]:
    # The parts a column may lack are added only when it has them: `_join` would drop
    # them as empty, and 10,000 columns at N = 300 lack most of them (#17).
    type_ = _declared_type(column)
    parts = ["COLUMN", compiler.preparer.format_column(column),
             compiler.dialect.type_compiler_instance.process(
                 type_, type_expression=column, identifier_preparer=compiler.preparer)]
    if isinstance(type_, Enum):
        parts.append(f"enums={list(type_.enums)}")
    parts.append(f"null={column.nullable} pk={column.primary_key} auto={autoincrement} "
                 f"unique={column.unique} index={column.index} system={column.system}")
    # get_column_default_string says None for a column without a server default.
    parts.append("default=None" if column.server_default is None
                 else f"default={compiler.get_column_default_string(column)}")
    parts.append(f"client_default={_client_default(column.default)}")
    if column.computed is not None:
        parts.append(compiler.process(column.computed))
    if column.identity is not None:
        parts.append(compiler.process(column.identity))
    parts.append(f"comment={column.comment!r}")
    if column.constraints:
        parts.extend(sorted(compiler.process(c) for c in column.constraints))
    if _given_options(column):
        parts.append(_options(compiler, column))
    return parts


def _declared_type(column: Column[Any]) -> TypeEngine[Any]:
    # An untyped foreign-key column takes the type of the column it points at, as
    # SQLAlchemy does once the target is in the same MetaData (the core's otherwise).
    if not column.type._isnull:
        return column.type
    for fk in sorted(column.foreign_keys, key=lambda fk: fk.target_fullname):
        target, _, name = fk.target_fullname.rpartition(".")
        for metadata in (column.table.metadata, core_metadata):
            table = metadata.tables.get(target)
            if table is not None and name in table.c:
                return table.c[name].type
    return column.type


def _client_default(default: object) -> str:
    # Only whether there is one, and which sequence: a Python-side default is no DDL,
    # but any default turns SERIAL off, and its value's repr may hold an id().
    if default is None:
        return "none"
    if isinstance(default, Sequence):
        return f"sequence {default.name} optional={default.optional}"
    return "python"


def _constraint_line(compiler: DDLCompiler, constraint: Any) -> str:
    if isinstance(constraint, ForeignKeyConstraint):
        return _foreign_key_line(compiler, constraint)
    return _join(type(constraint).__name__, _key_sql(compiler, constraint))


def _key_sql(compiler: DDLCompiler, constraint: Any) -> str:
    # PostgreSQL's primary key and unique visitors read the key's dialect options
    # (INCLUDE, NULLS NOT DISTINCT), which builds them: 20 µs a key, 3,000 keys at
    # N = 300 (#17). Given none, they add nothing to the other parts, written here
    # from the compiler's own methods as its visitors write them.
    kind = type(constraint)
    if kind not in (PrimaryKeyConstraint, UniqueConstraint) or _given_options(constraint):
        return str(compiler.process(constraint))
    if kind is PrimaryKeyConstraint:
        body = compiler.define_primary_key_body(constraint)
    elif len(constraint) == 0:
        return ""
    else:
        columns = ", ".join(compiler.preparer.quote(c.name) for c in constraint)
        body = f"UNIQUE ({columns})"
    return (compiler.define_constraint_preamble(constraint) + body
            + compiler.define_constraint_deferrability(constraint))


def _foreign_key_line(compiler: DDLCompiler, fk: ForeignKeyConstraint) -> str:
    # The target table is usually in another package's MetaData, so the REFERENCES
    # clause is written from the declared "table.column" strings instead.
    local = ", ".join(compiler.preparer.quote(e.parent.name) for e in fk.elements)
    targets = ", ".join(e.target_fullname for e in fk.elements)
    clauses = (compiler.define_constraint_match(fk) + compiler.define_constraint_cascades(fk)
               + compiler.define_constraint_deferrability(fk))
    return _join("ForeignKeyConstraint", str(_name(compiler, fk)),
                 f"({local}) -> ({targets}){clauses}", f"use_alter={fk.use_alter}",
                 _options(compiler, fk))


def _index_line(compiler: DDLCompiler, index: Index) -> str:
    expressions = ", ".join(_sql(compiler, e) for e in index.expressions)
    name = _name(compiler, index)
    if name is None:
        # CreateIndex would fail an assertion here; say which index instead.
        raise CompileError(f"(in table '{index.table}'): index on ({expressions}) has no "
                           "name, and the naming convention gives it none")
    options = _given_options(index)
    if using := options.get("postgresql_using"):
        # The one index option PostgreSQL's CREATE INDEX checks before rendering it.
        compiler.preparer.validate_sql_phrase(using, IDX_USING)  # type: ignore[no-untyped-call]
    return _join("Index", name, f"unique={index.unique}", f"({expressions})",
                 _options(compiler, index))


def _name(compiler: DDLCompiler, item: ForeignKeyConstraint | Index) -> str | None:
    # The name in the DDL: given, or from the naming convention, truncated as PostgreSQL
    # would. The preparer asserts on an unnamed item, so ask only about named ones.
    return None if item.name is None else compiler.preparer.format_constraint(item)


def _join(*parts: str) -> str:
    # Parts a column or table does not have are empty; leave no gap for them.
    return " ".join(part for part in parts if part)


def _given_options(item: DialectKWArgs) -> Mapping[str, Any]:
    # SQLAlchemy builds `dialect_options` on first read and keeps it: reading it on every
    # column of 300 packages kept 16 MB (issue #7). Giving or setting a dialect kwarg
    # builds it, so an item without it has none.
    memo = getattr(item, "__dict__", None)
    return {} if memo is not None and "dialect_options" not in memo else item.dialect_kwargs


def _options(compiler: DDLCompiler, item: DialectKWArgs) -> str:
    options = _given_options(item)
    return " ".join(f"{key}={_value(compiler, options[key])}" for key in sorted(options))


def _value(compiler: DDLCompiler, value: object) -> str:
    # Dialect options hold text, flags, clauses (postgresql_where), columns
    # (postgresql_include) and lists or mappings of those.
    if isinstance(value, ClauseElement):
        return _sql(compiler, value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_value(compiler, value[k])}"
                               for k in sorted(value, key=str)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(compiler, v) for v in value) + "]"
    return repr(value)


def _sql(compiler: DDLCompiler, expression: Any) -> str:
    if isinstance(expression, ColumnClause):
        return compiler.preparer.format_column(expression)
    return str(compiler.sql_compiler.process(expression.self_group(), include_table=False,
                                             literal_binds=True))
