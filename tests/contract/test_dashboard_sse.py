"""The dashboard's server-sent events on a real etcd: a registry change reaches an
open /events stream within 1 s, as a patch of the whole view sent on connecting
(units, machines, waiting, placements), with no reload."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fleetpy.api.transport import TlsFiles
from fleetpy.dashboard import DashboardService
from fleetpy.dashboard.patch import apply
from fleetpy.lab import pki
from fleetpy.model.types import TargetState
from fleetpy.registry.etcd import EtcdRegistry
from tests.contract.helpers import machine, scheduled, state, unit
from tests.fixtures.etcd import EtcdProcess

pytestmark = pytest.mark.etcd

LIVE = 1.0  # seconds: the most a change may take to reach the page


class Stream:
    """One GET /events connection, read event by event: the whole view first, then
    patches applied to it (``kinds``: each event's kind, in order)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.view: dict[str, Any] = {}
        self.kinds: list[str] = []

    @classmethod
    async def open(cls, port: int) -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"text/event-stream" in head
        return cls(reader, writer)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            block = (await self.reader.readuntil(b"\n\n")).decode()
            kind = next((line[len("event: "):] for line in block.splitlines()
                         if line.startswith("event: ")), "")
            for line in block.splitlines():
                if line.startswith("data: "):
                    data = json.loads(line[len("data: "):])
                    self.kinds.append(kind)
                    self.view = data if kind == "view" else apply(self.view, data)
                    yield self.view

    async def until(self, check: Callable[[dict[str, Any]], bool],
                    timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            async for view in self.events():
                if check(view):
                    return view
        raise AssertionError("stream ended")


def _unit(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((u for u in view["units"] if u["name"] == name), None)


async def test_changes_reach_an_open_event_stream_within_a_second(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    service = await DashboardService.start(registry, "m1", "127.0.0.1:0", None)
    stream = await Stream.open(service.port)
    try:
        first = await stream.until(lambda v: True, 5.0)
        assert first["units"] == [] and first["machines"] == []
        assert stream.kinds == ["view"]

        start = time.monotonic()
        await registry.create_unit(unit("web.service"), TargetState.LAUNCHED)
        view = await stream.until(lambda v: _unit(v, "web.service") is not None, LIVE)
        took = time.monotonic() - start
        assert _unit(view, "web.service") == {
            "name": "web.service", "desired": "launched", "hash": unit("web.service").hash,
            "placements": [], "waiting": ""}
        assert took < LIVE
        print(f"create_unit -> event on the stream: {took * 1000:.0f} ms")

        lease = await registry.grant_lease(10)
        start = time.monotonic()
        await registry.register_machine(machine("m1", "10.0.0.7", region="east"), lease)
        token = await registry.campaign("m1", lease)
        assert token is not None
        await registry.apply_schedule(token, [scheduled("web.service", "m1")], [],
                                      waiting={"db.service": "no machine has disk=ssd"})
        await registry.put_unit_states([state("web.service", "m1")], lease)

        def placed(v: dict[str, Any]) -> bool:
            u = _unit(v, "web.service")
            return bool(u and u["placements"] and u["placements"][0]["active"] == "active")

        view = await stream.until(placed, LIVE)
        assert time.monotonic() - start < LIVE + 0.5  # four writes, each in etcd
        assert view["machines"] == [{
            "id": "m1", "ip": "10.0.0.7", "metadata": {"region": "east"}, "state": "ready",
            "leader": True}]
        assert view["units"][0]["placements"] == [{
            "machine": "m1", "ip": "10.0.0.7", "state": "launched", "load": "loaded",
            "active": "active", "sub": "running", "hash": "h1"}]
        assert view["waiting"] == [{"name": "db.service", "reason": "no machine has disk=ssd"}]
        assert [(p["unit"], p["machine"], p["action"]) for p in view["placements"]] == [
            ("web.service", "m1", "placed")]

        start = time.monotonic()
        await registry.destroy_unit("web.service")
        view = await stream.until(lambda v: _unit(v, "web.service") is None, LIVE)
        assert time.monotonic() - start < LIVE
        assert stream.kinds[1:] == ["patch"] * (len(stream.kinds) - 1)  # never the view again
        await lease.revoke()
    finally:
        stream.writer.close()
        await service.stop()
        await registry.close()


async def test_state_page_and_static_files_are_served(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    await registry.create_unit(unit("a.service"), TargetState.INACTIVE)
    service = await DashboardService.start(registry, "m1", "127.0.0.1:0", None)
    try:
        async def get(path: str, method: str = "GET") -> tuple[bytes, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         .encode())
            data = await reader.read()
            writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            return head, body

        head, body = await get("/")
        assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head
        assert b"/static/app.js" in body and b"<table id=\"units\"" in body
        head, body = await get("/static/app.js")
        assert head.startswith(b"HTTP/1.1 200") and b"EventSource" in body
        head, body = await get("/api/state")
        assert [u["name"] for u in json.loads(body)["units"]] == ["a.service"]
        head, _ = await get("/", "POST")
        assert head.startswith(b"HTTP/1.1 405")
        head, _ = await get("/static/../../etc/passwd")
        assert head.startswith(b"HTTP/1.1 404")
        head, body = await get("/api/journal/a.service")
        assert json.loads(body)["here"] is False  # not scheduled here: no journalctl
        head, body = await get("/api/journal/-x")
        assert head.startswith(b"HTTP/1.1 400")
    finally:
        await service.stop()
        await registry.close()


def _https_get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), conn.sock.selected_alpn_protocol()
    finally:
        conn.close()


async def test_tls_and_client_certificates_as_the_api(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    ca = pki.make_ca(tmp_path, "dashboard test CA")
    server_cert = pki.issue(ca, tmp_path, "api", "api", ips=["127.0.0.1"])
    me = pki.issue(ca, tmp_path, "client", "client")
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    tls = TlsFiles(str(ca.cert), str(server_cert.cert), str(server_cert.key))
    service = await DashboardService.start(registry, "m1", "127.0.0.1:0", tls)
    try:
        with_cert = ssl.create_default_context(cafile=str(ca.cert))
        with_cert.load_cert_chain(str(me.cert), str(me.key))
        with_cert.set_alpn_protocols(["h2", "http/1.1"])  # as a browser offers
        status, body, alpn = await asyncio.to_thread(_https_get, service.port, "/", with_cert)
        assert status == 200 and b"/static/app.js" in body
        assert alpn == "http/1.1"  # never h2: the page is served over HTTP/1.1
        without = ssl.create_default_context(cafile=str(ca.cert))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.to_thread(_https_get, service.port, "/", without)
    finally:
        await service.stop()
        await registry.close()
