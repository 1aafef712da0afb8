"""Write the difference between a package's migrations and its declared schema as a new
migration file (`python -m runtime makemigration PACKAGE`).

The difference comes from a scratch database (`runtime.db.scratch.compare_migrations`),
so it does not depend on the dev database: what the dev daemon synced there is exactly
what the file adds, and applying the file to the dev database changes nothing. The file
is SQL people can read and edit: one commented block per difference, each statement
idempotent like every migration must be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from runtime.core import ddl
from runtime.core.events import Rename, labels_first, suggested_rename
from runtime.core.model import Migration, Package
from runtime.db.diff import Difference

__all__ = [
    "AFTER",
    "BEFORE",
    "Written",
    "default_name",
    "next_migration_path",
    "render_migration",
    "write_initial",
    "write_migration",
]

_NUMBERED = re.compile(r"^(?P<number>\d+)_")
_VERBS = {"add_table": "create", "remove_table": "drop", "remove_column": "drop",
          "remove_index": "drop", "remove_fk": "drop", "remove_constraint": "drop"}


def default_name(differences: Sequence[Difference]) -> str:
    """Name a migration after what it does: `add_color`, `create_ydtb_tags`, `update_ydtb_notes`."""
    rename = suggested_rename(differences)
    if rename is not None and len(differences) == 2:
        return _slug(f"rename_{rename.what.rpartition('.')[2]}")
    if len(differences) == 1:
        [only] = differences
        verb = _VERBS.get(only.kind, only.kind.partition("_")[0])
        return _slug(f"{verb}_{only.name or only.table}")
    tables = {d.table for d in differences}
    return _slug(f"update_{tables.pop()}" if len(tables) == 1 else "update_schema")


def next_migration_path(directory: Path, name: str) -> Path:
    """Return `directory/NNNN_name.sql`, numbered after the highest migration there."""
    numbers = [m["number"] for p in directory.iterdir() if (m := _NUMBERED.match(p.name))]
    width = max([4, *(len(n) for n in numbers)])
    number = max((int(n) for n in numbers), default=0) + 1
    return directory / f"{number:0{width}d}_{_slug(name)}.sql"


#: The name endings of the files written with a migration: the enum labels it uses,
#: added before it; what would block writes, run after it (`render_migration`).
BEFORE = "_labels"
AFTER = "_online"


def render_migration(
    package: Package, differences: Sequence[Difference]
) -> list[tuple[str, str]]:
    """Render the SQL file: a header, then each difference as a comment and its SQL; and
    when some of it would block writes for as long as it reads every row, a second file,
    `no-transaction`, to run after the first commits (alone, when nothing else is left).

    That second file builds the indexes of tables that exist already `CONCURRENTLY`
    (lint Y510, Y511) and validates the foreign keys and CHECKs the first adds `NOT VALID`
    (Y515, Y516): what the safety lint asks of a migration written by hand.

    Labels added to enum types, with anything else, go in a `no-transaction` file before
    the first: PostgreSQL does not let a transaction use a label it added, and the first
    file may (a default, a column of the type), in the one transaction of a run.

    Returns:
        Each file's name ending (`BEFORE`, "", `AFTER`) and text, in the order they run.
    """
    labels = labels_first(differences)
    if labels:
        first = "\n".join([
            _NO_TRANSACTION,
            f"-- Written by `python -m runtime makemigration {package.name}` with the "
            "migration after", "-- this one, which may use these labels: PostgreSQL uses "
            "a label only once the", "-- transaction that added it committed. Run again, "
            "it does nothing.",
            *(line for d in labels for line in ("", f"-- {d.words}", *map(_sql, d.statements)))])
        rest = [d for d in differences if d not in labels]
        return [(BEFORE, first + "\n"), *render_migration(package, rest)]
    header = [
        f"-- Written by `python -m runtime makemigration {package.name}`: what the declared",
        "-- schema has that the database built by the migrations before this one has not",
        "-- (\"declared but missing\"), and the reverse (\"in the database but not declared\").",
    ]
    lines: list[str] = []
    after: list[str] = []
    created = {d.table for d in differences if d.kind == "add_table"}
    rename = suggested_rename(differences)
    keys_later = False  # a unique key or index built by the file after this one
    for difference in differences:
        if rename is not None and difference is rename.dropped:
            lines += _rename_lines(rename)
            continue
        if rename is not None and difference is rename.added:
            continue
        warning = " (DESTRUCTIVE: review it)" if difference.destructive else ""
        if not difference.statements:  # no statement does it: the author writes it
            lines += ["", f"-- {difference.words}{warning}", *_by_hand(difference)]
            continue
        now, later = _split(difference, created)
        if keys_later and difference.kind in ("add_fk", "add_table") \
                and any("REFERENCES" in statement for statement in now):
            # It may stand on that key: PostgreSQL refuses it before the key exists.
            now, later = [], [*now, *later]
        keys_later |= difference.kind in _KEYS and any(
            word in statement.upper() for statement in later for word in _UNIQUE)
        if later:
            after += ["", f"-- {difference.words}{warning}", *(_sql(s) for s in later)]
        if not now:
            continue
        lines += ["", f"-- {difference.words}{warning}"]
        for statement in now:
            if ddl.FILL_IN in statement:
                lines.append("-- REVIEW: write the value for rows without one in place of "
                             "NULL (on a table with no such rows it does nothing)")
            lines.append(_sql(statement))
    if not lines:
        return [("", "\n".join([*header, _NO_TRANSACTION, *_ONLINE, *after]) + "\n")]
    texts = [("", "\n".join([*header, *lines]) + "\n")]
    if after:
        texts.append((AFTER, "\n".join([
            _NO_TRANSACTION,
            f"-- Written by `python -m runtime makemigration {package.name}` with the "
            "migration before", "-- this one, to run once it committed.",
            *_ONLINE, *after]) + "\n"))
    return texts


def _by_hand(difference: Difference) -> list[str]:
    """A placeholder that fails until the author writes what no statement does in
    place: written empty, the migration ran as done and `check --db` refused it."""
    lines = ["-- REVIEW: write it here, guarded to run twice, in place of the statement "
             "below, which fails until you do."]
    if difference.kind == "modify_enum":
        lines.append(f"-- PostgreSQL cannot drop or move a label of {difference.name} in "
                     "place: rename the type, create it with the declared labels, convert "
                     "each column using it (USING column::text::type, its default dropped "
                     "and set again), then drop the old type.")
    return [*lines, "DO $$ BEGIN RAISE EXCEPTION 'runtime: this migration is to be written "
            "by hand: see its REVIEW comment'; END $$;"]


_KEYS = frozenset({"add_constraint", "modify_constraint", "add_index", "modify_index"})
_UNIQUE = ("UNIQUE", "PRIMARY KEY")  # what a foreign key may stand on
_NO_TRANSACTION = "-- runtime: no-transaction"
_ONLINE = ["-- Each statement below reads every row of its table without blocking writes to",
           "-- it, which it cannot do inside a transaction: it runs on its own. Run again, it",
           "-- does nothing."]


def _split(difference: Difference, created: set[str]) -> tuple[list[str], list[str]]:
    """The statements of `difference` for the migration, and those for the one after it."""
    if difference.table in created:  # no rows yet: nothing to wait for
        return list(difference.statements), []
    now: list[str] = []
    later: list[str] = []
    for statement in difference.statements:
        online = ddl.concurrently(statement)
        if later or online is not None or ddl.is_validation(statement):
            later.append(online or statement)  # what follows a moved statement goes too
        else:
            now.append(statement)
    return now, later


def _sql(statement: str) -> str:
    return statement.replace("\t", "    ") + ";"


def _rename_lines(rename: Rename) -> list[str]:
    """A rename, guessed from one dropped and one added: written as the rename, which
    keeps the data, with the drop and add it stands for commented out beside it."""
    lines = ["", f"-- {rename.dropped.words}", f"-- {rename.added.words}",
             f"-- Written as a rename of {rename.what}, which keeps the rows' values (REVIEW "
             "it: if they are two different things, delete the rename and uncomment the "
             "statements after it)",
             rename.statement + ";"]
    for difference in (rename.dropped, rename.added):
        lines += [f"-- {line}" for statement in difference.statements
                  for line in (statement + ";").splitlines()]
    return lines


class Written(NamedTuple):
    """A file `write_migration` wrote, and its part: `BEFORE`, "" (the migration) or
    `AFTER`, as its name ends."""

    path: Path
    part: str


def write_migration(
    directory: Path, package: Package, differences: Sequence[Difference],
    name: str | None = None,
) -> list[Written]:
    """Write `differences` as the next migration in `directory`, with the
    `no-transaction` ones before and after it if it needs them (`render_migration`);
    return their paths, in the order they run.

    Args:
        directory: the package's migrations directory
            (`runtime.load.packages.migrations_directory`).
        package: the package, named in the file's header.
        differences: from `runtime.db.scratch.compare_migrations`, at least one.
        name: the file's name after its number; derived from the differences when None.
    """
    name = name or default_name(differences)
    written = []
    for suffix, text in render_migration(package, differences):
        path = next_migration_path(directory, f"{name}{suffix}")
        # Written aside, then renamed: a dev daemon watching the directory never reads
        # half a file (a dot file is not a migration, nor a change the watcher reports).
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
        written.append(Written(path, suffix))
    return written


def write_initial(directory: Path, derived: Migration) -> Path:
    """Write the migration a package derived from its schema as its first migration file.

    The file holds the derived statements exactly, so its checksum is the derived one's:
    the databases that applied the derived migration see the same migration, not an edit.
    """
    path = directory / f"{derived.id}.sql"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("\n;\n".join(s.strip() for s in derived.statements or ()) + "\n",
                       encoding="utf-8")
    partial.replace(path)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "migration"
