"""URLs in the forms people, SQLAlchemy and asyncpg use (no database needed)."""

from __future__ import annotations

import pytest

from runtime.db.urls import display_url, hide_password, to_async_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("postgresql://u@h/db", "postgresql+asyncpg://u@h/db", id="postgresql"),
        pytest.param("postgres://u@h/db", "postgresql+asyncpg://u@h/db", id="postgres"),
        pytest.param("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db", id="asyncpg"),
        pytest.param(
            "postgresql://postgres@/postgres?host=/run/pg",
            "postgresql+asyncpg://postgres@/postgres?host=/run/pg",
            id="unix-socket",
        ),
    ],
)
def test_to_async_url_names_the_asyncpg_driver(url: str, expected: str) -> None:
    assert to_async_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///x.db", id="sqlite"),
        pytest.param("mysql://u:pw@h/db", id="mysql"),
        pytest.param("postgresql+psycopg://u@h/db", id="other-driver"),
        pytest.param("localhost:5432", id="no-scheme"),
    ],
)
def test_to_async_url_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL") as caught:
        to_async_url(url)

    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("postgresql://u:pw@h:5/db", "postgresql://u:***@h:5/db", id="password"),
        pytest.param("postgresql://u@h/db", "postgresql://u@h/db", id="no-password"),
        pytest.param("postgresql://h/db", "postgresql://h/db", id="no-user"),
        pytest.param(
            "postgresql://u@/db?host=/run/pg&password=pw",
            "postgresql://u@/db?host=/run/pg&password=***",
            id="password-in-query",
        ),
        pytest.param("postgresql://u:pw@[::1/db", "postgresql://***@[::1/db", id="unparsable"),
    ],
)
def test_hide_password(url: str, expected: str) -> None:
    assert hide_password(url) == expected


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+asyncpg://me:secret@db:5432/app", "postgresql://me:***@db:5432/app"),
    ("postgresql+asyncpg://postgres@/app?host=%2Frun%2Fpg", "postgresql://postgres@/app?host=/run/pg"),
], ids=["password", "socket"])
def test_display_url_is_how_people_write_it(url: str, shown: str) -> None:
    assert display_url(url) == shown
