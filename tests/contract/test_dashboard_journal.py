"""The journal of a unit on another machine, on a real etcd: the fleetd serving the page
fetches it from the dashboard that machine publishes in its record (plain and with
TLS client certificates), and says why when it cannot (no dashboard there, unreachable,
another machine answering, the unit moved)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from fleetpy.api.transport import TlsFiles
from fleetpy.dashboard import DashboardService, server
from fleetpy.lab import pki
from fleetpy.model.types import Machine, TargetState
from fleetpy.registry.etcd import EtcdRegistry
from tests.contract.helpers import scheduled, unit
from tests.fixtures.etcd import EtcdProcess

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def journals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service here runs in this process: its "journal" names the unit and asker."""
    async def tail(name: str, lines: int) -> str:
        return f"journal of {name}\n"
    monkeypatch.setattr(server, "journal_tail", tail)


async def _get(port: int, path: str, ctx: Any = None) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def _cluster(registry: EtcdRegistry, machines: list[Machine],
                   placed: dict[str, str]) -> None:
    for name in placed:
        await registry.create_unit(unit(name), TargetState.LAUNCHED)
    lease = await registry.grant_lease(30)
    for m in machines:
        assert await registry.register_machine(m, lease)
    token = await registry.campaign(machines[0].id, lease)
    assert token is not None
    await registry.apply_schedule(token, [scheduled(n, m) for n, m in placed.items()], [])


async def _seen(service: DashboardService, units: int) -> None:
    async with asyncio.timeout(5):
        while sum(bool(u["placements"]) for u in service.feed.view.get("units", [])) < units:
            await asyncio.sleep(0.05)


async def test_the_journal_of_a_unit_on_another_machine_is_fetched_from_its_dashboard(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    here = await DashboardService.start(registry, "m1", "127.0.0.1:0", None)
    there = await DashboardService.start(registry, "m2", "127.0.0.1:0", None)
    elsewhere_prefix = etcd_prefix.rstrip("/") + "-moved/"
    moved_registry = EtcdRegistry(etcd_server.endpoint, elsewhere_prefix)
    moved = await DashboardService.start(moved_registry, "m5", "127.0.0.1:0", None)
    try:
        await _cluster(moved_registry, [Machine("m5", "10.0.0.5")], {"e.service": "m9"})
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        closed_port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        await _cluster(registry, [
            Machine("m1", "10.0.0.1", dashboard=f"http://127.0.0.1:{here.port}"),
            Machine("m2", "10.0.0.2", dashboard=f"http://127.0.0.1:{there.port}"),
            Machine("m3", "10.0.0.3"),  # no dashboard there
            Machine("m4", "10.0.0.4", dashboard=f"http://127.0.0.1:{closed_port}"),
            Machine("m5", "10.0.0.5", dashboard=f"http://127.0.0.1:{moved.port}"),
            Machine("m6", "10.0.0.6", dashboard=f"http://127.0.0.1:{here.port}"),  # m1's
        ], {"a.service": "m1", "b@1.service": "m2", "c.service": "m3", "d.service": "m4",
            "e.service": "m5", "f.service": "m6"})
        await _seen(here, 6)
        await _seen(there, 6)

        status, got = await _get(here.port, "/api/journal/a.service")
        assert (status, got) == (200, {"here": True, "machine": "m1", "message": "",
                                       "lines": "journal of a.service\n"})
        status, got = await _get(here.port, "/api/journal/b%401.service")
        assert (status, got) == (200, {"here": False, "machine": "m2", "message": "",
                                       "lines": "journal of b@1.service\n"})
        status, got = await _get(here.port, "/api/journal/c.service")
        assert got["lines"] == "" and "runs on m3 (10.0.0.3), which serves no dashboard: " \
            "fleetctl journal c.service" in got["message"]
        status, got = await _get(here.port, "/api/journal/d.service")
        assert got["lines"] == "" and "cannot reach" in got["message"] \
            and f"127.0.0.1:{closed_port}" in got["message"]
        status, got = await _get(here.port, "/api/journal/e.service")
        assert got["lines"] == "" and "e.service no longer runs on m5" in got["message"]
        status, got = await _get(here.port, "/api/journal/f.service")
        assert got["lines"] == "" and "is machine m1, not m6" in got["message"]

        status, got = await _get(here.port, "/api/journal/b%401.service?machine=m3")
        assert status == 404 and "not scheduled on machine m3" in got["error"]["message"]
        status, got = await _get(there.port, "/api/journal/a.service?local=1")
        assert got == {"here": False, "machine": "m2", "lines": "",
                       "message": "a.service does not run on m2 (any more)"}  # never forwarded
    finally:
        for service in (here, there, moved):
            await service.stop()
        await registry.close()
        await moved_registry.close()


async def test_the_journal_is_fetched_with_the_dashboards_tls_client_certificate(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    import ssl

    ca = pki.make_ca(tmp_path, "dashboard test CA")
    cert = pki.issue(ca, tmp_path, "fleetd", "fleetd", ips=["127.0.0.1"])
    tls = TlsFiles(str(ca.cert), str(cert.cert), str(cert.key))
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    here = await DashboardService.start(registry, "m1", "127.0.0.1:0", tls)
    there = await DashboardService.start(registry, "m2", "127.0.0.1:0", tls)
    plain = await DashboardService.start(registry, "m3", "127.0.0.1:0", None)
    try:
        await _cluster(registry, [
            Machine("m1", "10.0.0.1"),
            Machine("m2", "10.0.0.2", dashboard=f"https://127.0.0.1:{there.port}")],
            {"b.service": "m2"})
        await _seen(here, 1)
        await _seen(plain, 1)
        browser = ssl.create_default_context(cafile=str(ca.cert))
        browser.load_cert_chain(str(cert.cert), str(cert.key))
        status, got = await _get(here.port, "/api/journal/b.service", browser)
        assert (status, got["lines"], got["message"]) == (200, "journal of b.service\n", "")
        status, got = await _get(plain.port, "/api/journal/b.service")  # no certificate
        assert got["lines"] == "" and "no api_certfile" in got["message"]
    finally:
        for service in (here, there, plain):
            await service.stop()
        await registry.close()
