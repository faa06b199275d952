"""Where a unit may run: pure decisions over a ``Cluster``.

Constraints (fleet's, see docs in fleetpy.model.xfleet):

- MachineID: only the machine with that full or 8-character short ID;
- MachineOf: only a machine hosting every named unit; a unit whose target
  is not scheduled waits;
- MachineMetadata: values of one key OR-ed, keys AND-ed;
- Conflicts, both ways: not next to a unit one of its globs matches, nor
  next to a unit whose globs match it;
- Replaces: never next to a unit that replaces it; a unit with Replaces
  prefers a machine hosting a unit it replaces, and that unit is displaced;
- never on a machine that refuses the unit (it has a unit of that name
  outside fleet): a global unit skips it, others go elsewhere or wait with
  the machines' reasons.

Among the machines passing every check the least loaded wins (units placed,
global ones counted), ties broken by machine ID. No function here changes
the cluster; the caller records a decision with ``Cluster.place``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fleetpy.schedule.cluster import SHORT_ID, Cluster, UnitSpec

SHOWN = 5


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a unit goes, or why it cannot go anywhere.

    ``machine_id`` is None when no machine fits; ``reasons`` then says why,
    one sentence per failing constraint. ``displace`` names the units on the
    chosen machine that this unit replaces (they must move away). ``basis``
    says why that machine: ``least loaded: 0 units``, ``MachineOf=db.service``.
    """

    machine_id: str | None
    reasons: tuple[str, ...] = ()
    displace: tuple[str, ...] = ()
    basis: str = ""


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _blockers(cluster: Cluster, spec: UnitSpec) -> list[Collection[str]]:
    """Collections of machines this unit must avoid (conflicts, replacers, refusals)."""
    out: list[Collection[str]] = []
    refusing = cluster.refused.get(spec.name)
    if refusing:
        out.append(refusing)
    for pattern in spec.xfleet.conflicts:
        hosting = cluster.hosting(pattern)
        if hosting:
            out.append(hosting)
    for pattern in cluster.declared_index.matching(spec.name):
        out.append(cluster.declared[pattern])
    replacers = cluster.replaced_on.get(spec.name)
    if replacers:
        out.append(replacers)
    return out


def decide(cluster: Cluster, spec: UnitSpec) -> Decision:
    """Choose the machine for a unit that is not placed yet (non-global)."""
    x = spec.xfleet
    candidates: Iterable[str] | None = None
    basis = ""
    if x.machine_id is not None:
        candidates = cluster.match_id(x.machine_id)
        basis = f"MachineID={x.machine_id}"
    if x.machine_of:
        common: set[str] | None = None if candidates is None else set(candidates)
        for target in x.machine_of:
            hosts = cluster.placed(target)
            common = set(hosts) if common is None else common & hosts
        candidates = common
        basis = f"MachineOf={' '.join(x.machine_of)}"
    eligible = cluster.eligible(x)
    blockers = _blockers(cluster, spec)

    def first_fit(order: Iterable[str]) -> str | None:
        for mid in order:
            if eligible is not None and mid not in eligible:
                continue
            for blocked in blockers:
                if mid in blocked:
                    break
            else:
                return mid
        return None

    chosen: str | None = None
    if x.replaces and candidates is None:
        preferred: set[str] = set()
        for replaced in x.replaces:
            if replaced != spec.name:
                preferred |= cluster.placed(replaced)
        chosen = first_fit(cluster.sort_by_load(preferred))
    if chosen is None:
        if candidates is not None:
            chosen = first_fit(cluster.sort_by_load(candidates))
        elif eligible is not None and len(eligible) * 4 < len(cluster.machine_ids):
            chosen = first_fit(cluster.sort_by_load(eligible))
        else:
            chosen = first_fit(cluster.by_load())
    if chosen is None:
        return Decision(machine_id=None, reasons=explain(cluster, spec))
    units_there = cluster.units_on[chosen]
    displace = tuple(r for r in x.replaces if r in units_there and r != spec.name)
    if displace:
        basis = f"replaces {', '.join(displace)}"
    elif not basis:
        basis = f"least loaded: {_units(cluster.load[chosen])}"
    return Decision(machine_id=chosen, displace=displace, basis=basis)


def decide_global(cluster: Cluster, spec: UnitSpec) -> tuple[str, ...]:
    """Every machine a global unit belongs on, sorted by ID.

    Machines already hosting it are kept (check them with ``violations``
    first); others qualify when they match MachineMetadata and no conflict
    or replacement keeps the unit away.
    """
    current = cluster.placed(spec.name)
    eligible = cluster.eligible(spec.xfleet)
    pool: Iterable[str] = cluster.machine_ids if eligible is None else eligible
    blockers = _blockers(cluster, spec)
    found = set(current)
    for mid in pool:
        if mid not in current and not any(mid in blocked for blocked in blockers):
            found.add(mid)
    return tuple(sorted(found))


