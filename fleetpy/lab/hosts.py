"""Lab hosts: a systemd as PID 1 in fresh namespaces, one per host.

Files of a host, in ``<state-dir>/hosts/<name>/``: ``machine-id`` (kept across
stop/start), ``hostname``, ``environment``, ``hosts`` (bound over their /etc
namesakes), ``system/`` (copied into the host's private /etc/systemd/system),
``init.sh`` (see hostinit.py) and ``console.log`` (systemd's own output).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import fleetpy
from fleetpy.lab import cgroups, network, procs, secure, ssh
from fleetpy.lab.errors import LabError
from fleetpy.lab.hostinit import SCRIPT
from fleetpy.lab.state import FLEET_API_PORT, HostRecord, LabConfig, LabState

SYSTEMD = Path("/lib/systemd/systemd")
TARGET = "fleetlab-host.target"
PRIVATE_DIRS = ("/run", "/tmp", "/var/tmp", "/var/log", "/home", "/root")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNSHARE = ["unshare", "--pid", "--fork", "--mount", "--uts", "--net", "--cgroup"]

# Units the lab hides in every host: they would reach outside it (the kernel
# audit stream is machine-wide).
MASKED = ("systemd-journald-audit.socket",)
# Debian's dbus units pull in sysinit.target unless told otherwise.
NO_DEFAULT_DEPS = ("dbus.socket", "dbus.service")


def checkout() -> Path | None:
    """The source checkout fleetpy runs from (editable install), if any."""
    root = Path(fleetpy.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else None


def venv() -> Path | None:
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else None


def interpreter() -> Path:
    """The Python installation the venv's python links to (e.g. under /root/.pyenv)."""
    return Path(sys.base_prefix)


def keep_paths(paths: Sequence[Path | None]) -> list[str]:
    """The paths a host must still see although they lie under its private mounts."""
    keep: list[str] = []
    for p in sorted({str(p.resolve()) for p in paths if p is not None}):
        private = any(p == d or p.startswith(d + "/") for d in PRIVATE_DIRS)
        if private and not any(p.startswith(k + "/") for k in keep):
            keep.append(p)
    return keep


def fleetd_unit() -> tuple[Path, Path] | None:
    """``(deploy/fleet.service, <venv>/bin/fleetd)`` once both exist (and fleetd's module)."""
    root, env = checkout(), venv()
    if root is None or env is None:
        return None
    unit, fleetd = root / "deploy" / "fleet.service", env / "bin" / "fleetd"
    if unit.exists() and fleetd.exists() and importlib.util.find_spec("fleetpy.daemon"):
        return unit, fleetd
    return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def prepare(cfg: LabConfig, state: LabState, rec: HostRecord) -> Path:
    """Write the host's files for this boot; return the host directory."""
    d = cfg.host_dir(rec.name)
    _write(d / "machine-id", rec.machine_id + "\n")
    _write(d / "hostname", rec.name + "\n")
    # Units read it with EnvironmentFile=/etc/environment (etcdctl included, as on CoreOS;
    # FLEETPY_BIN/FLEETPY_UNIT_FILES: where part 3's units find fleetpy-confd and its files).
    root = checkout()
    _write(
        d / "environment",
        f"COREOS_PUBLIC_IPV4={rec.ip}\nCOREOS_PRIVATE_IPV4={rec.ip}\n"
        f"ETCDCTL_API=3\nETCDCTL_ENDPOINTS={','.join(state.client_urls)}\n"
        + (f"FLEETPY_BIN={state.venv}/bin\n" if state.venv else "")
        + (f"FLEETPY_UNIT_FILES={root / 'unit-files'}\n" if root is not None else ""),
    )
    peers = "".join(f"{h.ip}\t{h.name}\n" for h in state.hosts)
    _write(d / "hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{peers}")
    _write(d / "init.sh", SCRIPT)
    system = d / "system"
    shutil.rmtree(system, ignore_errors=True)
    system.mkdir()
    wants = ["systemd-journald.socket", "systemd-journald.service", "dbus.socket"]
    for unit in MASKED:
        (system / unit).symlink_to("/dev/null")
    for unit in NO_DEFAULT_DEPS:
        _write(system / f"{unit}.d" / "10-lab.conf", "[Unit]\nDefaultDependencies=no\n")
    fleet = fleetd_unit()
    if fleet is not None:
        unit_file, fleetd = fleet
        _write(system / "fleet.service", unit_file.read_text())
        _write(
            system / "fleet.service.d" / "10-lab.conf",
            "[Service]\nExecStart=\n"
            f"ExecStart={fleetd}\n"
            f"Environment=FLEET_ETCD_SERVERS={','.join(state.client_urls)}\n"
            f"Environment=FLEET_PUBLIC_IP={rec.ip}\n"
            f"Environment=FLEET_API_TCP={rec.ip}:{FLEET_API_PORT}\n"
            + (f"Environment=FLEET_METADATA={rec.metadata}\n" if rec.metadata else "")
            + "".join(f"Environment={k}={v}\n" for k, v in sorted(state.fleet_env.items()))
            + (secure.fleetd_dropin(cfg, state.secure, rec) if state.secure else ""),
        )
        wants.append("fleet.service")
    if ssh.available():
        wants.append(ssh.prepare_host(cfg, d, system, state.venv, rec.ip))
    _write(
        system / TARGET,
        f"[Unit]\nDescription=fleetlab host {rec.name}\nDefaultDependencies=no\n"
        f"AllowIsolate=yes\nWants={' '.join(wants)}\n",
    )
    return d


