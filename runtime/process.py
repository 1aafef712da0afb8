"""Tuning of the Python process, for the code that owns it: the CLI and the benchmark.

The library (`runtime.load`, `runtime.db`, `runtime.dev`) never changes the garbage
collector or the switch interval: inside a host application (an app server calling
`load_and_migrate` at start-up) those are the application's to decide. `python -m
runtime` owns its process, and tunes it here for what it measured (`scripts/bench`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collect_young", "loading", "reloading", "running", "settle"]

# The loader thread holds the GIL between bytecodes for up to the switch interval
# (5 ms by default) after each statement's answer arrives; the event loop waits that
# long to send the next one. 0.5 ms keeps the DDL moving at a small cost to loading.
_SWITCH_INTERVAL = 0.0005


@contextmanager
def running(*, lasting: bool = False) -> Iterator[None]:
    """Tune the process for a command of the CLI, then restore it.

    A command that ends after its run collects nothing: what it makes lives until it
    ends (the modules it imports, SQLAlchemy's and asyncpg's classes; the load cache's
    manifest), and each collection only scans it again. A `migrate` of one new
    migration at N = 300 spent 15-25 ms in 72 collections after the command began
    (#17). `loading` keeps the collector off while it loads either way, and freezes
    what it made.

    Args:
        lasting: the process lives on (the dev daemon): nothing changes; `loading`
            tunes its start-up.
    """
    if lasting:
        yield
        return
    with _collector_off():
        yield


@contextmanager
def _collector_off() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def loading(*, lasting: bool = False) -> Iterator[None]:
    """Tune the process for loading packages while their DDL runs, then restore it.

    Loading hundreds of packages makes ~500,000 SQLAlchemy objects that live on, and a
    collection only scans them again: even at a young generation of 100,000 objects
    (the default 700 cost 1.6 s of 9 s at N = 300), `check --no-cache` spent 0.3 s of 4
    in collections at N = 300 and 2.8 s of 19 at N = 1000, one of them 1.8 s (#17).
    While `load_and_migrate` applies DDL during a load, each collection also holds the
    GIL, so the next statement waits for it. So for a command that ends after its run,
    the collector is off while loading, and what was made meanwhile is frozen after
    (`gc.freeze`): out of every later collection's way rather than scanned all at once
    by the first one. A caller that goes on (tests running the CLI in their process)
    gives it back with `gc.unfreeze()`. The switch interval is shortened for the
    statements' sake too.

    Args:
        lasting: the process lives on (the dev daemon): collections go on, at a young
            generation of 100,000 objects, so its start-up's garbage (the dev sync's
            reflected tables) goes as it comes; `settle` freezes what stays.
    """
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    interval = sys.getswitchinterval()
    if lasting:
        gc.set_threshold(100_000, 50, 100)
    else:
        gc.disable()
    sys.setswitchinterval(_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if lasting:
            gc.set_threshold(*threshold)
        else:
            gc.freeze()
            if enabled:
                gc.enable()


def collect_young() -> None:
    """Collect the young generations only: cheap, and enough for short-lived garbage.

    Under `loading()`'s thresholds, the daemon's start-up comparisons left their
    reflected tables piling up to 90 MB at N = 300; the loaded packages sit in the old
    generation, where a full collection costs 0.4 s.
    """
    gc.collect(1)


def settle() -> None:
    """Move everything loaded so far out of the collector's way, for a long-lived process.

    What the dev daemon loaded at start-up lives as long as it does: frozen, a reload's
    collections stay short (p95 1.03 s -> 0.32 s at N = 300).
    """
    gc.freeze()


@contextmanager
def reloading() -> Iterator[None]:
    """No collection while the dev daemon applies a save, up to its `reloaded` signal.

    A save of `schema.py` makes tens of thousands of objects (the package's tables
    imported again, alembic's comparison); collections while they are made cost 13 ms a
    save on average, and a full one 210 ms in one save of 40 (`scripts/bench`, #14).
    The collector comes back once the change is announced, and collects what the save
    left while the developer reads the result.
    """
    with _collector_off():
        yield
