"""PostgreSQL's own parser splits migration SQL (runtime.core.sql): no database needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.core import sql
from runtime.errors import SqlSyntaxError


def test_parse_keeps_semicolons_inside_strings_comments_and_dollar_quotes() -> None:
    script = ("-- a; comment\nCREATE TABLE t (a text DEFAULT 'x;y');\n"
              "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;\n\n/* é; */ SELECT 1")

    assert tuple(s.text for s in sql.parse(script)) == (
        "CREATE TABLE t (a text DEFAULT 'x;y')",
        "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$",
        "SELECT 1",  # the parser leaves the comments before a statement out
    )


def test_parse_gives_each_statement_the_line_it_starts_on() -> None:
    statements = sql.parse("SELECT 1;\n\n\nSELECT\n2;")

    assert [s.line for s in statements] == [1, 4]
    assert statements[1].kind == "SelectStmt" and "targetList" in statements[1].node


def test_a_script_that_does_not_parse_names_its_line() -> None:
    with pytest.raises(SqlSyntaxError) as caught:
        sql.parse("SELECT 1;\nCREATE TABEL t (a int);")

    assert caught.value.line == 2
    located = SqlSyntaxError(caught.value.reason, line=caught.value.line,
                             package="@ydtb/notes", migration="0002_x")
    assert str(located) == (
        "@ydtb/notes, migration 0002_x, line 2: the SQL does not parse: syntax error at or "
        "near \"TABEL\" (fix the statement; PostgreSQL's own parser reads it)")


def test_an_empty_script_has_no_statements() -> None:
    assert sql.parse("-- nothing but a comment\n") == ()


def test_each_statement_has_the_comments_before_it_even_after_non_ascii_text() -> None:
    statements = sql.parse("SELECT 'é';  -- ü one\n/* two */\nSELECT 2; -- three\nSELECT 3")

    assert [(s.kind, s.line, s.comments) for s in statements] == [
        ("SelectStmt", 1, ()), ("SelectStmt", 3, ("-- ü one", "/* two */")),
        ("SelectStmt", 4, ("-- three",))]


def test_block_gives_the_statements_a_do_block_runs_with_their_lines() -> None:
    [do] = sql.parse("-- header\nDO $body$\nBEGIN\n  IF true THEN\n    ALTER TABLE t ADD c int;"
                     "\n  END IF;\n  EXECUTE 'DROP INDEX i';\n  EXECUTE format('x');\nEND\n"
                     "$body$;")

    assert [(s.kind, s.line, s.text) for s in sql.block(do)] == [
        ("AlterTableStmt", 5, "ALTER TABLE t ADD c int"), ("DropStmt", 7, "DROP INDEX i")]
    assert sql.block(sql.parse("SELECT 1")[0]) == ()


def test_a_script_parsed_again_is_not_parsed_again() -> None:
    script = "CREATE TABLE ydtb_kept (id int);\nCREATE INDEX ix_kept ON ydtb_kept (id);"
    assert sql.parse(script) is sql.parse(script)
    with pytest.raises(SqlSyntaxError):  # an error is raised each time: nothing is kept
        sql.parse("SELEC 1;")
    with pytest.raises(SqlSyntaxError):
        sql.parse("SELEC 1;")


_WORDS = st.text(alphabet=st.sampled_from("aé ü€𝄞x;"), max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.integers(0, 2), st.lists(st.sampled_from(["--", "/*"]), max_size=2), _WORDS),
    min_size=1, max_size=12))
def test_lines_and_comments_of_every_statement_are_those_it_was_written_with(
    parts: list[tuple[int, list[str], str]],
) -> None:
    """Lines and comments are counted on from one statement to the next (counted from
    the start of the script, a seed of 100,000 statements took 50 s to read): each
    statement gets the line it starts on and the comments written before it, whatever
    the non-ASCII text before them."""
    script, expected, line = "", [], 1
    for number, (blank, kinds, words) in enumerate(parts):
        comments = []
        for kind in kinds:
            comment = f"-- {words}" if kind == "--" else f"/* {words} */"
            script += comment + "\n"
            line += 1
            comments.append(comment)
        script += "\n" * blank
        line += blank
        literal = words.replace("'", "''")
        script += f"SELECT '{literal}', {number};\n"
        expected.append((line, tuple(comments), f"SELECT '{literal}', {number}"))
        line += 1

    parsed = sql.parse(script)

    assert [(s.line, s.comments, s.text) for s in parsed] == expected


_LINT_IN_A_FRESH_PROCESS = """
import json, sys
from runtime.core import lint_rules, sql
schema = lint_rules.Schema()
script = ("-- runtime: no-transaction\\nALTER TABLE t ADD COLUMN a int DEFAULT random();\\n"
          "DO $$BEGIN ALTER TABLE t DROP COLUMN b; END$$;\\nLOCK TABLE t;")
statements = [s for statement in sql.parse(script) for s in (statement, *sql.block(statement))]
hits = [h.code for s in statements for h in lint_rules.judge(s, schema, transactional=True)]
loaded = sorted(m for m in sys.modules if m.startswith(("pglast.ast", "pglast.enums"))
                and type(sys.modules[m]).__name__ != "_Deferred")
from pglast import ast, enums  # a package's code may use them: they are there
import pglast.enums.nodes
print(json.dumps([hits, loaded, ast.SelectStmt.__name__, enums.ConstrType.CONSTR_CHECK.name]))
"""


def test_reading_and_linting_sql_loads_no_pglast_node_class_or_enum() -> None:
    # Importing them took 55 ms of every process that reads a migration (#17).
    done = subprocess.run([sys.executable, "-c", _LINT_IN_A_FRESH_PROCESS],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

    hits, loaded, node, member = json.loads(done.stdout)
    assert hits == ["Y517", "Y526", "Y522"]
    assert loaded == []
    assert (node, member) == ("SelectStmt", "CONSTR_CHECK")
