"""fleet's v1 HTTP API on a real registry (etcd, and memory), next to the gRPC API.

The requests come from tests/fixtures/fleet_http.py, a client written from
fleet's API documentation; units created over HTTP are read back over gRPC
(fleetpy's ApiDriver) with fleet's hash, and the other way round.
"""

from __future__ import annotations

import asyncio
import http.client
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fleetpy.api.client import ApiDriver
from fleetpy.api.server import start_api_server
from fleetpy.api.transport import TlsFiles
from fleetpy.lab import pki
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.store import KVRegistry
from tests.contract.conftest import Cluster
from tests.contract.helpers import machine, state, unit
from tests.fixtures.fleet_http import FleetHttp, Reply, fleet_hash, options, serialize

T = TypeVar("T")

# fleet's unit/unit_test.go: this file hashes to this digest in fleet.
FLEET_EXAMPLE = [{"section": "Service", "name": "ExecStart", "value": "/bin/sleep 100"}]
FLEET_EXAMPLE_HASH = "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
PAGE = 100  # fleet's default token_limit


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kw)


@asynccontextmanager
async def serving(registry: KVRegistry) -> AsyncIterator[tuple[FleetHttp, str]]:
    tmp = tempfile.mkdtemp(prefix="fhttp", dir="/tmp")
    path = f"{tmp}/fleet.sock"
    server = await start_api_server(registry, [f"unix://{path}"])
    client = FleetHttp(socket_path=path)
    try:
        yield client, f"unix://{path}"
    finally:
        client.close()
        await server.stop(None)
        shutil.rmtree(tmp, ignore_errors=True)


def error(reply: Reply, status: int) -> str:
    """The documented error entity; returns its message."""
    assert reply.status == status, reply
    assert reply.content_type.startswith("application/json")
    assert reply.body["error"]["code"] == status
    message: str = reply.body["error"]["message"]
    return message


async def test_create_over_http_has_fleets_hash_over_grpc(registry: KVRegistry) -> None:
    async with serving(registry) as (http, address):
        reply = await call(http.put_unit, "sleep.service",
                           {"desiredState": "loaded", "options": FLEET_EXAMPLE})
        assert reply.status == 201 and reply.body is None
        grpc = ApiDriver(address)
        try:
            rec = await grpc.get_unit("sleep.service")
        finally:
            await grpc.close()
        assert rec is not None and rec.desired is TargetState.LOADED
        assert rec.unit.contents == "[Service]\nExecStart=/bin/sleep 100\n"
        assert rec.unit.hash == FLEET_EXAMPLE_HASH == fleet_hash(FLEET_EXAMPLE)
        got = await call(http.get, "/fleet/v1/units/sleep.service")
        assert got.status == 200
        assert got.body == {"name": "sleep.service", "options": FLEET_EXAMPLE,
                            "desiredState": "loaded"}


async def test_options_round_trip_both_ways(registry: KVRegistry) -> None:
    opts = options([
        ("Unit", [("Description", "Hello World"), ("After", "a.service"),
                  ("After", "b.service")]),
        ("Service", [("ExecStart", "/bin/sh -c 'while true; do echo hi; sleep 1; done'"),
                     ("Environment", "A=1 B=2")]),
        ("X-Fleet", [("Conflicts", "hello@*.service")]),
    ])
    text = serialize(opts)
    async with serving(registry) as (http, address):
        grpc = ApiDriver(address)
        try:
            # gRPC -> HTTP: a unit submitted as text reads back as its options.
            assert await grpc.create_unit(make_unit_file("a.service", text), TargetState.INACTIVE)
            got = await call(http.get, "/fleet/v1/units/a.service")
            assert got.status == 200 and got.body["options"] == opts
            # HTTP -> gRPC: the same options give the same contents and hash.
            assert (await call(http.put_unit, "b.service",
                               {"desiredState": "inactive", "options": opts})).status == 201
            a, b = await grpc.get_unit("a.service"), await grpc.get_unit("b.service")
        finally:
            await grpc.close()
        assert a is not None and b is not None
        assert b.unit.contents == a.unit.contents == text
        assert b.unit.hash == a.unit.hash == fleet_hash(opts)


async def test_desired_state_change_and_destroy(registry: KVRegistry) -> None:
    async with serving(registry) as (http, _):
        assert (await call(http.put_unit, "hello.service",
                           {"desiredState": "inactive", "options": FLEET_EXAMPLE})).status == 201
        reply = await call(http.put_unit, "hello.service", {"desiredState": "launched"})
        assert reply.status == 204 and reply.body is None
        rec = await registry.get_unit("hello.service")
        assert rec is not None and rec.desired is TargetState.LAUNCHED
        # the name may be repeated in the body
        reply = await call(http.put_unit, "hello.service",
                           {"name": "hello.service", "desiredState": "loaded"})
        assert reply.status == 204
        listed = await call(http.get, "/fleet/v1/units")
        assert [(u["name"], u["desiredState"]) for u in listed.body["units"]] == [
            ("hello.service", "loaded")]
        assert (await call(http.delete_unit, "hello.service")).status == 204
        assert await registry.get_unit("hello.service") is None
        assert await call(http.get, "/fleet/v1/units") == Reply(200, {}, "application/json")


