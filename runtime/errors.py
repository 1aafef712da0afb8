"""Every exception `runtime` raises, in one tree.

::

    RegistryError
    ├── ProblemsError                    carries a list of Problem, reported all at once
    │   ├── ValidationError (ValueError) a package or the set of packages breaks a rule
    │   ├── LedgerConflictError          the database's ledger disagrees with the packages
    │   ├── IsolationError               a migration built what workspace isolation forbids
    │   └── CitusProblemsError           Citus would refuse to distribute the schema
    ├── RunLockedError                   another run held the pipeline's lock too long
    ├── UnsafeMigrationError             --strict, and the lint found a pending migration unsafe
    ├── SqlSyntaxError (ValueError)      PostgreSQL's parser refuses a migration's SQL
    ├── PackageNotFoundError (LookupError)
    ├── PackageNotRecordedError (LookupError)
    ├── DependentsExistError             unregistering a package others depend on
    ├── UninstallRefusedError            uninstalling a package still registered, or needed
    ├── PackageLoadError                 importing a package's code failed
    ├── UsageError (ValueError)          a setting that cannot work: a URL, a directory
    ├── WorkspaceNotFoundError (LookupError)
    ├── ToolNotFoundError (LookupError)
    ├── ToolInactiveError                enabling a tool whose package is unregistered
    └── DatabaseError
        ├── DatabaseUnavailableError     the server cannot be reached or started
        ├── DatabaseInUseError           another dev daemon runs on the database
        ├── MigrationFailedError         a migration raised; its transaction was rolled back
        │   └── LockTimeoutError         a migration waited for a lock longer than allowed
        └── RowLevelSecurityError        a package's tables could not be put under its policy

Exceptions carry fields and build their own message, so call sites stay one line and
the wording stays the same everywhere. Each message says what, where, and the fix.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

__all__ = [
    "PROGRAM",
    "CitusProblemsError",
    "DatabaseError",
    "DatabaseInUseError",
    "DatabaseUnavailableError",
    "DependentsExistError",
    "IsolationError",
    "LedgerConflictError",
    "LockTimeoutError",
    "MigrationFailedError",
    "PackageLoadError",
    "PackageNotFoundError",
    "PackageNotRecordedError",
    "Problem",
    "ProblemsError",
    "RegistryError",
    "RowLevelSecurityError",
    "RunLockedError",
    "SqlSyntaxError",
    "ToolInactiveError",
    "ToolNotFoundError",
    "UninstallRefusedError",
    "UnsafeMigrationError",
    "UsageError",
    "ValidationError",
    "WorkspaceNotFoundError",
    "shown",
]


#: How messages spell the command line, unless their renderer says otherwise.
PROGRAM = "python -m runtime"

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def shown(value: object) -> str:
    """Return `value` as a message shows it: its repr, cut short.

    Values reach messages from anywhere (a loader, a typo, a property test); cut short,
    a message stays one readable line.
    """
    return _REPR.repr(value)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a package, with a stable code and a hint saying how to fix it.

    Codes are listed in the README ("Validation codes").
    """

    package: str
    code: str
    message: str
    hint: str = ""
    table: str | None = None
    migration: str | None = None
    #: A command that fixes it, as the CLI's arguments (`("makemigration", "@ydtb/notes")`):
    #: data, which whoever shows the problem spells (`render`).
    command: tuple[str, ...] = ()
    #: The other package it is about (a missing or unsatisfied dependency), if any.
    dependency: str | None = None

    def __str__(self) -> str:
        return self.render()

    def render(self, program: str = PROGRAM) -> str:
        """Say the problem, with its fix and its command spelled as `program` runs it."""
        hint = self.hint
        if self.command:
            hint = f"{hint}: {program} {' '.join(self.command)}" if hint else \
                f"run {program} {' '.join(self.command)}"
        hint = f" ({hint})" if hint else ""
        return f"{self.package}: {self.message}{hint} [{self.code}]"


