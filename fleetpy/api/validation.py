"""The checks every submitted unit passes, in fleetctl and in the API server alike,
and the API's limits on one request.

Limits (a request over one is refused with INVALID_ARGUMENT or, for the
message size, gRPC's RESOURCE_EXHAUSTED, naming the limit; nothing is written):

- MAX_REQUEST_BYTES: one request message (gRPC's max receive length);
- MAX_UNITS_PER_CALL: units (or names) in one CreateUnits, SetDesiredMany,
  GetUnits, DestroyUnits or WatchUnitStates call;
- MAX_UNIT_SIZE (fleetpy.model.unitfile): one unit file;
- MAX_ID_BYTES: a machine ID given to the API.

fleetctl sends at most CLIENT_BATCH units and CLIENT_BATCH_BYTES per request
(fleetpy.api.client), well within them, so any number of units goes through.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetpy.api.limits import CLIENT_BATCH, MAX_DETAIL, MAX_ID_BYTES, MAX_UNITS_PER_CALL
from fleetpy.model.names import quote, validate_unit_name
from fleetpy.model.reserved import check_managed, check_unit
from fleetpy.model.types import UnitFile
from fleetpy.model.unitfile import make_unit_file, parse_unit
from fleetpy.model.xfleet import check_xfleet


class RequestTooLarge(ValueError):
    """A request over one of the API's limits; the message names the limit."""


def checked_unit_file(name: str, data: str | bytes) -> tuple[UnitFile, tuple[str, ...]]:
    """The UnitFile for ``name`` and its [X-Fleet] warnings.

    Raises ValueError (InvalidUnitName, InvalidUnitFile, InvalidXFleet) naming
    the problem: a bad name or one fleet must not manage or systemd could not
    load with this file (fleetpy.model.reserved),
    a file systemd would not parse, a file over the size limit, or [X-Fleet]
    options that cannot be honoured together.
    """
    check_managed(name)
    unit = make_unit_file(name, data)
    parsed = parse_unit(name, unit.contents)
    check_unit(name, parsed)
    _, warnings = check_xfleet(parsed, name)
    return unit, warnings


def check_count(count: int, what: str = "units") -> None:
    """RequestTooLarge when one call carries more than MAX_UNITS_PER_CALL ``what``."""
    if count > MAX_UNITS_PER_CALL:
        raise RequestTooLarge(
            f"too many {what} in one request: {count}, the limit is {MAX_UNITS_PER_CALL} "
            f"per call (fleetctl sends {CLIENT_BATCH} at a time)"
        )


def checked_names(names: Sequence[str]) -> list[str]:
    """``names`` after check_count and unit name validation (InvalidUnitName)."""
    check_count(len(names), "unit names")
    for name in names:
        validate_unit_name(name)
    return list(names)


def checked_machine_id(machine_id: str) -> str:
    """A machine ID as a key segment: at most MAX_ID_BYTES, no ``/`` (ValueError)."""
    if len(machine_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise RequestTooLarge(f"invalid machine ID {quote(machine_id)}: longer than "
                              f"{MAX_ID_BYTES} bytes")
    if "/" in machine_id:
        raise ValueError(f'invalid machine ID {quote(machine_id)}: contains "/"')
    return machine_id


def short_detail(message: str) -> str:
    """An error message cut to MAX_DETAIL characters (gRPC sends it in a header)."""
    if len(message) <= MAX_DETAIL:
        return message
    return message[: MAX_DETAIL - 3] + "..."
