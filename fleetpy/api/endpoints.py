"""fleetctl's list of fleet API endpoints and the failover decisions (pure: no I/O).

``--endpoint``/FLEETCTL_ENDPOINT takes ``URL[,URL...]`` (as etcd's tools take
their endpoints). A request goes to the endpoint that answered last, then to
the others in list order (:func:`attempt_order`), all within the one request
timeout: each endpoint gets a connect deadline, a share of the time left
(:func:`connect_deadline`), so that a dead member costs that share and not the
whole timeout. Only failures that cannot have reached a server, or requests
that are harmless to repeat (reads), go on to the next endpoint
(:func:`may_fail_over`): a write that reached fleetd is never sent twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetpy.api.transport import parse_endpoint

MIN_CONNECT = 0.25  # an endpoint gets at least this long to connect (when time is left)
NO_LIMIT_CONNECT = 2.0  # connect deadline of each endpoint but the last without a timeout
TRANSPORT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


def split_endpoints(spec: str) -> list[str]:
    """``a,b,c`` -> the endpoints, each checked; ValueError naming a malformed one.

    Blanks around commas are ignored, and a repeated endpoint is kept once.
    """
    endpoints: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        parse_endpoint(item)  # ValueError names it
        if item not in endpoints:
            endpoints.append(item)
    if not endpoints:
        raise ValueError(f"no fleet API endpoint in {spec!r}")
    return endpoints


def attempt_order(count: int, current: int) -> list[int]:
    """The endpoint that answered last (``current``) first, then the others in list order."""
    return [current, *(i for i in range(count) if i != current)]


def connect_deadline(remaining: float | None, left: int) -> float | None:
    """How long the next endpoint may take to connect.

    ``remaining``: seconds left of the request timeout (None: no timeout);
    ``left``: endpoints still to try, this one included. The last one gets
    all the time left; the others an even share, at least MIN_CONNECT.
    """
    if remaining is None:
        return None if left <= 1 else NO_LIMIT_CONNECT
    if left <= 1:
        return max(remaining, 0.0)
    return min(max(remaining / left, MIN_CONNECT), max(remaining, 0.0))


def may_fail_over(connected: bool, code: str, read: bool) -> bool:
    """May a failed attempt be tried on the next endpoint?

    Yes when the endpoint never connected (nothing was sent); when it had,
    only a read that failed in transport (connection lost, no answer in
    time, or a fleetd that cannot reach etcd): repeating a read is harmless.
    A write that may have reached fleetd, and every answer fleetd gave
    (unknown unit, bad input, permission) are final.
    """
    if not connected:
        return True
    return read and code in TRANSPORT_CODES


def tried_message(tried: Sequence[tuple[str, str]]) -> str:
    """``cannot reach the fleet API (tried A, B): why``, or ``...: A: why; B: why``
    when they failed differently: the words of --driver etcd's errors."""
    from fleetpy.registry.endpoints import unreachable_message  # only when all failed

    return unreachable_message(tried, "the fleet API")


def seconds(value: float) -> str:
    """1.4999 -> "1.5s": how long an endpoint was given, for messages."""
    return f"{round(value, 1):g}s"


def short_reason(code: str, detail: str, timeout: float | None) -> str:
    """A few words for why an endpoint failed, from gRPC's status code and detail."""
    if code == "DEADLINE_EXCEEDED":
        return f"no answer within {seconds(timeout)}" if timeout is not None else "no answer"
    lower = detail.lower()
    for needle, words in (
        ("permission denied", "permission denied: run as root or as a member of the "
                              "socket's group"),
        ("connection refused", "connection refused"),
        ("no route to host", "no route to host"),
        ("no such file", "no socket: is fleetd running?"),
        ("dns resolution failed", "cannot resolve the host"),
        ("connection reset", "connection reset"),
        ("socket closed", "connection closed"),
        ("timed out", "connection attempt timed out"),
    ):
        if needle in lower:
            return words
    if code == "UNAVAILABLE" and not lower.startswith("failed to connect"):
        return f"fleetd answered: {detail}"  # e.g. its etcd is out of reach
    return detail or code