def violations(cluster: Cluster, spec: UnitSpec, machine_id: str) -> tuple[str, ...]:
    """Why ``spec`` may not stay on ``machine_id`` now (empty when it may).

    The unit itself, if placed there, is not counted against itself.
    """
    if machine_id not in cluster.machines:
        return ("machine gone",)
    x, name = spec.xfleet, spec.name
    out: list[str] = []
    if x.machine_id is not None and machine_id not in cluster.match_id(x.machine_id):
        out.append(f"MachineID={x.machine_id} names another machine")
    for target in x.machine_of:
        if machine_id not in cluster.placed(target):
            out.append(f"MachineOf={target}: {target} is not on this machine")
    if x.machine_metadata and not x.matches_metadata(cluster.machines[machine_id].metadata):
        out.append(f"machine does not match MachineMetadata {x.describe_metadata()}")
    refusal = cluster.refused.get(name, {}).get(machine_id)
    if refusal is not None:
        out.append(refusal)
    units = cluster.units_on[machine_id]
    here = name in units
    for pattern in x.conflicts:
        count = cluster.hosting(pattern).get(machine_id, 0)
        if here and fnmatchcase(name, pattern):
            count -= 1
        if count > 0:
            other = min(u for u in units if u != name and fnmatchcase(u, pattern))
            out.append(f"Conflicts={pattern} matches {other} on this machine")
    for pattern in cluster.declared_index.matching(name):
        count = cluster.declared[pattern].get(machine_id, 0)
        if here and pattern in units[name].xfleet.conflicts:
            count -= 1
        if count > 0:
            other = min(u for u, s in units.items() if u != name and pattern in s.xfleet.conflicts)
            out.append(f"{other} on this machine has Conflicts={pattern}")
    count = cluster.replaced_on.get(name, {}).get(machine_id, 0)
    if here and name in units[name].xfleet.replaces:
        count -= 1
    if count > 0:
        other = min(u for u, s in units.items() if u != name and name in s.xfleet.replaces)
        out.append(f"replaced by {other}")
    return tuple(out)


# explanations (only computed when nothing fits) ------------------------------
def _list(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown}, ... {len(items) - SHOWN} more"


def _machines(n: int) -> str:
    return f"{n} machine" if n == 1 else f"{n} machines"


def _meta(cluster: Cluster, mid: str) -> str:
    metadata = cluster.machines[mid].metadata
    pairs = ",".join(f"{k}={v}" for k, v in sorted(metadata.items()))
    return f"{mid[:SHORT_ID]} {pairs or 'no metadata'}"


def _cause(cluster: Cluster, spec: UnitSpec, mid: str) -> tuple[str, str | None]:
    """(clause, own glob or None) explaining why ``mid`` is blocked for ``spec``."""
    units = cluster.units_on[mid]
    others = sorted(u for u in units if u != spec.name)
    for pattern in spec.xfleet.conflicts:
        for other in others:
            if fnmatchcase(other, pattern):
                return f"{mid[:SHORT_ID]}: {other}", pattern
    for other in others:
        theirs = units[other].xfleet
        for pattern in theirs.conflicts:
            if fnmatchcase(spec.name, pattern):
                return f"{mid[:SHORT_ID]}: {other} (its Conflicts={pattern})", None
        if spec.name in theirs.replaces:
            return f"{mid[:SHORT_ID]}: {other} (replaces {spec.name})", None
    return f"{mid[:SHORT_ID]}: ?", None


def _ids(mids: list[str]) -> str:
    return _list([mid[:SHORT_ID] for mid in mids])


def explain(cluster: Cluster, spec: UnitSpec) -> tuple[str, ...]:
    """Why no machine can take ``spec``: one sentence per constraint, in the order
    they apply; those that narrowed the choice first, then the one that left none."""
    x = spec.xfleet
    total = len(cluster.machine_ids)
    if not total:
        return ("no machines in the cluster",)
    pool = list(cluster.machine_ids)
    notes: list[str] = []
    if x.machine_id is not None:
        pool = cluster.match_id(x.machine_id)
        if not pool:
            return (f"MachineID={x.machine_id}: no such machine among {_machines(total)}",)
    if x.machine_of:
        missing = [t for t in x.machine_of if not cluster.placed(t)]
        if missing:
            return tuple(f"MachineOf={t}: waiting for {t} to be scheduled" for t in missing)
        common = set(pool)
        for target in x.machine_of:
            common &= cluster.placed(target)
        if not common:
            where = [
                f"{t} on {','.join(m[:SHORT_ID] for m in sorted(cluster.placed(t)))}"
                for t in x.machine_of
            ]
            return (*notes, f"MachineOf: no machine hosts them all ({'; '.join(where)})")
        pool = sorted(common)
        notes.append(f"MachineOf={' '.join(x.machine_of)}: only {_ids(pool)}")
    eligible = cluster.eligible(x)
    if eligible is not None:
        matching = [mid for mid in pool if mid in eligible]
        if not matching:
            listed = _list([_meta(cluster, mid) for mid in pool])
            return (
                *notes,
                f"no machine matches MachineMetadata {x.describe_metadata()} "
                f"({_machines(len(pool))}: {listed})",
            )
        if len(matching) < len(pool):
            notes.append(
                f"MachineMetadata {x.describe_metadata()}: {len(matching)} of "
                f"{_machines(len(pool))} match ({_ids(matching)})"
            )
        pool = matching
    refusing = cluster.refused.get(spec.name, {})
    accepting = [mid for mid in pool if mid not in refusing]
    if not accepting:
        why = [refusing[mid] for mid in pool[:SHOWN]]
        more = [f"... {len(pool) - SHOWN} more machines refuse it"] if len(pool) > SHOWN else []
        return (*notes, *why, *more)
    if len(accepting) < len(pool):
        refusers = [mid for mid in pool if mid in refusing]
        whys = _list(sorted({refusing[mid] for mid in refusers}))
        notes.append(f"refused by {_ids(refusers)} ({whys})")
        pool = accepting
    causes = [_cause(cluster, spec, mid) for mid in pool[:SHOWN]]
    clauses = ", ".join(clause for clause, _ in causes)
    if len(pool) > SHOWN:
        clauses += f", ... {len(pool) - SHOWN} more"
    globs = {glob for _, glob in causes}
    if len(globs) == 1 and None not in globs:
        return (*notes, f"Conflicts: {globs.pop()} runs on every eligible machine ({clauses})")
    return (*notes, f"Conflicts: a conflicting unit runs on every eligible machine ({clauses})")
