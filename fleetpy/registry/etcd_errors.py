"""etcd failures in plain words: TLS, authentication, permissions (pure but for
the certificate check, which runs openssl only on that error path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from fleetpy.registry.base import LeaseLostError, RegistryError
from fleetpy.registry.etcd_rpc import CLIENT_CERT_REFUSED, reason

UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def read_pem(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path}: {e.strerror or e}") from None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the client is to etcd, for messages: its TLS files and user, and what it
    reads and writes (``scope``)."""

    cert_file: str | None = None
    ca_file: str | None = None
    username: str | None = None
    scope: str = "its keys"


def why_unusable(me: Identity, secure: bool, error: grpc.aio.AioRpcError, timeout: float) -> str:
    """Why an endpoint could not be used, with what to do about our TLS settings."""
    why = reason(error, timeout)
    if why == CLIENT_CERT_REFUSED:
        if me.cert_file is None:
            return ("TLS: etcd requires a client certificate (etcd_certfile and "
                    "etcd_keyfile; fleetctl --cert-file and --key-file)")
        from fleetpy.tlscheck import certificate_problem  # only when a certificate is refused

        return f"{why}: {certificate_problem(me.cert_file, me.ca_file, 'etcd')}"
    if why == "connection closed" and not secure:
        return "connection closed at once: does etcd require TLS? use https:// endpoints"
    return why


def translate(me: Identity, what: str, url: str, secure: bool, error: grpc.aio.AioRpcError,
              timeout: float) -> RegistryError:
    """The RegistryError for a failed call that is not retried elsewhere."""
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return LeaseLostError(f"etcd {what}: lease not found (expired or revoked)")
    if code in UNREACHABLE:
        return RegistryError(
            f"etcd {what} at {url} failed: {why_unusable(me, secure, error, timeout)}; "
            "the write may or may not have been applied"
        )
    if "authentication failed" in details:
        return RegistryError(f"etcd at {url} refused user {me.username!r}: wrong user "
                             "name or password (etcd_username/etcd_password)")
    if "user name is empty" in details:
        return RegistryError(
            f"etcd at {url} requires authentication: give a user and password "
            "(etcd_username and etcd_password; fleetctl --etcd-username and "
            "FLEETCTL_ETCD_PASSWORD) or a client certificate whose CN is an etcd user")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        who = (f"user {me.username!r}" if me.username
               else "the user our client certificate names (its CN)" if me.cert_file
               else "this client")
        return RegistryError(f"etcd at {url} denied {what} to {who}: its roles do not "
                             f"grant access to {me.scope} (etcd: permission denied)")
    return RegistryError(f"etcd {what} at {url} failed: {code.name}: {details}")
