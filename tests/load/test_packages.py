"""The package-directory rule and the file filter, shared by every reader of the disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.load import packages


def _package(root: Path, name: str) -> Path:
    directory = root / name
    (directory / "migrations").mkdir(parents=True)
    (directory / "package.py").write_text("def register(registry): pass\n")
    return directory


@pytest.mark.parametrize(("path", "expected"), [
    ("notes/package.py", True),
    ("notes/migrations/0001_init.sql", True),
    ("notes/seed.json", True),
    ("notes", True),
    ("notes/__pycache__/schema.cpython-311.pyc", False),
    ("notes/schema.pyc", False),
    ("notes/.schema.py.swp", False),
    ("notes/schema.py~", False),
    ("notes/.#schema.py", False),
    ("notes/.git/HEAD", False),
    ("notes/node_modules/x.js", False),
    ("notes/flycheck_schema.py", False),
    ("notes/schema.py.___jb_tmp___", False),
], ids=lambda value: str(value))
def test_which_files_count(tmp_path: Path, path: str, expected: bool) -> None:
    assert packages.counts(tmp_path / path, tmp_path) is expected


def test_parts_above_the_root_are_not_judged(tmp_path: Path) -> None:
    root = tmp_path / ".hidden" / "packages_dev"
    assert packages.counts(root / "notes" / "schema.py", root)
    assert not packages.counts(root / "notes" / "schema.py")


def test_discover_lists_directories_with_package_py_sorted(tmp_path: Path) -> None:
    _package(tmp_path, "tasks")
    _package(tmp_path, "basic")
    _package(tmp_path, ".hidden")
    (tmp_path / "not_a_package").mkdir()
    (tmp_path / "loose.py").write_text("")

    assert packages.discover([tmp_path, tmp_path / "missing"]) == [
        tmp_path / "basic", tmp_path / "tasks"]


def test_any_package_tells_whether_a_root_holds_a_package(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "not_a_package").mkdir()
    _package(tmp_path / "some", ".hidden")

    assert not packages.any_package([tmp_path / "empty", tmp_path / "some", tmp_path / "no"])
    _package(tmp_path / "some", "notes")
    assert packages.any_package([tmp_path / "empty", tmp_path / "some"])


def test_files_walks_what_counts(tmp_path: Path) -> None:
    directory = _package(tmp_path, "notes")
    (directory / "migrations" / "0001_init.sql").write_text("SELECT 1")
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "package.cpython-311.pyc").write_bytes(b"")
    (directory / ".package.py.swp").write_text("")

    assert sorted(Path(path).relative_to(directory).as_posix()
                  for path in packages.files(directory)) == [
        "migrations/0001_init.sql", "package.py"]


def test_directory_of_names_the_roots_child(tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    assert packages.directory_of(tmp_path / "b" / "notes" / "migrations" / "x.sql",
                                 roots) == tmp_path / "b" / "notes"
    assert packages.directory_of(tmp_path / "b" / "gone", roots) == tmp_path / "b" / "gone"
    assert packages.directory_of(tmp_path / "b", roots) is None
    assert packages.directory_of(tmp_path / "c" / "notes", roots) is None


def test_only_a_package_directory_has_migrations_to_write_to(tmp_path: Path) -> None:
    directory = _package(tmp_path, "notes")

    assert packages.migrations_directory(str(directory / "package.py")) == (
        directory / "migrations")
    assert packages.migrations_directory("entry point tags (tags.package)") is None
    assert packages.migrations_directory(None) is None
    assert packages.migrations_directory(str(tmp_path / "other" / "package.py")) is None
