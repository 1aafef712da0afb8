"""The safety lint of migrations (runtime.core.lint): no database needed.

The bad and safe examples of squawk's rule documentation are the first test set
(github.com/sbdchd/squawk, docs/docs/<rule>.md at commit 5125ddf5, copied as written
unless a comment says otherwise): the lint agrees with squawk on each, except where
PostgreSQL 18 proves squawk wrong (tests/db/test_lint_rewrites.py shows it on a server).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from runtime.core.lint import (
    CODES,
    Finding,
    PackageLint,
    lint_package,
    lint_steps,
    major_problems,
)
from runtime.core.model import Migration, Package
from runtime.core.plan import Step
from runtime.core.recorded import Ledger

NO_TRANSACTION = "-- runtime: no-transaction\n"


def codes(*sql: str, transactional: bool = True, pending: Sequence[int] | None = None,
          ) -> list[str]:
    """Lint migrations made of `sql`, in order; the codes found in them."""
    return [f.code for f in lint(*sql, transactional=transactional, pending=pending).findings]


def lint(*sql: str, transactional: bool = True,
         pending: Sequence[int] | None = None) -> PackageLint:
    migrations = [Migration(f"{n:04d}_m", up=text, transactional=transactional)
                  for n, text in enumerate(sql, start=1)]
    ids = None if pending is None else {migrations[i].id for i in pending}
    return lint_package("@acme/notes", migrations, pending=ids)


@dataclass(frozen=True)
class Case:
    """A bad statement, its table, and its safe rewrite (None: squawk shows none)."""

    bad: str
    code: str
    table: str
    safe: str | None
    safe_transactional: bool = True


SQUAWK = {
    # require-concurrent-index-creation
    "index": Case('CREATE INDEX "email_idx" ON "app_user" ("email");', "Y510", "app_user",
                  'CREATE INDEX CONCURRENTLY "email_idx" ON "app_user" ("email");', False),
    # require-concurrent-index-deletion
    "drop-index": Case('DROP INDEX "app"."email_idx";', "Y511", "app_user",
                       'DROP INDEX CONCURRENTLY "app"."email_idx";', False),
    # require-concurrent-reindex
    "reindex-table": Case("REINDEX TABLE foo;", "Y512", "foo",
                          "REINDEX TABLE CONCURRENTLY foo;", False),
    "reindex-index": Case("REINDEX INDEX foo_idx;", "Y512", "foo",
                          "REINDEX INDEX CONCURRENTLY foo_idx;", False),
    # changing-column-type (squawk's rule test `err`)
    "type": Case('ALTER TABLE "core_recipe" ALTER COLUMN "edits" TYPE text USING '
                 '"edits"::text;', "Y513", "core_recipe", None),
    # adding-not-nullable-field; squawk's "use" ends with `ALTER TABLE table_name ALTER
    # COLUMN column_name`, meaning the recipe's column: written so here.
    "set-not-null": Case(
        'ALTER TABLE "recipe" ALTER COLUMN "view_count" SET NOT NULL;', "Y514", "recipe",
        'ALTER TABLE "recipe" ADD CONSTRAINT view_count_not_null\n'
        '    CHECK ("view_count" IS NOT NULL) NOT VALID;\n'
        "-- Backfill column so it's not null\n"
        'ALTER TABLE "recipe" VALIDATE CONSTRAINT view_count_not_null;\n'
        'ALTER TABLE "recipe" ALTER COLUMN "view_count" SET NOT NULL;'),
    # adding-foreign-key-constraint
    "foreign-key": Case(
        'ALTER TABLE "email" ADD CONSTRAINT "fk_user"\n'
        '    FOREIGN KEY ("user_id") REFERENCES "user" ("id");', "Y515", "email",
        'ALTER TABLE "email" ADD CONSTRAINT "fk_user"\n'
        '    FOREIGN KEY ("user_id") REFERENCES "user" ("id") NOT VALID;\n'
        'ALTER TABLE "email" VALIDATE CONSTRAINT "fk_user";'),
    # constraint-missing-not-valid
    "check": Case(
        'ALTER TABLE "accounts" ADD CONSTRAINT "positive_balance" CHECK ("balance" >= 0);',
        "Y516", "accounts",
        'ALTER TABLE "accounts" ADD CONSTRAINT "positive_balance" CHECK ("balance" >= 0) '
        "NOT VALID;\nALTER TABLE accounts VALIDATE CONSTRAINT positive_balance;"),
    # adding-field-with-default (the rule's tests for the volatile default)
    "volatile-default": Case(
        'ALTER TABLE "core_recipe" ADD COLUMN "foo" boolean DEFAULT random();', "Y517",
        "core_recipe",
        'ALTER TABLE "core_recipe" ADD COLUMN "foo" integer;\n'
        'ALTER TABLE "core_recipe" ALTER COLUMN "foo" SET DEFAULT 10;'),
    "stored-generated": Case(
        'ALTER TABLE "core_recipe" ADD COLUMN "foo" integer GENERATED ALWAYS as ("bar" + '
        '"baz") STORED;', "Y517", "core_recipe",
        'ALTER TABLE "core_recipe" ADD COLUMN "foo" integer;\n'
        "CREATE FUNCTION foo_update_trigger()\nRETURNS trigger AS '\nBEGIN\n"
        "NEW.foo := NEW.bar + NEW.baz;\nRETURN NEW;\nEND' LANGUAGE 'plpgsql';\n"
        "CREATE TRIGGER update_foo_column\nBEFORE INSERT ON core_recipe\nFOR EACH ROW\n"
        "EXECUTE PROCEDURE foo_update_trigger();"),
    # adding-required-field
    "required": Case('ALTER TABLE "recipe" ADD COLUMN "public" boolean NOT NULL;', "Y518",
                     "recipe", 'ALTER TABLE "recipe" ADD COLUMN "public" boolean;'),
    "required-default": Case('ALTER TABLE "recipe" ADD COLUMN "public" boolean NOT NULL;',
                             "Y518", "recipe", 'ALTER TABLE "recipe" ADD COLUMN "public" '
                             "boolean NOT NULL DEFAULT false;"),
    # disallowed-unique-constraint
    "unique": Case(
        "ALTER TABLE distributors ADD CONSTRAINT dist_id_uniq UNIQUE (dist_id);", "Y519",
        "distributors",
        "CREATE UNIQUE INDEX CONCURRENTLY dist_id_uniq ON distributors (dist_id);\n"
        "ALTER TABLE distributors ADD CONSTRAINT distributors_dist_id_key UNIQUE USING "
        "INDEX dist_id_uniq;", False),
    # adding-serial-primary-key-field
    "primary-key": Case(
        "ALTER TABLE account ADD PRIMARY KEY (id);", "Y519", "account",
        "CREATE UNIQUE INDEX CONCURRENTLY account_pk_idx ON account (id);\n"
        "ALTER TABLE account ADD CONSTRAINT account_pk PRIMARY KEY USING INDEX "
        "account_pk_idx;", False),
    # prefer-repack: its safe `repack (concurrently) t` is PostgreSQL 19's, which 18's
    # parser refuses.
    "vacuum-full": Case("vacuum full t;", "Y521", "t", None),
    "cluster": Case("cluster t using t_pkey;", "Y521", "t", None),
    # require-concurrent-partition-detach
    "detach": Case("ALTER TABLE t DETACH PARTITION p;", "Y523", "t",
                   "ALTER TABLE t DETACH PARTITION p CONCURRENTLY;", False),
    # ban-drop-table, ban-drop-column, renaming-column (no SQL in their docs: the rules'
    # statements), renaming-table
    "drop-table": Case("DROP TABLE mytable;", "Y525", "mytable", None),
    "drop-column": Case("ALTER TABLE t DROP COLUMN c;", "Y526", "t", None),
    "rename-table": Case("ALTER TABLE user_stars RENAME TO user_favorites;", "Y527",
                         "user_stars",
                         "CREATE VIEW user_favorites as SELECT * FROM user_stars;"),
    "rename-column": Case("ALTER TABLE t RENAME COLUMN a TO b;", "Y528", "t", None),
}

#: Tables created beside each bad example, with what the example needs to exist.
FRESH = {"drop-index": 'CREATE TABLE app_user (email text);\n'
                       'CREATE INDEX email_idx ON app_user (email);\n',
         "reindex-index": "CREATE TABLE foo (a int);\nCREATE INDEX foo_idx ON foo (a);\n"}


@pytest.mark.parametrize("case", SQUAWK.values(), ids=SQUAWK.keys())
def test_each_rule_fires_on_squawks_bad_example(case: Case) -> None:
    transactional = case.code not in ("Y521",)  # VACUUM cannot run in one: Y524 apart
    found = lint(case.bad, transactional=transactional).findings

    assert [f.code for f in found] == [case.code]
    assert found[0].table in (case.table, None if case.code in ("Y511", "Y512") else "")


@pytest.mark.parametrize("case", [c for c in SQUAWK.values() if c.safe],
                         ids=[k for k, c in SQUAWK.items() if c.safe])
def test_each_rule_is_quiet_on_squawks_safe_rewrite(case: Case) -> None:
    assert case.safe is not None
    assert codes(case.safe, transactional=case.safe_transactional) == []


@pytest.mark.parametrize("name", SQUAWK, ids=SQUAWK.keys())
def test_each_rule_is_quiet_on_a_table_created_in_the_same_file(name: str) -> None:
    case = SQUAWK[name]
    fresh = FRESH.get(name, f"CREATE TABLE {case.table} (id int);\n")

    assert codes(fresh + case.bad, transactional=case.code not in ("Y521",)) == []


@pytest.mark.parametrize("name", SQUAWK, ids=SQUAWK.keys())
def test_each_rule_is_quiet_on_a_table_created_earlier_in_the_same_pending_run(
        name: str) -> None:
    case = SQUAWK[name]
    fresh = FRESH.get(name, f"CREATE TABLE {case.table} (id int);\n")
    transactional = case.code not in ("Y521",)

    assert codes(fresh, case.bad, transactional=transactional, pending=[0, 1]) == []
    # Applied before the run, the table holds rows; judged alone (`check`), too.
    assert codes(fresh, case.bad, transactional=transactional, pending=[1]) == [case.code]
    assert codes(fresh, case.bad, transactional=transactional) == [case.code]


# Where PostgreSQL 18 proves squawk wrong: squawk flags every type change and every
# generated column; tests/db/test_lint_rewrites.py shows these need no rewrite.
@pytest.mark.parametrize("sql", [
    # changing-column-type's test `another_err`, on a column built varchar(100)
    'ALTER TABLE "core_recipe" ALTER COLUMN "foo" TYPE varchar(255) USING "foo"::varchar(255);'
    '\nALTER TABLE "core_recipe" ALTER COLUMN "foo" TYPE text USING "foo"::text;',
    'ALTER TABLE "core_recipe" ALTER COLUMN "foo" TYPE varchar;',
    "ALTER TABLE core_recipe ALTER COLUMN amount TYPE numeric(14, 2);",
    "ALTER TABLE core_recipe ALTER COLUMN amount TYPE numeric;",
    # adding-field-with-default: a VIRTUAL generated column, PostgreSQL 18's default kind
    'ALTER TABLE "core_recipe" ADD COLUMN "bar" integer GENERATED ALWAYS AS (amount * 2);',
    'ALTER TABLE "core_recipe" ADD COLUMN "bar" integer GENERATED ALWAYS AS (amount * 2) '
    "VIRTUAL;",
], ids=["varchar-to-text", "varchar-unbounded", "numeric-wider", "numeric-unbounded",
        "generated-default", "generated-virtual"])
def test_changes_postgresql_18_makes_without_a_rewrite_are_quiet(sql: str) -> None:
    built = "CREATE TABLE core_recipe (foo varchar(100), amount numeric(12, 2));"

    assert codes(built, sql) == []


@pytest.mark.parametrize(("before", "after"), [
    ("varchar(100)", "varchar(50)"), ("text", "varchar(20)"), ("integer", "bigint"),
    ("numeric(12, 2)", "numeric(12, 4)"), ("timestamp", "timestamptz"),
])
def test_type_changes_that_rewrite_or_scan_are_flagged(before: str, after: str) -> None:
    found = lint(f"CREATE TABLE t (c {before});", f"ALTER TABLE t ALTER COLUMN c TYPE {after};")

    assert [f.code for f in found.findings] == ["Y513"]
    assert f"changes the type of t.c from {before.replace(', ', ',').replace(',', ', ')}" \
        in found.findings[0].message


@pytest.mark.parametrize(("sql", "expected"), [
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now();", []),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT current_timestamp;", []),
    ("ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now() - interval '100 years';",
     []),
    ("ALTER TABLE t ADD COLUMN c jsonb DEFAULT '{}'::jsonb;", []),
    ("ALTER TABLE t ADD COLUMN c double precision[] DEFAULT array[]::double precision[];", []),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp();", ["Y517"]),
    ("ALTER TABLE t ADD COLUMN c uuid NOT NULL DEFAULT gen_random_uuid();", ["Y517"]),
    ("ALTER TABLE t ADD COLUMN c bigint DEFAULT pg_catalog.random()::int + 1;", ["Y517"]),
    ("ALTER TABLE t ADD COLUMN c bigint DEFAULT ydtb_t_next();", ["Y517"]),
    ("ALTER TABLE t ADD COLUMN c bigint GENERATED BY DEFAULT AS IDENTITY;", ["Y517"]),
    ("ALTER TABLE t ADD COLUMN c bigserial;", ["Y517"]),
    ("ALTER TABLE t ADD COLUMN c int REFERENCES u (id);", ["Y515"]),
    ("ALTER TABLE t ADD COLUMN c int CHECK (c > 0);", ["Y516"]),
    ("ALTER TABLE t ADD COLUMN c int UNIQUE;", ["Y519"]),
    ("ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&);", ["Y520"]),
    ("ALTER TABLE t SET TABLESPACE slow;", ["Y521"]),
    ("ALTER TABLE t SET LOGGED;", ["Y521"]),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE;", ["Y522"]),
    ("LOCK TABLE t IN ACCESS SHARE MODE;", []),
    ("ALTER TABLE t ADD CONSTRAINT t_c_not_null NOT NULL c;", ["Y514"]),
    ("ALTER TABLE t ADD CONSTRAINT t_c_not_null NOT NULL c NOT VALID;\n"
     "ALTER TABLE t VALIDATE CONSTRAINT t_c_not_null;", []),
    ("ALTER TABLE t ADD CONSTRAINT t_c_not_null NOT NULL c NOT VALID;\n"
     "ALTER TABLE t VALIDATE CONSTRAINT t_c_not_null;\nALTER TABLE t ALTER c SET NOT NULL;", []),
    ("ALTER TABLE t ADD CONSTRAINT c_checked CHECK (c IS NOT NULL) NOT VALID;\n"
     "ALTER TABLE t ALTER c SET NOT NULL;", ["Y514"]),
    ("CREATE INDEX CONCURRENTLY i ON t (c);", ["Y524"]),
    ("VACUUM t;", ["Y524"]),
    ("ALTER TYPE ydtb_mood ADD VALUE 'meh';", []),
    # A typed table's columns name no type: read without one, not a crash.
    ("CREATE TABLE ydtb_typed OF ydtb_shape (id WITH OPTIONS NOT NULL);\n"
     "ALTER TABLE ydtb_typed ALTER id TYPE bigint;\nALTER TABLE t DROP COLUMN c;", ["Y526"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_more_rules(sql: str, expected: list[str]) -> None:
    assert codes(sql) == expected


def test_a_not_null_check_validated_in_an_earlier_migration_makes_set_not_null_safe() -> None:
    assert codes("ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID;",
                 "ALTER TABLE t VALIDATE CONSTRAINT c_nn;",
                 "ALTER TABLE t ALTER COLUMN c SET NOT NULL;") == []


def test_the_statements_of_a_do_block_are_read_with_their_lines() -> None:
    # As makemigration writes a guarded constraint, and a dynamic EXECUTE of a constant.
    found = lint("""\
