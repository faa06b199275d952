"""The faults of issue 11's suite, one function each: inject, wait for the fault's end, return.

Each returns an ``Outcome``: when the fault was over, which hosts units may
be moved off (only what the scenario must move: a host cut off or stalled
longer than agent_ttl), and the units it started itself. Measuring is the
runner's job (bench/faults_bench.py). Faults that need a Lab method this
checkout lacks (partition, pause, etcd_stop) are listed in ``needs`` and
skipped, said in the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.faults_observe import Observer, Registry, poll
from fleetpy.lab import Lab
from fleetpy.lab.state import FLEET_API_PORT

FLEETCTL = str(Path(sys.executable).with_name("fleetctl"))
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Ctx:
    lab: Lab
    obs: Observer
    reg: Registry
    ttl: int
    tmp: Path
    late: tuple[str, ...]  # the units scenario 5 starts
    notes: list[str] = field(default_factory=list)

    def host_names(self) -> list[str]:
        return [h.name for h in self.lab.hosts]

    def fleetctl(self, *args: str, via: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """fleetctl as a user runs it (a new process), through ``via``'s API if given."""
        env = {**os.environ, **self.lab.env()}
        if via is not None:
            ip = next(h.ip for h in self.lab.hosts if h.name == via)
            env["FLEETCTL_ENDPOINT"] = f"http://{ip}:{FLEET_API_PORT}"
        return subprocess.run([FLEETCTL, *args], env=env, cwd=self.tmp, capture_output=True,
                              text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Outcome:
    fault_end: float  # wall clock
    may_move_from: frozenset[str] = frozenset()
    added: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    key: str
    group: int  # the scenario number
    label: str
    fault: str  # from which event to which event the fault runs
    act: Callable[[Ctx, int], Outcome]
    needs: tuple[str, ...] = ()  # Lab methods it uses
    per_host: bool = False  # repeated N times on each host
    control: int = 0  # unexpected stops/restarts it causes on purpose (the observer's check)

    def missing(self, lab: Lab) -> list[str]:
        return [n for n in self.needs if not callable(getattr(lab, n, None))]


def in_host(ctx: Ctx, host: str, *argv: str) -> str:
    done = ctx.lab.exec(host, list(argv), timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} on {host} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout.strip()


def fleetd_pid(ctx: Ctx, host: str) -> str:
    return in_host(ctx, host, "systemctl", "show", "-p", "MainPID", "--value", "fleet.service")


def wait_fleetd(ctx: Ctx, host: str, old_pid: str, timeout: float = 60) -> float:
    """When fleet.service on ``host`` was active (ready) again with a new main process."""
    for _ in poll(0.1, timeout):
        state = ctx.lab.exec(host, ["systemctl", "show", "-p", "ActiveState,MainPID",
                                    "fleet.service"]).stdout
        props = dict(line.split("=", 1) for line in state.split() if "=" in line)
        if props.get("ActiveState") == "active" and props.get("MainPID") not in ("0", old_pid):
            return time.time()
    raise RuntimeError(f"fleet.service on {host} not active again within {timeout:.0f} s")


def kill9(ctx: Ctx, host: str) -> float:
    """SIGKILL fleetd (systemd restarts it: Restart=always); when it is ready again."""
    pid = fleetd_pid(ctx, host)
    in_host(ctx, host, "systemctl", "kill", "-s", "KILL", "fleet.service")
    return wait_fleetd(ctx, host, pid)


def leader(ctx: Ctx) -> str:
    for _ in poll(0.5, 60):
        try:
            if (host := ctx.reg.leader()) in ctx.host_names():
                return host
        except Exception:  # etcd not answering yet: ask again
            pass
    raise RuntimeError("no engine leader among the hosts within 60 s")


def other_than(ctx: Ctx, *hosts: str) -> str:
    return next(h for h in ctx.host_names() if h not in hosts)


# control: the observer must see what it is there to see ------------------------------


CONTROL_UNIT = "plain-1.service"


def s_control(ctx: Ctx, rep: int) -> Outcome:
    """Restart one unit behind fleet's back (systemctl on its host): one unexpected restart."""
    hosts = ctx.reg.placement().get(CONTROL_UNIT, frozenset())
    if len(hosts) != 1:
        raise RuntimeError(f"{CONTROL_UNIT} is placed on {sorted(hosts)}, not on one host")
    in_host(ctx, next(iter(hosts)), "systemctl", "restart", CONTROL_UNIT)
    return Outcome(time.time())


# scenario 1 ------------------------------------------------------------------------


def s_kill9(ctx: Ctx, rep: int) -> Outcome:
    hosts = ctx.host_names()
    return Outcome(kill9(ctx, hosts[rep % len(hosts)]))


def s_restart(ctx: Ctx, rep: int) -> Outcome:
    hosts = ctx.host_names()
    host = hosts[rep % len(hosts)]
    pid = fleetd_pid(ctx, host)
    in_host(ctx, host, "systemctl", "restart", "fleet.service")
    return Outcome(wait_fleetd(ctx, host, pid))


UPGRADE_DROPIN = "/run/systemd/system/fleet.service.d/90-bench-upgrade.conf"


def s_upgrade(ctx: Ctx, rep: int) -> Outcome:
    """fleetpy re-installed in the venv the hosts run fleetd from; each host in turn gets a
    changed fleet.service (a drop-in), daemon-reload, restart."""
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--no-build-isolation", "--force-reinstall", "-e", str(ROOT)],
                         capture_output=True, text=True, timeout=300, check=False)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install failed: {pip.stderr[-500:]}")
    end = time.time()
    for host in ctx.host_names():
        pid = fleetd_pid(ctx, host)
        in_host(ctx, host, "sh", "-c", f"mkdir -p {Path(UPGRADE_DROPIN).parent} && printf "
                f"'[Service]\\nEnvironment=FLEETPY_BENCH_UPGRADE={rep}\\n' > {UPGRADE_DROPIN}")
        in_host(ctx, host, "systemctl", "daemon-reload")
        in_host(ctx, host, "systemctl", "restart", "fleet.service")
        end = wait_fleetd(ctx, host, pid)
    return Outcome(end)


