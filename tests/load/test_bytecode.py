"""Package code kept compiled by content: loads read it back, never a stale or damaged one."""

from __future__ import annotations

import marshal
import os
from pathlib import Path
from types import CodeType

import pytest
from support import write_package

from runtime import DatabaseRegistry
from runtime.load import bytecode, loader


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "packages"
    write_package(root, "notes", name="notes", tables={"ydtb_notes": []})
    write_package(root, "tags", name="tags", tables={"ydtb_tags": []})
    return root


@pytest.fixture
def store(tmp_path: Path, root: Path) -> Path:
    return bytecode.bytecode_file(tmp_path / "data", [root])


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files compiled from source from now on (the in-memory cache left out)."""
    compiled: list[str] = []

    def compile_afresh(path: str, source: bytes) -> CodeType:
        compiled.append(Path(path).name)
        return compile(source, path, "exec", dont_inherit=True)

    monkeypatch.setattr(bytecode, "compiled", compile_afresh)
    return compiled


def load(root: Path, store: Path | None) -> DatabaseRegistry:
    registry = DatabaseRegistry()
    result = loader.load_all([root], registry, entry_points=False, bytecode=store)
    assert not result.errors
    return registry


def fingerprints(registry: DatabaseRegistry) -> dict[str, str]:
    return {p.name: p.fingerprint for p in registry.ordered()}


def test_a_second_load_reads_the_code_the_first_compiled(
    root: Path, store: Path, compiles: list[str]
) -> None:
    first = load(root, store)
    assert sorted(compiles) == ["package.py", "package.py", "schema.py", "schema.py"]
    compiles.clear()

    second = load(root, store)

    assert compiles == []
    assert fingerprints(second) == fingerprints(first) == fingerprints(load(root, None))


def test_an_edit_is_compiled_even_with_the_same_size_and_time(
    root: Path, store: Path, compiles: list[str]
) -> None:
    load(root, store)
    schema = root / "notes/schema.py"
    stat = schema.stat()
    schema.write_text(schema.read_text().replace("'ydtb_notes'", "'ydtb_memos'"))
    os.utime(schema, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    compiles.clear()

    registry = load(root, store)

    assert compiles == ["schema.py"]
    assert registry.get("notes").table_names == ("ydtb_memos",)


def test_the_file_keeps_only_the_code_the_last_load_used(root: Path, store: Path) -> None:
    load(root, store)
    (root / "tags/schema.py").write_text((root / "tags/schema.py").read_text() + "\n# edited\n")
    load(root, store)

    entries = marshal.loads(store.read_bytes()[len(bytecode._HEADER):])

    assert len(entries) == 4  # two package.py, two schema.py: not the tags schema before


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
    pytest.param(lambda data: b"not bytecode", id="garbage"),
    pytest.param(lambda data: b"\0\0\0\0" + data[4:], id="another-python"),
    pytest.param(lambda data: bytecode._HEADER + marshal.dumps([1, 2]), id="not-a-mapping"),
])
def test_a_damaged_file_is_compiled_again_silently(
    root: Path, store: Path, compiles: list[str], damage: object
) -> None:
    expected = fingerprints(load(root, store))
    store.write_bytes(damage(store.read_bytes()))  # type: ignore[operator]
    compiles.clear()

    registry = load(root, store)

    assert len(compiles) == 4
    assert fingerprints(registry) == expected
    assert len(marshal.loads(store.read_bytes()[len(bytecode._HEADER):])) == 4  # kept again


def test_a_damaged_entry_is_compiled_again(
    root: Path, store: Path, compiles: list[str]
) -> None:
    expected = fingerprints(load(root, store))
    entries = marshal.loads(store.read_bytes()[len(bytecode._HEADER):])
    broken = {key: b"\xff" + value[1:5] for key, value in entries.items()}
    store.write_bytes(bytecode._HEADER + marshal.dumps(broken))
    compiles.clear()

    assert fingerprints(load(root, store)) == expected
    assert len(compiles) == 4


def test_a_file_moved_elsewhere_is_not_given_the_old_path(
    root: Path, tmp_path: Path, compiles: list[str]
) -> None:
    store = tmp_path / "data/cache/bytecode.bin"
    load(root, store)
    moved = tmp_path / "moved"
    root.rename(moved)
    compiles.clear()

    registry = load(moved, store)

    assert len(compiles) == 4  # tracebacks must name the files where they are now
    assert registry.get("notes").source == str((moved / "notes/package.py").resolve())


def test_a_data_directory_that_cannot_be_written_only_compiles(
    root: Path, tmp_path: Path
) -> None:
    (tmp_path / "data").write_text("a file, not a directory")
    store = bytecode.bytecode_file(tmp_path / "data", [root])

    registry = load(root, store)

    assert fingerprints(registry) == fingerprints(load(root, None))
    assert not store.exists()
