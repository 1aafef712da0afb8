"""PostgreSQL URLs as people write them, as SQLAlchemy wants them and as asyncpg does.

Every URL people give is `postgresql://...`; SQLAlchemy wants the asyncpg driver named in
it and asyncpg wants it not named, so `to_async_url` and `plain_url` translate. A unix
socket goes in the query (`postgresql://postgres@/postgres?host=/path/to/socketdir`),
which the embedded server's URLs use and both SQLAlchemy and asyncpg understand.
Standard library only: the no-op path (`runtime.db.quick`) connects with these.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["display_url", "hide_password", "plain_url", "to_async_url", "with_database"]

_ASYNC_SCHEME = "postgresql+asyncpg"
_PLAIN_SCHEMES = ("postgresql", "postgres")


def to_async_url(url: str) -> str:
    """Name the asyncpg driver in a PostgreSQL URL, for SQLAlchemy.

    Raises:
        ValueError: the URL is not a PostgreSQL URL.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme == _ASYNC_SCHEME:
        return url
    if sep and scheme in _PLAIN_SCHEMES:
        return f"{_ASYNC_SCHEME}://{rest}"
    raise ValueError(
        f"not a PostgreSQL URL: {hide_password(url)!r} "
        "(use postgresql://user:password@host:port/database)"
    )


def plain_url(url: str) -> str:
    """Drop the driver from a URL, for asyncpg and for people to read."""
    rest = to_async_url(url).partition("://")[2]
    return f"postgresql://{rest}"


def hide_password(url: str) -> str:
    """Return `url` with its password, in the user part or the query, shown as `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: hide the whole user part
        return re.sub(r"://[^/]*@", "://***@", url)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    netloc = f"{user}:***@{hostinfo}" if at and colon and password else parts.netloc
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        hidden = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(hidden, safe="/*"))
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, name: str) -> str:
    """Return `url` naming the database `name` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name, safe="")))


def display_url(url: str) -> str:
    """Return `url` as people write it: no driver, no password, `?host=/dir` unescaped."""
    parts = urlsplit(hide_password(plain_url(url)))
    # SQLAlchemy renders `?host=/run/x` as `?host=%2Frun%2Fx`; show it as people wrote it.
    return urlunsplit(parts._replace(query=unquote(parts.query)))
