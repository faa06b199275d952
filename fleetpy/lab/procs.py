"""Processes the lab starts: identity that survives PID reuse, spawn, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after its end.
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass(frozen=True)
class Proc:
    """A process by PID and start time, so a recycled PID is not mistaken for it."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        fields = _stat_fields(pid)
        return None if fields is None else cls(pid, int(fields[19]))

    def alive(self) -> bool:
        """Running (not a zombie) and still the same process."""
        fields = _stat_fields(self.pid)
        return fields is not None and fields[0] not in "ZX" and int(fields[19]) == self.start

    def children(self) -> list[int]:
        return children(self.pid)

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: Mapping[str, int] | None) -> Proc | None:
        return None if data is None else cls(int(data["pid"]), int(data["start"]))


# The child joins the cgroups named in $FLEETLAB_CGROUPS, then becomes the
# command; its parent stays outside them and reaps it the moment it exits.
_JOIN = (
    'for cg in $FLEETLAB_CGROUPS; do echo $$ > "$cg/cgroup.procs"; done; '
    'unset FLEETLAB_CGROUPS; exec "$@"'
)
_KEEPER = f"/bin/sh -c '{_JOIN}' sh \"$@\" & wait $!"


def spawn(
    argv: Sequence[str],
    log: Path,
    cgroups: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Start a long-lived process in ``cgroups``, output appended to ``log``.

    It must outlive the command that starts it, so nobody here waits for it.
    Its parent is a small shell ("keeper") in a session of its own that only
    waits for it: an orphan that exits becomes a zombie until PID 1 reaps it,
    which on some machines takes seconds, and a zombie still counts in its
    cgroup (rmdir fails with EBUSY). The keeper reaps at once and stays out of
    the lab's cgroups. Returns the process itself, not the keeper.
    """
    full_env = dict(os.environ if env is None else env)
    full_env["FLEETLAB_CGROUPS"] = " ".join(str(c) for c in cgroups)
    with log.open("ab") as out:
        keeper = subprocess.Popen(
            ["/bin/sh", "-c", _KEEPER, "sh", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
        )
    _spawned.append(keeper)
    deadline = time.monotonic() + 5.0
    while True:
        kids = children(keeper.pid)
        if kids and (proc := Proc.of(kids[0])) is not None:
            return proc
        if keeper.poll() is not None or time.monotonic() > deadline:
            raise OSError(f"{argv[0]} did not start; see {log}")
        time.sleep(0.002)


def wait_gone(procs: Sequence[Proc], timeout: float) -> list[Proc]:
    """Wait until every process has exited; return those still alive at timeout."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if p.alive()]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        _reap()
        left = [p for p in left if p.alive()]
    return left


_spawned: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    """Collect exited children that ``spawn`` started (only those: waiting on
    any child would steal exit codes from concurrent ``subprocess.run``)."""
    _spawned[:] = [c for c in _spawned if c.poll() is None]


def running(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies excluded)."""
    return {p for p in pids if (f := _stat_fields(p)) is not None and f[0] not in "ZX"}


def send(pid: int, sig: int) -> None:
    """Signal ``pid``; one that has just exited is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def signal_all(procs: Sequence[Proc], sig: int) -> None:
    for p in procs:
        if p.alive():
            send(p.pid, sig)


def stop(procs: Sequence[Proc], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal, wait, then SIGKILL whatever is left."""
    signal_all(procs, sig)
    left = wait_gone(procs, timeout)
    if left:
        signal_all(left, signal.SIGKILL)
        wait_gone(left, 5.0)
