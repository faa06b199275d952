"""How fast a unit that fails at once shows as failed, on a real systemd (the settle's basis).

Run inside a lab host (root), with the venv's python:

    python bench/settle_probe.py [ROUNDS] [--load N]

For each kind of immediate failure (and a healthy ``sleep`` as control) a new
unit file is linked into /run/systemd/system and started through fleetd's own
adapter (DbusUnitManager: the worker, StartUnit); the times, in ms, are from
StartUnit returning (when the agent starts its settle clock) to:

- ``up``: systemd's ActiveEnterTimestampMonotonic (the unit went active);
- ``down``: systemd's InactiveEnterTimestampMonotonic (it failed / ended);
- ``seen``: the failed state reached the adapter's change stream (None: not
  within 1 s, as for the healthy control).

``--load N``: N busy processes (nice 0) inside the host meanwhile, the way a
shared 2-core machine is busy. Prints one JSON object: kind -> list of rows.
fleetpy.agent.settle's SETTLE_S is argued from these figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetpy.systemd import DbusUnitManager

KINDS = {
    "false": "ExecStart=/bin/false",
    "missing-binary": "ExecStart=/nonexistent/binary",  # 203/EXEC
    "bad-user": "User=no-such-user-fleetpy\nExecStart=/bin/sleep 100",  # 217/USER
    "script-exit-1": "ExecStart=/bin/sh -c 'echo failing; exit 1'",
    "sleep": "ExecStart=/bin/sleep 100",  # control: stays up
}
UNITS = Path("/run/fleetpy-settle-probe")
LINKS = Path("/run/systemd/system")


def prop(name: str, key: str) -> float | None:
    out = subprocess.run(["systemctl", "show", "-p", key, "--value", name],
                         capture_output=True, text=True).stdout.strip()
    return int(out) / 1e6 if out.isdigit() and int(out) > 0 else None


async def one(m: DbusUnitManager, name: str, body: str) -> dict[str, float | None]:
    path = UNITS / name
    path.write_text(f"[Unit]\nDescription=settle probe\n[Service]\n{body}\n")
    (LINKS / name).symlink_to(path)
    stream = m.changes()
    await m.watch_units({name})
    await m.daemon_reload()
    await m.start_unit(name)
    t0 = time.monotonic()
    seen = None
    try:
        async with asyncio.timeout(1.0):
            async for s in stream:
                if s.name == name and s.active_state == "failed":
                    seen = time.monotonic()
                    break
    except TimeoutError:
        pass
    await stream.aclose()
    up, down = prop(name, "ActiveEnterTimestampMonotonic"), prop(
        name, "InactiveEnterTimestampMonotonic")
    subprocess.run(["systemctl", "stop", name], capture_output=True)
    subprocess.run(["systemctl", "reset-failed", name], capture_output=True)
    (LINKS / name).unlink()
    path.unlink()

    def ms(t: float | None) -> float | None:
        return None if t is None else round((t - t0) * 1000, 1)

    return {"up": ms(up), "down": ms(down), "seen": ms(seen)}


async def main(rounds: int, load: int) -> None:
    UNITS.mkdir(exist_ok=True)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    m = DbusUnitManager(units_dir=UNITS)
    await m.start()
    out: dict[str, list[dict[str, float | None]]] = {k: [] for k in KINDS}
    try:
        for i in range(rounds):
            for kind, body in KINDS.items():
                out[kind].append(await one(m, f"settle-probe-{os.getpid()}-{kind}-{i}.service",
                                           body))
    finally:
        await m.close()
        for h in hogs:
            h.kill()
        subprocess.run(["systemctl", "daemon-reload"])
    print(json.dumps(out))


if __name__ == "__main__":
    args = sys.argv[1:]
    n_load = 0
    if "--load" in args:
        i = args.index("--load")
        n_load = int(args[i + 1])
        del args[i:i + 2]
    asyncio.run(main(int(args[0]) if args else 10, n_load))
