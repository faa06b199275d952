"""fleetctl's list commands against a real etcd and an in-process API server.

No lab: one local etcd member holds the rows (unit states and machines written
straight into the registry, on one long lease), the Fleet API is served from a
thread of this process on a unix socket, and every ``fleetctl`` run is a new
process, as a user starts it. Used by bench/ctl_bench.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetpy.model.types import Machine, UnitState
from fleetpy.registry.etcd import EtcdRegistry

LEASE_TTL = 3600


@dataclass(frozen=True)
class Run:
    """One fleetctl process: wall time, CPU time (user + system), peak RSS, rows."""

    wall: float
    cpu: float
    maxrss_mib: float
    rows: int


def machine_id(i: int) -> str:
    return f"{i:08x}" + "c0ffee00" * 3


def make_machines(count: int) -> list[Machine]:
    return [Machine(machine_id(i), f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    {"rack": f"r{i % 20}", "hollow": "true"}) for i in range(count)]


def make_states(count: int, machines: Sequence[Machine]) -> list[UnitState]:
    return [UnitState(f"unit-{i:05}.service", machines[i % len(machines)].id, "loaded",
                      "active", "running", f"{i:040x}") for i in range(count)]


async def fill(endpoint: str, prefix: str, machines: int, states: int) -> None:
    """Write ``machines`` machines and ``states`` unit states under ``prefix``."""
    registry = EtcdRegistry(endpoint, prefix)
    try:
        lease = await registry.grant_lease(LEASE_TTL)
        found = make_machines(machines)
        sem = asyncio.Semaphore(16)

        async def register(m: Machine) -> None:
            async with sem:
                await registry.register_machine(m, lease)

        await asyncio.gather(*(register(m) for m in found))
        await registry.put_unit_states(make_states(states, found), lease)
    finally:
        await registry.close()


class ApiThread:
    """The Fleet API on ``socket``, served by a registry on ``prefix``, in a thread."""

    def __init__(self, endpoint: str, prefix: str, socket: Path) -> None:
        self.endpoint, self.prefix, self.socket = endpoint, prefix, socket
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: Any = None
        self._registry: EtcdRegistry | None = None

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(60)

    def start(self) -> None:
        from fleetpy.api.server import start_api_server

        self._thread.start()

        async def up() -> None:
            self._registry = EtcdRegistry(self.endpoint, self.prefix)
            self._server = await start_api_server(self._registry, [f"unix://{self.socket}"])

        self._run(up())

    def stop(self) -> None:
        async def down() -> None:
            await self._server.stop(None)
            assert self._registry is not None
            await self._registry.close()

        self._run(down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def server_peak_mib(command: Sequence[str], env: dict[str, str]) -> float:
    """Peak of the Python memory this process (the API server) allocated while
    ``command`` ran (tracemalloc: objects made meanwhile, not what was there before)."""
    import tracemalloc

    tracemalloc.start()
    try:
        subprocess.run(list(command), env=env, check=True, capture_output=True)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


UNARY = ("import asyncio, sys\nfrom fleetpy.api.client import ApiDriver\n"
         "async def main():\n    c = ApiDriver(sys.argv[1])\n"
         "    print(len(await getattr(c, sys.argv[2])()))\n    await c.close()\n"
         "asyncio.run(main())\n")


def unary_command(api: str, method: str) -> list[str]:
    """A client asking the unary way (ListUnitStates/ListMachines: one message), as
    fleetctl did before the Stream* listings."""
    return [sys.executable, "-c", UNARY, api, method]


@contextmanager
def serving(endpoint: str, prefix: str, socket: Path) -> Iterator[ApiThread]:
    api = ApiThread(endpoint, prefix, socket)
    api.start()
    try:
        yield api
    finally:
        api.stop()


MEASURE = Path(__file__).with_name("spawn_measure.py")


def run_fleetctl(fleetctl: str, args: Sequence[str], env: dict[str, str],
                 cwd: Path | None = None) -> Run:
    """One cold fleetctl process, measured by a small process of its own (its peak RSS
    is then fleetctl's, not this process's); it must succeed."""
    with tempfile.TemporaryDirectory(prefix="ctl-run-") as tmp:
        out, err = Path(tmp, "out"), Path(tmp, "err")
        done = subprocess.run(
            [sys.executable, "-I", "-S", str(MEASURE), str(out), str(err), "--", fleetctl,
             *args], env=env, capture_output=True, text=True, check=True, cwd=cwd)
        got = json.loads(done.stdout)
        if got["code"]:
            raise RuntimeError(f"fleetctl {' '.join(args)} exited {got['code']}: "
                               f"{err.read_text()[-500:]}")
        rows = out.read_bytes().count(b"\n")
    return Run(got["wall"], got["cpu"], got["maxrss_kib"] / 1024, rows)


def summary(runs: Sequence[Run]) -> str:
    walls = [r.wall for r in runs]
    return (f"median {statistics.median(walls) * 1000:.0f} ms, best {min(walls) * 1000:.0f} ms "
            f"(CPU median {statistics.median(r.cpu for r in runs) * 1000:.0f} ms), "
            f"peak RSS {max(r.maxrss_mib for r in runs):.1f} MiB")