# scenario 2 ------------------------------------------------------------------------


def s_leader_kill(ctx: Ctx, rep: int) -> Outcome:
    return Outcome(kill9(ctx, leader(ctx)))


def s_leader_pause(ctx: Ctx, rep: int) -> Outcome:
    host = leader(ctx)
    ctx.lab.pause(host)
    try:
        time.sleep(ctx.ttl * 1.5 + 2)
    finally:
        ctx.lab.resume(host)
    return Outcome(time.time(), frozenset({host}))


# scenario 3 ------------------------------------------------------------------------


def members(ctx: Ctx) -> list[str]:
    return [m.name for m in ctx.lab.status()[1]]


def etcd_down(ctx: Ctx, names: list[str] | None, seconds: float) -> float:
    """Stop ``names`` (None: every member), wait ``seconds``, start them again."""
    which: list[str | None] = [None] if names is None else list(names)
    for name in which:
        ctx.lab.etcd_stop(name)
    try:
        time.sleep(seconds)
    finally:
        for name in which:
            ctx.lab.etcd_start(name)
    return time.time()


ONE_MEMBER_DOWN = 15.0
QUORUM_LOST = 30.0
ALL_DOWN = 60.0


def s_etcd_one(ctx: Ctx, rep: int) -> Outcome:
    names = members(ctx)
    return Outcome(etcd_down(ctx, [names[rep % len(names)]], ONE_MEMBER_DOWN))


def s_etcd_quorum(ctx: Ctx, rep: int) -> Outcome:
    names = members(ctx)
    keep = names[rep % len(names)]
    return Outcome(etcd_down(ctx, [n for n in names if n != keep], QUORUM_LOST))


def s_etcd_all(ctx: Ctx, rep: int) -> Outcome:
    return Outcome(etcd_down(ctx, None, ALL_DOWN))


# scenario 4 ------------------------------------------------------------------------


def cut_host(ctx: Ctx, rep: int) -> str:
    """The host to cut off: not the leader; the one running the most units the engine
    can move (units moved off a host do not come back), the first such on a tie."""
    lead = leader(ctx)
    count = {h: 0 for h in ctx.host_names() if h != lead}
    for hosts in ctx.reg.placement().values():
        if len(hosts) == 1 and (h := next(iter(hosts))) in count:
            count[h] += 1
    return max(count, key=lambda h: count[h])


def partition(ctx: Ctx, host: str, seconds: float,
              during: Callable[[], None] | None = None) -> float:
    ctx.lab.partition(host)
    cut = time.monotonic()
    try:
        if during is not None:
            time.sleep(min(seconds / 4, 3))
            during()
        time.sleep(max(0.0, seconds - (time.monotonic() - cut)))
    finally:
        ctx.lab.heal(host)
    return time.time()


def long_cut(ctx: Ctx) -> float:
    return 2.0 * ctx.ttl


def short_cut(ctx: Ctx) -> float:
    return ctx.ttl / 2


def s_partition_long(ctx: Ctx, rep: int) -> Outcome:
    host = cut_host(ctx, rep)
    return Outcome(partition(ctx, host, long_cut(ctx)), frozenset({host}))


def s_partition_short(ctx: Ctx, rep: int) -> Outcome:
    return Outcome(partition(ctx, cut_host(ctx, rep), short_cut(ctx)))


