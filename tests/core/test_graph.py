from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.core.graph import (
    CycleError,
    dependency_order,
    find_cycle,
    format_cycle,
    reachable,
)

Graph = dict[str, list[str]]

# Modest example counts: the suite runs in seconds, and nothing is written to disk.
PROPERTY = settings(max_examples=60, deadline=None, database=None)


def test_dependency_order_puts_dependencies_first() -> None:
    graph = {"@ydtb/notes": ["@ydtb/core"], "@ydtb/core": [], "@ydtb/tags": ["@ydtb/notes"]}

    assert dependency_order(graph) == ["@ydtb/core", "@ydtb/notes", "@ydtb/tags"]


def test_dependency_order_breaks_ties_by_name() -> None:
    graph = {"c": [], "a": [], "b": [], "d": ["c"]}

    assert dependency_order(graph) == ["a", "b", "c", "d"]


def test_dependency_order_breaks_ties_by_name_after_the_first_layer() -> None:
    # "x" is done before "y", so "b" (waiting on x) is ready before "a" (waiting on y).
    graph = {"a": ["y"], "b": ["x"], "x": [], "y": []}

    assert dependency_order(graph) == ["x", "y", "a", "b"]


def test_dependency_order_does_not_depend_on_insertion_order() -> None:
    graph = {"z": ["m"], "m": ["a"], "b": ["a"], "a": [], "y": []}
    shuffled = dict(reversed(list(graph.items())))

    assert dependency_order(graph) == dependency_order(shuffled) == ["a", "y", "b", "m", "z"]


def test_dependency_order_of_a_diamond() -> None:
    graph = {"app": ["left", "right"], "left": ["base"], "right": ["base"], "base": []}

    assert dependency_order(graph) == ["base", "left", "right", "app"]


def test_dependency_order_ignores_dependencies_outside_the_graph() -> None:
    assert dependency_order({"notes": ["missing"], "tags": ["notes"]}) == ["notes", "tags"]


def test_dependency_order_of_an_empty_graph() -> None:
    assert dependency_order({}) == []


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        pytest.param({"@ydtb/a": ["@ydtb/a"]}, ["@ydtb/a", "@ydtb/a"], id="self"),
        pytest.param(
            {"@ydtb/a": ["@ydtb/b"], "@ydtb/b": ["@ydtb/a"]},
            ["@ydtb/a", "@ydtb/b", "@ydtb/a"],
            id="two",
        ),
        pytest.param(
            {"@ydtb/b": ["@ydtb/c"], "@ydtb/c": ["@ydtb/a"], "@ydtb/a": ["@ydtb/b"]},
            ["@ydtb/a", "@ydtb/b", "@ydtb/c", "@ydtb/a"],
            id="three",
        ),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["d"], "d": ["b"], "e": ["a"]},
            ["b", "c", "d", "b"],
            id="behind-a-tail",
        ),
    ],
)
def test_dependency_order_raises_on_a_cycle(graph: Graph, cycle: list[str]) -> None:
    with pytest.raises(CycleError) as info:
        dependency_order(graph)

    assert info.value.cycle == cycle
    assert str(info.value) == f"dependency cycle: {' -> '.join(cycle)}"


def test_cycle_error_is_a_value_error() -> None:
    assert issubclass(CycleError, ValueError)


def test_format_cycle() -> None:
    assert format_cycle(["@ydtb/a", "@ydtb/b", "@ydtb/a"]) == "@ydtb/a -> @ydtb/b -> @ydtb/a"


@pytest.mark.parametrize(
    ("graph", "start", "cycle"),
    [
        pytest.param({"a": ["a"]}, "a", ["a", "a"], id="self"),
        pytest.param({"a": ["b"], "b": ["a"]}, "b", ["a", "b", "a"], id="two-from-second"),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"]}, "c", ["a", "b", "c", "a"], id="three-rotated"
        ),
        pytest.param({"a": ["b"], "b": ["c"], "c": []}, "a", None, id="chain"),
        pytest.param(
            {"a": ["left", "right"], "left": ["base"], "right": ["base"], "base": []},
            "a",
            None,
            id="diamond",
        ),
        pytest.param({"e": ["a"], "a": ["b"], "b": ["a"]}, "e", None, id="leads-to-a-cycle"),
        pytest.param({"a": ["missing"]}, "a", None, id="missing-dependency"),
        pytest.param({}, "a", None, id="unknown-start"),
    ],
)
def test_find_cycle(graph: Graph, start: str, cycle: list[str] | None) -> None:
    assert find_cycle(graph, start) == cycle


