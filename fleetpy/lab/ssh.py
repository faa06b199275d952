"""A real OpenSSH server in every lab host, a ``core`` user and the lab's key.

Nothing here touches the machine's own files: every file lives under the
lab's state directory and is bound (or copied) into the host at boot by
hostinit.py.

- ``<state>/ssh/id_ed25519``: the lab's user key (made once per lab),
  authorized for ``core`` on every host. ``fleetlab env`` points fleetctl at
  it (FLEETCTL_SSH_IDENTITY_FILE) and at the lab's own known_hosts file
  (FLEETCTL_KNOWN_HOSTS_FILE), since every new lab has new host keys.
- ``<host>/ssh/``: the host's own host key (made once per host: kept across
  host-stop/host-start, so a changed key means something) and sshd_config.
- ``<host>/etc/{passwd,shadow,group,sudoers.d}``: the machine's files plus
  ``core`` (CoreOS's admin user: groups sudo, adm, systemd-journal and
  ``fleet``, which may use fleetd's API socket; password-less sudo). Bound
  over their /etc namesakes inside the host only.
- ``<host>/home/core/.ssh/authorized_keys``: copied to the host's private /home.
- ``ssh.service`` in the host's /etc/systemd/system (it hides Debian's):
  ``sshd -D -f <host>/ssh/sshd_config``, /run/sshd as its runtime directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from fleetpy.lab.errors import LabError
from fleetpy.lab.state import LabConfig

USER = "core"
UID_FROM = 500  # CoreOS's core is 500:500
GROUPS = ("sudo", "adm", "systemd-journal")  # existing groups core joins
API_GROUP = "fleet"  # fleetd gives its socket to this group (0660)
SSHD = Path("/usr/sbin/sshd")
UNIT = "ssh.service"
_KEY_LOCK = threading.Lock()  # hosts are prepared in parallel threads


def key_path(cfg: LabConfig) -> Path:
    """The lab's private key (the public one is beside it, ``.pub``)."""
    return cfg.state_dir / "ssh" / "id_ed25519"


def known_hosts_path(cfg: LabConfig) -> Path:
    return cfg.state_dir / "ssh" / "known_hosts"


def client_env(cfg: LabConfig) -> dict[str, str]:
    """fleetctl's ssh settings for this lab: its key and its own known_hosts."""
    if not key_path(cfg).exists():
        return {}
    return {
        "FLEETCTL_SSH_IDENTITY_FILE": str(key_path(cfg)),
        "FLEETCTL_KNOWN_HOSTS_FILE": str(known_hosts_path(cfg)),
    }


def available() -> bool:
    return SSHD.exists() and shutil.which("ssh-keygen") is not None


def _keygen(path: Path, comment: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True, text=True, check=False, timeout=30,
    )
    if done.returncode != 0:
        raise LabError(f"ssh-keygen {path}: {done.stderr.strip() or 'failed'}")


def ensure_lab_key(cfg: LabConfig) -> Path:
    """The lab's user key, made on first use."""
    key = key_path(cfg)
    with _KEY_LOCK:
        if not key.exists():
            _keygen(key, f"fleetlab-{cfg.name}")
    return key


def _free_id(used: set[int]) -> int:
    n = UID_FROM
    while n in used:
        n += 1
    return n


def _ids(lines: Sequence[str]) -> set[int]:
    out = set()
    for line in lines:
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            out.add(int(parts[2]))
    return out


