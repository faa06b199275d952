"""MachineOf cycles: units that each want to run where the next one runs, round to the first.

No unit of such a cycle can be placed first, so each waits, and the reason
names the cycle: ``MachineOf cycle: a.service -> b.service -> a.service``.
Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from fleetpy.model.xfleet import XFleet


def _components(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            successors = graph[node]
            if i < len(successors):
                work.append((node, i + 1))
                nxt = successors[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _cycle_through(start: str, graph: Mapping[str, list[str]], members: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (by name on ties)."""
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if nxt in members and nxt not in came:
                came[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is on no cycle")  # a component of 2+ always has one


def machine_of_cycles(specs: Mapping[str, XFleet]) -> dict[str, str]:
    """Unit -> the reason it waits, for every unit on a MachineOf cycle among ``specs``.

    Every unit of one strongly connected component gets the same reason: the
    shortest cycle through the component's first unit by name.
    """
    graph = {
        name: sorted({t for t in spec.machine_of if t in specs})
        for name, spec in specs.items()
    }
    reasons: dict[str, str] = {}
    for component in _components(graph):
        first = min(component)
        if len(component) == 1 and first not in graph[first]:
            continue
        cycle = _cycle_through(first, graph, set(component))
        reason = "MachineOf cycle: " + " -> ".join(cycle)
        for name in component:
            reasons[name] = reason
    return reasons
