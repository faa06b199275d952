"""The journal of a unit on another machine, fetched by this fleetd from that machine's
dashboard (server-side: the browser only ever talks to the fleetd serving its page).

Each fleetd serving a dashboard publishes its URL in its machine record
(``Machine.dashboard``, :func:`dashboard_url`). To show the journal of a unit
running elsewhere, the serving fleetd asks that machine's dashboard for
``/api/journal/<unit>?local=1`` (the unit name validated, then quoted; ``local``:
answer from that machine's own journal, never forward again), with the
dashboard's own TLS files as a client (its certificate as client certificate,
api_cafile to verify the other side) and a timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import ssl
import urllib.parse
from typing import Any

from fleetpy.api.transport import TlsFiles
from fleetpy.model.names import validate_unit_name

FETCH_TIMEOUT = 8.0  # s: the other side's journalctl has 5 s of its own
MAX_ANSWER = 1 << 20  # bytes: 50 journal lines are a few KB


class RemoteError(Exception):
    """The other machine's journal could not be fetched; the message says why."""


def dashboard_url(address: str, public_ip: str, secure: bool) -> str:
    """The URL other machines reach this fleetd's dashboard on ("" if they cannot).

    ``:8080`` (every address) -> ``http://<public_ip>:8080``; ``HOST:8080`` ->
    that host; a loopback host or port 0 is not reachable from elsewhere: "".
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0:
        return ""
    host = host.strip("[]")
    if host in ("", "::", "0.0.0.0"):
        host = public_ip
    if not host or host == "localhost":
        return ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return ""
    shown = f"[{host}]" if ip is not None and ip.version == 6 else host
    return f"{'https' if secure else 'http'}://{shown}:{int(port)}"


def parse_url(url: str) -> tuple[str, str, int]:
    """A machine record's dashboard URL -> (scheme, host, port); RemoteError if it is not
    ``http(s)://HOST:PORT`` and nothing else."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or port is None or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username is not None):
        raise RemoteError(f"its machine record has an invalid dashboard URL {url[:80]!r}")
    return parts.scheme, parts.hostname, port


def client_context(tls: TlsFiles | None) -> ssl.SSLContext | None:
    """This dashboard's TLS files as a client's: its certificate as the client certificate,
    api_cafile (else the system's CAs) to verify the other machine. None without TLS."""
    if tls is None or not tls.cert_file:
        return None
    ctx = ssl.create_default_context(
        cafile=os.path.expanduser(tls.ca_file) if tls.ca_file else None)
    ctx.load_cert_chain(os.path.expanduser(tls.cert_file), os.path.expanduser(tls.key_file))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def journal_target(name: str) -> str:
    """The request target for ``name``'s journal on the other machine (validated, quoted)."""
    validate_unit_name(name)
    return "/api/journal/" + urllib.parse.quote(name, safe="") + "?local=1"


async def fetch_journal(url: str, name: str, ctx: ssl.SSLContext | None,
                        timeout: float = FETCH_TIMEOUT) -> dict[str, Any]:
    """GET the journal of ``name`` from the dashboard at ``url``: its JSON answer."""
    scheme, host, port = parse_url(url)
    target = journal_target(name)
    if scheme == "https" and ctx is None:
        raise RemoteError(f"{url} uses TLS and this fleetd has no api_certfile to connect with")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None)
            try:
                writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                             "Accept: application/json\r\nConnection: close\r\n\r\n"
                             .encode("ascii"))
                data = await reader.read(MAX_ANSWER + 1)
                while data and len(data) <= MAX_ANSWER and not reader.at_eof():
                    more = await reader.read(MAX_ANSWER + 1 - len(data))
                    if not more:
                        break
                    data += more
            finally:
                writer.close()
    except TimeoutError:
        raise RemoteError(f"{url} gave no answer within {timeout:g}s") from None
    except (OSError, ssl.SSLError) as exc:
        raise RemoteError(f"cannot reach {url}: {exc.strerror or exc}") from None
    if len(data) > MAX_ANSWER:
        raise RemoteError(f"{url} answered more than {MAX_ANSWER} bytes")
    return _answer(url, data)


def _answer(url: str, data: bytes) -> dict[str, Any]:
    head, sep, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    fields = status_line.split(" ", 2)
    if not sep or len(fields) < 2 or not fields[0].startswith("HTTP/") \
            or not fields[1].isdigit():
        raise RemoteError(f"{url} did not answer HTTP: {status_line[:80]!r}")
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict):
        raise RemoteError(f"{url} answered {status_line[:80]!r} without a JSON object")
    if fields[1] != "200":
        error = obj.get("error")
        detail = error.get("message") if isinstance(error, dict) else None
        raise RemoteError(f"{url} answered {fields[1]}: {str(detail or '')[:200]}")
    if not all(isinstance(obj.get(k), str) for k in ("machine", "lines", "message")):
        raise RemoteError(f"{url} answered a JSON object without machine, lines and message")
    return obj
