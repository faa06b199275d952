"""`fleetlab`: commands only parse, delegate to ``Lab`` and print."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from fleetpy.lab.api import Lab
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import DEFAULT_NAME, DEFAULT_SUBNET
from fleetpy.lab.status import HostStatus, MemberStatus


class _Group(click.Group):
    """Turns a LabError into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            click.echo(f"fleetlab: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option(
    "--name",
    envvar="FLEETLAB_NAME",
    default=DEFAULT_NAME,
    show_default=True,
    help="Lab name: names its bridge, cgroups and state dir.",
)
@click.option(
    "--state-dir",
    envvar="FLEETLAB_STATE_DIR",
    type=click.Path(path_type=Path),
    help="State directory [default: /var/lib/fleetlab/NAME].",
)
@click.option(
    "--subnet",
    envvar="FLEETLAB_SUBNET",
    default=DEFAULT_SUBNET,
    show_default=True,
    help="The lab bridge's subnet: bridge .1, hosts .101 and up.",
)
@click.pass_context
def main(ctx: click.Context, name: str, state_dir: Path | None, subnet: str) -> None:
    """A fleet lab on this machine: etcd members and hosts running systemd."""
    logging.basicConfig(level=logging.INFO, format="fleetlab: %(message)s", stream=sys.stderr)
    try:
        ctx.obj = Lab(name, state_dir, subnet)
    except LabError as exc:
        click.echo(f"fleetlab: {exc}", err=True)
        sys.exit(1)


pass_lab = click.make_pass_decorator(Lab)


@main.command()
@click.option("--hosts", default=3, show_default=True, help="Number of hosts core-01..")
@click.option("--etcd-members", default=3, show_default=True, help="Members infra1..")
@click.option("--metadata", "metadata", multiple=True, metavar="HOST=K=V[,K=V...]",
              help="fleetd machine metadata of one host (repeatable), "
                   "e.g. core-01=region=us-east,disk=ssd.")
@click.option("--fleet-env", "fleet_env", multiple=True, metavar="FLEET_NAME=VALUE",
              help="Extra fleetd setting for every host (repeatable), e.g. FLEET_AGENT_TTL=5.")
@click.option("--secure", is_flag=False, flag_value="cert", default=None,
              type=click.Choice(["cert", "password"]),
              help="etcd with TLS and auth, fleetd's API with TLS; --secure: client "
                   "certificates, --secure=password: user names and passwords.")
@click.option("--discovery", is_flag=True,
              help="Members bootstrap through a discovery URL on the lab's own discovery "
                   "service (it stands in for discovery.etcd.io), not a static member list.")
@click.option("--local-ip", default=None, metavar="ADDR",
              help="Loopback address etcd members also serve clients on, at ports 4001.. "
                   "where free [default: 127.0.0.1 for lab fleetlab, none for others]; "
                   "--local-ip '' for none.")
@pass_lab
def up(
    lab: Lab,
    hosts: int,
    etcd_members: int,
    metadata: tuple[str, ...],
    fleet_env: tuple[str, ...],
    secure: str | None,
    discovery: bool,
    local_ip: str | None,
) -> None:
    """Start etcd members and boot the hosts."""
    from fleetpy.lab import fleetopts

    lab.up(hosts=hosts, etcd_members=etcd_members, metadata=fleetopts.host_metadata(metadata),
           fleet_env=fleetopts.fleet_env(fleet_env), secure=secure or "",
           discovery=discovery, local_ip=local_ip)


@main.command()
@pass_lab
def down(lab: Lab) -> None:
    """Stop everything and remove all the lab's traces."""
    lab.down()


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}M"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _host_row(h: HostStatus) -> list[str]:
    return [h.name, h.machine_id, h.ip, str(h.pid or "-"), h.systemd, h.fleetd, _mib(h.memory),
            h.fault]


def _member_row(m: MemberStatus) -> list[str]:
    return [m.name, m.client_url, str(m.pid or "-"), m.health, "yes" if m.leader else "-"]


@main.command()
@pass_lab
def status(lab: Lab) -> None:
    """Hosts and etcd members, with their states."""
    hosts, members = lab.status()
    head = ["HOST", "MACHINE-ID", "IP", "PID", "SYSTEMD", "FLEETD", "MEMORY", "FAULT"]
    click.echo(_table([head, *map(_host_row, hosts)]))
    click.echo()
    click.echo(
        _table([["MEMBER", "CLIENT-URL", "PID", "HEALTH", "LEADER"], *map(_member_row, members)])
    )
    for line in lab.discovery_status():
        click.echo(line)


@main.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_lab
def exec_(lab: Lab, host: str, argv: tuple[str, ...]) -> None:
    """Run ARGV inside HOST (write `--` before it); its exit status is ours."""
    full, env = lab.command(host, argv)
    sys.exit(subprocess.run(full, env=env, check=False).returncode)


@main.command()
@click.argument("host")
@pass_lab
def shell(lab: Lab, host: str) -> None:
    """An interactive shell inside HOST."""
    full, env = lab.command(host, ["/bin/bash", "-i"])
    os.execvpe(full[0], full, env)


@main.command()
@pass_lab
def env(lab: Lab) -> None:
    """`export` lines pointing fleetctl and etcdctl here at the lab: eval "$(fleetlab env)"."""
    for key, value in lab.env().items():
        click.echo(f"export {key}={shlex.quote(value)}")


