"""The systemd worker process: the only code in fleetpy that calls pystemd.

pystemd holds the GIL during a D-Bus call and a call times out only after
25 s, so a hung systemd would freeze every thread of fleetd (lease keepalives
included). This process takes that risk instead: it owns the D-Bus connection,
runs one request at a time from stdin and forwards unit state signals to
stdout (frames of :mod:`fleetpy.systemd.protocol`). It exits on stdin EOF, and
on any D-Bus connection error (the manager restarts it). It never starts or
stops a unit on its own.

Single-threaded loop: select() on stdin and the bus fd; after every request
and every wake-up, drain the bus (sd_bus_call may queue signals while it
waits for its reply) and send the changes collected.

    python -m fleetpy.systemd.worker [--address ADDR] [--bus-client] [--no-bus]
"""

from __future__ import annotations

import errno
import importlib.util
import os
import select
import sys
import time
import types

from fleetpy.systemd import protocol

# The worker stays small (it runs beside every fleetd): no logging, argparse
# or typing at run time. mypy treats MYPY as true.
MYPY = False
if MYPY:
    from typing import Any


class _Log:
    """Lines on stderr (the journal), like logging's would be."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.verbose = False

    def _line(self, text: str) -> None:
        sys.stderr.write(f"{self.name}[{os.getpid()}] {text}\n")
        sys.stderr.flush()

    def debug(self, msg: str, *args: object) -> None:
        if self.verbose:
            self._line(msg % args)

    def info(self, msg: str, *args: object) -> None:
        self._line(msg % args)

    warning = error = info

    def exception(self, msg: str, *args: object) -> None:
        import traceback

        self._line(msg % args + "\n" + traceback.format_exc().rstrip())


log = _Log("fleetpy.systemd.worker")

SYSTEMD = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
STATE_PROPS = (b"LoadState", b"ActiveState", b"SubState")
LOST_CONNECTION = {-errno.ENOTCONN, -errno.ECONNRESET, -errno.EPIPE}
SAFETY_WAKE_S = 1.0  # drain the bus at least this often, in case a wake-up was missed


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Worker:
    def __init__(self, bus: Any, out_fd: int, bus_client: bool = False) -> None:
        self.bus = bus  # a pystemd DBus, or None (--no-bus: only ping/hang work)
        self.bus_client = bus_client  # via a dbus-daemon, not systemd's private socket
        self.out_fd = out_fd
        self.watch: set[str] | None = None  # None: every unit
        self.changes: list[list[str]] = []
        self.dispatched = 0
        self.disconnected = False
        self.signal_callback: Any = None
        self.last: dict[str, tuple[str, ...]] = {}  # last state sent, per unit

    # ---- output
    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        while data:
            data = data[os.write(self.out_fd, data) :]

    def flush_changes(self) -> None:
        if self.changes:
            self.send({"ev": "changes", "units": self.changes})
            self.changes = []

    # ---- signals
    def on_signal(self, msg: Any) -> None:
        self.dispatched += 1
        try:
            msg.process_reply(True)
            self._handle_signal(msg.headers, msg.body)
        except Exception:  # an exception must not escape into sd-bus
            log.exception("could not handle a D-Bus signal")

    def _handle_signal(self, headers: dict[str, Any], body: Any) -> None:
        member = headers.get("Member")
        if member == b"Disconnected":
            self.disconnected = True
            return
        if member == b"UnitRemoved" and body:
            self.last.pop(_s(body[0]), None)
            return
        if member != b"PropertiesChanged" or not body or body[0] != UNIT_IFACE:
            return
        name = protocol.decode_unit_path(_s(headers.get("Path") or b""))
        if name is None or (self.watch is not None and name not in self.watch):
            return
        changed = body[1] if len(body) > 1 and isinstance(body[1], dict) else {}
        values = [changed.get(prop) for prop in STATE_PROPS]
        if any(v is None for v in values):  # not sent by value: ask for it
            path = headers["Path"]
            values = [
                v if v is not None else self.bus.get_property(SYSTEMD, path, UNIT_IFACE, p, b"s")
                for v, p in zip(values, STATE_PROPS, strict=True)
            ]
        state = tuple(_s(v) for v in values)
        if self.last.get(name) != state:  # systemd repeats itself (e.g. when a job is queued)
            self.last[name] = state
            self.changes.append([name, *state])

    def drain(self) -> None:
        """Dispatch every queued bus message (each one runs on_signal), then flush."""
        if self.bus is not None:
            while True:
                before = self.dispatched
                self.bus.process()
                if self.dispatched == before:
                    break
        self.flush_changes()

    # ---- requests
    def handle(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        op = request.get("op", "")
        handler = getattr(self, f"op_{op}", None)
        try:
            if handler is None:
                raise ValueError(f"unknown request {op!r}")
            reply: dict[str, Any] = {"id": rid, "ok": handler(**request.get("args", {}))}
        except Exception as exc:
            message = getattr(exc, "err_message", None) or str(exc) or type(exc).__name__
            reply = {"id": rid, "err": _s(message), "kind": type(exc).__name__}
            if getattr(exc, "errno", None) in LOST_CONNECTION:
                self.disconnected = True
        self.send(reply)

    def _manager(self, method: bytes, signature: bytes = b"", *args: Any) -> Any:
        from pystemd.dbuslib import apply_signature

        params = apply_signature(signature, list(args)) if signature else []
        return self.bus.call_method(SYSTEMD, MANAGER_PATH, MANAGER_IFACE, method, params).body

    def op_ping(self) -> str:
        return "pong"

    def op_hang(self, seconds: float) -> None:
        """Test only: block this worker like a hung systemd would."""
        log.warning("hang requested for %.1fs (test)", seconds)
        time.sleep(seconds)

    def op_subscribe(self) -> None:
        self._manager(b"Subscribe")

    def op_watch(self, names: list[str] | None) -> None:
        self.watch = None if names is None else set(names)
        if self.watch is not None:  # a unit watched again later is reported afresh
            self.last = {n: v for n, v in self.last.items() if n in self.watch}

    def op_reload(self) -> None:
        self._manager(b"Reload")

    def op_start(self, name: str) -> str:
        return _s(self._manager(b"StartUnit", b"ss", name.encode(), b"replace"))

    def op_stop(self, name: str) -> str:
        return _s(self._manager(b"StopUnit", b"ss", name.encode(), b"replace"))

    def op_list(self, names: list[str] | None) -> list[list[str]]:
        if names is None:
            rows = self._manager(b"ListUnits")
        else:
            rows = self._manager(b"ListUnitsByNames", b"as", [n.encode() for n in names])
        if rows and not isinstance(rows[0], tuple | list):  # a single row comes unwrapped
            rows = [rows]
        return [[_s(r[0]), _s(r[2]), _s(r[3]), _s(r[4])] for r in rows or []]


    def op_origin(self, names: list[str]) -> list[list[str]]:
        """[name, load state, fragment path] of each named unit systemd knows (load
        state other than not-found); ListUnitsByNames loads a unit from disk if needed."""
        rows = self._manager(b"ListUnitsByNames", b"as", [n.encode() for n in names])
        if rows and not isinstance(rows[0], tuple | list):
            rows = [rows]
        out = []
        for row in rows or []:
            load = _s(row[2])
            if load == "not-found":
                continue
            fragment = self.bus.get_property(SYSTEMD, row[6], UNIT_IFACE, b"FragmentPath", b"s")
            out.append([_s(row[0]), load, _s(fragment)])
        return out


def _bare_pystemd() -> None:
    """Let ``import pystemd.dbuslib`` skip pystemd/__init__.

    The package's __init__ pulls in its object layer and lxml (about 8 MB of
    RSS) that the worker never uses: it only needs the D-Bus extension module.
    """
    if "pystemd" in sys.modules:
        return
    spec = importlib.util.find_spec("pystemd")
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("pystemd")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["pystemd"] = package


def connect(address: bytes, bus_client: bool) -> Any:
    _bare_pystemd()
    from pystemd.dbuslib import DBusAddress

    bus = DBusAddress(address, peer_to_peer=not bus_client)
    bus.open()
    return bus


def run(worker: Worker, in_fd: int) -> int:
    if worker.bus is not None:
        # Tried on systemd 252: on the private socket every signal reaches us with
        # or without Subscribe() (systemd sends to direct connections
        # unconditionally); on a dbus-daemon only after Subscribe().
        sender = SYSTEMD if worker.bus_client else None

        # pystemd sets an attribute on the callback (a plain function, not a bound
        # method) and does not keep a reference to it: the worker keeps one.
        def on_signal(msg: Any, error: Any = None, userdata: Any = None) -> None:
            worker.on_signal(msg)

        worker.signal_callback = on_signal
        worker.bus.match_signal(sender, None, None, None, on_signal)
        if worker.bus_client:
            worker.op_subscribe()  # the bus only carries systemd's signals to subscribers
    fds = [in_fd] if worker.bus is None else [in_fd, worker.bus.get_fd()]
    inbuf = bytearray()
    worker.send({"ev": "ready", "pid": os.getpid()})
    while not worker.disconnected:
        worker.drain()
        readable, _, _ = select.select(fds, [], [], SAFETY_WAKE_S)
        if in_fd in readable:
            data = os.read(in_fd, 1 << 16)
            if not data:
                log.debug("stdin closed: exiting")
                return 0
            inbuf += data
            for request in protocol.split_frames(inbuf):
                worker.handle(request)
                worker.drain()
    log.error("D-Bus connection to systemd lost: exiting")
    return 3


def parse_args(argv: list[str]) -> tuple[str, bool, bool]:
    """--address ADDR, --bus-client, --no-bus (test only)."""
    address, bus_client, no_bus = "unix:path=/run/systemd/private", False, False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--address" and args:
            address = args.pop(0)
        elif arg.startswith("--address="):
            address = arg.partition("=")[2]
        elif arg == "--bus-client":
            bus_client = True
        elif arg == "--no-bus":
            no_bus = True
        else:
            raise SystemExit(f"python -m fleetpy.systemd.worker: unknown argument {arg!r}")
    return address, bus_client, no_bus


def main(argv: list[str] | None = None) -> int:
    address, bus_client, no_bus = parse_args(sys.argv[1:] if argv is None else argv)
    # Frames go to a private copy of stdout; anything else printing to fd 1 lands on stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    bus = None
    if not no_bus:
        try:
            bus = connect(address.encode(), bus_client)
        except Exception as exc:
            log.error("cannot connect to systemd at %s: %s", address, exc)
            return 2
    worker = Worker(bus, out_fd, bus_client=bus_client)
    try:
        return run(worker, 0)
    except BrokenPipeError:
        return 0
    except Exception as exc:
        code = getattr(exc, "errno", None)
        if isinstance(code, int) and code in LOST_CONNECTION:  # e.g. systemctl daemon-reexec
            log.error("D-Bus connection to systemd lost (%s): exiting", os.strerror(-code))
        else:
            log.exception("worker failed")
        return 3


if __name__ == "__main__":
    sys.exit(main())
