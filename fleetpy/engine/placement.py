"""The placement stage of an engine pass (fleetpy.engine.plan), pure like it.

``Pass`` takes the units to run, in ``order`` (by name, each MachineOf follower
after its targets), and places each on the cluster as it evolves: an entry
that still fits stays (unless its draining machine's drain moves it), one that
no longer fits is unscheduled and the unit placed again, a Global unit gets
every matching machine, a unit placed where a unit it Replaces runs displaces
that unit, which is considered again (at most MAX_VISITS times a pass). A unit
whose planning raises waits with ``failed``'s reason; the pass goes on.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from fleetpy.model.xfleet import XFleet
from fleetpy.schedule import Cluster, UnitSpec, decide, decide_global, explain, violations

SHOWN = 5
MAX_VISITS = 3  # times one unit may be (re)considered in a pass (displacement chains)


def failed(exc: Exception) -> str:
    """The reason a unit waits when planning it raised (a bug or unforeseen input)."""
    return f"fleet cannot plan this unit: {type(exc).__name__}: {exc}"


def order(specs: Mapping[str, XFleet]) -> list[str]:
    """Names sorted, each MachineOf follower after its targets (cycles, kept out by
    ``plan_engine``, would come last, by name)."""
    followers: dict[str, list[str]] = {}
    blocking: dict[str, int] = {}
    for name, spec in specs.items():
        targets = {t for t in spec.machine_of if t in specs and t != name}
        blocking[name] = len(targets)
        for target in targets:
            followers.setdefault(target, []).append(name)
    ready = [name for name, n in blocking.items() if n == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        out.append(name)
        for follower in followers.get(name, ()):
            blocking[follower] -= 1
            if blocking[follower] == 0:
                heapq.heappush(ready, follower)
    if len(out) < len(specs):
        done = set(out)
        out.extend(sorted(n for n in specs if n not in done))
    return out


class Pass:
    """One planning pass: the cluster as it evolves, and what was decided."""

    def __init__(
        self,
        cluster: Cluster,
        specs: Mapping[str, XFleet],
        order: list[str],
        moves: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.moves = moves or {}  # unit -> the draining machine it should leave
        self.specs = specs
        self.rank = {name: i for i, name in enumerate(order)}
        self.followers: dict[str, list[str]] = {}
        for name, spec in specs.items():
            for target in spec.machine_of:
                self.followers.setdefault(target, []).append(name)
        self.queue = [(i, name) for i, name in enumerate(order)]
        self.queued = set(order)
        self.visits: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.partial: set[str] = set()  # global units placed, with machines refusing them
        self.decisions: list[str] = []

    def run(self) -> None:
        while self.queue:
            _, name = heapq.heappop(self.queue)
            self.queued.discard(name)
            self.visits[name] = self.visits.get(name, 0) + 1
            spec = UnitSpec(name, self.specs[name])
            try:
                if spec.xfleet.is_global:
                    self._global(spec)
                else:
                    self._single(spec)
            except Exception as exc:  # this unit waits; the pass goes on for the others
                self.reasons[name] = failed(exc)

    def _requeue(self, name: str) -> None:
        """Consider ``name`` again (it lost its place) unless seen too often."""
        if name not in self.queued and self.visits.get(name, 0) < MAX_VISITS:
            heapq.heappush(self.queue, (self.rank[name], name))
            self.queued.add(name)

    def _unschedule(self, name: str, machine_id: str, why: str) -> None:
        self.cluster.remove(name, machine_id)
        self.decisions.append(f"unscheduled {name} from {machine_id[:8]}: {why}")
        for follower in self.followers.get(name, ()):
            if follower in self.rank:
                self._requeue(follower)

    def _single(self, spec: UnitSpec) -> None:
        name = spec.name
        for machine_id in sorted(self.cluster.placed(name)):
            bad = violations(self.cluster, spec, machine_id)
            if not bad:
                if self.moves.get(name) != machine_id:
                    self.reasons.pop(name, None)
                    self.partial.discard(name)
                    return
                if not self._drain_move(spec, machine_id):
                    return
                break
            self._unschedule(name, machine_id, "; ".join(bad))
        decision = decide(self.cluster, spec)
        if decision.machine_id is None:
            self.reasons[name] = "; ".join(decision.reasons)
            return
        for displaced in decision.displace:
            self._unschedule(displaced, decision.machine_id, f"replaced by {name}")
            self._requeue(displaced)
        self.cluster.place(spec, decision.machine_id)
        self.reasons.pop(name, None)
        self.decisions.append(f"scheduled {name} on {decision.machine_id[:8]} ({decision.basis})")

    def _drain_move(self, spec: UnitSpec, machine_id: str) -> bool:
        """Take ``spec`` off a draining machine if another one can take it (True: it is
        off, and that machine refuses it for the rest of the pass); else it stays and
        the reason it cannot move is written (as for a partly placed global unit)."""
        name = spec.name
        refusing = self.cluster.refused.setdefault(name, {})
        refusing[machine_id] = f"machine {machine_id[:8]} is draining"
        self.cluster.remove(name, machine_id)
        decision = decide(self.cluster, spec)
        if decision.machine_id is None:
            del refusing[machine_id]
            if not refusing:
                del self.cluster.refused[name]
            self.cluster.place(spec, machine_id)
            self.reasons[name] = f"cannot leave draining machine {machine_id[:8]}: " + "; ".join(
                decision.reasons
            )
            self.partial.add(name)
            return False
        self.partial.discard(name)
        self.decisions.append(f"unscheduled {name} from {machine_id[:8]}: machine is draining")
        for follower in self.followers.get(name, ()):
            if follower in self.rank:
                self._requeue(follower)
        return True

    def _global(self, spec: UnitSpec) -> None:
        name = spec.name
        for machine_id in sorted(self.cluster.placed(name)):
            bad = violations(self.cluster, spec, machine_id)
            if bad:
                self._unschedule(name, machine_id, "; ".join(bad))
        have = self.cluster.placed(name)
        new = [mid for mid in decide_global(self.cluster, spec) if mid not in have]
        for machine_id in new:
            self.cluster.place(spec, machine_id)
        if new:
            shown = ", ".join(mid[:8] for mid in new[:SHOWN])
            more = f", ... {len(new) - SHOWN} more" if len(new) > SHOWN else ""
            where = f"{len(new)} machines" if len(new) > 1 else "1 machine"
            self.decisions.append(f"scheduled {name} on {where} (global): {shown}{more}")
        if not self.cluster.placed(name):
            self.reasons[name] = "; ".join(explain(self.cluster, spec))
            return
        eligible = self.cluster.eligible(spec.xfleet)
        refusing = self.cluster.refused.get(name, {})
        skipped = [
            why for mid, why in sorted(refusing.items()) if eligible is None or mid in eligible
        ]
        if skipped:  # placed elsewhere; the machines it skips say why
            self.reasons[name] = "; ".join(skipped)
            self.partial.add(name)
        else:
            self.reasons.pop(name, None)
            self.partial.discard(name)
