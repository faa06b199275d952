"""fleetd: registers this machine, runs the agent, and the engine when leading.

Wiring only: configuration, identity, the registry, systemd and the API are
built here and handed to the agent and engine loops. SIGTERM/SIGINT stop
fleetd without touching any unit: units live in their own cgroups and keep
running; the agent lease is left to expire (or to be adopted by the next
fleetd on this machine), so a restart changes nothing in the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fleetpy import __version__
from fleetpy.agent.presence import leave_if_shutting_down
from fleetpy.config import DEFAULT_CONFIG_FILE, Config, ConfigError, load
from fleetpy.machine import MachineIdentityError, public_ip, read_machine_id
from fleetpy.model.types import Machine
from fleetpy.notify import sd_notify
from fleetpy.registry.base import Registry, RegistryError

if TYPE_CHECKING:
    from fleetpy.api.transport import TlsFiles
    from fleetpy.dashboard import DashboardService
    from fleetpy.metrics import Metrics
    from fleetpy.node import Node
    from fleetpy.registry.etcd import EtcdRegistry

log = logging.getLogger("fleetpy.daemon")

STATE_DIR = Path("/run/fleet")


class FatalError(Exception):
    """fleetd cannot run; the message says why and what to do."""


def _lock(path: Path) -> IO[str]:
    """Hold an exclusive lock so two fleetd never run on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise FatalError(
            f"another fleetd (PID {holder}) is already running on this machine ({path} is locked)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Daemon:
    """fleetd's process around a :class:`fleetpy.node.Node`: lock, API, metrics,
    dashboard, signals."""

    def __init__(self, config: Config, state_dir: Path = STATE_DIR) -> None:
        self.config = config
        self.state_dir = state_dir
        self.node: Node | None = None

    async def run(self) -> None:
        from fleetpy.api.server import start_api_server
        from fleetpy.api.transport import TlsFiles
        from fleetpy.dashboard.remote import dashboard_url
        from fleetpy.node import Node
        from fleetpy.registry.etcd import EtcdRegistry
        from fleetpy.systemd.dbus_manager import DbusUnitManager

        config = self.config
        try:
            ip = public_ip(config.public_ip)
            machine = Machine(
                id=read_machine_id(config.machine_id_file),
                public_ip=ip,
                metadata=dict(config.metadata),
                dashboard=dashboard_url(config.dashboard_address, ip, bool(config.api_certfile)),
            )
        except MachineIdentityError as exc:
            raise FatalError(str(exc)) from None
        lock = _lock(self.state_dir / "fleetd.lock")
        try:
            registry = EtcdRegistry.from_config(config)
        except ValueError as exc:  # a bad endpoint, an unreadable TLS file
            lock.close()
            raise FatalError(str(exc)) from None
        try:
            manager = DbusUnitManager(units_dir=Path(config.units_dir))
            node = self.node = Node(
                registry, manager, machine, state_dir=self.state_dir,
                agent_ttl=config.agent_ttl, engine_interval=config.engine_reconcile_interval,
            )
            metrics = self._metrics(registry, node)
            await self._start_node(node)
            await manager.start()
            listen = [config.api_socket] + ([config.api_tcp] if config.api_tcp else [])
            tls = TlsFiles(config.api_cafile, config.api_certfile, config.api_keyfile)
            try:
                api = await start_api_server(registry, listen, tls if tls.cert_file else None,
                                             token_limit=config.token_limit)
            except (ValueError, RuntimeError) as exc:
                raise FatalError(f"cannot serve the API: {exc}") from None
            http = await self._serve_metrics(metrics, registry, node)
            dashboard = await self._serve_dashboard(registry, node, tls)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
            running = asyncio.create_task(node.run(), name="node")
            machine = node.machine
            sd_notify(f"READY=1\nSTATUS=machine {machine.id[:8]} at {machine.public_ip}")
            log.info("fleetd %s ready: machine %s, API on %s", __version__, machine.id[:8],
                     ", ".join(listen))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([running, stopper], return_when=asyncio.FIRST_COMPLETED)
            sd_notify("STOPPING=1")
            log.info("stopping fleetd; units are left running")
            await node.stop()  # tasks stopped: no re-registration after this
            stopper.cancel()
            error = None
            if running.done() and not running.cancelled():
                error = running.exception()
            else:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await running
            await leave_if_shutting_down(node.lease())
            await api.stop(0.5)
            if http is not None:
                http.close()
            if dashboard is not None:
                await dashboard.stop()
            await manager.close()
            if error is not None:
                log.error("fleetd failed", exc_info=error)
                raise FatalError(f"fleetd failed: {error}")
        finally:
            await registry.close()
            lock.close()

    async def _start_node(self, node: Node) -> None:
        """Register, waiting for etcd as long as it takes (systemd's TimeoutStartSec
        bounds it): a machine often boots before etcd answers."""
        from fleetpy.node import REGISTER_RETRY, DuplicateMachineError

        said = ""
        while True:
            try:
                await node.start()
                return
            except DuplicateMachineError as exc:
                raise FatalError(str(exc)) from None
            except RegistryError as exc:
                if str(exc) != said:
                    said = str(exc)
                    log.warning("cannot register yet, trying again every %gs: %s",
                                REGISTER_RETRY, exc)
                    sd_notify(f"STATUS=waiting for etcd: {exc}")
                await asyncio.sleep(REGISTER_RETRY)

    def _metrics(self, registry: EtcdRegistry, node: Node) -> Metrics | None:
        """fleetd's metrics when metrics_address is set (etcd requests counted from now)."""
        if not self.config.metrics_address:
            return None
        from fleetpy.metrics import DaemonState, Metrics

        metrics = Metrics(DaemonState(
            node.id,
            registered=lambda: node.registered,
            leader=lambda: node.engine.leading,
            keepalive_failures=lambda: node.keepalive_failures,
        ))
        registry.client.observe = metrics.observe_etcd
        return metrics

    async def _serve_metrics(self, metrics: Metrics | None, registry: Registry,
                             node: Node) -> asyncio.Server | None:
        if metrics is None:
            return None
        from fleetpy.metrics import serve

        node.agent.observe_pass = metrics.observe_pass("agent")
        node.engine.observe_pass = metrics.observe_pass("engine")
        try:
            return await serve(metrics, registry, self.config.metrics_address)
        except (OSError, ValueError) as exc:
            raise FatalError(f"cannot serve metrics on {self.config.metrics_address}: "
                             f"{exc}") from None


    async def _serve_dashboard(self, registry: Registry, node: Node,
                               tls: TlsFiles) -> DashboardService | None:
        """The web dashboard when dashboard_address is set (TLS as the API's)."""
        if not self.config.dashboard_address:
            return None
        from fleetpy.dashboard import DashboardService

        try:
            return await DashboardService.start(
                registry, node.id, self.config.dashboard_address,
                tls if tls.cert_file else None)
        except (OSError, ValueError) as exc:
            raise FatalError(f"cannot serve the dashboard on {self.config.dashboard_address}: "
                             f"{exc}") from None


def dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task is waiting (for a stuck fleetd)."""
    for task in asyncio.all_tasks():
        frames = task.get_stack()
        where = " <- ".join(
            f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames)
        ) or "not started"
        log.info("task %s: %s", task.get_name(), where)


FLAGS = {
    "etcd_servers": "Comma-separated etcd client URLs.",
    "etcd_key_prefix": "Key prefix in etcd (default /fleetpy/).",
    "etcd_request_timeout": "Per-request timeout, e.g. 1s.",
    "public_ip": "IP address other machines reach this one on.",
    "metadata": "Machine metadata, e.g. region=us-west,az=a.",
    "agent_ttl": "How long this machine stays registered without fleetd, e.g. 30s.",
    "engine_reconcile_interval": "Engine pass interval, e.g. 2s.",
    "api_socket": "Unix socket of the API, gRPC and fleet's v1 HTTP API "
                  "(unix:///var/run/fleet.sock).",
    "api_tcp": "Also serve the API on HOST:PORT (TLS with --api-certfile, else plain: labs).",
    "api_certfile": "TLS certificate of the TCP API (PEM).",
    "api_keyfile": "Its private key (PEM).",
    "api_cafile": "CA of the client certificates the TCP API requires (PEM).",
    "token_limit": "Entries in one page of fleet's HTTP API (default 100).",
    "metrics_address": "Serve /metrics (Prometheus) and /health on HOST:PORT.",
    "dashboard_address": "Serve the read-only web dashboard on HOST:PORT (:8080: every address).",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """fleetd's flags (argparse, not click: fleetd runs for days; every MB counts)."""
    parser = argparse.ArgumentParser(
        prog="fleetd", description="fleetd: the fleetpy daemon (agent + engine)."
    )
    parser.add_argument("--config", dest="config_file", default=DEFAULT_CONFIG_FILE,
                        help=f"fleet.conf to read (default {DEFAULT_CONFIG_FILE}; "
                        "missing is fine unless given explicitly)")
    for key, text in FLAGS.items():
        parser.add_argument("--" + key.replace("_", "-"), dest=key, help=text)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("--version", action="version", version=f"fleetd {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        text: str | None = Path(args.config_file).read_text()
    except FileNotFoundError:
        if args.config_file != DEFAULT_CONFIG_FILE:
            print(f"fleetd: config file {args.config_file} not found", file=sys.stderr)
            sys.exit(1)
        text = None
    flags = {k: v for k in FLAGS if (v := getattr(args, k)) is not None}
    try:
        config = load(text, os.environ, flags, args.config_file)
        asyncio.run(Daemon(config).run())
    except (ConfigError, FatalError, RegistryError) as exc:
        print(f"fleetd: {exc}", file=sys.stderr)
        sys.exit(1)
