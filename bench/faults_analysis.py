"""The fault bench's figures, from what systemd on each host said (pure: no I/O, no clock).

The observer (bench/faults_observe.py) asks systemd on every host, every few
tenths of a second, for each fleet unit's ``ActiveState`` and
``InvocationID``; each answer is a ``Sample``. A host that did not answer for
more than ``GAP`` seconds (paused, stopped) is *unknown* over that stretch:
nothing is assumed about it, neither running nor stopped.

From the samples of one repetition of a scenario, ``analyze`` gives:

- stops and restarts on a host: a unit that was ``active`` with invocation A
  is later seen not active, or active with another invocation B (a restart
  between two samples changes the InvocationID, so it is never missed). One
  is *expected* only when the scenario may move units off that host and the
  unit (not a global one) ends up placed elsewhere; every other is
  *unexpected* (nothing asked for it).
- convergence: from the fault's end to the first sample after which every
  host, until the end of the observation, runs exactly the units the engine
  placed on it (and no host was unknown).
- overlap: seconds a non-global unit was active on two or more hosts at
  once. *Certain*: only between samples that both showed it active with one
  invocation (a lower bound); *possible*: each such stretch widened to the
  samples around it (at most ``GAP`` each way), an upper bound at the
  sampling resolution.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GAP = 1.5  # seconds without an answer from a host: its state there is unknown
RUNNING = "active"


@dataclass(frozen=True)
class Sample:
    """One answer of systemd on ``host``, complete at ``t`` (wall clock, seconds)."""

    host: str
    t: float
    units: Mapping[str, tuple[str, str]]  # unit -> (ActiveState, InvocationID)

    def running(self, unit: str) -> str | None:
        """The unit's invocation when it is active here, else None."""
        state, invocation = self.units.get(unit, ("inactive", ""))
        return (invocation or "?") if state == RUNNING else None


@dataclass(frozen=True)
class Event:
    """A unit that stopped (or restarted, new InvocationID) on a host."""

    unit: str
    host: str
    t: float
    kind: str  # "stopped" or "restarted"
    expected: bool

    def describe(self, t0: float) -> str:
        return f"{self.unit} {self.kind} on {self.host} at +{self.t - t0:.1f} s"


@dataclass(frozen=True)
class Figures:
    events: tuple[Event, ...]
    converged: float | None  # seconds from the fault's end; None: not by the end
    overlap: Mapping[str, float]  # unit -> certain seconds on >= 2 hosts
    overlap_possible: Mapping[str, float]  # unit -> possible seconds on >= 2 hosts
    unknown: Mapping[str, float]  # host -> seconds it did not answer
    cadence: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    # host -> (answers in the window, median seconds between two)
    nowhere: Mapping[str, float] = field(default_factory=dict)
    # unit (running when the fault began) -> longest stretch it ran on no host, at least

    @property
    def unexpected(self) -> list[Event]:
        return [e for e in self.events if not e.expected]

    @property
    def moved(self) -> list[Event]:
        return [e for e in self.events if e.expected]


@dataclass(frozen=True)
class Window:
    """One repetition: what to judge the samples against."""

    start: float  # the fault began (samples from the last one before it count)
    fault_end: float  # the fault was over (host healed, fleetd back, etcd started)
    end: float  # the observation ended
    target: Mapping[str, frozenset[str]]  # unit -> hosts the engine placed it on at the end
    global_units: frozenset[str] = frozenset()
    may_move_from: frozenset[str] = frozenset()  # hosts the scenario may move units off
    units: frozenset[str] = field(default_factory=frozenset)  # every unit watched


