"""fleetlab's discovery bootstrap (fleetpy.lab.discovery): what it refuses before starting
anything, and its record in the lab's state file. The lab itself: tests/lab/test_discovery.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetpy.lab import discovery
from fleetpy.lab.errors import LabError
from fleetpy.lab.procs import Proc
from fleetpy.lab.state import DiscoveryRecord, LabConfig, LabState, MemberRecord, load, save


def _cfg(tmp_path: Path) -> LabConfig:
    return LabConfig.make("fldisc", tmp_path / "state", "172.17.59.0/24")


def _never(state: LabState) -> None:
    raise AssertionError("nothing may be saved")


def _record(cfg: LabConfig) -> DiscoveryRecord:
    server = discovery.server_record(cfg)
    proxy = MemberRecord("infra4", 4, cfg.client_url(4), cfg.peer_url(4), Proc(4242, 99))
    return DiscoveryRecord(f"{server.client_url}/v2/keys/discovery/abc", 3,
                           MemberRecord(server.name, 0, server.client_url, server.peer_url,
                                        Proc(4141, 98)), (proxy,))


def test_join_on_a_lab_bootstrapped_statically_names_the_problem(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with pytest.raises(LabError, match=r"not bootstrapped through discovery.*etcd-add"):
        discovery.join(cfg, LabState(cfg.name, cfg.subnet), "proxy", _never)
    assert not cfg.state_dir.exists()


def test_join_with_an_unknown_fallback_names_the_choices(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    state = LabState(cfg.name, cfg.subnet, discovery=_record(cfg))
    with pytest.raises(LabError, match=r"--fallback=later: choose proxy or exit"):
        discovery.join(cfg, state, "later", _never)
    assert not cfg.state_dir.exists()


def test_the_discovery_record_survives_the_state_file(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    state = LabState(cfg.name, cfg.subnet, discovery=_record(cfg))
    save(cfg, state)
    loaded = load(cfg)
    assert loaded is not None and loaded.discovery == state.discovery
    # down stops (and `up` sees as alive) the discovery etcd and its proxies
    assert {p.pid for p in loaded.processes()} == {4141, 4242}
    save(cfg, LabState(cfg.name, cfg.subnet))  # a lab up without --discovery
    plain = load(cfg)
    assert plain is not None and plain.discovery is None and plain.processes() == []
