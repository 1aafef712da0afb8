"""Output for people at a terminal: one line per event, colours only on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from blinker import Signal

from runtime.core import signals
from runtime.errors import LockTimeoutError, ProblemsError

if TYPE_CHECKING:
    # Types only: every command imports this module, and the no-op path answers in
    # 0.25 s; the event values are imported where events are rendered.
    from runtime.core.citus import Placement
    from runtime.core.events import Change, Difference, LockHolder
    from runtime.core.manifest import Manifest

__all__ = [
    "FAILED",
    "OK",
    "PROGRAM",
    "USAGE",
    "Console",
    "count",
    "crossings",
    "describe",
    "distribution_plan",
    "drift_hint",
    "held",
    "report_signals",
    "report_waiting",
    "table",
]

#: Exit codes: success; validation or migration errors; usage or connection errors.
OK, FAILED, USAGE = 0, 1, 2

#: How this CLI is run, as messages spell its commands.
PROGRAM = "python -m runtime"

_STYLES = {"ok": "32", "warn": "33", "error": "31;1", "dim": "2", "bold": "1", "name": "36"}


class Console:
    """Write lines to a stream, styled when it is a terminal and NO_COLOR is unset.

    Args:
        stream: where lines go (stdout by default).
        color: force colours on or off; None decides from the stream.
    """

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        if color is None:
            color = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.color = color

    def style(self, text: str, style: str) -> str:
        """Wrap `text` in the ANSI code of `style` when colours are on."""
        if not self.color:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    def line(self, text: str = "", style: str | None = None) -> None:
        """Write one line, flushed at once so a daemon's output is live."""
        print(self.style(text, style) if style else text, file=self.stream, flush=True)

    def error(self, text: str) -> None:
        """Write an error line (its first line styled, the rest as is)."""
        head, _, rest = text.partition("\n")
        self.line(self.style("error: ", "error") + head + ("\n" + rest if rest else ""))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lay out rows in aligned columns under `headers`."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def crossings(manifest: Manifest) -> list[str]:
    """The lines `check` lists for keys that cross workspaces on purpose (Y116)."""
    return [f"  {entry.name}: crosses workspaces on purpose: {crossing}"
            for entry in manifest.entries for crossing in entry.crossings]


def distribution_plan(placements: Sequence[Placement]) -> list[str]:
    """The lines `graph --citus` prints: the SQL distributing each table, with its package."""
    lines = ["-- Distribute the registry with Citus, by workspace_id: run it once on the "
             "coordinator, after migrate."]
    lines += [f"{p.statement}  -- {p.package}" for p in placements if p.statement]
    first = next((p.table for p in placements if p.kind.value == "distributed"), None)
    if first:
        lines.append(f"-- A table added later joins the group of {first}: "
                     f"create_distributed_table('<table>', 'workspace_id', "
                     f"colocate_with => '{first}')")
    local = [p.table for p in placements if p.statement is None]
    if local:
        lines.append(f"-- {', '.join(local)} stay local to the coordinator: only runtime "
                     "reads them, where it runs")
    return lines


def describe(error: BaseException) -> str:
    """Put an error into words for people, commands spelled as this CLI runs them."""
    if isinstance(error, ProblemsError):
        return error.render(PROGRAM)
    return str(error)


def drift_hint(package: str, differences: Sequence[Difference]) -> str:
    """Say how to proceed with differences the dev daemon held back.

    A rename is shown as the migration to write. Something in the database that the
    schema does not declare was most often made by a migration on purpose (the README's
    walkthrough adds a column that way): then the fix is to declare it.
    """
    from runtime.core.events import suggested_rename

    rename = suggested_rename(differences)
    undeclared = [_what(d) for d in differences if d.kind.startswith("remove_")]
    if rename:
        first = f"if you renamed {rename[0]}, write {rename[1]} in a migration; otherwise "
    elif undeclared:
        first = (f"if a migration made {' and '.join(undeclared)} on purpose, declare "
                 f"{'it' if len(undeclared) == 1 else 'them'} in the schema of {package}; "
                 "otherwise ")
    else:
        first = ""
    them = "it" if sum(d.destructive for d in differences) == 1 else "them"
    return (f"{first}write a migration ({PROGRAM} makemigration {package}), or restart "
            f"the dev daemon with --allow-destructive to apply {them} to the dev database")


def _what(difference: Difference) -> str:
    """Name what a `remove_*` difference is about: `column ydtb_notes.color`."""
    kind = difference.kind.removeprefix("remove_")
    if kind == "table":
        return f"table {difference.table}"
    if kind == "column":
        return f"column {difference.table}.{difference.name}"
    noun = "foreign key" if kind == "fk" else kind
    return f"{noun} {difference.name}"


def held(difference: Difference) -> str:
    """A held difference in words, with the SQL it would run when it may lose data."""
    if not difference.destructive:
        return difference.words
    sql = " ".join(" ".join(difference.statements).split())
    return f"{difference.words}: would run {sql}"


