"""SQL text read with PostgreSQL's own parser (pglast embeds it): never split by hand.

One home for parsing migration SQL: the pipeline splits a `no-transaction` script into its
statements with `parse` (PostgreSQL runs a multi-statement query as one implicit
transaction, which `CREATE INDEX CONCURRENTLY` refuses), and the safety lint
(`runtime.core.lint`) reads the parse trees that `parse` returns, the comments before
each statement (where a migration silences a rule), and the statements a PL/pgSQL `DO`
block runs (`block`), as `makemigration` writes its guarded `ALTER TABLE`s.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pglast import ast, parser

from runtime.errors import SqlSyntaxError

__all__ = ["Statement", "block", "parse"]

_COMMENTS = ("SQL_COMMENT", "C_COMMENT")


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text, the line it starts on (1-based), its parse tree.

    Attributes:
        kind: the name of its parse tree's node (`CreateStmt`, `IndexStmt`, ...).
        node: its parse tree as PostgreSQL writes it in JSON (dicts and lists): cheap.
        comments: the comments between the previous statement and its end, in order.
    """

    text: str
    line: int
    kind: str = ""
    node: Any = field(default=None, repr=False, compare=False)
    comments: tuple[str, ...] = ()

    @cached_property
    def tree(self) -> Any:
        """Its parse tree as `pglast.ast` nodes, locations counted in `text`.

        Built when first asked: pglast makes a Python object of every node, ten times
        the cost of the parse itself (9 ms for a migration creating three tables), so
        the lint builds it only for the statements a rule reads.
        """
        return parser.parse_sql(self.text)[0].stmt


@functools.lru_cache(maxsize=256)
def parse(script: str) -> tuple[Statement, ...]:
    """Return the statements of `script`, each with its parse tree.

    The last scripts parsed are kept (nothing changes a `Statement`): the dev daemon
    lints the pending migration of a package with all those before it, on every save.

    Raises:
        SqlSyntaxError: PostgreSQL's parser refuses the script; `line` says where.
    """
    try:
        raw = json.loads(parser.parse_sql_json(script))["stmts"]
        # Comments are read only when there may be some: scanning costs as much as parsing.
        tokens = parser.scan(script) if "--" in script or "/*" in script else ()
    except parser.ParseError as exc:
        reason, location = (*exc.args, None, None)[:2]  # pglast: (message, offset)
        line = script.count("\n", 0, location) + 1 if isinstance(location, int) else None
        raise SqlSyntaxError(str(reason or exc), line=line) from exc
    data = script.encode()  # PostgreSQL's locations count bytes; the scanner's, characters
    comments = [(t.start, script[t.start:t.end + 1]) for t in tokens if t.name in _COMMENTS]
    statements = []
    # Lines and characters are counted on from the statement before, not from the
    # start: counted from the start, a seed of 100,000 INSERTs took 50 s to read.
    lines, counted = 1, 0  # the line at byte `counted`
    chars, decoded = 0, 0  # the characters before byte `decoded`
    taken = 0  # the comments given to the statements before
    for item in raw:
        start = item.get("stmt_location", 0)
        end = start + item["stmt_len"] if item.get("stmt_len") else len(data)
        chunk = data[start:end].decode()
        lines += data.count(b"\n", counted, start)
        counted = start
        line = lines + _leading_newlines(chunk)
        first = taken
        if taken < len(comments):
            chars += len(data[decoded:end].decode())
            decoded = end
            while taken < len(comments) and comments[taken][0] < chars:
                taken += 1
        mine = tuple(c for _, c in comments[first:taken])
        [(kind, node)] = item["stmt"].items()
        statements.append(Statement(chunk.strip(), line, kind, node, mine))
    return tuple(statements)


def block(statement: Statement) -> tuple[Statement, ...]:
    """Return the SQL statements a PL/pgSQL `DO` block runs, lines counted in its script.

    Read are the statements it runs as written (`ALTER TABLE ...;`, at any depth of
    `IF`, loops and nested blocks) and those it runs with `EXECUTE` of a string constant;
    an `EXECUTE` of a string built at run time (`format(...)`) cannot be read. Anything
    but a `DO` block in PL/pgSQL has none.

    Raises:
        SqlSyntaxError: PL/pgSQL's parser refuses the block; `line` says where.
    """
    if statement.kind != "DoStmt":
        return ()
    tree = statement.tree
    options = {d.defname: d for d in tree.args or ()}
    language = options.get("language")
    body = options.get("as")
    if body is None or (language is not None and language.arg.sval != "plpgsql"):
        return ()
    code = body.arg.sval
    first_line = statement.line + _body_offset_lines(statement, body.arg_location)
    tag = next(f"$ydtb_{n}$" for n in range(len(code) + 1) if f"$ydtb_{n}$" not in code)
    function = f"CREATE FUNCTION pg_temp.ydtb_lint() RETURNS void LANGUAGE plpgsql AS {tag}" \
               f"{code}{tag}"
    try:
        tree_json = json.loads(parser.parse_plpgsql_json(function))
    except parser.ParseError as exc:
        raise SqlSyntaxError(f"the DO block does not parse: {exc.args[0]}",
                             line=statement.line) from exc
    found: list[Statement] = []
    for lineno, text in _executed(tree_json):
        try:
            inner = parse(text)
        except SqlSyntaxError:
            continue  # PL/pgSQL variables in odd places: not SQL the lint can read
        found.extend(replace(s, line=first_line + lineno + s.line - 2) for s in inner)
    return tuple(found)


def _body_offset_lines(statement: Statement, location: int | None) -> int:
    """Count the lines of `statement` before the text of its `DO` body."""
    return statement.text.count("\n", 0, location or 0)


def _executed(node: Any) -> Iterator[tuple[int, str]]:
    """Yield (line in the body, SQL) of each statement a PL/pgSQL parse tree runs."""
    if isinstance(node, list):
        for item in node:
            yield from _executed(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "PLpgSQL_stmt_execsql":
            yield value.get("lineno", 1), value["sqlstmt"]["PLpgSQL_expr"]["query"]
        elif key == "PLpgSQL_stmt_dynexecute":
            text = _constant(value["query"]["PLpgSQL_expr"]["query"])
            if text is not None:
                yield value.get("lineno", 1), text
        else:
            yield from _executed(value)


def _constant(expression: str) -> str | None:
    """Return the value of a SQL string constant (`'...'`, `$$...$$`), else None."""
    try:
        [raw] = parser.parse_sql(f"SELECT {expression}")
    except (parser.ParseError, ValueError):
        return None
    statement: Any = raw.stmt
    [target] = statement.targetList or (None,)
    value = getattr(target, "val", None)
    if isinstance(value, ast.A_Const) and isinstance(value.val, ast.String):
        return str(value.val.sval)
    return None


def _leading_newlines(text: str) -> int:
    """Count the newlines before the first non-blank character (comments stay in the text)."""
    stripped = text.lstrip()
    return text[: len(text) - len(stripped)].count("\n")
