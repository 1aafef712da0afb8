"""SQL text read with PostgreSQL's own parser (pglast embeds it): never split by hand.

One home for parsing migration SQL: the pipeline splits a `no-transaction` script into its
statements with `parse` (PostgreSQL runs a multi-statement query as one implicit
transaction, which `CREATE INDEX CONCURRENTLY` refuses), and the safety lint
(`runtime.core.lint`) reads the parse trees that `parse` returns, the comments before
each statement (where a migration silences a rule), and the statements a PL/pgSQL `DO`
block runs (`block`), as `makemigration` writes its guarded `ALTER TABLE`s.

The trees are PostgreSQL's JSON form of them (dicts and lists), never pglast's Python
node classes: importing those and pglast's enums took 55 of the 65 ms its import cost,
in every process that reads a migration (a `migrate` of one new migration, #17).
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.errors import SqlSyntaxError

__all__ = ["Statement", "block", "parse"]

_COMMENTS = ("SQL_COMMENT", "C_COMMENT")


class _Deferred(types.ModuleType):
    """A module of pglast's imported only when something reads one of its names.

    pglast's parser imports its `ast` and `enums` modules, thousands of classes and
    enum members, though the JSON parse and the scanner use neither. Whoever reads a
    name of one (pglast's own `parse_sql`, a package's code) gets the real module. Its
    file is known without importing it: the load cache states every module's file.
    """

    def __init__(self, name: str, file: str | None) -> None:
        super().__init__(name)
        self.__file__ = file

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)  # those that kept this one find it all
        return getattr(module, name)


def _parser() -> Any:
    found = importlib.util.find_spec("pglast") if "pglast" not in sys.modules else None
    for name in ("pglast.ast", "pglast.enums"):
        spec = importlib.machinery.PathFinder.find_spec(
            name, found.submodule_search_locations) if found is not None else None
        if spec is not None:
            sys.modules.setdefault(name, _Deferred(name, spec.origin))
    return importlib.import_module("pglast.parser")


parser = _parser()


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text, the line it starts on (1-based), its parse tree.

    Attributes:
        kind: the name of its parse tree's node (`CreateStmt`, `IndexStmt`, ...).
        node: its parse tree as PostgreSQL writes it in JSON (dicts and lists), the
            node named `kind` unwrapped; locations count bytes of the whole script.
        comments: the comments between the previous statement and its end, in order.
    """

    text: str
    line: int
    kind: str = ""
    node: Any = field(default=None, repr=False, compare=False)
    comments: tuple[str, ...] = ()


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
    # Parsed again alone: its body's location is then counted in its own text.
    [raw] = json.loads(parser.parse_sql_json(statement.text))["stmts"]
    options = {d["DefElem"]["defname"]: d["DefElem"]
               for d in raw["stmt"]["DoStmt"].get("args", ())}
    language, body = options.get("language"), options.get("as")
    if body is None or (language is not None and _string(language) != "plpgsql"):
        return ()
    code = _string(body)
    first_line = statement.line + _body_offset_lines(statement, body.get("arg_location"))
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


def _string(option: dict[str, Any]) -> str:
    """The string value of a `DefElem` (a `DO` block's body or language)."""
    return str(option.get("arg", {}).get("String", {}).get("sval", ""))


def _body_offset_lines(statement: Statement, location: int | None) -> int:
    """Count the lines of `statement` before the text of its `DO` body (`location`
    counts bytes, as PostgreSQL does)."""
    return statement.text.encode().count(b"\n", 0, max(location or 0, 0))


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
        [raw] = json.loads(parser.parse_sql_json(f"SELECT {expression}"))["stmts"]
    except (parser.ParseError, ValueError):
        return None
    targets = raw["stmt"].get("SelectStmt", {}).get("targetList", ())
    if len(targets) != 1:
        return None
    value = targets[0]["ResTarget"].get("val", {}).get("A_Const", {})
    if "sval" not in value:
        return None
    return str(value["sval"].get("sval", ""))


def _leading_newlines(text: str) -> int:
    """Count the newlines before the first non-blank character (comments stay in the text)."""
    stripped = text.lstrip()
    return text[: len(text) - len(stripped)].count("\n")
