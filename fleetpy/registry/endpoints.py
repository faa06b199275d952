"""etcd endpoint lists and the messages that name them (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
DEFAULT_PORT = 2379


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL: ``url`` as shown to people, ``target`` as gRPC dials it."""

    url: str
    target: str
    secure: bool


def parse_endpoints(spec: str | Sequence[str]) -> list[Endpoint]:
    """Parse ``http://a:4001,https://b:4002`` (or a list of URLs) into endpoints.

    A URL without scheme is http, without port 2379. ``unix:///path`` and
    ``unixs:///path`` name a unix socket. Raises ValueError on a bad URL.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    result: list[Endpoint] = []
    for item in items:
        raw = item.strip().rstrip("/")
        if not raw:
            continue
        if "://" not in raw:
            raw = "http://" + raw
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme in ("unix", "unixs"):
            path = parts.netloc + parts.path
            if not path:
                raise ValueError(f"etcd endpoint {item!r}: no socket path")
            result.append(Endpoint(f"{scheme}://{path}", f"unix:{path}", scheme == "unixs"))
            continue
        if scheme not in ("http", "https"):
            raise ValueError(f"etcd endpoint {item!r}: scheme must be http, https, unix or unixs")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"etcd endpoint {item!r}: bad port") from None
        host = parts.hostname
        if not host:
            raise ValueError(f"etcd endpoint {item!r}: no host")
        host = f"[{host}]" if ":" in host else host
        result.append(Endpoint(f"{scheme}://{host}:{port}", f"{host}:{port}", scheme == "https"))
    if not result:
        raise ValueError("no etcd endpoint given")
    return result


def unreachable_message(failures: Sequence[tuple[str, str]], what: str = "etcd") -> str:
    """``cannot reach etcd (tried URL, URL): reason`` from (url, reason) pairs.

    One reason is shown once when every endpoint failed the same way, otherwise
    each endpoint's reason is given. ``what``: "the fleet API" for fleetctl's
    API endpoints (fleetpy.api.endpoints), in the same words.
    """
    urls = ", ".join(url for url, _ in failures)
    reasons = list(dict.fromkeys(reason for _, reason in failures))
    if len(reasons) == 1:
        why = reasons[0]
    else:
        why = "; ".join(f"{url}: {reason}" for url, reason in failures)
    return f"cannot reach {what} (tried {urls}): {why}"