def new_record(cfg: LabConfig, index: int, metadata: str = "") -> HostRecord:
    return HostRecord(
        cfg.host_name(index), index, cfg.host_ip(index), uuid.uuid4().hex, metadata=metadata
    )


def start(cfg: LabConfig, state: LabState, rec: HostRecord) -> HostRecord:
    """Spawn the host and plug it into the bridge; it boots on in the background."""
    d = prepare(cfg, state, rec)
    group = cgroups.create(f"{cfg.cgroup}/{rec.name}")
    env = {
        "PATH": BASE_PATH,
        "FLH_CGMOUNTS": " ".join(cgroups.mount_specs()),
        "FLH_HOSTDIR": str(d),
        "FLH_KEEP": ":".join(state.keep),
        "FLH_NAME": rec.name,
        "FLH_IP": rec.ip,
        "FLH_PREFIX": str(cfg.network.prefixlen),
        "FLH_GW": cfg.gateway,
        "FLH_SYSTEMD": str(SYSTEMD),
        "FLH_TARGET": TARGET,
        "FLH_CONTAINER": f"fleetlab-{cfg.name}",
    }
    argv = [*UNSHARE, "--mount-proc", "/bin/sh", str(d / "init.sh")]
    proc = procs.spawn(argv, d / "console.log", group, env)
    rec = replace(rec, proc=proc, partitioned=False, paused=False)  # a new link, a new cgroup
    network.add_veth(cfg, rec.index, init_pid(cfg, rec, timeout=5.0))
    return rec


def running_pid(rec: HostRecord) -> int | None:
    """The host's PID 1 (its systemd) as seen from here: the child of its unshare."""
    if rec.proc is None or not rec.proc.alive():
        return None
    kids = rec.proc.children()
    return kids[0] if kids else None


def init_pid(cfg: LabConfig, rec: HostRecord, timeout: float = 0.0) -> int:
    """``running_pid``, waiting up to ``timeout`` for it; LabError if the host is down."""
    deadline = time.monotonic() + timeout
    while (pid := running_pid(rec)) is None:
        if rec.proc is None or not rec.proc.alive():
            raise LabError(f"host {rec.name} is not running: {console_tail(cfg, rec.name)}")
        if time.monotonic() > deadline:
            raise LabError(f"host {rec.name} did not start its init in {timeout:.0f}s")
        time.sleep(0.005)
    return pid


