"""fleetctl's endpoint lists: the pure decisions, then failover between real local
gRPC API servers (over MemoryRegistry) on 127.0.0.1.

A "mute" endpoint is a listening socket nobody serves: the kernel accepts the
connection, no HTTP/2 answer ever comes, as with a frozen or unreachable member.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fleetpy.api import endpoints as ep
from fleetpy.api.client import ApiDriver
from fleetpy.api.failover import KEEPALIVE_TIME
from fleetpy.api.server import start_api_server
from fleetpy.api.transport import TlsFiles
from fleetpy.lab import pki
from fleetpy.lab.access import api_endpoints
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import RegistryError
from fleetpy.registry.memory import MemoryRegistry

HELLO = make_unit_file("hello.service", "[Service]\nExecStart=/bin/true\n")
OTHER = make_unit_file("other.service", "[Service]\nExecStart=/bin/true\n")


# -- pure -----------------------------------------------------------------------


def test_split_endpoints() -> None:
    assert ep.split_endpoints(" http://a:1 , https://b:2,,http://a:1,unix:///x.sock") == [
        "http://a:1", "https://b:2", "unix:///x.sock"]
    with pytest.raises(ValueError, match="'nohost'"):
        ep.split_endpoints("http://a:1,nohost")
    with pytest.raises(ValueError, match="no fleet API endpoint"):
        ep.split_endpoints(" , ")


def test_attempt_order_starts_with_the_last_good_one() -> None:
    assert ep.attempt_order(3, 0) == [0, 1, 2]
    assert ep.attempt_order(3, 1) == [1, 0, 2]
    assert ep.attempt_order(3, 2) == [2, 0, 1]
    assert ep.attempt_order(1, 0) == [0]


def test_connect_deadline_shares_the_time_left() -> None:
    assert ep.connect_deadline(3.0, 3) == pytest.approx(1.0)
    assert ep.connect_deadline(2.0, 2) == pytest.approx(1.0)
    assert ep.connect_deadline(2.0, 1) == pytest.approx(2.0)  # the last gets it all
    assert ep.connect_deadline(0.3, 3) == pytest.approx(ep.MIN_CONNECT)
    assert ep.connect_deadline(0.1, 3) == pytest.approx(0.1)  # never more than is left
    assert ep.connect_deadline(-0.5, 1) == 0.0
    assert ep.connect_deadline(None, 2) == ep.NO_LIMIT_CONNECT
    assert ep.connect_deadline(None, 1) is None


@pytest.mark.parametrize(
    ("connected", "code", "read", "moves_on"),
    [
        (False, "UNAVAILABLE", False, True),  # nothing was sent: even a write moves on
        (False, "DEADLINE_EXCEEDED", False, True),
        (True, "UNAVAILABLE", True, True),  # a read: harmless to repeat
        (True, "DEADLINE_EXCEEDED", True, True),
        (True, "UNAVAILABLE", False, False),  # a write fleetd may have applied
        (True, "DEADLINE_EXCEEDED", False, False),
        (True, "NOT_FOUND", True, False),  # fleetd's answer is the answer
        (True, "INVALID_ARGUMENT", False, False),
        (True, "PERMISSION_DENIED", True, False),
    ],
)
def test_may_fail_over(connected: bool, code: str, read: bool, moves_on: bool) -> None:
    assert ep.may_fail_over(connected, code, read) is moves_on


def test_tried_message_names_every_endpoint() -> None:
    assert ep.tried_message([("http://a:1", "no answer within 1s"),
                             ("http://b:1", "connection refused")]) == (
        "cannot reach the fleet API (tried http://a:1, http://b:1): "
        "http://a:1: no answer within 1s; http://b:1: connection refused")
    assert ep.tried_message([("https://a:1", "bad cert"), ("https://b:1", "bad cert")]) == (
        "cannot reach the fleet API (tried https://a:1, https://b:1): bad cert")


def test_short_reason() -> None:
    assert ep.short_reason("DEADLINE_EXCEEDED", "Deadline Exceeded", 1.4999) == (
        "no answer within 1.5s")
    assert ep.short_reason("UNAVAILABLE", "failed to connect to all addresses; last error: "
                           "UNKNOWN: ipv4:1.2.3.4:5: Failed to connect to remote host: "
                           "Connection refused", 1.0) == "connection refused"
    assert ep.short_reason("UNAVAILABLE", "cannot reach etcd (tried http://e:2379): x",
                           1.0) == "fleetd answered: cannot reach etcd (tried http://e:2379): x"


def test_fleetlab_env_lists_every_host_running_ones_first() -> None:
    hosts = [("172.17.8.101", False), ("172.17.8.102", True), ("172.17.8.103", True)]
    assert api_endpoints(hosts, "http") == (
        "http://172.17.8.102:49153,http://172.17.8.103:49153,http://172.17.8.101:49153")
    assert api_endpoints([("10.0.0.1", True)], "https") == "https://10.0.0.1:49153"


# -- real servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def mute() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@asynccontextmanager
async def api(registry: MemoryRegistry, tls: TlsFiles | None = None,
              scheme: str = "http") -> AsyncIterator[str]:
    port = free_port()
    server = await start_api_server(registry, [f"{scheme}://127.0.0.1:{port}"], tls)
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_a_dead_first_endpoint_costs_a_share_of_the_timeout(mute: str) -> None:
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.LAUNCHED)
    refused = f"http://127.0.0.1:{free_port()}"
    async with api(registry) as live:
        client = ApiDriver(f"{mute},{refused},{live}", request_timeout=6.0)
        try:
            started = time.monotonic()
            units = await client.list_units()
            first = time.monotonic() - started
            assert [u.unit.name for u in units] == ["hello.service"]
            # the mute member had its share (2 s), not the whole 6 s
            assert first < 6.0
            started = time.monotonic()
            assert await client.get_unit("hello.service") is not None
            # the member that answered is asked first now: no share paid again
            assert time.monotonic() - started < 2.0
        finally:
            await client.close()


async def test_every_endpoint_down_names_each_and_why(mute: str) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    client = ApiDriver(f"{mute},{refused}", request_timeout=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(RegistryError) as info:
            await client.list_machines()
    finally:
        await client.close()
    assert str(info.value) == (f"cannot reach the fleet API (tried {mute}, {refused}): "
                               f"{mute}: no answer within 1s; {refused}: connection refused")
    assert time.monotonic() - started < 4.0  # within the request timeout, give or take


async def test_reads_move_on_and_writes_fleetd_answered_do_not() -> None:
    class EtcdGone(MemoryRegistry):
        async def list_units(self):  # type: ignore[no-untyped-def]
            raise RegistryError("cannot reach etcd (tried http://e:2379): refused")

        async def create_unit(self, unit, desired):  # type: ignore[no-untyped-def]
            raise RegistryError("etcd txn at http://e:2379 failed: timed out; "
                                "the write may or may not have been applied")

    good = MemoryRegistry()
    await good.create_unit(HELLO, TargetState.LOADED)
    async with api(EtcdGone()) as broken, api(good) as live:
        client = ApiDriver(f"{broken},{live}")
        try:
            # a read fleetd could not answer is asked of the next member
            assert [u.unit.name for u in await client.list_units()] == ["hello.service"]
            client._members.current = 0  # start with the broken member again
            with pytest.raises(RegistryError, match=f"fleet API at {broken}: etcd txn"):
                await client.create_unit(OTHER, TargetState.LAUNCHED)
            assert await good.get_unit("other.service") is None  # never sent twice
            # an answer (no such unit) is final too
            client._members.current = 0
            assert not await client.set_desired("hello.service", TargetState.LAUNCHED)
            hello = await good.get_unit("hello.service")
            assert hello is not None and hello.desired is TargetState.LOADED
        finally:
            await client.close()


async def test_a_blocking_wait_follows_the_units_to_the_next_member() -> None:
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.LOADED)
    port = free_port()
    first = await start_api_server(registry, [f"127.0.0.1:{port}"])
    async with api(registry) as second:
        client = ApiDriver(f"http://127.0.0.1:{port},{second}")
        stream = client.watch_units(["hello.service"])
        try:
            async with asyncio.timeout(20):
                assert (await anext(stream)).units["hello.service"].desired is TargetState.LOADED
                await first.stop(None)  # the member the watch was on is gone for good
                await registry.set_desired("hello.service", TargetState.LAUNCHED)
                snap = await anext(stream)
                while snap.units["hello.service"].desired is not TargetState.LAUNCHED:
                    snap = await anext(stream)
        finally:
            await stream.aclose()
            await client.close()


class Freezer:
    """A TCP relay to ``target`` that can freeze: it then holds every byte, both ways,
    with the connections open (a paused member)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            if self.frozen.is_set():
                await asyncio.Event().wait()  # hold it forever
            w.write(data)
            await w.drain()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(self._pipe(r, tw), self._pipe(tr, w))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()
            tw.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_wait_on_a_frozen_member_moves_on() -> None:
    """No FIN, no RST: only keepalive pings show that the member is gone."""
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.LOADED)
    port = free_port()
    behind = await start_api_server(registry, [f"127.0.0.1:{port}"])
    freezer = Freezer(port)
    frozen = await freezer.start()
    async with api(registry) as second:
        client = ApiDriver(f"{frozen},{second}")
        stream = client.watch_units(["hello.service"])
        try:
            async with asyncio.timeout(30):
                assert (await anext(stream)).units["hello.service"].desired is TargetState.LOADED
                freezer.frozen.set()
                await registry.set_desired("hello.service", TargetState.LAUNCHED)
                snap = await anext(stream)
                while snap.units["hello.service"].desired is not TargetState.LAUNCHED:
                    snap = await anext(stream)
        finally:
            await stream.aclose()
            await client.close()
            await freezer.close()
            await behind.stop(None)


