"""The gRPC API on a real etcd, fed generated units, malformed requests, huge fields
and huge batches: INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a message over the
limit) naming the problem, never INTERNAL/UNKNOWN, nothing written to etcd for a
refused request, and the server answers the next request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.limits import MAX_DETAIL, MAX_REQUEST_BYTES, MAX_UNITS_PER_CALL
from fleetpy.api.validation import checked_unit_file, short_detail
from fleetpy.model.metadata import MAX_CHANGE, MAX_KEY, MAX_VALUE
from fleetpy.model.unitfile import MAX_UNIT_SIZE, unit_hash
from tests.contract.fuzz_support import FuzzCluster
from tests.fixtures.fuzz import unit_files, unit_names
from tests.unit.test_ctl_support import M1

pytestmark = pytest.mark.etcd

SERVICE = "fleetpy.v1.Fleet"
METHODS = pb.DESCRIPTOR.services_by_name["Fleet"].methods_by_name
UNARY = sorted(n for n in METHODS if n != "WatchUnitStates")
WRITES = {"CreateUnit", "PutUnit", "SetDesired", "DestroyUnit", "CreateUnits",
          "SetDesiredMany", "DestroyUnits", "SetMachineMetadata"}
OK, INVALID = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
HELLO = "[Service]\nExecStart=/bin/true\n"
LAUNCHED = pb.TARGET_STATE_LAUNCHED
FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def fz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzCluster]:
    cluster = FuzzCluster(tmp_path_factory.mktemp("fuzz-api"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def channel(fz: FuzzCluster) -> Iterator[grpc.Channel]:
    big = 128 * 1024 * 1024  # the client may send more than the server takes
    with grpc.insecure_channel(fz.api, options=[("grpc.max_send_message_length", big),
                                                ("grpc.max_receive_message_length", big)]) as ch:
        yield ch


def call(channel: grpc.Channel, method: str, data: bytes) -> tuple[grpc.StatusCode, str]:
    """Send raw bytes as the request of ``method``; -> (status, details)."""
    try:
        channel.unary_unary(f"/{SERVICE}/{method}")(data, timeout=60)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return OK, ""


def watch(channel: grpc.Channel, data: bytes) -> tuple[grpc.StatusCode, str]:
    """Open WatchUnitStates with raw bytes; -> the status of its first answer."""
    stream = channel.unary_stream(f"/{SERVICE}/WatchUnitStates")(data, timeout=60)
    try:
        next(iter(stream))
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    finally:
        stream.cancel()
    return OK, ""


def answers(channel: grpc.Channel) -> None:
    """The server is alive and serves a normal request."""
    assert call(channel, "ListUnits", b"") == (OK, "")


def proto_text(value: str | bytes) -> str:
    """A proto string field holds UTF-8: bytes and lone surrogates become U+FFFD."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.encode("utf-8", "replace").decode("utf-8")


@FUZZ
@given(
    units=st.lists(st.tuples(unit_names(), unit_files(), st.sampled_from(["", "ok", "bad"])),
                   min_size=1, max_size=4),
    how=st.sampled_from(["CreateUnit", "PutUnit", "CreateUnits"]),
)
@example(units=[("a.service", HELLO, ""), ("a.service", HELLO, "")], how="CreateUnits")
@example(units=[("a.service", HELLO, ""), ("b c.service", HELLO, "")], how="CreateUnits")
@example(units=[("a.service", HELLO, "bad")], how="PutUnit")
def test_generated_units(
    fz: FuzzCluster, channel: grpc.Channel, units: list[tuple[str, str | bytes, str]], how: str
) -> None:
    files: list[pb.UnitFile] = []
    refusals: list[str] = []
    for raw_name, data, hashed in units if how == "CreateUnits" else units[:1]:
        name, text = proto_text(raw_name), proto_text(data)
        digest = {"": "", "ok": unit_hash(text), "bad": "0" * 40}[hashed]
        files.append(pb.UnitFile(name=name, contents=text, hash=digest))
        try:
            checked_unit_file(name, text)
            if hashed == "bad":
                refusals.append(f"unit {name}: hash {digest} does not match its contents")
        except ValueError as e:
            refusals.append(str(e))
    if how == "CreateUnits":
        request = pb.CreateUnitsRequest(files=files, desired=LAUNCHED).SerializeToString()
    elif how == "CreateUnit":
        request = pb.CreateUnitRequest(file=files[0], desired=LAUNCHED).SerializeToString()
    else:
        request = pb.PutUnitRequest(file=files[0], desired=LAUNCHED).SerializeToString()
    event("refused" if refusals else "accepted")
    before = fz.keyspace()
    code, detail = call(channel, how, request)
    if refusals:
        assert (code, detail) == (INVALID, short_detail(refusals[0]))
        assert fz.keyspace() == before  # not a key, not a revision
        return
    try:
        assert (code, detail) == (OK, "")
        for f in files:
            assert fz.unit_contents(f.name) == next(g.contents for g in files
                                                    if g.name == f.name)
    finally:
        fz.delete_units()


