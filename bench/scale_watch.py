"""What the scale bench reads (the registry as a watcher sees it, etcd's /metrics, /proc)
and how its rows are written.

``Follower`` watches states/ and schedule/ and records, per unit, when each
machine first reported it active, and the most machines that ever reported one
unit active (or had it scheduled) at the same time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from fleetpy.lab import Lab
from fleetpy.registry.base import WatchUpdate
from fleetpy.registry.etcd import EtcdRegistry


def _items(update: WatchUpdate) -> list[tuple[str, bytes, str, int]]:
    if update.reset:
        return [(k, v, "put", update.revision) for k, v in update.items.items()]
    return [(e.key, e.value, str(e.kind), e.revision) for e in update.events]


@dataclass
class Follower:
    """Follows states/ (active reports) and schedule/ (placements)."""

    registry: EtcdRegistry
    active: dict[str, dict[str, float]] = field(default_factory=dict)  # unit -> machine -> t
    first_active: dict[str, float] = field(default_factory=dict)
    reports: dict[str, set[str]] = field(default_factory=dict)  # machine -> units it reports
    placed: dict[str, set[str]] = field(default_factory=dict)  # unit -> machines
    # counted after each whole revision (a transaction's puts and deletes together)
    max_active: int = 0  # most machines reporting one unit active at once (since reset)
    max_active_unit: str = ""
    max_placed: int = 0  # most schedule/ entries of one unit at once (since reset)
    max_placed_unit: str = ""
    last: float = 0.0  # when the last update arrived
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow("states/", self._state))
            group.create_task(self._follow("schedule/", self._schedule))

    async def _follow(self, prefix: str, apply: Callable[[str, str, bytes, str, float],
                                                          None]) -> None:
        async with aclosing(self.registry.watch(prefix)) as updates:
            async for update in updates:
                now = time.perf_counter()
                if update.reset:
                    self._clear(prefix)
                touched: set[str] = set()
                revision = None
                for key, value, kind, rev in _items(update):
                    if rev != revision:  # counted once a revision is whole (one txn)
                        self._count(prefix, touched)
                        touched, revision = set(), rev
                    parts = key.split("/")
                    if len(parts) == 3:
                        apply(parts[1], parts[2], value, kind, now)
                        touched.add(parts[2])
                self._count(prefix, touched)
                self.last = now
                self.changed.set()

    def _count(self, prefix: str, units: set[str]) -> None:
        """The most machines reporting / holding one of ``units``, after a whole revision."""
        for unit in units:
            if prefix == "states/":
                if len(on := self.active.get(unit, {})) > self.max_active:
                    self.max_active, self.max_active_unit = len(on), unit
            elif len(where := self.placed.get(unit, set())) > self.max_placed:
                self.max_placed, self.max_placed_unit = len(where), unit

    def _clear(self, prefix: str) -> None:
        if prefix == "states/":
            self.active.clear()
            self.reports.clear()
        else:
            self.placed.clear()

    def _state(self, machine: str, unit: str, value: bytes, kind: str, now: float) -> None:
        on = self.active.setdefault(unit, {})
        if kind == "delete":
            on.pop(machine, None)
            self.reports.get(machine, set()).discard(unit)
            return
        self.reports.setdefault(machine, set()).add(unit)
        try:
            is_active = json.loads(value).get("active") == "active"
        except ValueError:
            is_active = False
        if not is_active:
            on.pop(machine, None)
            return
        on.setdefault(machine, now)
        self.first_active.setdefault(unit, now)

    def _schedule(self, machine: str, unit: str, value: bytes, kind: str, now: float) -> None:
        on = self.placed.setdefault(unit, set())
        if kind == "delete":
            on.discard(machine)
            return
        on.add(machine)

    def reset_max(self) -> None:
        """Start counting double reports and placements afresh (both from what is now)."""
        self.max_active, self.max_placed = 0, 0
        self._count("states/", set(self.active))
        self._count("schedule/", set(self.placed))

    async def quiet(self, seconds: float, timeout: float) -> bool:
        """Wait until no states/ or schedule/ update came for ``seconds`` (False: timeout)."""
        deadline = time.perf_counter() + timeout
        while (idle := time.perf_counter() - self.last) < seconds:
            if time.perf_counter() > deadline:
                return False
            await asyncio.sleep(seconds - idle)
        return True

    def active_elsewhere(self, unit: str, gone: set[str]) -> float | None:
        """When a machine not in ``gone`` first reported ``unit`` active (None: none has)."""
        times = [t for m, t in self.active.get(unit, {}).items() if m not in gone]
        return min(times) if times else None

    async def until(self, check: Callable[[], bool], timeout: float) -> float | None:
        """The time of the update after which ``check()`` held; None after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return None
        return self.last


# etcd /metrics ----------------------------------------------------------------

METRIC = re.compile(r'^(grpc_server_msg_received_total|grpc_server_started_total)'
                    r'\{[^}]*grpc_method="(\w+)"[^}]*grpc_type="(\w+)"[^}]*\} (\S+)$')


def etcd_requests(lab: Lab) -> dict[str, float]:
    """Requests etcd received so far, by method, summed over the members.

    A unary call is one message received; a stream (Watch, LeaseKeepAlive)
    counts each message the client sent on it (``grpc_server_msg_received_total``),
    so keepalives and watch creations count one by one.
    """
    counts: dict[str, float] = {}
    for url in lab.etcd_endpoints:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if (m := METRIC.match(line)) and m[1] == "grpc_server_msg_received_total":
                    counts[m[2]] = counts.get(m[2], 0.0) + float(m[4])
    return counts


# /proc ----------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def fleetd_pid(ip: str) -> int | None:
    """The main fleetd process of the lab host with address ``ip`` (by its environment)."""
    mark = f"FLEET_PUBLIC_IP={ip}".encode()
    for entry in Path("/proc").iterdir():
        if (entry.name.isdigit() and b"bin/fleetd" in _read(entry / "cmdline")
                and mark in _read(entry / "environ").split(b"\0")):
            return int(entry.name)
    return None


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            status = _read(entry / "status").decode(errors="replace")
            if (m := re.search(r"PPid:\s+(\d+)", status)) and int(m[1]) == pid:
                out.append(int(entry.name))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of ``pids`` (all their threads), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = _read(Path(f"/proc/{pid}/stat")).decode()
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_mib(pid: int) -> float:
    status = _read(Path(f"/proc/{pid}/status")).decode(errors="replace")
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m[1]) / 1024 if m else 0.0


def other_labs(own: str) -> list[str]:
    """Labs other than ``own`` that are up on this machine (by their bridges)."""
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True,
                           check=False).stdout.split("\n")
    return [name for line in links if (name := line.split(" ")[0]).startswith("flb-")
            and name != f"flb-{own}"]


# the section's rows ---------------------------------------------------------------


@dataclass
class Row:
    label: str
    span: str  # from which event to which event
    result: str
    aim: str = ""
    met: bool | None = None

    def render(self) -> str:
        aim = self.aim
        if aim and self.met is not None:
            aim += ": met" if self.met else ": **missed**"
        return f"| {self.label} | {self.span} | {self.result} | {aim or '-'} |"


def secs(x: float) -> str:
    return f"{x:.2f} s"


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"
