"""The gRPC API server and client over a MemoryRegistry, on one event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest

from fleetpy.api.client import ApiDriver, grpc_target
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.server import start_api_server
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import RegistryError
from fleetpy.registry.memory import MemoryRegistry

HELLO = make_unit_file(
    "hello.service", "[Unit]\nDescription=My Service\n[Service]\nExecStart=/bin/true\n")
M1 = Machine("4f4a4289a8f24d0ab6d1b6a5e2f6a001", "172.17.8.101", {"region": "us"})


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fapi", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@asynccontextmanager
async def serving(registry: MemoryRegistry, address: str) -> AsyncIterator[grpc.aio.Server]:
    server = await start_api_server(registry, [address])
    try:
        yield server
    finally:
        await server.stop(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_unix_socket_dir_mode_and_stale_socket(short_dir: Path) -> None:
    path = short_dir / "run" / "fleet.sock"
    stale = socket.socket(socket.AF_UNIX)
    path.parent.mkdir()
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a crashed fleetd leaves
    registry = MemoryRegistry()
    async with serving(registry, f"unix://{path}"):
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        client = ApiDriver(f"unix://{path}")
        assert await client.create_unit(HELLO, TargetState.INACTIVE)
        assert not await client.create_unit(HELLO, TargetState.LOADED)
        rec = await client.get_unit("hello.service")
        assert rec is not None and rec.unit == HELLO and rec.desired is TargetState.INACTIVE
        await client.close()


async def test_refuses_a_path_that_is_not_a_socket(short_dir: Path) -> None:
    (short_dir / "fleet.sock").write_text("not a socket")
    with pytest.raises(ValueError, match="not a socket"):
        await start_api_server(MemoryRegistry(), [f"unix://{short_dir}/fleet.sock"])
    with pytest.raises(ValueError, match="must be absolute"):
        await start_api_server(MemoryRegistry(), ["unix://relative.sock"])
    with pytest.raises(ValueError, match="expected host:port"):
        await start_api_server(MemoryRegistry(), ["localhost"])


async def test_tcp_and_unix_together(short_dir: Path) -> None:
    port = free_port()
    registry = MemoryRegistry()
    server = await start_api_server(registry, [f"unix://{short_dir}/f.sock", f"127.0.0.1:{port}"])
    try:
        for endpoint in (f"http://127.0.0.1:{port}", f"unix://{short_dir}/f.sock"):
            client = ApiDriver(endpoint)
            assert await client.list_units() == []
            await client.close()
    finally:
        await server.stop(None)


async def test_every_rpc_round_trips(short_dir: Path) -> None:
    registry = MemoryRegistry()
    lease = await registry.grant_lease(30)
    await registry.register_machine(M1, lease)
    token = await registry.campaign(M1.id, lease)
    assert token is not None
    async with serving(registry, f"unix://{short_dir}/f.sock"):
        c = ApiDriver(f"unix://{short_dir}/f.sock")
        await c.put_unit(HELLO, TargetState.LOADED)
        assert [r.unit.name for r in await c.list_units()] == ["hello.service"]
        assert await c.set_desired("hello.service", TargetState.LAUNCHED)
        assert not await c.set_desired("nope.service", TargetState.LAUNCHED)
        entry = ScheduledUnit("hello.service", M1.id, TargetState.LAUNCHED, HELLO.hash, "x")
        await registry.apply_schedule(token, [entry], [], {"other.service": "no machine"})
        state = UnitState("hello.service", M1.id, "loaded", "active", "running", HELLO.hash,
                          "launched", "stop: systemd stop hello.service: refused")
        await registry.put_unit_states([state], lease)
        assert await c.list_machines() == [M1]
        assert await c.list_schedule() == [entry]
        assert await c.list_schedule("someone-else") == []
        assert await c.list_unit_states() == [state]
        assert await c.list_unit_states(M1.id) == [state]
        assert await c.list_waiting() == {"other.service": "no machine"}
        assert await c.destroy_unit("hello.service")
        assert not await c.destroy_unit("hello.service")
        assert await c.get_unit("hello.service") is None
        await c.close()


async def test_status_codes(short_dir: Path) -> None:
    registry = MemoryRegistry()
    address = f"unix://{short_dir}/f.sock"
    async with serving(registry, address), grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.FleetStub(channel)  # type: ignore[no-untyped-call]

        async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call  # type: ignore[misc]
            return info.value.code(), info.value.details() or ""

        nf = grpc.StatusCode.NOT_FOUND
        assert await code_of(stub.GetUnit(pb.GetUnitRequest(name="x.service"))) == (
            nf, "Unit x.service not found")
        destroy = stub.DestroyUnit(pb.DestroyUnitRequest(name="x.service"))
        assert (await code_of(destroy))[0] == nf
        bad_name = pb.UnitFile(name="a/b.service", contents="[Unit]\n")
        bad_file = pb.UnitFile(name="a.service", contents="junk")
        bad_hash = pb.UnitFile(name="a.service", contents="[Unit]\n", hash="0" * 40)
        bad_xfleet = pb.UnitFile(name="a.service",
                                 contents="[X-Fleet]\nMachineID=1\nGlobal=true\n")
        launched = pb.TARGET_STATE_LAUNCHED
        for f in (bad_name, bad_file, bad_hash, bad_xfleet):
            code, _ = await code_of(stub.CreateUnit(pb.CreateUnitRequest(
                file=f, desired=launched)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, detail = await code_of(stub.PutUnit(pb.PutUnitRequest(file=bad_name)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and 'contains "/"' in detail
        for name, reason in (("x.scope", "a .scope unit cannot be loaded from a unit file"),
                             ("fleet.service", "fleet's own unit"),
                             (".h.service", 'starts with "."'),
                             ("systemd-journald.service", '"systemd-" are systemd\'s own')):
            refused = pb.UnitFile(name=name, contents="[Unit]\n")
            for call in (stub.CreateUnit(pb.CreateUnitRequest(file=refused, desired=launched)),
                         stub.PutUnit(pb.PutUnitRequest(file=refused))):
                code, detail = await code_of(call)
                assert code == grpc.StatusCode.INVALID_ARGUMENT
                assert detail.startswith(f'invalid unit name "{name}": ') and reason in detail
        assert await registry.list_units() == []

        registry.set_available(False)
        code, detail = await code_of(stub.ListUnits(pb.ListUnitsRequest()))
        assert code == grpc.StatusCode.UNAVAILABLE and detail
        client = ApiDriver(address)
        with pytest.raises(RegistryError, match=f"fleet API at {address}"):
            await client.list_units()
        await client.close()


async def test_watch_unit_states_streams_changes(short_dir: Path) -> None:
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.INACTIVE)
    other = make_unit_file("other.service", "[Service]\nExecStart=/bin/true\n")
    await registry.create_unit(other, TargetState.INACTIVE)
    async with serving(registry, f"unix://{short_dir}/f.sock"):
        c = ApiDriver(f"unix://{short_dir}/f.sock")
        stream = c.watch_units(["hello.service"])
        async with asyncio.timeout(10):
            first = await anext(stream)
            assert list(first.units) == ["hello.service"]
            assert first.units["hello.service"].desired is TargetState.INACTIVE
            await registry.set_desired("other.service", TargetState.LOADED)  # not followed
            await registry.set_desired("hello.service", TargetState.LAUNCHED)
            second = await anext(stream)
            assert second.units["hello.service"].desired is TargetState.LAUNCHED
        await stream.aclose()
        await c.close()


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("unix:///var/run/fleet.sock", "unix:///var/run/fleet.sock"),
        ("http://127.0.0.1:4002", "127.0.0.1:4002"),
        ("127.0.0.1:4002/", "127.0.0.1:4002"),
        ("http://a:1,http://b:2", "a:1"),
        ("https://a:1", "a:1"),
    ],
)
def test_grpc_target(endpoint: str, target: str) -> None:
    assert grpc_target(endpoint) == target


@pytest.mark.parametrize("endpoint", ["unix://var/run/fleet.sock", "https://nohost", "nohost"])
def test_grpc_target_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError):
        grpc_target(endpoint)


async def test_watch_snapshots_skip_changes_to_other_units() -> None:
    from fleetpy.api.snapshot import watch_snapshots

    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.INACTIVE)
    other = make_unit_file("other.service", "[Service]\nExecStart=/bin/true\n")
    await registry.create_unit(other, TargetState.INACTIVE)
    stream = watch_snapshots(registry, ["hello.service"])
    async with asyncio.timeout(10):
        await anext(stream)
        reads = registry.requests["range"]
        await registry.set_desired("other.service", TargetState.LOADED)
        await registry.set_desired("hello.service", TargetState.LAUNCHED)
        snap = await anext(stream)
    assert snap.units["hello.service"].desired is TargetState.LAUNCHED
    # two set_desired (a read each) and one snapshot read (5), not two snapshot reads
    assert registry.requests["range"] - reads == 2 + 5
    await stream.aclose()


@pytest.mark.parametrize(
    ("code", "detail", "message"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: "
         "UNKNOWN: unix:/x.sock: connect failed: Permission denied",
         "permission denied on the fleet API at unix:///x.sock (run as root or as a member "
         "of the socket's group)"),
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; No such file",
         "cannot reach the fleet API at unix:///x.sock (is fleetd running?): failed to connect"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded",
         "the fleet API at unix:///x.sock did not answer within 3.0s"),
        (grpc.StatusCode.UNAVAILABLE, "cannot reach etcd (tried http://a:2379): refused",
         "fleet API at unix:///x.sock: cannot reach etcd (tried http://a:2379): refused"),
    ],
)
async def test_client_error_messages(code: grpc.StatusCode, detail: str, message: str) -> None:
    from grpc.aio import Metadata

    from fleetpy.registry.base import RegistryError

    client = ApiDriver("unix:///x.sock")
    error = grpc.aio.AioRpcError(code, Metadata(), Metadata(), details=detail)
    with pytest.raises(RegistryError) as info:
        client._fail(error)
    assert str(info.value).startswith(message)
    await client.close()


async def test_watch_survives_a_fleetd_restart(short_dir: Path) -> None:
    registry = MemoryRegistry()
    await registry.create_unit(HELLO, TargetState.INACTIVE)
    address = f"unix://{short_dir}/f.sock"
    server = await start_api_server(registry, [address])
    client = ApiDriver(address)
    stream = client.watch_units(["hello.service"])
    try:
        async with asyncio.timeout(15):
            assert (await anext(stream)).units["hello.service"].desired is TargetState.INACTIVE
            await server.stop(0.1)  # fleetd restarts...
            await registry.set_desired("hello.service", TargetState.LAUNCHED)
            server = await start_api_server(registry, [address])  # ...and is back
            snap = await anext(stream)
            assert snap.units["hello.service"].desired is TargetState.LAUNCHED
    finally:
        await stream.aclose()
        await client.close()
        await server.stop(None)


async def test_many_units_in_one_request_each(short_dir: Path) -> None:
    path = short_dir / "fleet.sock"
    registry = MemoryRegistry()
    units = [make_unit_file(f"u{i}.service", f"[Service]\nExecStart=/bin/sleep {i}\n")
             for i in range(200)]
    async with serving(registry, f"unix://{path}"):
        client = ApiDriver(f"unix://{path}")
        assert await client.create_unit(units[0], TargetState.LOADED)
        created = await client.create_units(units, TargetState.INACTIVE)
        assert created == {u.name: u.name != "u0.service" for u in units}
        found = await client.get_units(["u0.service", "u5.service", "nope.service"])
        assert found["nope.service"] is None
        assert found["u0.service"] is not None and found["u0.service"].desired is TargetState.LOADED
        assert found["u5.service"] is not None and found["u5.service"].unit == units[5]
        done = await client.set_desired_many(["u1.service", "nope.service"],
                                             TargetState.LAUNCHED)
        assert done == {"u1.service": True, "nope.service": False}
        gone = await client.destroy_units(["u1.service", "nope.service"])
        assert gone == {"u1.service": True, "nope.service": False}
        assert len(await registry.list_units()) == 199
        # one bad file in the batch: refused, and nothing of the batch written
        bad = [make_unit_file("new.service", "[Service]\nExecStart=/bin/true\n"),
               make_unit_file("x.service", "[Service]\n"), ]
        bad[1] = type(bad[1])(name="bad name.service", contents="x", hash=bad[1].hash)
        with pytest.raises(ValueError, match="bad name"):
            await client.create_units(bad, TargetState.INACTIVE)
        assert await registry.get_unit("new.service") is None
        await client.close()


async def test_put_cordon_with_compare_writes_only_over_the_expected_record(
    short_dir: Path,
) -> None:
    from dataclasses import replace

    from fleetpy.model.cordon import Cordon, MachineState

    registry = MemoryRegistry()
    async with serving(registry, f"unix://{short_dir}/f.sock"):
        c = ApiDriver(f"unix://{short_dir}/f.sock")
        drain = Cordon(M1.id, MachineState.DRAINING, max_parallel=3, deadline=1.8e9)
        assert await c.update_cordon(drain, None) is True
        assert await c.list_cordons() == {M1.id: drain}  # the pace round-trips
        assert await c.update_cordon(drain, None) is False  # there is one now
        stale = replace(drain, max_parallel=2)
        assert await c.update_cordon(replace(drain, move=("a.service",)), stale) is False
        assert await c.update_cordon(replace(drain, max_parallel=1), drain) is True
        assert (await registry.list_cordons())[M1.id].max_parallel == 1
        await c.put_cordon(Cordon(M1.id))  # without compare: replaces whatever is there
        assert (await registry.list_cordons())[M1.id] == Cordon(M1.id)
        await c.close()
