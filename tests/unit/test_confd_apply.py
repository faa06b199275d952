"""fleetpy-confd's apply step in a tmp dir with real commands (sh, true, false)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from fleetpy.confd import apply as applier
from fleetpy.confd.apply import Applied, ApplyError, Result, apply, reload
from fleetpy.confd.debounce import Debounce
from fleetpy.confd.loop import Confd, Job
from fleetpy.confd.resource import Resource, Wait, parse_resource
from fleetpy.registry.kv import Put
from fleetpy.registry.memory import MemoryClient
from fleetpy.registry.memory_kv import MemoryKV


def resource(tmp_path: Path, **settings: str | int) -> Resource:
    lines = ['src = "t.tmpl"', f'dest = "{tmp_path / "out.conf"}"', 'keys = ["/k"]']
    lines += [f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"'
              for k, v in settings.items()]
    return parse_resource("[template]\n" + "\n".join(lines) + "\n", "r.toml")


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))


async def test_check_runs_on_the_staged_file_then_it_replaces_the_old_one(
        tmp_path: Path) -> None:
    seen = tmp_path / "checked"
    dest = tmp_path / "out.conf"
    dest.write_text("old\n")
    res = resource(tmp_path, check_cmd=f"cp {{{{.src}}}} {seen} && grep -q new {{{{.src}}}}",
                   mode="0600")
    applied = await apply(res, "new\n")
    assert applied.result is Result.WRITTEN
    assert "-old\n+new\n" in applied.diff
    assert seen.read_text() == "new\n" and dest.read_text() == "new\n"
    assert dest.stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == []


async def test_a_failed_check_keeps_the_old_file_and_says_why(tmp_path: Path) -> None:
    dest = tmp_path / "out.conf"
    dest.write_text("old\n")
    res = resource(tmp_path, check_cmd="echo bad config in {{.src}} >&2; false")
    with pytest.raises(ApplyError, match=r"check failed \(exit 1\): .*bad config in .*out\.conf"):
        await apply(res, "broken\n")
    assert dest.read_text() == "old\n"
    assert leftovers(tmp_path) == []  # the staged file is gone too


async def test_identical_content_writes_and_reloads_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out.conf"
    dest.write_text("same\n")
    dest.chmod(0o644)
    before = dest.stat().st_ino
    res = resource(tmp_path, check_cmd="false {{.src}}", mode="0644")
    assert (await apply(res, "same\n")).result is Result.UNCHANGED
    assert dest.stat().st_ino == before
    # A different mode is a change.
    res = resource(tmp_path, mode="0600")
    assert (await apply(res, "same\n")).result is Result.WRITTEN
    assert dest.stat().st_mode & 0o777 == 0o600


async def test_noop_checks_but_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out.conf"
    dest.write_text("old\n")
    res = resource(tmp_path, check_cmd="test -s {{.src}}")
    applied = await apply(res, "new\n", noop=True)
    assert applied == Applied(Result.WOULD_WRITE, applied.diff) and "+new" in applied.diff
    assert dest.read_text() == "old\n" and leftovers(tmp_path) == []


async def test_a_new_file_and_a_missing_directory(tmp_path: Path) -> None:
    res = resource(tmp_path)
    assert (await apply(res, "first\n")).result is Result.WRITTEN
    assert (tmp_path / "out.conf").read_text() == "first\n"
    gone = parse_resource(f'[template]\nsrc="t"\ndest="{tmp_path}/no/out"\nkeys=["/k"]\n', "r")
    with pytest.raises(ApplyError, match="does not exist"):
        await apply(gone, "x")


async def test_reload_failure_is_an_error_with_output(tmp_path: Path) -> None:
    await reload(resource(tmp_path, reload_cmd="true"))
    with pytest.raises(ApplyError, match=r"reload failed \(exit 3\): .*nginx is down"):
        await reload(resource(tmp_path, reload_cmd="echo nginx is down; exit 3"))


async def test_the_loop_retries_a_failed_reload_until_it_succeeds(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """reload_cmd fails twice (a counter file), then works: the loop keeps trying
    with back-off although nothing changed in etcd meanwhile."""
    counter = tmp_path / "attempts"
    (tmp_path / "t.tmpl").write_text("{{ kv | length }}\n")
    cmd = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 2 ]"
    res = resource(tmp_path, reload_cmd=cmd)
    store = MemoryKV()  # the values in memory: this test is about the reload retries
    store.txn([], [Put(b"/k/a", b"1")])
    job = Job(res, tmp_path / "t.tmpl", Debounce(Wait(0.0, 0.0)))
    job.retry.initial = 0.05
    confd = Confd(MemoryClient(store), [job])
    caplog.set_level(logging.INFO, "fleetpy.confd")
    task = asyncio.create_task(confd.run())
    try:
        async with asyncio.timeout(10):
            while job.retry.failures or not counter.exists() or counter.read_text() != "3\n":
                await asyncio.sleep(0.02)
    finally:
        confd.stop()
        await task
    assert (tmp_path / "out.conf").read_text() == "1\n"
    assert "reloaded after 2 failed attempt(s)" in caplog.text
    assert caplog.text.count("trying the reload again") == 2


def test_owner_is_resolved(tmp_path: Path) -> None:
    assert applier.resolve_owner(resource(tmp_path, owner="root")) == (0, 0)
    assert applier.resolve_owner(resource(tmp_path, owner="0:0")) == (0, 0)
    with pytest.raises(Exception, match="no user 'nobody-at-all'"):
        applier.resolve_owner(resource(tmp_path, owner="nobody-at-all"))
    assert os.path.exists("/bin/sh")
