"""A lab's certificates, made with the openssl command under ``<state>/pki``.

One CA per lab (``ca.pem``, ``ca-key.pem``); every certificate is an EC
P-256 key signed by it, as ``NAME.pem`` and ``NAME-key.pem`` (0600):

- ``etcd``: the etcd members' server certificate (the bridge address);
- ``api-HOST``: fleetd's API certificate on HOST (the host's address);
- ``fleetd``, ``root``: client certificates (the CN is etcd's user name).

Tests make more (another CA, an expired certificate) with ``issue``.
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetpy.lab.errors import LabError

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
DAYS = 30


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False,
                          timeout=30)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise LabError(f"openssl {args[0]}: {why}")


def make_ca(d: Path, cn: str) -> Cert:
    """A new CA in ``d`` (kept if it is there already)."""
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = Cert(d / "ca.pem", d / "ca-key.pem")
    if not ca.cert.exists():
        _openssl("req", "-x509", *CURVE, "-keyout", str(ca.key), "-out", str(ca.cert),
                 "-days", str(DAYS), "-subj", f"/CN={cn}")
        ca.key.chmod(0o600)
    return ca


def issue(
    ca: Cert,
    d: Path,
    name: str,
    cn: str,
    ips: Sequence[str] = (),
    dns: Sequence[str] = (),
    days: int = DAYS,
) -> Cert:
    """A certificate for server and client use, signed by ``ca``; ``days`` < 0: expired."""
    out = Cert(d / f"{name}.pem", d / f"{name}-key.pem")
    alt = [f"IP:{ip}" for ip in ips] + [f"DNS:{n}" for n in dns]
    ext = "extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    if alt:
        ext += f"subjectAltName={','.join(alt)}\n"
    with tempfile.TemporaryDirectory() as tmp:
        csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        extfile.write_text(ext)
        _openssl("req", "-new", *CURVE, "-keyout", str(out.key), "-out", str(csr),
                 "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
                 "-set_serial", f"0x{secrets.token_hex(8)}", "-days", str(days),
                 "-extfile", str(extfile), "-out", str(out.cert))
    out.key.chmod(0o600)
    return out
