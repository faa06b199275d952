"""The ``[X-Fleet]`` section: where a unit may run.

Options (current name, then the deprecated names still read):

- ``MachineID=`` pin to one machine, by full ID or 8-character short ID
  (``X-ConditionMachineID``, ``X-ConditionMachineBootID``). The first value
  wins, as in fleet.
- ``MachineOf=`` run where each named unit runs (AND of all values)
  (``X-ConditionMachineOf``).
- ``MachineMetadata=k=v`` values for one key are OR-ed, keys AND-ed
  (``X-ConditionMachineMetadata``).
- ``Conflicts=`` globs (fnmatch) of units this one must not share a machine
  with, checked both ways (``X-Conflicts``).
- ``Global=`` run on every machine whose metadata matches; the last value wins;
  true/yes/1/on/t are true.
- ``Replaces=`` units this one takes the place of: they are moved away from
  the machine this unit gets.
- ``StopWhenDisconnected=`` (fleetpy's own) at most one copy: the agent stops
  the unit when its machine cannot renew its lease in time, and the engine
  waits before placing it elsewhere (docs/reliability.md); a boolean read
  like ``Global=``, the last value wins.

A value holds one or more words separated by blanks; a word may be quoted
(``MachineMetadata="region=us east" "disk=ssd"``) as fleet allows. An empty
value resets the option. Specifiers ``%n %N %p %i %%`` are expanded for the
unit's own name. Unknown keys and deprecated names give warnings (returned,
never logged). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fleetpy.model.names import VALID_CHARS, expand_specifiers, is_template, is_valid, quote
from fleetpy.model.unitfile import ParsedUnit, parse_unit

SECTION = "X-Fleet"
GLOB_CHARS = VALID_CHARS | frozenset("[]!*?^")
TRUE_WORDS = frozenset({"true", "yes", "1", "on", "t"})
FALSE_WORDS = frozenset({"false", "no", "0", "off", "f"})

# accepted key -> canonical option
KEYS: Mapping[str, str] = {
    "MachineID": "MachineID",
    "X-ConditionMachineID": "MachineID",
    "X-ConditionMachineBootID": "MachineID",
    "MachineOf": "MachineOf",
    "X-ConditionMachineOf": "MachineOf",
    "MachineMetadata": "MachineMetadata",
    "X-ConditionMachineMetadata": "MachineMetadata",
    "Conflicts": "Conflicts",
    "X-Conflicts": "Conflicts",
    "Global": "Global",
    "Replaces": "Replaces",
    "StopWhenDisconnected": "StopWhenDisconnected",
}
OPTIONS = (
    "Conflicts", "Global", "MachineID", "MachineMetadata", "MachineOf", "Replaces",
    "StopWhenDisconnected",
)


class InvalidXFleet(ValueError):
    """The [X-Fleet] section cannot be honoured; ``problems`` lists every reason."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"invalid [X-Fleet] in {quote(name)}: " + "; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class XFleet:
    """Placement requirements of one unit (specifiers already expanded)."""

    machine_id: str | None = None
    machine_of: tuple[str, ...] = ()
    machine_metadata: tuple[tuple[str, tuple[str, ...]], ...] = ()
    conflicts: tuple[str, ...] = ()
    is_global: bool = False
    replaces: tuple[str, ...] = ()
    stop_when_disconnected: bool = False

    @property
    def metadata(self) -> dict[str, frozenset[str]]:
        return {key: frozenset(values) for key, values in self.machine_metadata}

    def matches_metadata(self, metadata: Mapping[str, str]) -> bool:
        """True when every required key has one of its allowed values."""
        return all(metadata.get(key) in values for key, values in self.machine_metadata)

    def describe_metadata(self) -> str:
        """``region=us-east|us-west disk=ssd``."""
        return " ".join(f"{key}={'|'.join(values)}" for key, values in self.machine_metadata)


NO_REQUIREMENTS = XFleet()


def split_words(value: str) -> list[str]:
    """Blank-separated words; double quotes group (and are removed)."""
    words: list[str] = []
    word: list[str] = []
    quoted = False
    started = False
    for c in value:
        if c == '"':
            quoted = not quoted
            started = True
        elif c in " \t" and not quoted:
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(c)
            started = True
    if started:
        words.append("".join(word))
    return words


def _gather(parsed: ParsedUnit, name: str, warnings: list[str]) -> dict[str, list[str]]:
    """Canonical option -> words in file order, resets applied, specifiers expanded."""
    gathered: dict[str, list[str]] = {option: [] for option in OPTIONS}
    for opt in parsed.section(SECTION):
        canonical = KEYS.get(opt.key)
        if canonical is None:
            warnings.append(
                f"line {opt.line}: unknown [X-Fleet] option {quote(opt.key)} ignored "
                f"(known: {', '.join(OPTIONS)})"
            )
            continue
        if canonical != opt.key:
            warnings.append(f"line {opt.line}: {opt.key} is deprecated, use {canonical}")
        if not opt.value:
            gathered[canonical].clear()
            continue
        gathered[canonical].extend(expand_specifiers(w, name) for w in split_words(opt.value))
    return gathered


