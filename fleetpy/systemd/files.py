"""Unit files on disk: /run/fleet/units/NAME linked into /run/systemd/system/NAME.

Plain file operations (no D-Bus). Both directories are tmpfs in practice, so
the operations are fast enough to run on the event loop.

Fleet owns only what it wrote: its file in the units dir and a link to that
file in the link dir ("fleet's link"). ``write`` never replaces anything else
at the link's place (ForeignUnitError); ``remove`` removes only fleet's link
and fleet's file; ``foreign`` finds units of a name anywhere else in systemd's
unit search path (``systemd-analyze unit-paths`` on systemd 252).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from fleetpy.model.names import template_of
from fleetpy.systemd.base import check_unit_name, content_hash

log = logging.getLogger(__name__)

DEFAULT_UNITS_DIR = Path("/run/fleet/units")
DEFAULT_LINK_DIR = Path("/run/systemd/system")
# systemd's unit search path for the system manager, highest priority first.
DEFAULT_SEARCH_PATH = tuple(
    Path(p)
    for p in (
        "/etc/systemd/system.control",
        "/run/systemd/system.control",
        "/run/systemd/transient",
        "/run/systemd/generator.early",
        "/etc/systemd/system",
        "/etc/systemd/system.attached",
        "/run/systemd/system",
        "/run/systemd/system.attached",
        "/run/systemd/generator",
        "/usr/local/lib/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/run/systemd/generator.late",
    )
)


class ForeignUnitError(FileExistsError):
    """A unit file or link that fleet did not write is where fleet would write."""


TMP_PREFIX = ".fleet-tmp-"


def temporary_name() -> str:
    """A fresh hidden name of fixed length: systemd and ``hashes`` skip hidden files."""
    return TMP_PREFIX + secrets.token_hex(8)


class UnitFileStore:
    """The unit files fleet has written, and their links into systemd."""

    def __init__(
        self,
        units_dir: Path = DEFAULT_UNITS_DIR,
        link_dir: Path = DEFAULT_LINK_DIR,
        search_path: tuple[Path, ...] = DEFAULT_SEARCH_PATH,
    ):
        self.units_dir = units_dir
        self.link_dir = link_dir
        self.search_path = search_path
        self._hash_cache: dict[str, tuple[int, int, int, str]] = {}  # name -> stat, hash

    def is_own_link(self, name: str) -> bool:
        """Whether link_dir/NAME is fleet's link: a symlink to units_dir/NAME."""
        try:
            return Path(os.readlink(self.link_dir / name)) == self.units_dir / name
        except OSError:  # absent, or not a symlink
            return False

    def foreign(self, names: Sequence[str]) -> dict[str, str]:
        """Name -> the first path in the search path holding a unit of that name that
        fleet did not write (a file or link, any target; an instance's template counts).
        Names with no such path are left out."""
        found: dict[str, str] = {}
        for name in names:
            check_unit_name(name)
            candidates = [name]
            template = template_of(name)
            if template is not None:
                candidates.append(template)
            for directory in self.search_path:
                hit = next(
                    (
                        directory / c
                        for c in candidates
                        if os.path.lexists(directory / c)
                        and not (directory == self.link_dir and c == name and self.is_own_link(c))
                    ),
                    None,
                )
                if hit is not None:
                    found[name] = str(hit)
                    break
        return found

    def write(self, name: str, contents: str) -> None:
        """Write units_dir/NAME atomically (tmp + rename), then link it (atomically).

        ForeignUnitError, and nothing written, if link_dir/NAME exists and is not
        fleet's link (a regular file, or a link elsewhere: not fleet's to replace).
        Temporary names are short and fixed-length (``.fleet-tmp-<hex>``), so a
        unit name of up to 255 bytes (NAME_MAX) works; they are removed when a
        step fails.
        """
        check_unit_name(name)
        link = self.link_dir / name
        if os.path.lexists(link) and not self.is_own_link(name):
            raise ForeignUnitError(f"{link} exists and was not written by fleet: not replacing it")
        self.units_dir.mkdir(parents=True, exist_ok=True)
        self.link_dir.mkdir(parents=True, exist_ok=True)
        target = self.units_dir / name
        tmp = self.units_dir / temporary_name()
        try:
            tmp.write_bytes(contents.encode())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

        tmp_link = self.link_dir / temporary_name()
        try:
            tmp_link.symlink_to(target)
            os.replace(tmp_link, link)
        finally:
            tmp_link.unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        """Remove fleet's link (only a link to fleet's file) and fleet's file; absent is fine."""
        check_unit_name(name)
        link = self.link_dir / name
        if self.is_own_link(name):
            link.unlink(missing_ok=True)
        elif os.path.lexists(link):
            log.warning("not removing %s: not fleet's link to %s", link, self.units_dir / name)
        (self.units_dir / name).unlink(missing_ok=True)

    def hashes(self) -> dict[str, str]:
        """Name -> sha1 hex of every unit file in units_dir (temporary files skipped).

        The agent asks on every pass and every state report: a file is read and
        hashed again only when its inode, size or modification time changed
        (``write`` replaces a file by a new inode, so a rewrite always shows).
        """
        result: dict[str, str] = {}
        try:
            entries = list(os.scandir(self.units_dir))
        except FileNotFoundError:
            self._hash_cache.clear()
            return result
        seen: dict[str, tuple[int, int, int, str]] = {}
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                cached = self._hash_cache.get(entry.name)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if cached is not None and cached[:3] == stamp:
                    digest = cached[3]
                else:
                    digest = content_hash(Path(entry.path).read_bytes())
            except FileNotFoundError:  # removed while we listed
                continue
            seen[entry.name] = (*stamp, digest)
            result[entry.name] = digest
        self._hash_cache = seen
        return result
