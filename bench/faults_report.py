"""The fault bench's section of docs/reliability.md: one row per scenario (pure but for
``prepare_doc``)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.faults_analysis import GAP, Event, Figures
from bench.faults_observe import EVERY
from bench.faults_scenarios import SCENARIOS

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"

TITLE = "# Reliability\n"
DEFAULT = """## fleet's default: units keep running

- A machine that loses etcd (etcd down, or the machine cut off from it) keeps
  running its units: fleetd never stops a unit for lack of etcd (unless the
  unit asks for fencing, next section), and a fleetd restart, crash (kill -9)
  or upgrade leaves the units alone (they live in their own cgroups;
  `KillMode=process` in fleet.service).
- The engine sees a machine gone when its lease expires, `agent_ttl` (default
  30 s) after its last keepalive, and places the machine's units elsewhere.
- When the machine comes back, its agent finds its schedule changed and stops
  its stale copies.
- So a unit can run twice while a machine is cut off for longer than
  `agent_ttl`: on the cut-off machine and where the engine moved it, until
  the partition heals. The table in the last section says for how long
  (overlap, scenario 4). When etcd is down for everyone, nothing moves: etcd
  renews every lease when it has a leader again.
- Units that must never run twice ask for fencing (next section).
"""
FENCING = """## Fencing: StopWhenDisconnected

