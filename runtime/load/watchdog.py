"""Say when a package's code has run for long while it loads, naming the package.

A package's modules run when imported. An endless loop or a slow call at module level
(a network request, a `sleep`) holds whatever loads it: a `check` or `migrate` that
prints nothing, a dev daemon that stops reacting to saves. Nothing can stop Python code
from outside but ending the process, so the user is told which package it is
(`signals.load_slow`); the CLI then stops at once on a second Ctrl-C.

One thread watches every load of the process; it is started with the first one. A
load costs two dictionary writes: a full load imports 1,000 packages (#17).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from runtime.core import signals

__all__ = ["SLOW_S", "watched"]

#: How long a package's code may run while it loads before `signals.load_slow`.
SLOW_S = 5.0
_LOOK_EVERY_S = 0.5


class _Load:
    __slots__ = ("since", "source", "told")

    def __init__(self, source: str) -> None:
        self.source = source
        self.since = time.monotonic()
        self.told = False


_loading: dict[int, _Load] = {}  # by the ident of the thread loading
_started = threading.Lock()
_watcher: list[threading.Thread] = []


@contextmanager
def watched(source: str) -> Iterator[None]:
    """Run the block as the load of `source` (a package directory, or an entry point)."""
    if not _watcher:
        _start()
    key = threading.get_ident()
    _loading[key] = _Load(source)
    try:
        yield
    finally:
        _loading.pop(key, None)


def _start() -> None:
    with _started:
        if not _watcher:
            thread = threading.Thread(target=_watch, name="runtime-load-watchdog", daemon=True)
            thread.start()
            _watcher.append(thread)


def _watch() -> None:
    while True:
        time.sleep(min(_LOOK_EVERY_S, SLOW_S / 2))
        now = time.monotonic()
        for load in list(_loading.values()):
            if not load.told and now - load.since >= SLOW_S:
                load.told = True
                signals.emit(signals.load_slow, None, source=load.source,
                             seconds=round(now - load.since, 1))
