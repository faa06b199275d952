"""fleetd's Prometheus metrics and health check (config ``metrics_address``, opt-in).

One small asyncio HTTP server on HOST:PORT:

- ``GET /metrics``: the Prometheus text format. Cluster-wide numbers
  (machines, units by desired state, reported unit states, placements,
  units waiting, registry entries that do not decode by prefix) are read
  from the registry at scrape time, so every fleetd
  gives the same answer; ``fleetpy_engine_leader`` tells which one leads.
  This fleetd's own: reconcile pass durations (agent, engine), etcd requests
  by method and outcome with their latencies, lease keepalive failures,
  registration and leadership.
- ``GET /health``: ``{"registered": ..., "etcd": ..., "leader": ..., "machine": ...}``,
  200 when this machine is registered and etcd answers, else 503.

prometheus_client is imported here only: fleetctl and a fleetd without
metrics never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fleetpy.registry.base import Registry, RegistryError
from fleetpy.registry.unreadable import PREFIXES, prefix_of

log = logging.getLogger("fleetpy.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ETCD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HEALTH_TIMEOUT = 2.0


@dataclass
class DaemonState:
    """What fleetd knows of itself, read at scrape time."""

    machine_id: str
    registered: Callable[[], bool]
    leader: Callable[[], bool]
    keepalive_failures: Callable[[], int]


class _Live(Collector):
    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.state
        yield GaugeMetricFamily("fleetpy_engine_leader",
                                "1 while this fleetd's engine holds the lead", float(s.leader()))
        yield GaugeMetricFamily("fleetpy_registered",
                                "1 while this machine's registration lease is alive",
                                float(s.registered()))
        yield CounterMetricFamily("fleetpy_lease_keepalive_failures",
                                  "Lease refreshes that failed (each is retried)",
                                  float(s.keepalive_failures()))


class Metrics:
    """The metrics of one fleetd; ``observe_*`` are the hooks its parts call."""

    def __init__(self, state: DaemonState) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.state = state
        r = self.registry = CollectorRegistry()
        self.machines = Gauge("fleetpy_machines", "Machines registered in the cluster",
                              registry=r)
        self.units = Gauge("fleetpy_units", "Units by desired state (DSTATE)", ["state"],
                           registry=r)
        self.unit_states = Gauge("fleetpy_unit_states",
                                 "Units' reported systemd states, all machines",
                                 ["active_state"], registry=r)
        self.placements = Gauge("fleetpy_placements", "Units scheduled on a machine (entries)",
                                registry=r)
        self.waiting = Gauge("fleetpy_units_waiting", "Units the engine cannot place now",
                             registry=r)
        self.unreadable = Gauge("fleetpy_registry_unreadable_entries",
                                "Registry entries that do not decode (skipped by every "
                                "reader), by key prefix", ["prefix"], registry=r)
        self.etcd_up = Gauge("fleetpy_etcd_up", "1 if etcd answered the last scrape's reads",
                             registry=r)
        self.passes = Histogram("fleetpy_reconcile_duration_seconds",
                                "Duration of reconcile passes", ["loop"],
                                buckets=PASS_BUCKETS, registry=r)
        self.etcd_requests = Counter("fleetpy_etcd_requests", "etcd RPCs attempted",
                                     ["method", "outcome"], registry=r)
        self.etcd_latency = Histogram("fleetpy_etcd_request_duration_seconds",
                                      "etcd RPC latency (one attempt)", ["method"],
                                      buckets=ETCD_BUCKETS, registry=r)
        r.register(_Live(state))

    # hooks --------------------------------------------------------------------
    def observe_pass(self, loop: str) -> Callable[[float], None]:
        return self.passes.labels(loop).observe

    def observe_etcd(self, method: str, seconds: float, ok: bool) -> None:
        self.etcd_requests.labels(method, "ok" if ok else "error").inc()
        self.etcd_latency.labels(method).observe(seconds)

    # scrape -------------------------------------------------------------------
    async def refresh(self, registry: Registry) -> None:
        """Read the cluster-wide numbers (5 reads); etcd_up says whether it worked."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                machines, units, schedule, states, waiting, bad = await asyncio.gather(
                    registry.list_machines(), registry.list_units(), registry.list_schedule(),
                    registry.list_unit_states(), registry.list_waiting(),
                    registry.list_unreadable())
        except (RegistryError, TimeoutError):
            self.etcd_up.set(0)
            return
        self.etcd_up.set(1)
        self.machines.set(len(machines))
        self.placements.set(len(schedule))
        self.waiting.set(len(waiting))
        _set_counts(self.units, {"inactive": 0, "loaded": 0, "launched": 0},
                    (str(u.desired) for u in units))
        _set_counts(self.unit_states, {}, (s.active_state for s in states))
        rel = len(registry.prefix)
        _set_counts(self.unreadable, dict.fromkeys(PREFIXES, 0),
                    (prefix_of(u.key[rel:]) for u in bad))

    async def health(self, registry: Registry) -> tuple[bool, dict[str, object]]:
        etcd_ok = True
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                await registry.list_machines()
        except (RegistryError, TimeoutError):
            etcd_ok = False
        registered = self.state.registered()
        body: dict[str, object] = {"machine": self.state.machine_id, "registered": registered,
                                   "etcd": etcd_ok, "leader": self.state.leader()}
        return registered and etcd_ok, body


def _set_counts(gauge: Gauge, zero: dict[str, int], values: Iterable[str]) -> None:
    counts = dict(zero)
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    gauge.clear()
    for label, n in counts.items():
        gauge.labels(label).set(n)


async def serve(metrics: Metrics, registry: Registry, address: str) -> asyncio.Server:
    """Start the HTTP server on ``address`` (HOST:PORT); ValueError/OSError if it cannot."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics_address {address!r}: expected HOST:PORT")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = (await reader.readline()).decode("latin-1").split()
                while (await reader.readline()).strip():
                    pass  # headers: none matter
            status, ctype, body = await _answer(metrics, registry, request)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + (b"" if request[:1] == ["HEAD"] else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host.strip("[]") or None, int(port))
    log.info("metrics on http://%s/metrics, health on /health", address)
    return server


async def _answer(metrics: Metrics, registry: Registry,
                  request: list[str]) -> tuple[str, str, bytes]:
    if len(request) < 2 or request[0] not in ("GET", "HEAD"):
        return "405 Method Not Allowed", "text/plain", b"GET /metrics or /health\n"
    path = request[1].split("?", 1)[0]
    if path == "/metrics":
        started = time.perf_counter()
        await metrics.refresh(registry)
        body = generate_latest(metrics.registry)
        log.debug("scrape in %.1f ms", (time.perf_counter() - started) * 1000)
        return "200 OK", CONTENT_TYPE, body
    if path == "/health":
        ok, data = await metrics.health(registry)
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, "application/json", (json.dumps(data) + "\n").encode()
    return "404 Not Found", "text/plain", b"GET /metrics or /health\n"
