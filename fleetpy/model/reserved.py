"""Unit names fleet refuses to manage, and why: the rule submit applies.

A name can be a valid systemd unit name (fleetpy.model.names) and still be
one fleet must never take over, or one its agent cannot run:

- fleet's own units (``fleet.service``, ``fleet.socket``): stopping them from
  fleet would stop fleetd itself;
- systemd's own units: every ``systemd-*`` name, and the special units
  systemd defines for the system manager (systemd.special(7)): ``-.mount``,
  ``init.scope``, ``dbus.service``, ``default.target``, ``multi-user.target``,
  ``system.slice``... (an instance counts when its template is one,
  ``user@1000.service``);
- unit types that do not come from a unit file fleet writes: ``.scope``
  (systemd creates scopes at run time, over D-Bus), ``.slice`` (systemd's
  resource tree) and ``.device`` (made from udev);
- names starting with ``.``: systemd skips hidden files in its unit
  directories, so such a unit could never be loaded;
- a 255-byte name starting with ``_`` of a unit that gets a control group
  (service, socket, mount, swap): systemd names the group ``_`` + the name,
  one byte over the file name limit, and every start fails.

Two more limits depend on the file as well as the name (``unit_problem``):
systemd derives a second name from a unit's and refuses to load the unit
when that one is over 255 bytes:

- a socket, timer or path unit triggers ``STEM.service`` unless the file
  names its unit (``Service=``, ``Unit=``);
- an instance (``PREFIX@INSTANCE``) of a unit with a control group goes into
  the slice ``system-ESCAPED_PREFIX.slice`` unless the file sets ``Slice=``
  (``-`` and ``\\`` in the prefix take 4 bytes each once escaped).

A unit whose name already exists on a machine outside fleet is not refused
here: it waits on that machine (the agent's rule). Pure: no I/O.
"""

from __future__ import annotations

from fleetpy.model.names import (
    UNIT_NAME_MAX,
    VALID_CHARS,
    InvalidUnitName,
    quote,
    template_of,
    validate_unit_name,
)
from fleetpy.model.unitfile import ParsedUnit

FLEET_UNITS = frozenset({"fleet.service", "fleet.socket"})
SYSTEMD_PREFIX = "systemd-"

# systemd.special(7), systemd 252: the units the system manager itself defines.
SYSTEMD_SPECIAL = frozenset(
    {
        "-.mount",
        "-.slice",
        "init.scope",
        "dbus.service",
        "dbus.socket",
        "display-manager.service",
        "syslog.socket",
        "system-update-cleanup.service",
        "user@.service",
        "machine.slice",
        "system.slice",
        "user.slice",
        "basic.target",
        "blockdev@.target",
        "bluetooth.target",
        "boot-complete.target",
        "cryptsetup-pre.target",
        "cryptsetup.target",
        "ctrl-alt-del.target",
        "default.target",
        "emergency.target",
        "exit.target",
        "factory-reset.target",
        "final.target",
        "first-boot-complete.target",
        "getty-pre.target",
        "getty.target",
        "graphical.target",
        "halt.target",
        "hibernate.target",
        "hybrid-sleep.target",
        "initrd-fs.target",
        "initrd-root-device.target",
        "initrd-root-fs.target",
        "initrd-usr-fs.target",
        "initrd.target",
        "integritysetup-pre.target",
        "integritysetup.target",
        "kbrequest.target",
        "kexec.target",
        "local-fs-pre.target",
        "local-fs.target",
        "machines.target",
        "multi-user.target",
        "network-online.target",
        "network-pre.target",
        "network.target",
        "nss-lookup.target",
        "nss-user-lookup.target",
        "paths.target",
        "poweroff.target",
        "printer.target",
        "reboot.target",
        "remote-cryptsetup.target",
        "remote-fs-pre.target",
        "remote-fs.target",
        "remote-veritysetup.target",
        "rescue.target",
        "rpcbind.target",
        *(f"runlevel{n}.target" for n in range(7)),
        "shutdown.target",
        "sigpwr.target",
        "sleep.target",
        "slices.target",
        "smartcard.target",
        "sockets.target",
        "sound.target",
        "suspend-then-hibernate.target",
        "suspend.target",
        "swap.target",
        "sysinit.target",
        "system-update-pre.target",
        "system-update.target",
        "time-set.target",
        "time-sync.target",
        "timers.target",
        "umount.target",
        "usb-gadget.target",
        "veritysetup-pre.target",
        "veritysetup.target",
    }
)