async def test_units_pages_of_fleets_size(registry: KVRegistry) -> None:
    names = sorted(f"u{i:03}.service" for i in range(2 * PAGE + 50))
    created = await registry.create_units([unit(n) for n in names], TargetState.INACTIVE)
    assert all(created.values())
    async with serving(registry) as (http, _):
        pages = await call(http.all_pages, "/fleet/v1/units", "units")
    assert [len(p) for p in pages] == [PAGE, PAGE, 50]
    assert [u["name"] for p in pages for u in p] == names


async def test_token_limit_sets_the_page_size(registry: KVRegistry) -> None:
    names = [f"p{i}.service" for i in range(7)]
    assert all((await registry.create_units([unit(n) for n in names],
                                           TargetState.INACTIVE)).values())
    tmp = tempfile.mkdtemp(prefix="fhttp", dir="/tmp")
    server = await start_api_server(registry, [f"unix://{tmp}/fleet.sock"], token_limit=3)
    http = FleetHttp(socket_path=f"{tmp}/fleet.sock")
    try:
        pages = await call(http.all_pages, "/fleet/v1/units", "units")
        assert [len(p) for p in pages] == [3, 3, 1]
        # a token of fleet's default size is refused by a server of another size
        error(await call(http.get, "/fleet/v1/units?nextPageToken=ZAACAA=="), 400)
    finally:
        http.close()
        await server.stop(None)
        shutil.rmtree(tmp, ignore_errors=True)


