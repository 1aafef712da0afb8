from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.config import DEV_LOCK_TIMEOUT, Settings, TransactionMode, resolve_settings

PROJECT = Path("/work/project")
FLAG_URL = "postgresql://flag@db/app"
ENV_URL = "postgresql://env@db/app"


@pytest.mark.parametrize(
    ("flags", "environ", "field", "expected"),
    [
        pytest.param({}, {}, "database_url", None, id="url-default-is-embedded"),
        pytest.param({}, {"DATABASE_URL": ENV_URL}, "database_url", ENV_URL, id="url-env"),
        pytest.param(
            {"database_url": FLAG_URL},
            {"DATABASE_URL": ENV_URL},
            "database_url",
            FLAG_URL,
            id="url-flag-beats-env",
        ),
        pytest.param({}, {"DATABASE_URL": ""}, "database_url", None, id="url-empty-env-unset"),
        pytest.param({}, {}, "data_dir", PROJECT / ".runtime", id="data-dir-default"),
        pytest.param(
            {}, {"RUNTIME_DATA_DIR": "/var/rt"}, "data_dir", Path("/var/rt"), id="data-dir-env"
        ),
        pytest.param(
            {}, {"RUNTIME_DATA_DIR": "state"}, "data_dir", PROJECT / "state",
            id="data-dir-env-relative-to-project",
        ),
        pytest.param(
            {"data_dir": "/flag"},
            {"RUNTIME_DATA_DIR": "/var/rt"},
            "data_dir",
            Path("/flag"),
            id="data-dir-flag-beats-env",
        ),
        pytest.param(
            {}, {"RUNTIME_DATA_DIR": ""}, "data_dir", PROJECT / ".runtime",
            id="data-dir-empty-env-unset",
        ),
        pytest.param({}, {}, "packages", (PROJECT / "packages_dev",), id="packages-default"),
        pytest.param(
            {"packages": ["pkgs", Path("/abs/more")]},
            {},
            "packages",
            (PROJECT / "pkgs", Path("/abs/more")),
            id="packages-flag-relative-and-absolute",
        ),
        pytest.param({}, {}, "transaction", TransactionMode.ALL, id="transaction-default-all"),
        pytest.param({}, {"RUNTIME_TRANSACTION": "Package"}, "transaction",
                     TransactionMode.PACKAGE, id="transaction-env"),
        pytest.param({"transaction": "migration"}, {"RUNTIME_TRANSACTION": "package"},
                     "transaction", TransactionMode.MIGRATION, id="transaction-flag-beats-env"),
        pytest.param({}, {}, "lock_timeout", 5.0, id="lock-timeout-default"),
        pytest.param({"default_lock_timeout": DEV_LOCK_TIMEOUT}, {}, "lock_timeout", 1.0,
                     id="lock-timeout-dev-default"),
        pytest.param({"default_lock_timeout": DEV_LOCK_TIMEOUT},
                     {"RUNTIME_LOCK_TIMEOUT": "3"}, "lock_timeout", 3.0,
                     id="lock-timeout-env-beats-dev-default"),
    ],
)  # fmt: skip
def test_setting_is_resolved_flag_then_environment_then_default(
    flags: dict[str, Any], environ: dict[str, str], field: str, expected: object
) -> None:
    settings = resolve_settings(**flags, environ=environ, project_dir=PROJECT)

    assert getattr(settings, field) == expected


def test_defaults_are_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = resolve_settings()

    assert settings == Settings(
        database_url=None, packages=(tmp_path / "packages_dev",), data_dir=tmp_path / ".runtime"
    )


def test_settings_are_frozen() -> None:
    settings = resolve_settings(project_dir=PROJECT)

    with pytest.raises(AttributeError):
        settings.database_url = FLAG_URL  # type: ignore[misc]


@pytest.mark.parametrize(("environ", "message"), [
    pytest.param({"RUNTIME_TRANSACTION": "each"}, "RUNTIME_TRANSACTION='each' is not a "
                 "transaction mode; give one of all, package, migration", id="transaction"),
    pytest.param({"RUNTIME_LOCK_TIMEOUT": "soon"}, "RUNTIME_LOCK_TIMEOUT='soon' is not a "
                 "number of seconds; give a number of seconds, 0 for none", id="seconds"),
    pytest.param({"RUNTIME_LOCK_TIMEOUT": "nan"}, "RUNTIME_LOCK_TIMEOUT='nan' is not a "
                 "number; give a number of seconds, 0 for none", id="nan"),
    pytest.param({"RUNTIME_STATEMENT_TIMEOUT": "inf"}, "RUNTIME_STATEMENT_TIMEOUT='inf' is "
                 "more than PostgreSQL's limit of 2147483 seconds, about 24 days; give a "
                 "number of seconds, 0 for none", id="inf"),
    pytest.param({"RUNTIME_LOCK_TIMEOUT": "-2"}, "RUNTIME_LOCK_TIMEOUT='-2' is negative; "
                 "give a number of seconds, 0 for none", id="negative"),
])  # fmt: skip
def test_a_bad_environment_value_says_what_to_give(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        resolve_settings(environ=environ, project_dir=PROJECT)


@pytest.mark.parametrize("given", ["nan", "inf", "1e400", "99999999999", "-1", "soon"])
def test_a_timeout_flag_out_of_postgresql_range_is_a_usage_error(given: str) -> None:
    result = subprocess.run([sys.executable, "-m", "runtime", "migrate", "--lock-timeout",
                             given, "--plan"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr  # argparse's usage error, no traceback
    assert f"argument --lock-timeout: {given!r} is " in result.stderr
    assert "Traceback" not in result.stderr
