"""The safety lint of migrations: which statements lock or rewrite a table holding rows.

`lint_package` reads a package's SQL migrations with PostgreSQL's own parser
(`runtime.core.sql`), the statements inside their PL/pgSQL `DO` blocks too, and applies
the rules of `runtime.core.lint_rules` to each. What counts as a table holding rows is
the caller's to say, as the two ways of running it differ:

- without a database (`check`), every migration is judged alone, as a deploy of that
  new file would meet the tables the files before it built: only the tables created in
  the same file are new;
- with one (`migrate`, `migrate --plan`), only the pending migrations are judged, and
  the tables created by an earlier pending migration of the same run are new too (a
  fresh install builds them empty). A migration changes only its own package's tables
  (Y502), so judging each package on its own sees every table it could touch.

A comment before a statement silences a rule for that statement, with a reason:
`-- runtime: allow Y510 the table holds ten rows`. One without a reason silences
nothing and is itself a finding (Y530).

Findings are warnings, plain values for the console (or JSON) to render. The one rule
that is a validation problem is the major version (Y303, `major_problems`): a pending
migration that drops or renames a table or column of the recorded version.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.errors import Problem, SqlSyntaxError

if TYPE_CHECKING:
    # The parser (pglast: 0.11 s to import) only where migrations are read: the load
    # cache's answer to `check` shows stored findings with this module alone.
    from runtime.core import sql
    from runtime.core.lint_rules import Hit, Schema
    from runtime.core.model import Migration, Package
    from runtime.core.plan import Step
    from runtime.core.recorded import Ledger

__all__ = [
    "CODES",
    "Finding",
    "PackageLint",
    "lint_all",
    "lint_package",
    "lint_steps",
    "major_problems",
]

#: Every lint code, with what it is about, as the README's table says it.
CODES: dict[str, str] = {
    "Y510": "CREATE INDEX without CONCURRENTLY",
    "Y511": "DROP INDEX without CONCURRENTLY",
    "Y512": "REINDEX without CONCURRENTLY",
    "Y513": "a column type change that rewrites the table",
    "Y514": "SET NOT NULL without a validated NOT NULL or CHECK constraint",
    "Y515": "a foreign key added without NOT VALID",
    "Y516": "a check constraint added without NOT VALID",
    "Y517": "a new column filled row by row: volatile default, identity, serial, stored",
    "Y518": "a new NOT NULL column without a default",
    "Y519": "PRIMARY KEY or UNIQUE added without USING INDEX",
    "Y520": "an exclusion constraint added",
    "Y521": "a statement that rewrites the table",
    "Y522": "LOCK TABLE",
    "Y523": "DETACH PARTITION without CONCURRENTLY",
    "Y524": "a statement that cannot run in a transaction, in a transactional migration",
    "Y525": "DROP TABLE",
    "Y526": "DROP COLUMN",
    "Y527": "RENAME of a table",
    "Y528": "RENAME of a column",
    "Y530": "a silence comment without a reason, or naming no lint code",
    "Y531": "SQL the lint cannot read",
}


_SILENCE = re.compile(r"^(?:--|/\*)\s*runtime:\s*allow\b(?P<rest>.*?)(?:\*/)?\s*$", re.DOTALL)
_CODE = re.compile(r"[Yy]\d{3}\b")
_SHORT = 100  # characters of a statement shown in a finding


@dataclass(frozen=True)
class Finding:
    """One lint finding: where, which statement and table, what is wrong, the fix."""

    code: str
    package: str
    migration: str
    line: int | None
    statement: str
    table: str | None
    message: str
    fix: str

    def to_json(self) -> list[Any]:
        """A JSON-ready form (the load cache keeps it); `from_json` reads it back."""
        return [self.code, self.package, self.migration, self.line, self.statement,
                self.table, self.message, self.fix]

    @classmethod
    def from_json(cls, data: Any) -> Finding:
        """Read what `to_json` wrote.

        Raises:
            ValueError: `data` is not in that form.
        """
        try:
            code, package, migration, line, statement, table, message, fix = data
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a lint finding: {exc}") from exc
        return cls(str(code), str(package), str(migration),
                   None if line is None else int(line), str(statement),
                   None if table is None else str(table), str(message), str(fix))


@dataclass(frozen=True)
class PackageLint:
    """What the lint found in one package's migrations.

    Attributes:
        findings: the warnings, in the order of the migrations and their statements.
        breaking: the drops and renames of tables and columns that hold rows, silenced
            or not: what the major-version rule reads (`major_problems`).
        python: the ids of the Python migrations judged, which the lint cannot read.
    """

    package: str
    findings: tuple[Finding, ...] = ()
    breaking: tuple[Finding, ...] = ()
    python: tuple[str, ...] = ()


def lint_package(
    package: str, migrations: Sequence[Migration], *, pending: Collection[str] | None = None
) -> PackageLint:
    """Lint the migrations of `package`, in order.

    Args:
        package: its name, for the findings.
        migrations: all its migrations, in order: those not judged still tell what the
            tables are (a column's type, a validated check).
        pending: None to judge each migration alone (no database); else the ids of the
            pending ones, judged as one run.
    """
    from runtime.core.lint_rules import Schema

    schema = Schema()
    findings: list[Finding] = []
    breaking: list[Finding] = []
    python: list[str] = []
    for migration in migrations:
        judged = pending is None or migration.id in pending
        if pending is None:
            schema.new.clear()  # each file alone: only what it creates is new
        if migration.statements is None:
            if judged:
                python.append(migration.id)
            continue
        for finding, hit in _lint_migration(package, migration, schema):
            if not judged:
                continue
            if hit is not None and hit.breaking:
                breaking.append(finding)
            if finding.code != "":
                findings.append(finding)
        if not judged:
            schema.new.clear()  # built by an applied migration: it holds rows
    return PackageLint(package, tuple(findings), tuple(breaking), tuple(python))


def lint_all(packages: Sequence[Package]) -> list[PackageLint]:
    """Lint every migration of `packages`, each judged alone (`check`, no database)."""
    return [lint_package(p.name, p.migrations) for p in packages]


def _lint_migration(
    package: str, migration: Migration, schema: Schema
) -> Iterator[tuple[Finding, Hit | None]]:
    """Yield each finding of `migration` with its hit; a silenced one has code ""."""
    from runtime.core import sql

    texts = migration.statements or ()
    lines = isinstance(migration.up, str)  # a list of texts: no line in a file
    for text in texts:
        try:
            statements = sql.parse(text)
        except SqlSyntaxError as exc:
            yield _unreadable(package, migration.id, exc, lines), None
            continue
        for statement in statements:
            allowed, problems = _silences(statement.comments)
            for message in problems:
                yield Finding("Y530", package, migration.id,
                              statement.line if lines else None, _short(statement.text),
                              None, message, "write -- runtime: allow Y5xx and why the "
                              "rule does not apply here"), None
            for inner, hit in _judged(statement, schema, migration.transactional):
                if isinstance(hit, SqlSyntaxError):
                    yield _unreadable(package, migration.id, hit, lines), None
                    continue
                finding = Finding("" if hit.code in allowed else hit.code, package,
                                  migration.id, inner.line if lines else None,
                                  _short(inner.text), hit.table, hit.message, hit.fix)
                yield finding, hit


def _judged(
    statement: sql.Statement, schema: Schema, transactional: bool
) -> Iterator[tuple[sql.Statement, Hit | SqlSyntaxError]]:
    """Judge `statement`, and the statements of its `DO` block (always in a transaction)."""
    from runtime.core import sql
    from runtime.core.lint_rules import judge

    for hit in judge(statement, schema, transactional=transactional):
        yield statement, hit
    try:
        inner = sql.block(statement)
    except SqlSyntaxError as exc:
        yield statement, exc
        return
    for each in inner:
        for hit in judge(each, schema, transactional=True):
            yield each, hit


def _unreadable(package: str, migration: str, error: SqlSyntaxError, lines: bool) -> Finding:
    return Finding("Y531", package, migration, error.line if lines else None, "", None,
                   f"PostgreSQL's parser refuses it ({error.reason}): the lint read none "
                   "of it", "fix the SQL; migrate would fail on it too")


def _silences(comments: Sequence[str]) -> tuple[set[str], list[str]]:
    """Read the silence comments before a statement: the codes allowed, and what is wrong."""
    allowed: set[str] = set()
    problems: list[str] = []
    for comment in comments:
        match = _SILENCE.match(comment.strip())
        if match is None:
            continue
        rest = match["rest"].strip()
        codes = []
        while (code := _CODE.match(rest)) is not None:
            codes.append(code[0].upper())
            rest = rest[code.end():].lstrip(" ,;:").strip()
        unknown = [c for c in codes if c not in CODES or c in ("Y530", "Y531")]
        if not codes or unknown:
            named = f"names {', '.join(unknown)}, not a lint rule" if unknown else \
                "names no rule"
            problems.append(f"the silence {comment.strip()!r} {named}, so it silences "
                            "nothing")
        elif not re.search(r"\w", rest):
            problems.append(f"the silence of {', '.join(codes)} gives no reason, so it "
                            "silences nothing")
        else:
            allowed.update(codes)
    return allowed, problems


def _short(text: str) -> str:
    """One line of at most `_SHORT` characters: the statement as a finding shows it."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHORT else flat[:_SHORT - 1] + "…"


def major_problems(lint: PackageLint, version: str, recorded: str | None) -> list[Problem]:
    """Say which drops and renames need a new major version of the package (Y303).

    A table or column that the recorded version declared is relied on by the packages
    depending on it and by the code deployed with it: dropping or renaming one is a
    breaking change, which the version must say.

    Args:
        lint: what `lint_package` found in the pending migrations.
        version: the registered version.
        recorded: the version the database recorded; None when it recorded none.
    """
    if recorded is None or not lint.breaking:
        return []
    # packaging only now: 5 ms of a `migrate` of a new migration, which seldom drops (#17).
    from packaging.version import InvalidVersion, Version  # see runtime.core.recorded

    try:
        registered, before = Version(version), Version(recorded)
    except InvalidVersion:
        return []
    if registered.major > before.major:
        return []
    fix = (f"register version {before.major + 1}.0.0: a drop or rename breaks its dependents "
           "and the code deployed with it")
    return [Problem(lint.package, "Y303",
                    f"migration {f.migration} {f.message.partition(':')[0]}, which version "
                    f"{recorded} recorded in the database declared, and version {version} "
                    "keeps its major version", fix, table=f.table, migration=f.migration)
            for f in lint.breaking]


def lint_steps(steps: Sequence[Step], ledger: Ledger) -> tuple[list[PackageLint], list[Problem]]:
    """Lint the pending migrations of a run, package by package, as one run.

    A package the run installs afresh (the ledger records none of its migrations) is not
    read: every table it touches, its own (Y502), is created by the run, so nothing
    could be found but what would fail the run anyway. So a fresh install of N = 300
    packages parses nothing.

    Args:
        steps: the run's steps (`runtime.core.plan.Plan.steps`).
        ledger: what the database recorded: which packages have migrations applied,
            and the version recorded for each.

    Returns:
        What the lint found in each package read, and the Y303 problems
        (`major_problems`) that refuse the run.
    """
    installed = {package for package, _migration in ledger.applied}
    pending: dict[str, set[str]] = {}
    packages = {}
    for step in steps:
        if step.package.name in installed:
            pending.setdefault(step.package.name, set()).add(step.migration.id)
            packages[step.package.name] = step.package
    lints, problems = [], []
    for name, ids in pending.items():
        package = packages[name]
        lint = lint_package(name, package.migrations, pending=ids)
        lints.append(lint)
        before = ledger.recorded.get(name)
        problems.extend(major_problems(lint, package.version_text,
                                       before[0] if before else None))
    return lints, problems
