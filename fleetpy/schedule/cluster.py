"""The cluster as the scheduler sees it: machines, placed units, and indexes.

``Cluster`` is the one mutable object of the scheduler. It is built from a
snapshot (machines and current placements) and updated with ``place`` /
``remove`` as a planner decides, so that each decision sees the earlier ones.
It does no I/O. Its indexes keep every decision well below O(machines x
units):

- machines ordered by load (number of placed units, global ones counted),
  then by ID: buckets of sorted IDs, one bucket per load;
- the machines hosting each unit name;
- for each Conflicts glob in use: the machines hosting a unit it matches
  (computed once from the names sharing its literal prefix, then kept up to
  date as units come and go);
- for each glob declared by placed units: the machines where it is declared,
  with a prefix index to find the declared globs matching a new name;
- for each replaced name: the machines hosting a unit that replaces it;
- for each MachineMetadata requirement: the machines that satisfy it;
- for each unit some machines refuse (they have a unit of that name outside
  fleet, fleetpy.agent.foreign): those machines and their reasons.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fleetpy.model.types import Machine
from fleetpy.model.xfleet import NO_REQUIREMENTS, XFleet

GLOB_MAGIC = frozenset("*?[")
SHORT_ID = 8


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """A unit as the scheduler needs it: its name and its [X-Fleet] requirements."""

    name: str
    xfleet: XFleet = NO_REQUIREMENTS


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard."""
    for i, c in enumerate(pattern):
        if c in GLOB_MAGIC:
            return pattern[:i]
    return pattern


def is_glob(pattern: str) -> bool:
    return any(c in GLOB_MAGIC for c in pattern)


def _inc(counts: dict[str, dict[str, int]], key: str, machine_id: str) -> None:
    per = counts.setdefault(key, {})
    per[machine_id] = per.get(machine_id, 0) + 1


def _dec(counts: dict[str, dict[str, int]], key: str, machine_id: str) -> None:
    per = counts[key]
    if per[machine_id] == 1:
        del per[machine_id]
        if not per:
            del counts[key]
    else:
        per[machine_id] -= 1


