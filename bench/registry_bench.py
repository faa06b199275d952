"""Registry benchmark on a real etcd: idle cost per agent, batch writes, listings.

Run from the repository root: ``python -m bench.registry_bench [--idle-seconds 60]``.
Results go to the ``registry`` section of docs/benchmarks.md.

The idle cost is read from etcd itself (``grpc_server_started_total`` on its
/metrics page: every RPC etcd started), not from the client.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

from bench.report import write_section
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.model.unitfile import unit_hash
from fleetpy.registry import codec
from fleetpy.registry.etcd import EtcdRegistry
from tests.fixtures.etcd import EtcdProcess

AGENTS = 20
AGENT_TTL = 30
STATES = 1000


def states(machine_id: str, count: int) -> list[UnitState]:
    return [
        UnitState(f"u{i:04}.service", machine_id, "loaded", "active", "running", "h")
        for i in range(count)
    ]


async def timed(call: Callable[[], Awaitable[object]], repeat: int = 5) -> float:
    """Best of ``repeat`` runs, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def idle_agents(etcd: EtcdProcess, seconds: float) -> tuple[float, dict[str, float]]:
    """AGENTS idle agents (lease, machine, 50 states, schedule watch) for ``seconds``."""
    registries = [EtcdRegistry(etcd.endpoint, "/bench-idle/") for _ in range(AGENTS)]
    watches = []
    try:
        for i, registry in enumerate(registries):
            lease = await registry.grant_lease(AGENT_TTL)
            await registry.register_machine(Machine(f"m{i}", f"10.0.0.{i}"), lease)
            await registry.put_unit_states(states(f"m{i}", 50), lease)
            watch = registry.watch(codec.schedule_prefix(f"m{i}"))
            await anext(watch)  # listed, stream about to open
            watches.append(watch)
        pending = [asyncio.ensure_future(anext(w)) for w in watches]  # streams open
        await asyncio.sleep(2)
        before = etcd.grpc_started()
        await asyncio.sleep(seconds)  # the idle period being measured
        after = etcd.grpc_started()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for watch in watches:
            await watch.aclose()
        for registry in registries:
            await registry.close()
    spent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    per_minute = sum(spent.values()) / AGENTS / (seconds / 60)
    return per_minute, spent


async def writes_and_lists(etcd: EtcdProcess) -> list[tuple[str, float]]:
    registry = EtcdRegistry(etcd.endpoint, "/bench-write/")
    rows: list[tuple[str, float]] = []
    try:
        lease = await registry.grant_lease(60)
        batch = states("m1", STATES)
        rows.append(
            (
                f"put_unit_states, {STATES} states, batched",
                await timed(lambda: registry.put_unit_states(batch, lease)),
            )
        )

        async def one_by_one() -> None:
            for s in batch:
                await registry.put_unit_states([s], lease)

        rows.append(
            (f"put_unit_states, {STATES} states, one call each (1 run)", await timed(one_by_one, 1))
        )
        rows.append(
            (
                f"list_unit_states, {STATES} states",
                await timed(lambda: registry.list_unit_states("m1")),
            )
        )
        token = await registry.campaign("m1", lease)
        assert token is not None
        entries = [
            ScheduledUnit(f"u{i:04}.service", f"m{i % 10}", TargetState.LAUNCHED, "h", "x" * 300)
            for i in range(STATES)
        ]
        rows.append(
            (
                f"apply_schedule, {STATES} entries (leader-guarded)",
                await timed(lambda: registry.apply_schedule(token, entries, [])),
            )
        )
        rows.append(
            (f"list_schedule, {STATES} entries", await timed(lambda: registry.list_schedule()))
        )
    finally:
        await registry.close()
    return rows


async def watch_resume(etcd: EtcdProcess) -> float:
    """Seconds from etcd back up to the first post-restart event delivered."""
    agent = EtcdRegistry(etcd.endpoint, "/bench-resume/")
    writer = EtcdRegistry(etcd.endpoint, "/bench-resume/")
    try:
        async with aclosing(agent.watch("units/")) as watch:
            await anext(watch)
            nxt = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(etcd.restart)
            started = time.perf_counter()
            while True:
                try:
                    await writer.destroy_unit("x.service")
                    break
                except Exception:
                    await asyncio.sleep(0.02)
            await writer.put_unit(UnitFile("x.service", "", unit_hash("")), TargetState.LAUNCHED)
            await asyncio.wait_for(nxt, 30)
            return time.perf_counter() - started
    finally:
        await agent.close()
        await writer.close()


async def main(idle_seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdProcess(Path(tmp) / "data", name="bench")
        etcd.start()
        try:
            per_minute, spent = await idle_agents(etcd, idle_seconds)
            rows = await writes_and_lists(etcd)
            resume = await watch_resume(etcd)
        finally:
            etcd.stop()
    lines = [
        f"Idle agents: {AGENTS} agents (lease ttl {AGENT_TTL}s, machine, 50 unit states, "
        f"watch on their schedule), {idle_seconds:.0f}s: "
        f"**{per_minute:.1f} etcd requests per agent per minute** "
        f"(etcd's grpc_server_started_total, by method: "
        f"{', '.join(f'{k} {v:.0f}' for k, v in sorted(spent.items()))}).",
        "",
        "| operation (etcd 3.4, one local member) | best of 5 |",
        "| --- | --- |",
        *[f"| {name} | {ms:.1f} ms |" for name, ms in rows],
        "",
        f"Watch resume: after an etcd restart, the first new event reached the watcher "
        f"{resume:.2f}s after etcd was back up (the watch retries with backoff from 0.2s, "
        "doubling, capped at 3s, +-20% jitter; etcd was down about 1s).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    body = asyncio.run(main(args.idle_seconds))
    print(body)
    write_section("registry", "python -m bench.registry_bench", body)