@contextmanager
def report_signals(console: Console) -> Iterator[None]:
    """Print a line for each signal while the block runs: the console is just a receiver."""
    from runtime.core.events import ChangeKind

    def applied(_sender: Any, *, package: str, migration: str, duration_ms: float,
                rerun: bool, **_: Any) -> None:
        verb = "re-ran edited" if rerun else "applied"
        console.line(f"  {verb} {console.style(package, 'name')} {migration} "
                     f"({duration_ms:.1f} ms)")

    def failed(_sender: Any, *, error: Exception, **_: Any) -> None:
        console.error(describe(error))

    def registered(_sender: Any, *, package: str, version: str, replaced: bool,
                   **_: Any) -> None:
        verb = "reloaded" if replaced else "registered"
        console.line(f"  {verb} {console.style(package, 'name')} {version}", "dim")

    def unregistered(_sender: Any, *, package: str, **_: Any) -> None:
        console.line(f"  unregistered {console.style(package, 'name')}", "dim")

    def changed(_sender: Any, *, package: str, changes: tuple[Change, ...], **_: Any) -> None:
        name = console.style(package, "name")
        # Each migration got its line as it was applied (`applied` above).
        for change in changes:
            if change.kind is ChangeKind.DEV_SYNC:
                console.line(f"  synced {name} to its declared schema ({change.migration}):")
                for difference in change.differences:
                    console.line(f"    {difference.words}")
            elif change.kind is ChangeKind.RECONCILED:
                console.line(f"  {name}: dev change {change.migration} is now in the "
                             "migrations", "dim")

    def drift(_sender: Any, *, package: str, differences: tuple[Difference, ...],
              **_: Any) -> None:
        console.line(f"! {package}: schema changes not applied to the dev database, some "
                     "may lose data:", "warn")
        for difference in differences:
            console.line(f"    {held(difference)}")
        console.line(f"  {drift_hint(package, differences)}", "warn")

    def reloaded(_sender: Any, *, packages: tuple[str, ...], applied: tuple[Change, ...],
                 elapsed_ms: float, error: Exception | None, **_: Any) -> None:
        if error is not None:
            console.line(f"x change not applied, last good state kept ({elapsed_ms:.0f} ms)",
                         "warn")
            return
        synced = sum(change.kind is ChangeKind.DEV_SYNC for change in applied)
        what = ", ".join(count(n, noun) for n, noun in [
            (len(applied) - synced, "migration"), (synced, "dev schema sync")] if n) \
            or "no schema change"
        names = ", ".join(packages) or "packages"
        console.line(f"ok {names}: {what}, change seen -> applied in {elapsed_ms:.0f} ms", "ok")

    def lost(_sender: Any, *, url: str, error: BaseException, **_: Any) -> None:
        # The reason alone: the URL is in this line already, and the fix is to wait.
        reason = getattr(error, "reason", None) or describe(error).splitlines()[0]
        console.line(f"! the database at {url} went away ({reason}); retrying, and what you "
                     "save meanwhile is applied once it is back", "warn")

    def restored(_sender: Any, *, url: str, down_ms: float, revived: bool, **_: Any) -> None:
        how = "; the embedded server was started again" if revived else ""
        console.line(f"the database at {url} is back after {down_ms / 1000:.1f} s{how}", "ok")

    receivers: list[tuple[Signal, Callable[..., None]]] = [
        (signals.migration_applied, applied), (signals.migration_failed, failed),
        (signals.validation_failed, failed), (signals.package_registered, registered),
        (signals.package_unregistered, unregistered), (signals.reloaded, reloaded),
        (signals.schema_changed, changed), (signals.schema_drift, drift),
        (signals.database_lost, lost), (signals.database_restored, restored),
        (signals.run_waiting, _waiting(console)),
    ]
    with ExitStack() as stack:
        for signal, receiver in receivers:
            stack.enter_context(signal.connected_to(receiver))
        yield


def _waiting(console: Console) -> Callable[..., None]:
    def waiting(_sender: Any, *, holder: LockHolder | None, **_: Any) -> None:
        from runtime.db.run import describe_holder  # the words of the run's own message

        console.line(f"waiting for the pipeline's lock, held by {describe_holder(holder)}: "
                     "another migrate, or the dev daemon, is applying", "warn")

    return waiting


def _retrying(console: Console) -> Callable[..., None]:
    def retrying(_sender: Any, *, error: LockTimeoutError, attempt: int, retries: int,
                 delay_s: float, **_: Any) -> None:
        console.line(f"! {error.package}: migration {error.migration} waited longer than "
                     f"lock_timeout for {error.waited_for}; rolled back, running again in "
                     f"{delay_s:.0f} s (retry {attempt} of {retries})", "warn")

    return retrying


@contextmanager
def report_waiting(console: Console) -> Iterator[None]:
    """Say, while the block runs, when a run waits for another run's lock, or backs off
    after a lock timeout to run again."""
    with signals.run_waiting.connected_to(_waiting(console)), \
            signals.migration_retrying.connected_to(_retrying(console)):
        yield


def count(n: int, noun: str) -> str:
    """Return `n noun`, the noun in the plural unless n is 1: `2 migrations`."""
    return f"{n} {noun}{'s' if n != 1 else ''}"
