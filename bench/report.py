"""Write one benchmark's results into its own section of docs/benchmarks.md.

Each benchmark owns the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; other sections are left as they are. The machine the
numbers were measured on is recorded with every section.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the bench command named in it.\n"


def machine_line() -> str:
    """One line describing the machine: CPU model, cores, memory, kernel, Python."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    systemd = subprocess.run(
        ["systemctl", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {systemd or 'systemd ?'}"
    )


def write_section(name: str, command: str, body: str, doc: Path | None = None) -> None:
    """Replace (or append) the section NAME with BODY, stamped with date and machine.

    ``doc``: another file than docs/benchmarks.md (a test's, say).
    """
    doc = doc or DOC
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- bench:{name} -->\n"
        f"## {name}\n\n"
        f"Command: `{command}`; measured {stamp} on: {machine_line()}.\n\n"
        f"{body.rstrip()}\n"
        f"<!-- /bench:{name} -->"
    )
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
