"""SQL text read with PostgreSQL's own parser (pglast embeds it): never split by hand.

One home for parsing migration SQL: the pipeline splits a `no-transaction` script into its
statements with `split` (PostgreSQL runs a multi-statement query as one implicit
transaction, which `CREATE INDEX CONCURRENTLY` refuses), and the safety lint reads the
parse trees that `parse` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast import parser

from runtime.errors import SqlSyntaxError

__all__ = ["Statement", "parse", "split"]


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text, the line it starts on (1-based), its parse tree."""

    text: str
    line: int
    tree: Any = None


def parse(script: str) -> tuple[Statement, ...]:
    """Return the statements of `script`, each with its parse tree (a `pglast.ast.Node`).

    Raises:
        SqlSyntaxError: PostgreSQL's parser refuses the script; `line` says where.
    """
    try:
        raw = parser.parse_sql(script)
    except parser.ParseError as exc:
        reason, location = (*exc.args, None, None)[:2]  # pglast: (message, offset)
        line = script.count("\n", 0, location) + 1 if isinstance(location, int) else None
        raise SqlSyntaxError(str(reason or exc), line=line) from exc
    statements = []
    for item in raw:
        start = item.stmt_location or 0
        end = start + item.stmt_len if item.stmt_len else len(script)
        text = script[start:end].strip()
        line = script.count("\n", 0, start) + 1 + _leading_newlines(script[start:end])
        statements.append(Statement(text, line, item.stmt))
    return tuple(statements)


def split(script: str) -> tuple[str, ...]:
    """Return the statements of `script` as texts, each runnable on its own.

    Raises:
        SqlSyntaxError: PostgreSQL's parser refuses the script.
    """
    return tuple(s.text for s in parse(script))


def _leading_newlines(text: str) -> int:
    """Count the newlines before the first non-blank character (comments stay in the text)."""
    stripped = text.lstrip()
    return text[: len(text) - len(stripped)].count("\n")