async def test_keepalive_pings_do_not_cut_a_quiet_watch() -> None:
    """fleetd lets the client ping every KEEPALIVE_TIME (gRPC's server default answers
    a third ping within 5 min with GOAWAY, and the watch would be opened again)."""
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.LOADED)
    async with api(registry) as live:
        client = ApiDriver(live)
        stream = client.watch_units(["hello.service"])
        try:
            await asyncio.wait_for(anext(stream), 10)
            with pytest.raises(TimeoutError):  # nothing changed: no snapshot comes
                await asyncio.wait_for(anext(stream), 3 * KEEPALIVE_TIME + 2)
        finally:
            await stream.aclose()
            await client.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pki.Cert]:
    d: Path = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(d, "failover test CA")
    return {"ca": ca, "server": pki.issue(ca, d, "api", "api", ips=["127.0.0.1"]),
            "client": pki.issue(ca, d, "fleetctl", "fleetctl")}


async def test_https_endpoints_in_a_list(certs: dict[str, pki.Cert]) -> None:
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.LOADED)
    ca, server, me = certs["ca"], certs["server"], certs["client"]
    server_tls = TlsFiles(str(ca.cert), str(server.cert), str(server.key))
    down = f"https://127.0.0.1:{free_port()}"
    async with api(registry, server_tls, "https") as live:
        client = ApiDriver(f"{down},{live}",
                           tls=TlsFiles(str(ca.cert), str(me.cert), str(me.key)))
        try:
            assert [u.unit.name for u in await client.list_units()] == ["hello.service"]
        finally:
            await client.close()
        # without a client certificate every member refuses, and the error says so once
        async with api(registry, server_tls, "https") as also:
            client = ApiDriver(f"{live},{also}", tls=TlsFiles(str(ca.cert)))
            try:
                with pytest.raises(RegistryError) as info:
                    await client.list_units()
            finally:
                await client.close()
    assert str(info.value).startswith(f"cannot reach the fleet API (tried {live}, {also}): ")
    assert "client certificate" in str(info.value)



def test_fleetctl_takes_a_list() -> None:
    from click.testing import CliRunner

    from fleetpy.ctl.common import CtlEnv
    from fleetpy.ctl.main import main
    from tests.unit.test_ctl_support import M1, Cluster

    def invoke(*args: str) -> tuple[int, str, str]:
        r = CliRunner().invoke(main, list(args), obj=CtlEnv())
        return r.exit_code, r.stdout, r.stderr

    short = Path(tempfile.mkdtemp(prefix="ffo", dir="/tmp"))
    dead = "unix:///nonexistent/fleet.sock"
    try:
        with Cluster() as cluster:
            api = cluster.start_api(str(short / "fleet.sock"))
            code, out, err = invoke("--endpoint", f"{dead}, {api}", "list-machines", "-l")
            assert (code, err) == (0, "")
            assert M1.id in out
    finally:
        shutil.rmtree(short, ignore_errors=True)
    code, _, err = invoke("--endpoint", f"{dead},{dead}x", "--tunnel", "h", "list-units")
    assert code == 1 and "--tunnel reaches one endpoint from the member" in err
    code, _, err = invoke("--endpoint", f"{dead},nohost", "list-units")
    assert code == 1 and err.startswith("Error: Unable to initialize client: endpoint 'nohost'")
