"""What the agent's start of a new unit relies on, asked of a real systemd in a lab host.

    python tests/lab/start_driver.py noreload PREFIX

prints one JSON object; tests/lab/test_start_path.py asserts on it. Runs fleetd's
own adapter (DbusUnitManager: worker, StartUnit, ListUnitsByNames), never a
daemon-reload except where it says so, and counts systemd's own "Reloading."
journal lines meanwhile (nothing else in the host reloads while it runs: the
lab's fleetd has no units).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleetpy.systemd import DbusUnitManager, UnitStatus

# Not fleetd's /run/fleet/units (fleetd would unload what it did not schedule); the
# links still go to /run/systemd/system, as fleetd's do.
UNITS_DIR = Path("/run/fleetpy-start-test/units")
UNIT = "[Unit]\nDescription={desc}\n[Service]\nExecStart=/bin/sleep 100000\n"


def reloads() -> int:
    """How many daemon-reloads systemd has logged so far."""
    out = subprocess.run(["journalctl", "_PID=1", "-o", "cat", "--no-pager"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip() == "Reloading.")


def show(name: str, *props: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", *[f"-p{p}" for p in props], name],
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def row(s: UnitStatus | None) -> list[str] | None:
    return None if s is None else [s.load_state, s.active_state, s.sub_state]


async def until_active(m: DbusUnitManager, name: str) -> list[str] | None:
    for _ in range(100):
        s = (await m.statuses([name])).get(name)
        if s is not None and s.active_state == "active":
            return row(s)
        await asyncio.sleep(0.05)
    return row((await m.statuses([name])).get(name))


async def noreload(prefix: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    looked_up, never, changed, pinner, pinned = (
        f"{prefix}-{x}.service" for x in ("lookedup", "never", "changed", "pinner", "pinned"))
    m = DbusUnitManager(units_dir=UNITS_DIR)
    await m.start()
    try:
        r["reloads_before"] = reloads()
        # 1. systemd looked the unit up before its file existed: not-found, kept in
        #    memory as such; then its file is linked and it is asked again, no reload
        r["looked_up_before"] = row((await m.statuses([looked_up])).get(looked_up))
        await m.write_unit(looked_up, UNIT.format(desc="v1"))
        r["looked_up_after_link"] = row((await m.statuses([looked_up])).get(looked_up))
        await m.start_unit(looked_up)
        r["looked_up_started"] = await until_active(m, looked_up)
        # 2. a name systemd never heard of: linked, then StartUnit at once
        await m.write_unit(never, UNIT.format(desc="v1"))
        await m.start_unit(never)
        r["never_started"] = await until_active(m, never)
        # 3. a not-found stub held in memory by another unit's Wants= (a fleet unit that
        #    names one not loaded yet): linked later, found and started, no reload
        await m.write_unit(pinner, UNIT.format(desc="v1").replace(
            "[Service]", f"Wants={pinned}\n[Service]"))
        await m.start_unit(pinner)
        await until_active(m, pinner)
        r["pinned_before"] = row((await m.statuses([pinned])).get(pinned))
        await m.write_unit(pinned, UNIT.format(desc="v1"))
        await m.start_unit(pinned)
        r["pinned_started"] = await until_active(m, pinned)
        r["reloads_meanwhile"] = reloads() - r["reloads_before"]
        # 4. a unit systemd has loaded keeps what it read until a daemon-reload
        await m.write_unit(changed, UNIT.format(desc="v1"))
        await m.start_unit(changed)
        await until_active(m, changed)
        await m.write_unit(changed, UNIT.format(desc="v2"))
        await m.start_unit(changed)  # the agent's start of the new version, no reload
        r["changed_without_reload"] = show(changed, "Description", "NeedDaemonReload")
        # 5. a removed file: systemd still has the unit loaded until a reload
        await m.remove_unit(never)
        r["removed_without_reload"] = row((await m.statuses([never])).get(never))
        await m.daemon_reload()
        r["changed_after_reload"] = show(changed, "Description", "NeedDaemonReload")
        r["removed_after_reload"] = row((await m.statuses([never])).get(never))
    finally:
        for name in (looked_up, never, changed, pinner, pinned):
            await m.stop_unit(name)
            await m.remove_unit(name)
        await m.daemon_reload()
        await m.close()
    return r


def main() -> int:
    scenario, prefix = sys.argv[1], sys.argv[2]
    if scenario != "noreload":
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(json.dumps(asyncio.run(noreload(prefix))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
