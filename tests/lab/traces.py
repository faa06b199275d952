"""What a lab leaves on the machine, looked up independently of fleetpy.lab's own code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def lab_processes(name: str, state_dir: Path) -> list[str]:
    """Running processes in the lab's cgroups or naming its state dir (zombies excluded:
    they hold nothing and PID 1 here reaps orphans late)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat or stat[stat.rindex(")") + 2] in "ZX":
            continue
        cmdline = _read(f"/proc/{entry}/cmdline").replace("\0", " ")
        group = f"/fleetlab-{name}"
        in_cgroup = any(
            line.split(":", 2)[-1] == group or line.split(":", 2)[-1].startswith(group + "/")
            for line in _read(f"/proc/{entry}/cgroup").splitlines()
        )
        if in_cgroup or str(state_dir) in cmdline or f"fleetlab-{name} " in cmdline:
            found.append(f"process {entry}: {cmdline.strip()}")
    return found


def lab_mounts(state_dir: Path) -> list[str]:
    return [
        f"mount {line.split()[4]}"
        for line in _read("/proc/self/mountinfo").splitlines()
        if str(state_dir) in line
    ]


def lab_links(name: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return [
        f"link {link['ifname']}"
        for link in json.loads(out)
        if link["ifname"] == f"flb-{name}"
        or link["ifname"].startswith(f"v{name}-")
        or link.get("master") == f"flb-{name}"
    ]


def lab_cgroups(name: str) -> list[str]:
    root = Path("/sys/fs/cgroup")
    return [f"cgroup {p}" for p in sorted(root.glob(f"*/fleetlab-{name}"))]


def traces(name: str, state_dir: Path | None = None) -> list[str]:
    """Everything of lab ``name`` still on the machine; [] after a clean down."""
    state_dir = state_dir or Path("/var/lib/fleetlab") / name
    files = [f"file {state_dir}"] if state_dir.exists() else []
    return [
        *lab_processes(name, state_dir),
        *lab_mounts(state_dir),
        *lab_links(name),
        *lab_cgroups(name),
        *files,
    ]
