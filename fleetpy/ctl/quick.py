"""fleetctl's everyday commands without click: the quick reading of a plain command line.

A cold ``fleetctl list-units`` is mostly imports, and click is one of the
largest (~12 ms of a ~170 ms command here, with what it pulls in). The list
and unit commands are the ones people and scripts run most, with few flags, so
:func:`parse` reads exactly what click would for a plain command line (fleet's
global flags, ``FLEETCTL_*`` variables, then ``list-units``, ``list-machines``
or ``list-unit-files`` with ``--full``/``-l``, ``--no-legend``, ``--fields``,
``--output``/``-o``; or ``load``/``start``/``stop``/``unload``/``destroy``
UNIT... with ``--no-block``, ``--block-attempts``, ``--replace``) and runs the
command's own code (fleetpy.ctl.listing, fleetpy.ctl.actions.run_unit_command);
anything else is left to click (``None``): help, ``--version``, ``--debug``,
usage errors, a value click would refuse, a spelling this reader does not know
(``-lo json``, ``--``), a ``FLEETCTL_*`` variable it does not read, streams that
are not UTF-8. Output, errors and exit codes are those of the click command:
tests/unit/test_ctl_quick.py and tests/contract/test_ctl_quick_etcd.py hold the
two readings side by side.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NamedTuple

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
# click's BoolParamType.bool_states ("" is unset for a variable, so not here).
BOOLS = {"1": True, "0": False, "yes": True, "no": False, "true": True, "false": False,
         "on": True, "off": False, "t": True, "f": False, "y": True, "n": False}
ENV_PREFIX = "FLEETCTL_"


class Spec(NamedTuple):
    """A command's options as its click command declares them: flag -> parameter name
    (``flags``: booleans; ``values``: a value of the parameter's kind), defaults, and
    whether it takes UNIT... (required) arguments."""

    flags: Mapping[str, str]
    values: Mapping[str, tuple[str, str]]
    defaults: Mapping[str, object]
    units: bool = False


def _list_spec(default_fields: str) -> Spec:  # fleetpy.ctl.lists._table_options
    return Spec({"--full": "full", "-l": "full", "--no-legend": "no_legend"},
                {"--fields": ("fields", "str"), "--output": ("output", "output"),
                 "-o": ("output", "output")},
                {"full": False, "no_legend": False, "fields": default_fields,
                 "output": "plain"})


def _unit_spec(replace: bool) -> Spec:  # fleetpy.ctl.units
    flags = {"--no-block": "no_block", **({"--replace": "replace"} if replace else {})}
    defaults = {"no_block": False, "block_attempts": 0, **({"replace": False} if replace else {})}
    return Spec(flags, {"--block-attempts": ("block_attempts", "count")}, defaults, units=True)


# The commands read here (their defaults: fleetpy.ctl.listing's, checked by the tests).
SPECS = {
    "list-units": _list_spec("unit,machine,active,sub"),
    "list-machines": _list_spec("machine,ip,metadata"),
    "list-unit-files": _list_spec("unit,hash,dstate,state,target"),
    "load": _unit_spec(replace=True),
    "start": _unit_spec(replace=True),
    "stop": _unit_spec(replace=False),
    "unload": _unit_spec(replace=False),
    "destroy": _unit_spec(replace=False),
}


class Quick(NamedTuple):
    """A command as click would have read it: the global settings, the command, and the
    values of its parameters (by name, as its click command gets them)."""

    settings: Settings
    command: str
    params: Mapping[str, object]


class _Refused(Exception):
    """Not a plain command line: click reads it."""


def _convert(kind: str, value: str) -> str | float | bool | int:
    """A value as click converts it; _Refused where click would refuse it."""
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise _Refused from None
    if kind == "bool":
        truth = BOOLS.get(value.strip().lower())
        if truth is None:
            raise _Refused
        return truth
    if kind == "count":  # click.IntRange(min=0)
        try:
            count = int(value)
        except ValueError:
            raise _Refused from None
        if count < 0:
            raise _Refused
        return count
    if kind == "output":  # click.Choice(OUTPUTS)
        if value not in ("plain", "json"):
            raise _Refused
        return value
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


def _command(spec: Spec, args: Sequence[str]) -> dict[str, object]:
    """The command's parameters from its arguments (options and UNIT... interspersed,
    as click allows)."""
    params: dict[str, object] = {}
    units: list[str] = []
    got: object
    j = 0
    while j < len(args):
        arg = args[j]
        if not arg.startswith("-") or arg == "-":
            if not spec.units or arg == "-":
                raise _Refused  # an argument the command does not take: click says so
            units.append(arg)
            j += 1
            continue
        flag, eq, value = arg.partition("=")
        if arg in spec.flags:
            name, got = spec.flags[arg], True
        elif flag in spec.values and (eq or arg == flag) and flag.startswith("--"):
            if not eq:
                j += 1
                if j == len(args) or args[j].startswith("-"):
                    raise _Refused
                value = args[j]
            name, kind = spec.values[flag]
            got = _convert(kind, value)
        elif arg[:2] in spec.values and not arg.startswith("--"):  # -o json, -ojson
            name, kind = spec.values[arg[:2]]
            value = arg[2:]
            if not value:
                j += 1
                if j == len(args) or args[j].startswith("-"):
                    raise _Refused
                value = args[j]
            got = _convert(kind, value)
        else:
            raise _Refused  # --help, -lo, --, an unknown option...
        if name in params:
            raise _Refused
        params[name] = got
        j += 1
    if spec.units:
        if not units:
            raise _Refused  # click: Missing argument 'UNIT...'
        params["units"] = tuple(units)
    return {**spec.defaults, **params}


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Quick | None:
    """``fleetctl ARGV`` as click reads it, if it is a plain command of SPECS; else None."""
    try:
        given, i = _globals(argv, environ)
        if i == len(argv) or argv[i] not in SPECS:
            return None
        params = _command(SPECS[argv[i]], argv[i + 1:])
    except _Refused:
        return None
    driver = str(given.get("driver", "api"))
    endpoint = given.get("endpoint")
    if "driver" not in given and endpoint is not None and looks_like_etcd(str(endpoint)):
        driver = "etcd"  # fleet: an --endpoint on an etcd port means --driver=etcd
    settings = Settings(**{**given, "driver": driver})  # type: ignore[arg-type]
    return Quick(settings, argv[i], params)


def _utf8(stream: object) -> bool:
    encoding = getattr(stream, "encoding", None)
    return isinstance(encoding, str) and encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def run_quick(argv: Sequence[str]) -> int | None:
    """Run ``fleetctl ARGV`` if it is a plain command of SPECS: its exit status; None
    when click is to read it (nothing was done)."""
    if not (_utf8(sys.stdout) and _utf8(sys.stderr)):
        return None  # click.echo writes to other streams its own way
    quick = parse(argv, os.environ)
    if quick is None:
        return None
    import logging

    from fleetpy.ctl.common import CtlEnv, CtlError

    # As fleetpy.ctl.cli's group does without --debug.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    logging.getLogger("fleetpy.registry.unreadable").addHandler(logging.NullHandler())
    try:
        if quick.command.startswith("list-"):
            from fleetpy.ctl import listing

            work = getattr(listing, quick.command.replace("-", "_"))
            work(CtlEnv(settings=quick.settings), **quick.params)
        else:
            from fleetpy.ctl import actions

            actions.run_unit_command(CtlEnv(settings=quick.settings), quick.command,
                                     **quick.params)  # type: ignore[arg-type]
    except CtlError as e:
        e.show()
        return e.exit_code
    except (EOFError, KeyboardInterrupt):  # as click's main says it
        from fleetpy.ctl.common import echo

        echo("", err=True)
        echo("Aborted!", err=True)
        return 1
    return 0