# scenario 5 ------------------------------------------------------------------------


def start_late(ctx: Ctx, via: str, label: str) -> None:
    """``fleetctl start`` (blocking, the user's way) of the five late units through ``via``."""
    started = time.monotonic()
    done = ctx.fleetctl("start", *ctx.late, via=via)
    took = time.monotonic() - started
    ctx.notes.append(f"{label}: `fleetctl start` of {len(ctx.late)} units through {via}'s API "
                     f"exited {done.returncode} after {took:.1f} s"
                     + ("" if done.returncode == 0 else
                        f": {(done.stderr or done.stdout).strip()[-200:]}"))


def s_start_partition(ctx: Ctx, rep: int) -> Outcome:
    host = cut_host(ctx, rep)
    via = other_than(ctx, host)
    end = partition(ctx, host, long_cut(ctx),
                    during=lambda: start_late(ctx, via, f"during a partition of {host}"))
    return Outcome(end, frozenset({host}), ctx.late)


def s_start_leader_kill(ctx: Ctx, rep: int) -> Outcome:
    host = leader(ctx)
    pid = fleetd_pid(ctx, host)
    in_host(ctx, host, "systemctl", "kill", "-s", "KILL", "fleet.service")
    start_late(ctx, other_than(ctx, host), f"right after the leader {host}'s fleetd was killed")
    return Outcome(wait_fleetd(ctx, host, pid), added=ctx.late)


SCENARIOS = (
    Scenario("control", 0, f"control: {CONTROL_UNIT} restarted with systemctl on its host",
             "`systemctl restart` of the unit -> it returned (the figure must be 1)",
             s_control, control=1),
    Scenario("kill9", 1, "fleetd kill -9 (systemd restarts it)",
             "`systemctl kill -s KILL fleet.service` -> fleet.service active with a new PID",
             s_kill9, per_host=True),
    Scenario("restart", 1, "graceful `systemctl restart fleet.service`",
             "`systemctl restart fleet.service` -> active with a new PID", s_restart),
    Scenario("upgrade", 1, "fleetd upgraded while units run",
             "`pip install --force-reinstall -e .` of fleetpy into the hosts' venv, then on "
             "each host in turn a new fleet.service drop-in, daemon-reload, restart -> the "
             "last host's fleetd active", s_upgrade),
    Scenario("leader-kill", 2, "engine leader's fleetd kill -9",
             "SIGKILL of the leader's fleetd -> active again (systemd restart)", s_leader_kill),
    Scenario("leader-pause", 2, "leader's host paused > agent_ttl",
             "`Lab.pause(leader)` -> `Lab.resume` 1.5 x agent_ttl + 2 s later",
             s_leader_pause, needs=("pause", "resume")),
    Scenario("etcd-one", 3, "one etcd member stopped",
             f"`Lab.etcd_stop(member)` -> `etcd_start` {ONE_MEMBER_DOWN:.0f} s later",
             s_etcd_one, needs=("etcd_stop", "etcd_start")),
    Scenario("etcd-quorum", 3, "etcd quorum lost (2 of 3 members stopped)",
             f"`etcd_stop` of two members -> `etcd_start` {QUORUM_LOST:.0f} s later",
             s_etcd_quorum, needs=("etcd_stop", "etcd_start")),
    Scenario("etcd-all", 3, "all etcd members stopped",
             f"`etcd_stop(None)` -> `etcd_start(None)` {ALL_DOWN:.0f} s later",
             s_etcd_all, needs=("etcd_stop", "etcd_start")),
    Scenario("partition-long", 4, "a host partitioned > agent_ttl (2 x agent_ttl)",
             "`Lab.partition(host)` (not the leader) -> `Lab.heal` 2 x agent_ttl later",
             s_partition_long, needs=("partition", "heal")),
    Scenario("partition-short", 4, "a host partitioned < agent_ttl (agent_ttl / 2)",
             "`Lab.partition(host)` -> `Lab.heal` agent_ttl / 2 later",
             s_partition_short, needs=("partition", "heal")),
    Scenario("start-partition", 5, "5 units started during a long partition",
             "`Lab.partition(host)` -> `heal` 2 x agent_ttl later; `fleetctl start` of 5 "
             "units through another host's API a few s after the cut", s_start_partition,
             needs=("partition", "heal")),
    Scenario("start-leader-kill", 5, "5 units started right after the leader's fleetd kill -9",
             "SIGKILL of the leader's fleetd -> active again; `fleetctl start` of 5 units "
             "through another host's API right after the kill", s_start_leader_kill),
)
QUICK = ("control", "kill9", "partition-short")
QUICK_FALLBACK = "restart"  # when the lab cannot partition
