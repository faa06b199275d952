"""The shared lab: ``Lab(name="fltest", subnet="172.17.9.0/24")``, 3 hosts, 3 etcd members.

Booted once per test session (any stale fltest lab torn down first) and torn
down at the end. Tests that use it are marked ``@pytest.mark.lab``. Only one
test session at a time can own fltest: a second one waits for the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fleetpy.lab import Lab, LabError

TEST_LAB = {"name": "fltest", "subnet": "172.17.9.0/24"}
SESSION_WAIT = 90.0


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, a bridge, cgroups)")


@contextlib.contextmanager
def session_lock(name: str, timeout: float = SESSION_WAIT) -> Iterator[None]:
    """Hold lab ``name`` for this test session (an abstract socket: freed when we die)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.bind(f"\0fleetlab-session-{name}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session has held lab {name} for {timeout:.0f}s")
                time.sleep(0.2)
        yield
    finally:
        sock.close()


def fresh_lab(name: str, subnet: str) -> Lab:
    """A Lab object for ``name``, after tearing down whatever was left of it."""
    lab = Lab(name=name, subnet=subnet)
    with contextlib.suppress(LabError):
        lab.down()
    return lab


@contextlib.contextmanager
def own_lab(name: str, subnet: str, **up: Any) -> Iterator[Lab]:
    """A lab of a test module's own (booted fresh, held for this session, torn down)."""
    require_root()
    with session_lock(name):
        the_lab = fresh_lab(name, subnet)
        the_lab.up(**up)
        try:
            yield the_lab
        finally:
            the_lab.down()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    require_root()
    logging.getLogger("fleetpy.lab").setLevel(logging.INFO)
    with session_lock(TEST_LAB["name"]):
        the_lab = fresh_lab(**TEST_LAB)
        the_lab.up(hosts=3, etcd_members=3)
        try:
            yield the_lab
        finally:
            the_lab.down()


@pytest.fixture
def root() -> None:
    """For lab tests that build their own labs: skip unless root."""
    require_root()
