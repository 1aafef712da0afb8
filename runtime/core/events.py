"""The values events carry: what changed in a database, and how a schema differs from it.

Signals (`runtime.core.signals`) send these, never sentences: the console, NOTIFY and a
subscriber's code all read the same fields, and each renders them its own way. They
travel between processes as JSON (`to_json` / `from_json`), so a subscriber in another
process (`runtime.db.notify.relay`) gets equal values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Change",
    "ChangeKind",
    "Difference",
    "LockHolder",
    "LockWait",
    "Rename",
    "labels_first",
    "suggested_rename",
]


@dataclass(frozen=True)
class LockHolder:
    """A session holding a lock another waits for, as `pg_stat_activity` shows it.

    Attributes:
        pid: its server process id.
        application_name: what it calls itself (`ydtb-runtime migrate`, an app's name).
        state: `active`, `idle in transaction`, ...
        since: when its current transaction began (else its state), ISO 8601.
    """

    pid: int
    application_name: str
    state: str
    since: str


@dataclass(frozen=True)
class LockWait:
    """What a statement waited for: a lock on `relation` in `mode`, held by `holders`."""

    relation: str
    mode: str
    holders: tuple[LockHolder, ...]


@dataclass(frozen=True)
class Difference:
    """One way a package's declared schema and a database differ.

    Attributes:
        kind: alembic's name for it: `add_table`, `remove_table`, `add_column`,
            `remove_column`, `modify_type`, `modify_nullable`, `modify_default`,
            `modify_comment`, `add_index`, `remove_index`, `add_fk`, `remove_fk`,
            `add_constraint`, `remove_constraint`; or ours, for what alembic does not
            compare: `modify_fk` (its actions), `modify_table_comment`,
            `modify_identity`, `modify_primary_key`, `modify_constraint` (a CHECK's
            expression), `modify_index`, `modify_computed`, `add_enum_value`,
            `modify_enum` (a label removed or moved: no SQL does it in place).
        table: the table it is in.
        name: the column, index or constraint it is about; None for a whole table.
        words: the difference in plain words, as `status` and the daemon show it:
            `table ydtb_notes: column color declared but missing`.
        destructive: making the database match may lose data or fail on existing rows
            (a drop, a narrower type, NOT NULL); the dev daemon never does it on its own.
        statements: the SQL that makes the database match the declaration; idempotent.
    """

    kind: str
    table: str
    name: str | None
    words: str
    destructive: bool
    statements: tuple[str, ...]

    def __str__(self) -> str:
        return self.words

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form; `from_json` reads it back."""
        return {"kind": self.kind, "table": self.table, "name": self.name,
                "words": self.words, "destructive": self.destructive,
                "statements": list(self.statements)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Difference:
        """Read what `to_json` wrote."""
        return cls(str(data["kind"]), str(data["table"]),
                   None if data.get("name") is None else str(data["name"]),
                   str(data["words"]), bool(data["destructive"]),
                   tuple(str(s) for s in data.get("statements", ())))


class ChangeKind(enum.StrEnum):
    """What kind of change a database went through."""

    APPLIED = "applied"  #: a migration ran for the first time
    RERUN = "rerun"  #: an applied migration was edited and ran again (dev daemon)
    DEV_SYNC = "dev_sync"  #: the declared schema was applied without a migration (dev daemon)
    RECONCILED = "reconciled"  #: a migration took a dev change over; its ledger row went


@dataclass(frozen=True)
class Change:
    """One change made to a database, as a run or the dev daemon reports it.

    Attributes:
        kind: what happened.
        package: the package it belongs to.
        migration: the id the ledger records it under: a migration's id, or a dev
            change's `dev:<fingerprint>` (for DEV_SYNC and RECONCILED).
        duration_ms: how long it ran; 0 for RECONCILED.
        differences: for DEV_SYNC, each difference it resolved.
    """

    kind: ChangeKind
    package: str
    migration: str
    duration_ms: float = 0.0
    differences: tuple[Difference, ...] = ()

    @property
    def rerun(self) -> bool:
        """An edited migration run again."""
        return self.kind is ChangeKind.RERUN

    @property
    def ran(self) -> bool:
        """Something ran on the database: a migration (first time or again) or a dev sync."""
        return self.kind is not ChangeKind.RECONCILED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form; `from_json` reads it back."""
        return {"kind": self.kind.value, "package": self.package, "migration": self.migration,
                "duration_ms": self.duration_ms,
                "differences": [d.to_json() for d in self.differences]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        """Read what `to_json` wrote.

        Raises:
            ValueError, KeyError, TypeError: `data` is not in that form.
        """
        return cls(ChangeKind(data["kind"]), str(data["package"]), str(data["migration"]),
                   float(data.get("duration_ms", 0.0)),
                   tuple(Difference.from_json(d) for d in data.get("differences", ())))


@dataclass(frozen=True)
class Rename:
    """A drop and an add that look like a rename, and the SQL that renames instead.

    Attributes:
        dropped, added: the two differences it stands for.
        what: in words, `column ydtb_notes.color to colour`.
        statement: the rename, guarded so that it runs twice (a migration must): it
            renames only while the old name exists and the new one does not.
    """

    dropped: Difference
    added: Difference
    what: str
    statement: str


def labels_first(differences: Sequence[Difference]) -> list[Difference]:
    """The enum labels `differences` add, to commit before the others run.

    PostgreSQL does not let a transaction use a label it added ("unsafe use of new
    value"), and the others may use one (a default, a column of the type): the dev sync
    commits them first, `makemigration` writes them in a file before its migration.
    Labels alone need nothing of the kind: empty then.
    """
    labels = [d for d in differences if d.kind == "add_enum_value"]
    return labels if len(labels) < len(differences) else []


def suggested_rename(differences: Sequence[Difference]) -> Rename | None:
    """Find a drop and an add that look like a rename.

    A renamed table or column shows as one dropped and one added; applying the add alone
    would leave the data in the old one, so people are shown the rename instead.
    """
    for added in differences:
        dropped = next((d for d in differences if _renamed(d, added)), None)
        if dropped is None:
            continue
        if added.kind == "add_table":
            return Rename(dropped, added, f"table {dropped.table} to {added.table}",
                          f"ALTER TABLE IF EXISTS {_quote(dropped.table)} RENAME TO "
                          f"{_quote(added.table)}")
        table, old, new = added.table, str(dropped.name), str(added.name)
        return Rename(dropped, added, f"column {table}.{old} to {new}", (
            "DO $$\nBEGIN\n"
            f"    IF {_column_exists(table, old)}\n"
            f"       AND NOT {_column_exists(table, new)} THEN\n"
            f"        ALTER TABLE {_quote(table)} RENAME COLUMN {_quote(old)} TO {_quote(new)};\n"
            "    END IF;\nEND $$"))
    return None


def _column_exists(table: str, column: str) -> str:
    return ("EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
            f"current_schema() AND table_name = {_literal(table)} AND column_name = "
            f"{_literal(column)})")


def _quote(name: str) -> str:
    """Quote an identifier as PostgreSQL's DDL compiler does: when it is not lower-case
    letters and digits, or is a reserved word (`RENAME COLUMN user` was a syntax error)."""
    # Imported here: a run that renames nothing (the no-op path) needs no SQLAlchemy.
    from runtime.core.ddl import quote

    return quote(name)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _renamed(dropped: Difference, added: Difference) -> bool:
    if added.kind == "add_table":
        return dropped.kind == "remove_table"
    return (added.kind, dropped.kind) == ("add_column", "remove_column") \
        and added.table == dropped.table