def user_files(passwd: str, shadow: str, group: str) -> tuple[str, str, str, int, int]:
    """The machine's passwd/shadow/group with ``core`` added (pure).

    Returns the three texts and core's uid and gid. ``core`` joins the
    existing GROUPS and ``fleet`` (made unless it exists).
    """
    p_lines = [x for x in passwd.splitlines() if x and not x.startswith(f"{USER}:")]
    s_lines = [x for x in shadow.splitlines() if x and not x.startswith(f"{USER}:")]
    g_lines = [x for x in group.splitlines() if x and not x.startswith(f"{USER}:")]
    uid = _free_id(_ids(p_lines) | _ids(g_lines))
    gid = uid
    names = {line.split(":")[0] for line in g_lines}
    if API_GROUP not in names:
        g_lines.append(f"{API_GROUP}:x:{_free_id(_ids(g_lines) | {gid})}:")
    joined = []
    for line in g_lines:
        parts = line.split(":")
        if len(parts) == 4 and parts[0] in (*GROUPS, API_GROUP):
            members = [m for m in parts[3].split(",") if m and m != USER]
            parts[3] = ",".join([*members, USER])
            line = ":".join(parts)
        joined.append(line)
    joined.append(f"{USER}:x:{gid}:")
    p_lines.append(f"{USER}:x:{uid}:{gid}:CoreOS Admin:/home/{USER}:/bin/bash")
    s_lines.append(f"{USER}:*:19000:0:99999:7:::")  # no password: keys only
    return ("\n".join(p_lines) + "\n", "\n".join(s_lines) + "\n", "\n".join(joined) + "\n",
            uid, gid)


def sshd_config(host_key: Path, path: str, ip: str) -> str:
    return f"""\
# fleetlab: this host's own sshd (its key, the lab's users); not the machine's.
Port 22
HostKey {host_key}
PidFile /run/sshd.pid
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
AllowAgentForwarding yes
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
# As pam_env would from /etc/environment on CoreOS (sshd runs without PAM here).
SetEnv PATH={path} COREOS_PUBLIC_IPV4={ip} COREOS_PRIVATE_IPV4={ip}
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def unit_file(config: Path) -> str:
    return f"""\
[Unit]
Description=OpenSSH server (fleetlab host)
DefaultDependencies=no

[Service]
Type=notify
ExecStart={SSHD} -D -e -f {config}
ExecReload=/bin/kill -HUP $MAINPID
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755
KillMode=process
Restart=on-failure
"""


def _write(path: Path, text: str, mode: int, owner: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, *owner)


def prepare_host(cfg: LabConfig, host_dir: Path, system: Path, venv: str, ip: str) -> str:
    """Write a host's sshd files and unit into ``host_dir`` / ``system``; return the unit."""
    lab_key = ensure_lab_key(cfg)
    host_key = host_dir / "ssh" / "ssh_host_ed25519_key"
    if not host_key.exists():
        _keygen(host_key, host_dir.name)
    config = host_dir / "ssh" / "sshd_config"
    path = f"{venv}/bin:/usr/local/bin:/usr/bin:/bin" if venv else "/usr/local/bin:/usr/bin:/bin"
    _write(config, sshd_config(host_key, path, ip), 0o644)
    etc = Path("/etc")
    passwd, shadow, group, uid, gid = user_files(
        (etc / "passwd").read_text(), (etc / "shadow").read_text(), (etc / "group").read_text()
    )
    _write(host_dir / "etc" / "passwd", passwd, 0o644)
    _write(host_dir / "etc" / "shadow", shadow, 0o640, (0, _gid_of(group, "shadow")))
    _write(host_dir / "etc" / "group", group, 0o644)
    if (etc / "sudoers.d").is_dir():
        sudoers = host_dir / "etc" / "sudoers.d"
        shutil.rmtree(sudoers, ignore_errors=True)
        shutil.copytree(etc / "sudoers.d", sudoers)
        _write(sudoers / "fleetlab-core",
               f"Defaults:{USER} !lecture\n{USER} ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    home = host_dir / "home" / USER
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, uid, gid)
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    os.chown(home / ".ssh", uid, gid)
    public = lab_key.with_suffix(".pub").read_text()
    _write(home / ".ssh" / "authorized_keys", public, 0o600, (uid, gid))
    _write(system / UNIT, unit_file(config), 0o644)
    return UNIT


def _gid_of(group: str, name: str) -> int:
    for line in group.splitlines():
        parts = line.split(":")
        if parts[0] == name and len(parts) > 2 and parts[2].isdigit():
            return int(parts[2])
    return 0