def test_reachable_over_dependencies_is_the_transitive_dependencies() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": [], "d": ["a", "missing"]}

    assert reachable(graph, ["a"]) == {"b", "c"}
    assert reachable(graph, ["d"]) == {"a", "b", "c", "missing"}
    assert reachable(graph, ["c"]) == set()


def test_reachable_over_the_reverse_graph_is_the_transitive_dependents() -> None:
    reverse = {"core": ["notes", "other"], "notes": ["tags"], "tags": ["search"], "x": ["y"]}

    assert reachable(reverse, ["core"]) == {"notes", "other", "tags", "search"}
    assert reachable(reverse, ["notes"]) == {"tags", "search"}
    assert reachable(reverse, ["notes", "x"]) == {"tags", "search", "y"}
    assert reachable(reverse, ["search"]) == set()


@pytest.mark.parametrize(
    ("edges", "starts", "found"),
    [
        pytest.param({}, ["unknown"], set(), id="unknown-start"),
        pytest.param({"a": ["b"]}, [], set(), id="no-start"),
        pytest.param({"a": ["a"]}, ["a"], {"a"}, id="self"),
        pytest.param({"a": ["a"], "b": ["a"]}, ["b"], {"a"}, id="into-a-self-loop"),
        pytest.param({"a": ["b"], "b": ["a"]}, ["a"], {"a", "b"}, id="cycle"),
        pytest.param({"e": ["a"], "a": ["b"], "b": ["a"]}, ["e"], {"a", "b"}, id="into-a-cycle"),
    ],
)
def test_reachable_includes_a_start_only_when_a_cycle_leads_back(
    edges: Graph, starts: list[str], found: set[str]
) -> None:
    assert reachable(edges, starts) == found


# -- properties -------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    """A random DAG: node i may depend only on nodes drawn before it, names shuffled."""
    names = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), unique=True, max_size=12))
    names = draw(st.permutations(names))
    graph: Graph = {}
    for index, name in enumerate(names):
        graph[name] = draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
    return dict(draw(st.permutations(list(graph.items()))))


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """A random directed graph, self-loops and cycles included."""
    names = draw(st.lists(st.sampled_from("abcdefghij"), unique=True, min_size=1, max_size=8))
    return {name: draw(st.lists(st.sampled_from(names), unique=True, max_size=3)) for name in names}


def assert_valid_order(graph: Graph, order: list[str]) -> None:
    assert sorted(order) == sorted(graph)
    position = {name: index for index, name in enumerate(order)}
    for name, deps in graph.items():
        for dep in deps:
            assert position[dep] < position[name], f"{name} comes before its dependency {dep}"


def assert_real_cycle(graph: Graph, cycle: list[str]) -> None:
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1, "a cycle visits each node once"
    for node, dep in pairwise(cycle):
        assert dep in graph[node], f"{node} does not depend on {dep}"


@PROPERTY
@given(dags())
def test_property_a_dag_orders_as_a_valid_permutation_without_cycles(graph: Graph) -> None:
    order = dependency_order(graph)

    assert_valid_order(graph, order)
    assert dependency_order(dict(reversed(list(graph.items())))) == order
    assert all(find_cycle(graph, name) is None for name in graph)


@PROPERTY
@given(graphs())
def test_property_dependency_order_is_valid_or_names_a_real_cycle(graph: Graph) -> None:
    try:
        order = dependency_order(graph)
    except CycleError as exc:
        assert_real_cycle(graph, exc.cycle)
        assert exc.cycle[0] == min(exc.cycle), "a cycle reads from its least name"
    else:
        assert_valid_order(graph, order)


@PROPERTY
@given(graphs())
def test_property_find_cycle_agrees_with_dependency_order(graph: Graph) -> None:
    cycles = {name: find_cycle(graph, name) for name in graph}
    for name, cycle in cycles.items():
        if cycle is not None:
            assert_real_cycle(graph, cycle)
            assert name in cycle
    has_cycle = any(cycle is not None for cycle in cycles.values())
    try:
        dependency_order(graph)
    except CycleError:
        assert has_cycle
    else:
        assert not has_cycle


@PROPERTY
@given(graphs(), st.data())
def test_property_reachable_over_the_reverse_graph_is_the_nodes_that_reach_the_start(
    graph: Graph, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(graph)))
    reverse = {node: [n for n in graph if node in graph[n]] for node in graph}

    def reaches(node: str) -> bool:
        seen, todo = set(), list(graph[node])
        while todo:
            current = todo.pop()
            if current == name:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(graph.get(current, ()))
        return False

    assert reachable(reverse, [name]) == {node for node in graph if reaches(node)}
