"""List commands: list-units, list-unit-files, list-machines (their work: fleetpy.ctl.listing).

Row builders are pure (data in, field -> value out); the commands fetch, then
hand the rows to the one renderer (fleetpy.ctl.render).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from fleetpy.ctl import listing
from fleetpy.ctl.common import CtlEnv, pass_env
from fleetpy.ctl.listing import (
    MACHINES_DEFAULT,
    MACHINES_FIELDS,
    PAGE,
    UNIT_FILES_DEFAULT,
    UNIT_FILES_FIELDS,
    UNITS_DEFAULT,
    UNITS_FIELDS,
    Row,
    StateRow,
    machine_rows,
    state_cells,
    state_row,
    unit_file_rows,
    unit_state_rows,
    unreadable_report,
)
from fleetpy.ctl.render import OUTPUTS

__all__ = [
    "COMMANDS",
    "MACHINES_DEFAULT",
    "MACHINES_FIELDS",
    "PAGE",
    "UNITS_DEFAULT",
    "UNITS_FIELDS",
    "UNIT_FILES_DEFAULT",
    "UNIT_FILES_FIELDS",
    "Row",
    "StateRow",
    "machine_rows",
    "state_cells",
    "state_row",
    "unit_file_rows",
    "unit_state_rows",
    "unreadable_report",
]


def _table_options(default_fields: str, valid: tuple[str, ...]) -> Callable[[Any], Any]:
    def decorate(fn: Any) -> Any:
        for opt in reversed([
            click.option("--full", "-l", is_flag=True, help="Do not ellipsize fields on output"),
            click.option("--no-legend", is_flag=True,
                         help="Do not print a legend (column headers)"),
            click.option("--fields", default=default_fields, show_default=True,
                         help=f"Columns to print. Valid fields are {','.join(valid)!r}"),
            click.option("--output", "-o", type=click.Choice(OUTPUTS), default="plain",
                         show_default=True, help="plain: fleet's table; json: for scripts"),
        ]):
            fn = opt(fn)
        return fn
    return decorate


@click.command("list-units", short_help="List the current state of units in the cluster")
@_table_options(UNITS_DEFAULT, UNITS_FIELDS)
@pass_env
def list_units(env: CtlEnv, full: bool, no_legend: bool, fields: str, output: str) -> None:
    """List the current state of units in the cluster"""
    listing.list_units(env, full, no_legend, fields, output)


@click.command("list-unit-files", short_help="List the units that exist in the cluster.")
@_table_options(UNIT_FILES_DEFAULT, UNIT_FILES_FIELDS)
@pass_env
def list_unit_files(env: CtlEnv, full: bool, no_legend: bool, fields: str, output: str) -> None:
    """List the units that exist in the cluster.

    STATE says what fleet did to the unit: inactive, loaded, launched, failed
    (fleet started it, systemd says failed) or finished (fleet started it, it
    ended without failing). A unit desired loaded or launched that no machine
    can take shows STATE waiting and TARGET -; the reason field says why
    (--fields=unit,reason), or which operation of fleet's failed on the unit's
    machine and what systemd said (e.g. a stop systemd refused).
    Registry entries that cannot be read (and that fleet therefore skips) are
    listed on stderr after the table; with --output json as a JSON object
    {"unreadable": [{"key", "problem", "revision"}...]}.
    """
    listing.list_unit_files(env, full, no_legend, fields, output)


@click.command("list-machines", short_help="Enumerate the current hosts in the cluster")
@_table_options(MACHINES_DEFAULT, MACHINES_FIELDS)
@pass_env
def list_machines(env: CtlEnv, full: bool, no_legend: bool, fields: str, output: str) -> None:
    """Enumerate the current hosts in the cluster.

    STATE (--fields state, always in -o json) is ready, cordoned or draining
    (fleetctl cordon, drain); the default columns add it when some machine is
    not ready, so fleet's three columns stay as they were otherwise.
    """
    listing.list_machines(env, full, no_legend, fields, output)


COMMANDS: list[click.Command] = [list_units, list_unit_files, list_machines]
