"""fleetctl start of new units: created launched at once, MachineOf followers after
their targets (issue 13: half the writes for 10,000 new units)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from fleetpy.ctl import actions
from fleetpy.model.types import TargetState, UnitFile
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.systemd.base import content_hash


async def test_start_creates_new_units_launched_followers_after_their_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    body = "[Service]\nExecStart=/bin/sleep infinity\n"
    (tmp_path / "db.service").write_text(body)
    (tmp_path / "side.service").write_text(body + "[X-Fleet]\nMachineOf=db.service\n")
    (tmp_path / "web.service").write_text(body)
    registry = MemoryRegistry()
    await registry.create_units([UnitFile("web.service", body, content_hash(body))],
                                TargetState.INACTIVE)  # submitted before: raised as before
    creates: list[tuple[list[str], TargetState]] = []
    raised: list[list[str]] = []
    create, set_many = registry.create_units, registry.set_desired_many

    async def create_units(units: Sequence[UnitFile], desired: TargetState) -> dict[str, bool]:
        creates.append(([u.name for u in units], desired))
        return await create(units, desired)

    async def set_desired_many(names: Sequence[str], desired: TargetState) -> dict[str, bool]:
        raised.append(list(names))
        return await set_many(names, desired)

    registry.create_units = create_units  # type: ignore[method-assign]
    registry.set_desired_many = set_desired_many  # type: ignore[method-assign]
    code = await actions.start(registry, ["side.service", "db.service", "web.service"],
                               replace=False, block=actions.Blocking(no_block=True))
    assert code == 0
    # one create per MachineOf wave, at the target state; nothing raised afterwards
    # but the unit that existed already
    assert creates == [(["db.service"], TargetState.LAUNCHED),
                       (["side.service"], TargetState.LAUNCHED)]
    assert raised == [["web.service"]]
    records = await registry.get_units(["db.service", "side.service", "web.service"])
    assert {n: r.desired for n, r in records.items() if r} == dict.fromkeys(
        ["db.service", "side.service", "web.service"], TargetState.LAUNCHED)
    printed = capsys.readouterr().out
    assert "Unit db.service inactive" in printed  # fleet's output, as before
    assert "Triggered unit side.service start" in printed
