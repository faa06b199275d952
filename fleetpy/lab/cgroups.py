"""Cgroup directories for a lab: one subtree per lab in every hierarchy.

Layout (relative to each hierarchy's mount point under /sys/fs/cgroup):
``fleetlab-<lab>/<host>`` for each host's systemd and ``fleetlab-<lab>/etcd``
for the etcd members. Everything a lab starts lives in that subtree, so
``pids`` finds every process of a lab even when its state file is gone.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fleetpy.lab.errors import LabError

ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Hierarchy:
    """A cgroup mount under /sys/fs/cgroup."""

    dir: str  # relative to ROOT; "." when /sys/fs/cgroup itself is cgroup2
    kind: str  # "cgroup" (v1) or "cgroup2"
    options: str  # v1 mount options for a fresh mount inside a host

    @property
    def path(self) -> Path:
        return ROOT / self.dir if self.dir != "." else ROOT


def hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies mounted under /sys/fs/cgroup, in mount order."""
    found: list[Hierarchy] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        mountpoint = pre.split()[4]
        fstype, _source, super_opts = post.split()[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        if mountpoint == str(ROOT):
            rel = "."
        elif mountpoint.startswith(f"{ROOT}/"):
            rel = mountpoint[len(str(ROOT)) + 1 :]
        else:
            continue
        opts = [o for o in super_opts.split(",") if o not in ("rw", "ro")]
        if fstype == "cgroup" and any(o.startswith("name=") for o in opts):
            opts = ["none", *[o for o in opts if o != "none"]]
        found.append(Hierarchy(rel, fstype, ",".join(opts) or "-"))
    return found


def mount_specs() -> list[str]:
    """FLH_CGMOUNTS for the host init script: the same hierarchies, fresh."""
    hiers = hierarchies()
    if any(h.dir == "." for h in hiers):
        return [".:cgroup2:-"]
    specs = ["-:tmpfs:-"]
    for h in hiers:
        specs.append(f"{h.dir}:{h.kind}:{h.options}")
    for entry in sorted(ROOT.iterdir()):
        if entry.is_symlink():
            specs.append(f"{entry.name}:link:{os.readlink(entry)}")
    return specs


def lab_group(lab: str) -> str:
    return f"fleetlab-{lab}"


def create(rel: str) -> list[Path]:
    """Create ``rel`` (and its parents) in every hierarchy; return the dirs."""
    dirs = []
    for h in hierarchies():
        path = h.path
        for part in Path(rel).parts:
            parent, path = path, path / part
            if not path.is_dir():
                path.mkdir(exist_ok=True)
                if (parent / "cpuset.cpus").exists():  # v1 cpuset starts empty
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (path / knob).write_text((parent / knob).read_text())
        dirs.append(path)
    return dirs


def exists(rel: str) -> bool:
    return any((h.path / rel).is_dir() for h in hierarchies())


def pids(rel: str) -> set[int]:
    """Every process in the subtree ``rel`` of any hierarchy."""
    found: set[int] = set()
    for h in hierarchies():
        for dirpath, _dirs, files in os.walk(h.path / rel):
            if "cgroup.procs" in files:
                try:
                    text = Path(dirpath, "cgroup.procs").read_text()
                except OSError:
                    continue
                found.update(int(p) for p in text.split())
    return found


def remove(rel: str, timeout: float = 5.0) -> None:
    """Remove the subtree ``rel`` in every hierarchy, deepest first.

    A cgroup whose last process is still exiting refuses rmdir with EBUSY for
    a moment; retry until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    for h in hierarchies():
        top = h.path / rel
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"cannot remove cgroup {dirpath}: still in use after {timeout:.0f}s"
                        ) from None
                    time.sleep(0.05)


def memory_bytes(rel: str) -> int | None:
    """Memory charged to the subtree ``rel`` (v1 usage or v2 current)."""
    for h in hierarchies():
        for knob in ("memory.usage_in_bytes", "memory.current"):
            path = h.path / rel / knob
            if path.exists():
                return int(path.read_text())
    return None


# -- the freezer: a stalled machine (fleetlab pause/resume) ---------------------------


def _freezer(rel: str) -> tuple[str, Path] | None:
    """("v1", freezer.state) in a v1 freezer hierarchy, else ("v2", cgroup.freeze)."""
    hiers = hierarchies()
    for h in hiers:
        v1_freezer = h.kind == "cgroup" and "freezer" in h.options.split(",")
        if v1_freezer and (h.path / rel / "freezer.state").exists():
            return "v1", h.path / rel
    for h in hiers:
        if h.kind == "cgroup2" and (h.path / rel / "cgroup.freeze").exists():
            return "v2", h.path / rel
    return None


def _is_frozen(kind: str, path: Path) -> bool:
    if kind == "v1":
        return (path / "freezer.state").read_text().strip() == "FROZEN"
    return "frozen 1" in (path / "cgroup.events").read_text().splitlines()


def _self_frozen(kind: str, path: Path) -> bool:
    """Frozen by its own switch (not only by a frozen parent)."""
    if kind == "v1":
        return (path / "freezer.self_freezing").read_text().strip() == "1"
    return (path / "cgroup.freeze").read_text().strip() == "1"


def _set_frozen(kind: str, path: Path, on: bool, timeout: float) -> None:
    if kind == "v1":
        (path / "freezer.state").write_text("FROZEN" if on else "THAWED")
    else:
        (path / "cgroup.freeze").write_text("1" if on else "0")
    deadline = time.monotonic() + timeout
    while _is_frozen(kind, path) != on:
        if time.monotonic() > deadline:
            what = "freeze" if on else "thaw"
            raise LabError(f"cgroup {path} did not {what} within {timeout:.0f}s")
        time.sleep(0.01)


def frozen(rel: str) -> bool:
    """Whether every process of the subtree ``rel`` is frozen."""
    found = _freezer(rel)
    return found is not None and _is_frozen(*found)


def freeze(rel: str, timeout: float = 10.0) -> None:
    """Freeze the subtree ``rel`` and wait until all its processes are frozen.

    Uses the v1 freezer hierarchy when the machine has one, else cgroup2's
    cgroup.freeze (kernel 5.2 and later); both freeze every descendant.
    """
    found = _freezer(rel)
    if found is None:
        raise LabError(
            f"no cgroup freezer for {rel}: needs a v1 freezer hierarchy or cgroup2 "
            "with cgroup.freeze (Linux 5.2+)"
        )
    _set_frozen(*found, True, timeout)


def thaw_tree(rel: str, timeout: float = 10.0) -> None:
    """Thaw every cgroup of the subtree ``rel`` frozen by its own switch.

    Before killing: a task frozen by the v1 freezer does not die of SIGKILL
    until it is thawed.
    """
    found = _freezer(rel)
    if found is None:
        return
    kind, top = found
    for dirpath, _dirs, _files in os.walk(top):
        path = Path(dirpath)
        try:
            if _self_frozen(kind, path):
                _set_frozen(kind, path, False, timeout)
        except FileNotFoundError:
            continue
