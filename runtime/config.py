"""Settings for the CLI and the dev daemon, each resolved as flag > environment > default.

Only the CLI reads `os.environ`; everything here takes the environment as a mapping, so
tests pass a plain dict and nothing depends on the process that happens to run them.

==================  =====================  ===================================
setting             environment            default
==================  =====================  ===================================
``database_url``    ``DATABASE_URL``       none: start the embedded server
``packages``        (flag only)            ``<project>/packages_dev``
``data_dir``        ``RUNTIME_DATA_DIR``   ``<project>/.runtime``
``require_rls``     ``RUNTIME_REQUIRE_RLS`` off (``1``, ``true``, ``yes``, ``on``)
``lock_timeout``    ``RUNTIME_LOCK_TIMEOUT`` 5 seconds (``0``: wait forever)
``statement_timeout`` ``RUNTIME_STATEMENT_TIMEOUT`` none
``transaction``     ``RUNTIME_TRANSACTION`` ``all`` (``package``, ``migration``)
==================  =====================  ===================================

The dev daemon's ``lock_timeout`` defaults to 1 second (`DEV_LOCK_TIMEOUT`) instead: a
reload must not queue the application's queries behind it, and it retries by itself.

An empty environment variable counts as unset, as `DATABASE_URL=` in a shell or a
`.env` file usually means "not this time".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "DATABASE_URL_ENV",
    "DATA_DIR_ENV",
    "DEFAULT_LOCK_TIMEOUT",
    "DEV_LOCK_TIMEOUT",
    "LOCK_TIMEOUT_ENV",
    "REQUIRE_RLS_ENV",
    "STATEMENT_TIMEOUT_ENV",
    "TRANSACTION_ENV",
    "Settings",
    "TransactionMode",
    "resolve_settings",
    "seconds",
]

DATABASE_URL_ENV = "DATABASE_URL"
DATA_DIR_ENV = "RUNTIME_DATA_DIR"
REQUIRE_RLS_ENV = "RUNTIME_REQUIRE_RLS"
LOCK_TIMEOUT_ENV = "RUNTIME_LOCK_TIMEOUT"
STATEMENT_TIMEOUT_ENV = "RUNTIME_STATEMENT_TIMEOUT"
TRANSACTION_ENV = "RUNTIME_TRANSACTION"
#: How long a statement of a run may wait for a lock: long enough for an ordinary
#: transaction to end, short enough that the queries queued behind the waiting ALTER
#: TABLE (which takes its place in the lock queue) do not take the application down.
DEFAULT_LOCK_TIMEOUT = 5.0
#: The dev daemon's: a reload waiting on an application's open transaction gives up
#: after a second, says who blocks it, and tries again (`runtime.dev.daemon`).
DEV_LOCK_TIMEOUT = 1.0
_SECONDS = "give a number of seconds, 0 for none"
# PostgreSQL keeps timeouts as an int of milliseconds.
_MAX_SECONDS = 2_147_483
_TRUE = frozenset({"1", "true", "yes", "on"})

_NO_ENVIRONMENT: Mapping[str, str] = MappingProxyType({})


class TransactionMode(enum.StrEnum):
    """What `migrate` commits together (`runtime.core.plan.split_transactions`)."""

    ALL = "all"  #: the whole run: it applies everything, or nothing
    PACKAGE = "package"  #: each package's migrations and record, package after package
    MIGRATION = "migration"  #: each migration on its own, its package's record with its last


@dataclass(frozen=True)
class Settings:
    """Where the database is, where packages are loaded from, and where state is kept.

    Attributes:
        database_url: A `postgresql://` URL, or None to use the embedded server.
        packages: Directories the dev loader imports packages from, absolute.
        data_dir: Directory for the embedded server's data and other local state, absolute.
        require_rls: The platform's policy that every package uses row-level security.
        lock_timeout, statement_timeout: Seconds a statement may wait for a lock, or
            run; None for no limit.
        application_name: How its connections are named in `pg_stat_activity`.
        transaction: What `migrate` commits together.
    """

    database_url: str | None
    packages: tuple[Path, ...]
    data_dir: Path
    require_rls: bool = False
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT
    statement_timeout: float | None = None
    application_name: str = "ydtb-runtime"
    transaction: TransactionMode = TransactionMode.ALL

    def server_settings(self) -> dict[str, str]:
        """The session settings of every connection the runtime opens."""
        found = {"application_name": self.application_name}
        if self.lock_timeout:
            found["lock_timeout"] = f"{round(self.lock_timeout * 1000)}ms"
        if self.statement_timeout:
            found["statement_timeout"] = f"{round(self.statement_timeout * 1000)}ms"
        return found


def resolve_settings(
    *,
    database_url: str | None = None,
    packages: Sequence[str | Path] | None = None,
    data_dir: str | Path | None = None,
    require_rls: bool = False,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    application_name: str = "ydtb-runtime",
    transaction: str | None = None,
    default_lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    environ: Mapping[str, str] = _NO_ENVIRONMENT,
    project_dir: Path | None = None,
) -> Settings:
    """Resolve every setting from its flag, then `environ`, then its default.

    Args:
        database_url: The `--database-url` flag, if given.
        packages: The `--packages` flags, if given.
        data_dir: The `--data-dir` flag, if given.
        require_rls: The `--require-rls` flag.
        lock_timeout, statement_timeout: The `--lock-timeout` and `--statement-timeout`
            flags, in seconds (0: none).
        application_name: How its connections are named in `pg_stat_activity`.
        transaction: The `--transaction` flag: `all`, `package` or `migration`.
        default_lock_timeout: The lock timeout when neither flag nor environment gives
            one: `DEV_LOCK_TIMEOUT` for the dev daemon.
        environ: The environment to read; the CLI passes `os.environ`.
        project_dir: Base of the defaults and of relative paths; the current directory
            when None (read at call time, not at import).

    Returns:
        The resolved settings, with absolute paths.

    Raises:
        ValueError: an environment variable's value is not one the setting takes.
    """
    base = (project_dir or Path.cwd()).absolute()
    return Settings(
        database_url=_database_url(database_url, environ),
        packages=_packages(packages, base),
        data_dir=_data_dir(data_dir, environ, base),
        require_rls=require_rls
        or (_from_environ(environ, REQUIRE_RLS_ENV) or "").lower() in _TRUE,
        lock_timeout=_seconds(lock_timeout, environ, LOCK_TIMEOUT_ENV, default_lock_timeout),
        statement_timeout=_seconds(statement_timeout, environ, STATEMENT_TIMEOUT_ENV, None),
        application_name=application_name,
        transaction=_transaction(transaction, environ),
    )


def _transaction(flag: str | None, environ: Mapping[str, str]) -> TransactionMode:
    """The transaction mode from the flag, then the environment; `all` by default.

    Raises:
        ValueError: the value names no mode.
    """
    text = flag or _from_environ(environ, TRANSACTION_ENV)
    if text is None:
        return TransactionMode.ALL
    try:
        return TransactionMode(text.lower())
    except ValueError:
        modes = ", ".join(m.value for m in TransactionMode)
        raise ValueError(f"{TRANSACTION_ENV}={text!r} is not a transaction mode; "
                         f"give one of {modes}") from None


def _seconds(
    flag: float | None, environ: Mapping[str, str], name: str, default: float | None
) -> float | None:
    """A duration in seconds from the flag, then `environ[name]`; 0 means none.

    Raises:
        ValueError: the environment's value is not a number of seconds.
    """
    if flag is not None:
        return flag or None
    text = _from_environ(environ, name)
    if text is None:
        return default
    try:
        value = seconds(text)
    except ValueError as exc:
        raise ValueError(f"{name}={exc}; {_SECONDS}") from None
    return value or None


def seconds(text: str) -> float:
    """Read a timeout given in seconds, as PostgreSQL can take it.

    Raises:
        ValueError: not a finite number, negative, or beyond PostgreSQL's limit; the
            message starts with the text given, quoted, and says which.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if value != value or value < 0:  # NaN compares unequal to itself
        raise ValueError(f"{text!r} is {'negative' if value < 0 else 'not a number'}")
    if value > _MAX_SECONDS:
        raise ValueError(f"{text!r} is more than PostgreSQL's limit of {_MAX_SECONDS} "
                         "seconds, about 24 days")
    return value


def _from_environ(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or None


def _database_url(flag: str | None, environ: Mapping[str, str]) -> str | None:
    return flag or _from_environ(environ, DATABASE_URL_ENV)


def _packages(flag: Sequence[str | Path] | None, base: Path) -> tuple[Path, ...]:
    if not flag:
        return (base / "packages_dev",)
    # An absolute path on the right of `/` replaces the base, so both kinds work.
    return tuple(base / path for path in flag)


def _data_dir(flag: str | Path | None, environ: Mapping[str, str], base: Path) -> Path:
    chosen = flag or _from_environ(environ, DATA_DIR_ENV)
    return base / chosen if chosen else base / ".runtime"
