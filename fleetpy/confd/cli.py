"""fleetpy-confd: keep files rendered from etcd keys, and reload what reads them.

confd's model on etcd v3 (see the README's "fleetpy-confd" section): template
resources in ``<confdir>/conf.d/*.toml``, Jinja2 templates in
``<confdir>/templates/``. Without ``--onetime`` it watches the keys and
re-renders after each burst of changes (``--wait``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import click

from fleetpy.confd.apply import resolve_owner
from fleetpy.confd.loop import Confd, Job, make_jobs
from fleetpy.confd.resource import ConfdError, Resource, parse_resource, parse_wait
from fleetpy.registry.etcd_client import EtcdClient

log = logging.getLogger("fleetpy.confd")


def load(confdir: Path, prefix: str) -> list[tuple[Resource, Path]]:
    """Every resource of ``confdir`` with its template path; ConfdError if any is bad."""
    confd = confdir / "conf.d"
    if not confd.is_dir():
        raise ConfdError(f"{confd}: no such directory (template resources go there)")
    files = sorted(confd.glob("*.toml"))
    if not files:
        raise ConfdError(f"{confd}: no template resources (*.toml)")
    found = []
    for path in files:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfdError(f"{path}: cannot read: {e}") from None
        res = replace(parse_resource(text, str(path), prefix), name=path.name)  # logs: name
        template = Path(res.src) if res.src.startswith("/") else confdir / "templates" / res.src
        if not template.is_file():
            raise ConfdError(f"{path}: src {template} does not exist")
        resolve_owner(res)
        if not Path(res.dest).parent.is_dir():
            raise ConfdError(f"{path}: dest's directory {Path(res.dest).parent} does not exist")
        found.append((res, template))
    return found


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--confdir", default="/etc/confd", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Holds conf.d/*.toml (template resources) and templates/.")
@click.option("--endpoints", envvar="ETCDCTL_ENDPOINTS", default="http://127.0.0.1:2379",
              show_default=True, help="etcd endpoints, comma-separated ($ETCDCTL_ENDPOINTS).")
@click.option("--cacert", envvar="ETCDCTL_CACERT", default=None, help="CA of etcd's TLS.")
@click.option("--cert", envvar="ETCDCTL_CERT", default=None, help="Client certificate.")
@click.option("--key", envvar="ETCDCTL_KEY", default=None, help="Client key.")
@click.option("--user", envvar="ETCDCTL_USER", default=None, help="etcd USER:PASSWORD.")
@click.option("--prefix", default="", help="Put before every resource's keys.")
@click.option("--wait", "wait_text", default="100ms:1s", show_default=True,
              help="Debounce MIN:MAX for resources without their own wait.")
@click.option("--onetime", is_flag=True, help="Render once and exit (1 if anything failed).")
@click.option("--noop", is_flag=True,
              help="Render and check, print what would change; write and reload nothing.")
@click.option("--request-timeout", default=2.0, show_default=True, type=float,
              help="Seconds for each etcd request.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def main(confdir: Path, endpoints: str, cacert: str | None, cert: str | None,
         key: str | None, user: str | None, prefix: str, wait_text: str, onetime: bool,
         noop: bool, request_timeout: float, log_level: str) -> None:
    """Render files from etcd keys with Jinja2 templates; check, swap in, reload."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="fleetpy-confd: %(levelname)s %(message)s")
    try:
        wait = parse_wait(wait_text, "--wait")
        resources = load(confdir, prefix)
        username, password = ([*user.split(":", 1), ""])[:2] if user else (None, None)
        client = EtcdClient(endpoints, request_timeout=request_timeout, ca_file=cacert,
                            cert_file=cert, key_file=key, username=username,
                            password=password)
    except (ConfdError, ValueError) as e:
        click.echo(f"fleetpy-confd: {e}", err=True)
        sys.exit(2)
    ok = asyncio.run(_run(client, make_jobs(resources, wait), onetime=onetime, noop=noop))
    sys.exit(0 if ok else 1)


async def _run(client: EtcdClient, jobs: list[Job], *, onetime: bool, noop: bool) -> bool:
    confd = Confd(client, jobs, noop=noop)
    try:
        if onetime:
            return await confd.once()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, confd.stop)
        names = ", ".join(f"{j.name} -> {j.resource.dest}" for j in jobs)
        log.info("pid %d: watching %s on %s for %s", os.getpid(), ", ".join(confd.watched),
                 client.description, names)
        await confd.run()
        log.info("stopped")
        return True
    finally:
        await client.close()
