"""What the fault bench reads: systemd on every host (the observer), fleetd's journal, etcd.

``Observer`` runs one long-lived loop per host, inside the host's namespaces
(``Lab.command``: nsenter), that prints ``systemctl show -p
Id,ActiveState,InvocationID`` of every watched unit every ``EVERY`` seconds,
stamped with the host's wall clock when systemd's answer was complete
(``$EPOCHREALTIME``: the hosts share this machine's clock). The loop is not in
the host's cgroup, so a paused host's systemd simply does not answer: no
sample, and the analysis counts that stretch as unknown. A partitioned host
still answers (the loop's output is a pipe, not the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from bench.faults_analysis import Sample
from fleetpy.lab import Lab
from fleetpy.model.types import TargetState
from fleetpy.registry.etcd import EtcdRegistry

T = TypeVar("T")
EVERY = 0.3  # seconds between two answers of one host
LOOP = r"""
units="$*"
while :; do
  out=$(systemctl show -p Id,ActiveState,InvocationID -- $units 2>/dev/null) &&
    printf '@ %s\n%s\n.\n' "$EPOCHREALTIME" "$out"
  sleep EVERY
done
""".replace("EVERY", str(EVERY))


def parse(host: str, lines: Sequence[str]) -> Sample | None:
    """One answer (``@ TIME``, ``key=value`` blocks split by blank lines, ``.``) -> Sample."""
    if not lines or not lines[0].startswith("@ "):
        return None
    try:
        t = float(lines[0][2:])
    except ValueError:
        return None
    units: dict[str, tuple[str, str]] = {}
    block: dict[str, str] = {}
    for line in [*lines[1:], ""]:
        if not line.strip():
            if "Id" in block:
                units[block["Id"]] = (block.get("ActiveState", ""), block.get("InvocationID", ""))
            block = {}
            continue
        key, _, value = line.partition("=")
        block[key] = value.strip()
    return Sample(host, t, units) if units else None


class Observer:
    """Samples systemd on every host of ``lab`` for ``units`` until ``stop``."""

    def __init__(self, lab: Lab, units: Sequence[str]) -> None:
        self.lab = lab
        self.units = list(units)
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for host in self.lab.hosts:
            self.watch(host.name)

    def watch(self, host: str) -> None:
        """(Re)start the loop of one host (after the host was started again, say)."""
        old = self._procs.pop(host, None)
        if old is not None:
            _end(old)
        argv, env = self.lab.command(host, ["bash", "-c", LOOP, "observer", *self.units])
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self._procs[host] = proc
        thread = threading.Thread(target=self._read, args=(host, proc), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _read(self, host: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        lines: list[str] = []
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if line == ".":
                sample = parse(host, lines)
                if sample is not None:
                    with self._lock:
                        self._samples.append(sample)
                lines = []
            else:
                lines.append(line)

    def samples(self, since: float = 0.0) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if s.t >= since]

    def latest(self) -> dict[str, Sample]:
        """The newest sample of each host."""
        with self._lock:
            out: dict[str, Sample] = {}
            for s in self._samples:
                if s.host not in out or s.t > out[s.host].t:
                    out[s.host] = s
            return out

    def forget(self, before: float) -> None:
        """Drop samples older than ``before`` (a long bench keeps memory small)."""
        with self._lock:
            self._samples = [s for s in self._samples if s.t >= before]

    def stop(self) -> None:
        for proc in self._procs.values():
            _end(proc)
        self._procs.clear()
        for thread in self._threads:
            thread.join(timeout=5)


def _end(proc: subprocess.Popen[str]) -> None:
    """Kill the loop's process group (nsenter and the shell it forked in the host)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


# fleetd's journal -----------------------------------------------------------------


def fleetd_errors(lab: Lab, since: float) -> list[str]:
    """fleet.service's ERROR lines and tracebacks (by their last line) on every host since
    ``since`` (epoch s), each as ``HOST: line``."""
    found: list[str] = []
    for host in lab.hosts:
        if host.pid is None:
            continue
        out = lab.exec(host.name, ["journalctl", "-u", "fleet.service", "--since",
                                   f"@{since:.3f}", "-o", "cat", "--no-pager", "-q"],
                       timeout=60).stdout
        found += [f"{host.name}: {line}" for line in error_lines(out.splitlines())]
    return found


def _task(text: str) -> str:
    """asyncio's next line (``task: <Task pending name='Task-96' coro=<f() ...>``): which
    coroutine, and its exception, without the ids that differ every time."""
    coro = re.search(r"coro=<([^\s(>]+)", text)
    exc = re.search(r"exception=([\w.]+)", text)
    if coro is None:
        return f" ({re.sub(r'0x[0-9a-f]+|Task-[0-9]+', '...', text)[:120]})"
    return f" (in {coro[1]}" + (f", {exc[1]}" if exc else "") + ")"


def error_lines(lines: Sequence[str]) -> list[str]:
    """ERROR lines, and each traceback as ``Traceback: <its exception line>``."""
    out: list[str] = []
    for i, line in enumerate(lines):
        if "ERROR" in line:
            more = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out.append(line.strip() + (_task(more) if more.startswith(("task:", "future:"))
                                       else ""))
        elif line.startswith("Traceback"):
            last = next((x for x in lines[i + 1:] if x and not x[0].isspace()), "?")
            out.append(f"Traceback: {last.strip()}")
    return out


# etcd: what the engine and the user asked for ---------------------------------------


class Registry:
    """Short reads of the lab's etcd (each with its own client; None when etcd fails)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.endpoints = ",".join(lab.etcd_endpoints)

    def _run(self, read: Callable[[EtcdRegistry], Awaitable[T]]) -> T:
        async def go() -> T:
            registry = EtcdRegistry(self.endpoints, "/fleetpy/", request_timeout=3.0)
            try:
                return await read(registry)
            finally:
                await registry.close()

        return asyncio.run(go())

    def desired(self) -> dict[str, tuple[str, str]]:
        """unit -> (desired state, contents hash), as submitted."""

        async def read(r: EtcdRegistry) -> dict[str, tuple[str, str]]:
            return {u.unit.name: (str(u.desired), u.unit.hash) for u in await r.list_units()}

        return self._run(read)

    def placement(self) -> dict[str, frozenset[str]]:
        """unit -> hosts the engine placed it on, to run (schedule/ with target launched)."""
        names = {h.machine_id: h.name for h in self.lab.hosts}

        async def read(r: EtcdRegistry) -> dict[str, frozenset[str]]:
            out: dict[str, set[str]] = {}
            for s in await r.list_schedule():
                if s.target == TargetState.LAUNCHED:
                    out.setdefault(s.name, set()).add(names.get(s.machine_id, s.machine_id))
            return {u: frozenset(h) for u, h in out.items()}

        return self._run(read)

    def leader(self) -> str | None:
        """The host whose fleetd leads the engine."""
        names = {h.machine_id: h.name for h in self.lab.hosts}

        async def read(r: EtcdRegistry) -> str | None:
            leader = await r.get_leader()
            return None if leader is None else names.get(leader, leader)

        return self._run(read)


def poll(every: float, timeout: float) -> Iterator[float]:
    """Yield the time left, every ``every`` seconds, until ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        yield left
        time.sleep(every)
