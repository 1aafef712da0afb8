"""PostgreSQL's own parser splits migration SQL (runtime.core.sql): no database needed."""

from __future__ import annotations

import pytest

from runtime.core import sql
from runtime.errors import SqlSyntaxError


def test_split_keeps_semicolons_inside_strings_comments_and_dollar_quotes() -> None:
    script = ("-- a; comment\nCREATE TABLE t (a text DEFAULT 'x;y');\n"
              "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;\n\n/* é; */ SELECT 1")

    assert sql.split(script) == (
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
    assert str(caught.value.located("@ydtb/notes", "0002_x")) == (
        "@ydtb/notes, migration 0002_x, line 2: the SQL does not parse: syntax error at or "
        "near \"TABEL\" (fix the statement; PostgreSQL's own parser reads it)")


def test_an_empty_script_has_no_statements() -> None:
    assert sql.split("-- nothing but a comment\n") == ()