REFUSED_TYPES = {
    "scope": "a .scope unit cannot be loaded from a unit file "
    "(systemd creates scopes at run time)",
    "slice": "a .slice unit is part of systemd's own resource tree; fleet does not manage slices",
    "device": "a .device unit comes from udev, not from a unit file",
}


CGROUP_TYPES = frozenset({"service", "socket", "mount", "swap"})
SECTIONS = {"service": "Service", "socket": "Socket", "mount": "Mount", "swap": "Swap",
            "timer": "Timer", "path": "Path"}
TRIGGER_KEYS = {"socket": "Service", "timer": "Unit", "path": "Unit"}
TRUE_WORDS = frozenset({"1", "yes", "y", "true", "t", "on"})
ESCAPE_KEPT = frozenset(VALID_CHARS) - {"-", "\\", "@"}


def managed_problem(name: str) -> str | None:
    """Why fleet must not manage the valid unit name ``name``, or None when it may."""
    if name.startswith("."):
        return ('starts with ".": systemd skips hidden files in its unit directories, '
                "so the unit could never be loaded")
    suffix = name[name.rfind(".") + 1 :]
    if suffix in REFUSED_TYPES:
        return REFUSED_TYPES[suffix]
    if name.startswith("_") and suffix in CGROUP_TYPES and len(name.encode()) >= UNIT_NAME_MAX:
        return (f'starts with "_" and is {UNIT_NAME_MAX} bytes long: systemd names its '
                f'control group "_" + the name, over the {UNIT_NAME_MAX}-byte limit, '
                "so it could never start")
    if name in FLEET_UNITS:
        return "fleet's own unit: fleet never manages itself (a stop would stop fleetd)"
    if name.startswith(SYSTEMD_PREFIX):
        return 'names starting with "systemd-" are systemd\'s own units; fleet never manages them'
    if name in SYSTEMD_SPECIAL or template_of(name) in SYSTEMD_SPECIAL:
        return ("a special unit systemd itself defines (systemd.special(7)); "
                "fleet never manages systemd's own units")
    return None


def check_managed(name: str) -> None:
    """Raise InvalidUnitName naming the rule if fleet must not manage ``name``.

    The name's syntax is checked first (``validate_unit_name``).
    """
    validate_unit_name(name)
    problem = managed_problem(name)
    if problem is not None:
        raise InvalidUnitName(f"invalid unit name {quote(name)}: {problem}")


def escape(text: str) -> str:
    """systemd's ``unit_name_escape``: ``/`` -> ``-``, ``-``, ``\\``, a leading ``.``
    and anything outside the valid characters -> ``\\xNN``."""
    out = []
    for i, c in enumerate(text):
        if c == "/":
            out.append("-")
        elif c in ESCAPE_KEPT and not (i == 0 and c == "."):
            out.append(c)
        else:
            out.extend(f"\\x{b:02x}" for b in c.encode())
    return "".join(out)


def unit_problem(name: str, parsed: ParsedUnit) -> str | None:
    """Why systemd could not load this file as the unit ``name`` (a derived name
    over 255 bytes), or None. ``name`` is a valid unit name."""
    stem, suffix = name.rsplit(".", 1)
    section = SECTIONS.get(suffix, "")
    key = TRIGGER_KEYS.get(suffix)
    accept = (parsed.last("Socket", "Accept") or "").lower() in TRUE_WORDS
    if key and not parsed.last(section, key) and not (suffix == "socket" and accept):
        triggered = f"{stem}.service"
        size = len(triggered.encode())
        if size > UNIT_NAME_MAX:
            return (f"a .{suffix} unit triggers {quote(triggered, 40)} by default, {size} bytes, "
                    f"over the {UNIT_NAME_MAX}-byte limit: name the unit to trigger with "
                    f"{key}= in [{section}]")
    at = stem.find("@")
    if suffix in CGROUP_TYPES and at > 0 and not parsed.last(section, "Slice"):
        size = len(f"system-{escape(stem[:at])}.slice".encode())
        if size > UNIT_NAME_MAX:
            return (f"an instance goes into the slice system-PREFIX.slice, here {size} bytes "
                    '(escaped: "-" and "\\" take 4 bytes each), over the '
                    f"{UNIT_NAME_MAX}-byte limit: shorten the prefix or set Slice= in [{section}]")
    return None


def check_unit(name: str, parsed: ParsedUnit) -> None:
    """Raise InvalidUnitName naming the limit if systemd could not load ``parsed`` as ``name``."""
    problem = unit_problem(name, parsed)
    if problem is not None:
        raise InvalidUnitName(f"invalid unit name {quote(name)}: {problem}")
