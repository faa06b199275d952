"""How long the engine gathers changes before a pass (fleetpy.engine.engine.coalesce_wait)."""

from __future__ import annotations

from fleetpy.engine.engine import COALESCE, MAX_COALESCE, coalesce_wait


def test_passes_in_a_row_wait_as_long_as_the_last_one_took() -> None:
    assert coalesce_wait(0.4, 0.0) == 0.4  # planning takes at most half the time
    assert coalesce_wait(5.0, 0.0) == MAX_COALESCE
    assert coalesce_wait(0.0, 0.0) == COALESCE


def test_the_first_change_after_a_quiet_spell_is_planned_at_once() -> None:
    # a machine gone after 30 s of nothing: its units are placed without waiting
    # for the length of the last (costly) pass
    assert coalesce_wait(0.8, 30.0) == COALESCE
    assert coalesce_wait(0.8, 0.5) == 0.8 - 0.5
