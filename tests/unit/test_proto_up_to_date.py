"""The committed gRPC stubs are exactly what scripts/gen_proto.sh generates."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "fleetpy" / "api" / "gen"
GENERATED = ("fleet_pb2.py", "fleet_pb2.pyi", "fleet_pb2_grpc.py")


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True, env=env, capture_output=True, timeout=60,
    )
    stale = [n for n in GENERATED if not filecmp.cmp(tmp_path / n, GEN / n, shallow=False)]
    assert not stale, f"{stale} differ from proto/: run scripts/gen_proto.sh and commit"


def test_stubs_import_as_a_package() -> None:
    from fleetpy.api.gen import fleet_pb2, fleet_pb2_grpc

    assert fleet_pb2.DESCRIPTOR.services_by_name["Fleet"].methods_by_name["WatchUnitStates"]
    assert hasattr(fleet_pb2_grpc, "FleetStub")
