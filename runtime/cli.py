"""`python -m runtime COMMAND`: migrate, check, status, graph, makemigration, uninstall
(and `dev`, the daemon).

The only module that reads `os.environ`, configures logging and turns errors into exit
codes: 0 success, 1 validation or migration errors, 2 usage or connection errors, 128 +
the signal when stopped by one (130 Ctrl-C, 143 SIGTERM; the daemon exits 0).

A `migrate` or `check` of packages unchanged since they last loaded is answered from
the load cache (`runtime.load.cache`) before SQLAlchemy or a package is imported: that
is most of such a run's time (7.8 s -> 0.2 s at N = 300, scripts/bench). Everything
else, and `--no-cache`, runs the command in `runtime.commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from runtime import process
from runtime.config import (
    DEFAULT_LOCK_TIMEOUT,
    DEV_LOCK_TIMEOUT,
    Settings,
    TransactionMode,
    resolve_settings,
    seconds,
)
from runtime.console import (
    FAILED,
    OK,
    PROGRAM,
    USAGE,
    Console,
    check_document,
    crossings,
    report_lint,
    report_slow_loads,
    summary,
)
from runtime.db import urls
from runtime.errors import (
    DatabaseInUseError,
    DatabaseUnavailableError,
    RegistryError,
    UsageError,
)
from runtime.load import packages

if TYPE_CHECKING:
    from runtime.core.manifest import Manifest

__all__ = ["SCRIPT", "exit_now", "main", "script"]

#: The console script installed with the package, equivalent to `python -m runtime`.
SCRIPT = "ydtb-runtime"


async def _from_cache(args: argparse.Namespace, settings: Settings, console: Console) -> int | None:
    """Answer `migrate` or `check` from the load cache; None when it must run for real."""
    if (args.command not in ("migrate", "check") or args.no_cache
            or getattr(args, "plan", False) or getattr(args, "db", False)
            or getattr(args, "citus", False) or getattr(args, "fleet", None)):
        return None
    from runtime.load import cache

    started = time.perf_counter()
    path = cache.cache_file(settings.data_dir, settings.packages, not args.no_entry_points,
                            require_rls=settings.require_rls)

    def look_up() -> Manifest | None:
        # Kept for the command if the cache cannot answer: it finds what changed from the
        # same scan, made before anything loads (30 ms at N = 300, #17).
        args.scanned = cache.scan(settings.packages, known=cache.listings(path))
        return cache.lookup(path, settings.packages, args.scanned)

    if args.command == "check":
        return _check_from_cache(args, console, look_up())
    return await _migrate_from_cache(settings, console, look_up, started)


def _check_from_cache(
    args: argparse.Namespace, console: Console, manifest: Manifest | None
) -> int | None:
    if manifest is None:
        return None
    lints = manifest.lints
    if lints is None:
        return None  # loaded by another command, not linted: `check` lints and keeps it
    if console.json:
        failed = bool(args.strict and report_lint(console, lints, strict=args.strict))
        console.document(check_document(console, manifest, cached=True, failed=failed))
        return FAILED if failed else OK
    console.line(f"ok: {len(manifest.entries)} packages valid "
                 f"({', '.join(manifest.names)}); unchanged since their last load", "ok")
    for line in crossings(manifest):
        console.line(line, "warn")
    found = report_lint(console, lints, strict=args.strict)
    return FAILED if args.strict and found else OK


async def _migrate_from_cache(
    settings: Settings, console: Console, look_up: Callable[[], Manifest | None],
    started: float,
) -> int | None:
    import asyncpg

    from runtime.db import quick

    # A named database's ledger is read while the files are scanned (#17): the scan
    # waits on the disk and the connection on the server, each letting the other run.
    # A cache that cannot answer wastes that one read.
    url = settings.database_url
    reading = None if url is None else asyncio.ensure_future(quick.read(url))
    try:
        manifest = await asyncio.to_thread(look_up)
        if manifest is None:
            return None
        recorded = await (reading if reading is not None
                          else quick.read_embedded(settings.data_dir))
        if not manifest.up_to_date(recorded):
            return None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RegistryError):
        return None  # the full run says what is wrong, in its own words
    finally:
        if reading is not None:
            await _settled(reading)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if console.json:
        console.document(summary(console, ok=True, applied=0, packages=len(manifest.entries),
                                 changed=0, duration_ms=round(elapsed_ms, 3)))
        return OK
    console.line(f"nothing to apply: {len(manifest.entries)} packages up to date "
                 f"({elapsed_ms:.1f} ms, unchanged since their last load)", "ok")
    return OK


async def _settled(task: asyncio.Future[Any]) -> None:
    """Wait for `task`, cancelled if still running; what it raised is answered for."""
    task.cancel()
    await asyncio.wait([task])  # raises nothing of the task's, passes a cancellation on
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would log it as never retrieved


async def _run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    answer = await _from_cache(args, settings, console)
    if answer is not None:
        return answer
    from runtime.commands import COMMANDS

    with report_slow_loads(console):
        return await COMMANDS[args.command](args, settings, console)


def _duration(text: str) -> float:
    try:
        return seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is less than 1")
    return value


def _package_name(text: str) -> str:
    # Asked here, not after loading every package: `uninstall ''` said ": the database
    # records no such package".
    from runtime.core.versions import is_valid_name  # packaging: only for these commands

    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a package name (write name or "
                                         "@scope/name, in lower case)")
    return text


_MAX_DEBOUNCE_MS = 60_000


def _milliseconds(text: str) -> int:
    # watchfiles takes an unsigned 64-bit count: -1 raised OverflowError from its Rust
    # side, a traceback once the daemon had loaded. A minute is longer than any burst.
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of "
                                         "milliseconds") from None
    if not 0 <= value <= _MAX_DEBOUNCE_MS:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and {_MAX_DEBOUNCE_MS} "
                                         "milliseconds")
    return value


class _Version(argparse.Action):
    """`--version`, reading the version only when asked: importlib.metadata and the
    distribution lookup cost about 20 ms, a tenth of a no-op `migrate`."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {_version()}")  # on stdout, as argparse's own action does
        parser.exit()


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("ydtb-runtime")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, sized as argparse sizes it but without `shutil`, which
    it imports for the width (with bz2, lzma and zlib: 2 ms of every run, #17)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` tells it: $COLUMNS, else
    standard output's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns or 80) if stdout else 80
    except (ValueError, OSError):  # not a terminal, or closed
        return 80


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` that formats with `_Formatter`; its subparsers are of this
    class too (argparse makes them of the parent's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _parser(program: str = PROGRAM) -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what runs to stderr: -v for INFO, -vv for DEBUG")
    common.add_argument("--log-level", type=str.upper, metavar="LEVEL",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log at this level to stderr (DEBUG, INFO, WARNING, ERROR)")
    common.add_argument("--packages", action="append", metavar="DIR",
                        help="a directory of packages (default: packages_dev; repeatable)")
    common.add_argument("--database-url", metavar="URL",
                        help="postgresql:// URL (default: $DATABASE_URL, else embedded)")
    common.add_argument("--no-cache", action="store_true",
                        help="load the packages even if unchanged since their last load "
                        "(for packages whose schema depends on the environment)")
    common.add_argument("--no-entry-points", action="store_true",
                        help="skip installed packages of the 'runtime.packages' entry points")
    common.add_argument("--lock-timeout", type=_duration, metavar="SECONDS",
                        help="how long a statement may wait for a lock before the run "
                             "backs off and retries (default: $RUNTIME_LOCK_TIMEOUT, else "
                             "5, 1 for dev; 0: wait forever)")
    common.add_argument("--statement-timeout", type=_duration, metavar="SECONDS",
                        help="how long one statement may run (default: "
                             "$RUNTIME_STATEMENT_TIMEOUT, else no limit)")
    common.add_argument("--require-rls", action="store_true",
                        help="every package must use row-level security (Y135; default: "
                             "$RUNTIME_REQUIRE_RLS)")
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true",
                         help="machine-readable output on stdout (README: JSON output); "
                              "words for people go to stderr")
    parser = _Parser(
        prog=program,
        description="Validate, migrate and watch the database schemas of ydtb packages.",
        epilog="Exit codes: 0 success, 1 validation or migration errors, 2 usage or "
               "connection errors, 130 interrupted by Ctrl-C, 143 by SIGTERM. The database "
               "is --database-url, else $DATABASE_URL, else an embedded PostgreSQL kept in "
               ".runtime/.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the program's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    strict = _Parser(add_help=False)
    strict.add_argument("--strict", action="store_true",
                        help="lint findings are errors: exit 1 (and migrate applies nothing)")
    fleet = _Parser(add_help=False)
    fleet.add_argument("--fleet", metavar="FILE",
                       help="every database of FILE (one a line: NAME URL, or URL) instead "
                            "of --database-url (README: Scaling out)")
    fleet.add_argument("--concurrency", type=_positive, default=4, metavar="N",
                       help="with --fleet: databases worked on at once (default: 4)")
    migrate = commands.add_parser("migrate", parents=[common, as_json, strict, fleet],
                                  help="apply pending migrations")
    migrate.add_argument("--plan", action="store_true", help="print the SQL, change nothing")
    migrate.add_argument("--lock-retries", type=int, default=3, metavar="N",
                         help="run again, after a growing pause, up to N times when a "
                              "migration times out waiting for a lock (default: 3)")
    migrate.add_argument("--wait", type=_duration, metavar="SECONDS",
                         help="give up after waiting this long for another run's lock "
                              "(default: wait as long as it takes, naming the holder)")
    migrate.add_argument("--transaction", choices=[m.value for m in TransactionMode],
                         help="commit the whole run at once, each package, or each migration "
                              "(default: $RUNTIME_TRANSACTION, else all)")
    migrate.add_argument("--canary", metavar="NAME",
                         help="with --fleet: the database migrated first, alone (default: "
                              "the first line's)")
    check = commands.add_parser("check", parents=[common, as_json, strict],
                                help="validate the packages and lint their migrations")
    check.add_argument("--db", action="store_true",
                       help="also check, on a scratch database, that migrations are "
                       "idempotent and build the declared schema")
    check.add_argument("--citus", action="store_true",
                       help="also check that Citus can distribute the schema by "
                       "workspace_id (Y701-Y710)")
    status = commands.add_parser("status", parents=[common, as_json, fleet],
                                 help="packages against the ledger")
    status.add_argument("--no-drift", action="store_true",
                        help="skip comparing the declared schema with the database (a "
                        "second or so a database of 100 packages)")
    graph_cmd = commands.add_parser("graph", parents=[common, as_json],
                                    help="the dependency graph")
    graph_cmd.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    graph_cmd.add_argument("--citus", action="store_true",
                           help="print the SQL distributing the tables with Citus, in "
                           "dependency order, instead of the graph")
    dev = commands.add_parser("dev", parents=[common], help="the hot-reload dev daemon")
    dev.add_argument("--debounce", type=_milliseconds, default=50, metavar="MS",
                     help="group saves closer than this into one reload (default 50)")
    dev.add_argument("--allow-destructive", action="store_true",
                     help="also apply schema edits that may lose data (drops, narrower "
                     "types, NOT NULL) to the dev database")
    make = commands.add_parser("makemigration", parents=[common],
                               help="write a package's schema changes as a migration")
    make.add_argument("package", metavar="PACKAGE", type=_package_name,
                      help="the package, e.g. @ydtb/basic")
    make.add_argument("--name", help="the file name after its number (default: derived)")
    uninstall = commands.add_parser(
        "uninstall", parents=[common],
        help="remove a package no longer registered from the database, keeping its data "
        "unless --purge")
    uninstall.add_argument("package", metavar="PACKAGE", type=_package_name,
                           help="the package, e.g. @ydtb/basic")
    uninstall.add_argument("--purge", action="store_true",
                           help="also drop its tables and delete its ledger rows and tools: "
                           "registered again, it installs afresh")
    uninstall.add_argument("--plan", action="store_true", help="say what it would do, change "
                           "nothing")
    return parser


_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(Exception):
    """The command was asked to stop by a signal; `signum` says which."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


async def _until_signalled(command: Coroutine[Any, Any, int], console: Console,
                           name: str) -> int:
    # SIGTERM and SIGHUP stop the command as Ctrl-C does, by cancelling it, so that its
    # `finally` blocks run and an embedded server it started is stopped, not left behind.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        # A Python handler, not the loop's: it runs even while the loop is held by code
        # that never returns (a package's endless loop, as it loads), where the loop's
        # would wait for it. A second signal then ends the process at once.
        if received:
            _stop_at_once(console, name, signum)
        received.append(signum)
        loop.call_soon_threadsafe(task.cancel)

    # SIGINT too: a process started in the background by a script inherits SIGINT
    # ignored, and Python then leaves it so; a deploy tool's interrupt must still stop it.
    previous = {signum: signal.signal(signum, stop) for signum in _STOPPING}
    try:
        return await command
    except asyncio.CancelledError:
        raise _Stopped(received[0] if received else signal.SIGINT) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_at_once(console: Console, command: str, signum: int) -> NoReturn:
    """End the process now, as asked a second time, whatever holds the command (code of
    a package that never returns): only an embedded server this run started is stopped."""
    with contextlib.suppress(Exception):  # the stream may be mid-write where it stopped
        console.line("stopped at once (asked twice)", "warn")
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    server = sys.modules.get("runtime.db.server")  # not imported: no server started
    if server is not None:
        server.stop_started()
    os._exit(_stopped_code(command, signum))


def _configure_logging(args: argparse.Namespace) -> None:
    """Send the library's log records to stderr at the level asked for (none by default).

    Only the CLI configures logging: an application embedding `runtime` keeps its own.
    """
    level = args.log_level or {0: None, 1: "INFO"}.get(args.verbose, "DEBUG")
    if level is None:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("runtime")
    logger.addHandler(handler)
    logger.setLevel(level)


def _program(argv0: str) -> str:
    """How the user ran this CLI, for the commands that messages spell out."""
    name = Path(argv0).name
    return name if name in (SCRIPT, f"{SCRIPT}.exe") else PROGRAM


def _check_fleet(args: argparse.Namespace) -> None:
    """Refuse the options that do not go with `--fleet`, or need it.

    Raises:
        UsageError: naming the option and the fix.
    """
    fleet = getattr(args, "fleet", None)
    if fleet is None:
        if getattr(args, "canary", None) is not None:
            raise UsageError("--canary", "names the first database of a fleet",
                             "give --fleet FILE too")
        return
    if args.database_url is not None:
        raise UsageError("--fleet", "and --database-url both name the databases",
                         "list every database in the fleet file, or give --database-url "
                         "alone")
    if getattr(args, "plan", False):
        raise UsageError("--fleet", "--plan prints one database's plan",
                         "give --database-url with --plan")


def _check_settings(settings: Settings, *, entry_points: bool) -> None:
    """Refuse, before anything is read or written, settings that cannot work.

    Raises:
        UsageError: naming the setting, what is wrong and the fix.
    """
    if settings.database_url is not None:
        url, setting = settings.database_url, "--database-url (or DATABASE_URL)"
        fix = ("write postgresql://user:password@host:port/database, or leave it unset for "
               "the embedded server")
        try:
            parts = urlsplit(urls.plain_url(url))
        except ValueError:
            raise UsageError(setting, f"{urls.hide_password(url)!r} is not a PostgreSQL URL",
                             fix) from None
        try:
            parts.port  # noqa: B018 -- reading the port is what checks it
        except ValueError as exc:
            raise UsageError(setting, f"{urls.hide_password(url)!r}: {exc}", fix) from None
    for directory in settings.packages:
        if not directory.is_dir():
            raise UsageError("--packages", f"{directory} is not a directory",
                             "name the directory holding your package directories; the "
                             "default is packages_dev")
    if not packages.any_package(settings.packages) and not (entry_points and _installed()):
        # A run of no packages would take every recorded one for unregistered and
        # deactivate its tools.
        raise UsageError("--packages", "no package in "
                         f"{', '.join(str(d) for d in settings.packages)}",
                         f"a package is a directory holding {packages.PACKAGE_FILE}; "
                         "create one, or name the right directory")


def _installed() -> bool:
    import importlib.metadata

    from runtime.load.loader import ENTRY_POINT_GROUP

    return bool(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def main(
    argv: Sequence[str] | None = None, *, console: Console | None = None,
    program: str | None = None,
) -> int:
    """Run a command line; return its exit code.

    Args:
        argv: the arguments after the program's name (default: `sys.argv[1:]`).
        console: where output goes.
        program: how the user ran this CLI, as messages spell commands (default: from
            `sys.argv[0]`: `ydtb-runtime` for the console script, else `python -m runtime`).
    """
    console = console or Console()
    console.program = program or _program(sys.argv[0])
    try:
        args = _parser(console.program).parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and USAGE
    _configure_logging(args)
    if getattr(args, "json", False):
        console.use_json()
    try:
        settings = resolve_settings(
            database_url=args.database_url, packages=args.packages,
            require_rls=args.require_rls, lock_timeout=args.lock_timeout,
            statement_timeout=args.statement_timeout,
            transaction=getattr(args, "transaction", None),
            default_lock_timeout=DEV_LOCK_TIMEOUT if args.command == "dev"
            else DEFAULT_LOCK_TIMEOUT,
            application_name=f"ydtb-runtime {args.command}", environ=os.environ,
            project_dir=Path.cwd())
    except ValueError as exc:
        console.error(str(exc))  # it names the variable, its value and what to give
        if console.json:
            console.document(summary(console, ok=False, error="UsageError", exit_code=USAGE))
        return USAGE
    try:
        _check_fleet(args)
        _check_settings(settings, entry_points=not args.no_entry_points)
        with process.running(lasting=args.command == "dev"):
            return asyncio.run(_until_signalled(_run(args, settings, console), console,
                                                args.command))
    except (UsageError, DatabaseUnavailableError, DatabaseInUseError) as exc:
        return _failed(console, exc, USAGE)
    except RegistryError as exc:
        return _failed(console, exc, FAILED)
    except BrokenPipeError:
        # The reader went away (`status | head`): nowhere to say more. Python would
        # print a traceback flushing stdout at exit, so stdout now leads nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return _stopped(console, args.command, signal.SIGINT)
    except _Stopped as stopped:
        return _stopped(console, args.command, stopped.signum)


def _failed(console: Console, error: RegistryError, code: int) -> int:
    """Report the error that ended the command, in JSON too when asked; return `code`."""
    console.failure(error)
    if console.json:
        console.document(summary(console, ok=False, error=type(error).__name__,
                                 exit_code=code))
    return code


def _stopped(console: Console, command: str, signum: int) -> int:
    """Say the command stopped; exit 128 + the signal, as shells do, but for the daemon,
    for which being asked to stop is how it ends."""
    console.line("stopped", "dim")
    code = _stopped_code(command, signum)
    if console.json:
        console.document(summary(console, ok=False, error="stopped",
                                 signal=signal.Signals(signum).name, exit_code=code))
    return code


def _stopped_code(command: str, signum: int) -> int:
    return OK if command == "dev" else 128 + signum


def script() -> NoReturn:
    """The console script `ydtb-runtime`, the same as `python -m runtime`."""
    exit_now(main(program=SCRIPT))


def exit_now(code: int) -> NoReturn:
    """End the process with `code` at once, without freeing what it loaded.

    Interpreter shutdown frees every object one by one: 1.3 s after a `migrate` of
    N = 300 packages (scripts/bench), for nothing, since `main` has already stopped the
    embedded server and disposed of the engines in `finally` blocks. Logging and the
    standard streams are flushed first; `atexit` handlers do not run.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    exit_now(main())
