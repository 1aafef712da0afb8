"""PostgreSQL's own parser splits migration SQL (runtime.core.sql): no database needed."""

from __future__ import annotations

import pytest

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
    assert type(statements[1].tree).__name__ == "SelectStmt"


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
