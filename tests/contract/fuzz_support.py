"""A real etcd of the module's own, a registry and the gRPC API server on it (in-process,
on a background loop), fleetctl run in-process through either driver, and the whole
etcd key space, to show that refused input wrote nothing."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.registry.etcd import EtcdRegistry
from tests.fixtures.etcd import EtcdProcess
from tests.unit.test_ctl_support import Cluster

PREFIX = "/fleetpy-fuzz/"
Keyspace = dict[bytes, tuple[bytes, int]]


class FuzzCluster:
    """etcd + EtcdRegistry + the API server on a unix socket; see the module doc."""

    def __init__(self, tmp: Path) -> None:
        self.etcd = EtcdProcess(tmp / "etcd-data", name="fuzz")
        self.etcd.start()
        self.cluster = Cluster(registry=lambda: EtcdRegistry(self.etcd.endpoint, PREFIX),
                               simulate=False)
        self.sockdir = Path(tempfile.mkdtemp(prefix="ffz", dir="/tmp"))
        self.socket = self.sockdir / "fleet.sock"
        self.api = self.cluster.start_api(str(self.socket))

    def close(self) -> None:
        try:
            self.cluster.close()
        finally:
            self.etcd.stop(kill=True)
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.etcd.endpoint + path, json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            reply: dict[str, Any] = json.loads(response.read())
            return reply

    def keyspace(self) -> tuple[int, Keyspace]:
        """(revision, every key in etcd -> (value, mod revision))."""
        zero = base64.b64encode(b"\0").decode()
        reply = self._post("/v3/kv/range", {"key": zero, "range_end": zero})
        kvs = {
            base64.b64decode(kv["key"]): (base64.b64decode(kv.get("value", "")),
                                         int(kv["mod_revision"]))
            for kv in reply.get("kvs", [])
        }
        return int(reply["header"]["revision"]), kvs

    def delete_units(self) -> None:
        """Remove every unit (between examples that were accepted)."""
        key = (PREFIX + "units/").encode()
        end = key[:-1] + bytes([key[-1] + 1])
        self._post("/v3/kv/deleterange", {"key": base64.b64encode(key).decode(),
                                          "range_end": base64.b64encode(end).decode()})

    def unit_contents(self, name: str) -> str | None:
        record = self.cluster.run(self.cluster.registry.get_unit(name))
        return None if record is None else record.unit.contents

    def ctl(self, driver: str, *args: str) -> Result:
        """fleetctl in-process, through the API server or straight to etcd."""
        if driver == "api":
            argv = ["--endpoint", self.api, *args]
        else:
            argv = ["--driver", "etcd", "--etcd-endpoints", self.etcd.endpoint,
                    "--etcd-key-prefix", PREFIX, *args]
        return CliRunner().invoke(main, argv, obj=CtlEnv())
