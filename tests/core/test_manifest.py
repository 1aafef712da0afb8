"""The manifest: what a valid set registered, and whether a ledger already holds it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer

from runtime.core.lint import Finding, PackageLint
from runtime.core.manifest import Entry, Manifest, Recorded
from runtime.core.model import Migration, Package
from runtime.core.plan import plan_pending
from runtime.core.recorded import Ledger
from runtime.core.registry import DatabaseRegistry
from runtime.kit import metadata, workspace_table

MANIFEST = Manifest((
    Entry("@ydtb/core", "1.0.0", "f0", (Recorded("0001_core_tables", "c0"),)),
    Entry("notes", "1.2.0", "f1", (Recorded("0001_a", "c1"), Recorded("0002_b", "c2"))),
))
APPLIED = {("@ydtb/core", "0001_core_tables"): "c0", ("notes", "0001_a"): "c1",
           ("notes", "0002_b"): "c2"}
RECORDED = {"@ydtb/core": ("1.0.0", "f0"), "notes": ("1.2.0", "f1")}


def test_a_ledger_holding_everything_is_up_to_date() -> None:
    assert MANIFEST.up_to_date(Ledger(APPLIED, RECORDED))


def test_rows_the_manifest_does_not_know_change_nothing() -> None:
    # Dev changes and migrations since deleted: the pipeline's plan ignores them too.
    applied = {**APPLIED, ("notes", "dev:abc"): "x", ("notes", "0000_gone"): "y"}
    assert MANIFEST.up_to_date(Ledger(applied, RECORDED))


@pytest.mark.parametrize(("applied", "recorded"), [
    pytest.param({**APPLIED, ("notes", "0002_b"): "edited"}, RECORDED, id="edited"),
    pytest.param({k: v for k, v in APPLIED.items() if k[1] != "0002_b"}, RECORDED,
                 id="pending"),
    pytest.param(APPLIED, {**RECORDED, "notes": ("1.1.0", "f1")}, id="other-version"),
    pytest.param(APPLIED, {**RECORDED, "notes": ("1.2.0", "f9")}, id="other-fingerprint"),
    pytest.param(APPLIED, {"@ydtb/core": ("1.0.0", "f0")}, id="not-recorded"),
    pytest.param(APPLIED, {**RECORDED, "tags": ("1.0.0", "f2")}, id="one-more-recorded"),
    pytest.param({}, {}, id="fresh-database"),
])
def test_anything_a_run_would_do_is_not_up_to_date(
    applied: dict[tuple[str, str], str], recorded: dict[str, tuple[str, str]]
) -> None:
    assert not MANIFEST.up_to_date(Ledger(applied, recorded))


def test_packages_whose_tools_were_deactivated_count_for_nothing() -> None:
    # A full run marked them unregistered: it would not deactivate them again.
    assert MANIFEST.up_to_date(Ledger(APPLIED, {**RECORDED, "tags": ("1.0.0", "unregistered")}))


def test_a_downgrade_is_not_up_to_date() -> None:
    assert not MANIFEST.up_to_date(Ledger(APPLIED, {**RECORDED, "notes": ("2.0.0", "f1")}))


def test_of_a_registry_keeps_order_versions_fingerprints_and_checksums() -> None:
    registry = DatabaseRegistry(send_signals=False)
    schema = metadata()
    workspace_table("ydtb_notes", schema, Column("id", Integer, primary_key=True))
    registry.register_database(package_name="notes", schema=schema, version="1.2.0")
    packages = registry.ordered()

    manifest = Manifest.of(packages)

    assert manifest.names == ["@ydtb/core", "notes"]
    notes = manifest.entries[1]
    assert (notes.version_text, notes.fingerprint) == ("1.2.0", packages[1].fingerprint)
    assert notes.migrations == (("0001_initial_schema", packages[1].migrations[0].checksum),)


def test_a_manifest_that_is_not_stored_describes_no_facts() -> None:
    # Only the load cache keeps the facts: `check --no-cache` skips describing them (#17).
    with_facts, without = Manifest.of(PACKAGES), Manifest.of(PACKAGES, facts=False)

    assert all(entry.facts is not None for entry in with_facts.entries[1:])
    assert [entry.facts for entry in without.entries[1:]] == [None] * len(PACKAGES[1:])
    assert without == with_facts  # facts are not compared


def test_json_round_trip() -> None:
    assert Manifest.from_json(json.loads(json.dumps(MANIFEST.to_json()))) == MANIFEST


@pytest.mark.parametrize("data", [None, 3, [["notes"]], [[1, 2, 3, [["only-id"]]]]])
def test_from_json_rejects_what_to_json_never_wrote(data: object) -> None:
    with pytest.raises(ValueError, match="not a manifest"):
        Manifest.from_json(data)


# -- the cached answer and the pipeline's plan agree ---------------------------------------

def _packages() -> list[Package]:
    registry = DatabaseRegistry(send_signals=False)
    for name, version, count in [("notes", "1.2.0", 2), ("tags", "0.3", 1), ("empty", "2", 0)]:
        schema = metadata()
        workspace_table(f"ydtb_{name}", schema, Column("id", Integer, primary_key=True))
        registry.register_database(
            package_name=name, schema=schema, version=version,
            migrations=[Migration(f"000{i}_m", f"SELECT {i}") for i in range(1, count + 1)]
            or None)
    return registry.ordered()


PACKAGES = _packages()
_VERSIONS = st.sampled_from(["0.1", "1.0.0", "1.2.0", "1.2", "2", "3.0", "not a version"])


@st.composite
def ledgers(draw: st.DrawFn) -> Ledger:
    """A ledger near what the packages would record: each row kept, edited or missing."""
    applied: dict[tuple[str, str], str] = {}
    recorded: dict[str, tuple[str, str]] = {}
    for package in PACKAGES:
        for migration in package.migrations:
            fate = draw(st.sampled_from(["same", "same", "edited", "missing"]))
            if fate != "missing":
                applied[(package.name, migration.id)] = (
                    migration.checksum if fate == "same" else "edited")
        fate = draw(st.sampled_from(["same", "same", "version", "fingerprint", "missing"]))
        if fate == "same":
            recorded[package.name] = (package.version_text, package.fingerprint)
        elif fate == "version":
            recorded[package.name] = (draw(_VERSIONS), package.fingerprint)
        elif fate == "fingerprint":
            recorded[package.name] = (package.version_text, "other")
    for name in draw(st.lists(st.sampled_from(["gone", "old"]), unique=True)):
        recorded[name] = ("1.0", draw(st.sampled_from(["f", "unregistered"])))
    for name, migration in draw(st.lists(st.tuples(
            st.sampled_from(["notes", "gone"]), st.sampled_from(["dev:x", "0000_deleted"])))):
        applied[(name, migration)] = "x"
    return Ledger(applied, recorded)


@given(ledgers())
def test_the_cached_answer_is_the_plan_s(ledger: Ledger) -> None:
    plan = plan_pending(PACKAGES, ledger, complete=True)
    cached = Manifest.from_json(json.loads(json.dumps(Manifest.of(PACKAGES).to_json())))

    assert cached.up_to_date(ledger) == (not plan.problems and plan.empty)


LINT = PackageLint("notes", (Finding("Y510", "notes", "0002_b", 3, "CREATE INDEX i ON t (c)",
                                     "t", "builds index i", "CREATE INDEX CONCURRENTLY"),),
                   python=("0003_c",))


def test_the_lint_of_each_entry_round_trips_through_json() -> None:
    linted = Manifest(tuple(replace(e, lint=LINT if e.name == "notes" else
                                    PackageLint(e.name)) for e in MANIFEST.entries))

    cached = Manifest.from_json(json.loads(json.dumps(linted.to_json())))

    assert cached == linted
    assert cached.lints == [PackageLint("@ydtb/core"), LINT]
    assert Manifest.from_json(json.loads(json.dumps(MANIFEST.to_json()))).lints is None


def test_a_manifest_not_linted_takes_the_lint_of_unchanged_packages_only() -> None:
    linted = Manifest(tuple(replace(e, lint=PackageLint(e.name)) for e in MANIFEST.entries))
    edited = Manifest((MANIFEST.entries[0], replace(MANIFEST.entries[1], migrations=(
        Recorded("0001_a", "c1"), Recorded("0002_b", "edited")))))

    assert MANIFEST.with_lints_of(linted) == linted
    assert edited.with_lints_of(linted).lints is None
    assert [e.lint for e in edited.with_lints_of(linted).entries] == [
        PackageLint("@ydtb/core"), None]
