"""fleetctl set-metadata, in-process, with --driver etcd and through the API server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from fleetpy.model.types import Machine
from tests.unit.test_ctl_support import M1, M2, Cluster

M3 = Machine("ca54aaaa" + "3" * 24, "172.17.8.103")  # shares "ca54" with M2


@pytest.fixture(params=["etcd", "api"])
def ctl(request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, str | None]]:
    short = Path(tempfile.mkdtemp(prefix="fmeta", dir="/tmp"))
    try:
        with Cluster(machines=(M1, M2, M3), simulate=False) as cluster:
            api = cluster.start_api(str(short / "fleet.sock")) if request.param == "api" else None
            yield cluster, api
    finally:
        shutil.rmtree(short, ignore_errors=True)


def run(ctl: tuple[Cluster, str | None], *args: str) -> Result:
    cluster, api = ctl
    return cluster.ctl(*args, api=api)


def metadata(cluster: Cluster) -> dict[str, dict[str, str]]:
    return {m.id[:8]: dict(m.metadata) for m in cluster.run(cluster.registry.list_machines())}


def test_set_and_remove(ctl: tuple[Cluster, str | None]) -> None:
    cluster, _ = ctl
    done = run(ctl, "set-metadata", "4f4a", "role=db", "disk=ssd")
    assert (done.exit_code, done.stdout) == (
        0, "Machine 4f4a4289.../172.17.8.101 metadata: disk=ssd,role=db\n")
    done = run(ctl, "set-metadata", "172.17.8.102", "--remove", "region", "-r", "nope")
    assert (done.exit_code, done.stdout) == (0, "Machine ca541338.../172.17.8.102 metadata: -\n")
    assert metadata(cluster) == {"4f4a4289": {"disk": "ssd", "role": "db"}, "ca541338": {},
                                 "ca54aaaa": {}}
    listed = run(ctl, "list-machines", "--no-legend").stdout.split()
    assert listed[:3] == ["4f4a4289...", "172.17.8.101", "disk=ssd,role=db"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zz", "a=b"], "Unable to proceed: no machine matches 'zz'"),
        (["ca54", "a=b"], "Unable to proceed: 2 machines match 'ca54': ca541338.../172.17.8.102, "
                          "ca54aaaa.../172.17.8.103; give more of the ID"),
        (["4f4a", "a b=c"], "Error: invalid metadata key 'a b'"),
        (["4f4a", "a=b c"], "Error: invalid metadata value 'b c' for a"),
        (["4f4a", "a"], "Error: invalid metadata 'a': expected key=value"),
        (["4f4a"], "Error: no metadata change given"),
        (["4f4a", "a=b", "--remove", "a"], "Error: metadata key(s) both set and removed: a"),
    ],
)
def test_bad_input_changes_nothing(
    ctl: tuple[Cluster, str | None], args: list[str], message: str
) -> None:
    cluster, _ = ctl
    before = metadata(cluster)
    done = run(ctl, "set-metadata", *args)
    assert done.exit_code == 1, done.output
    assert message in done.stderr
    assert metadata(cluster) == before


def test_unknown_machine_id_is_not_found(ctl: tuple[Cluster, str | None]) -> None:
    import asyncio

    from fleetpy.api.client import ApiDriver
    from fleetpy.model.metadata import MetadataChange

    cluster, api = ctl
    change = MetadataChange.make({"a": "b"}, [])
    if api is None:
        assert cluster.run(cluster.registry.set_machine_metadata("f" * 32, change)) is None
        return

    async def call() -> object:
        driver = ApiDriver(api)
        try:
            return await driver.set_machine_metadata("f" * 32, change)
        finally:
            await driver.close()

    assert asyncio.run(call()) is None
