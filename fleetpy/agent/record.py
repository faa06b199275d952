"""fleet's record of what it did to each unit on this machine, kept across fleetd restarts.

The agent compares the schedule with this record, not with systemd's
ActiveState (see fleetpy.agent.plan): a unit fleet loaded and systemd started
(a Requires= of another unit, socket or path activation) stays "loaded" here,
so fleetd never stops it; a unit fleet launched stays "launched" after a
fleetd restart, so a restarted fleetd neither stops nor restarts it.

One small JSON file in fleetd's state directory (``/run/fleet/units.record``:
``{"units": {NAME: {"hash": SHA1, "state": "loaded"|"launched"}}}``),
rewritten atomically (temporary file, fsync, rename) whenever the record
changes. It lives on /run like the unit files it describes, so a reboot
clears both together. A file that cannot be read is logged and taken as
empty: every unit is then adopted as it is (nothing stopped or started).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from fleetpy.agent.plan import Record
from fleetpy.model.types import TargetState

log = logging.getLogger("fleetpy.agent")

DEFAULT_STATE_DIR = Path("/run/fleet")
RECORD_FILE = "units.record"
_STATES = (TargetState.LOADED, TargetState.LAUNCHED)


class RecordFile:
    """Load and save the record (the whole mapping at once: a few KB for 300 units)."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.path = state_dir / RECORD_FILE

    def load(self) -> dict[str, Record]:
        try:
            data = json.loads(self.path.read_bytes())
            units = data["units"]
            if not isinstance(units, dict):
                raise ValueError("units is not an object")
            result: dict[str, Record] = {}
            for name, entry in units.items():
                state = TargetState(entry["state"])
                if state not in _STATES or not isinstance(entry["hash"], str):
                    raise ValueError(f"bad entry for {name!r}")
                result[name] = Record(entry["hash"], state)
            return result
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot read fleet's unit record %s (%s): adopting units as they are",
                      self.path, exc)
            return {}

    def save(self, record: Mapping[str, Record]) -> None:
        """Write atomically; raises OSError (the caller logs it and tries again later)."""
        units = {n: {"hash": r.hash, "state": str(r.state)} for n, r in sorted(record.items())}
        data = json.dumps({"units": units}, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{RECORD_FILE}.tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
