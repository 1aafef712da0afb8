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

__all__ = ["collect_young", "loading", "settle"]

# The loader thread holds the GIL between bytecodes for up to the switch interval
# (5 ms by default) after each statement's answer arrives; the event loop waits that
# long to send the next one. 0.5 ms keeps the DDL moving at a small cost to loading.
_SWITCH_INTERVAL = 0.0005


@contextmanager
def loading() -> Iterator[None]:
    """Tune the process for loading packages while their DDL runs, then restore it.

    Loading hundreds of packages makes ~500,000 SQLAlchemy objects that live on, and the
    default thresholds run full collections over them again and again: 1.6 s of 9 s
    loading N = 300 packages. While `load_and_migrate` applies DDL during a load, each
    collection also holds the GIL, so the next statement waits for it: about 1 s of a
    13 s cold apply. The switch interval is shortened for the same reason.
    """
    threshold = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.set_threshold(100_000, 50, 100)
    sys.setswitchinterval(_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)


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
