"""Log lines that name their machine: ``machine 3f2a1234: start a.service: ...``.

Many agents share one process when hollow machines run (fleetpy.hollow), and
a fleetd's journal is read beside others': every agent line says whose it is.
"""

from __future__ import annotations

import logging
from typing import Any


class MachineLog(logging.LoggerAdapter[logging.Logger]):
    """``logger``, with every message prefixed by ``machine <first 8 of the id>:``."""

    def __init__(self, logger: logging.Logger, machine_id: str) -> None:
        super().__init__(logger, {})
        self.prefix = f"machine {machine_id[:8]}: "

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return self.prefix + str(msg), kwargs
