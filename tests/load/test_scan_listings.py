"""The load cache's scan lists again only the directories whose time changed (#17).

A scan given the listings of an earlier one (`known`) must find exactly what a scan
without them finds, whatever was created, deleted, renamed or edited in between.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.core.manifest import Entry, Manifest
from runtime.load import cache, packages

PAST = 1_700_000_000_000_000_000  # well before any scan: not "racy"


def _package(root: Path, name: str) -> Path:
    directory = root / name
    (directory / "migrations").mkdir(parents=True)
    (directory / "package.py").write_text("def register(registry): pass\n")
    (directory / "schema.py").write_text("# no tables\n")
    (directory / "migrations" / "0001_init.sql").write_text("SELECT 1;\n")
    return directory


def _age(root: Path, when: int) -> None:
    """Date every directory and file under `root` at `when`: long since changed."""
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(when, when), follow_symlinks=False)


def _files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _dirs_of(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


# One change to the tree: what it does, and a number choosing where.
_CHANGES = st.tuples(st.sampled_from([
    "add_file", "add_sql", "edit", "remove_file", "rename_file", "add_package",
    "remove_package", "add_subdirectory", "remove_package_py", "add_package_py",
    "add_ignored", "add_plain_directory",
]), st.integers(0, 1_000))


def _change(root: Path, kind: str, pick: int) -> None:
    directories = _dirs_of(root)
    files = _files_of(root)
    directory = directories[pick % len(directories)] if directories else None
    if kind == "add_package" or directory is None:
        name = f"p{pick}"
        while (root / name).exists():
            name += "x"
        _package(root, name)
    elif kind == "add_file":
        (directory / f"data{pick}.json").write_text("{}")
    elif kind == "add_sql" and (directory / "migrations").is_dir():
        (directory / "migrations" / f"{pick:04d}_more.sql").write_text("SELECT 2;")
    elif kind == "edit" and files:
        files[pick % len(files)].write_text(f"-- edited {pick}\n")
    elif kind == "remove_file" and files:
        files[pick % len(files)].unlink()
    elif kind == "rename_file" and files:
        source = files[pick % len(files)]
        source.rename(source.with_name(f"renamed{pick}_{source.name}"))
    elif kind == "remove_package":
        shutil.rmtree(directory)
    elif kind == "add_subdirectory":
        (directory / f"sub{pick}").mkdir(exist_ok=True)
        (directory / f"sub{pick}" / "helper.py").write_text("X = 1\n")
    elif kind == "remove_package_py":
        (directory / "package.py").unlink(missing_ok=True)
    elif kind == "add_package_py":
        (directory / "package.py").write_text("def register(registry): pass\n")
    elif kind == "add_ignored":
        (directory / f".schema.py.{pick}.swp").write_text("")
    elif kind == "add_plain_directory":
        (root / f"notes{pick}").mkdir(exist_ok=True)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(1, 4), rounds=st.lists(st.lists(_CHANGES, max_size=6), max_size=4))
def test_a_scan_from_known_listings_finds_what_a_full_scan_finds(
    tmp_path_factory: pytest.TempPathFactory, start: int,
    rounds: list[list[tuple[str, int]]],
) -> None:
    root = tmp_path_factory.mktemp("packages")
    for number in range(start):
        _package(root, f"p{number}")
    for turn, changes in enumerate(rounds):
        _age(root, PAST + turn * 1_000_000_000)  # a distinct time each round
        known = cache.scan([root]).listings
        # Every directory listed is old enough to keep.
        assert {str(root), *map(str, _dirs_of(root))} <= known.keys()
        for kind, pick in changes:
            _change(root, kind, pick)  # each sets the time of the directories it changes
        assert cache.scan([root], known=known).files == cache.scan([root]).files


def test_an_unchanged_directory_is_not_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "packages"
    for name in ("notes", "tags"):
        _package(root, name)
    _age(root, PAST)
    first = cache.scan([root])
    (root / "tags" / "migrations" / "0002_more.sql").write_text("SELECT 2;")
    listed: list[str] = []
    listing = packages.listing

    def counted(directory: str, follow: bool = False) -> Any:
        listed.append(os.path.relpath(directory, root))
        return listing(directory, follow)

    monkeypatch.setattr(packages, "listing", counted)

    again = cache.scan([root], known=first.listings)

    assert listed == ["tags/migrations"]  # the one directory whose time changed
    assert str(root / "tags" / "migrations" / "0002_more.sql") in again.files


def test_a_directory_changed_just_before_the_scan_is_not_kept(tmp_path: Path) -> None:
    # Its time may not change again for an entry added within the same clock tick.
    root = tmp_path / "packages"
    _package(root, "notes")
    _age(root, PAST)
    (root / "notes" / "migrations" / "0002_more.sql").write_text("SELECT 2;")

    listings = cache.scan([root]).listings

    assert str(root / "notes" / "migrations") not in listings
    assert listings[str(root / "notes")][0] == PAST


@pytest.mark.parametrize("damaged", [
    [], [1, 2], ["x", False, [], []], [0, False, "names", []], [0, False, [1], []], None,
    # Of the directory's very time: only the names are wrong.
    [PAST, False, [1], []], [PAST, False, ["package.py", None], []], [PAST, False, [], [b"x"]],
    [PAST, False, "package.py", []], [PAST, True, ["package.py"], ["migrations"]],
])
def test_a_damaged_listing_is_read_again(tmp_path: Path, damaged: Any) -> None:
    root = tmp_path / "packages"
    _package(root, "notes")
    _age(root, PAST)
    full = cache.scan([root])
    known = {**full.listings, str(root / "notes"): damaged}

    assert cache.scan([root], known=known).files == full.files


def test_a_cache_file_whose_listings_are_damaged_still_answers(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    _package(root, "notes")
    _age(root, PAST)
    path = cache.cache_file(tmp_path / "data", [root], False)
    manifest = Manifest((Entry("@ydtb/core", "1.0.0", "f0", (("0001_core_tables", "c0"),)),))
    cache.store(path, manifest, cache.scan([root]), entry_points=False)
    data = json.loads(path.read_text())
    data["listings"] = ["not", "a", "mapping"]
    path.write_text(json.dumps(data))

    assert cache.listings(path) == {}
    assert cache.lookup(path, [root]) == manifest  # listed afresh, the files unchanged
    assert cache.changes(path, [root]) is not None


def _grouped(files: dict[str, list[Any]], roots: list[Path]) -> dict[str | None, dict[str, Any]]:
    """Every file by its package directory (None: in none), the full computation."""
    groups: dict[str | None, dict[str, Any]] = {}
    for path, stat in files.items():
        root = next((r for r in roots if path.startswith(f"{r}/")), None)
        key = None if root is None else str(root / Path(path).relative_to(root).parts[0])
        groups.setdefault(key, {})[path] = stat
    return groups


def _full_changes(stored: dict[str, Any], current: dict[str, Any], roots: list[Path]) -> Any:
    """What `changes` must say, from both states grouped whole."""
    def same(path: str, a: list[Any] | None, b: list[Any] | None) -> bool:
        # One file as the cache compares it (its hash too, if written just before).
        return a is not None and b is not None and cache._same({path: a}, {path: b})

    before, after = _grouped(stored, roots), _grouped(current, roots)
    if before.pop(None, {}) != after.pop(None, {}):
        return None
    changed, edited = [], {}
    for directory, files in after.items():
        old = before.get(directory, {})
        differ = {path for path in old.keys() | files.keys()
                  if not same(path, old.get(path), files.get(path))}
        if differ:
            changed.append(directory)
            if directory in before:
                edited[Path(directory)] = frozenset(differ)
    kept = tuple(d for d in after if d not in changed)
    return tuple(Path(d) for d in sorted(changed)), kept, edited


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(1, 4), changes=st.lists(_CHANGES, max_size=8),
       aged=st.booleans(), second=st.sampled_from(["absent", "appears", "there"]))
def test_the_directories_that_changed_are_those_the_full_comparison_finds(
    tmp_path_factory: pytest.TempPathFactory, start: int, changes: list[tuple[str, int]],
    aged: bool, second: str,
) -> None:
    # `changes` places only the files that differ in their directory (#17); grouping
    # every file of both states must say the same: which directories changed, which
    # did not, and what changed in each the cache knew. Files just written keep a hash
    # (racy): `aged` dates them long before, so both kinds are compared.
    # A second root, absent or not, that may appear: what is in no package directory.
    base = tmp_path_factory.mktemp("changes")
    root, other = base / "packages", base / "more"
    root.mkdir()
    for number in range(start):
        _package(root, f"p{number}")
    if second == "there":
        _package(other, "q0")
    if aged:
        _age(base, PAST)
    roots = [root, other]
    path = cache.cache_file(base / "data", roots, False)
    manifest = Manifest((Entry("@ydtb/core", "1.0.0", "f0", (("0001_core_tables", "c0"),)),))
    cache.store(path, manifest, cache.scan(roots), entry_points=False)
    stored = json.loads(path.read_text())["packages"]
    for kind, pick in changes:
        _change(root, kind, pick)
    if second == "appears":
        _package(other, "q0")

    found = cache.changes(path, roots)
    expected = _full_changes(stored, cache.scan(roots).files, roots)

    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.directories, found.unchanged_directories, dict(found.edited)) == expected
