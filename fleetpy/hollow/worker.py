"""One hollow worker process: machines FIRST..FIRST+COUNT-1, a few etcd connections.

::

    python -m fleetpy.hollow.worker --lab fltest --etcd http://172.17.9.1:4001 \\
        --first 0 --count 500 --state-dir /var/lib/fleetlab/fltest/hollow --control SOCK

Each machine is a real :class:`fleetpy.node.Node` without the engine: own
machine id, lease, registration (metadata ``hollow=true``,
``hostname=hollow-NNNN`` plus ``--metadata``), agent and presence. They share
:class:`EtcdClient` connections (one gRPC channel each), ``--per-connection`` machines
on each. Control requests, one JSON line
each on ``--control``:

- ``{"op": "status"}`` -> ``{"machines": N, "alive": A, "registered": R,
  "units": U, "active": X}``;
- ``{"op": "kill", "count": K}`` -> ``{"killed": [ids]}``: K machines die at
  once like a crash (tasks cancelled, keepalives stopped, no lease revoke:
  the cluster notices after agent_ttl).

SIGTERM: every machine leaves the cluster (leases revoked) and the worker exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetpy.concurrency import each
from fleetpy.hollow import CONTROL_LIMIT, machine_id, machine_ip, machine_name
from fleetpy.model.metadata import parse_assignments
from fleetpy.model.types import Machine
from fleetpy.node import Node
from fleetpy.registry.base import RegistryError
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.registry.etcd_client import EtcdClient
from fleetpy.systemd.hollow import HollowUnitManager

log = logging.getLogger("fleetpy.hollow")

BOOT_CONCURRENCY = 32
# Hollow machines per etcd connection (one gRPC channel). All 500 of a worker on one
# connection lagged: while 10,000 units started, their lease refreshes went unanswered
# for 10-20 s (none with 8 workers of 125 machines, nor from another process meanwhile);
# a real fleetd has a connection of its own.
MACHINES_PER_CONNECTION = 50
RETRY = 1.0


@dataclass
class Hollow:
    index: int
    node: Node
    manager: HollowUnitManager
    task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # machines share connections, MACHINES_PER_CONNECTION on each (see there)
        self.clients = [EtcdClient(args.etcd.split(","), request_timeout=args.request_timeout)
                        for _ in range(-(-args.count // args.per_connection))]
        self.machines: dict[int, Hollow] = {}
        extra = parse_assignments(args.metadata.split(",")) if args.metadata else {}
        self.metadata = {**extra, "hollow": "true"}

    def _make(self, index: int) -> Hollow:
        meta = {**self.metadata, "hostname": machine_name(index)}
        machine = Machine(id=machine_id(self.args.lab, index), public_ip=machine_ip(index),
                          metadata=meta)
        client = self.clients[(index - self.args.first) // self.args.per_connection]
        registry = EtcdRegistry(prefix=self.args.prefix, client=client)
        manager = HollowUnitManager(self.args.start_delay)
        node = Node(registry, manager, machine, state_dir=Path(self.args.state_dir) / machine.id,
                    agent_ttl=self.args.ttl, engine=False)
        return Hollow(index, node, manager)

    async def _boot(self, hollow: Hollow) -> None:
        await hollow.manager.start()
        while True:
            try:
                await hollow.node.start()
                break
            except RegistryError as exc:
                log.warning("%s: cannot register yet: %s", machine_name(hollow.index), exc)
                await asyncio.sleep(RETRY)
        hollow.task = asyncio.create_task(hollow.node.run(), name=machine_name(hollow.index))

    async def run(self) -> None:
        first, count = self.args.first, self.args.count
        self.machines = {i: self._make(i) for i in range(first, first + count)}
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await asyncio.start_unix_server(self._serve, path=self.args.control,
                                                 limit=CONTROL_LIMIT)
        lag = asyncio.create_task(_watch_lag(), name="hollow-lag")
        boot = each(self.machines.values(), self._boot, BOOT_CONCURRENCY)
        log.info("hollow machines %d..%d starting (ttl %ds, start delay %gs)", first,
                 first + count - 1, self.args.ttl, self.args.start_delay)
        try:
            await boot
            log.info("hollow machines %d..%d registered", first, first + count - 1)
            await stop.wait()
        finally:
            lag.cancel()
            server.close()
            await self._leave_all()
            for client in self.clients:
                await client.close()
        log.info("hollow machines %d..%d left the cluster", first, first + count - 1)

    async def _leave_all(self) -> None:
        live = [h for h in self.machines.values() if h.alive]
        for h in live:
            assert h.task is not None
            h.task.cancel()
        await asyncio.gather(*(h.task for h in live if h.task), return_exceptions=True)
        await asyncio.gather(*(h.node.leave() for h in live), return_exceptions=True)
        await asyncio.gather(*(h.node.registry.close() for h in live), return_exceptions=True)

    async def _kill(self, count: int) -> list[str]:
        """Crash ``count`` live machines (highest index first): no revoke, no goodbye."""
        victims = sorted((h for h in self.machines.values() if h.alive),
                         key=lambda h: -h.index)[:count]
        for h in victims:
            assert h.task is not None
            h.task.cancel()
        await asyncio.gather(*(h.task for h in victims if h.task), return_exceptions=True)
        for h in victims:
            await h.node.registry.close()  # keepalives stop; the lease expires after ttl
            await h.manager.close()
        log.info("killed %d hollow machines (leases left to expire)", len(victims))
        return [h.node.id for h in victims]

    def status(self) -> dict[str, Any]:
        alive = [h for h in self.machines.values() if h.alive]
        return {
            "machines": len(self.machines),
            "alive": len(alive),
            "registered": sum(1 for h in alive if h.node.registered),
            "units": sum(len(h.manager.files) for h in alive),
            "active": sum(1 for h in alive for s in h.manager.units.values()
                          if s.active_state == "active"),
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            if request.get("op") == "status":
                answer: dict[str, Any] = self.status()
            elif request.get("op") == "kill":
                answer = {"killed": await self._kill(int(request["count"]))}
            else:
                answer = {"error": f"unknown request {request!r}"}
        except (ValueError, KeyError, TypeError) as exc:
            answer = {"error": f"bad request: {exc}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def _watch_lag(tick: float = 0.5, said_every: float = 10.0) -> None:
    """Say when this process's event loop runs late (its machines' timers, keepalives
    and watches with it): the worst lag since it was last said, at most every said_every."""
    loop = asyncio.get_running_loop()
    worst, said = 0.0, loop.time()
    while True:
        due = loop.time() + tick
        await asyncio.sleep(tick)
        worst = max(worst, loop.time() - due)
        if worst > 1.0 and loop.time() - said >= said_every:
            log.warning("event loop ran up to %.1fs late in the last %.0fs", worst,
                        loop.time() - said)
            worst, said = 0.0, loop.time()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fleetpy.hollow.worker")
    p.add_argument("--lab", required=True)
    p.add_argument("--etcd", required=True, help="comma-separated etcd client URLs")
    p.add_argument("--prefix", default="/fleetpy/")
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ttl", type=int, default=30)
    p.add_argument("--request-timeout", type=float, default=1.0)
    p.add_argument("--per-connection", type=int, default=MACHINES_PER_CONNECTION,
                   help="hollow machines sharing one etcd connection")
    p.add_argument("--start-delay", type=float, default=0.0)
    p.add_argument("--metadata", default="")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every agent decision (default: warnings only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fleetpy.hollow").setLevel(logging.INFO)
    if args.verbose:
        logging.getLogger("fleetpy").setLevel(logging.INFO)
    asyncio.run(Worker(args).run())


if __name__ == "__main__":
    main()
