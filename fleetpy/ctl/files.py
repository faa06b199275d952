"""From fleetctl arguments to units: names, local files and templates.

An argument is a path to a unit file or the name of a submitted unit. The
unit's name is the argument's basename (for a symlink, the link's name: the
contents are those of the file it points to). As in fleet, a bare name with
no type suffix and no such file means ``NAME.service``.

For submit/load/start, each unit is found in order (as fleet does):
1. a unit by that name in the registry;
2. the file on disk;
3. for an instance ``foo@1.service``, the template ``foo@.service`` in the
   registry, then beside the given path on disk.
Everything is read and validated before anything is written, so bad input
leaves the registry unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from fleetpy.api.validation import checked_unit_file
from fleetpy.model import names
from fleetpy.model.reserved import check_managed
from fleetpy.model.types import UnitFile
from fleetpy.model.unitfile import MAX_UNIT_SIZE
from fleetpy.registry.base import UnitRecord


class BadInput(ValueError):
    """An argument cannot become a unit; the message says why.

    ``plain`` messages are fleet's own wording, printed without ``Error:``.
    """

    def __init__(self, message: str, plain: bool = False) -> None:
        super().__init__(message)
        self.plain = plain


def unit_name(arg: str) -> str:
    """The unit name an argument stands for (validated)."""
    base = os.path.basename(arg.rstrip("/")) or arg
    if "." not in base and not os.path.lexists(arg):
        base += ".service"
    try:
        names.validate_unit_name(base)
    except names.InvalidUnitName as e:
        raise BadInput(str(e)) from None
    return base


def check(name: str, data: str | bytes) -> tuple[UnitFile, tuple[str, ...]]:
    try:
        return checked_unit_file(name, data)
    except ValueError as e:
        raise BadInput(str(e)) from None


def read_unit_file(path: str, name: str) -> tuple[UnitFile, tuple[str, ...]]:
    """Read and validate ``path`` as the unit ``name`` (-> unit, warnings). Raises BadInput.

    The name is checked first, as the API does: a refused name is the error even
    when the file is also too large."""
    try:
        check_managed(name)
    except ValueError as e:
        raise BadInput(str(e)) from None
    try:
        if os.path.isdir(path):
            raise BadInput(f"{path} is a directory, not a unit file")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_UNIT_SIZE:
                raise BadInput(f"invalid unit file {names.quote(name)}: {size} bytes, "
                               f"more than {MAX_UNIT_SIZE}")
            data = f.read(MAX_UNIT_SIZE + 1)
    except OSError as e:
        raise BadInput(f"failed reading unit file {path}: {e.strerror or e}") from None
    return check(name, data)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One argument resolved: the unit to use and where it came from."""

    arg: str
    name: str
    existing: UnitRecord | None  # already in the registry
    local: UnitFile | None  # read from disk (or a template), when it was needed
    source: str  # file or template it was read from, for messages
    warnings: tuple[str, ...] = ()


def refuse_templates(args_names: Sequence[str], verb: str) -> None:
    """Templates can be submitted but not loaded or started."""
    for name in args_names:
        if names.is_template(name):
            raise BadInput(
                f"Unable to {verb} {name}: it is a template unit; {verb} an instance of it "
                f"instead (such as {name.replace('@.', '@1.', 1)})"
            )


def dedupe(args: Sequence[str]) -> list[tuple[str, str]]:
    """(arg, unit name) pairs, first occurrence of each name kept."""
    seen: set[str] = set()
    result: list[tuple[str, str]] = []
    for arg in args:
        name = unit_name(arg)
        if name not in seen:
            seen.add(name)
            result.append((arg, name))
    return result


def resolve_local(
    arg: str,
    name: str,
    existing: UnitRecord | None,
    template: UnitRecord | None,
    replace: bool,
) -> Wanted:
    """Decide where the unit ``name`` comes from (steps 2-3 above)."""
    if os.path.lexists(arg) and os.path.basename(arg.rstrip("/")) == name:
        if existing is not None and not replace:
            try:
                local, _ = read_unit_file(arg, name)
            except BadInput:
                return Wanted(arg, name, existing, None, arg)  # the registry copy is used
            return Wanted(arg, name, existing, local, arg)
        if not os.path.exists(arg):
            raise BadInput(f"failed reading unit file {arg}: broken symbolic link")
        local, warnings = read_unit_file(arg, name)
        return Wanted(arg, name, existing, local, arg, warnings)
    if existing is not None:
        return Wanted(arg, name, existing, None, "registry")
    tmpl_name = names.template_of(name)
    if tmpl_name is None:
        raise BadInput(f"unable to find unit {name} in the registry or on the filesystem")
    if template is not None:
        local, warnings = check(name, template.unit.contents)
        return Wanted(arg, name, None, local, f"template {tmpl_name} in the registry", warnings)
    path = os.path.join(os.path.dirname(arg), tmpl_name)
    if not os.path.exists(path):
        raise BadInput(
            f"unable to find unit {name} or its template {tmpl_name} "
            "in the registry or on the filesystem"
        )
    local, warnings = read_unit_file(path, name)
    return Wanted(arg, name, None, local, path, warnings)
