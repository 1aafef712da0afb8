"""What the safety lint found in each package, kept by content in the data directory.

`check` lints every migration (`runtime.core.lint.lint_all`): parsing 900 of them with
PostgreSQL's parser was a tenth of `check --no-cache` at N = 300 (#17). What the lint
finds in a package is a function of the package's name and migrations (ids, SQL,
whether each runs in a transaction) and of the lint's own code, so it is kept here
under a digest of exactly that: the texts of `runtime.core.lint`, `lint_rules` and
`sql`, and of pglast's `__init__.py` (PostgreSQL's parser; it holds its version), are
part of every key, and an edited migration or rule is linted afresh. Like the compiled code
(`runtime.load.bytecode`) it cannot be stale, so `--no-cache` uses it too.

The file, `lint-*.json` beside the load cache's, holds what the last `check` of the
same package directories found, and nothing else. A file or an entry that does not read
is linted again: the store can make `check` faster, never change what it says.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.core import lint
from runtime.core.lint import Finding, PackageLint

if TYPE_CHECKING:
    from runtime.core.model import Package

__all__ = ["lint_file", "lint_kept"]

_FORMAT = 1
_KEPT = 8  # lint files: one per set of package directories, the newest kept


def lint_file(data_dir: Path, directories: Sequence[Path]) -> Path:
    """Where the lint of the packages under `directories` is kept."""
    key = "\0".join(str(d) for d in directories)
    return data_dir / "cache" / f"lint-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def lint_kept(packages: Sequence[Package], path: Path) -> list[PackageLint]:
    """Lint every migration of `packages`, each judged alone, as `lint_all` does; what
    `path` kept of a package with the same migrations is read instead of linted.

    The file is then written with what this call found, if that changed; a file that
    cannot be written only costs the next call the time.
    """
    salt = _salt()
    if salt is None:
        return lint.lint_all(packages)
    stored = _read(path)
    found: dict[str, Any] = {}
    lints = []
    for package in packages:
        key = _key(salt, package)
        kept = _lint_of(package.name, stored.get(key))
        lints.append(kept or lint.lint_package(package.name, package.migrations))
        found[key] = stored[key] if kept is not None else _lint_json(lints[-1])
    if found.keys() != stored.keys():
        with contextlib.suppress(OSError):  # a read-only checkout checks, only slower
            _write(path, found)
    return lints


@functools.cache
def _salt() -> bytes | None:
    """The identity of the lint's code: its modules' texts and the parser's (pglast's
    `__init__.py`, which holds its version); None when a text cannot be read (nothing
    is kept then)."""
    # Found, not imported: importing pglast (60 ms), or importlib.metadata to ask its
    # version (50 ms), was a tenth of a `check` that finds every lint kept (#17).
    parser = importlib.util.find_spec("pglast")
    if parser is None or parser.origin is None:
        return None
    here = Path(str(lint.__file__)).parent
    files = [here / "lint.py", here / "lint_rules.py", here / "sql.py", Path(parser.origin)]
    digest = hashlib.sha256(f"{_FORMAT}\0".encode())
    try:
        for file in files:
            digest.update(file.read_bytes())
    except OSError:
        return None
    return digest.digest()


def _key(salt: bytes, package: Package) -> str:
    digest = hashlib.sha256(salt + package.name.encode() + b"\0")
    for migration in package.migrations:
        digest.update(json.dumps([migration.id, migration.transactional,
                                  isinstance(migration.up, str),
                                  migration.statements]).encode())
    return digest.hexdigest()


def _lint_json(found: PackageLint) -> Any:
    return [[f.to_json() for f in found.findings], [f.to_json() for f in found.breaking],
            list(found.python)]


def _lint_of(package: str, data: Any) -> PackageLint | None:
    """Read what `_lint_json` wrote; None when it is not that."""
    try:
        findings, breaking, python = data
        return PackageLint(package, tuple(map(Finding.from_json, findings)),
                           tuple(map(Finding.from_json, breaking)),
                           tuple(str(p) for p in python))
    except (TypeError, ValueError):
        return None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return {}
    entries = data.get("lints")
    return entries if isinstance(entries, dict) else {}


def _write(path: Path, entries: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"format": _FORMAT, "lints": entries},
                                  separators=(",", ":")))
    os.replace(partial, path)  # a reader sees the old file or the new one, never half
    files = sorted(path.parent.glob("lint-*.json"), key=lambda p: p.stat().st_mtime_ns)
    for old in files[:-_KEPT]:
        old.unlink(missing_ok=True)
