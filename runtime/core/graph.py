"""The package dependency graph: ordering, cycles and closures. No I/O.

A graph is a mapping from a package name to the names it depends on. `graphlib` does
the topological sort (it is in the standard library and well tested); what is ours is
determinism (ties broken by name) and naming a cycle the way people read it.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping

__all__ = [
    "CycleError",
    "dependency_order",
    "find_cycle",
    "format_cycle",
    "reachable",
]

Graph = Mapping[str, Iterable[str]]


class CycleError(ValueError):
    """The graph has a cycle; `cycle` lists it with the first name repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {format_cycle(cycle)}")


def format_cycle(cycle: list[str]) -> str:
    """Render a cycle as `a -> b -> a`."""
    return " -> ".join(cycle)


def _rotate(cycle: list[str]) -> list[str]:
    # The same cycle found from different starts reads the same: start at the least name.
    body = cycle[:-1]
    start = body.index(min(body))
    body = body[start:] + body[:start]
    return [*body, body[0]]


def dependency_order(graph: Graph) -> list[str]:
    """Return every node with its dependencies first; ties are broken by name.

    Dependencies that are not keys of `graph` are ignored (they are reported elsewhere
    as missing).

    Raises:
        CycleError: the graph has a cycle.
    """
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(graph):
        sorter.add(name, *sorted(d for d in graph[name] if d in graph))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        # graphlib gives the cycle in reverse (each node followed by what depends on it).
        raise CycleError(_rotate(list(reversed(exc.args[1])))) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def find_cycle(graph: Graph, start: str) -> list[str] | None:
    """Return a cycle through `start`, or None; reads only what `start` reaches."""
    path: list[str] = [start]
    on_path = {start}
    seen: set[str] = set()
    stack = [iter(sorted(graph.get(start, ())))]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            on_path.discard(path.pop())
            continue
        if node == start:
            return _rotate([*path, start])
        if node in on_path or node in seen or node not in graph:
            continue
        seen.add(node)
        path.append(node)
        on_path.add(node)
        stack.append(iter(sorted(graph[node])))
    return None


def reachable(edges: Graph, starts: Iterable[str]) -> set[str]:
    """Return every node reached from `starts` by one edge or more.

    Over a dependency graph that is the transitive dependencies; over the reverse graph
    (each node to the nodes depending on it), the transitive dependents. A start is in
    the result only if a cycle leads back to it. Nodes that are not keys of `edges` have
    no edges; every walk ends, cycles included.
    """
    found: set[str] = set()
    todo = list(starts)
    while todo:
        for node in edges.get(todo.pop(), ()):
            if node not in found:
                found.add(node)
                todo.append(node)
    return found