class RegistryError(Exception):
    """Base of every error raised by `runtime`."""


class ProblemsError(RegistryError):
    """Several problems found at once; each is a `Problem` in `problems`."""

    summary = "problems found"

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        return self.render()

    def render(self, program: str = PROGRAM) -> str:
        """List every problem, commands spelled as `program` runs them."""
        count = len(self.problems)
        noun = self.summary if count != 1 else self.summary.replace("problems", "problem")
        head = f"{count} {noun}"
        return head + ":\n" + "\n".join(f"  - {p.render(program)}" for p in self.problems)

    @property
    def packages(self) -> tuple[str, ...]:
        """Names of the packages with problems, each once, in order of appearance."""
        return tuple(dict.fromkeys(p.package for p in self.problems))


class ValidationError(ProblemsError, ValueError):
    """Raised by the registry when a package, or the set of packages, breaks a rule.

    Nothing is recorded when it is raised: the registry keeps its previous state.
    """

    summary = "validation problems"


class LedgerConflictError(ProblemsError):
    """Raised by the pipeline when the ledger disagrees with the registered packages.

    An applied migration was edited (checksums differ), or a package's registered version
    is lower than the one recorded (a downgrade). Nothing is applied when it is raised.
    """

    summary = "ledger problems"


class RunLockedError(RegistryError):
    """Raised when a run gave up waiting for the pipeline's lock (`--wait`)."""

    def __init__(self, waited_s: float, holder: str) -> None:
        self.waited_s = waited_s
        super().__init__(f"another run holds the pipeline's lock on this database: {holder}; "
                         f"gave up after {waited_s:.0f} s (wait longer with --wait SECONDS, "
                         "or let that run finish)")


class UnsafeMigrationError(RegistryError):
    """Raised by `migrate --strict` before a pending migration the safety lint flags runs
    (`runtime.core.lint`); the findings were shown already, and nothing was applied."""

    def __init__(self, findings: int) -> None:
        self.findings = findings
        noun = "finding" if findings == 1 else "findings"
        super().__init__(f"refused by --strict: {findings} lint {noun} in the pending "
                         "migrations, nothing applied (rewrite each as its fix says, or "
                         "silence it with a comment: -- runtime: allow CODE and why)")


class IsolationError(ProblemsError):
    """Raised by the pipeline when a migration built what workspace isolation forbids
    (Y501-Y504, read from the database: `runtime.core.isolation`). The transaction that
    ran it was rolled back."""

    summary = "workspace isolation problems in what the migrations built"


class CitusProblemsError(ProblemsError):
    """Raised by `runtime.core.citus.plan` (and so `graph --citus`) when Citus would refuse
    to distribute the registered schema by `workspace_id` (Y701-Y710)."""

    summary = "problems distributing by workspace_id with Citus"


class SqlSyntaxError(RegistryError, ValueError):
    """Raised by `runtime.core.sql` when PostgreSQL's parser refuses SQL text.

    `package`, `migration` and `line` say where, as far as the caller knows them.
    """

    def __init__(
        self, reason: str, *, line: int | None = None, package: str | None = None,
        migration: str | None = None,
    ) -> None:
        self.reason, self.line, self.package, self.migration = reason, line, package, migration
        where = ", ".join(x for x in (package, migration and f"migration {migration}",
                                      line and f"line {line}") if x)
        super().__init__(f"{where + ': ' if where else ''}the SQL does not parse: {reason} "
                         "(fix the statement; PostgreSQL's own parser reads it)")


class PackageNotFoundError(RegistryError, LookupError):
    """Raised by the registry when asked for a package that is not registered."""

    def __init__(self, package: str, known: tuple[str, ...] = (), *,
                 ambiguous: bool = False) -> None:
        self.package = package
        if ambiguous:  # a short name (`notes`) that several packages answer to
            super().__init__(f"{package}: more than one package answers to it "
                             f"({', '.join(known)}); give the full name")
            return
        hint = f"registered: {', '.join(known)}" if known else "no packages are registered"
        super().__init__(f"{package}: package is not registered ({hint})")


