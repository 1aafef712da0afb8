"""Output for people at a terminal: one line per event, colours only on a terminal."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from runtime.errors import PROGRAM as _PROGRAM
from runtime.errors import LockTimeoutError, Problem, ProblemsError

if TYPE_CHECKING:
    # Types only: every command imports this module, and the no-op path answers in
    # 0.25 s; the event values (and blinker's signals) are imported where events are
    # rendered.
    from blinker import Signal

    from runtime.core.citus import Placement
    from runtime.core.events import Change, Difference, LockHolder, LockWait
    from runtime.core.lint import Finding, PackageLint
    from runtime.core.manifest import Manifest
    from runtime.db.fleet import Applied, Standing

__all__ = [
    "FAILED",
    "OK",
    "PROGRAM",
    "USAGE",
    "Console",
    "check_document",
    "count",
    "crossings",
    "describe",
    "distribution_plan",
    "drift_hint",
    "held",
    "placement_json",
    "problem_json",
    "report_database",
    "report_fleet",
    "report_lint",
    "report_progress",
    "report_signals",
    "report_slow_loads",
    "report_standings",
    "report_waiting",
    "summary",
    "table",
]

#: Exit codes: success; validation or migration errors; usage or connection errors.
OK, FAILED, USAGE = 0, 1, 2

#: How this CLI is run, as messages spell its commands, unless it was run otherwise
#: (`Console.program`).
PROGRAM = _PROGRAM

_STYLES = {"ok": "32", "warn": "33", "error": "31;1", "dim": "2", "bold": "1", "name": "36"}


class Console:
    """Write lines to a stream, styled when it is a terminal and NO_COLOR is unset.

    With `json`, the stream carries JSON only (`document`, one per line), and the lines
    for people go to `err`; the errors reported are kept (`errors`, `problems`) for the
    command's JSON answer.

    Args:
        stream: where lines go (stdout by default).
        color: force colours on or off; None decides from the stream.
        program: how the user ran the CLI, as hints spell commands.
        err: where lines for people go in JSON mode (stderr by default).
    """

    def __init__(
        self, stream: TextIO | None = None, *, color: bool | None = None,
        program: str = PROGRAM, err: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.err = err
        if color is None:
            color = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        #: How the user ran the CLI, as hints spell commands (`ydtb-runtime migrate`).
        self.program = program
        self.json = False
        self.errors: list[str] = []
        self.problems: list[Problem] = []
        self.findings: list[Finding] = []  # of the safety lint
        self._status = ""  # the progress line at the bottom of a terminal, if shown
        #: The reader of the stream went away: nothing more is written.
        self.gone = False
        self._lock = threading.RLock()  # a progress ticker writes from its own thread

    def use_json(self) -> None:
        """Keep the stream for JSON documents; lines for people go to `err` from now on."""
        self.json, self.color = True, False

    def style(self, text: str, style: str) -> str:
        """Wrap `text` in the ANSI code of `style` when colours are on."""
        if not self.color:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    def line(self, text: str = "", style: str | None = None) -> None:
        """Write one line, flushed at once so a daemon's output is live."""
        stream = (self.err or sys.stderr) if self.json else self.stream
        if self.gone and stream is self.stream:
            return
        with self._lock, self._writing():
            if self._status:
                stream.write("\r\x1b[K")
            print(self.style(text, style) if style else text, file=stream, flush=True)
            if self._status:
                self.status(self._status)

    def error(self, text: str) -> None:
        """Write an error line (its first line styled, the rest as is)."""
        self.errors.append(text)
        head, _, rest = text.partition("\n")
        self.line(self.style("error: ", "error") + head + ("\n" + rest if rest else ""))

    def failure(self, error: BaseException) -> None:
        """Report `error` in words, keeping its problems for a JSON answer."""
        if isinstance(error, ProblemsError):
            self.problems.extend(error.problems)
        self.error(describe(error, self.program))

    def document(self, value: object) -> None:
        """Write `value` as one line of JSON on the stream."""
        if self.gone:
            return
        with self._writing():
            print(json.dumps(value, default=str), file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """Show `text` as the bottom line of a terminal, replaced by the next one; "" clears."""
        if self.json or self.gone or not self.stream.isatty() or not (text or self._status):
            return
        with self._lock, self._writing():
            self.stream.write(f"\r\x1b[K{text}" if text else "\r\x1b[K")
            self.stream.flush()
            self._status = text

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Write unless the reader went away (`migrate | head -1`): then the command goes
        on, silent, rather than fail halfway through for want of an audience."""
        try:
            yield
        except BrokenPipeError:
            self.gone = True
            # Python flushes stdout again at exit and would print a traceback.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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


def report_lint(console: Console, lints: Sequence[PackageLint], *, strict: bool,
                pending: bool = False) -> int:
    """Print what the safety lint found, as warnings (errors with --strict); return how many.

    Each finding on one line: where, the statement, what is wrong, the fix and how to
    silence it. Packages with Python migrations get one line each, saying those were not
    read.
    """
    findings = [f for lint in lints for f in lint.findings]
    if console.json:
        console.findings.extend(findings)
        if pending:  # migrate: an event each, before anything is applied
            for finding in findings:
                console.document({"event": "lint", **asdict(finding)})
    if findings:
        what = "the pending migrations" if pending else "migrations"
        head = (f"{count(len(findings), 'lint finding')} in {what}: statements that lock or "
                "rewrite a table holding rows, or break the code deployed with it")
        console.line(console.style("error: " if strict else "warning: ",
                                   "error" if strict else "warn") + head)
        for finding in findings:
            console.line(f"  - {_finding(finding)}")
    for lint in lints:
        if lint.python:
            console.line(f"{lint.package}: not linted, Python migrations are not read: "
                         f"{', '.join(lint.python)}", "dim")
    return len(findings)


def _finding(finding: Finding) -> str:
    """One finding in words: `pkg: migration m, line 5: STATEMENT: what (fix) [code]`."""
    where = ", ".join(x for x in (f"migration {finding.migration}",
                                  finding.line and f"line {finding.line}") if x)
    statement = f"{finding.statement}: " if finding.statement else ""
    silence = "" if finding.code in ("Y530", "Y531") else \
        f"; or silence it: -- runtime: allow {finding.code} and why"
    return (f"{finding.package}: {where}: {statement}{finding.message} ({finding.fix}"
            f"{silence}) [{finding.code}]")


def placement_json(placement: Placement) -> dict[str, object]:
    """A step of the Citus distribution plan as JSON, with its SQL (None: stays local)."""
    return {"package": placement.package, "table": placement.table,
            "kind": placement.kind.value, "colocate_with": placement.colocate_with,
            "column": placement.column, "statement": placement.statement}


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


def describe(error: BaseException, program: str = PROGRAM) -> str:
    """Put an error into words for people, commands spelled as `program` runs them.

    Problems carry their commands as data; other errors spell them `python -m runtime`
    in their message, which is respelled here, the one place that renders errors.
    """
    if isinstance(error, ProblemsError):
        return error.render(program)
    text = str(error)
    return text if program == PROGRAM else text.replace(f"{PROGRAM} ", f"{program} ")


def drift_hint(package: str, differences: Sequence[Difference], program: str = PROGRAM,
               dev_built: Sequence[Difference] = ()) -> str:
    """Say how to proceed with differences the dev daemon held back.

    A rename is shown as the migration to write. Something in the database that the
    schema does not declare was most often made by a migration on purpose (the README's
    walkthrough adds a column that way): then the fix is to declare it. What only the
    dev sync built (`dev_built`) no migration builds: there is no migration to write.
    """
    from runtime.core.events import suggested_rename

    if dev_built and len(dev_built) == len(differences):
        made = " and ".join(_what(d) for d in dev_built)
        return (f"only the dev sync made {made}, no migration builds "
                f"{'it' if len(dev_built) == 1 else 'them'}: restart the dev daemon with "
                "--allow-destructive to drop "
                f"{'it' if len(dev_built) == 1 else 'them'} from the dev database, or run "
                "the SQL above yourself")
    rename = suggested_rename(differences)
    undeclared = [_what(d) for d in differences if d.kind.startswith("remove_")]
    if rename:
        first = (f"if you renamed {rename.what}, write the rename in a migration "
                 f"({program} makemigration {package} writes it, guarded to run twice); "
                 "otherwise ")
    elif undeclared:
        first = (f"if a migration made {' and '.join(undeclared)} on purpose, declare "
                 f"{'it' if len(undeclared) == 1 else 'them'} in the schema of {package}; "
                 "otherwise ")
    else:
        first = ""
    # Those that may lose data, or else all held: what a migration built and no schema
    # declares is held without being destructive.
    them = "it" if (sum(d.destructive for d in differences) or len(differences)) == 1 \
        else "them"
    return (f"{first}write a migration ({program} makemigration {package}), or restart "
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
    if not difference.destructive or not difference.statements:
        return difference.words
    # Each statement on one line, separated as psql needs them: the SQL runs as quoted.
    sql = "; ".join(" ".join(statement.split()) for statement in difference.statements)
    return f"{difference.words}: would run {sql}"


@contextmanager
def report_signals(console: Console) -> Iterator[None]:
    """Print a line for each signal while the block runs: the console is just a receiver."""
    from runtime.core import signals  # blinker: not on a no-op `migrate`'s path
    from runtime.core.events import ChangeKind

    def applied(_sender: Any, *, package: str, migration: str, duration_ms: float,
                rerun: bool, **_: Any) -> None:
        verb = "re-ran edited" if rerun else "applied"
        console.line(f"  {verb} {console.style(package, 'name')} {migration} "
                     f"({duration_ms:.1f} ms)")

    def failed(_sender: Any, *, error: Exception, **_: Any) -> None:
        console.error(describe(error, console.program))

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
              dev_built: tuple[Difference, ...] = (), **_: Any) -> None:
        if any(d.destructive for d in differences):
            console.line(f"! {package}: schema changes not applied to the dev database, some "
                         "may lose data:", "warn")
        else:  # built by a migration and declared nowhere: every database has them
            console.line(f"! {package}: in the dev database, as in every database its "
                         "migrations build, but declared nowhere, so left as it is:", "warn")
        for difference in differences:
            console.line(f"    {held(difference)}")
        console.line(f"  {drift_hint(package, differences, console.program, dev_built)}",
                     "warn")

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

    def linted(_sender: Any, *, package: str, findings: tuple[Finding, ...],
               **_: Any) -> None:
        console.line(f"! {package}: {count(len(findings), 'lint finding')}: on a database "
                     "holding rows, `migrate` would lock or rewrite a table, or break the "
                     "code deployed with it:", "warn")
        for finding in findings:
            console.line(f"    {_finding(finding)}")

    def lost(_sender: Any, *, url: str, error: BaseException, **_: Any) -> None:
        # The reason alone: the URL is in this line already, and the fix is to wait.
        reason = getattr(error, "reason", None) or describe(error, console.program).splitlines()[0]
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
        (signals.run_waiting, _waiting(console)), (signals.lint_found, linted),
        (signals.migration_retrying, _retrying(console)),
    ]
    with ExitStack() as stack:
        for signal, receiver in receivers:
            stack.enter_context(signal.connected_to(receiver))
        yield


def _waiting(console: Console) -> Callable[..., None]:
    def waiting(_sender: Any, *, holder: LockHolder | None, waited_s: float = 0,
                **_: Any) -> None:
        from runtime.db.run import describe_holder  # the words of the run's own message

        if console.json:
            console.document({"event": "waiting", "waited_s": waited_s,
                              "holder": None if holder is None else asdict(holder)})
            return

        console.line(f"waiting for the pipeline's lock, held by {describe_holder(holder)}: "
                     "another migrate, or the dev daemon, is applying", "warn")

    return waiting


def _retrying(console: Console) -> Callable[..., None]:
    def retrying(_sender: Any, *, error: LockTimeoutError, wait: LockWait | None, attempt: int,
                 retries: int, delay_s: float, **_: Any) -> None:
        from runtime.db.run import describe_wait  # the words of the run's own message

        if console.json:
            console.document({"event": "retrying", "package": error.package,
                              "migration": error.migration, "waited_for": describe_wait(wait),
                              "wait": None if wait is None else asdict(wait),
                              "attempt": attempt, "retries": retries, "delay_s": delay_s})
            return
        console.line(f"! {error.package}: migration {error.migration} waited longer than "
                     f"lock_timeout for {describe_wait(wait)}; rolled back, running again "
                     f"in {delay_s:.0f} s (retry {attempt} of {retries})", "warn")

    return retrying


@contextmanager
def report_waiting(console: Console) -> Iterator[None]:
    """Say, while the block runs, when a run waits for another run's lock, or backs off
    after a lock timeout to run again."""
    from runtime.core import signals

    with signals.run_waiting.connected_to(_waiting(console)), \
            signals.migration_retrying.connected_to(_retrying(console)):
        yield


@contextmanager
def report_slow_loads(console: Console) -> Iterator[None]:
    """Say, while the block runs, which package's code holds a load (`load_slow`)."""
    from runtime.core import signals

    def slow(_sender: Any, *, source: str, seconds: float, **_: Any) -> None:
        console.line(f"! still loading {source} after {seconds:.0f} s: code it runs when "
                     "imported has not returned (an endless loop, or a slow call at module "
                     "level?); fix it, then press Ctrl-C twice to stop, and start again",
                     "warn")

    with signals.load_slow.connected_to(slow):
        yield


class _Progress:
    """What `report_progress` shows: a line per migration as it runs, with its time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()
        self.seen: set[tuple[str, str]] = set()
        self.packages: set[str] = set()
        self.last = ""

    def ran(self, _sender: Any, *, package: str, migration: str, duration_ms: float,
            rerun: bool, **_: Any) -> None:
        if (package, migration) in self.seen:  # run again after a rollback: shown once
            return
        self.seen.add((package, migration))
        self.packages.add(package)
        if self.console.json:
            self.console.document({"event": "ran", "package": package, "migration": migration,
                                   "duration_ms": round(duration_ms, 3), "rerun": rerun})
            return
        again = " (edited, run again)" if rerun else ""
        self.console.line(f"{self.console.style(package, 'name')}  {migration}{again} "
                          f"({duration_ms:.1f} ms)")
        self.last = f"{package} {migration}"
        self.show()

    def applied(self, _sender: Any, *, package: str, migration: str, duration_ms: float,
                rerun: bool, **_: Any) -> None:
        if self.console.json:
            self.console.document({"event": "applied", "package": package,
                                   "migration": migration,
                                   "duration_ms": round(duration_ms, 3), "rerun": rerun})

    def show(self) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed < _PROGRESS_AFTER_S or self.console.json:
            return
        last = f" (last: {self.last})" if self.last else ""
        self.console.status(f"applying: {count(len(self.packages), 'package')}, "
                            f"{count(len(self.seen), 'migration')}, {elapsed:.1f} s{last}")

    def tick(self, stop: threading.Event) -> None:
        """Keep the progress line's clock going while a long migration runs."""
        while not stop.wait(_TICK_S):
            self.show()


_PROGRESS_AFTER_S = 1.0  # a short run shows no progress line
_TICK_S = 0.25


@contextmanager
def report_progress(console: Console) -> Iterator[None]:
    """Show a run as it goes: a line per package with its migrations' times, and on a
    terminal, after a second, a progress line whose clock keeps going; in JSON mode an
    event per migration run and per migration applied.
    """
    from runtime.core import signals

    progress = _Progress(console)
    stop = threading.Event()
    ticker = None
    if not console.json and console.stream.isatty():
        ticker = threading.Thread(target=progress.tick, args=(stop,), daemon=True)
        ticker.start()
    try:
        with signals.migration_ran.connected_to(progress.ran), \
                signals.migration_applied.connected_to(progress.applied), \
                report_waiting(console):
            yield
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        console.status("")


def check_document(console: Console, manifest: Manifest | None, *, db: bool = False,
                   cached: bool = False, failed: bool = False) -> dict[str, object]:
    """What `check --json` prints: the packages checked, every problem and lint finding.

    Args:
        failed: the check failed for another reason (lint findings with --strict).
    """
    ok = manifest is not None and not console.errors and not failed
    return {"ok": ok, "database_checked": db, "cached": cached,
            "packages": [] if manifest is None else [
                {"name": e.name, "version": e.version_text,
                 "crossings": list(e.crossings)} for e in manifest.entries],
            "errors": console.errors, "problems": [problem_json(p) for p in console.problems],
            "lint": [asdict(f) for f in console.findings]}


def summary(console: Console, *, ok: bool, **fields: object) -> dict[str, object]:
    """The last JSON document of a command: how it ended, and the errors it reported."""
    return {"event": "summary", "ok": ok, **fields,
            "errors": console.errors, "problems": [problem_json(p) for p in console.problems],
            "lint": [asdict(f) for f in console.findings]}


def problem_json(problem: Problem) -> dict[str, object]:
    """A problem as JSON: its fields, and its words as people read them (`text`)."""
    return {**asdict(problem), "command": list(problem.command),
            "text": problem.render(PROGRAM)}


def count(n: int, noun: str) -> str:
    """Return `n noun`, the noun in the plural unless n is 1: `2 migrations`."""
    return f"{n} {noun}{'s' if n != 1 else ''}"


def report_database(console: Console, result: Applied) -> None:
    """Say how one database of a fleet ended, as its run ends: a line, or a JSON event."""
    words = None if result.error is None else _fleet_error(result.error, console.program)
    if console.json:
        console.document({"event": "database", "name": result.name, "url": result.url,
                          "ok": result.ok, "applied": result.applied,
                          "duration_ms": round(result.duration_ms, 3), "error": words,
                          "error_type": None if result.error is None
                          else type(result.error).__name__})
        return
    name = console.style(result.name, "name")
    if words is None:
        console.line(f"{name}: {count(result.applied, 'migration')} applied "
                     f"({result.duration_ms:.0f} ms)", "ok" if result.applied else None)
        return
    head, _, rest = words.partition("\n")
    console.line(f"{name}: {console.style('failed', 'error')} after "
                 f"{result.duration_ms:.0f} ms: {head}" + (f"\n{rest}" if rest else ""))


def report_fleet(console: Console, names: Sequence[str], ended: Sequence[Applied],
                 duration_ms: float, *, loaded: bool = True) -> int:
    """Sum up a fleet run after its databases' lines; return its exit code: 1 if any
    failed, or the packages did not load (`loaded`), which started none.

    Args:
        names: every database of the fleet, the canary first.
        ended: how each database that started ended.
    """
    started = {r.name for r in ended}
    failed = [r.name for r in ended if not r.ok]
    succeeded = [r.name for r in ended if r.ok]
    not_started = [n for n in names if n not in started]
    applied = sum(r.applied for r in ended)
    if not loaded:
        if console.json:
            console.document(summary(console, ok=False, databases=len(names), succeeded=[],
                                     failed=[], not_started=list(names), applied=0,
                                     duration_ms=0.0))
        else:
            console.line("no database migrated: the packages did not load, so the canary's "
                         "run rolled back and the others did not start", "dim")
        return FAILED
    if console.json:
        console.document(summary(console, ok=not failed, databases=len(names),
                                 succeeded=succeeded, failed=failed, not_started=not_started,
                                 applied=applied, duration_ms=round(duration_ms, 3)))
        return FAILED if failed else OK
    if not failed:
        console.line(f"{len(succeeded)} of {count(len(names), 'database')} migrated: "
                     f"{count(applied, 'migration')} applied in {duration_ms:.0f} ms", "ok")
        return OK
    parts = [f"{len(succeeded)} of {count(len(names), 'database')} migrated",
             f"{len(failed)} failed: {', '.join(failed)}"]
    if not_started:
        parts.append(f"{len(not_started)} not started after the first failure: "
                     f"{', '.join(not_started)}")
    console.error("; ".join(parts) + " (fix what failed and run again: the databases "
                  "migrated have nothing left to apply)")
    return FAILED


def report_standings(console: Console, standings: Sequence[Standing]) -> int:
    """Show where each database of a fleet stands, as a table or JSON; return the exit
    code: 1 if a database did not answer, has edited migrations or drifted, as `status`
    says of one database."""
    failed = any(s.error is not None or any(p.edited for p in s.statuses)
                 or _drifted(s) for s in standings)
    if console.json:
        console.document({"ok": not failed, "databases": [_standing_json(s, console.program)
                                                           for s in standings]})
        return FAILED if failed else OK
    rows = [[s.name, *(str(sum(len(getattr(p, field)) for p in s.statuses))
                       if s.error is None else "-" for field in ("pending", "edited",
                                                                  "unknown")),
             "-" if s.drift is None else str(sum(map(len, s.drift.values()))),
             _state(s)] for s in standings]
    for line in table(["DATABASE", "PENDING", "EDITED", "UNDECLARED", "DRIFT", "STATE"], rows):
        console.line(line)
    for standing in standings:
        name = console.style(standing.name, "name")
        if standing.error is not None:
            console.line(f"{name}: {_fleet_error(standing.error, console.program)}", "warn")
        for status in standing.statuses:
            for migration in status.edited:
                console.line(f"{name}: {status.package} {migration} was edited after it "
                             "was applied", "warn")
        for package, differences in (standing.drift or {}).items():
            for difference in differences:
                console.line(f"{name}: {package}: {difference.words}", "warn")
    return FAILED if failed else OK


def _fleet_error(error: BaseException, program: str) -> str:
    """An error of one database of a fleet, in words: a database that does not answer
    without the single-database hints (its URL is on its line; no embedded server)."""
    from runtime.errors import DatabaseUnavailableError

    if isinstance(error, DatabaseUnavailableError):
        return (f"cannot reach the database: {error.reason} (check that its server runs "
                "and its line in the fleet file is right)")
    return describe(error, program)


def _drifted(standing: Standing) -> bool:
    return standing.drift is not None and any(standing.drift.values())


def _state(standing: Standing) -> str:
    if standing.error is not None:
        return "unreachable"
    if any(p.edited for p in standing.statuses):
        return "edited"
    if _drifted(standing):
        return "drifted"
    if all(p.up_to_date and not p.unknown for p in standing.statuses):
        return "up to date"
    return "behind"


def _standing_json(standing: Standing, program: str) -> dict[str, object]:
    """A database of `status --fleet --json`: its migrations pending, edited, undeclared,
    and how its schema differs from the packages'."""
    def each(field: str) -> list[dict[str, str]]:
        return [{"package": p.package, "migration": m}
                for p in standing.statuses for m in getattr(p, field)]

    return {"name": standing.name, "url": standing.url, "reachable": standing.error is None,
            "state": _state(standing), "pending": each("pending"), "edited": each("edited"),
            "unknown": each("unknown"),
            "drift": None if standing.drift is None else [
                {"package": package, "kind": d.kind, "table": d.table, "name": d.name,
                 "words": d.words, "destructive": d.destructive}
                for package, differences in standing.drift.items() for d in differences],
            "error": None if standing.error is None else _fleet_error(standing.error, program)}