def by_host(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    hosts: dict[str, list[Sample]] = {}
    for s in samples:
        hosts.setdefault(s.host, []).append(s)
    for seq in hosts.values():
        seq.sort(key=lambda s: s.t)
    return hosts


def _in_window(seq: Sequence[Sample], w: Window) -> list[Sample]:
    """The samples of one host from the last one before ``start`` up to ``end``."""
    before = [s for s in seq if s.t <= w.start]
    return before[-1:] + [s for s in seq if w.start < s.t <= w.end]


def events(seq: Sequence[Sample], w: Window) -> list[Event]:
    """Stops and restarts of ``w.units`` on one host (its samples, in time order)."""
    found: list[Event] = []
    for unit in sorted(w.units):
        running: str | None = None  # the invocation last seen active
        for s in seq:
            now = s.running(unit)
            if running is not None and now != running:
                kind = "stopped" if now is None else "restarted"
                moved = (s.host in w.may_move_from and unit not in w.global_units
                         and s.host not in w.target.get(unit, frozenset()))
                found.append(Event(unit, s.host, s.t, kind, moved))
            running = now
    return found


def matches(s: Sample, target: Mapping[str, frozenset[str]], units: Iterable[str]) -> bool:
    """Whether the host of ``s`` runs exactly the ``units`` placed on it, no others."""
    return all((s.running(u) is not None) == (s.host in target.get(u, frozenset()))
               for u in units)


def _matches(s: Sample, w: Window) -> bool:
    return matches(s, w.target, w.units)


def converged_at(seq: Sequence[Sample], w: Window) -> float | None:
    """When this host last came to run exactly its placed units (None: it does not)."""
    before = [s for s in seq if s.t <= w.fault_end]
    prev = before[-1].t if before else None
    fine = bool(before) and w.fault_end - before[-1].t <= GAP and _matches(before[-1], w)
    at: float | None = w.fault_end if fine else None
    seen = False
    for s in seq:
        if not w.fault_end < s.t <= w.end:
            continue
        seen = True
        unknown_before = prev is None or s.t - prev > GAP
        if not _matches(s, w):
            at = None
        elif at is None or unknown_before:
            at = s.t
        prev = s.t
    if not seen or (prev is not None and w.end - prev > GAP):
        return None  # no answer since the fault ended, or none at the end
    return at


def _runs(seq: Sequence[Sample], unit: str, w: Window,
          widen: bool) -> list[tuple[float, float]]:
    """Stretches during which ``unit`` was active with one invocation on this host."""
    out: list[tuple[float, float]] = []
    first = last = -1
    for i, s in enumerate(seq):
        now = s.running(unit)
        gap = i > 0 and s.t - seq[i - 1].t > GAP
        same = (first >= 0 and not gap and now is not None
                and now == seq[last].running(unit))
        if same:
            last = i
            continue
        if first >= 0:
            out.append(_stretch(seq, first, last, widen))
        first = last = i if now is not None else -1
    if first >= 0:
        out.append(_stretch(seq, first, last, widen))
    return [(max(a, w.start), min(b, w.end)) for a, b in out if min(b, w.end) > max(a, w.start)]


def _stretch(seq: Sequence[Sample], first: int, last: int, widen: bool) -> tuple[float, float]:
    a, b = seq[first].t, seq[last].t
    if widen:
        if first > 0:
            a = max(seq[first - 1].t, a - GAP)
        if last + 1 < len(seq):
            b = min(seq[last + 1].t, b + GAP)
    return a, b


def merged(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of one host's intervals, as disjoint intervals."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def doubled(intervals: Sequence[Sequence[tuple[float, float]]]) -> float:
    """Seconds during which at least two hosts (one interval list each) overlap."""
    points: list[tuple[float, int]] = []
    for host in intervals:
        for a, b in merged(host):
            points += [(a, 1), (b, -1)]
    points.sort(key=lambda p: (p[0], p[1]))
    total, depth, since = 0.0, 0, 0.0
    for t, step in points:
        if depth >= 2:
            total += t - since
        depth += step
        since = t
    return total


def longest_nowhere(intervals: Sequence[Sequence[tuple[float, float]]], start: float,
                    last: float) -> float | None:
    """The longest stretch no host covered, for a unit running when the window began
    (None: it was not), up to ``last`` (every host answered until then). With each
    host's runs widened to the samples around them, a restart between two samples is no
    stretch: this is a lower bound."""
    runs = merged([iv for host in intervals for iv in host])
    if not runs or runs[0][0] > start:
        return None
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(runs)] + [last - runs[-1][1]]
    return max(0.0, *gaps)


def unknown_seconds(seq: Sequence[Sample], w: Window) -> float:
    times = [w.start] + [s.t for s in seq if w.start < s.t <= w.end] + [w.end]
    return sum(b - a for a, b in itertools.pairwise(times) if b - a > GAP)


def analyze(samples: Iterable[Sample], w: Window) -> Figures:
    hosts = {h: _in_window(seq, w) for h, seq in by_host(samples).items()}
    found = sorted((e for seq in hosts.values() for e in events(seq, w)), key=lambda e: e.t)
    ends = [converged_at(seq, w) for seq in hosts.values()]
    done = (None if not ends or None in ends
            else max(0.0, max(e for e in ends if e is not None) - w.fault_end))
    overlap: dict[str, float] = {}
    possible: dict[str, float] = {}
    for unit in sorted(w.units - w.global_units):
        overlap[unit] = doubled([_runs(seq, unit, w, False) for seq in hosts.values()])
        possible[unit] = doubled([_runs(seq, unit, w, True) for seq in hosts.values()])
    unknown = {h: unknown_seconds(seq, w) for h, seq in hosts.items()}
    cadence = {h: (len(seq), statistics.median(b.t - a.t for a, b in itertools.pairwise(seq))
                   if len(seq) > 1 else 0.0) for h, seq in hosts.items()}
    last = min(w.end, min((seq[-1].t for seq in hosts.values() if seq), default=w.start))
    gone = {u: longest_nowhere([_runs(seq, u, w, True) for seq in hosts.values()], w.start,
                               last) for u in sorted(w.units - w.global_units)}
    return Figures(tuple(found), done, overlap, possible, unknown, cadence,
                   {u: v for u, v in gone.items() if v is not None})


def lost_desired(before: Mapping[str, tuple[str, str]], after: Mapping[str, tuple[str, str]],
                 added: Iterable[str] = ()) -> list[str]:
    """Units whose desired state or contents (``(desired, hash)``) changed or vanished.

    ``added``: units the bench itself started meanwhile (they must be there, launched).
    """
    lost = [f"{u}: {d}/{h[:7]} -> " + ("gone" if u not in after else
                                         f"{after[u][0]}/{after[u][1][:7]}")
            for u, (d, h) in sorted(before.items()) if after.get(u) != (d, h)]
    lost += [f"{u}: started by the bench, " + ("gone" if u not in after else after[u][0])
             for u in sorted(added) if after.get(u, ("", ""))[0] != "launched"]
    return lost
