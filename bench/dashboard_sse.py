"""Bytes a dashboard page receives over server-sent events while 10,000 units start.

In-memory registry (no etcd, no systemd: what is measured is the dashboard's
feed and /events, not the cluster): 1,000 machines registered, then 10,000
units created, scheduled 250 at a time (as the engine writes its batches) and
reported activating, then active, by their machines, every write 20 ms apart.
One page holds /events open from before the start to the end; printed: events,
bytes, the largest event, how long until the page showed the last unit active.

Only the dashboard's public surface is used (``DashboardService.start``, HTTP
``/events``), so the same script measures an older checkout:
``PYTHONPATH=/path/to/old/checkout python bench/dashboard_sse.py``.

    .venv/bin/python bench/dashboard_sse.py [--machines 1000] [--units 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from fleetpy.dashboard import DashboardService
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.model.unitfile import unit_hash
from fleetpy.registry.memory import MemoryRegistry

BATCH = 250
PAUSE = 0.02  # s between writes


class Page:
    """One /events connection: counts what arrives, notes when the last unit shows active."""

    def __init__(self) -> None:
        self.events = self.bytes = self.largest = 0
        self.kinds: dict[str, int] = {}
        self.tables: dict[str, int] = {}  # bytes of changed rows per table, in patches
        self.all_active_at = 0.0
        self.want = ""
        self.writer: asyncio.StreamWriter | None = None

    async def read(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
        self.writer = writer
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        while True:
            block = await reader.readuntil(b"\n\n")
            if not block.startswith((b"event:", b"data:")):
                continue
            self.events += 1
            self.bytes += len(block)
            self.largest = max(self.largest, len(block))
            kind = block.split(b"\n", 1)[0].decode() if block.startswith(b"event:") else "data"
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            data = json.loads(block.split(b"data: ", 1)[1])
            if kind == "event: patch":
                for table, rows in data.get("set", {}).items():
                    self.tables[table] = self.tables.get(table, 0) + len(json.dumps(rows))
            if self.want and self.want.encode() in block and _last_active(data, self.want):
                self.all_active_at = time.monotonic()


def _last_active(data: dict[str, object], name: str) -> bool:
    rows = data.get("units") or (data.get("set") or {}).get("units", [])  # type: ignore[union-attr]
    for row in rows:  # type: ignore[union-attr]
        if row["name"] == name:
            return any(p["active"] == "active" for p in row["placements"])
    return False


async def main(machines: int, units: int) -> None:
    registry = MemoryRegistry()
    lease = await registry.grant_lease(600)
    ids = [f"{i:032x}" for i in range(machines)]
    for i, mid in enumerate(ids):
        await registry.register_machine(Machine(mid, f"10.1.{i // 250}.{i % 250}"), lease)
    token = await registry.campaign(ids[0], lease)
    assert token is not None
    service = await DashboardService.start(registry, ids[0], "127.0.0.1:0", None)
    page = Page()
    reader = asyncio.create_task(page.read(service.port))
    await asyncio.sleep(1.0)
    contents = "[Service]\nExecStart=/bin/sleep 1d\n"
    names = [f"web@{i}.service" for i in range(units)]
    page.want = names[-1]
    before = page.bytes, page.events
    start = time.monotonic()
    for i in range(0, units, BATCH):
        await registry.create_units([UnitFile(n, contents, unit_hash(contents))
                                     for n in names[i:i + BATCH]], TargetState.LAUNCHED)
        await asyncio.sleep(PAUSE)
    for i in range(0, units, BATCH):
        batch = [(n, ids[j % machines]) for j, n in enumerate(names[i:i + BATCH], i)]
        await registry.apply_schedule(token, [ScheduledUnit(n, m, TargetState.LAUNCHED, "h",
                                                            contents) for n, m in batch], [])
        await asyncio.sleep(PAUSE)
        for active, sub in (("activating", "start"), ("active", "running")):
            await registry.put_unit_states(
                [UnitState(n, m, "loaded", active, sub, "h") for n, m in batch], lease)
            await asyncio.sleep(PAUSE)
    written = time.monotonic()
    while not page.all_active_at and time.monotonic() - written < 120:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    sent, events = page.bytes - before[0], page.events - before[1]
    print(f"{units} units on {machines} machines: writes took {written - start:.1f}s; "
          f"page showed the last unit active {page.all_active_at - written:+.2f}s after the "
          f"last write")
    print(f"SSE during the start: {events} events, {sent / 1e6:.1f} MB, largest event "
          f"{page.largest / 1e6:.2f} MB (on connect: {before[0] / 1e3:.0f} kB); kinds "
          f"{page.kinds}")
    if page.tables:
        print("changed rows in patches: " + ", ".join(
            f"{table} {size / 1e6:.1f} MB" for table, size in sorted(page.tables.items())))
    reader.cancel()
    if page.writer is not None:
        page.writer.close()
    await service.stop()
    await registry.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--units", type=int, default=10000)
    args = parser.parse_args()
    asyncio.run(main(args.machines, args.units))
