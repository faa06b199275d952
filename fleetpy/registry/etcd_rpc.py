"""etcd's protobuf messages (aetcd's generated stubs) <-> the typed kv layer."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from aetcd import rpc

from fleetpy.registry.kv import (
    Compare,
    Delete,
    EventType,
    KeyValue,
    KVEvent,
    Op,
    OpResult,
    Put,
    Target,
)

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lags grpcio

TARGETS = {
    Target.VALUE: (rpc.Compare.VALUE, "value"),
    Target.CREATE: (rpc.Compare.CREATE, "create_revision"),
    Target.MOD: (rpc.Compare.MOD, "mod_revision"),
    Target.VERSION: (rpc.Compare.VERSION, "version"),
    Target.LEASE: (rpc.Compare.LEASE, "lease"),
}


def channel_options(keepalive_time: float, keepalive_timeout: float) -> list[tuple[str, int]]:
    """gRPC channel arguments: keepalive pings on open streams, quick reconnects.

    etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time)
    and pings without an open call, so pings are sent only while a call
    (a watch) is open. Reconnect backoff is capped at 1 s (gRPC's default cap
    of 120 s would keep a client away long after etcd came back). gRPC sends
    no ping sooner than 5 min after the last one and waits 60 s for its answer
    unless told otherwise: without the two ``http2`` settings a watch on a
    frozen member was not cut within 40 s.
    """
    return [
        ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.http2.min_time_between_pings_ms", int(keepalive_time * 1000)),
        ("grpc.http2.ping_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_receive_message_length", 256 * 2**20),
        ("grpc.enable_retries", 0),
    ]


def reason(error: grpc.aio.AioRpcError, timeout: float) -> str:
    """A short human reason for an RPC failure."""
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timed out after {timeout:g}s"
    details = error.details() or error.code().name
    lower = details.lower()
    tls = _tls_reason(details)
    if tls is not None:
        return tls
    for needle, short in (
        ("connection refused", "connection refused"),
        ("no route to host", "no route to host"),
        ("dns resolution failed", "cannot resolve host"),
        ("handshake", f"TLS handshake failed ({details})"),
        ("socket closed", "connection closed"),
        ("connection reset", "connection reset"),
        ("timed out", "connection attempt timed out"),
    ):
        if needle in lower:
            return short
    return details


CLIENT_CERT_REFUSED = "TLS: etcd refused our client certificate"


def _tls_reason(details: str) -> str | None:
    """TLS failures, said plainly (gRPC reports them in OpenSSL's words)."""
    if "CERTIFICATE_VERIFY_FAILED" in details:
        why = details.rsplit("CERTIFICATE_VERIFY_FAILED:", 1)[-1].split(":")[0].strip()
        if "expired" in why:
            return f"TLS: etcd's certificate has expired ({why})"
        return (f"TLS: etcd's certificate is not trusted ({why or 'verify failed'}): "
                "give the CA that signed it (etcd_cafile, fleetctl --ca-file)")
    # TLS 1.3: the server's verdict on our certificate arrives as an alert
    # after the handshake, which gRPC reports as a decryption failure.
    if any(n in details for n in ("TSI_DATA_CORRUPTED", "ALERT_BAD_CERTIFICATE",
                                  "CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA",
                                  "ALERT_CERTIFICATE_EXPIRED")):
        return CLIENT_CERT_REFUSED
    if "WRONG_VERSION_NUMBER" in details:
        return "TLS: etcd does not speak TLS there: use an http:// endpoint"
    return None


def kv_from(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key,
        value=kv.value,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
    )


def event_from(event: Any) -> KVEvent:
    kind = EventType.DELETE if event.type == rpc.Event.DELETE else EventType.PUT
    return KVEvent(kind, kv_from(event.kv))


def compare_to(compare: Compare) -> Any:
    target, field = TARGETS[compare.target]
    message = rpc.Compare(key=compare.key, result=rpc.Compare.EQUAL, target=target)
    setattr(message, field, compare.value)
    return message


def op_to(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key, value=op.value, lease=op.lease))
    if isinstance(op, Delete):
        request = rpc.DeleteRangeRequest(key=op.key, range_end=op.range_end or b"")
        return rpc.RequestOp(request_delete_range=request)
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=op.key, range_end=op.range_end or b""))


def op_result_from(response: Any) -> OpResult:
    kind = response.WhichOneof("response")
    if kind == "response_range":
        return OpResult(kvs=[kv_from(kv) for kv in response.response_range.kvs])
    if kind == "response_delete_range":
        return OpResult(deleted=int(response.response_delete_range.deleted))
    return OpResult()
