"""The lint kept by content: read back only for the same migrations and the same rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from runtime import DatabaseRegistry, Migration
from runtime.core import lint
from runtime.core.model import Package
from runtime.load import lints

CREATE = "CREATE TABLE ydtb_notes (id int, body text);"


def package(name: str, *migrations: Migration) -> Package:
    registry = DatabaseRegistry(send_signals=False)
    return registry.register_database(package_name=name, schema=MetaData(),
                                      version="1.0.0", migrations=list(migrations))


async def up(conn: object) -> None:
    """A Python migration: listed by the lint, not read."""


@pytest.fixture
def packages() -> list[Package]:
    return [
        package("notes", Migration("0001_create", CREATE),
                Migration("0002_index", "\n\nCREATE INDEX ix_body ON ydtb_notes (body);"),
                Migration("0003_drop", "ALTER TABLE ydtb_notes DROP COLUMN body;")),
        package("tags", Migration("0001_create", "CREATE TABLE ydtb_tags (id int);"),
                Migration("0002_python", up),
                Migration("0003_lock", ["LOCK TABLE ydtb_tags;"], transactional=True)),
    ]


@pytest.fixture
def linted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The packages linted from now on, rather than read from the file."""
    names: list[str] = []
    lint_package = lint.lint_package

    def counted(name: str, *args: object, **kwargs: object) -> lint.PackageLint:
        names.append(name)
        return lint_package(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lint, "lint_package", counted)
    return names


def test_what_is_kept_is_what_the_lint_finds(
    packages: list[Package], tmp_path: Path, linted: list[str]
) -> None:
    path = lints.lint_file(tmp_path, [tmp_path / "packages"])
    expected = lint.lint_all(packages)
    assert {f.code for p in expected for f in p.findings} == {"Y510", "Y522", "Y526"}
    assert expected[0].breaking and expected[1].python == ("0002_python",)
    first = lints.lint_kept(packages, path)
    linted.clear()

    second = lints.lint_kept(packages, path)

    assert linted == []
    assert second == first == expected


def test_a_package_with_an_edited_migration_is_linted_again(
    packages: list[Package], tmp_path: Path, linted: list[str]
) -> None:
    path = tmp_path / "lint.json"
    lints.lint_kept(packages, path)
    # Two more newlines: the same checksum, but the finding is two lines further down.
    edited = package("notes", Migration("0001_create", CREATE),
                     Migration("0002_index", "\n\n\n\nCREATE INDEX ix_body ON ydtb_notes (body);"),
                     packages[0].migrations[2])
    linted.clear()

    found = lints.lint_kept([edited, packages[1]], path)

    assert linted == ["notes"]
    assert found == lint.lint_all([edited, packages[1]])
    assert [f.line for f in found[0].findings if f.code == "Y510"] == [5]


def test_other_rules_lint_everything_again(
    packages: list[Package], tmp_path: Path, linted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lint.json"
    lints.lint_kept(packages, path)
    monkeypatch.setattr(lints, "_salt", lambda: b"the rules of another version")
    linted.clear()

    assert lints.lint_kept(packages, path) == lint.lint_all(packages)
    assert linted == ["notes", "tags", "notes", "tags"]  # and lint_all's own


@pytest.mark.parametrize("content", [
    pytest.param("{not json", id="not-json"),
    pytest.param('{"format": 1, "lints": []}', id="not-a-mapping"),
    pytest.param('{"format": 0, "lints": {}}', id="another-format"),
])
def test_a_damaged_file_is_linted_again_silently(
    packages: list[Package], tmp_path: Path, linted: list[str], content: str
) -> None:
    path = tmp_path / "lint.json"
    path.write_text(content)

    assert lints.lint_kept(packages, path) == lint.lint_all(packages)
    assert lints.lint_kept(packages, path) == lint.lint_all(packages)
    assert linted == ["notes", "tags"] * 3  # once by the first call, then by lint_all


def test_a_damaged_entry_is_linted_again(
    packages: list[Package], tmp_path: Path, linted: list[str]
) -> None:
    path = tmp_path / "lint.json"
    lints.lint_kept(packages, path)
    data = json.loads(path.read_text())
    first = next(iter(data["lints"]))
    data["lints"][first] = [[["Y510", "notes", "0002_index", "line two"]], [], []]
    path.write_text(json.dumps(data))
    linted.clear()

    assert lints.lint_kept(packages, path) == lint.lint_all(packages)
    assert linted == ["notes", "notes", "tags"]  # then lint_all's


def test_a_file_that_cannot_be_written_only_lints(
    packages: list[Package], tmp_path: Path
) -> None:
    (tmp_path / "data").write_text("a file, not a directory")

    assert lints.lint_kept(packages, tmp_path / "data/cache/lint.json") == \
        lint.lint_all(packages)