class PackageNotRecordedError(RegistryError, LookupError):
    """Raised by `uninstall` when the database records no package of that name.

    `known` lists those it records and no package registers: the ones it can uninstall.
    """

    def __init__(self, package: str, known: tuple[str, ...] = ()) -> None:
        self.package = package
        self.known = known
        hint = (f"recorded and registered no more: {', '.join(known)}; check the name" if known
                else "every package it records is registered: take a package out of the "
                "packages before uninstalling it")
        super().__init__(f"{package}: the database records no such package ({hint})")


class UninstallRefusedError(RegistryError):
    """Raised by `uninstall` when the package may not go as asked; nothing was changed.

    It is still registered (the next migrate would install it again), registered packages
    depend on it, the database holds what depends on its tables, or it is the core.
    """

    def __init__(self, package: str, reason: str, hint: str) -> None:
        self.package = package
        self.reason = reason
        self.hint = hint
        super().__init__(f"{package}: cannot uninstall, {reason} ({hint})")


class DependentsExistError(RegistryError):
    """Raised by `DatabaseRegistry.unregister` while other packages depend on the package."""

    def __init__(self, package: str, dependents: tuple[str, ...]) -> None:
        self.package = package
        self.dependents = dependents
        super().__init__(
            f"{package}: cannot unregister, {', '.join(dependents)} depend"
            f"{'s' if len(dependents) == 1 else ''} on it "
            f"(unregister {'it' if len(dependents) == 1 else 'them'} first)"
        )


class PackageLoadError(RegistryError):
    """Raised by the loader when a package's code cannot be imported or registered."""

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        line: int | None = None,
        package: str | None = None,
        hint: str = "fix the file and save it again",
    ) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        self.package = package
        where = f"{path}:{line}" if line else path
        who = f"{package}: " if package else ""
        super().__init__(f"{who}{where}: {reason} ({hint})")


class DatabaseError(RegistryError):
    """Base of errors that come from talking to PostgreSQL."""


class UsageError(RegistryError, ValueError):
    """Raised by the CLI before it does anything when a setting cannot work.

    `setting` names it as people give it (`--database-url`, `--packages`).
    """

    def __init__(self, setting: str, reason: str, hint: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"{setting}: {reason} ({hint})")


