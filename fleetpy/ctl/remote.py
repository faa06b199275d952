"""ssh and fd-forward, and running a command on a unit's machine.

A command for a machine runs locally when that machine is this one (and no
--tunnel is given), else over ssh (fleetpy.ctl.ssh) as --ssh-username; the
remote exit status is ours (255: ssh itself failed, and said why).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, CtlError, Settings, pass_env, run_with_client

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient
    from fleetpy.model.types import Machine

MACHINE_ID_FILE = "/etc/machine-id"


def local_machine_id() -> str | None:
    try:
        with open(MACHINE_ID_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _run(argv: Sequence[str]) -> int:
    """Run ``argv`` in the foreground, passing ^C, SIGTERM and SIGHUP on to it.

    A child killed by a signal is exit status 128 + the signal, as in a shell.
    """
    sys.stdout.flush()
    try:
        proc = subprocess.Popen(list(argv))
    except FileNotFoundError:
        raise CtlError(f"{argv[0]} not found: install it (OpenSSH client: ssh)") from None
    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, lambda n, _f: proc.send_signal(n)) for sig in forwarded}
    try:
        code = proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def ssh_command(settings: Settings, machine: Machine, command: Sequence[str] = (), *,
                port: int = 22, forward_agent: bool = False, tty: bool = False,
                batch: bool = True) -> list[str]:
    from fleetpy.ctl.ssh import SshOptions, prepare_known_hosts, ssh_argv

    if not machine.public_ip:
        raise CtlError(f"Could not determine address of machine {machine.id[:8]}...")
    opts = SshOptions.of(settings)
    prepare_known_hosts(opts)
    return ssh_argv(opts, machine.public_ip, port, command=command,
                    forward_agent=forward_agent, tty=tty, batch=batch)


def run_on(settings: Settings, machine: Machine, argv: Sequence[str], tty: bool = False) -> int:
    """Run ``argv`` on ``machine``: here if it is this machine, else over ssh."""
    if not settings.tunnel and machine.id == local_machine_id():
        if argv[0] == "sudo" and os.geteuid() == 0:
            argv = argv[1:]
        return _run(argv)
    return _run(ssh_command(settings, machine, [shlex.join(argv)], tty=tty))


@click.command("ssh", context_settings={"ignore_unknown_options": True,
                                        "allow_interspersed_args": False})
@click.option("-m", "--machine", default="", help="Open SSH connection to a specific machine.")
@click.option("-u", "--unit", default="",
              help="Open SSH connection to machine running provided unit.")
@click.option("-A", "--forward-agent", is_flag=True,
              help="Forward local ssh-agent to target machine.")
@click.option("--ssh-port", type=click.IntRange(1, 65535), default=22, show_default=True,
              help="Port of the machine's sshd.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="{MACHINE|UNIT} [COMMAND...]")
@pass_env
def ssh(env: CtlEnv, machine: str, unit: str, forward_agent: bool, ssh_port: int,
        args: tuple[str, ...]) -> None:
    """Open interactive shell on a machine in the cluster

    Open a shell (or run COMMAND) on a machine given by a prefix of its ID, or
    on the machine a unit is scheduled on; --machine/--unit say which one the
    argument is. The remote command's exit status is fleetctl's.

    \b
    Examples:
      fleetctl ssh 605c0ca8
      fleetctl ssh nginx@6666.service
      fleetctl ssh -A 605c0ca8 -- ssh-add -l
      fleetctl --tunnel 172.17.8.101 ssh hello.service systemctl status hello
    """
    from fleetpy.api.snapshot import read_snapshot
    from fleetpy.ctl import files
    from fleetpy.ctl.locate import ssh_target

    if machine and unit:
        raise CtlError("Both machine and unit flags provided, please specify only one.")
    rest = list(args)
    target = machine or unit
    if not target:
        if not rest:
            raise CtlError("one machine or unit must be provided")
        target = rest.pop(0)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    assert env.settings is not None
    found: list[Machine] = []

    async def action(client: FleetClient) -> int:
        name = None
        with contextlib.suppress(ValueError):
            name = files.unit_name(target)
        snap = await read_snapshot(client, [name] if name else [])
        found.append(ssh_target(target, name, snap, machine_only=bool(machine),
                                unit_only=bool(unit)))
        return 0

    run_with_client(env, action)
    argv = ssh_command(env.settings, found[0], rest, port=ssh_port,
                       forward_agent=forward_agent, batch=False)
    code = _run(argv)
    if code:
        click.get_current_context().exit(code)


@click.command("fd-forward")
@click.argument("socket_path", metavar="SOCKET")
def fd_forward(socket_path: str) -> None:
    """Proxy stdin and stdout to a unix domain socket

    What a --tunnel of fleet ran on the member (``fleetctl fd-forward
    /var/run/fleet.sock``); fleetpy's --tunnel forwards the socket with ssh
    itself, so this is for other tools.
    """
    import socket
    import threading

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as e:
        raise CtlError(f"cannot connect to {socket_path}: {e.strerror or e}") from None

    def upstream() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(0, 65536):
                sock.sendall(data)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    sock.close()


COMMANDS: list[click.Command] = [ssh, fd_forward]
