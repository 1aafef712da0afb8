"""The load cache: a manifest kept while nothing the load read has changed."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import write_package

from runtime.core.manifest import Entry, Manifest
from runtime.load import cache

MANIFEST = Manifest((Entry("@ydtb/core", "1.0.0", "f0", (("0001_core_tables", "c0"),)),))
OLD = 1_700_000_000_000_000_000  # well before any scan: not "racy"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes")
    write_package(root, "tags", name="tags")
    for path in root.rglob("*"):
        os.utime(path, ns=(OLD, OLD))
    return root


def stored(root: Path, tmp_path: Path, *, entry_points: bool = False) -> Path:
    path = cache.cache_file(tmp_path / "data", [root], entry_points)
    cache.store(path, MANIFEST, cache.scan([root]), entry_points=entry_points)
    return path


def test_unchanged_sources_give_back_the_manifest(root: Path, tmp_path: Path) -> None:
    path = stored(root, tmp_path)
    assert cache.lookup(path, [root]) == MANIFEST


def test_an_edited_file_is_a_miss(root: Path, tmp_path: Path) -> None:
    path = stored(root, tmp_path)
    (root / "notes/schema.py").write_text("changed")
    assert cache.lookup(path, [root]) is None


def test_an_edit_keeping_size_and_time_is_a_miss_within_the_racy_window(
    root: Path, tmp_path: Path
) -> None:
    schema = root / "notes/schema.py"
    os.utime(schema)  # saved just now, as before a quick `migrate`
    path = stored(root, tmp_path)
    stat = schema.stat()
    schema.write_text(schema.read_text().replace("Integer", "BigInts"))
    os.utime(schema, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same tick, same size

    assert cache.lookup(path, [root]) is None


def test_a_dangling_link_is_a_miss_and_not_an_error(root: Path, tmp_path: Path) -> None:
    path = stored(root, tmp_path)
    (root / "notes/migrations/0002_linked.sql").symlink_to(tmp_path / "nowhere.sql")

    assert cache.lookup(path, [root]) is None  # the load then says what the link is


@pytest.mark.parametrize("change", ["new-file", "deleted-file", "new-package", "ignored"])
def test_files_coming_and_going(root: Path, tmp_path: Path, change: str) -> None:
    path = stored(root, tmp_path)
    if change == "new-file":
        (root / "notes/migrations/0002_more.sql").write_text("SELECT 1;")
    elif change == "deleted-file":
        (root / "tags/migrations/0001_create_ydtb_tags.sql").unlink()
    elif change == "new-package":
        write_package(root, "more", name="more")
    else:  # bytecode, hidden files and directories without package.py are not sources
        (root / "notes/__pycache__").mkdir()
        (root / "notes/__pycache__/schema.cpython-311.pyc").write_bytes(b"x")
        (root / "notes/.schema.py.swp").write_text("x")
        (root / "docs").mkdir()
        (root / "docs/readme.txt").write_text("x")

    assert (cache.lookup(path, [root]) is None) == (change != "ignored")


def test_a_changed_module_the_packages_imported_is_a_miss(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = tmp_path / "lib"
    helpers.mkdir()
    (helpers / "cache_test_helper.py").write_text("COLUMNS = 3\n")
    monkeypatch.syspath_prepend(str(helpers))
    importlib.import_module("cache_test_helper")
    try:
        path = stored(root, tmp_path)
        assert cache.lookup(path, [root]) == MANIFEST
        (helpers / "cache_test_helper.py").write_text("COLUMNS = 4\n")
        assert cache.lookup(path, [root]) is None
    finally:
        del sys.modules["cache_test_helper"]


def test_with_entry_points_an_installed_distribution_is_a_miss(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    path = stored(root, tmp_path, entry_points=True)
    assert cache.lookup(path, [root]) == MANIFEST
    (site / "extra-1.0.dist-info").mkdir()
    os.utime(site, ns=(OLD, OLD))  # a new mtime, whatever the clock's tick

    assert cache.lookup(path, [root]) is None


@pytest.mark.parametrize(("change", "miss"), [
    pytest.param(lambda site: (site / ".runtime/cache").mkdir(parents=True), False,
                 id="data-directory"),
    pytest.param(lambda site: (site / "notes.txt").write_text("x"), False, id="no-module"),
    pytest.param(lambda site: (site / "helper.py").write_text("x"), True, id="new-module"),
    pytest.param(lambda site: (site / "helper").mkdir(), True, id="new-package"),
    pytest.param(lambda site: (site / "extra.pth").write_text("x"), True, id="new-pth"),
    pytest.param(lambda site: os.utime(site / "old-1.0.dist-info", ns=(OLD + 1, OLD + 1)), True,
                 id="reinstalled"),
    pytest.param(lambda site: (site / "old-1.0.dist-info").rmdir(), True, id="removed"),
])
def test_with_entry_points_only_what_imports_or_installs_counts_in_sys_path(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Path], object], miss: bool,
) -> None:
    # The first run creates `.runtime/` in the project directory, on sys.path under
    # `python -m`: the second must still find the cache (#17).
    site = tmp_path / "site"
    (site / "old-1.0.dist-info").mkdir(parents=True)
    os.utime(site / "old-1.0.dist-info", ns=(OLD, OLD))
    os.utime(site, ns=(OLD, OLD))
    monkeypatch.syspath_prepend(str(site))
    path = stored(root, tmp_path, entry_points=True)
    assert cache.lookup(path, [root]) == MANIFEST

    change(site)
    os.utime(site, ns=(OLD + 1, OLD + 1))  # a new mtime, whatever the clock's tick

    assert (cache.lookup(path, [root]) is None) == miss


@pytest.mark.parametrize("content", ["", "{not json", '{"format": 0}', '{"format": 1}'])
def test_an_unreadable_or_foreign_cache_is_a_miss(
    root: Path, tmp_path: Path, content: str
) -> None:
    path = stored(root, tmp_path)
    path.write_text(content)
    assert cache.lookup(path, [root]) is None


def test_each_set_of_directories_has_its_own_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    one = cache.cache_file(data, [tmp_path / "a"], False)
    assert one != cache.cache_file(data, [tmp_path / "b"], False)
    assert one != cache.cache_file(data, [tmp_path / "a"], True)
    assert one == cache.cache_file(data, [tmp_path / "a"], False)


def test_only_the_newest_files_are_kept(root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for index in range(40):
        path = cache.cache_file(data, [root / str(index)], False)
        cache.store(path, MANIFEST, cache.scan([root]), entry_points=False)
    kept = list((data / "cache").glob("load-*.json"))
    assert len(kept) == 32
    assert path in kept


def source(directory: Path) -> str:
    return str(directory.resolve() / "package.py")


@pytest.mark.parametrize("change", ["none", "edited", "new-package", "deleted-package"])
def test_changes_name_the_directories_to_load(root: Path, tmp_path: Path, change: str) -> None:
    path = stored(root, tmp_path)
    if change == "edited":
        (root / "notes/migrations/0002_more.sql").write_text("SELECT 1;")
    elif change == "new-package":
        write_package(root, "more", name="more")
    elif change == "deleted-package":
        shutil.rmtree(root / "notes")

    found = cache.changes(path, [root])

    assert found is not None and found.manifest == MANIFEST
    assert found.directories == {"none": (), "edited": (root / "notes",),
                                 "new-package": (root / "more",),
                                 "deleted-package": ()}[change]
    kept = {source(root / "tags")} | (set() if change in ("edited", "deleted-package")
                                      else {source(root / "notes")})
    assert found.kept == kept
    assert found.unchanged(source(root / "tags"))
    assert found.unchanged("entry point extra (extra.package:register)")
    assert not found.unchanged(str(root / "gone" / "package.py"))


def test_changes_name_the_files_added_edited_and_deleted(root: Path, tmp_path: Path) -> None:
    path = stored(root, tmp_path)
    migrations = root / "notes/migrations"
    (migrations / "0002_more.sql").write_text("SELECT 1;")
    edited = next(migrations.glob("0001_*.sql"))
    edited.write_text(edited.read_text() + "-- edited\n")
    write_package(root, "more", name="more")

    found = cache.changes(path, [root])

    assert found is not None
    # A new directory is not in it: the cached set held none of its files to compare.
    assert found.edited == {root / "notes": {str(migrations / "0002_more.sql"), str(edited)}}


def test_changes_are_none_when_a_module_changed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = tmp_path / "lib"
    helpers.mkdir()
    (helpers / "changes_test_helper.py").write_text("COLUMNS = 3\n")
    monkeypatch.syspath_prepend(str(helpers))
    importlib.import_module("changes_test_helper")
    try:
        path = stored(root, tmp_path)
        assert cache.changes(path, [root]) is not None
        (helpers / "changes_test_helper.py").write_text("COLUMNS = 4\n")
        assert cache.changes(path, [root]) is None
    finally:
        del sys.modules["changes_test_helper"]


def test_changes_are_none_when_a_distribution_is_installed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    path = stored(root, tmp_path, entry_points=True)
    assert cache.changes(path, [root]) is not None
    (site / "extra-1.0.dist-info").mkdir()
    os.utime(site, ns=(OLD, OLD))

    assert cache.changes(path, [root]) is None


def test_changes_are_none_with_editable_installs_or_no_cache(root: Path, tmp_path: Path) -> None:
    path = cache.cache_file(tmp_path / "data", [root], False)
    assert cache.changes(path, [root]) is None
    cache.store(path, MANIFEST, cache.scan([root]), entry_points=False,
                installed=[root / "notes"])
    assert cache.changes(path, [root]) is None


def test_a_load_of_some_packages_keeps_the_modules_the_others_imported(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = tmp_path / "lib"
    helpers.mkdir()
    (helpers / "kept_test_helper.py").write_text("COLUMNS = 3\n")
    monkeypatch.syspath_prepend(str(helpers))
    importlib.import_module("kept_test_helper")
    path = stored(root, tmp_path)
    del sys.modules["kept_test_helper"]  # the next load imports only what changed
    cache.store(path, MANIFEST, cache.scan([root]), entry_points=False)

    (helpers / "kept_test_helper.py").write_text("COLUMNS = 4\n")

    assert cache.changes(path, [root]) is None


def test_changes_need_the_facts_of_the_same_store(root: Path, tmp_path: Path) -> None:
    path = stored(root, tmp_path)
    facts = path.with_name(path.name.replace("load-", "facts-"))
    assert cache.changes(path, [root]) is not None
    kept = facts.read_text()
    cache.store(path, MANIFEST, cache.scan([root]), entry_points=False)
    assert [e[6] for e in json.loads(path.read_text())["manifest"]] == [None]  # apart
    facts.write_text(kept)  # a store's facts beside another store's manifest

    assert cache.changes(path, [root]) is None
    facts.unlink()
    assert cache.changes(path, [root]) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(), lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(facts=st.lists(_JSON, min_size=1, max_size=6), changed=st.data())
def test_facts_written_back_as_read_are_what_encoding_them_afresh_writes(
    root: Path, tmp_path: Path, facts: list[object], changed: st.DataObject
) -> None:
    # A `migrate` of one package's new migration writes the others' lines as `changes`
    # read them (#17): the file must be the one a fresh encoding of every entry gives,
    # whatever the facts hold (line breaks in strings, U+2028, nesting).
    names = [f"@acme/p{i}" for i in range(len(facts))]
    manifest = Manifest(tuple(Entry(n, "1.0.0", f"f{i}", (), facts=f)
                              for i, (n, f) in enumerate(zip(names, facts, strict=True))))
    path = cache.cache_file(tmp_path / "data", [root], False)
    cache.store(path, manifest, cache.scan([root]), entry_points=False)
    found = cache.changes(path, [root])
    assert found is not None
    read = found.manifest
    assert [e.facts for e in read.entries] == facts
    index = changed.draw(st.integers(0, len(facts) - 1))
    new = changed.draw(_JSON)
    edited = Manifest(tuple(replace(e, facts=new) if i == index else e
                            for i, e in enumerate(read.entries)))
    facts_file = path.with_name(path.name.replace("load-", "facts-"))

    cache.store(path, edited, cache.scan([root]), entry_points=False)
    written = facts_file.read_bytes()
    cache._lines.clear()  # nothing read: every line encoded afresh
    cache.store(path, edited, cache.scan([root]), entry_points=False)

    assert written.split(b"\n")[1:] == facts_file.read_bytes().split(b"\n")[1:]
    again = cache.changes(path, [root])
    assert again is not None
    assert [e.facts for e in again.manifest.entries] == [e.facts for e in edited.entries]