@main.command("host-stop")
@click.option("--kill", is_flag=True, help="Crash it instead: SIGKILL its PID 1, no shutdown.")
@click.argument("host")
@pass_lab
def host_stop(lab: Lab, host: str, kill: bool) -> None:
    """Power HOST off (its machine-id is kept)."""
    lab.host_stop(host, kill=kill)


@main.command("host-add")
@click.option("--metadata", default="", metavar="K=V[,K=V...]", help="Its fleetd's metadata.")
@pass_lab
def host_add(lab: Lab, metadata: str) -> None:
    """Boot a new host (next core-NN, new machine-id) in the running lab; print its name."""
    click.echo(lab.host_add(metadata))


@main.command("host-start")
@click.argument("host")
@pass_lab
def host_start(lab: Lab, host: str) -> None:
    """Power HOST on again."""
    lab.host_start(host)


@main.command("etcd-add")
@pass_lab
def etcd_add(lab: Lab) -> None:
    """Add an etcd member at runtime (member add, then start it as `existing`)."""
    click.echo(lab.etcd_add())


@main.command("etcd-remove")
@click.argument("name")
@pass_lab
def etcd_remove(lab: Lab, name: str) -> None:
    """Remove etcd member NAME from the cluster and stop it."""
    lab.etcd_remove(name)


@main.command("discovery-join")
@click.option("--fallback", default="proxy", show_default=True,
              type=click.Choice(["proxy", "exit"]),
              help="etcd's --discovery-fallback: what it does when the cluster is full.")
@pass_lab
def discovery_join(lab: Lab, fallback: str) -> None:
    """Start one more etcd with the lab's discovery URL (a lab up with --discovery).

    As etcd 3.4 does with a full discovery cluster: a proxy (its default) or, with
    --fallback=exit, refused ("discovery: cluster is full", exit status 1)."""
    click.echo(lab.discovery_join(fallback))


@main.command()
@click.argument("host")
@pass_lab
def partition(lab: Lab, host: str) -> None:
    """Cut HOST off: every packet to or from it is dropped (it runs on)."""
    lab.partition(host)


@main.command()
@click.argument("host")
@pass_lab
def heal(lab: Lab, host: str) -> None:
    """Give a partitioned HOST its network back."""
    lab.heal(host)


@main.command()
@click.argument("host")
@pass_lab
def pause(lab: Lab, host: str) -> None:
    """Freeze every process of HOST (cgroup freezer), like a stalled VM."""
    lab.pause(host)


@main.command()
@click.argument("host")
@pass_lab
def resume(lab: Lab, host: str) -> None:
    """Thaw a paused HOST."""
    lab.resume(host)


def _member_arg(member: str | None, all_: bool) -> str | None:
    if (member is None) == (not all_):
        raise click.UsageError("give one etcd member name or --all")
    return member


@main.command("etcd-stop")
@click.argument("member", required=False)
@click.option("--all", "all_", is_flag=True, help="Every member.")
@pass_lab
def etcd_stop(lab: Lab, member: str | None, all_: bool) -> None:
    """Stop etcd MEMBER (SIGTERM, then SIGKILL); its data is kept."""
    lab.etcd_stop(_member_arg(member, all_))


@main.command("etcd-start")
@click.argument("member", required=False)
@click.option("--all", "all_", is_flag=True, help="Every stopped member.")
@pass_lab
def etcd_start(lab: Lab, member: str | None, all_: bool) -> None:
    """Start a stopped etcd MEMBER on its data; wait until it is healthy."""
    lab.etcd_start(_member_arg(member, all_))


@main.group()
def hollow() -> None:
    """Hollow machines: the real agent on an in-memory systemd, many per process."""


@hollow.command("up")
@click.option("--machines", type=int, required=True, help="How many hollow machines.")
@click.option("--processes", type=int, default=2, show_default=True,
              help="Worker processes to spread them over.")
@click.option("--start-delay", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Time a unit spends activating before it is active.")
@click.option("--metadata", default="", metavar="K=V[,K=V...]",
              help="Extra metadata of every hollow machine (they all have hollow=true).")
@pass_lab
def hollow_up(lab: Lab, machines: int, processes: int, start_delay: float,
              metadata: str) -> None:
    """Start hollow machines against the lab's etcd, with the lab's fleetd settings."""
    lab.hollow_up(machines, processes, start_delay, metadata)


@hollow.command("status")
@pass_lab
def hollow_status(lab: Lab) -> None:
    """Each worker: its machines, how many are alive and registered, their units."""
    rows = [["WORKER", "PID", "MACHINES", "ALIVE", "REGISTERED", "UNITS", "ACTIVE"]]
    for w in lab.hollow_status():
        rows.append([str(w.index), str(w.pid or "-"), str(w.machines), str(w.alive),
                     str(w.registered), str(w.units), str(w.active)])
    click.echo(_table(rows))


@hollow.command("kill")
@click.argument("count", type=int)
@pass_lab
def hollow_kill(lab: Lab, count: int) -> None:
    """COUNT hollow machines die at once, like a crash (no lease revoke)."""
    for machine_id in lab.hollow_kill(count):
        click.echo(machine_id)


@hollow.command("down")
@pass_lab
def hollow_down(lab: Lab) -> None:
    """Stop every hollow machine (they leave the cluster at once)."""
    lab.hollow_down()


if __name__ == "__main__":
    main()