def console_tail(cfg: LabConfig, host: str) -> str:
    try:
        lines = (cfg.host_dir(host) / "console.log").read_text(errors="replace").splitlines()
    except OSError:
        return "no console log"
    return lines[-1].strip() if lines else "console log empty"


def nsenter(pid: int, argv: Sequence[str]) -> list[str]:
    return ["nsenter", "-t", str(pid), "-a", "--wd=/", *argv]


def _in_host(pid: int, argv: Sequence[str], timeout: float) -> str:
    try:
        return subprocess.run(
            nsenter(pid, argv), capture_output=True, text=True, timeout=timeout, check=False
        ).stdout.strip()
    except subprocess.TimeoutExpired:
        return ""


def wait_booted(cfg: LabConfig, rec: HostRecord, timeout: float = 30.0) -> str:
    """Wait until the host's systemd has finished booting.

    Returns its state, "running" or "degraded (failed: UNITS)". With fleetd
    installed (Type=notify) that includes fleetd being ready or failed.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid = init_pid(cfg, rec)
        left = max(deadline - time.monotonic(), 0.1)
        out = _in_host(pid, ["systemctl", "is-system-running", "--wait"], left)
        if out == "running":
            return out
        if out == "degraded":
            failed = _in_host(
                pid,
                ["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager"],
                5.0,
            )
            return f"degraded (failed: {' '.join(line.split()[0] for line in failed.splitlines())})"
        if time.monotonic() > deadline:
            jobs = _in_host(pid, ["systemctl", "list-jobs", "--plain", "--no-legend"], 5.0)
            waiting = " ".join(line.split()[1] for line in jobs.splitlines() if line.split())
            raise LabError(
                f"host {rec.name} did not finish booting in {timeout:.0f}s "
                f"(systemd {out or 'not answering'}; waiting for: {waiting or '-'}); "
                f"see `fleetlab exec {rec.name} -- journalctl -b`"
            )
        time.sleep(0.05)


def poweroff(rec: HostRecord) -> None:
    """Ask the host's systemd to power off (SIGRTMIN+4 in a container)."""
    pid = running_pid(rec)
    if pid is not None:
        procs.send(pid, signal.SIGRTMIN + 4)


def kill(rec: HostRecord) -> None:
    """SIGKILL the host's PID 1: the kernel ends everything in its pid namespace."""
    pid = running_pid(rec)
    if pid is not None:
        procs.send(pid, signal.SIGKILL)


def stop(cfg: LabConfig, recs: Sequence[HostRecord], grace: float) -> None:
    """Power hosts off together, killing those still up after ``grace`` seconds
    (0: kill at once); then remove their veths and cgroups. A paused host is
    thawed first (frozen tasks ignore SIGKILL until thawed)."""
    running = [r for r in recs if r.proc is not None and r.proc.alive()]
    for rec in recs:
        cgroups.thaw_tree(f"{cfg.cgroup}/{rec.name}")
    if grace > 0:
        for rec in running:
            poweroff(rec)
        left = procs.wait_gone([r.proc for r in running if r.proc is not None], grace)
        running = [r for r in running if r.proc in left]
    for rec in running:
        kill(rec)
    procs.wait_gone([r.proc for r in running if r.proc is not None], 5.0)
    for rec in recs:
        network.delete_link(cfg.veth(rec.index))
        cgroups.remove(f"{cfg.cgroup}/{rec.name}")


def exec_env(state: LabState, rec: HostRecord, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a command run in a host: a root login's, venv first in PATH."""
    path = f"{state.venv}/bin:{BASE_PATH}" if state.venv else BASE_PATH
    env = {
        "PATH": path,
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/bash",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TERM": os.environ.get("TERM", "dumb"),
        "COREOS_PUBLIC_IPV4": rec.ip,
        "COREOS_PRIVATE_IPV4": rec.ip,
        "FLEETCTL_ENDPOINT": "unix:///var/run/fleet.sock",
        "ETCDCTL_API": "3",
        "ETCDCTL_ENDPOINTS": ",".join(state.client_urls),
    }
    env.update(extra or {})
    return env
