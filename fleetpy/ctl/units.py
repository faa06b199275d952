"""Unit commands: submit, load, start, stop, unload, destroy, restart, cat.

Thin: parse the flags, hand over to fleetpy.ctl.actions (imported when run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click

from fleetpy.ctl.common import CtlEnv, pass_env, run_with_client, stderr_is_tty

if TYPE_CHECKING:
    from fleetpy.ctl.actions import Blocking
    from fleetpy.ctl.client import FleetClient


def _no_block(verb: str) -> Callable[[Any], Any]:
    return click.option(
        "--no-block", is_flag=True,
        help=f"Do not wait until the units have {verb} before exiting.")


def _block_attempts(verb: str) -> Callable[[Any], Any]:
    return click.option(
        "--block-attempts", type=click.IntRange(min=0), default=0, show_default=True,
        metavar="N",
        help=f"Wait until the units are {verb}, performing up to N attempts (0.5 s apart) "
             "before giving up. A value of 0 indicates no limit.")


_replace = click.option(
    "--replace", is_flag=True,
    help="Replace the old scheduled units in the cluster with new versions.")
_units = click.argument("units", nargs=-1, required=True, metavar="UNIT...")


def _blocking(no_block: bool, block_attempts: int) -> Blocking:
    from fleetpy.ctl.actions import Blocking

    return Blocking(no_block=no_block, attempts=block_attempts, tty=stderr_is_tty())


def _run(env: CtlEnv, action: Callable[[FleetClient], Awaitable[int]]) -> None:
    run_with_client(env, action)


@click.command(short_help="Upload one or more units to the cluster without starting them")
@_replace
@click.argument("units", nargs=-1, metavar="UNIT...")
@pass_env
def submit(env: CtlEnv, units: tuple[str, ...], replace: bool) -> None:
    """Upload one or more units to the cluster without starting them.

    Submitting is idempotent: a unit already in the cluster is left as it is
    (a warning says so when the local file differs; --replace replaces it).

    \b
        fleetctl submit foo.service
        fleetctl submit unit-files/templates/*
    """
    if not units:
        click.echo("No units given", err=True)
        return
    from fleetpy.ctl import actions

    _run(env, lambda c: actions.submit(c, units, replace))


@click.command(short_help="Schedule one or more units in the cluster, first submitting them "
                          "if necessary.")
@_no_block("been loaded")
@_block_attempts("loaded")
@_replace
@_units
@pass_env
def load(
    env: CtlEnv, units: tuple[str, ...], no_block: bool, block_attempts: int, replace: bool
) -> None:
    """Schedule one or more units in the cluster, first submitting them if necessary.

    A loaded unit is written to its machine and known to systemd there, but not
    started. Blocks until every unit reports loaded (see --no-block).
    """
    from fleetpy.ctl import actions

    actions.run_unit_command(env, "load", units, no_block=no_block,
                             block_attempts=block_attempts, replace=replace)


@click.command(short_help="Instruct systemd to start one or more units in the cluster, first "
                          "submitting and loading if necessary.")
@_no_block("launched")
@_block_attempts("launched")
@_replace
@_units
@pass_env
def start(
    env: CtlEnv, units: tuple[str, ...], no_block: bool, block_attempts: int, replace: bool
) -> None:
    """Instruct systemd to start one or more units in the cluster, first submitting and
    loading if necessary.

    Arguments are unit files or names of submitted units. An instance such as
    foo@5555.service with no file of its own uses the template foo@.service,
    from the cluster or beside the given path. Blocks until every unit reports
    launched, fails, or --block-attempts runs out (global units never block).

    \b
        fleetctl start foo.service
        fleetctl start unit-files/instances/*
        fleetctl start --no-block nginx@4444.service
    """
    from fleetpy.ctl import actions

    actions.run_unit_command(env, "start", units, no_block=no_block,
                             block_attempts=block_attempts, replace=replace)


@click.command(short_help="Instruct systemd to stop one or more units in the cluster.")
@_no_block("stopped")
@_block_attempts("stopped")
@_units
@pass_env
def stop(env: CtlEnv, units: tuple[str, ...], no_block: bool, block_attempts: int) -> None:
    """Instruct systemd to stop one or more units in the cluster.

    The units stay loaded on their machines and can be started again. Blocks
    until every unit reports loaded (see --no-block).
    """
    from fleetpy.ctl import actions

    actions.run_unit_command(env, "stop", units, no_block=no_block,
                             block_attempts=block_attempts)


@click.command(short_help="Unschedule one or more units in the cluster.")
@_no_block("become inactive")
@_block_attempts("inactive")
@_units
@pass_env
def unload(env: CtlEnv, units: tuple[str, ...], no_block: bool, block_attempts: int) -> None:
    """Unschedule one or more units in the cluster.

    The units are stopped if needed and removed from their machines, but stay
    submitted (list-unit-files shows them inactive).
    """
    from fleetpy.ctl import actions

    actions.run_unit_command(env, "unload", units, no_block=no_block,
                             block_attempts=block_attempts)


@click.command(short_help="Destroy one or more units in the cluster")
@_no_block("been removed from every machine")
@_block_attempts("removed from every machine")
@_units
@pass_env
def destroy(env: CtlEnv, units: tuple[str, ...], no_block: bool, block_attempts: int) -> None:
    """Destroy one or more units in the cluster.

    The units are stopped, removed from their machines and from the cluster.
    Blocks until no machine reports them any more (see --no-block).
    """
    from fleetpy.ctl import actions

    actions.run_unit_command(env, "destroy", units, no_block=no_block,
                             block_attempts=block_attempts)


@click.command(short_help="Instruct systemd to rolling restart one or more units in the cluster.")
@_block_attempts("stopped, then started")
@_units
@pass_env
def restart(env: CtlEnv, units: tuple[str, ...], block_attempts: int) -> None:
    """Instruct systemd to rolling restart one or more units in the cluster.

    One unit after the other: stop it, wait until it is stopped, start it,
    wait until it is launched.
    """
    from fleetpy.ctl import actions

    block = _blocking(False, block_attempts)
    _run(env, lambda c: actions.restart(c, units, block))


@click.command(short_help="Output the contents of a submitted unit")
@click.argument("units", nargs=-1, metavar="UNIT")
@pass_env
def cat(env: CtlEnv, units: tuple[str, ...]) -> None:
    """Output the contents of a submitted unit"""
    if len(units) != 1:
        click.echo("One unit file must be provided", err=True)
        click.get_current_context().exit(1)
    from fleetpy.ctl import actions

    _run(env, lambda c: actions.cat(c, units[0]))


COMMANDS: list[click.Command] = [submit, load, start, stop, unload, destroy, restart, cat]
