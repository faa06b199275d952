"""fleetpy-confd against a real etcd: debounce, min_keys, etcd restarts, the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fleetpy.confd.loop import Confd, make_jobs
from fleetpy.confd.resource import Wait, parse_resource
from fleetpy.registry.base import RegistryError
from fleetpy.registry.etcd_client import EtcdClient
from fleetpy.registry.kv import Delete, Put, prefix_end
from tests.fixtures.etcd import EtcdProcess

pytestmark = pytest.mark.etcd

CONFD = str(Path(sys.executable).parent / "fleetpy-confd")
TEMPLATE = "{% for v in getvs('/svc/*') %}server {{ v }};\n{% endfor %}"


def confdir(tmp_path: Path, **extra: str) -> Path:
    d = tmp_path / "confd"
    (d / "conf.d").mkdir(parents=True)
    (d / "templates").mkdir()
    (d / "templates" / "t.tmpl").write_text(TEMPLATE)
    settings = "".join(f"{k} = {v}\n" for k, v in extra.items())
    (d / "conf.d" / "t.toml").write_text(
        f'[template]\nsrc = "t.tmpl"\ndest = "{tmp_path / "out"}"\nkeys = ["/svc"]\n'
        f'reload_cmd = "echo reload >> {tmp_path / "reloads"}"\n{settings}')
    return d


def reloads(tmp_path: Path) -> int:
    path = tmp_path / "reloads"
    return len(path.read_text().splitlines()) if path.exists() else 0


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running(etcd: EtcdProcess, tmp_path: Path, wait: str) -> AsyncIterator[EtcdClient]:
    d = confdir(tmp_path, wait=f'"{wait}"', min_keys="1")
    res = parse_resource((d / "conf.d" / "t.toml").read_text(), "t.toml")
    client = EtcdClient(etcd.endpoint, request_timeout=1.0)
    writer = EtcdClient(etcd.endpoint, request_timeout=1.0)
    await writer.txn([], [Put(b"/svc/a", b"10.0.0.1:80")])
    confd = Confd(client, make_jobs([(res, d / "templates" / "t.tmpl")], Wait()))
    task = asyncio.create_task(confd.run())
    try:
        await until(lambda: (tmp_path / "out").exists())
        yield writer
    finally:
        confd.stop()
        await task
        await client.close()
        await writer.close()


async def test_a_burst_of_changes_gives_one_reload(fresh_etcd: EtcdProcess,
                                                   tmp_path: Path) -> None:
    async with running(fresh_etcd, tmp_path, "300ms:3s") as etcd:
        assert reloads(tmp_path) == 1  # the first render
        for i in range(20):
            await etcd.txn([], [Put(f"/svc/b{i:02}".encode(), f"10.0.1.{i}:80".encode())])
        await until(lambda: (tmp_path / "out").read_text().count("server") == 21)
        await asyncio.sleep(0.5)  # longer than min: a second reload would have come
        assert reloads(tmp_path) == 2


async def test_below_min_keys_the_old_file_stays(fresh_etcd: EtcdProcess, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    async with running(fresh_etcd, tmp_path, "0:0") as etcd:
        before = (tmp_path / "out").read_text()
        assert before == "server 10.0.0.1:80;\n"
        await etcd.txn([], [Delete(b"/svc/", prefix_end(b"/svc/"))])
        await until(lambda: "min_keys is 1" in caplog.text)
        assert (tmp_path / "out").read_text() == before
        assert reloads(tmp_path) == 1
        await etcd.txn([], [Put(b"/svc/c", b"10.0.0.3:80")])
        await until(lambda: (tmp_path / "out").read_text() == "server 10.0.0.3:80;\n")


async def test_it_rides_out_an_etcd_restart(fresh_etcd: EtcdProcess, tmp_path: Path) -> None:
    async with running(fresh_etcd, tmp_path, "0:0"):
        before = (tmp_path / "out").read_text()
        await asyncio.to_thread(fresh_etcd.stop)
        await asyncio.sleep(1.5)  # the watch fails and retries meanwhile
        assert (tmp_path / "out").read_text() == before
        await asyncio.to_thread(fresh_etcd.start)
        writer = EtcdClient(fresh_etcd.endpoint, request_timeout=1.0)
        try:  # a just restarted etcd on a busy machine may need a moment to answer
            async with asyncio.timeout(15):
                while True:
                    try:
                        await writer.txn([], [Put(b"/svc/z", b"10.0.0.9:80")])
                        break
                    except RegistryError:
                        await asyncio.sleep(0.2)
        finally:
            await writer.close()
        # Followed without a restart of confd: its watch resumed.
        await until(lambda: "10.0.0.9:80" in (tmp_path / "out").read_text(), timeout=15)
        # the reload command runs just after the file is in place: awaited, then counted
        await until(lambda: reloads(tmp_path) >= 2, timeout=15)
        assert reloads(tmp_path) == 2


def cli(tmp_path: Path, etcd: EtcdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONFD, "--endpoints", etcd.endpoint, *args], capture_output=True,
                          text=True, timeout=30, check=False)


def test_onetime_and_noop(fresh_etcd: EtcdProcess, tmp_path: Path) -> None:
    d = str(confdir(tmp_path, min_keys="1"))
    out = tmp_path / "out"
    done = cli(tmp_path, fresh_etcd, "--onetime", "--confdir", d)
    assert done.returncode == 1 and "0 key(s) under /svc, min_keys is 1" in done.stderr
    assert not out.exists()
    subprocess.run(["etcdctl", "--endpoints", fresh_etcd.endpoint, "put", "/svc/a", "1.2.3.4:80"],
                   check=True, capture_output=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin"})
    done = cli(tmp_path, fresh_etcd, "--onetime", "--noop", "--confdir", d)
    assert done.returncode == 0, done.stderr
    assert "+server 1.2.3.4:80;" in done.stdout and not out.exists() and reloads(tmp_path) == 0
    done = cli(tmp_path, fresh_etcd, "--onetime", "--confdir", d)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "server 1.2.3.4:80;\n" and reloads(tmp_path) == 1
    fresh_etcd.stop()
    done = cli(tmp_path, fresh_etcd, "--onetime", "--confdir", d)
    assert done.returncode == 1 and "cannot read /svc from etcd" in done.stderr
    assert out.read_text() == "server 1.2.3.4:80;\n"


def test_bad_input_is_refused_before_anything_runs(fresh_etcd: EtcdProcess,
                                                    tmp_path: Path) -> None:
    done = cli(tmp_path, fresh_etcd, "--confdir", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "nowhere/conf.d: no such directory" in done.stderr
    d = confdir(tmp_path, check_cmd='"nginx -t"')
    done = cli(tmp_path, fresh_etcd, "--confdir", str(d))
    assert done.returncode == 2 and "check_cmd must name the staged file" in done.stderr
    done = cli(tmp_path, fresh_etcd, "--confdir", str(d), "--wait", "2s:1s")
    assert done.returncode == 2 and "--wait: max (1s) is below min (2s)" in done.stderr