def _unit_names(option: str, words: list[str], check: bool, problems: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for word in words:
        if check and not is_valid(word):
            problems.append(f"{option}={word}: not a valid unit name")
        elif word not in out:
            out.append(word)
    return tuple(out)


def _metadata(words: list[str], problems: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    required: dict[str, set[str]] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key or not value:
            problems.append(f"MachineMetadata={word}: expected key=value")
            continue
        required.setdefault(key, set()).add(value)
    return tuple((key, tuple(sorted(values))) for key, values in sorted(required.items()))


def _boolean(option: str, words: list[str], warnings: list[str]) -> bool:
    """The last value, true/yes/1/on/t (any case); anything else is false, with a warning."""
    if not words:
        return False
    last = words[-1].lower()
    if last not in TRUE_WORDS | FALSE_WORDS:
        warnings.append(f"{option}={words[-1]} is not a boolean, taken as false")
    return last in TRUE_WORDS


def parse_xfleet(parsed: ParsedUnit, name: str | None = None) -> tuple[XFleet, tuple[str, ...]]:
    """Read [X-Fleet] for the unit ``name`` (default: the parsed unit's name).

    Returns the requirements and the warnings. Raises InvalidXFleet for a
    value that cannot be honoured (a malformed MachineMetadata pair, a
    MachineOf/Replaces value that is not a unit name, a bad Conflicts glob).
    Combinations are checked by ``validate``.
    """
    name = parsed.name if name is None else name
    warnings: list[str] = []
    problems: list[str] = []
    words = _gather(parsed, name, warnings)

    machine_id: str | None = None
    if words["MachineID"]:
        machine_id = words["MachineID"][0]
        if len(set(words["MachineID"])) > 1:
            warnings.append(f"MachineID has {len(words['MachineID'])} values, using the first")

    is_global = _boolean("Global", words["Global"], warnings)
    fenced = _boolean("StopWhenDisconnected", words["StopWhenDisconnected"], warnings)

    check_names = not is_template(name)
    machine_of = _unit_names("MachineOf", words["MachineOf"], check_names, problems)
    replaces = _unit_names("Replaces", words["Replaces"], check_names, problems)
    conflicts: list[str] = []
    for pattern in words["Conflicts"]:
        bad = sorted({c for c in pattern if c not in GLOB_CHARS})
        if bad:
            problems.append(f"Conflicts={pattern}: invalid character(s) {' '.join(bad)}")
        elif pattern not in conflicts:
            conflicts.append(pattern)
    spec = XFleet(
        machine_id=machine_id,
        machine_of=machine_of,
        # a template's %i is empty: its instances are checked when they are created
        machine_metadata=_metadata(words["MachineMetadata"], problems if check_names else []),
        conflicts=tuple(conflicts),
        is_global=is_global,
        replaces=replaces,
        stop_when_disconnected=fenced,
    )
    if problems:
        raise InvalidXFleet(name, problems)
    return spec, tuple(warnings)


def validate(spec: XFleet, name: str | None = None) -> list[str]:
    """Every impossible combination in ``spec``, each with its reason ([] when fine)."""
    problems: list[str] = []
    if spec.machine_id is not None:
        for present, option in (
            (spec.conflicts, "Conflicts"),
            (spec.is_global, "Global=true"),
            (spec.replaces, "Replaces"),
            (spec.machine_of, "MachineOf"),
        ):
            if present:
                problems.append(f"MachineID cannot be combined with {option}")
    if spec.is_global:
        if spec.machine_of:
            problems.append("Global=true cannot be combined with MachineOf")
        if spec.replaces:
            problems.append("Global=true cannot be combined with Replaces")
        if spec.conflicts:
            problems.append("Global=true cannot be combined with Conflicts")
    if spec.conflicts and spec.replaces:
        problems.append("Conflicts cannot be combined with Replaces")
    for target in spec.machine_of:
        if name is not None and target == name:
            problems.append(f"MachineOf={target} names the unit itself")
        for pattern in spec.conflicts:
            if fnmatchcase(target, pattern):
                problems.append(
                    f"MachineOf={target} can never be met: its own Conflicts={pattern} excludes it"
                )
    return problems


def check_xfleet(parsed: ParsedUnit, name: str | None = None) -> tuple[XFleet, tuple[str, ...]]:
    """``parse_xfleet`` then ``validate``; raises InvalidXFleet listing every problem."""
    name = parsed.name if name is None else name
    spec, warnings = parse_xfleet(parsed, name)
    problems = validate(spec, name)
    if problems:
        raise InvalidXFleet(name, problems)
    return spec, warnings


def xfleet_of(name: str, contents: str, template: str | None = None) -> XFleet:
    """Requirements of unit ``name`` from its contents, checked (warnings dropped).

    ``template`` is the name the contents were submitted under, when it
    differs (an instance created from ``foo@.service``): specifiers are still
    expanded for ``name``. Raises InvalidUnitFile or InvalidXFleet.
    """
    parsed = parse_unit(template or name, contents)
    return check_xfleet(parsed, name)[0]