-- Scope the note reference by workspace.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fk_t_note') THEN
        ALTER TABLE ydtb_tasks
            ADD CONSTRAINT fk_t_note FOREIGN KEY (note_id) REFERENCES ydtb_notes (id);
    END IF;
    EXECUTE 'CREATE INDEX ix_t_note ON ydtb_tasks (note_id)';
    EXECUTE format('CREATE INDEX %I ON ydtb_tasks (due_at)', 'ix_t_due');
    EXECUTE 'CREATE INDEX CONCURRENTLY ix_t_done ON ydtb_tasks (done)';
END $$;
""", transactional=False).findings

    assert [(f.code, f.line, f.table) for f in found] == [
        ("Y515", 5, "ydtb_tasks"), ("Y510", 8, "ydtb_tasks"), ("Y524", 10, None)]
    assert found[0].statement == ("ALTER TABLE ydtb_tasks ADD CONSTRAINT fk_t_note FOREIGN KEY "
                                  "(note_id) REFERENCES ydtb_notes (id)")


def test_a_do_block_on_a_table_created_in_the_same_file_is_quiet() -> None:
    assert codes("CREATE TABLE ydtb_tasks (id int);\n"
                 "DO $$ BEGIN ALTER TABLE ydtb_tasks ADD UNIQUE (id); END $$;") == []


def test_a_silence_with_a_reason_silences_that_rule_on_the_next_statement_only() -> None:
    found = lint("""\