OTHER_MESSAGES = [
    pb.SetDesiredManyRequest(names=["a.service"], desired=LAUNCHED),
    pb.CreateUnitsRequest(files=[pb.UnitFile(name="a.service", contents=HELLO)]),
    pb.SetMachineMetadataRequest(machine_id="m", set={"k": "v"}),
    pb.ListUnitsResponse(units=[pb.Unit(revision=-1)]),
    pb.GetUnitRequest(name="a.service"),
]


@FUZZ
@given(
    method=st.sampled_from([*UNARY, "WatchUnitStates"]),
    data=st.binary(max_size=200) | st.sampled_from(OTHER_MESSAGES).map(
        lambda m: m.SerializeToString()),
)
@example(method="CreateUnits", data=b"\xff\xff\xff\xff")
@example(method="GetUnit", data=b"\x0a\x02\xff\xfe")  # a string field that is not UTF-8
@example(method="WatchUnitStates", data=b"\x0a\x02\xff\xfe")
@example(method="StreamUnitStates", data=b"\n\x02\x00/")  # CI found it: an invalid machine id
@example(method="CreateUnits", data=b"\x0a\x05\x0a\x03\xc3\x28a")  # UnitFile.name not UTF-8
def test_malformed_requests(
    fz: FuzzCluster, channel: grpc.Channel, method: str, data: bytes
) -> None:
    before = fz.keyspace()
    code, detail = (watch if method == "WatchUnitStates" else
                    lambda ch, d: call(ch, method, d))(channel, data)
    assert code in (OK, INVALID, grpc.StatusCode.NOT_FOUND), (code, detail)
    if code != OK:
        assert detail and len(detail) <= MAX_DETAIL and "\n" not in detail
    if code != OK or method not in WRITES:
        assert fz.keyspace() == before
    else:
        fz.delete_units()


def test_malformed_bytes_name_the_message(channel: grpc.Channel) -> None:
    code, detail = call(channel, "CreateUnits", b"\xff\xff\xff\xff")
    assert code == INVALID and detail.startswith("malformed CreateUnitsRequest: "), detail
    code, detail = call(channel, "GetUnit", b"\x0a\x02\xff\xfe")
    assert code == INVALID and "malformed GetUnitRequest" in detail and "UTF-8" in detail
    answers(channel)


def test_huge_fields(fz: FuzzCluster, channel: grpc.Channel) -> None:
    before = fz.keyspace()
    ten_mib = "#" * (10 * 1024 * 1024)
    too_big = f"more than {MAX_UNIT_SIZE}"
    for method, request in (
        ("CreateUnit", pb.CreateUnitRequest(file=pb.UnitFile(name="a.service",
                                                             contents=ten_mib))),
        ("PutUnit", pb.PutUnitRequest(file=pb.UnitFile(name="a.service", contents=ten_mib))),
        ("CreateUnits", pb.CreateUnitsRequest(files=[pb.UnitFile(name="a.service",
                                                                 contents=ten_mib)])),
    ):
        code, detail = call(channel, method, request.SerializeToString())
        assert code == INVALID and too_big in detail, (method, code, detail)
        answers(channel)
    long_name = "a" * 1_000_000 + ".service"
    for method, request in (
        ("CreateUnit", pb.CreateUnitRequest(file=pb.UnitFile(name=long_name, contents=HELLO))),
        ("GetUnit", pb.GetUnitRequest(name=long_name)),
        ("SetDesired", pb.SetDesiredRequest(name=long_name, desired=LAUNCHED)),
        ("DestroyUnit", pb.DestroyUnitRequest(name=long_name)),
        ("GetUnits", pb.GetUnitsRequest(names=[long_name])),
        ("SetDesiredMany", pb.SetDesiredManyRequest(names=[long_name], desired=LAUNCHED)),
        ("DestroyUnits", pb.DestroyUnitsRequest(names=[long_name])),
    ):
        code, detail = call(channel, method, request.SerializeToString())
        assert code == INVALID and "longer than 255 bytes" in detail, (method, code, detail)
        assert len(detail) <= MAX_DETAIL
    long_id = "m" * 1_000_000
    for method, request in (
        ("SetMachineMetadata", pb.SetMachineMetadataRequest(machine_id=long_id, set={"k": "v"})),
        ("ListUnitStates", pb.ListUnitStatesRequest(machine_id=long_id)),
        ("ListSchedule", pb.ListScheduleRequest(machine_id=long_id)),
    ):
        code, detail = call(channel, method, request.SerializeToString())
        assert code == INVALID and "longer than 255 bytes" in detail, (method, code, detail)
    code, detail = watch(channel, pb.WatchUnitStatesRequest(names=[long_name])
                         .SerializeToString())
    assert code == INVALID and "longer than 255 bytes" in detail
    # metadata of a machine that exists: a 2 MB value was etcd's "request is too large"
    # (UNAVAILABLE), a 100 kB key was stored in the machine's record
    for change, limit in (
        (dict(set={"k": "v" * 2_000_000}), f"longer than {MAX_VALUE} characters"),
        (dict(set={"k" * 100_000: "v"}), f"longer than {MAX_KEY} characters"),
        (dict(remove=["k" * 100_000]), f"longer than {MAX_KEY} characters"),
        (dict(set={f"k{i}": "v" for i in range(200_000)}), f"the limit is {MAX_CHANGE}"),
    ):
        request = pb.SetMachineMetadataRequest(machine_id=M1.id, **change)  # type: ignore[arg-type]
        code, detail = call(channel, "SetMachineMetadata", request.SerializeToString())
        assert code == INVALID and limit in detail and len(detail) < 300, (code, detail[:300])
    # over the message limit: gRPC refuses it before any handler runs, naming both sizes
    huge = pb.PutUnitRequest(file=pb.UnitFile(name="a.service",
                                              contents="#" * (MAX_REQUEST_BYTES + 1)))
    code, detail = call(channel, "PutUnit", huge.SerializeToString())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and str(MAX_REQUEST_BYTES) in detail
    answers(channel)
    assert fz.keyspace() == before


