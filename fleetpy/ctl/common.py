"""Shared plumbing of the fleetctl commands: context, errors, running a client.

Kept light, without click even: fleetpy.ctl.quick runs the list commands from
here without loading click, and the click group (fleetpy.ctl.cli) shows a
CtlError as click shows its own. grpc, asyncio and the etcd client are imported
when a command actually talks to the cluster, so ``fleetctl --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click

    from fleetpy.ctl.client import FleetClient, RegistryFactory

DEFAULT_ENDPOINT = "unix:///var/run/fleet.sock"
DEFAULT_PREFIX = "/fleetpy/"
DEFAULT_ETCD_ENDPOINTS = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
ETCD_PORTS = ("2379", "4001")
DEFAULT_KNOWN_HOSTS = "~/.fleetctl/known_hosts"


@dataclass(frozen=True, slots=True)
class Settings:
    """fleetctl's global options."""

    endpoint: str = DEFAULT_ENDPOINT
    driver: str = "api"
    etcd_endpoints: str = ""
    etcd_key_prefix: str = DEFAULT_PREFIX
    request_timeout: float = 3.0
    # TLS files: the API's (https:// endpoints) and etcd's (--driver etcd).
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    etcd_username: str = ""
    etcd_password: str = ""
    plain_http_ok: bool = False  # no warning for an http:// endpoint (labs)
    # ssh: fleetctl ssh/status/journal and --tunnel.
    tunnel: str = ""
    ssh_username: str = "core"
    ssh_timeout: float = 10.0
    ssh_identity_file: str = ""
    known_hosts_file: str = DEFAULT_KNOWN_HOSTS
    strict_host_key_checking: bool = True

    def etcd_endpoint_list(self) -> list[str]:
        """--etcd-endpoints, else --endpoint unless it is a unix socket, else fleet's
        old local default (127.0.0.1 on 2379 and 4001)."""
        spec = self.etcd_endpoints
        if not spec and not self.endpoint.startswith(("unix:", "file:")):
            spec = self.endpoint
        endpoints = [e.strip() for e in spec.split(",") if e.strip()]
        return endpoints or list(DEFAULT_ETCD_ENDPOINTS)


def looks_like_etcd(endpoint: str) -> bool:
    """fleet's rule: an --endpoint on port 2379 or 4001 means --driver etcd."""
    first = endpoint.split(",")[0].strip().rstrip("/")
    return first.rpartition(":")[2] in ETCD_PORTS


class CtlError(Exception):
    """A user-facing failure: message on stderr, exit 1, no traceback.

    ``prefix`` False prints fleet's own wording as it is (``Unit x not found``).
    The click group shows it the way click shows its own errors (fleetpy.ctl.cli).
    """

    exit_code = 1

    def __init__(self, message: str, prefix: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.prefix = prefix

    def __str__(self) -> str:
        return self.message

    def format_message(self) -> str:
        return self.message

    def show(self, file: IO[Any] | None = None) -> None:
        text = f"Error: {self.message}" if self.prefix else self.message
        echo(text, err=True, file=file)


@dataclass
class CtlEnv:
    """Per-invocation state carried in click's ``ctx.obj``.

    Tests pass their own (``CliRunner().invoke(main, args, obj=CtlEnv(...))``)
    to inject a registry for ``--driver etcd``.
    """

    settings: Settings | None = None
    registry_factory: RegistryFactory | None = None
    extra: dict[str, Any] = field(default_factory=dict)


if TYPE_CHECKING:
    pass_env = click.make_pass_decorator(CtlEnv, ensure=True)
else:
    def __getattr__(name: str) -> Any:
        """``pass_env`` (click's pass decorator for CtlEnv), made when a command module
        built on click asks for it: this module stays free of click."""
        if name == "pass_env":
            import click

            globals()["pass_env"] = decorator = click.make_pass_decorator(CtlEnv, ensure=True)
            return decorator
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ANSI styles, as click.echo strips them from output that is not a terminal.
_ANSI = r"\033\[[;?0-9]*[a-zA-Z]"


def echo(text: str, nl: bool = True, err: bool = False, file: IO[Any] | None = None) -> None:
    """``click.echo`` of a str: click's own once click is loaded (the click group, tests);
    without click (fleetpy.ctl.quick, whose streams are UTF-8) the same: the line on
    stdout (stderr with ``err``), ANSI styles removed unless it is a terminal, flushed."""
    if "click" in sys.modules:
        import click

        click.echo(text, nl=nl, err=err, file=file)
        return
    stream = file if file is not None else sys.stderr if err else sys.stdout
    if stream is None:
        return
    if nl:
        text += "\n"
    if "\033" in text and not _isatty(stream):
        import re

        text = re.sub(_ANSI, "", text)
    if text:
        stream.write(text)
    stream.flush()


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


def out(text: str, nl: bool = True) -> None:
    echo(text, nl=nl)


def err(text: str) -> None:
    echo(text, err=True)


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def run_with_client(env: CtlEnv, action: Callable[[FleetClient], Awaitable[int]]) -> None:
    """Open the client, run ``action`` with it, close it; exit with its status.

    Connection and registry failures become ``Error: ...`` and exit 1.
    """
    import asyncio

    from fleetpy.ctl.connect import open_client
    from fleetpy.registry.errors import RegistryError

    assert env.settings is not None

    async def go() -> int:
        try:
            client = await open_client(env.settings, env.registry_factory)  # type: ignore[arg-type]
        except ValueError as e:
            raise CtlError(f"Unable to initialize client: {e}") from None
        if not gc.isenabled():  # off for the start-up's imports (fleetpy.ctl.main.run)
            gc.freeze()
            gc.enable()
        try:
            return await action(client)
        finally:
            with contextlib.suppress(Exception):  # closing must not hide the outcome
                await client.close()

    try:
        code = asyncio.run(go())
    except RegistryError as e:
        raise CtlError(str(e) or type(e).__name__) from None
    except ValueError as e:  # bad input: invalid name or file, unknown unit...
        raise CtlError(str(e), prefix=not getattr(e, "plain", False)) from None
    except KeyboardInterrupt:
        err("Interrupted")
        sys.exit(130)
    except BrokenPipeError:  # fleetctl list-units | head: the reader left, not an error
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    if code:
        if "click" in sys.modules:
            import click

            click.get_current_context().exit(code)
        sys.exit(code)