-- runtime: allow Y510 ydtb_notes holds a few hundred rows
CREATE INDEX a ON ydtb_notes (title);
CREATE INDEX b ON ydtb_notes (body);
/* runtime: allow Y513, Y510 the type change is one release's work */
ALTER TABLE ydtb_notes ALTER COLUMN n TYPE bigint;
""").findings

    assert [(f.code, f.line) for f in found] == [("Y510", 3)]


@pytest.mark.parametrize(("comment", "says"), [
    ("-- runtime: allow Y510", "the silence of Y510 gives no reason, so it silences nothing"),
    ("-- runtime: allow because", "'-- runtime: allow because' names no rule, so it "
                                  "silences nothing"),
    ("-- runtime: allow Y101 a validation code", "'-- runtime: allow Y101 a validation "
                                                 "code' names Y101, not a lint rule, so "
                                                 "it silences nothing"),
])
def test_a_silence_without_a_reason_or_a_rule_is_a_finding_and_silences_nothing(
        comment: str, says: str) -> None:
    found = lint(f"{comment}\nCREATE INDEX a ON ydtb_notes (title);").findings

    assert [(f.code, f.line) for f in found] == [("Y530", 2), ("Y510", 2)]
    assert says in found[0].message


def test_sql_the_parser_refuses_is_one_finding_with_its_line() -> None:
    found = lint("CREATE INDEX a ON t (c);\nCREATE TABEL u (id int);").findings

    assert [(f.code, f.line) for f in found] == [("Y531", 2)]
    assert 'syntax error at or near "TABEL"' in found[0].message


def test_python_migrations_are_listed_once_per_package_not_read() -> None:
    async def up(conn: object) -> None: ...

    migrations = [Migration("0001_a", up="CREATE TABLE t (id int);"),
                  Migration("0002_b", up=up), Migration("0003_c", up=up)]

    assert lint_package("@acme/notes", migrations).python == ("0002_b", "0003_c")
    assert lint_package("@acme/notes", migrations, pending={"0003_c"}).python == ("0003_c",)


def test_a_list_of_sql_texts_is_read_without_lines() -> None:
    migration = Migration("0002_b", up=["SELECT 1;", "CREATE INDEX a ON t (c);"])

    [finding] = lint_package("p", [migration]).findings

    assert (finding.code, finding.line) == ("Y510", None)


def test_a_finding_round_trips_through_json() -> None:
    finding = lint("CREATE INDEX a ON t (c);").findings[0]

    assert Finding.from_json(finding.to_json()) == finding


def test_every_code_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert [c for c in [*CODES, "Y303"] if f"| {c} |" not in readme] == []


DROP = "ALTER TABLE ydtb_notes DROP COLUMN body;"


@pytest.mark.parametrize(("version", "recorded", "problems"), [
    ("1.4.0", "1.2.0", 1), ("2.0.0", "1.2.0", 0), ("1.0.0", None, 0), ("0.9.0", "0.8.0", 1),
])
def test_a_drop_or_rename_of_what_the_recorded_version_declared_needs_a_new_major(
        version: str, recorded: str | None, problems: int) -> None:
    lint_ = lint("CREATE TABLE ydtb_notes (body text);",
                 f"-- runtime: allow Y526 the column is unused since 1.3\n{DROP}", pending=[1])

    found = major_problems(lint_, version, recorded)

    assert lint_.findings == ()  # silenced, still a breaking change
    assert len(found) == problems
    if found:
        assert found[0].render() == (
            f"@acme/notes: migration 0002_m drops column ydtb_notes.body, which version "
            f"{recorded} recorded in the database declared, and version {version} keeps its "
            f"major version (register version {int(recorded[0]) + 1}.0.0: a drop or rename "
            "breaks its dependents and the code deployed with it) [Y303]")


def test_dropping_what_the_same_pending_run_created_needs_no_new_major() -> None:
    lint_ = lint("CREATE TABLE ydtb_tags (id int);", "DROP TABLE ydtb_tags;", pending=[0, 1])

    assert major_problems(lint_, "1.1.0", "1.0.0") == []


def test_no_fix_nests_parentheses() -> None:
    """Hints are shown in parentheses: a fix must not hold its own (STYLE: no nesting)."""
    sql = "\n".join(c.bad for c in SQUAWK.values())
    found = lint(sql, transactional=False).findings

    assert {f.code for f in found} >= {"Y510", "Y513", "Y515", "Y519", "Y521", "Y527"}
    assert [f.fix for f in found if "(" in f.fix] == []


def test_a_run_reads_the_packages_it_upgrades_not_those_it_installs_afresh(
        register: Callable[..., Package]) -> None:
    notes = register("notes", "ydtb_notes", version="1.1.0", migrations=[
        Migration("0001_create", "CREATE TABLE ydtb_notes (id int, body text);"),
        Migration("0002_drop", "ALTER TABLE ydtb_notes DROP COLUMN body;")])
    steps = [Step(notes, m) for m in notes.migrations]
    upgraded = Ledger(applied={("notes", "0001_create"): notes.migrations[0].checksum},
                      recorded={"notes": ("1.0.0", "f")})

    assert lint_steps(steps, Ledger()) == ([], [])
    lints, problems = lint_steps(steps[1:], upgraded)

    assert [(f.code, f.migration) for lint in lints for f in lint.findings] == [
        ("Y526", "0002_drop")]
    assert [(p.code, p.migration, p.table) for p in problems] == [
        ("Y303", "0002_drop", "ydtb_notes")]
