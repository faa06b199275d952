"""The scale bench's failure parts: hollow machines crash, the engine's leader is killed.

Parts 5 and 6 of bench/scale_bench.py (see its docstring); they report through its Bench.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from bench.scale_watch import secs

if TYPE_CHECKING:
    from bench.scale_bench import Bench


async def leader_host(b: Bench) -> tuple[str, str]:
    """(machine id, ip) of the real host whose fleetd leads the engine."""
    leader = await b.follow.registry.get_leader()
    for host in b.lab.hosts:
        if host.machine_id == leader:
            return host.machine_id, host.ip
    raise RuntimeError(f"the engine leader {leader} is not a real host")


async def crash(b: Bench) -> None:
    """Part 5: hollow machines die at once."""
    s, f = b.size, b.follow
    f.reset_max()
    t0 = time.perf_counter()
    killed = set(await asyncio.to_thread(b.lab.hollow_kill, s.kill))
    moved = sorted({u for m in killed for u in f.reports.get(m, set())}
                   | {u for u, ms_ in f.placed.items() if ms_ & killed})
    done = await f.until(
        lambda: all(f.active_elsewhere(u, killed) is not None for u in moved), s.ttl + 60)
    last = max((f.active_elsewhere(u, killed) or t0 for u in moved), default=t0)
    b.row("hollow machines crash: units active elsewhere",
          f"`Lab.hollow_kill({s.kill})` called (no lease revoke) -> the last of their "
          f"{len(moved)} units reported active on another machine",
          secs(last - t0) if done else f"not all after {s.ttl + 60} s",
          f"<= agent_ttl + 3 s = {s.ttl + 3} s", done is not None and last - t0 <= s.ttl + 3)
    b.row("hollow machines crash: most machines reporting one unit active",
          "from the kill until every unit ran elsewhere: the most machines whose states/ "
          "said active for one unit at the same time (after each whole revision)", f"{f.max_active}"
          + (f" ({f.max_active_unit})" if f.max_active > 1 else ""), "1", f.max_active == 1)
    b.notes.append(f"Hollow crash: the most schedule/ entries of one unit at once "
                   f"(after each whole revision) was {f.max_placed}"
                   + (f" ({f.max_placed_unit})." if f.max_placed > 1 else "."))


async def leader_kill(b: Bench) -> None:
    """Part 6: the engine's leader dies; a new engine must place new units."""
    s, f = b.size, b.follow
    leader, _ = await leader_host(b)
    other = next(h for h in b.lab.hosts if h.machine_id != leader and h.pid is not None)
    name = b.files(["after-leader.service"])[0]
    had = set(f.reports.get(leader, set()))
    f.reset_max()
    t0 = time.perf_counter()
    host = next(h.name for h in b.lab.hosts if h.machine_id == leader)
    killed = await asyncio.to_thread(b.lab.exec, host, [
        "sh", "-c", "systemctl kill --signal=KILL fleet.service; systemctl stop fleet.service"])
    if killed.returncode != 0:
        raise RuntimeError(f"could not kill fleetd on {host}: {killed.stderr}")
    command = b.ok("start", "--no-block", name, host_ip=other.ip)
    done = await f.until(lambda: name in f.first_active, 2 * s.ttl + 60)
    moved = await f.until(
        lambda: all(f.active_elsewhere(u, {leader}) is not None for u in had), 30)
    new = await f.registry.get_leader()
    b.row("leader fleetd killed: new unit active",
          f"`systemctl kill --signal=KILL fleet.service` on the leader's host (then "
          "`systemctl stop`: left stopped, no lease revoke) -> a unit started right after "
          f"(`fleetctl start --no-block` through {other.name}'s API, {secs(command)}) "
          f"reported active; new leader {'another host' if new and new != leader else new}",
          secs(done - t0) if done else f"not active after {2 * s.ttl + 60} s",
          f"< 2 x agent_ttl = {2 * s.ttl} s", done is not None and done - t0 < 2 * s.ttl)
    b.notes.append(
        f"Leader kill: the killed host's {len(had)} units reported active elsewhere "
        + (f"{secs(moved - t0)} after the kill." if moved else "not within the wait."))
    b.row("leader fleetd killed: most schedule/ entries of one unit",
          "from the kill until the killed host's units ran elsewhere: the most machines "
          "one unit was scheduled on at once (schedule/ seen by a watcher, after each whole "
          "revision)",
          f"{f.max_placed}" + (f" ({f.max_placed_unit})" if f.max_placed > 1 else ""), "1",
          f.max_placed == 1)