def test_a_million_units_in_one_call(fz: FuzzCluster, channel: grpc.Channel) -> None:
    """A million names fit in one message (the most it allows); the per-call limit refuses
    them at once, and the server goes on answering."""
    before = fz.keyspace()
    # GetUnits, SetDesiredMany, DestroyUnits and WatchUnitStates: names are field 1
    names = pb.GetUnitsRequest(names=[f"{i}.service" for i in range(1_000_000)])
    million = names.SerializeToString()
    launched = pb.SetDesiredManyRequest(desired=LAUNCHED).SerializeToString()
    empty_files = pb.CreateUnitsRequest(files=[pb.UnitFile()]).SerializeToString() * 1_000_000
    limit = f"the limit is {MAX_UNITS_PER_CALL} per call"
    for method, data in (("SetDesiredMany", million + launched), ("GetUnits", million),
                         ("DestroyUnits", million), ("CreateUnits", empty_files + launched)):
        assert len(data) <= MAX_REQUEST_BYTES
        code, detail = call(channel, method, data)
        assert code == INVALID and f"1000000, {limit}" in detail, (method, detail)
        answers(channel)
    code, detail = watch(channel, million)
    assert code == INVALID and limit in detail
    one_over = [pb.UnitFile(name=f"u{i}.service", contents=HELLO)
                for i in range(MAX_UNITS_PER_CALL + 1)]
    code, detail = call(channel, "CreateUnits", pb.CreateUnitsRequest(
        files=one_over, desired=LAUNCHED).SerializeToString())
    assert code == INVALID and f"{MAX_UNITS_PER_CALL + 1}, {limit}" in detail
    # a million unit files do not fit in one message at all
    one = pb.CreateUnitsRequest(files=[pb.UnitFile(name="u.service", contents=HELLO)])
    code, detail = call(channel, "CreateUnits", one.SerializeToString() * 1_000_000)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and str(MAX_REQUEST_BYTES) in detail
    answers(channel)
    assert fz.keyspace() == before


def test_fleetctl_sends_10000_units_and_big_ones(fz: FuzzCluster, tmp_path: Path) -> None:
    """fleetctl batches by count and by bytes, well within the server's limits."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"m{i}.service").write_text(f"[Service]\nExecStart=/bin/sleep {i}\n")
    big = tmp_path / "big"
    big.mkdir()
    body = "#" * (MAX_UNIT_SIZE - 100)  # 300 units of ~64 KiB: 19 MB, over one message
    for i in range(300):
        (big / f"b{i}.service").write_text(f"[Service]\nExecStart=/bin/true\n{body}\n")
    try:
        for files in (sorted(many.iterdir()), sorted(big.iterdir())):
            r = fz.ctl("api", "--request-timeout", "60", "submit", *map(str, files))
            assert r.exit_code == 0, r.output[-2000:]
            assert r.stdout.count(" inactive\n") == len(files)
        units = fz.cluster.run(fz.cluster.registry.list_units())
        assert len(units) == 10_300
        assert {u.unit.name for u in units} == {f"m{i}.service" for i in range(10_000)} | {
            f"b{i}.service" for i in range(300)}
    finally:
        fz.delete_units()
