"""The committed gRPC stubs are exactly what scripts/gen_proto.sh generates.

Lines that only carry the generator's version are ignored, so that a newer
grpcio-tools on a fresh machine does not fail the check; a changed proto does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "fleetpy" / "api" / "gen"
GENERATED = ("fleet_pb2.py", "fleet_pb2.pyi", "fleet_pb2_grpc.py")

_VERSION_LINES = [
    (re.compile(r"^# Protobuf Python Version: .*$", re.M), "# Protobuf Python Version: X"),
    (re.compile(r"(_runtime_version\.Domain\.PUBLIC,\n)(\s*\d+,\n){3}"), r"\1"),
    (re.compile(r"^GRPC_GENERATED_VERSION = .*$", re.M), "GRPC_GENERATED_VERSION = X"),
]


def normalized(path: Path) -> str:
    text = path.read_text()
    for pattern, replacement in _VERSION_LINES:
        text = pattern.sub(replacement, text)
    return text


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    stale = [n for n in GENERATED if normalized(tmp_path / n) != normalized(GEN / n)]
    assert not stale, f"{stale} differ from proto/: run scripts/gen_proto.sh and commit"


def test_version_lines_are_ignored_but_nothing_else() -> None:
    text = (GEN / "fleet_pb2.py").read_text()
    assert normalized(GEN / "fleet_pb2.py") != text  # the version lines were found
    assert "ValidateProtobufRuntimeVersion(\n    _runtime_version.Domain.PUBLIC,\n    ''," in (
        normalized(GEN / "fleet_pb2.py"))


def test_stubs_import_as_a_package() -> None:
    from fleetpy.api.gen import fleet_pb2, fleet_pb2_grpc

    assert fleet_pb2.DESCRIPTOR.services_by_name["Fleet"].methods_by_name["WatchUnitStates"]
    assert hasattr(fleet_pb2_grpc, "FleetStub")
