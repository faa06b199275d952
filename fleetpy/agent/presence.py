"""This machine's record as the cluster sees it: metadata changed at runtime is kept.

``fleetctl set-metadata`` (the SetMachineMetadata API) rewrites
``machines/<id>`` in place, on this fleetd's lease. ``Presence`` follows that
key: a change of metadata becomes this fleetd's own, so that registering
again (a lost lease, a restart adopting the lease) writes it back rather than
the configured metadata. The change is saved as overrides of the configured
metadata in the state directory (``/run/fleet/metadata.json``): it survives a
fleetd restart, not a reboot, and keys nobody overrode still follow the config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fleetpy.agent.machine_log import MachineLog
from fleetpy.model.metadata import Overrides
from fleetpy.model.types import Machine
from fleetpy.registry.base import Lease, Registry, RegistryError, WatchUpdate
from fleetpy.registry.codec import decode_machine, machine_key
from fleetpy.registry.unreadable import REPORTS, Unreadable, problem_of

log = logging.getLogger("fleetpy.agent")

OVERRIDES_FILE = "metadata.json"


def _format(metadata: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "-"


class Presence:
    """The machine this fleetd registers: configured identity plus runtime metadata."""

    def __init__(self, registry: Registry, configured: Machine, state_dir: Path) -> None:
        self._registry = registry
        self._log = MachineLog(log, configured.id)
        self._configured = dict(configured.metadata)
        self._file = state_dir / OVERRIDES_FILE
        overrides = self._load()
        self.machine = replace(configured, metadata=overrides.effective(self._configured))
        if overrides:
            self._log.info("machine metadata %s (changed at runtime; configured: %s)",
                     _format(dict(self.machine.metadata)), _format(self._configured))

    def _load(self) -> Overrides:
        try:
            return Overrides.from_json(json.loads(self._file.read_text()))
        except FileNotFoundError:
            return Overrides()
        except (OSError, ValueError) as exc:
            self._log.warning("ignoring unreadable %s: %s", self._file, exc)
            return Overrides()

    def _save(self, overrides: Overrides) -> None:
        try:
            if not overrides:
                self._file.unlink(missing_ok=True)
                return
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(json.dumps(overrides.to_json(), sort_keys=True) + "\n")
            os.replace(tmp, self._file)
        except OSError as exc:
            self._log.warning("cannot save runtime metadata to %s: %s", self._file, exc)

    def observe(self, record: Machine) -> bool:
        """Take the metadata of this machine's record as ours; True when it changed."""
        now = dict(record.metadata)
        if now == dict(self.machine.metadata):
            return False
        self.machine = replace(self.machine, metadata=now)
        self._save(Overrides.between(self._configured, now))
        self._log.info("machine metadata changed at runtime: %s (configured: %s)",
                 _format(now), _format(self._configured))
        return True

    def _apply(self, update: WatchUpdate, key: str) -> bool:
        """Keep runtime metadata changes; True when our record was made unreadable."""
        values = (
            [(update.items[key], update.revisions.get(key, 0))]
            if update.reset and key in update.items
            else [(e.value, e.revision) for e in update.events
                  if e.kind == "put" and e.key == key]
        )
        broken = False
        for value, revision in values:
            try:
                record = decode_machine(key, value)
            except ValueError as exc:  # not ours to keep: said once, skipped
                REPORTS.report(Unreadable(self._registry.prefix + key,
                                          problem_of(key, exc), revision))
                broken = True
                continue
            broken = False
            self.observe(record)
        return broken

    async def follow(self, lease: Callable[[], Lease] | None = None) -> None:
        """Watch this machine's record until cancelled, keeping runtime changes.

        With ``lease`` (this fleetd's), a record overwritten with something
        unreadable is written again: otherwise the engine would lose this machine.
        """
        key = machine_key(self.machine.id)
        async for update in self._registry.watch(key):
            if self._apply(update, key) and lease is not None:
                try:
                    if await self._registry.register_machine(self.machine, lease()):
                        self._log.warning("machine record %s%s was unreadable: written again",
                                    self._registry.prefix, key)
                except RegistryError as exc:
                    self._log.warning("cannot write machine record %s again: %s", key, exc)


def system_stopping() -> bool:
    """Whether this machine's systemd is shutting down (``is-system-running``: stopping)."""
    try:
        done = subprocess.run(["systemctl", "is-system-running"], capture_output=True,
                              text=True, timeout=2.0, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.stdout.strip() == "stopping"


async def leave_if_shutting_down(lease: Lease) -> bool:
    """On a machine going down, leave the cluster now rather than after agent_ttl.

    fleetd's stop normally leaves its lease to expire (a restart adopts it and
    nothing moves). When the whole machine shuts down its units stop anyway:
    revoking the lease makes the engine place them elsewhere at once.
    """
    import asyncio

    if not await asyncio.to_thread(system_stopping):
        return False
    log.info("the machine is shutting down: leaving the cluster now (lease %x revoked), "
             "its units will be placed elsewhere", lease.id)
    with contextlib.suppress(RegistryError):
        await lease.revoke()
    return True
