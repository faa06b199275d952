"""fleetctl rolling-update end to end over --driver etcd on the in-memory registry, with
a fake agent that reports each instance's hash (active, or failed for /bin/false).

Fast checks of the command's flow (order, stop at the first failure, revert, bad
input); what systemd does is the lab test's (tests/lab/test_rolling_update.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from click.testing import CliRunner, Result

from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.model.types import TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import Registry
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.registry.memory_kv import MemoryKV

V1 = "[Service]\nExecStart=/bin/sleep infinity\n"
V2 = "[Service]\nExecStart=/bin/sleep 99999\n"
BROKEN = "[Service]\nExecStart=/bin/false\n"
NAMES = [f"web@{i}.service" for i in (1, 2, 3)]


async def fake_agent(registry: Registry) -> None:
    """Report every launched instance active with its hash (failed: /bin/false)."""
    lease = await registry.grant_lease(30)
    seen: dict[str, str] = {}
    while True:
        for rec in await registry.list_units():
            if rec.desired != TargetState.LAUNCHED or seen.get(rec.unit.name) == rec.unit.hash:
                continue
            seen[rec.unit.name] = rec.unit.hash
            bad = "/bin/false" in rec.unit.contents
            await registry.put_unit_states([UnitState(
                rec.unit.name, "m1", "loaded", "failed" if bad else "active",
                "failed" if bad else "running", rec.unit.hash, "launched")], lease)
        await asyncio.sleep(0.02)


def seeded() -> MemoryKV:
    store = MemoryKV()

    async def seed() -> None:
        reg = MemoryRegistry(store=store)
        await reg.put_unit(make_unit_file("web@.service", V1), TargetState.INACTIVE)
        for name in NAMES:
            await reg.put_unit(make_unit_file(name, V1), TargetState.LAUNCHED)

    asyncio.run(seed())
    return store


def run(store: MemoryKV, tmp_path: Path, text: str, *flags: str) -> Result:
    path = tmp_path / "web@.service"
    path.write_text(text)
    tasks: list[asyncio.Task[None]] = []

    async def factory(endpoints: Sequence[str], prefix: str, timeout: float) -> Registry:
        tasks.append(asyncio.create_task(fake_agent(MemoryRegistry(prefix, store=store))))
        return MemoryRegistry(prefix, store=store)

    return CliRunner().invoke(
        main, ["--driver", "etcd", "rolling-update", "--min-healthy-time", "0.2s",
               "--healthy-deadline", "1s", *flags, str(path)],
        obj=CtlEnv(registry_factory=factory))


def hashes(store: MemoryKV) -> dict[str, str]:
    async def read() -> dict[str, str]:
        return {r.unit.name: r.unit.hash for r in await MemoryRegistry(store=store).list_units()}

    return asyncio.run(read())


def test_rolls_the_instances_one_at_a_time(tmp_path: Path) -> None:
    store = seeded()
    r = run(store, tmp_path, V2)
    assert r.exit_code == 0, r.output
    new = make_unit_file("web@.service", V2).hash
    assert hashes(store) == {n: new for n in ["web@.service", *NAMES]}
    lines = [ln for ln in r.output.splitlines() if ln.startswith("web@")]
    steps = [":".join(m.groups()) for ln in lines if (m := re.match(r"(\S+): (\w+)", ln))]
    assert steps == [f"{n}:{what}" for n in NAMES for what in ("updating", "healthy")], lines
    assert "web@1.service: updating to " + new[:7] + " on m1" in r.output


def test_a_failure_stops_the_update_and_auto_revert_puts_it_back(tmp_path: Path) -> None:
    store = seeded()
    old = hashes(store)
    r = run(store, tmp_path, BROKEN, "--auto-revert")
    assert r.exit_code == 1, r.output
    assert "web@1.service: not healthy 1s after its update: failed/failed" in r.output
    assert "web@2.service: updating" not in r.output
    assert hashes(store) == old

    r = run(store, tmp_path, BROKEN)  # without --auto-revert it stays as it is
    assert r.exit_code == 1
    bad = make_unit_file("web@.service", BROKEN).hash
    assert hashes(store) == {**old, "web@.service": bad, "web@1.service": bad}


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = seeded()
    old = hashes(store)
    plain = tmp_path / "web.service"
    plain.write_text(V2)
    for args, words in [
        ([str(plain)], "web.service is not a template unit"),
        ([str(tmp_path / "none@.service")], "none@.service"),
        (["--min-healthy-time", "5s", "--healthy-deadline", "2s", str(plain)],
         "must be longer than --min-healthy-time"),
        (["--max-parallel", "0", str(plain)], "--max-parallel"),
        (["--healthy-deadline", "soon", str(plain)], "not a duration"),
    ]:
        r = CliRunner().invoke(main, ["--driver", "etcd", "rolling-update", *args],
                               obj=CtlEnv(registry_factory=_factory(store)))
        assert r.exit_code != 0 and words in r.output, (args, r.output)
    assert hashes(store) == old


def _factory(store: MemoryKV) -> Callable[[Sequence[str], str, float], Awaitable[Registry]]:
    async def factory(endpoints: Sequence[str], prefix: str, timeout: float) -> Registry:
        return MemoryRegistry(prefix, store=store)

    return factory
