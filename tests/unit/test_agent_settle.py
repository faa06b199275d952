"""When a start counts as settled (fleetpy.agent.settle), on explicit clock values."""

from __future__ import annotations

import pytest

from fleetpy.agent.settle import SETTLE_S, UNSEEN_S, Settling
from fleetpy.systemd.base import UnitStatus


def st(active: str, sub: str) -> UnitStatus:
    return UnitStatus("a.service", "loaded", active, sub)


def test_settle_counts_from_when_the_unit_was_seen_up() -> None:
    s = Settling()
    s.started("a.service", 10.0)
    assert s.due("a.service") == pytest.approx(10.0 + UNSEEN_S)  # not seen up yet
    assert not s.settles_now(st("active", "running"), 10.03)
    assert s.due("a.service") == pytest.approx(10.03 + SETTLE_S)
    assert not s.settles_now(st("active", "running"), 10.05)  # seen again: no change
    assert s.due("a.service") == pytest.approx(10.03 + SETTLE_S)


def test_a_unit_seen_up_late_gets_its_whole_settle() -> None:
    s = Settling()
    s.started("a.service", 10.0)
    assert not s.settles_now(st("activating", "start"), 11.5)  # its start job waited
    assert s.due("a.service") == pytest.approx(11.5 + SETTLE_S)


def test_up_then_down_settles_at_once() -> None:
    s = Settling()
    s.started("a.service", 10.0)
    assert not s.settles_now(st("active", "running"), 10.01)
    assert s.settles_now(st("failed", "failed"), 10.02)


def test_down_before_seen_up_waits_for_the_unseen_due() -> None:
    """A failure systemd signalled before any up state: settled at UNSEEN_S, by reading
    systemd's state then (the settle loop), never as launched-and-running."""
    s = Settling()
    s.started("a.service", 10.0)
    assert not s.settles_now(st("failed", "failed"), 10.01)
    assert s.due("a.service") == pytest.approx(10.0 + UNSEEN_S)

