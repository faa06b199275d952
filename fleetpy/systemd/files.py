"""Unit files on disk: /run/fleet/units/NAME linked into /run/systemd/system/NAME.

Plain file operations (no D-Bus). Both directories are tmpfs in practice, so
the operations are fast enough to run on the event loop.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from fleetpy.systemd.base import check_unit_name, content_hash

log = logging.getLogger(__name__)

DEFAULT_UNITS_DIR = Path("/run/fleet/units")
DEFAULT_LINK_DIR = Path("/run/systemd/system")
TMP_PREFIX = ".fleet-tmp-"


def temporary_name() -> str:
    """A fresh hidden name of fixed length: systemd and ``hashes`` skip hidden files."""
    return TMP_PREFIX + secrets.token_hex(8)


class UnitFileStore:
    """The unit files fleet has written, and their links into systemd."""

    def __init__(self, units_dir: Path = DEFAULT_UNITS_DIR, link_dir: Path = DEFAULT_LINK_DIR):
        self.units_dir = units_dir
        self.link_dir = link_dir

    def write(self, name: str, contents: str) -> None:
        """Write units_dir/NAME atomically (tmp + rename), then link it (atomically).

        Temporary names are short and fixed-length (``.fleet-tmp-<hex>``), so a
        unit name of up to 255 bytes (NAME_MAX) works; they are removed when a
        step fails.
        """
        check_unit_name(name)
        self.units_dir.mkdir(parents=True, exist_ok=True)
        self.link_dir.mkdir(parents=True, exist_ok=True)
        target = self.units_dir / name
        tmp = self.units_dir / temporary_name()
        try:
            tmp.write_bytes(contents.encode())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

        link = self.link_dir / name
        if link.exists() and not link.is_symlink():
            log.warning("replacing a regular file %s (not written by fleet) with a link", link)
        tmp_link = self.link_dir / temporary_name()
        try:
            tmp_link.symlink_to(target)
            os.replace(tmp_link, link)
        finally:
            tmp_link.unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        """Remove the link (only if it is a symlink) and the file; absent is fine."""
        check_unit_name(name)
        link = self.link_dir / name
        if link.is_symlink():
            link.unlink(missing_ok=True)
        elif link.exists():
            log.warning("not removing %s: a regular file, not fleet's link", link)
        (self.units_dir / name).unlink(missing_ok=True)

    def hashes(self) -> dict[str, str]:
        """Name -> sha1 hex of every unit file in units_dir (temporary files skipped)."""
        result: dict[str, str] = {}
        try:
            entries = list(os.scandir(self.units_dir))
        except FileNotFoundError:
            return result
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                result[entry.name] = content_hash(Path(entry.path).read_bytes())
            except FileNotFoundError:  # removed while we listed
                continue
        return result
