"""Which addresses and APIs a lab's etcd members serve (fleetpy.lab.etcd), without etcd."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from fleetpy.lab import LabError, etcd
from fleetpy.lab.state import LabConfig


def test_only_the_default_lab_serves_on_127_0_0_1() -> None:
    assert etcd.default_local_ip(LabConfig.make("fleetlab", None, "172.17.8.0/24")) == "127.0.0.1"
    assert etcd.default_local_ip(LabConfig.make("flseed", None, "172.17.58.0/24")) == ""


@pytest.mark.parametrize("bad", ["10.0.0.1", "172.17.58.1", "localhost", "::1", "127.0.0"])
def test_local_ip_must_be_ipv4_loopback(bad: str) -> None:
    with pytest.raises(LabError, match="give an IPv4 loopback address"):
        etcd.check_local_ip(bad)


def test_local_ip_loopback_or_none() -> None:
    assert etcd.check_local_ip("127.0.58.1") == "127.0.58.1"
    assert etcd.check_local_ip("") == ""


def test_listen_urls_and_v2() -> None:
    cfg = LabConfig.make("flseed", None, "172.17.58.0/24")
    rec = etcd.record(cfg, 2)
    assert etcd.client_listen_urls(rec) == "http://172.17.58.1:4002"
    assert rec.peer_url == "http://172.17.58.1:7002"
    local = replace(rec, local_url="http://127.0.58.1:4002")
    assert etcd.client_listen_urls(local) == "http://172.17.58.1:4002,http://127.0.58.1:4002"
    assert etcd.v2_flags(rec) == ["--enable-v2"]
    assert etcd.v2_flags(etcd.record(cfg, 2, tls=True)) == []  # --secure: no v2


def test_local_url_only_where_the_port_is_free() -> None:
    cfg = LabConfig.make("flseed", None, "172.17.58.0/24")
    with socket.socket() as probe:  # a port nobody uses
        probe.bind(("127.0.58.3", 0))
        port = probe.getsockname()[1]
    rec = replace(etcd.record(cfg, 1), client_url=f"http://172.17.58.1:{port}")
    assert etcd.with_local_url(rec, "127.0.58.3").local_url == f"http://127.0.58.3:{port}"
    with socket.socket() as held:  # now a server holds it
        held.bind(("127.0.58.3", port))
        held.listen()
        assert etcd.with_local_url(rec, "127.0.58.3").local_url == ""
    assert etcd.with_local_url(rec, "").local_url == ""
