"""``UnitManager.outside_fleet`` and the file checks as one scenario, on the fake or a
real systemd (run inside a lab host, as fleetd's adapter is):

    python tests/lab/foreign_driver.py PREFIX

prints one JSON object; ``check_outside_fleet`` (tests/lab/test_foreign_units.py)
asserts on it, and the same ``scenario`` runs in-process on FakeUnitManager
(tests/unit/test_foreign_units.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fleetpy.systemd import DbusUnitManager, FakeUnitManager, UnitManager
from fleetpy.systemd.files import ForeignUnitError

UNITS_DIR = Path("/run/fleetpy-foreign-test/units")  # not fleetd's own units dir
# Host units are planted only where a lab host has private mounts (/run, /etc/systemd/system):
# elsewhere (/usr/local/lib...) a host writes to this machine's own file system.
HOST_UNIT = "[Unit]\nDescription=the host's own\n[Service]\nExecStart=/bin/sleep 100000\n"
FLEET_UNIT = "[Unit]\nDescription=fleet's\n[Service]\nExecStart=/bin/sleep 100001\n"

Plant = Callable[[str, str, bool], Awaitable[None]]  # name, path, "running, file deleted"


def names(p: str) -> dict[str, str]:
    return {
        "etc": f"{p}-etc.service",
        "run": f"{p}-run.service",
        "template": f"{p}-tmpl@.service",
        "instance": f"{p}-tmpl@1.service",
        "memory": f"{p}-mem.service",
        "own": f"{p}-own.service",
        "free": f"{p}-free.service",
    }


def expected(p: str) -> dict[str, str]:
    """What ``outside_fleet`` must answer in the scenario."""
    n = names(p)
    return {
        n["etc"]: f"/etc/systemd/system/{n['etc']}",
        n["run"]: f"/run/systemd/system/{n['run']}",
        n["instance"]: f"/run/systemd/system.control/{n['template']}",
        n["memory"]: f"/etc/systemd/system/{n['memory']}",  # systemd's FragmentPath
    }


def check_outside_fleet(r: dict[str, Any], p: str) -> None:
    """What both implementations must do."""
    assert r["found"] == expected(p)
    assert r["write_over_host_file"].startswith("refused: ")
    assert "not written by fleet" in r["write_over_host_file"]
    assert r["host_files_kept"] == [True, True]
    assert r["fleet_files"] == {}
    assert r["found_after_reload"] == {}


async def scenario(m: UnitManager, p: str, plant: Plant, kept: Callable[[str], bool]
                   ) -> dict[str, Any]:
    n = names(p)
    r: dict[str, Any] = {}
    await m.start()
    await plant(n["etc"], f"/etc/systemd/system/{n['etc']}", False)
    await plant(n["run"], f"/run/systemd/system/{n['run']}", False)
    await plant(n["template"], f"/run/systemd/system.control/{n['template']}", False)
    # fleet's own unit, running, its file and link removed: systemd still knows it
    await m.write_unit(n["own"], FLEET_UNIT)
    await m.daemon_reload()
    await m.start_unit(n["own"])
    await m.remove_unit(n["own"])
    # a unit systemd runs whose file is gone (no daemon-reload since): only systemd knows it
    await plant(n["memory"], f"/etc/systemd/system/{n['memory']}", True)
    r["found"] = await m.outside_fleet([n[k] for k in ("etc", "run", "instance", "memory",
                                                        "own", "free")])
    try:
        await m.write_unit(n["run"], FLEET_UNIT)
        r["write_over_host_file"] = "written"
    except ForeignUnitError as exc:
        r["write_over_host_file"] = f"refused: {exc}"
    await m.remove_unit(n["run"])
    await m.remove_unit(n["etc"])
    r["host_files_kept"] = [kept(f"/run/systemd/system/{n['run']}"),
                            kept(f"/etc/systemd/system/{n['etc']}")]
    r["fleet_files"] = m.loaded_files()
    await m.stop_unit(n["own"])
    await m.daemon_reload()
    r["found_after_reload"] = await m.outside_fleet([n["own"], n["free"]])
    await m.close()
    return r


def fake_run(p: str) -> dict[str, Any]:
    fake = FakeUnitManager()

    async def plant(name: str, path: str, running: bool) -> None:
        fake.add_host_unit(name, path, running)

    return asyncio.run(scenario(fake, p, plant, lambda path: any(
        v == path for v in fake.host_units.values())))


def real_run(p: str) -> dict[str, Any]:
    planted: dict[str, str] = {}

    async def plant(name: str, path: str, running: bool) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(HOST_UNIT)
        planted[path] = name
        if running:
            subprocess.run(["systemctl", "daemon-reload"], check=True)
            subprocess.run(["systemctl", "start", name], check=True)
            os.unlink(path)

    def kept(path: str) -> bool:
        return Path(path).is_file() and not Path(path).is_symlink() and (
            Path(path).read_text() == HOST_UNIT)

    try:
        return asyncio.run(scenario(DbusUnitManager(units_dir=UNITS_DIR, call_timeout=5.0), p,
                                    plant, kept))
    finally:
        for path, name in planted.items():
            if "@." not in name:
                subprocess.run(["systemctl", "stop", name], check=False)
            Path(path).unlink(missing_ok=True)
        subprocess.run(["systemctl", "daemon-reload"], check=False)


if __name__ == "__main__":
    print(json.dumps(real_run(sys.argv[1])))
