from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData

from runtime.core import validation
from runtime.core.index import SetIndex
from runtime.core.model import Package, dependency_graph
from runtime.core.registry import core_package


def _assert_rebuilt(index: SetIndex) -> None:
    rebuilt = SetIndex.of(index.packages.values())
    # Positions may have gaps where packages left; their order is the packages' order.
    assert sorted(index.positions, key=index.positions.__getitem__) == list(index.packages)
    assert replace(index, positions=rebuilt.positions,
                   next_position=rebuilt.next_position) == rebuilt


def test_an_index_holds_the_maps_check_set_builds(package_pool: tuple[Package, ...]) -> None:
    packages = [core_package(), *{p.name: p for p in package_pool}.values()]

    index = SetIndex.of(packages)

    assert list(index.packages) == [p.name for p in packages]
    assert index.graph == dependency_graph(packages)
    owners = validation.table_owners(packages)
    assert index.owners == {table: tuple(names) for table, names in owners.items()}
    providers = validation.tool_owners(packages)
    assert index.providers == {tool: tuple(names) for tool, names in providers.items()}
    assert {(d, n) for d, names in index.dependents.items() for n in names} == {
        (d, n) for n, deps in index.graph.items() for d in deps}


@settings(max_examples=100, deadline=None, database=None)
@given(steps=st.lists(st.tuples(st.integers(0, 10_000), st.booleans()), max_size=12))
def test_a_changed_index_is_the_index_of_the_changed_set(
    package_pool: tuple[Package, ...], steps: list[tuple[int, bool]]
) -> None:
    index = SetIndex.of([core_package()])
    for number, remove in steps:
        package = package_pool[number % len(package_pool)]
        gone = [package.name] if remove and package.name in index.packages else []
        index = index.change([] if gone and number % 2 else [package], gone)

        _assert_rebuilt(index)


def _package(name: str, schema: MetaData, *dependencies: str) -> Package:
    package, problems = validation.build_package(
        package_name=name, schema=schema, migrations=None, dependencies=dependencies,
        version="1")
    assert package is not None, problems
    return package


def test_a_change_affects_its_dependents_and_the_owners_and_referrers_of_its_tables(
    make_schema: Callable[..., MetaData],
) -> None:
    base = _package("base", make_schema("ydtb_base"))
    notes = _package("notes", make_schema("ydtb_notes"), "base")
    tags = _package("tags", make_schema("ydtb_tags"), "notes")
    # Not a dependent of base: it is affected as a referrer of base's table.
    links = _package("links", make_schema("ydtb_links", fks={"ydtb_links.base_id":
                                                             "ydtb_base.id"}))
    before = SetIndex.of([core_package(), base, notes, tags, links])

    assert before.change([tags], []).affected(before, ["tags"]) == {"tags"}
    assert before.change([base], []).affected(before, ["base"]) == {
        "base", "notes", "tags", "links"}
    after = before.change([], ["links"])
    assert after.affected(before, ["links"]) == set()
    thief = _package("thief", make_schema("ydtb_notes"))
    assert before.change([thief], []).affected(before, ["thief"]) == {"thief", "notes"}
