"""--tunnel HOST[:PORT]: the API through one ssh connection to a cluster member.

fleetctl starts ``ssh -N -L LOCAL.sock:REMOTE HOST`` (OpenSSH's stream-local
forwarding) and talks gRPC to LOCAL.sock, a socket in a private temporary
directory (0700, socket 0600); REMOTE is fleetd's unix socket on the member
(or host:port of a TCP endpoint, reached from the member). Every RPC of the
command goes through that one ssh connection, which ends with the command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleetpy.ctl.ssh import SshOptions, prepare_known_hosts, split_host_port, ssh_argv

log = logging.getLogger(__name__)


class TunnelError(Exception):
    """The tunnel could not be opened; the message says why (ssh's own words)."""


class Tunnel:
    def __init__(self, opts: SshOptions, remote: str) -> None:
        self.host, self.port = split_host_port(opts.tunnel)
        self.opts = SshOptions(opts.user, opts.timeout, opts.identity_file,
                               opts.known_hosts_file, opts.strict, tunnel="")
        self.remote = remote
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def local(self) -> str:
        assert self._dir is not None
        return str(self._dir / "fleet.sock")

    def open(self) -> str:
        """Start ssh and wait until the forward listens; the local socket's path."""
        prepare_known_hosts(self.opts)
        self._dir = Path(tempfile.mkdtemp(prefix="fleetctl-tunnel-"))
        errors = self._dir / "ssh.err"
        argv = ssh_argv(self.opts, self.host, self.port, extra=[
            "-N", "-L", f"{self.local}:{self.remote}", "-o", "ExitOnForwardFailure=yes",
            "-o", "StreamLocalBindMask=0177", "-o", "ServerAliveInterval=10",
        ])
        log.debug("tunnel: %s", " ".join(argv))
        with errors.open("wb") as err:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err,
                                          start_new_session=True)
        deadline = time.monotonic() + self.opts.timeout + 1.0
        while not os.path.exists(self.local):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = errors.read_text(errors="replace").strip() or (
                    f"ssh exited with status {self._proc.returncode}"
                    if self._proc.returncode is not None
                    else f"no connection after {self.opts.timeout:g}s")
                self.close()
                raise TunnelError(f"cannot open the ssh tunnel to {self.host}:{self.port}:\n{why}")
            time.sleep(0.005)
        said = errors.read_text(errors="replace").strip()
        if said:  # e.g. "Warning: Permanently added ... to the list of known hosts."
            print(said, file=sys.stderr)
        return self.local

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
