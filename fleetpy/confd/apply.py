"""Put a rendered file in place: stage, check, rename, reload (the I/O edge).

The staged file is written in the destination's own directory (so the rename
is atomic, on one file system), fsynced, given its mode and owner, then
``check_cmd`` runs on it; only when the check passes is it renamed over the
destination (and the directory fsynced), then ``reload_cmd`` runs. A failed
check, or any error before the rename, removes the staged file and leaves the
destination as it was. Identical bytes, mode and owner: nothing is written and
nothing reloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import grp
import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetpy.confd.resource import ConfdError, Resource, check_command

COMMAND_TIMEOUT = 60.0
OUTPUT_TAIL = 600  # characters of a failed command's output kept for the log


class ApplyError(Exception):
    """A check, write or reload failed; the message says which and the command's output."""


class Result(enum.Enum):
    UNCHANGED = "unchanged"
    WRITTEN = "written"
    WOULD_WRITE = "would write"  # --noop


@dataclass(frozen=True, slots=True)
class Applied:
    result: Result
    diff: str = ""  # unified diff of the old and new file (when they differ)


def resolve_owner(resource: Resource) -> tuple[int | None, int | None]:
    """(uid, gid) from ``owner`` ("user", "user:group", numbers) or uid/gid; ConfdError."""
    if not resource.owner:
        return resource.uid, resource.gid
    user, _, group = resource.owner.partition(":")
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfdError(f"{resource.name}: owner: no user {user!r}") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfdError(f"{resource.name}: owner: no group {group!r}") from None
    return entry.pw_uid, gid


async def run_command(command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
    """Run ``command`` with /bin/sh; (exit status, its output). 124 on a timeout."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"(no answer in {timeout:.0f}s: killed)"
    text = out.decode(errors="replace").strip()
    return proc.returncode or 0, text[-OUTPUT_TAIL:]


def _current(dest: Path) -> tuple[bytes | None, os.stat_result | None]:
    try:
        return dest.read_bytes(), dest.stat()
    except FileNotFoundError:
        return None, None


def _diff(old: bytes | None, new: bytes, dest: str) -> str:
    before = (old or b"").decode(errors="replace").splitlines(keepends=True)
    after = new.decode(errors="replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"{dest} (now)", f"{dest} (rendered)"))


async def apply(resource: Resource, content: str, *, noop: bool = False,
                timeout: float = COMMAND_TIMEOUT) -> Applied:
    """Stage, check and rename ``content`` over ``resource.dest``; ApplyError if not."""
    dest = Path(resource.dest)
    new = content.encode()
    uid, gid = resolve_owner(resource)
    old, st = _current(dest)
    mode = resource.mode if resource.mode is not None else (
        st.st_mode & 0o7777 if st is not None else 0o644)
    same_owner = st is None or ((uid is None or st.st_uid == uid)
                                and (gid is None or st.st_gid == gid))
    if old == new and st is not None and st.st_mode & 0o7777 == mode and same_owner:
        return Applied(Result.UNCHANGED)
    diff = _diff(old, new, resource.dest)
    if not dest.parent.is_dir():
        raise ApplyError(f"{resource.name}: directory {dest.parent} does not exist")
    fd, staged = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        try:
            os.write(fd, new)
            os.fsync(fd)
            os.fchmod(fd, mode)
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        finally:
            os.close(fd)
        if resource.check_cmd:
            command = check_command(resource, staged)
            status, output = await run_command(command, timeout)
            if status != 0:
                raise ApplyError(f"{resource.name}: check failed (exit {status}): "
                                 f"{command}: {output or '(no output)'}")
        if noop:
            return Applied(Result.WOULD_WRITE, diff)
        os.replace(staged, dest)
        staged = ""
        dirfd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except OSError as e:
        raise ApplyError(f"{resource.name}: cannot write {dest}: {e}") from None
    finally:
        if staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
    return Applied(Result.WRITTEN, diff)


async def reload(resource: Resource, timeout: float = COMMAND_TIMEOUT) -> None:
    """Run ``reload_cmd`` (if any); ApplyError with its output when it fails."""
    if not resource.reload_cmd:
        return
    status, output = await run_command(resource.reload_cmd, timeout)
    if status != 0:
        raise ApplyError(f"{resource.name}: reload failed (exit {status}): "
                         f"{resource.reload_cmd}: {output or '(no output)'}")
