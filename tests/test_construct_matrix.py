"""The construct matrix: every construct an author declares, through the whole loop.

Per construct, package `notes` starts with a migration that builds a base table and a
schema that declares it; then `schema.py` declares the construct, and:

(a) the dev sync applies it, or holds it (a destructive one) with a hint whose command
    works; (b) `makemigration` writes a migration that runs on the dev database, runs
    again by hand, and runs on a database whose table holds rows; (c) `check --db`
    accepts it; (d) a fresh `migrate` builds the catalog the dev database has; (e)
    `status` shows no drift.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import create_sql, execute, readable, run_cli, write_package

from runtime import migration_files, signals
from runtime.core.lint import lint_package
from runtime.core.sql import parse
from runtime.db.engine import create_database, drop_database
from runtime.db.urls import plain_url
from runtime.dev.daemon import Daemon

pytestmark = pytest.mark.slow

SCHEMA = '''\
from sqlalchemy import (
    BigInteger, CheckConstraint, Column, Computed, Enum, ForeignKey, ForeignKeyConstraint,
    Identity, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text,
    UniqueConstraint, func, text,
)

metadata = MetaData()

Table(
    "ydtb_notes", metadata,
    {lines}
)
'''

#: The base table's declaration, as `support.create_sql` builds it.
BASE = ['Column("id", Integer, primary_key=True)',
        'Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", '
        'ondelete="CASCADE"), nullable=False)',
        'UniqueConstraint("workspace_id", "id")']
ENUM = ("DO $$ BEGIN CREATE TYPE ydtb_notes_status AS ENUM ('open', 'done');\n"
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n")


@dataclass(frozen=True)
class Case:
    """One construct.

    Attributes:
        sql: extra column and constraint lines of the base migration's CREATE TABLE.
        before: extra lines the schema declares at first (what `sql` builds).
        after: extra lines the schema declares then.
        held: the dev sync holds it (destructive) rather than applying it.
        fill: what the author writes in place of a backfill placeholder.
        rows: the values of the extra columns of the rows put in the table.
        prelude: SQL run before the base table (an enum type).
        base: the base table's lines, unless the case changes them.
        kwargs: `Table(...)` keywords of the after schema (`comment=`).
        post: SQL run after the base table (an index).
        major: the after schema comes with a new major version (a drop breaks the
            code deployed with it: Y303).
    """

    sql: Sequence[str] = ()
    before: Sequence[str] = ()
    after: Sequence[str] = ()
    held: bool = False
    fill: str | None = None
    rows: str = ""
    prelude: str = ""
    base: Sequence[str] = tuple(BASE)
    base_sql: Sequence[str] | None = None
    kwargs: str = ""
    major: bool = False
    post: str = ""


def case(name: str, *marks: Any, **fields: Any) -> Any:
    return pytest.param(Case(**fields), id=name, marks=marks)


CASES = [
    # -- columns
    case("column-add", after=['Column("color", Text)']),
    case("column-add-not-null-default",
         after=['Column("color", Text, nullable=False, server_default="red")']),
    case("column-add-not-null-backfilled", held=True, fill="'red'",
         after=['Column("color", Text, nullable=False)']),
    case("column-drop", held=True, major=True, sql=["color text"], before=['Column("color", Text)'],
         rows=", 'red'"),
    case("column-rename", held=True, major=True, sql=["color text"],
         before=['Column("color", Text)'], after=['Column("colour", Text)'], rows=", 'red'"),
    case("column-type-text-to-integer", held=True, sql=["votes text"],
         before=['Column("votes", Text)'], after=['Column("votes", Integer)'], rows=", '12'"),
    case("column-type-widen", sql=["votes integer"], before=['Column("votes", Integer)'],
         after=['Column("votes", BigInteger)']),
    case("column-set-not-null", held=True, fill="'untitled'", sql=["title text"],
         before=['Column("title", Text)'], after=['Column("title", Text, nullable=False)']),
    case("column-drop-not-null", sql=["title text NOT NULL DEFAULT 'x'"],
         before=['Column("title", Text, nullable=False, server_default="x")'],
         after=['Column("title", Text, server_default="x")']),
    case("column-default-add", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text, server_default="untitled")']),
    case("column-default-change", sql=["made timestamptz DEFAULT now()"],
         before=['Column("made", __import__("sqlalchemy").DateTime(timezone=True), '
                 'server_default=func.now())'],
         after=['Column("made", __import__("sqlalchemy").DateTime(timezone=True), '
                'server_default=text("\'2020-01-01\'"))']),
    case("column-default-drop", sql=["title text DEFAULT 'x'"],
         before=['Column("title", Text, server_default="x")'], after=['Column("title", Text)']),
    case("column-identity-add", after=['Column("seq", BigInteger, Identity())']),
    case("column-identity-on-existing", sql=["seq bigint NOT NULL"],
         before=['Column("seq", BigInteger, nullable=False)'],
         after=['Column("seq", BigInteger, Identity(), nullable=False)'], rows=", 7"),
    # -- primary keys
    case("primary-key-columns", held=True,
         base=[BASE[1], 'Column("id", Integer, nullable=False)'],
         base_sql=["id integer PRIMARY KEY",
                   "workspace_id varchar(20) NOT NULL REFERENCES ydtb_workspaces(id) "
                   "ON DELETE CASCADE"],
         before=['PrimaryKeyConstraint("id", name="ydtb_notes_pkey")'],
         after=['PrimaryKeyConstraint("workspace_id", "id", name="ydtb_notes_pkey")']),
    # -- enums
    case("enum-create", after=['Column("status", Enum("open", "done", '
                               'name="ydtb_notes_status"))']),
    case("enum-add-value", prelude=ENUM, sql=["status ydtb_notes_status"],
         before=['Column("status", Enum("open", "done", name="ydtb_notes_status"))'],
         after=['Column("status", Enum("open", "doing", "done", name="ydtb_notes_status"))'],
         rows=", 'open'"),
    # -- CHECK constraints
    case("check-add", sql=["votes integer"], before=['Column("votes", Integer)'],
         after=['Column("votes", Integer)',
                'CheckConstraint("votes >= 0", name="votes_positive")'], rows=", 1"),
    case("check-changed", sql=["votes integer", "CONSTRAINT votes_positive CHECK (votes >= 0)"],
         before=['Column("votes", Integer)',
                 'CheckConstraint("votes >= 0", name="votes_positive")'],
         after=['Column("votes", Integer)',
                'CheckConstraint("votes > 0 AND votes < 100", name="votes_positive")'],
         rows=", 1"),
    # -- unique constraints
    case("unique-add", sql=["slug text"], before=['Column("slug", Text)'],
         after=['Column("slug", Text)', 'UniqueConstraint("slug", name="ydtb_notes_slug_key")']),
    case("unique-changed", sql=["slug text", "CONSTRAINT ydtb_notes_slug_key UNIQUE (slug)"],
         before=['Column("slug", Text)', 'UniqueConstraint("slug", name="ydtb_notes_slug_key")'],
         after=['Column("slug", Text)',
                'UniqueConstraint("workspace_id", "slug", name="ydtb_notes_slug_key")']),
    case("check-drop", sql=["votes integer", "CONSTRAINT votes_positive CHECK (votes >= 0)"],
         before=['Column("votes", Integer)',
                 'CheckConstraint("votes >= 0", name="votes_positive")'],
         after=['Column("votes", Integer)'], rows=", 1"),
    # -- indexes
    case("index-changed-columns", sql=["title text"],
         post="CREATE INDEX IF NOT EXISTS ix_notes_title ON ydtb_notes (title);\n",
         before=['Column("title", Text)', 'Index("ix_notes_title", "title")'],
         after=['Column("title", Text)', 'Index("ix_notes_title", "workspace_id", "title")']),
    case("index-drop", sql=["title text"],
         post="CREATE INDEX IF NOT EXISTS ix_notes_title ON ydtb_notes (title);\n",
         before=['Column("title", Text)', 'Index("ix_notes_title", "title")'],
         after=['Column("title", Text)']),
    case("index-plain", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text, index=True)']),
    case("index-unique", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text)',
                'Index("ix_notes_title", "title", unique=True)']),
    case("index-partial", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text)', 'Index("ix_notes_title", "title", '
                'postgresql_where=text("title IS NOT NULL"))']),
    case("index-partial-changed", sql=["title text"],
         post="CREATE INDEX IF NOT EXISTS ix_notes_title ON ydtb_notes (title) "
              "WHERE title IS NOT NULL;\n",
         before=['Column("title", Text)', 'Index("ix_notes_title", "title", '
                 'postgresql_where=text("title IS NOT NULL"))'],
         after=['Column("title", Text)', 'Index("ix_notes_title", "title", '
                'postgresql_where=text("title <> \'\'"))']),
    case("index-expression", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text)', 'Index("ix_notes_title", func.lower(text("title")))']),
    case("index-using", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text)',
                'Index("ix_notes_title", "title", postgresql_using="hash")']),
    case("index-include", sql=["title text", "body text"],
         before=['Column("title", Text)', 'Column("body", Text)'],
         after=['Column("title", Text)', 'Column("body", Text)',
                'Index("ix_notes_title", "title", postgresql_include=["body"])']),
    # -- foreign keys
    *[case(f"fk-on-{event}-{action.lower().replace(' ', '-')}", sql=["parent_id integer"],
           before=['Column("parent_id", Integer)'],
           after=['Column("parent_id", Integer)',
                  'ForeignKeyConstraint(["workspace_id", "parent_id"], '
                  f'["ydtb_notes.workspace_id", "ydtb_notes.id"], on{event}="{action}'
                  # SET NULL of both would set workspace_id too (Y210): the key's column only.
                  f'{" (parent_id)" if event == "delete" and action.startswith("SET") else ""}")'])
      for event in ("delete", "update")
      for action in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION")],
    case("fk-action-changed", sql=["parent_id integer", "FOREIGN KEY (workspace_id, parent_id) "
                                   "REFERENCES ydtb_notes (workspace_id, id) ON DELETE CASCADE"],
         before=['Column("parent_id", Integer)',
                 'ForeignKeyConstraint(["workspace_id", "parent_id"], '
                 '["ydtb_notes.workspace_id", "ydtb_notes.id"], ondelete="CASCADE")'],
         after=['Column("parent_id", Integer)',
                'ForeignKeyConstraint(["workspace_id", "parent_id"], '
                '["ydtb_notes.workspace_id", "ydtb_notes.id"], ondelete="RESTRICT")']),
    case("fk-composite", sql=["parent_id integer"], before=['Column("parent_id", Integer)'],
         after=['Column("parent_id", Integer)',
                'ForeignKeyConstraint(["workspace_id", "parent_id"], '
                '["ydtb_notes.workspace_id", "ydtb_notes.id"], ondelete="CASCADE")']),
    case("fk-on-delete-set-null-columns", sql=["parent_id integer"],
         before=['Column("parent_id", Integer)'],
         after=['Column("parent_id", Integer)',
                'ForeignKeyConstraint(["workspace_id", "parent_id"], '
                '["ydtb_notes.workspace_id", "ydtb_notes.id"], '
                'ondelete="SET NULL (parent_id)")']),
    # -- comments
    case("comment-table", kwargs='comment="Notes people write"'),
    case("comment-column", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text, comment="What the note is called")']),
    # -- computed columns
    case("computed-add", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text)',
                'Column("title_length", Integer, Computed("length(title)"))']),
    case("computed-stored", sql=["title text"], before=['Column("title", Text)'],
         after=['Column("title", Text)', 'Column("title_length", Integer, '
                'Computed("length(title)", persisted=True))']),
    case("computed-to-plain", sql=["title text", "title_length integer GENERATED ALWAYS AS "
                                   "(length(title)) STORED"],
         before=['Column("title", Text)', 'Column("title_length", Integer, '
                 'Computed("length(title)", persisted=True))'],
         after=['Column("title", Text)', 'Column("title_length", Integer)']),
    case("computed-from-plain", held=True, major=True, sql=["title text", "title_length integer"],
         before=['Column("title", Text)', 'Column("title_length", Integer)'],
         after=['Column("title", Text)', 'Column("title_length", Integer, '
                'Computed("length(title)", persisted=True))']),
    case("computed-changed", sql=["title text",
                                  "title_length integer GENERATED ALWAYS AS (length(title)) "
                                  "STORED"],
         before=['Column("title", Text)', 'Column("title_length", Integer, '
                 'Computed("length(title)", persisted=True))'],
         after=['Column("title", Text)', 'Column("title_length", Integer, '
                'Computed("octet_length(title)", persisted=True))']),
]


def declare(
    root: Path, c: Case, lines: Sequence[str], kwargs: str = "", version: str = "1.0.0"
) -> None:
    """Write package `notes` (its migrations left as they are) declaring `lines`."""
    write_package(root, "notes", name="notes", version=version, tables={"ydtb_notes": []},
                  migrations={})
    body = ",\n    ".join([*c.base, *lines, *([kwargs] if kwargs else [])])
    (root / "notes/schema.py").write_text(SCHEMA.format(lines=body))


def base_migration(c: Case) -> str:
    if c.base_sql is None:
        return c.prelude + create_sql("ydtb_notes", *c.sql) + c.post
    body = ",\n    ".join([*c.base_sql, *c.sql])
    return f"{c.prelude}CREATE TABLE IF NOT EXISTS ydtb_notes (\n    {body}\n);\n{c.post}"


ROWS = ("INSERT INTO ydtb_workspaces (id, name, slug) VALUES ('w1', 'W', 'w');\n"
        "INSERT INTO ydtb_notes (id, workspace_id{names}) VALUES (1, 'w1'{values}), "
        "(2, 'w1'{values});")


def rows_sql(c: Case) -> str:
    names = "".join(", " + line.split()[0] for line in c.sql if not line.startswith(
        ("CONSTRAINT", "title_length"))) if c.rows else ""
    return ROWS.format(names=names, values=c.rows)


# Everything a migration can build in the schema, as PostgreSQL renders it.
CATALOG = """
SELECT 'column ' || c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' default='
       || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' identity='
       || a.attidentity::text || ' generated=' || a.attgenerated::text
       || ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
  AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || k.conrelid::regclass || '.' || k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k WHERE k.connamespace = 'public'::regnamespace AND k.contype <> 'n'
