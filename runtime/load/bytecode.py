"""Package code compiled once per content: in memory, and kept in the data directory.

The loader imports package files from their source, never from `__pycache__`: a `.pyc`
is trusted by its source's size and modification second, so a quick second save could
go unseen. Compiling 600 files afresh was a tenth of loading 300 packages
(`check --no-cache`, #17), so the code is kept here keyed by the content itself, which
cannot go stale: by the file's path and bytes, under the interpreter's bytecode
version (`importlib.util.MAGIC_NUMBER`) and optimisation level.

`compiled` keeps what this process compiled (a reload of one package recompiles only
the files that changed). A `Bytecode` adds a file, `bytecode-*.bin` in the load
cache's directory, read once per load and written after it with the code that load
used, so it holds one set of packages and never grows past it. A file that does not
read, or an entry that does not unmarshal, is compiled again: the store can only make
a load faster, never change what it loads.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import CodeType

__all__ = ["Bytecode", "bytecode_file", "compiled"]

_KEPT = 8  # bytecode files: one per set of package directories, the newest kept
# What a code object depends on besides its source and path: a file written by
# another interpreter, or under `python -O`, is not read.
_HEADER = importlib.util.MAGIC_NUMBER + bytes([sys.flags.optimize])


@functools.lru_cache(maxsize=512)
def compiled(path: str, source: bytes) -> CodeType:
    """Compile `source`, the content of the file `path`, as a module.

    Keyed by the content itself, so an entry cannot be stale; a reload recompiles only
    the files that changed (compiling package.py and schema.py again was 2 ms of an
    11 ms reload when only a migration was added, scripts/bench).

    Raises:
        SyntaxError: the source does not compile; it names `path` and the line.
    """
    try:
        return compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        if isinstance(exc, SyntaxError) and exc.filename:
            raise
        # A NUL byte (a binary file saved over the source): Python 3.11 names no file,
        # and the error pointed at the line of package.py importing it.
        line = source.count(b"\n", 0, max(source.find(b"\0"), 0)) + 1
        raise SyntaxError(str(exc), (path, line, None, None)) from None


def bytecode_file(data_dir: Path, directories: Sequence[Path]) -> Path:
    """Where the code of the packages under `directories` is kept."""
    key = "\0".join(str(d) for d in directories)
    return data_dir / "cache" / f"bytecode-{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin"


class Bytecode:
    """The code of one load's package files, read from `path` and kept there after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stored = _read(path)
        self._used: dict[bytes, bytes] = {}

    def code(self, path: str, source: bytes) -> CodeType:
        """Return the code of the file `path` holding `source`, kept or compiled now.

        Raises:
            SyntaxError: the source does not compile.
        """
        key = hashlib.sha256(path.encode() + b"\0" + source).digest()
        kept = self._stored.get(key)
        if kept is not None:
            try:
                code = marshal.loads(kept)
            except (EOFError, ValueError, TypeError):
                code = None  # a damaged entry: compiled again below
            if isinstance(code, CodeType):
                self._used[key] = kept
                return code
        code = compiled(path, source)
        self._used[key] = marshal.dumps(code)
        return code

    def save(self) -> None:
        """Keep the code this load used, if that is not what the file holds already.

        Raises:
            OSError: the file or its directory cannot be written.
        """
        if self._used.keys() == self._stored.keys():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        partial.write_bytes(_HEADER + marshal.dumps(self._used))
        os.replace(partial, self.path)  # a reader sees the old file or the new one
        self._stored = dict(self._used)
        _prune(self.path.parent)


def _read(path: Path) -> dict[bytes, bytes]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(_HEADER):
        return {}
    try:
        entries = marshal.loads(data[len(_HEADER):])
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, bytes) and isinstance(v, bytes)}


def _prune(directory: Path) -> None:
    files = sorted(directory.glob("bytecode-*.bin"), key=lambda p: p.stat().st_mtime_ns)
    for old in files[:-_KEPT]:
        old.unlink(missing_ok=True)
