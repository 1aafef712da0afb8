"""Installed packages: an editable install is loaded afresh from its source directory."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import editable_install, run_cli, write_package

from runtime.core.registry import DatabaseRegistry
from runtime.errors import PackageLoadError
from runtime.load import loader
from runtime.load.packages import migrations_directory


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`ydtb_inst` (package `@acme/inst`), installed editable; yields its directory."""
    with editable_install(tmp_path, monkeypatch, "ydtb_inst", name="@acme/inst",
                          tables={"ydtb_inst": []}) as directory:
        yield directory


def test_an_editable_install_is_found_with_its_directory(installed: Path) -> None:
    [found] = loader.editable()

    assert (found.directory, found.package, found.module, found.attr) == (
        installed.resolve(), "ydtb_inst", "ydtb_inst.package", "register")


def test_it_is_loaded_from_its_directory_and_its_migrations_directory_is_known(
    installed: Path,
) -> None:
    registry = DatabaseRegistry()

    result = loader.load_all([], registry)

    assert result.packages == {str(installed.resolve()): ["@acme/inst"],
                               loader.ENTRY_POINT_GROUP: []}
    assert list(result.installed) == [installed.resolve()]
    source = registry.get("@acme/inst").source
    assert source == str(installed.resolve() / "package.py")
    assert migrations_directory(source) == installed.resolve() / "migrations"


def test_each_load_reads_the_files_afresh_even_through_absolute_imports(
    installed: Path,
) -> None:
    package_py = installed / "package.py"
    package_py.write_text(package_py.read_text().replace(
        "from .schema import metadata", "from ydtb_inst.schema import metadata"))
    import ydtb_inst.schema  # the application imported it: the load must not use it

    before = sys.modules["ydtb_inst.schema"]
    schema = installed / "schema.py"
    stat = schema.stat()
    # Same size, same modification time: a bytecode cache would not see the change.
    schema.write_text(schema.read_text().replace("ydtb_inst'", "ydtb_isnt'"))
    os.utime(schema, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    registry = DatabaseRegistry()

    loader.load_all([], registry)

    assert registry.get("@acme/inst").table_names == ("ydtb_isnt",)
    assert sys.modules["ydtb_inst.schema"] is before  # what was imported is put back
    assert ydtb_inst.schema.metadata.tables.keys() == {"ydtb_inst"}


def test_an_install_of_a_packages_directory_is_that_package_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = DatabaseRegistry()

    with editable_install(tmp_path, monkeypatch, "notes", name="@acme/notes") as directory:
        result = loader.load_all([tmp_path / "src"], registry)  # `--packages src`

    assert result.errors == []
    assert result.packages == {str(directory): ["@acme/notes"], loader.ENTRY_POINT_GROUP: []}
    assert result.installed == {}


def test_a_package_in_site_packages_is_imported_once_as_python_does(
    installed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "_site_directories", lambda: [installed.parent])
    registry = DatabaseRegistry()

    result = loader.load_all([], registry)

    assert result.installed == {}
    assert result.packages == {loader.ENTRY_POINT_GROUP: ["@acme/inst"]}
    assert registry.get("@acme/inst").source == (
        "entry point ydtb_inst (ydtb_inst.package:register)")
    assert migrations_directory(registry.get("@acme/inst").source) is None


def test_a_broken_editable_install_names_its_file_and_line(installed: Path) -> None:
    (installed / "schema.py").write_text("metadata = \n")

    result = loader.load_all([], DatabaseRegistry())

    [error] = result.errors
    assert isinstance(error, PackageLoadError)
    assert (error.path, error.line) == (str((installed / "schema.py").resolve()), 1)
    assert "ydtb_inst" not in sys.modules


def test_migrate_sees_a_migration_added_to_an_editable_install(
    installed: Path, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "packages_dev"
    write_package(root, "basic", name="@acme/basic")
    args = ["migrate", "--database-url", database_url, "--packages", str(root)]
    assert run_cli(*args)[0] == 0
    assert "unchanged since their last load" in run_cli(*args)[1]  # the load cache holds

    (installed / "migrations/0002_more.sql").write_text(
        "CREATE INDEX IF NOT EXISTS ydtb_inst_ws ON ydtb_inst (workspace_id);")
    code, out = run_cli(*args)

    assert code == 0, out
    assert "@acme/inst  0002_more" in out


def test_a_source_directory_gone_is_said_with_the_fix(installed: Path) -> None:
    [found] = loader.editable()
    shutil.rmtree(installed)

    with pytest.raises(PackageLoadError) as caught:
        loader.load_installed(found, DatabaseRegistry())

    assert str(caught.value) == (
        f"{installed.resolve()}: the source directory of the editable install entry point "
        "ydtb_inst (ydtb_inst.package:register) is gone (put it back, or uninstall its "
        "distribution with pip uninstall)")
