"""The agent's refusals: units of a name this machine has outside fleet (pure).

fleetd never touches a unit it did not write. Before loading a unit, the agent
asks its UnitManager (``outside_fleet``) whether a unit of that name exists on
the machine other than fleet's own file and link; if one does, the unit is not
loaded here and the agent publishes a refusal (``refused/<machine>/<unit>``)
with the reason, so that the engine places it elsewhere or says why it waits.

A refusal is a fact about the machine: it stays published while the host's
unit exists (checked again on every reconcile pass), even once the engine has
moved the unit away; otherwise the engine would place it back here and the
unit would go round the refusing machines forever.

No I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

SHORT_ID = 8


def refusal_reason(name: str, machine_id: str, where: str) -> str:
    """``ssh.service exists on 3f2a1234... outside fleet (/lib/systemd/system/ssh.service)``."""
    return f"{name} exists on {machine_id[:SHORT_ID]}... outside fleet ({where})"


@dataclass(frozen=True, slots=True)
class Refusals:
    """This pass's refusals: ``now`` (name -> reason) and the registry writes they need
    (``changes``: name -> reason, or None to delete a published refusal)."""

    now: dict[str, str] = field(default_factory=dict)
    changes: dict[str, str | None] = field(default_factory=dict)


def to_check(
    unloaded: Collection[str], published: Collection[str]
) -> list[str]:
    """Names to ask ``outside_fleet`` about: units to load here (no file of fleet's
    yet) and every refusal already published (is it still true?)."""
    return sorted(set(unloaded) | set(published))


def decide_refusals(
    machine_id: str,
    checked: Collection[str],
    found: Mapping[str, str],
    published: Mapping[str, str],
) -> Refusals:
    """Refusals after ``outside_fleet`` answered ``found`` for the names ``checked``.

    A checked name found outside fleet is refused (published if new or changed);
    a published refusal whose name was checked and not found is withdrawn.
    """
    now = {name: refusal_reason(name, machine_id, found[name]) for name in checked if name in found}
    changes: dict[str, str | None] = {
        name: reason for name, reason in now.items() if published.get(name) != reason
    }
    for name in published:
        if name in checked and name not in now:
            changes[name] = None
        elif name not in checked:
            now[name] = published[name]  # not asked about this pass: unchanged
    return Refusals(now=dict(sorted(now.items())), changes=dict(sorted(changes.items())))