UNION ALL
SELECT 'index ' || indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'table ' || c.relname, coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
UNION ALL
SELECT 'type ' || t.typname, string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname
ORDER BY 1, 2
"""


async def catalog(url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return [(r[0], r[1]) for r in await conn.fetch(CATALOG)]
    finally:
        await conn.close()


async def cli(*argv: str, root: Path, url: str) -> tuple[int, str]:
    return await anyio.to_thread.run_sync(lambda: run_cli(
        *argv, "--packages", str(root), "--database-url", url, "--no-entry-points"))


@pytest.fixture
def sent() -> Iterator[dict[str, list[dict[str, Any]]]]:
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with ExitStack() as stack:
        for name in ("schema_changed", "schema_drift", "reloaded"):
            def receive(_sender: object, _name: str = name, **kwargs: Any) -> None:
                events[_name].append(readable(_name, kwargs))
            stack.enter_context(getattr(signals, name).connected_to(receive))
        yield events


@pytest.fixture
async def other_url(postgres_server_url: str) -> AsyncIterator[Any]:
    """Make databases on the session's server; drop them after the test."""
    made: list[str] = []

    async def make() -> str:
        made.append(f"t_{uuid.uuid4().hex[:16]}")
        return await create_database(postgres_server_url, made[-1])

    yield make
    for name in made:
        await drop_database(postgres_server_url, name)


