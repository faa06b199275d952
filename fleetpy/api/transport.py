"""The API's transports: endpoints, TLS credentials, and failures in plain words.

Endpoints: ``unix:///var/run/fleet.sock``, ``http://host:port`` (plain
HTTP/2, labs only) and ``https://host:port`` (TLS: ``--ca-file`` checks the
server, ``--cert-file``/``--key-file`` is the client certificate a server may
require). No grpc import at module level: fleetctl imports this early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import grpc


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA that signs the peer, our certificate and its key ("" = none)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def __bool__(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)


def _read(path: str, what: str) -> bytes | None:
    if not path:
        return None
    from pathlib import Path  # only with TLS files: not on a plain command's start-up

    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path}: {e.strerror or e}") from None


def client_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    import grpc

    if bool(tls.cert_file) != bool(tls.key_file):
        raise ValueError("--cert-file and --key-file go together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file, "CA file"),
        private_key=_read(tls.key_file, "key file"),
        certificate_chain=_read(tls.cert_file, "certificate file"),
    )


def server_credentials(cert_file: str, key_file: str, ca_file: str) -> grpc.ServerCredentials:
    """The API's TLS: its certificate; with ``ca_file``, client certificates are required."""
    import grpc

    cert, key = _read(cert_file, "API certificate"), _read(key_file, "API key")
    if cert is None or key is None:
        raise ValueError("api_certfile and api_keyfile go together")
    ca = _read(ca_file, "API client CA")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """An --endpoint -> (gRPC target, TLS?). ValueError for a malformed one."""
    endpoint = endpoint.split(",")[0].strip()
    if endpoint.startswith(("unix:", "file:")):
        parts = urlsplit(endpoint)
        if parts.netloc:
            # "unix://var/run/fleet.sock" parses as host "var" (fleet says the same)
            raise ValueError(
                f'unable to connect to host "{parts.netloc}" with scheme "{parts.scheme}"'
            )
        if not parts.path.startswith("/"):
            raise ValueError(f"endpoint {endpoint!r}: the socket path must be absolute")
        return f"unix://{parts.path}", False
    secure = endpoint.startswith("https://")
    for scheme in ("https://", "http://"):
        if endpoint.startswith(scheme):
            endpoint = endpoint[len(scheme):]
    endpoint = endpoint.rstrip("/")
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"endpoint {endpoint!r}: expected unix:///path, http://host:port or https://host:port"
        )
    return endpoint, secure


# What gRPC's connection failures say -> what the user can do about it.
_TLS_REASONS = (
    ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not trusted: not signed by "
     "the CA in --ca-file, expired, or not made for this address"),
    ("certificate verify failed", "the server's certificate is not trusted: not signed by "
     "the CA in --ca-file, expired, or not made for this address"),
    ("CERTIFICATE_REQUIRED", "the server requires a client certificate "
     "(--cert-file and --key-file)"),
    ("CERTIFICATE_EXPIRED", "the server refused our client certificate: it has expired"),
    ("certificate expired", "the server refused our client certificate: it has expired"),
    ("UNKNOWN_CA", "the server refused our client certificate: not signed by a CA it trusts"),
    ("unknown ca", "the server refused our client certificate: not signed by a CA it trusts"),
    ("BAD_CERTIFICATE", "the server refused our client certificate"),
    ("WRONG_VERSION_NUMBER", "the server does not speak TLS: use http:// (labs only)"),
    ("wrong version number", "the server does not speak TLS: use http:// (labs only)"),
)


def explain(detail: str, secure: bool, tls: TlsFiles | None = None) -> str | None:
    """A plain reason for a TLS or protocol failure in gRPC's ``detail``; None if none."""
    for needle, why in _TLS_REASONS:
        if needle in detail:
            return why
    closed = any(n in detail for n in ("Socket closed", "Connection reset", "TSI_DATA_CORRUPTED"))
    if closed and not secure:
        return ("the connection was closed at once: does the server require TLS? "
                "use https:// with --ca-file")
    if closed:  # TLS 1.3: a refused client certificate shows as a closed connection
        if tls is None or not tls.cert_file:
            return ("the server closed the connection during TLS: it requires a client "
                    "certificate (--cert-file and --key-file)")
        from fleetpy.tlscheck import certificate_problem

        problem = certificate_problem(tls.cert_file, tls.ca_file or None, "the server")
        return f"the server refused our client certificate: {problem}"
    if secure and "handshake" in detail.lower():
        return f"TLS handshake failed ({detail})"
    return None