class DatabaseUnavailableError(DatabaseError):
    """Raised when the database server cannot be reached or the embedded one cannot start."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the database at {url}: {reason} "
            "(check that the server runs and the URL is right; unset DATABASE_URL to use "
            "the embedded server)"
        )


class DatabaseInUseError(DatabaseError):
    """Raised by the dev daemon at start when another daemon runs on its database.

    `holder` names it: its process id and host, and since when.
    """

    def __init__(self, url: str, holder: str) -> None:
        self.url = url
        self.holder = holder
        super().__init__(
            f"another dev daemon runs on the database at {url} ({holder}); stop it, or "
            "give this one a database of its own (--database-url)")


class MigrationFailedError(DatabaseError):
    """Raised by the pipeline when a migration fails; its transaction was rolled back.

    `statement` is the SQL that failed (when known) and `line` its line within it;
    `kept` counts the migrations the run committed before it, which stay (transaction
    modes `package` and `migration`, or a `no-transaction` migration before it).
    """

    _fix = "fix the migration and run again"

    def __init__(
        self,
        package: str,
        migration: str,
        reason: str,
        *,
        statement: str | None = None,
        line: int | None = None,
        hint: str | None = None,
        kept: int = 0,
    ) -> None:
        self.package = package
        self.migration = migration
        self.reason = reason
        self.statement = statement
        self.line = line
        self.kept = kept
        self._given_hint = hint
        self.hint = hint = _kept_hint(hint, kept, self._fix)
        where = f" at line {line}" if line else ""
        shown = ""
        code = [s for s in (statement or "").strip().splitlines()
                if s.strip() and not s.lstrip().startswith("--")]
        if code:
            shown = f" in `{code[0].strip()[:120]}`"
        super().__init__(f"{package}: migration {migration} failed{where}{shown}: {reason} "
                         f"({hint})")

    def keeping(self, kept: int) -> MigrationFailedError:
        """The same failure, saying that the `kept` migrations committed before it stay."""
        return MigrationFailedError(self.package, self.migration, self.reason,
                                    statement=self.statement, line=self.line,
                                    hint=self._given_hint, kept=kept)


def _kept_hint(hint: str | None, kept: int, fix: str) -> str:
    """What a failure left, then the fix: nothing, or the migrations committed before it."""
    if not kept:
        return hint or f"nothing was applied; {fix}"
    before = (f"the {kept} migration{'s' if kept != 1 else ''} committed before it stay, "
              "recorded in the ledger")
    return f"{before}; {hint or fix}"


class LockTimeoutError(MigrationFailedError):
    """A migration waited longer than `lock_timeout` for a lock; its transaction was
    rolled back. `waited_for` says which lock and who held it, when it was seen; `wait`
    is the same as values, for receivers of signals: a `runtime.core.events.LockWait`
    (typed `object` here, the layer below it), None when it was not seen."""

    _fix = "run again once they finish, or raise --lock-timeout"

    def __init__(self, package: str, migration: str, waited_for: str, *,
                 statement: str | None = None, wait: object = None,
                 kept: int = 0) -> None:
        self.waited_for = waited_for
        self.wait = wait
        super().__init__(package, migration,
                         f"it waited longer than lock_timeout for {waited_for}",
                         statement=statement, kept=kept)

    def keeping(self, kept: int) -> LockTimeoutError:
        """The same lock timeout, saying that the `kept` migrations before it stay."""
        return LockTimeoutError(self.package, self.migration, self.waited_for,
                                statement=self.statement, wait=self.wait, kept=kept)


class RowLevelSecurityError(DatabaseError):
    """Raised by the pipeline when a package asked for row-level security and PostgreSQL
    refused to set it up (most often: a declared table its migrations never create).

    The run's last transaction, where its records are written, was rolled back.
    """

    def __init__(self, package: str, reason: str) -> None:
        self.package = package
        self.reason = reason
        super().__init__(
            f"{package}: cannot enable row-level security: {reason} (the run's last "
            "transaction was rolled back; "
            "make the migrations create every table the schema declares, or set "
            "row_level_security=False)"
        )


class WorkspaceNotFoundError(RegistryError, LookupError):
    """Raised by `runtime.db.tools` when the workspace has no row in `ydtb_workspaces`."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        super().__init__(
            f"workspace '{workspace}' does not exist (check the id, or create the workspace "
            "in ydtb_workspaces first)"
        )


class ToolNotFoundError(RegistryError, LookupError):
    """Raised by `runtime.db.tools` when no package ever registered the tool."""

    def __init__(self, workspace: str, tool: str, known: tuple[str, ...] = ()) -> None:
        self.workspace = workspace
        self.tool = tool
        self.known = known
        listed = f"available: {', '.join(known)}" if known else "no tools are available"
        super().__init__(
            f"workspace '{workspace}': tool '{tool}' is not registered ({listed}; check the "
            "id, or register the package that provides it)"
        )


class ToolInactiveError(RegistryError):
    """Raised by `runtime.db.tools.enable_tool` when the tool's package is no longer registered.

    Its row stays in `ydtb_tools` with `is_active` false, so workspaces keep their choice
    for when the package comes back.
    """

    def __init__(self, workspace: str, tool: str, package: str) -> None:
        self.workspace = workspace
        self.tool = tool
        self.package = package
        super().__init__(
            f"workspace '{workspace}': tool '{tool}' is inactive, its package {package} is no "
            f"longer registered (register {package} again and migrate, then enable it)"
        )
