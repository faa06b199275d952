"""Why a TLS peer may have refused our client certificate, as far as we can tell here.

Under TLS 1.3 the server's verdict on our certificate arrives after the
handshake, as a bare alert or a closed socket, so clients (the etcd client,
fleetctl's API client) look at the certificate themselves with the openssl
command: expired? signed by the CA we were given? Only on that error path.
"""

from __future__ import annotations

import subprocess


def _openssl(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def certificate_problem(cert_file: str, ca_file: str | None, peer: str) -> str:
    """A sentence on what is wrong with ``cert_file`` for ``peer`` (e.g. "etcd")."""
    done = _openssl("x509", "-noout", "-checkend", "0", "-enddate", "-in", cert_file)
    if done is not None and "will expire" in done.stdout:
        end = done.stdout.split("notAfter=", 1)[-1].splitlines()[0]
        return f"{cert_file} has expired ({end})"
    if ca_file:
        done = _openssl("verify", "-CAfile", ca_file, cert_file)
        if done is not None and done.returncode != 0:
            return (f"{cert_file} is not signed by the CA in {ca_file} (the CA {peer} "
                    "trusts, if it is the same)")
    return (f"{cert_file} is not signed by a CA {peer} trusts, or is not valid for client use")
