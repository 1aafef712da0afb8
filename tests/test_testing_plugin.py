"""The pytest plugin, run the way a package author runs it: in an inner pytest session.

Each inner run is in-process (`pytester`), with pytest-asyncio switched off to show the
fixtures need no particular async runner; DATABASE_URL points the inner run at this
session's server, so no second server starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import create_sql, editable_install, write_package

from runtime.db.server import EmbeddedServer
from runtime.testing import package_report

pytest_plugins = ["pytester"]

INNER_TESTS = '''
import asyncio

import pytest
from sqlalchemy import text


def test_the_registry_holds_the_packages(runtime_registry):
    assert [p.name for p in runtime_registry.ordered()] == ["@ydtb/core", "@acme/notes"]


@pytest.mark.anyio
async def test_the_database_is_migrated(runtime_engine):
    async with runtime_engine.begin() as conn:
        await conn.execute(text("INSERT INTO ydtb_workspaces (id, name, slug) "
                                "VALUES ('w1', 'One', 'one')"))
        assert (await conn.execute(text("SELECT count(*) FROM ydtb_notes"))).scalar() == 0


def test_each_test_has_a_database_of_its_own(runtime_engine):
    async def count():
        async with runtime_engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM ydtb_workspaces"))).scalar()

    assert asyncio.run(count()) == 0


def test_a_sound_package_passes(assert_package_ok):
    assert_package_ok("@acme/notes")


def test_a_package_that_cannot_run_twice_fails(assert_package_ok):
    assert_package_ok("{bad}")
'''


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:asyncio", "-p", "no:cacheprovider", *args)


def test_fixtures_give_a_migrated_database_and_check_a_package(
    pytester: pytest.Pytester, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_server_url)
    write_package(pytester.path / "pkgs", "notes", name="@acme/notes")
    bad = write_package(pytester.path / "elsewhere", "bad", name="@acme/bad", migrations={
        "0001_create.sql": create_sql("ydtb_bad"),
        "0002_not_guarded.sql": "CREATE TABLE ydtb_bad2 (id int);",
        "0003_unnamed_index.sql": "CREATE INDEX ON ydtb_bad (workspace_id);",
    })
    pytester.makeini("[pytest]\nruntime_packages = pkgs\nfilterwarnings = error\n")
    pytester.makepyfile(test_inner=INNER_TESTS.replace("{bad}", str(bad)))

    result = run_inner(pytester)

    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines([
        f"E       AssertionError: {bad}: 5 problems:",
        "E         - @acme/bad: migration 0002_not_guarded fails when run twice: relation "
        '"ydtb_bad2" already exists (guard it so it can run twice: CREATE TABLE IF NOT '
        "EXISTS, ADD COLUMN IF NOT EXISTS, CREATE INDEX IF NOT EXISTS, DROP ... IF EXISTS) "
        "[[]Y402[]]",
        "E         - @acme/bad: migration 0003_unnamed_index changes the schema when run twice: "
        "index CREATE INDEX ydtb_bad_workspace_id_idx1 ON public.ydtb_bad USING btree "
        "(workspace_id) (guard it *) [[]Y403[]]",
        "E         - @acme/bad: migration 0002_not_guarded creates table ydtb_bad2, which its "
        "schema does not declare * [[]Y501[]]",
        # The same checks as `check --db`: the unguarded index is also not declared.
        "E         - @acme/bad: its migrations do not build its declared schema: index "
        "ydtb_bad_workspace_id_idx in the database but not declared (change the schema to "
        "match, or write the difference as a migration: python -m runtime makemigration "
        "@acme/bad) [[]Y404[]]",
        "E         - @acme/bad: its migrations do not build its declared schema: index "
        "ydtb_bad_workspace_id_idx1 in the database but not declared * [[]Y404[]]",
    ])


def test_the_option_wins_and_nothing_starts_until_a_database_is_asked_for(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_server(self: EmbeddedServer) -> str:
        raise AssertionError("the embedded server was started")

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(EmbeddedServer, "start", no_server)
    write_package(pytester.path / "other", "notes", name="@acme/notes",
                  tables={"notes": []}, migrations={"0001_create.sql": create_sql("notes")})
    pytester.makeini("[pytest]\nruntime_packages = pkgs\n")
    pytester.makepyfile(test_inner='''
from pathlib import Path


def test_the_option_wins_over_the_ini(runtime_packages):
    assert runtime_packages == [Path.cwd() / "other", Path.cwd() / "missing"]


def test_loading_problems_are_listed(runtime_registry):
    pass
''')

    result = run_inner(pytester, "--runtime-packages", "other", "--runtime-packages", "missing")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "cannot load the packages under test:",
        f"{Path(pytester.path, 'missing')}: packages directory does not exist (pass "
        "--runtime-packages DIR, or set runtime_packages in the ini file)",
        "1 validation problem:",
        "  - @acme/notes: table 'notes' must be prefixed 'ydtb_' (rename it to 'ydtb_notes') "
        "[[]Y101[]]",
    ])
    assert "the embedded server was started" not in result.stdout.str()


async def test_package_report_catches_migrations_that_do_not_build_the_schema(
    tmp_path: Path, postgres_server_url: str
) -> None:
    write_package(tmp_path, "notes", name="notes",
                  tables={"ydtb_notes": ['Column("color", Text)']},
                  migrations={"0001_create_ydtb_notes.sql": create_sql("ydtb_notes")})

    lines = await package_report(postgres_server_url, [tmp_path], "notes")

    assert [line for line in lines if "[Y404]" in line] == [
        "notes: its migrations do not build its declared schema: table ydtb_notes: column "
        "color declared but missing (change the schema to match, or write the difference as "
        "a migration: python -m runtime makemigration notes) [Y404]"]


def test_a_package_repository_installed_editable_needs_no_setting(
    pytester: pytest.Pytester, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The author's repository: the package's source and tests, `pip install -e .` done.
    monkeypatch.setenv("DATABASE_URL", postgres_server_url)
    with editable_install(pytester.path, monkeypatch, "acme_notes", name="@acme/notes",
                          tables={"ydtb_notes": []}) as directory:
        pytester.makepyfile(test_inner=f'''
def test_the_installed_package_is_under_test(runtime_registry, runtime_packages):
    assert runtime_packages == []
    assert [p.name for p in runtime_registry.ordered()] == ["@ydtb/core", "@acme/notes"]


def test_it_is_sound(assert_package_ok):
    assert_package_ok("@acme/notes")
    assert_package_ok({str(directory)!r})


async def test_an_unmarked_async_test_runs(runtime_engine):
    # No async plugin here (-p no:asyncio), no marker: the plugin runs it.
    from sqlalchemy import text

    async with runtime_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM ydtb_notes"))).scalar() == 0


async def test_other_async_tests_are_left_to_pytest():
    pass
''')
        result = run_inner(pytester)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["_* test_other_async_tests_are_left_to_pytest _*",
                                 "async def functions are not natively supported."])


def test_no_packages_at_all_is_said_with_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_registry(runtime_registry):\n    pass\n")

    result = run_inner(pytester, "--runtime-no-entry-points")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "cannot load the packages under test:",
        f"no packages found: no packages_dev directory under {pytester.path} and no installed "
        "package (entry point group runtime.packages); install yours (pip install -e .), or "
        "pass --runtime-packages DIR"])


def test_isolation_is_proved_with_rows_and_row_level_security_can_be_required(
    pytester: pytest.Pytester, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_server_url)
    safe = write_package(pytester.path / "pkgs", "safe", name="@acme/safe")
    give_rls = safe / "package.py"
    give_rls.write_text(give_rls.read_text().replace(
        "migrations=load_migrations(", "row_level_security=True,\n        "
        "migrations=load_migrations("))
    write_package(pytester.path / "pkgs", "open", name="@acme/open")
    pytester.makeini("[pytest]\nruntime_packages = pkgs\n")
    pytester.makepyfile(test_inner='''
def test_safe(assert_workspaces_isolated):
    assert_workspaces_isolated("@acme/safe")


def test_open(assert_workspaces_isolated):
    assert_workspaces_isolated("@acme/open")
''')

    result = run_inner(pytester)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E       AssertionError: @acme/open: workspaces are not isolated:",
        "E         - ydtb_open: a session of one workspace reads another workspace's rows "
        "(register the package with row_level_security=True)"])

    monkeypatch.setenv("RUNTIME_REQUIRE_RLS", "1")
    result = run_inner(pytester, "-k", "safe")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@acme/open: row-level security is required by the platform*"
                                 "[[]Y135[]]"])