class PatternIndex:
    """Globs indexed by literal prefix: which of them match a given name."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, dict[str, int]] = {}
        self._lengths: dict[int, int] = {}
        self._prefix: dict[str, str] = {}

    def add(self, pattern: str) -> None:
        prefix = self._prefix.get(pattern)
        if prefix is None:
            prefix = self._prefix[pattern] = literal_prefix(pattern)
        per = self._by_prefix.setdefault(prefix, {})
        per[pattern] = per.get(pattern, 0) + 1
        self._lengths[len(prefix)] = self._lengths.get(len(prefix), 0) + 1

    def discard(self, pattern: str) -> None:
        prefix = self._prefix[pattern]
        per = self._by_prefix[prefix]
        if per[pattern] == 1:
            del per[pattern]
            if not per:
                del self._by_prefix[prefix]
        else:
            per[pattern] -= 1
        if self._lengths[len(prefix)] == 1:
            del self._lengths[len(prefix)]
        else:
            self._lengths[len(prefix)] -= 1

    def matching(self, name: str) -> Iterator[str]:
        """Every indexed glob that matches ``name``."""
        for length in self._lengths:
            if length > len(name):
                continue
            for pattern in self._by_prefix.get(name[:length], ()):
                if fnmatchcase(name, pattern):
                    yield pattern


class Cluster:
    """Machines and placements with the indexes the scheduler needs (no I/O)."""

    def __init__(
        self,
        machines: Iterable[Machine],
        placements: Iterable[tuple[UnitSpec, str]] = (),
        refused: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.machines: dict[str, Machine] = {m.id: m for m in machines}
        # unit -> machine -> why that machine will not load it (it has the unit outside fleet)
        self.refused: dict[str, dict[str, str]] = {
            name: {mid: why for mid, why in per.items() if mid in self.machines}
            for name, per in (refused or {}).items()
        }
        self.machine_ids: tuple[str, ...] = tuple(sorted(self.machines))
        self._short: dict[str, list[str]] = {}
        for mid in self.machine_ids:
            self._short.setdefault(mid[:SHORT_ID], []).append(mid)
        self.units_on: dict[str, dict[str, UnitSpec]] = {mid: {} for mid in self.machine_ids}
        self.hosts: dict[str, set[str]] = {}
        self._names: list[str] = []  # sorted names of placed units
        self.load: dict[str, int] = dict.fromkeys(self.machine_ids, 0)
        self._buckets: list[list[str]] = [list(self.machine_ids)]
        self._match: dict[str, dict[str, int]] = {}  # glob -> machine -> units matching
        self._match_index = PatternIndex()
        self.declared: dict[str, dict[str, int]] = {}  # glob -> machine -> units declaring
        self.declared_index = PatternIndex()
        self.replaced_on: dict[str, dict[str, int]] = {}  # name -> machine -> replacers
        self._eligible: dict[tuple[tuple[str, tuple[str, ...]], ...], frozenset[str]] = {}
        for spec, machine_id in placements:
            self.place(spec, machine_id)

    # queries ---------------------------------------------------------------
    def match_id(self, wanted: str) -> list[str]:
        """Machines whose full ID or 8-character short ID is ``wanted``."""
        if wanted in self.machines:
            return [wanted]
        return list(self._short.get(wanted, ())) if len(wanted) == SHORT_ID else []

    def by_load(self) -> Iterator[str]:
        """Machine IDs, least loaded first, ties by ID."""
        for bucket in self._buckets:
            yield from bucket

    def sort_by_load(self, machine_ids: Iterable[str]) -> list[str]:
        load = self.load
        return sorted(machine_ids, key=lambda mid: (load[mid], mid))

    def eligible(self, spec: XFleet) -> frozenset[str] | None:
        """Machines matching the MachineMetadata requirement; None when there is none."""
        required = spec.machine_metadata
        if not required:
            return None
        found = self._eligible.get(required)
        if found is None:
            found = frozenset(
                mid for mid, m in self.machines.items() if spec.matches_metadata(m.metadata)
            )
            self._eligible[required] = found
        return found

    def hosting(self, pattern: str) -> Mapping[str, int]:
        """Machine -> number of placed units whose name matches ``pattern``."""
        if not is_glob(pattern):
            return dict.fromkeys(self.hosts.get(pattern, ()), 1)
        found = self._match.get(pattern)
        if found is None:
            found = {}
            prefix = literal_prefix(pattern)
            names = self._names
            i = bisect_left(names, prefix)
            while i < len(names) and names[i].startswith(prefix):
                if fnmatchcase(names[i], pattern):
                    for mid in self.hosts[names[i]]:
                        found[mid] = found.get(mid, 0) + 1
                i += 1
            self._match[pattern] = found
            self._match_index.add(pattern)
        return found

    def placed(self, name: str) -> set[str]:
        """Machines where ``name`` is placed (several only for a global unit)."""
        return self.hosts.get(name, set())

    # updates ---------------------------------------------------------------
    def _bump(self, machine_id: str, delta: int) -> None:
        old = self.load[machine_id]
        bucket = self._buckets[old]
        del bucket[bisect_left(bucket, machine_id)]
        new = old + delta
        while len(self._buckets) <= new:
            self._buckets.append([])
        insort(self._buckets[new], machine_id)
        self.load[machine_id] = new

    def place(self, spec: UnitSpec, machine_id: str) -> None:
        """Record ``spec`` on ``machine_id`` (a unit already there is replaced)."""
        units = self.units_on[machine_id]
        name = spec.name
        if name in units:
            self.remove(name, machine_id)
        units[name] = spec
        hosts = self.hosts.get(name)
        if hosts is None:
            hosts = self.hosts[name] = set()
            insort(self._names, name)
        hosts.add(machine_id)
        self._bump(machine_id, 1)
        for pattern in self._match_index.matching(name):
            per = self._match[pattern]
            per[machine_id] = per.get(machine_id, 0) + 1
        for pattern in spec.xfleet.conflicts:
            _inc(self.declared, pattern, machine_id)
            self.declared_index.add(pattern)
        for replaced in spec.xfleet.replaces:
            _inc(self.replaced_on, replaced, machine_id)

    def remove(self, name: str, machine_id: str) -> UnitSpec | None:
        """Forget ``name`` on ``machine_id``; returns its spec, None if it was not there."""
        spec = self.units_on.get(machine_id, {}).pop(name, None)
        if spec is None:
            return None
        hosts = self.hosts[name]
        hosts.discard(machine_id)
        if not hosts:
            del self.hosts[name]
            del self._names[bisect_left(self._names, name)]
        self._bump(machine_id, -1)
        for pattern in self._match_index.matching(name):
            per = self._match[pattern]
            if per[machine_id] == 1:
                del per[machine_id]
            else:
                per[machine_id] -= 1
        for pattern in spec.xfleet.conflicts:
            _dec(self.declared, pattern, machine_id)
            self.declared_index.discard(pattern)
        for replaced in spec.xfleet.replaces:
            _dec(self.replaced_on, replaced, machine_id)
        return spec
