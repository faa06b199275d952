"""Whole-lab life cycles on labs of their own: up, down, crashes, failures, odd paths."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetpy.lab import LabError
from fleetpy.lab import hosts as host_ops
from tests.lab.conftest import fresh_lab, session_lock
from tests.lab.traces import traces

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180), pytest.mark.usefixtures("root")]


def test_up_and_down_twice_leave_nothing_behind() -> None:
    with session_lock("flcycle"):
        lab = fresh_lab("flcycle", "172.17.10.0/24")
        assert traces("flcycle") == []
        for _ in range(2):
            started = time.monotonic()
            lab.up(hosts=3, etcd_members=3)
            took = time.monotonic() - started
            assert lab.is_up()
            assert len({h.pid for h in lab.hosts if h.pid}) == 3
            assert len(lab.etcd_endpoints) == 3
            assert traces("flcycle"), "the check sees a running lab"
            assert took < 20, f"up took {took:.1f}s"
            lab.down()
            assert not lab.is_up()
            assert traces("flcycle") == []


def kill_everything(name: str) -> None:
    """What a crash does: SIGKILL every process of the lab, no cleanup."""
    for path in Path("/sys/fs/cgroup/systemd", f"fleetlab-{name}").rglob("cgroup.procs"):
        for pid in path.read_text().split():
            os.kill(int(pid), signal.SIGKILL)


def test_up_and_down_clear_a_dead_labs_leftovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fleetpy.lab")
    with session_lock("flcycle"):
        lab = fresh_lab("flcycle", "172.17.10.0/24")
        lab.up(hosts=1, etcd_members=1)
        kill_everything("flcycle")
        deadline = time.monotonic() + 10
        while lab.is_up() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lab.is_up()
        left = traces("flcycle")
        assert "link flb-flcycle" in left
        assert any(t.startswith("file ") for t in left)
        assert any(t.startswith("cgroup ") for t in left)

        lab.up(hosts=1, etcd_members=1)
        assert "clearing leftovers of a dead lab" in caplog.text
        assert lab.exec("core-01", ["true"]).returncode == 0

        kill_everything("flcycle")
        while lab.is_up() and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        lab.down()  # a dead lab: down clears it and succeeds
        assert traces("flcycle") == []
        with pytest.raises(LabError, match="not up"):
            lab.down()


def test_up_that_fails_halfway_removes_what_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_boot(*_args: object, **_kwargs: object) -> str:
        raise LabError("host core-02 did not finish booting (injected)")

    with session_lock("flcycle"):
        lab = fresh_lab("flcycle", "172.17.10.0/24")
        monkeypatch.setattr(host_ops, "wait_booted", no_boot)
        with pytest.raises(LabError, match="injected"):
            lab.up(hosts=2, etcd_members=1)
        assert traces("flcycle") == []


def test_checkout_and_venv_under_tmp() -> None:
    """CI clones anywhere, /tmp included, which hosts mount privately: they still see it."""
    base = Path("/tmp") / f"fleetlab-ci-{os.getpid()}"
    checkout, venv = base / "src", base / "src" / ".venv"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cli = [str(venv / "bin" / "python"), "-m", "fleetpy.lab.cli", "--name", "flci"]
        return subprocess.run(
            [*cli, "--subnet", "172.17.12.0/24", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=base,
        )

    try:
        here = Path(__file__).resolve().parents[2]
        shutil.copytree(
            here / "fleetpy", checkout / "fleetpy", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(here / "pyproject.toml", checkout)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        site = next(venv.glob("lib/python*/site-packages"))
        deps = next(Path(sys.prefix).glob("lib/python*/site-packages"))
        (site / "lab.pth").write_text(f"{checkout}\n{deps}\n")
        with session_lock("flci"):
            fresh_lab("flci", "172.17.12.0/24")
            up = run("up", "--hosts", "1", "--etcd-members", "1")
            try:
                assert up.returncode == 0, up.stderr
                seen = next(x for x in up.stderr.splitlines() if "hosts will see" in x)
                assert f"{checkout}," in seen or f"{checkout} at the same path" in seen
                probe = "import fleetpy.lab, sys; print(fleetpy.lab.__file__, sys.prefix)"
                done = run("exec", "core-01", "--", "python", "-c", probe)
                assert done.returncode == 0, done.stderr
                assert done.stdout.split() == [str(checkout / "fleetpy/lab/__init__.py"), str(venv)]
                listing = run("exec", "core-01", "--", "ls", "-A", "/tmp")
                assert listing.stdout.split() == [base.name], "only the checkout shows in /tmp"
            finally:
                down = run("down")
            assert down.returncode == 0, down.stderr
            assert traces("flci") == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