@pytest.fixture(autouse=True)
def _no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI runs in a worker thread here (the daemon keeps this test's loop), where
    # Python refuses signal handlers.
    monkeypatch.setattr("runtime.cli._STOPPING", ())


@pytest.mark.parametrize("c", CASES)
async def test_a_declared_construct_goes_through_the_whole_loop(
    engine: AsyncEngine, database_url: str, other_url: Any, tmp_path: Path,
    sent: dict[str, list[dict[str, Any]]], c: Case,
) -> None:
    root = tmp_path
    declare(root, c, c.before)
    (root / "notes/migrations/0001_base.sql").write_text(base_migration(c))
    # A database at the base migration: with rows, and (for the held SQL) without.
    with_rows = await other_url()
    empty = await other_url() if c.held else with_rows
    for url in {with_rows, empty}:
        assert (await cli("migrate", root=root, url=url))[0] == 0
    await execute(with_rows, rows_sql(c))
    daemon = Daemon(engine, [root], entry_points=False)
    await daemon.start()
    await execute(database_url, rows_sql(c))
    assert (sent["schema_drift"], sent["schema_changed"]) == ([], [])

    # (a) the dev sync applies it, or holds it with a hint naming makemigration.
    declare(root, c, c.after, c.kwargs, "2.0.0" if c.major else "1.0.0")
    assert await daemon.reload([root / "notes"]) is True, sent["reloaded"][-1].get("error")
    if c.held:
        [drift] = sent["schema_drift"]
        assert "python -m runtime makemigration notes" in drift["hint"], drift
        assert sent["schema_changed"] == []
        # The SQL it quotes runs, and runs twice (--allow-destructive runs it).
        quoted = [change.partition(": would run ")[2] for change in drift["changes"]]
        assert any(quoted), drift
        for sql in [q for q in quoted if q] * 2:
            await execute(empty, sql)
    else:
        assert sent["schema_drift"] == [], sent["schema_drift"]
        [changed] = sent["schema_changed"]
        assert changed["changes"], changed

    # (b) makemigration writes a migration the daemon applies, that runs twice...
    code, out = await cli("makemigration", "notes", "--name", "construct", root=root,
                          url=database_url)
    assert code == 0, out
    path = root / "notes/migrations/0002_construct.sql"
    # What would block writes while it reads every row, in a file run after the first.
    after = root / "notes/migrations/0003_construct_online.sql"
    written = path.read_text()
    if c.fill is not None:
        assert "/* FILL IN */" in written and "REVIEW" in written, written
        path.write_text(written.replace("NULL /* FILL IN */", c.fill))
    files = [path, *([after] if after.exists() else [])]
    written = "".join(f.read_text() for f in files)
    assert await daemon.reload(files) is True, (sent["reloaded"][-1].get("error"), written)
    for file in files:
        migration = migration_files.read_sql(file)
        for script in migration.statements or () if migration.transactional else [
                s.text for s in parse(file.read_text())]:  # no-transaction: one at a time
            await execute(database_url, script)
    # ...whose statements the safety lint finds nothing in, but what cannot be done
    # without a rewrite, a scan under lock or breaking deployed code (types, NOT NULL,
    # drops, renames, identities, stored columns, a primary key changed).
    found = lint_package("notes", [migration_files.read_sql(f) for f in files]).findings
    avoidable = {"Y510", "Y511", "Y512", "Y515", "Y516"} | (set() if c.held else {"Y519"})
    assert not [f for f in found if f.code in avoidable], (found, written)
    # ...and on a table holding rows.
    code, out = await cli("migrate", root=root, url=with_rows)
    assert code == 0, (out, written)

    # (c) check --db accepts it; (e) status shows no drift.
    code, out = await cli("check", "--db", root=root, url=database_url)
    assert code == 0, (out, written)
    code, out = await cli("status", root=root, url=database_url)
    assert code == 0, (out, written)

    # (d) a fresh migrate builds what the dev database has.
    fresh = await other_url()
    assert (await cli("migrate", root=root, url=fresh))[0] == 0
    dev = await catalog(database_url)
    assert await catalog(fresh) == dev, written
    assert await catalog(with_rows) == dev, written


async def test_check_db_finds_a_primary_key_the_migrations_build_otherwise(
    database_url: str, tmp_path: Path
) -> None:
    # Alembic compares no primary key: this passed `check --db` before the catalog did.
    c = Case(base=[BASE[1], 'Column("id", Integer, nullable=False)'])
    declare(tmp_path, c, ['PrimaryKeyConstraint("id")'])
    (tmp_path / "notes/migrations/0001_base.sql").write_text(
        "CREATE TABLE IF NOT EXISTS ydtb_notes (id integer NOT NULL, workspace_id varchar(20) "
        "NOT NULL REFERENCES ydtb_workspaces(id) ON DELETE CASCADE, "
        "PRIMARY KEY (workspace_id, id));\n")

    assert await cli("check", "--db", root=tmp_path, url=database_url) == (1, (
        "error: 1 problem found:\n"
        "  - notes: its migrations do not build its declared schema: table ydtb_notes: primary "
        "key is (workspace_id, id) in the database but declared (id) (change the schema to "
        "match, or write the difference as a migration: python -m runtime makemigration "
        "notes) [Y404]\n"))
