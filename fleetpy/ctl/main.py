"""fleetctl: the command-line interface to fleetpy, with fleet's commands and flags.

This module is the ``fleetctl`` console script's (:func:`run`) and is kept
light: the click group (``main``: fleet's commands, flags, help and usage
errors) lives in fleetpy.ctl.cli and is loaded from here when asked for
(``from fleetpy.ctl.main import main`` still works). A plain list command
(``list-units``, ``list-machines``, ``list-unit-files``) or unit command
(``load``, ``start``, ``stop``, ``unload``, ``destroy``) with fleet's flags is
read by fleetpy.ctl.quick without importing click at all; anything else (help,
usage errors, other commands, unusual spellings) goes to click. A cold
``fleetctl list-units`` then pays for Python, gRPC and protobuf, little else
(docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetpy.ctl.cli import FleetGroup, main

__all__ = ["COMMAND_MODULES", "FleetGroup", "main", "run"]

# Each command's module in fleetpy.ctl (its COMMANDS): imported when the command is used.
COMMAND_MODULES = {
    **dict.fromkeys(["submit", "load", "start", "stop", "unload", "destroy", "restart", "cat"],
                    "units"),
    **dict.fromkeys(["list-units", "list-unit-files", "list-machines"], "lists"),
    **dict.fromkeys(["status", "journal"], "status"),
    **dict.fromkeys(["ssh", "fd-forward"], "remote"),
    "set-metadata": "machines",
    **dict.fromkeys(["cordon", "uncordon"], "cordon"),
    "drain": "drain",
    "rolling-update": "rollcmd",
}


def __getattr__(name: str) -> Any:
    """``main`` (the click group) and the rest of fleetpy.ctl.cli, loaded when used."""
    if name.startswith("__"):
        raise AttributeError(name)
    from fleetpy.ctl import cli

    try:
        return getattr(cli, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def run() -> None:
    """The ``fleetctl`` command (console script, ``python -m fleetpy.ctl``): the quick
    reading of a plain list command (fleetpy.ctl.quick), else :data:`main`, then a
    quick exit.

    The cyclic garbage collector is off while a quick command's modules are
    imported (a few thousand objects each, none of them garbage: ~7% of the
    start-up); run_with_client turns it back on once the client is open. Other
    commands get it back before click runs them (ssh or fd-forward may run for
    hours without opening a client). Once a command that talked to the cluster
    is done, Python's own teardown (gRPC's threads, the cleanup of a few hundred
    modules) would cost a cold command about 30-50 ms more; nothing of fleetctl's
    is left to do then (the client and any --tunnel are closed), so its output is
    flushed and the process ends with the command's status. Tests call ``main``
    itself.
    """
    gc.disable()
    try:
        from fleetpy.ctl.quick import run_quick

        quick = run_quick(sys.argv[1:])
        if quick is None:
            from fleetpy.ctl.cli import main as group

            gc.enable()  # commands that never open a client (ssh, fd-forward) run long
            group(prog_name="fleetctl")
        code: Any = quick
    except SystemExit as e:
        code = e.code
    finally:
        gc.enable()
    if "grpc" not in sys.modules or not isinstance(code, int | None):
        sys.exit(code)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with that descriptor closed
                stream.flush()
    except BrokenPipeError:  # fleetctl list-units | head: the reader left
        code = code or 141
    except OSError:
        code = code or 1
    os._exit(code or 0)
