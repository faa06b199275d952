"""fleetctl's ssh: the system OpenSSH client (``ssh``) with fleet's options.

Host keys are checked against --known-hosts-file (``~/.fleetctl/known_hosts``)
alone, as fleet does: an unknown host's key is added
(``StrictHostKeyChecking=accept-new``), a changed one is refused with
OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED!" warning, fleet's own.
``--strict-host-key-checking=false`` checks and records nothing.

With --tunnel HOST[:PORT], connections to machines go through that member
(``ProxyCommand ssh ... -W %h:%p HOST``, the same options on both hops).
Building the command line is pure; nothing here runs ssh.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetpy.ctl.common import DEFAULT_KNOWN_HOSTS, Settings

SSH = "ssh"
DEFAULT_PORT = 22


@dataclass(frozen=True, slots=True)
class SshOptions:
    user: str = "core"
    timeout: float = 10.0
    identity_file: str = ""
    known_hosts_file: str = DEFAULT_KNOWN_HOSTS
    strict: bool = True
    tunnel: str = ""  # HOST[:PORT] of the member to go through

    @classmethod
    def of(cls, s: Settings) -> SshOptions:
        return cls(s.ssh_username, s.ssh_timeout, s.ssh_identity_file, s.known_hosts_file,
                   s.strict_host_key_checking, s.tunnel)

    @property
    def known_hosts(self) -> Path:
        return Path(os.path.expanduser(self.known_hosts_file))


def split_host_port(spec: str, default: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:2222``, ``[fe80::1]:2222`` -> (host, port). ValueError if bad."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty host")
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
        port = port or "-"  # "host:" is a mistake, not port 22
    else:
        host, port = spec, ""
    if not host or (port and not port.isdigit()):
        raise ValueError(f"bad host {spec!r}: expected HOST or HOST:PORT")
    number = int(port) if port else default
    if not 0 < number < 65536:
        raise ValueError(f"bad port in {spec!r}")
    return host, number


def _common(opts: SshOptions) -> list[str]:
    """Options of every hop: who we are, how long to wait, which host keys to trust."""
    argv = ["-l", opts.user, "-o", f"ConnectTimeout={max(1, math.ceil(opts.timeout))}"]
    if opts.identity_file:
        argv += ["-i", os.path.expanduser(opts.identity_file)]
    if opts.strict:
        argv += ["-o", "StrictHostKeyChecking=accept-new",
                 "-o", f"UserKnownHostsFile={opts.known_hosts}",
                 "-o", "HashKnownHosts=no", "-o", "UpdateHostKeys=no"]
    else:
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "LogLevel=ERROR"]
    return [*argv, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ControlPath=none"]


def _proxy(opts: SshOptions) -> list[str]:
    host, port = split_host_port(opts.tunnel)
    hop = [SSH, *_common(opts), "-o", "BatchMode=yes", "-p", str(port), "-W", "%h:%p", "--", host]
    # ssh expands %-tokens in ProxyCommand: escape ours, keep %h:%p.
    text = shlex.join(a.replace("%", "%%") for a in hop).replace("%%h:%%p", "%h:%p")
    return ["-o", f"ProxyCommand={text}"]


def ssh_argv(
    opts: SshOptions,
    host: str,
    port: int = DEFAULT_PORT,
    *,
    command: Sequence[str] = (),
    forward_agent: bool = False,
    tty: bool = False,
    batch: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ssh command line that runs ``command`` (a login shell if empty) on ``host``.

    ``command`` words are sent as they are (the remote shell parses them);
    quote with shlex.join first for a literal command. Options end (``--``)
    before the host. ``batch``: never
    prompt (keys from the agent or --ssh-identity-file only).
    """
    argv = [SSH, *_common(opts), "-p", str(port)]
    if opts.tunnel:
        argv += _proxy(opts)
    argv += ["-A"] if forward_agent else ["-o", "ForwardAgent=no"]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    if tty:
        argv.append("-t")
    # "--" ends ssh's options: neither the host nor a command word is taken
    # for one (ssh reads options after the host too, unless "--" came first).
    return [*argv, *extra, "--", host, *command]


def prepare_known_hosts(opts: SshOptions) -> None:
    """Create the known_hosts file's directory (0700), as ssh will not."""
    if opts.strict:
        opts.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