async def test_state_filters_and_pages(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(30)
    on_m1 = [state(f"s{i:03}.service", "m1") for i in range(PAGE + 20)]
    await registry.put_unit_states(on_m1, lease)
    await registry.put_unit_states([state("s000.service", "m2", active="failed")], lease)
    async with serving(registry) as (http, _):
        everything = await call(http.all_pages, "/fleet/v1/state", "states")
        assert [len(p) for p in everything] == [PAGE, 21]
        only_m1 = await call(http.all_pages, "/fleet/v1/state", "states", machineID="m1")
        assert [len(p) for p in only_m1] == [PAGE, 20]
        assert {s["machineID"] for p in only_m1 for s in p} == {"m1"}
        one = await call(http.get, "/fleet/v1/state?unitName=s000.service")
        assert one.status == 200 and "nextPageToken" not in one.body
        assert sorted((s["machineID"], s["systemdActiveState"]) for s in one.body["states"]) == [
            ("m1", "active"), ("m2", "failed")]
        both = await call(http.get, "/fleet/v1/state?unitName=s000.service&machineID=m2")
        assert both.body == {"states": [{
            "name": "s000.service", "hash": "h1", "machineID": "m2",
            "systemdLoadState": "loaded", "systemdActiveState": "failed",
            "systemdSubState": "running"}]}


async def test_machines_with_metadata(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(30)
    await registry.register_machine(machine("m1", "10.0.0.1", region="us", disk="ssd"), lease)
    await registry.register_machine(machine("m2", "10.0.0.2"), lease)
    async with serving(registry) as (http, _):
        reply = await call(http.get, "/fleet/v1/machines")
    assert reply.status == 200
    assert reply.body == {"machines": [
        {"id": "m1", "primaryIP": "10.0.0.1", "metadata": {"region": "us", "disk": "ssd"}},
        {"id": "m2", "primaryIP": "10.0.0.2", "metadata": {}}]}


async def test_machines_pages(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(30)
    ids = [f"m{i:03}" for i in range(PAGE + 20)]
    for mid in ids:
        await registry.register_machine(machine(mid), lease)
    async with serving(registry) as (http, _):
        pages = await call(http.all_pages, "/fleet/v1/machines", "machines")
    assert [len(p) for p in pages] == [PAGE, 20]
    assert [m["id"] for p in pages for m in p] == ids


async def test_a_failing_registry_is_500_and_back(own_cluster: Cluster) -> None:
    registry = own_cluster.first
    async with serving(registry) as (http, _):
        await own_cluster.down()
        assert error(await call(http.get, "/fleet/v1/units"), 500)
        await own_cluster.up()
        for _ in range(100):  # the client reconnects
            if (await call(http.get, "/fleet/v1/units")).status == 200:
                break
            await asyncio.sleep(0.1)
        assert (await call(http.get, "/fleet/v1/units")).status == 200


async def test_every_error_status(registry: KVRegistry) -> None:
    async with serving(registry) as (http, _):
        assert "does not exist" in error(await call(http.get, "/fleet/v1/units/no.service"), 404)
        assert "does not exist" in error(await call(http.delete_unit, "no.service"), 404)
        error(await call(http.get, "/fleet/v1/nothing"), 404)
        error(await call(http.get, "/"), 405)
        error(await call(http.request, "POST", "/fleet/v1/units", {}), 405)
        error(await call(http.request, "PATCH", "/fleet/v1/units/a.service", {}), 405)
        # create without options: 409, nothing written
        assert "options" in error(
            await call(http.put_unit, "new.service", {"desiredState": "launched"}), 409)
        assert await registry.get_unit("new.service") is None
        # invalid entities: 400, nothing written
        for name, entity in [
            ("bad", {"desiredState": "launched", "options": FLEET_EXAMPLE}),  # no unit type
            ("new.service", {"name": "other.service", "desiredState": "launched",
                             "options": FLEET_EXAMPLE}),
            ("new.service", {"desiredState": "running", "options": FLEET_EXAMPLE}),
            ("new.service", {"desiredState": "launched",
                             "options": [{"section": "Service", "name": "Exec=Start",
                                          "value": "/bin/true"}]}),
            ("new.service", {"desiredState": "launched",
                             "options": [{"section": "Service", "name": "ExecStart",
                                          "value": "/bin/true\nExecStop=/bin/false"}]}),
            ("new.service", {"desiredState": "launched", "options": "ExecStart=/bin/true"}),
        ]:
            assert error(await call(http.put_unit, name, entity), 400), (name, entity)
        assert "decode" in error(await call(http.request, "PUT", "/fleet/v1/units/new.service",
                                            raw=b"{not json"), 400)
        error(await call(http.request, "PUT", "/fleet/v1/units/new.service",
                         {"desiredState": "launched", "options": FLEET_EXAMPLE},
                         content_type="text/plain"), 415)
        assert await registry.list_units() == []
        # an existing unit changed without desiredState: 409
        assert (await call(http.put_unit, "new.service",
                           {"desiredState": "launched", "options": FLEET_EXAMPLE})).status == 201
        error(await call(http.put_unit, "new.service", {}), 409)
        # page tokens: not base64, another page size, page 0
        for token in ("!!", "ZAAAAA==", "CgABAA=="):
            error(await call(http.get, f"/fleet/v1/units?nextPageToken={token}"), 400)
        error(await call(http.get, "/fleet/v1/state?nextPageToken=x&nextPageToken=y"), 400)


async def test_raw_http11_chunked_expect_and_keepalive(registry: KVRegistry) -> None:
    body = b'{"desiredState":"inactive","options":[{"section":"Service","name":"ExecStart",' \
           b'"value":"/bin/sleep 100"}]}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    async with serving(registry) as (_, address):
        reader, writer = await asyncio.open_unix_connection(address[len("unix://"):])
        writer.write(b"PUT /fleet/v1/units/c.service HTTP/1.1\r\nHost: fleet\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(chunked)
        assert (await reader.readline()).startswith(b"HTTP/1.1 201")
        await reader.readuntil(b"\r\n\r\n")
        # same connection, next request
        writer.write(b"GET /fleet/v1/units/c.service HTTP/1.1\r\nHost: fleet\r\n"
                     b"Connection: close\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert rest.startswith(b"HTTP/1.1 200") and b'"name":"c.service"' in rest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_tcp_serves_both_apis(registry: KVRegistry) -> None:
    port = free_port()
    server = await start_api_server(registry, [f"127.0.0.1:{port}"])
    http = FleetHttp(host="127.0.0.1", port=port)
    grpc = ApiDriver(f"http://127.0.0.1:{port}")
    try:
        assert (await call(http.put_unit, "t.service",
                           {"desiredState": "loaded", "options": FLEET_EXAMPLE})).status == 201
        rec = await grpc.get_unit("t.service")
        assert rec is not None and rec.unit.hash == FLEET_EXAMPLE_HASH
    finally:
        http.close()
        await grpc.close()
        await server.stop(None)


def https_get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def test_tls_with_client_certificates_for_both_apis(
        registry: KVRegistry, tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path, "http api test CA")
    server_cert = pki.issue(ca, tmp_path, "api", "api", ips=["127.0.0.1"])
    me = pki.issue(ca, tmp_path, "client", "client")
    port = free_port()
    server = await start_api_server(
        registry, [f"https://127.0.0.1:{port}"],
        TlsFiles(str(ca.cert), str(server_cert.cert), str(server_cert.key)))
    try:
        assert await registry.create_unit(unit("a.service"), TargetState.INACTIVE)
        with_cert = ssl.create_default_context(cafile=str(ca.cert))
        with_cert.load_cert_chain(str(me.cert), str(me.key))
        status, body = await call(https_get, port, "/fleet/v1/units", with_cert)
        assert status == 200 and b'"a.service"' in body
        grpc = ApiDriver(f"https://127.0.0.1:{port}",
                         tls=TlsFiles(str(ca.cert), str(me.cert), str(me.key)))
        try:
            assert [r.unit.name for r in await grpc.list_units()] == ["a.service"]
        finally:
            await grpc.close()
        # no client certificate: the HTTP API is refused like the gRPC API
        without = ssl.create_default_context(cafile=str(ca.cert))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await call(https_get, port, "/fleet/v1/units", without)
    finally:
        await server.stop(None)
