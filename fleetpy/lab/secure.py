"""``fleetlab up --secure``: etcd with TLS and authentication, fleetd's API over TLS.

Two modes, each a whole lab:

- ``cert`` (``--secure``): etcd requires client certificates signed by the
  lab's CA (``--client-cert-auth``) and has authentication on: a client is
  the etcd user its certificate's CN names.
- ``password`` (``--secure=password``): etcd serves TLS (server certificate
  only) and authenticates users by name and password.

In both, role ``fleetpy`` may read and write the prefix ``/fleetpy/`` only;
users ``fleetd`` and ``fleetctl`` hold it, ``root`` is etcd's admin (for
etcdctl and the lab itself). fleetd's API on TCP is TLS and requires a
client certificate of the lab's CA. Peer traffic between members stays plain
on the lab bridge. Files in ``<state>/pki`` (see pki.py): ``ca``, ``etcd``,
``api-HOST``, client certificates ``root``, ``fleetd``, ``fleetctl``, and
``USER.password`` (0600; passwords never appear on a command line).
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from fleetpy.lab import pki
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import FLEET_API_PORT, HostRecord, LabConfig

MODES = ("cert", "password")
ROLE = "fleetpy"
PREFIX = "/fleetpy/"
USERS = ("fleetd", "fleetctl")


def pki_dir(cfg: LabConfig) -> Path:
    return cfg.state_dir / "pki"


def check_mode(mode: str) -> str:
    if mode not in ("", *MODES):
        raise LabError(f"--secure={mode}: choose {' or '.join(MODES)}")
    return mode


def _ca(cfg: LabConfig) -> pki.Cert:
    return pki.Cert(pki_dir(cfg) / "ca.pem", pki_dir(cfg) / "ca-key.pem")


def cert(cfg: LabConfig, name: str) -> pki.Cert:
    d = pki_dir(cfg)
    return pki.Cert(d / f"{name}.pem", d / f"{name}-key.pem")


def password(cfg: LabConfig, user: str) -> str:
    return (pki_dir(cfg) / f"{user}.password").read_text().strip()


def prepare(cfg: LabConfig) -> None:
    """The lab's CA, etcd's certificate, client certificates and passwords."""
    d = pki_dir(cfg)
    ca = pki.make_ca(d, f"fleetlab {cfg.name} CA")
    pki.issue(ca, d, "etcd", "etcd", ips=[cfg.gateway, "127.0.0.1"])
    for user in ("root", *USERS):
        pki.issue(ca, d, user, user)
        secret = d / f"{user}.password"
        secret.write_text(secrets.token_urlsafe(18) + "\n")
        secret.chmod(0o600)


def host_cert(cfg: LabConfig, rec: HostRecord) -> pki.Cert:
    """fleetd's API certificate on ``rec`` (made on the host's first boot)."""
    out = cert(cfg, f"api-{rec.name}")
    if not out.cert.exists():
        pki.issue(_ca(cfg), pki_dir(cfg), f"api-{rec.name}", rec.name, ips=[rec.ip, "127.0.0.1"])
    return out


def etcd_args(cfg: LabConfig, mode: str) -> list[str]:
    """etcd's flags for ``mode``."""
    server = cert(cfg, "etcd")
    args = [f"--cert-file={server.cert}", f"--key-file={server.key}"]
    if mode == "cert":
        args += ["--client-cert-auth", f"--trusted-ca-file={_ca(cfg).cert}"]
    return args


def etcdctl_env(cfg: LabConfig, mode: str) -> dict[str, str]:
    """etcdctl as etcd's root user (ETCDCTL_* variables)."""
    env = {"ETCDCTL_CACERT": str(_ca(cfg).cert)}
    if mode == "cert":
        root = cert(cfg, "root")
        env |= {"ETCDCTL_CERT": str(root.cert), "ETCDCTL_KEY": str(root.key)}
    else:
        env["ETCDCTL_USER"] = f"root:{password(cfg, 'root')}"
    return env


def ssl_context(cfg: LabConfig, mode: str) -> ssl.SSLContext:
    """For the lab's own https requests to etcd (/health)."""
    ctx = ssl.create_default_context(cafile=str(_ca(cfg).cert))
    if mode == "cert":
        root = cert(cfg, "root")
        ctx.load_cert_chain(str(root.cert), str(root.key))
    return ctx


