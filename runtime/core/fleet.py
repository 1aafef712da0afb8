"""A fleet file: the databases `migrate --fleet` and `status --fleet` work on, in order.

One database a line, `NAME URL` or just `URL`; `#` starts a comment, blank lines are
skipped. A name left out is the URL's host and database (`db1/app`), or its database
alone for a unix socket. The first line is the canary unless `--canary NAME` says
otherwise (`canary_first`).

Pure: the CLI reads the file and passes its text. Errors never quote a line, which may
hold a password: they name the file, the line and what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from runtime.errors import UsageError

__all__ = ["Member", "canary_first", "parse_fleet"]

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_FORMAT = ("write one database a line, `NAME URL` or `URL`, as postgresql://user:password@"
           "host:port/database; `#` starts a comment")


@dataclass(frozen=True)
class Member:
    """One database of a fleet.

    Attributes:
        name: how output names it (given, or `host/database` from the URL).
        url: its `postgresql://` URL, password included: show it with `display_url`.
        line: the line of the fleet file it is on.
    """

    name: str
    url: str
    line: int


def parse_fleet(text: str, source: str) -> tuple[Member, ...]:
    """Read a fleet file's text, in its order.

    Args:
        source: the file's path, as the errors name it.

    Raises:
        UsageError: a malformed line, a duplicate name or URL, or no database at all,
            naming `source` and the line.
    """
    members: list[Member] = []
    names: dict[str, int] = {}
    seen_urls: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        member = _member(fields, number, source)
        if member.name in names:
            raise _error(source, number, f"the name {member.name!r} is line "
                         f"{names[member.name]}'s too", "give each database its own name")
        if member.url in seen_urls:
            raise _error(source, number, f"the URL of line {seen_urls[member.url]} again",
                         "list each database once")
        names[member.name], seen_urls[member.url] = number, number
        members.append(member)
    if not members:
        raise UsageError("--fleet", f"{source}: no database in it", _FORMAT)
    return tuple(members)


def canary_first(members: Sequence[Member], canary: str | None, source: str) -> tuple[Member, ...]:
    """Put the canary first: the database named `canary`, else the first line's.

    Raises:
        UsageError: no database of the fleet is named `canary`.
    """
    if canary is None:
        return tuple(members)
    chosen = next((m for m in members if m.name == canary), None)
    if chosen is None:
        names = ", ".join(m.name for m in members)
        raise UsageError("--canary", f"{source} names no database {canary!r}",
                         f"give one of {names}")
    return (chosen, *(m for m in members if m is not chosen))


def _member(fields: list[str], number: int, source: str) -> Member:
    """One line's database, from its one or two fields.

    Raises:
        UsageError: more than two fields, or a URL that is not a PostgreSQL one.
    """
    if len(fields) > 2:
        raise _error(source, number, f"{len(fields)} fields, where a line holds `NAME URL` "
                     "or `URL`", "quote nothing, and put spaces in neither")
    url = fields[-1]
    if not _is_url(url):
        which = "the second field" if len(fields) == 2 else "the line"
        raise _error(source, number, f"{which} is not a postgresql:// URL", _FORMAT)
    name = fields[0] if len(fields) == 2 else _default_name(url)
    if "://" in name:
        raise _error(source, number, "two URLs, where a line holds `NAME URL` or `URL`",
                     _FORMAT)
    return Member(name, url, number)


def _is_url(text: str) -> bool:
    scheme, sep, _ = text.partition("://")
    if not sep or scheme not in _SCHEMES:
        return False
    try:
        urlsplit(text).port  # noqa: B018 -- reading the port is what checks it
    except ValueError:
        return False
    return True


def _default_name(url: str) -> str:
    """`host/database` of a URL; the database alone for a unix socket or no host."""
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    host = parts.hostname or ""
    return "/".join(x for x in (host, database) if x) or "localhost"


def _error(source: str, line: int, reason: str, hint: str) -> UsageError:
    return UsageError("--fleet", f"{source}:{line}: {reason}", hint)
