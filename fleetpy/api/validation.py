"""The checks every submitted unit passes, in fleetctl and in the API server alike."""

from __future__ import annotations

from fleetpy.model.reserved import check_managed, check_unit
from fleetpy.model.types import UnitFile
from fleetpy.model.unitfile import make_unit_file, parse_unit
from fleetpy.model.xfleet import check_xfleet


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
