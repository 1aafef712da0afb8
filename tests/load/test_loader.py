"""Loading packages from directories and entry points (no database)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
from support import run_cli, write_package

from runtime import DatabaseRegistry, PackageLoadError, ValidationError
from runtime.load import loader

COUNTER_PY = '''\
from .schema import metadata
from .state import LOADS

LOADS.append(1)


def register(registry):
    registry.register_database(package_name="notes", schema=metadata,
                               version=str(len(LOADS)))
'''


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_package(tmp_path, "notes", name="notes", tables={"ydtb_notes": []})
    return tmp_path


def test_a_directory_registers_its_packages_with_their_source(root: Path) -> None:
    registry = DatabaseRegistry()

    assert loader.load_directory(root / "notes", registry) == ["notes"]
    assert registry.get("notes").source == str((root / "notes/package.py").resolve())


def test_every_load_is_a_fresh_import_with_no_module_state(root: Path) -> None:
    (root / "notes/state.py").write_text("LOADS = []\n")
    (root / "notes/package.py").write_text(COUNTER_PY)

    versions = [loader.load_directory(root / "notes", registry := DatabaseRegistry()) and
                str(registry.get("notes").version) for _ in range(3)]

    assert versions == ["1", "1", "1"]
    assert not [name for name in sys.modules if name.startswith("_ydtb_dev_")]


def test_an_edit_within_the_same_second_and_size_is_seen(root: Path) -> None:
    schema = root / "notes/schema.py"
    loader.load_directory(root / "notes", DatabaseRegistry())
    stat = schema.stat()
    # Same length, same mtime: exactly what a bytecode cache takes for "unchanged".
    schema.write_text(schema.read_text().replace("'ydtb_notes'", "'ydtb_memos'"))
    os.utime(schema, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    registry = DatabaseRegistry()
    loader.load_directory(root / "notes", registry)

    assert registry.get("notes").table_names == ("ydtb_memos",)


@pytest.mark.parametrize(("source", "line", "reason"), [
    ("def register(registry):\n    return (\n", 2, "SyntaxError: '(' was never closed"),
    ("import json\nraise RuntimeError('boom')\n", 2, "RuntimeError: boom"),
    # Modules named as the package's code names them, not as the loader imports them.
    ("from .missing import thing\n", 1, "ModuleNotFoundError: No module named 'missing' "),
    ("from .schema import nothing_there\n", 1,
     "ImportError: cannot import name 'nothing_there' from 'schema' ("),
    ("X = 1\n", None, "defines no register(registry) function"),
], ids=["syntax", "raises", "missing-module", "missing-name", "no-register"])
def test_a_broken_package_names_the_file_and_line(
    root: Path, source: str, line: int | None, reason: str
) -> None:
    package_py = root / "notes/package.py"
    package_py.write_text(source)

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.line) == (str(package_py.resolve()), line)
    assert reason in str(caught.value)
    assert str(caught.value).endswith("(fix the file and save it again)")


def test_an_error_raised_in_a_sibling_module_points_at_it(root: Path) -> None:
    (root / "notes/schema.py").write_text("metadata = None\nraise ValueError('bad schema')\n")

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.line) == (str((root / "notes/schema.py").resolve()), 2)


@pytest.mark.parametrize(("content", "line", "reason"), [
    (b"metadata = None\n\xff\xfe\x00garbage", 2, "null bytes"),
    (b"\xff\xfegarbage\n", 1, "SyntaxError"),
], ids=["null-bytes", "not-utf-8"])
def test_a_binary_file_saved_over_a_sibling_module_is_named(
    root: Path, content: bytes, line: int, reason: str
) -> None:
    # Python 3.11 names no file for a NUL byte: the error pointed at package.py.
    (root / "notes/schema.py").write_bytes(content)

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.line) == (str((root / "notes/schema.py").resolve()),
                                                      line)
    assert reason in str(caught.value)


def test_a_validation_error_passes_through_with_its_problems(root: Path) -> None:
    schema = root / "notes/schema.py"
    schema.write_text(schema.read_text().replace("'ydtb_notes'", "'notes'"))

    with pytest.raises(ValidationError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert [p.code for p in caught.value.problems] == ["Y101"]


def test_load_all_collects_errors_and_loads_the_rest(root: Path) -> None:
    write_package(root, "tags", name="tags", deps=["notes"])
    (root / "broken").mkdir()
    (root / "broken/package.py").write_text("def register(:\n")
    (root / "not_a_package").mkdir()
    registry = DatabaseRegistry()

    result = loader.load_all([root], registry, entry_points=False)

    assert sorted(result.packages.values()) == [["notes"], ["tags"]]
    assert [type(e).__name__ for e in result.errors] == ["PackageLoadError"]
    assert [p.name for p in registry.ordered()] == ["@ydtb/core", "notes", "tags"]


def test_installed_packages_register_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_package(tmp_path, "ydtb_installed", name="installed", tables={"ydtb_inst": []})
    (tmp_path / "ydtb_installed/__init__.py").write_text("from .package import register\n")
    info = tmp_path / "ydtb_installed-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ydtb-installed\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[runtime.packages]\ninstalled = ydtb_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = DatabaseRegistry()
    try:
        assert loader.load_entry_points(registry) == ["installed"]
        assert registry.get("installed").source == "entry point installed (ydtb_installed)"
    finally:
        for name in [n for n in sys.modules if n.startswith("ydtb_installed")]:
            del sys.modules[name]


@pytest.mark.parametrize(("body", "reason"), [
    ("raise SystemExit(3)", "the package called sys.exit(3); raise an exception instead"),
    ("import sys; sys.exit()", "the package called sys.exit(None); raise an exception instead"),
    ("raise KeyboardInterrupt", "the package raised KeyboardInterrupt; raise another "
                                "exception instead"),
], ids=["system-exit", "sys-exit", "keyboard-interrupt"])
async def test_a_register_that_exits_is_a_load_error(root: Path, body: str, reason: str) -> None:
    package_py = root / "notes/package.py"
    package_py.write_text(f"def register(registry):\n    {body}\n")

    # As `migrate` and the daemon load: in a worker thread.
    result = await asyncio.to_thread(loader.load_all, [root], DatabaseRegistry(),
                                     entry_points=False)

    [error] = result.errors
    assert isinstance(error, PackageLoadError)
    assert (error.path, error.line, error.reason) == (str(package_py.resolve()), 2, reason)


def test_ctrl_c_on_the_main_thread_still_stops_a_load(root: Path) -> None:
    (root / "notes/package.py").write_text("def register(registry):\n    raise KeyboardInterrupt\n")

    with pytest.raises(KeyboardInterrupt):
        loader.load_directory(root / "notes", DatabaseRegistry())


def test_a_migration_that_is_not_utf8_is_named_with_its_line(root: Path) -> None:
    migration = root / "notes/migrations/0002_latin1.sql"
    migration.write_bytes("-- ok\nSELECT 'caf\xe9';\n".encode("latin-1"))

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.line) == (str(migration), 2)
    assert caught.value.reason == "not UTF-8 text (byte 18); save it as UTF-8"


def test_a_migration_holding_a_nul_character_is_named_with_its_line(root: Path) -> None:
    migration = root / "notes/migrations/0002_nul.sql"
    migration.write_bytes(b"-- ok\nSELECT 1;\0\n")

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.line) == (str(migration), 2)
    assert caught.value.reason == ("holds a NUL character, which PostgreSQL does not take in "
                                   "SQL; remove it")


def test_a_dangling_link_among_the_migrations_is_named_not_skipped(root: Path) -> None:
    migration = root / "notes/migrations/0002_linked.sql"
    migration.symlink_to(root / "elsewhere.sql")

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.reason) == (
        str(migration), f"links to {root / 'elsewhere.sql'}, which does not exist; fix the "
                        "link or remove it")


def test_two_directories_registering_one_name_is_an_error_naming_both(root: Path) -> None:
    shutil.copytree(root / "notes", root / "notes_copy")  # a copy keeps the original's name
    registry = DatabaseRegistry()

    result = loader.load_all([root], registry, entry_points=False)

    original = (root / "notes/package.py").resolve()
    copy = (root / "notes_copy/package.py").resolve()
    assert result.packages == {str(root / "notes"): ["notes"]}
    [error] = result.errors
    assert isinstance(error, ValidationError)
    assert [str(p) for p in error.problems] == [
        f"notes: registered by two sources, {original} and {copy} (a package belongs to one "
        f"directory; a copy keeps its original's name: give {copy} a package_name of its "
        "own, or remove one of them) [Y209]"]
    assert registry.get("notes").source == str(original)


def test_a_migration_made_wrong_in_package_code_is_named_with_its_line(root: Path) -> None:
    package_py = root / "notes/package.py"
    package_py.write_text("from runtime import Migration\n\n\ndef register(registry):\n"
                          "    Migration(5, 'SELECT 1')\n")

    with pytest.raises(PackageLoadError) as caught:
        loader.load_directory(root / "notes", DatabaseRegistry())

    assert (caught.value.path, caught.value.line) == (str(package_py.resolve()), 5)
    assert caught.value.reason.startswith("runtime.Migration: id is 5, not a string")


def test_a_package_raising_keyboard_interrupt_under_the_cli_is_a_load_error(
    root: Path,
) -> None:
    """The CLI handles Ctrl-C itself (it cancels the command), so a KeyboardInterrupt in
    a load is the package's: said as a load error, not as the user stopping `check`."""
    package_py = root / "notes/package.py"
    package_py.write_text("def register(registry):\n    raise KeyboardInterrupt\n")

    code, out = run_cli("check", "--packages", str(root), "--no-entry-points", "--no-cache")

    assert code == 1, out
    assert "the package raised KeyboardInterrupt; raise another exception instead" in out
