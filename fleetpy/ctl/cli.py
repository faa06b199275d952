"""fleetctl's click group: fleet's commands and flags, help and usage errors.

Global flags are also read from ``FLEETCTL_<FLAG>`` (``FLEETCTL_ENDPOINT``,
``FLEETCTL_DRIVER``, ``FLEETCTL_ETCD_ENDPOINTS``...). Only click is imported
here; a command's module (fleetpy.ctl.units, .lists...) is imported when that
command runs (or help lists it), and it imports the rest (gRPC, the etcd
client, ssh) when it talks to the cluster. A cold ``fleetctl list-units``
pays for Python, click, gRPC and protobuf, little else (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any

import click

from fleetpy.ctl.common import (
    DEFAULT_ENDPOINT,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_PREFIX,
    CtlEnv,
    CtlError,
    Settings,
    looks_like_etcd,
)
from fleetpy.ctl.main import COMMAND_MODULES


def _version() -> str:
    from fleetpy import __version__

    return __version__


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    """A usage error quotes what was typed: control characters in it (a stray CR or
    newline) are shown escaped, so the error stays one line."""
    try:
        yield
    except click.UsageError as e:
        text = e.format_message()
        clean = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        if clean == text:
            raise
        raise click.UsageError(clean, e.ctx) from None


class ShownError(click.ClickException):
    """A CtlError (fleetpy.ctl.common: no click there) as click shows errors."""

    def __init__(self, error: CtlError) -> None:
        super().__init__(error.message)
        self.error = error

    def show(self, file: IO[Any] | None = None) -> None:
        self.error.show(file)


class FleetGroup(click.Group):
    """fleet's wording for an unknown command; ``--version`` as in fleet; commands
    loaded from their modules when first asked for (COMMAND_MODULES)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors():
            try:
                return super().invoke(ctx)
            except CtlError as e:  # click shows it: "Error: ...", exit 1
                raise ShownError(e) from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            import importlib

            for cmd in importlib.import_module(f"fleetpy.ctl.{module}").COMMANDS:
                self.add_command(cmd)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            click.echo(f'fleetctl: unknown subcommand: "{name}"', err=True)
            click.echo("Run 'fleetctl help' for usage.", err=True)
            ctx.exit(2)
        return super().resolve_command(ctx, args)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"fleetctl version {_version()}")
        ctx.exit(0)


@click.group(
    cls=FleetGroup,
    invoke_without_command=True,
    context_settings={"auto_envvar_prefix": "FLEETCTL", "help_option_names": ["-h", "--help"],
                      "max_content_width": 120},
    help="fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init system.",
    epilog='Run "fleetctl help <command>" for more details on a specific command.',
)
@click.option("--endpoint", default=DEFAULT_ENDPOINT, show_default=True, show_envvar=True,
              metavar="URL[,URL...]",
              help="Location of the fleet API if --driver=api. Alternatively, if "
                   "--driver=etcd, location of the etcd API. Several (comma-separated): "
                   "each request goes to the one that answered last, else the next, "
                   "within --request-timeout.")
@click.option("--driver", type=click.Choice(["api", "etcd"], case_sensitive=False),
              default="api", show_default=True, show_envvar=True,
              help="Adapter used to execute fleetctl commands.")
@click.option("--etcd-endpoints", default="", show_envvar=True, metavar="URL[,URL...]",
              help="etcd endpoints for --driver=etcd (default: --endpoint).")
@click.option("--etcd-key-prefix", default=DEFAULT_PREFIX, show_default=True, show_envvar=True,
              help="Keyspace for fleet data in etcd (development use only!)")
@click.option("--request-timeout", type=float, default=3.0, show_default=True,
              show_envvar=True,
              help="Amount of time in seconds to allow a single request before "
                   "considering it failed.")
@click.option("--ca-file", default="", show_envvar=True, metavar="FILE",
              help="CA that signs the server's certificate (https:// API, or etcd).")
@click.option("--cert-file", default="", show_envvar=True, metavar="FILE",
              help="Client certificate for an API or etcd that requires one.")
@click.option("--key-file", default="", show_envvar=True, metavar="FILE",
              help="Private key of --cert-file.")
@click.option("--etcd-username", default="", show_envvar=True,
              help="etcd user for --driver=etcd (its password: FLEETCTL_ETCD_PASSWORD).")
@click.option("--etcd-password", default="", show_envvar=True, hidden=True)
@click.option("--plain-http-ok", is_flag=True, show_envvar=True,
              help="Do not warn that an http:// endpoint is plain (labs).")
@click.option("--tunnel", default="", show_envvar=True, metavar="HOST[:PORT]",
              help="Establish an SSH tunnel through the provided address for "
                   "communication with fleet.")
@click.option("--ssh-username", default="core", show_default=True, show_envvar=True,
              help="Username to use when connecting to CoreOS instance.")
@click.option("--ssh-timeout", type=float, default=10.0, show_default=True, show_envvar=True,
              help="Amount of time in seconds to allow for SSH connection initialization "
                   "before failing.")
@click.option("--ssh-identity-file", default="", show_envvar=True, metavar="FILE",
              help="Private key for SSH (default: your ssh-agent and ~/.ssh keys).")
@click.option("--known-hosts-file", default=DEFAULT_KNOWN_HOSTS, show_default=True,
              show_envvar=True,
              help="File used to store remote machine fingerprints. Ignored if strict host "
                   "key checking is disabled.")
@click.option("--strict-host-key-checking", type=click.BOOL, default=True, show_default=True,
              show_envvar=True,
              help="Verify host keys presented by remote machines before initiating SSH "
                   "connections.")
@click.option("--debug", is_flag=True, help="Print out more debug information to stderr.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the version and exit.")
@click.pass_context
def main(
    ctx: click.Context,
    /,
    endpoint: str,
    driver: str,
    etcd_endpoints: str,
    etcd_key_prefix: str,
    request_timeout: float,
    debug: bool,
    **more: Any,
) -> None:
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    else:  # gRPC's own lines (TLS alerts...) repeat what fleetctl says plainly
        import logging
        import os

        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        # fleetd's log line about each skipped entry: list-unit-files lists them instead
        logging.getLogger("fleetpy.registry.unreadable").addHandler(logging.NullHandler())
    env = ctx.ensure_object(CtlEnv)
    source = ctx.get_parameter_source
    if (source("driver") == click.core.ParameterSource.DEFAULT
            and source("endpoint") != click.core.ParameterSource.DEFAULT
            and looks_like_etcd(endpoint)):
        driver = "etcd"  # fleet: an --endpoint on an etcd port means --driver=etcd
    env.settings = Settings(
        endpoint=endpoint,
        driver=driver.lower(),
        etcd_endpoints=etcd_endpoints,
        etcd_key_prefix=etcd_key_prefix,
        request_timeout=request_timeout,
        **more,
    )
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


@main.command("version")
def version_cmd() -> None:
    """Print the version and exit"""
    click.echo(f"fleetctl version {_version()}")


@main.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_cmd(ctx: click.Context, command: str | None) -> None:
    """Show a list of commands or help for one command"""
    parent = ctx.parent
    assert parent is not None
    if not command:
        click.echo(parent.get_help())
        return
    cmd = main.get_command(parent, command)
    if cmd is None:
        raise click.UsageError(f'unknown subcommand: "{command}"', ctx)
    with click.Context(cmd, info_name=command, parent=parent) as sub:
        click.echo(cmd.get_help(sub))