def _etcdctl(cfg: LabConfig, mode: str, endpoints: Sequence[str], args: Sequence[str],
             stdin: str | None = None) -> None:
    """etcdctl before auth is on: TLS only (with root's certificate in cert mode)."""
    env = {**os.environ, "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": ",".join(endpoints),
           "ETCDCTL_CACERT": str(_ca(cfg).cert)}
    env.pop("ETCDCTL_USER", None)
    if mode == "cert":
        root = cert(cfg, "root")
        env |= {"ETCDCTL_CERT": str(root.cert), "ETCDCTL_KEY": str(root.key)}
    done = subprocess.run(["etcdctl", "--dial-timeout=3s", *args], input=stdin, env=env,
                          capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise LabError(f"etcdctl {' '.join(args[:2])}: {why}")


def enable_auth(cfg: LabConfig, mode: str, endpoints: Sequence[str]) -> None:
    """Users root, fleetd, fleetctl; role fleetpy on /fleetpy/; then auth on."""

    def run(*args: str, stdin: str | None = None) -> None:
        _etcdctl(cfg, mode, endpoints, args, stdin)

    run("user", "add", "root", "--interactive=false", stdin=password(cfg, "root") + "\n")
    run("user", "grant-role", "root", "root")
    run("role", "add", ROLE)
    run("role", "grant-permission", ROLE, "readwrite", PREFIX, "--prefix=true")
    for user in USERS:
        run("user", "add", user, "--interactive=false", stdin=password(cfg, user) + "\n")
        run("user", "grant-role", user, ROLE)
    run("auth", "enable")


def fleetd_dropin(cfg: LabConfig, mode: str, rec: HostRecord) -> str:
    """fleet.service drop-in lines: etcd's TLS and identity, the API's TLS.

    Later ``Environment=`` lines win, so these override the plain API address.
    """
    ca, api = _ca(cfg).cert, host_cert(cfg, rec)
    lines = [
        f"FLEET_API_TCP=https://{rec.ip}:{FLEET_API_PORT}",
        f"FLEET_API_CERTFILE={api.cert}",
        f"FLEET_API_KEYFILE={api.key}",
        f"FLEET_API_CAFILE={ca}",
        f"FLEET_ETCD_CAFILE={ca}",
    ]
    text = "".join(f"Environment={line}\n" for line in lines)
    if mode == "cert":
        fleetd = cert(cfg, "fleetd")
        text += f"Environment=FLEET_ETCD_CERTFILE={fleetd.cert}\n"
        text += f"Environment=FLEET_ETCD_KEYFILE={fleetd.key}\n"
    else:
        secret = pki_dir(cfg) / "fleetd.env"
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(f"FLEET_ETCD_USERNAME=fleetd\n"
                              f"FLEET_ETCD_PASSWORD={password(cfg, 'fleetd')}\n")
        text += f"EnvironmentFile={secret}\n"
    return text


def client_env(cfg: LabConfig, mode: str) -> Mapping[str, str]:
    """What `fleetlab env` exports for a secure lab: fleetctl's TLS files and etcd
    identity (user fleetctl), etcdctl as root (the https:// API endpoints: access.py)."""
    ca, me = _ca(cfg).cert, cert(cfg, "fleetctl")
    env = {"FLEETCTL_CA_FILE": str(ca), "FLEETCTL_CERT_FILE": str(me.cert),
           "FLEETCTL_KEY_FILE": str(me.key)}
    if mode == "password":
        env |= {"FLEETCTL_ETCD_USERNAME": "fleetctl",
                "FLEETCTL_ETCD_PASSWORD": password(cfg, "fleetctl")}
    return env | etcdctl_env(cfg, mode)


def etcd_access(cfg: LabConfig, mode: str) -> tuple[ssl.SSLContext | None, dict[str, str]]:
    """How the lab itself reaches its etcd: TLS context (/health), etcdctl's variables."""
    if not mode:
        return None, {}
    return ssl_context(cfg, mode), etcdctl_env(cfg, mode)
