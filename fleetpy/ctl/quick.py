"""fleetctl's list commands without click: the quick reading of a plain command line.

A cold ``fleetctl list-units`` is mostly imports, and click is one of the
largest (~12 ms of a ~170 ms command here, with what it pulls in). The list
commands are the ones people and scripts run most, with few flags, so
:func:`parse` reads exactly what click would for a plain command line (fleet's
global flags, ``FLEETCTL_*`` variables, then ``list-units``, ``list-machines``
or ``list-unit-files`` with ``--full``/``-l``, ``--no-legend``, ``--fields``,
``--output``/``-o``) and runs the command's own code (fleetpy.ctl.listing);
anything else is left to click (``None``): help, ``--version``, ``--debug``,
usage errors, a value click would refuse, a spelling this reader does not know
(``-lo json``, ``--``), a ``FLEETCTL_*`` variable it does not read, streams that
are not UTF-8. Output, errors and exit codes are those of the click command:
tests/unit/test_ctl_quick.py holds the two readings side by side.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetpy.ctl.common import Settings, looks_like_etcd

# Global options that take a value: flag -> (Settings field, kind).
VALUES = {
    "--endpoint": ("endpoint", "str"),
    "--driver": ("driver", "driver"),
    "--etcd-endpoints": ("etcd_endpoints", "str"),
    "--etcd-key-prefix": ("etcd_key_prefix", "str"),
    "--request-timeout": ("request_timeout", "float"),
    "--ca-file": ("ca_file", "str"),
    "--cert-file": ("cert_file", "str"),
    "--key-file": ("key_file", "str"),
    "--etcd-username": ("etcd_username", "str"),
    "--etcd-password": ("etcd_password", "str"),
    "--tunnel": ("tunnel", "str"),
    "--ssh-username": ("ssh_username", "str"),
    "--ssh-timeout": ("ssh_timeout", "float"),
    "--ssh-identity-file": ("ssh_identity_file", "str"),
    "--known-hosts-file": ("known_hosts_file", "str"),
    "--strict-host-key-checking": ("strict_host_key_checking", "bool"),
}
FLAGS = {"--plain-http-ok": "plain_http_ok"}
COMMANDS = ("list-units", "list-machines", "list-unit-files")
# click's BoolParamType.bool_states ("" is unset for a variable, so not here).
BOOLS = {"1": True, "0": False, "yes": True, "no": False, "true": True, "false": False,
         "on": True, "off": False, "t": True, "f": False, "y": True, "n": False}
ENV_PREFIX = "FLEETCTL_"


@dataclass(frozen=True, slots=True)
class Quick:
    """A list command as click would have read it."""

    settings: Settings
    command: str
    full: bool = False
    no_legend: bool = False
    fields: str | None = None  # None: the command's default
    output: str = "plain"


class _Refused(Exception):
    """Not a plain command line: click reads it."""


def _convert(kind: str, value: str) -> str | float | bool:
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise _Refused from None
    if kind == "bool":
        got = BOOLS.get(value.strip().lower())
        if got is None:
            raise _Refused
        return got
    if kind == "driver":  # click.Choice(["api", "etcd"], case_sensitive=False)
        if value.lower() not in ("api", "etcd"):
            raise _Refused
        return value.lower()
    return value


def _globals(
    argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[dict[str, str | float | bool], int]:
    """The global options given (command line, else ``FLEETCTL_*``) and where the
    command name is in ``argv``."""
    given: dict[str, str | float | bool] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        flag, eq, value = argv[i].partition("=")
        got: str | float | bool
        if flag in FLAGS and not eq:
            name, got = FLAGS[flag], True
        elif flag in VALUES:
            if not eq:
                i += 1
                if i == len(argv) or argv[i].startswith("-"):
                    raise _Refused
                value = argv[i]
            name, kind = VALUES[flag]
            got = _convert(kind, value)
        else:
            raise _Refused
        if name in given:
            raise _Refused
        given[name] = got
        i += 1
    known = {f"{ENV_PREFIX}{name.upper()}": (name, kind) for name, kind in VALUES.values()}
    known |= {f"{ENV_PREFIX}{name.upper()}": (name, "bool") for name in FLAGS.values()}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or not value:
            continue  # click: a variable set to "" is unset
        if var not in known:
            raise _Refused  # FLEETCTL_DEBUG, FLEETCTL_LIST_UNITS_FULL...
        name, kind = known[var]
        if name not in given:
            given[name] = _convert(kind, value)
    return given, i


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Quick | None:
    """``fleetctl ARGV`` as click reads it, if it is a plain list command; else None."""
    try:
        given, i = _globals(argv, environ)
    except _Refused:
        return None
    if i == len(argv) or argv[i] not in COMMANDS:
        return None
    command, rest = argv[i], argv[i + 1:]
    opts: dict[str, str | bool] = {}
    j = 0
    while j < len(rest):
        arg = rest[j]
        flag, eq, value = arg.partition("=")
        if arg in ("--full", "-l", "--no-legend"):
            name: str = "no_legend" if arg == "--no-legend" else "full"
            opts_value: str | bool = True
        elif flag in ("--fields", "--output") or arg.startswith("-o"):
            if flag in ("--fields", "--output") and eq:
                pass
            elif arg == "-o" or arg in ("--fields", "--output"):
                j += 1
                if j == len(rest) or rest[j].startswith("-"):
                    return None
                value = rest[j]
            else:  # -ojson
                value = arg[2:]
            name = "fields" if flag == "--fields" else "output"
            if name == "output" and value not in ("plain", "json"):
                return None
            opts_value = value
        else:
            return None  # a positional argument, --help, -lo...: click says what it is
        if name in opts:
            return None
        opts[name] = opts_value
        j += 1
    driver = str(given.get("driver", "api"))
    endpoint = given.get("endpoint")
    if "driver" not in given and endpoint is not None and looks_like_etcd(str(endpoint)):
        driver = "etcd"  # fleet: an --endpoint on an etcd port means --driver=etcd
    settings = Settings(**{**given, "driver": driver})  # type: ignore[arg-type]
    return Quick(settings, command, full=bool(opts.get("full", False)),
                 no_legend=bool(opts.get("no_legend", False)),
                 fields=str(opts["fields"]) if "fields" in opts else None,
                 output=str(opts.get("output", "plain")))


def _utf8(stream: object) -> bool:
    encoding = getattr(stream, "encoding", None)
    return isinstance(encoding, str) and encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def run_quick(argv: Sequence[str]) -> int | None:
    """Run ``fleetctl ARGV`` if it is a plain list command: its exit status; None when
    click is to read it (nothing was done)."""
    if not (_utf8(sys.stdout) and _utf8(sys.stderr)):
        return None  # click.echo writes to other streams its own way
    quick = parse(argv, os.environ)
    if quick is None:
        return None
    import logging

    from fleetpy.ctl import listing
    from fleetpy.ctl.common import CtlEnv, CtlError

    # As fleetpy.ctl.cli's group does without --debug.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    logging.getLogger("fleetpy.registry.unreadable").addHandler(logging.NullHandler())
    run, default = {
        "list-units": (listing.list_units, listing.UNITS_DEFAULT),
        "list-machines": (listing.list_machines, listing.MACHINES_DEFAULT),
        "list-unit-files": (listing.list_unit_files, listing.UNIT_FILES_DEFAULT),
    }[quick.command]
    try:
        run(CtlEnv(settings=quick.settings), quick.full, quick.no_legend,
            default if quick.fields is None else quick.fields, quick.output)
    except CtlError as e:
        e.show()
        return e.exit_code
    except (EOFError, KeyboardInterrupt):  # as click's main says it
        from fleetpy.ctl.common import echo

        echo("", err=True)
        echo("Aborted!", err=True)
        return 1
    return 0
