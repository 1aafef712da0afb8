"""The fleet file: one database a line, names from the URL, errors naming file and line."""

from __future__ import annotations

import pytest

from runtime.core.fleet import Member, canary_first, parse_fleet
from runtime.errors import UsageError

FLEET = """\
# the cells, the canary first
eu   postgresql://app:s3cret@db-eu.internal:5432/app
postgresql://app:s3cret@db-us.internal/app   # named from its host and database

postgres://postgres@/cell3?host=/run/postgresql
"""


def test_reads_names_urls_and_lines_skipping_comments_and_blanks() -> None:
    assert parse_fleet(FLEET, "cells.txt") == (
        Member("eu", "postgresql://app:s3cret@db-eu.internal:5432/app", 2),
        Member("db-us.internal/app", "postgresql://app:s3cret@db-us.internal/app", 3),
        Member("cell3", "postgres://postgres@/cell3?host=/run/postgresql", 5),
    )


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("a postgresql://h/a\nb postgresql://h/b extra\n",
                 "--fleet: cells.txt:2: 3 fields, where a line holds `NAME URL` or `URL`",
                 id="three-fields"),
    pytest.param("\n\nhost:5432/app\n", "--fleet: cells.txt:3: the line is not a postgresql:// "
                 "URL", id="no-scheme"),
    pytest.param("a mysql://u:pw@h/a\n", "--fleet: cells.txt:1: the second field is not a "
                 "postgresql:// URL", id="other-scheme"),
    pytest.param("a postgresql://u:pw@h:port/a\n", "--fleet: cells.txt:1: the second field "
                 "is not a postgresql:// URL", id="bad-port"),
    pytest.param("postgresql://h/a postgresql://h/b\n", "--fleet: cells.txt:1: two URLs",
                 id="two-urls"),
    pytest.param("a postgresql://h/a\na postgresql://h/b\n",
                 "--fleet: cells.txt:2: the name 'a' is line 1's too", id="duplicate-name"),
    pytest.param("postgresql://h/a\npostgresql://other/a\npostgresql://h/a\n",
                 "--fleet: cells.txt:3: the name 'h/a' is line 1's too",
                 id="duplicate-default-name"),
    pytest.param("a postgresql://u:pw@h/a\nb postgresql://u:pw@h/a\n",
                 "--fleet: cells.txt:2: the URL of line 1 again", id="duplicate-url"),
    pytest.param("# nothing yet\n\n", "--fleet: cells.txt: no database in it", id="empty"),
])
def test_refuses_a_malformed_fleet_naming_file_and_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_fleet(text, "cells.txt")
    assert str(caught.value).startswith(message)
    assert "pw" not in str(caught.value)  # a password is never shown


def test_the_canary_goes_first_the_rest_in_order() -> None:
    members = parse_fleet(FLEET, "cells.txt")
    assert canary_first(members, None, "cells.txt") == members
    assert [m.name for m in canary_first(members, "cell3", "cells.txt")] == [
        "cell3", "eu", "db-us.internal/app"]
    with pytest.raises(UsageError, match=r"--canary: cells.txt names no database 'us' "
                       r"\(give one of eu, db-us.internal/app, cell3\)"):
        canary_first(members, "us", "cells.txt")