(To be written with the option: `[X-Fleet] StopWhenDisconnected=true`.)
"""
INTRO = f"{TITLE}\n{DEFAULT}\n{FENCING}"


@dataclass(frozen=True)
class UnitSet:
    files: dict[str, str]  # unit -> [X-Fleet] lines: started before the scenarios
    late: dict[str, str]  # started by scenario 5
    global_units: frozenset[str]
    fenced: frozenset[str]

    @property
    def watched(self) -> list[str]:
        return sorted(self.files | self.late)


@dataclass(frozen=True)
class Rep:
    """One repetition of one scenario, measured."""

    scenario: str
    rep: int
    start: float  # the fault began (wall clock)
    fault_end: float
    end: float  # the observation ended (settled, or gave up)
    figures: Figures
    lost: list[str]
    errors: list[str]
    unsettled: float | None  # not settled within this many seconds


@dataclass(frozen=True)
class Summary:
    key: str
    reps: int
    unexpected: list[tuple[Rep, Event]]  # units without fencing
    fenced_stops: list[tuple[Rep, Event]]
    moved: int
    converged: list[float | None]
    overlap: tuple[float, float, float]  # unfenced, the most in one repetition: certain
    overlap_fenced: tuple[float, float, float]  # (summed over units), one unit's, possible
    lost: list[str]
    errors: list[str]
    runs: tuple[Rep, ...] = ()
    nowhere: float = 0.0  # unfenced: the longest a unit ran on no host, any repetition
    nowhere_fenced: float = 0.0


def _overlap(reps: Sequence[Rep], units: frozenset[str]) -> tuple[float, float, float]:
    if not reps:
        return 0.0, 0.0, 0.0
    return (max(sum(v for u, v in r.figures.overlap.items() if u in units) for r in reps),
            max((v for r in reps for u, v in r.figures.overlap.items() if u in units),
                default=0.0),
            max(sum(v for u, v in r.figures.overlap_possible.items() if u in units)
                for r in reps))


def _overlap_cell(o: tuple[float, float, float]) -> str:
    certain, one, possible = o
    if not possible:
        return "0.0 s"
    return f"{certain:.1f} s (one unit {one:.1f} s); possible <= {possible:.1f} s"


def summarize(key: str, reps: Sequence[Rep], units: UnitSet) -> Summary:
    plain = frozenset(units.watched) - units.fenced - units.global_units
    events = [(r, e) for r in reps for e in r.figures.events]
    return Summary(
        key, len(reps),
        [(r, e) for r, e in events if not e.expected and e.unit not in units.fenced],
        [(r, e) for r, e in events if e.unit in units.fenced],
        sum(e.expected and e.unit not in units.fenced for _, e in events),
        [r.figures.converged if r.unsettled is None else None for r in reps],
        _overlap(reps, plain), _overlap(reps, units.fenced),
        [f"repetition {r.rep + 1}: {x}" for r in reps for x in r.lost],
        [x for r in reps for x in r.errors], tuple(reps),
        _nowhere(reps, plain), _nowhere(reps, units.fenced))


def _nowhere(reps: Sequence[Rep], units: frozenset[str]) -> float:
    return max((v for r in reps for u, v in r.figures.nowhere.items() if u in units),
               default=0.0)


def _seconds(values: list[float | None]) -> str:
    done = [v for v in values if v is not None]
    text = (f"median {statistics.median(done):.1f} s, max {max(done):.1f} s" if done else "-")
    missing = len(values) - len(done)
    return text + (f"; **not converged in {missing} of {len(values)}**" if missing else "")


def _aim0(n: int, what: str = "") -> str:
    return f"{n}{what}" if n == 0 else f"**{n}**{what}"


def row(s: Summary, fenced: bool) -> str:
    sc = next(x for x in SCENARIOS if x.key == s.key)
    found = len(s.unexpected)
    unexpected = (_aim0(found) if not sc.control else
                  f"{found} (must be {sc.control * s.reps})" if found == sc.control * s.reps
                  else f"**{found}** (must be {sc.control * s.reps})")
    cells = [f"{sc.group}. {sc.label}" if sc.group else sc.label, str(s.reps), unexpected,
             str(s.moved) if sc.group == 4 or s.moved else "0",
             _seconds(s.converged),
             _overlap_cell(s.overlap), f"{s.nowhere:.1f} s"]
    if fenced:
        cells += [_overlap_cell(s.overlap_fenced), f"{s.nowhere_fenced:.1f} s",
                  str(len(s.fenced_stops))]
    cells += [_aim0(len(s.lost)), str(len(s.errors))]
    return "| " + " | ".join(cells) + " |"


COLUMNS = ("scenario", "repetitions", "unexpected stops/restarts (aim 0)",
           "moved off the faulty host", "converged after the fault's end",
           "overlap: most in one repetition, all units", "longest a unit ran on no host")
FENCED_COLUMNS = ("overlap, fenced units", "longest a fenced unit ran on no host",
                  "fenced units stopped")
LAST_COLUMNS = ("desired state lost (aim 0)", "fleetd ERROR/Traceback lines")


def header(fenced: bool) -> list[str]:
    cols = [*COLUMNS, *(FENCED_COLUMNS if fenced else ()), *LAST_COLUMNS]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def render(reps: Sequence[Rep], units: UnitSet, ttl: int, quick: bool,
           notes: Sequence[str]) -> str:
    fenced = bool(units.fenced)
    keys = [sc.key for sc in SCENARIOS if any(r.scenario == sc.key for r in reps)]
    sums = [summarize(k, [r for r in reps if r.scenario == k], units) for k in keys]
    kinds = (f"{len(units.files) - len(units.fenced)} units (7 plain, 2 `MachineOf` pairs, "
             "1 `Global=true`)" + (f" and {len(units.fenced)} `StopWhenDisconnected=true` "
                                   "units" if fenced else ""))
    lines = [
        ("**Quick run** (`--quick`: one repetition of a small subset, for CI; not the "
         "full suite).\n" if quick else ""),
        f"Lab: 3 etcd members, 3 hosts (real fleetd, real systemd), fleetd agent_ttl "
        f"{ttl} s. Units: {kinds}, all `sleep infinity`, started with `fleetctl start` "
        "before the first fault; scenario 5 starts 5 more. Each repetition starts once every "
        "host runs exactly what the engine placed on it.",
        "",
        *header(fenced),
        *(row(s, fenced) for s in sums),
        "",
        "How each figure runs (all from systemd on the hosts, sampled every "
        f"{EVERY:g} s per host with `systemctl show -p Id,ActiveState,InvocationID`; "
        f"a host silent for over {GAP:g} s is unknown there, never counted as stopped):",
        "",
        "- fault: " + "; ".join(f"{sc.key}: {sc.fault}" for sc in SCENARIOS
                                if sc.key in keys) + ".",
        "- unexpected stops/restarts: from the fault's start to the end of the "
        "observation, a unit seen active with one InvocationID and later not active or "
        "with another, on the same host, unless the scenario had to move it (the unit "
        "ended up placed elsewhere, off the host cut off or paused longer than agent_ttl: "
        "those are 'moved')" + ("; units without fencing only." if fenced else "."),
        *(["- fenced units stopped: stops and restarts of the `StopWhenDisconnected=true` "
           "units on any host, moved or not: fencing at work, the price of at most one "
           "copy; their overlap and time on no host have their own columns."]
          if fenced else []),
        "- converged: from the fault's end to the first sample after which every host, "
        "to the end of the observation, ran exactly the units the engine placed on it "
        "(schedule/ read at the end, once that had held for 2 s).",
        "- overlap: seconds a non-global unit was active on two hosts at once, summed over "
        "the units (and the longest of one unit), the most of any repetition; certain = "
        "between samples both showing it active; possible = each stretch widened to the "
        f"samples around it, at most {GAP:g} s each way (a silent host's units are not "
        "counted beyond that).",
        "- longest a unit ran on no host: the longest stretch, in any repetition, during "
        "which a unit (not global) that ran when the fault began was seen active on no "
        "host (each host's stretches widened as for 'possible': a lower bound; a unit "
        "on a paused host counts as running on none).",
        "- desired state lost: each unit's desired state and contents hash in etcd before "
        "the fault vs. after it settled (units the bench started must be launched).",
        "- fleetd errors: ERROR and Traceback lines in fleet.service's journal on each "
        "host from the fault's start to the end of the observation.",
        "",
        *details(sums),
        *cadence(reps),
        *(f"- {n}" for n in notes),
    ]
    return "\n".join(lines).lstrip("\n")


def details(sums: Sequence[Summary]) -> list[str]:
    out: list[str] = []
    for s in sums:
        control = next(x.control for x in SCENARIOS if x.key == s.key)
        for r, e in s.unexpected[:5]:
            out.append(f"- {s.key} repetition {r.rep + 1}: {e.describe(r.start)} "
                       + ("(the control's own restart)" if control else "(unexpected)"))
        for x in s.lost[:5]:
            out.append(f"- {s.key}: desired state lost, {x}")
        silent = [(h, v) for r in s.runs for h, v in r.figures.unknown.items() if v > 0]
        if silent:
            h, v = max(silent, key=lambda hv: hv[1])
            out.append(f"- {s.key}: longest silence of a host {v:.1f} s ({h}), unknown there")
        kinds: dict[str, set[str]] = {}
        for x in s.errors:
            host, _, line = x.partition(": ")
            kinds.setdefault(line[:150], set()).add(host)
        for line, hosts in list(kinds.items())[:4]:
            times = sum(x.partition(": ")[2][:150] == line for x in s.errors)
            out.append(f"- {s.key}: fleetd logged `{line}` x {times} "
                       f"({', '.join(sorted(hosts))})")
    return out


def cadence(reps: Sequence[Rep]) -> list[str]:
    per = [c for r in reps for c in r.figures.cadence.values() if c[0] > 1]
    if not per:
        return ["- Observer: **no answers from the hosts**."]
    return [f"- Observer: {sum(n for n, _ in per)} answers from the hosts in all; median "
            f"{statistics.median(g for _, g in per):.2f} s between two answers of one host."]


def prepare_doc(doc: Path) -> None:
    """docs/reliability.md gets the default's explanation once (before any other section,
    the fencing one included); the bench only rewrites its own section."""
    if not doc.exists():
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(INTRO)
        return
    text = doc.read_text()
    if DEFAULT.splitlines()[0] not in text:
        head, sep, rest = text.partition(TITLE)
        doc.write_text(f"{head}{TITLE}\n{DEFAULT}\n{rest.lstrip()}" if sep
                       else f"{TITLE}\n{DEFAULT}\n{text}")
