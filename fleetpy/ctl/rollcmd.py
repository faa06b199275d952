"""fleetctl rolling-update: the command and its flags (the work is in fleetpy.ctl.rollrun)."""

from __future__ import annotations

from typing import Any

import click

from fleetpy.ctl.common import CtlEnv, pass_env, run_with_client


class Duration(click.ParamType):  # type: ignore[type-arg]
    """'30s', '500ms', '2m' or plain seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        from fleetpy.config import ConfigError, parse_duration

        try:
            seconds = parse_duration(param.name if param and param.name else "duration",
                                     str(value))
        except ConfigError as e:
            self.fail(str(e), param, ctx)
        return seconds


@click.command("rolling-update",
               short_help="Replace a template and its launched instances, a few at a time")
@click.option("--max-parallel", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="N", help="Instances updated at the same time.")
@click.option("--min-healthy-time", type=Duration(), default="10s", show_default=True,
              help="How long an instance must stay active with the new version to count "
                   "as healthy.")
@click.option("--healthy-deadline", type=Duration(), default="5m", show_default=True,
              help="An instance not healthy this long after its update stops the update.")
@click.option("--auto-revert", is_flag=True,
              help="When the update stops, put the template and the instances already "
                   "updated back to their previous contents.")
@click.argument("template_file", metavar="TEMPLATE_FILE")
@pass_env
def rolling_update(env: CtlEnv, template_file: str, max_parallel: int,
                   min_healthy_time: float, healthy_deadline: float,
                   auto_revert: bool) -> None:
    """Replace a template unit (such as web@.service) in the cluster, then each of its
    launched instances, N at a time.

    \b
    An instance keeps its machine (unless its constraints changed) and is
    healthy once its machine reports it active with the new contents for
    --min-healthy-time (a unit with ExecStartPost= is active once that
    finished). The next instances are updated only then. An instance not
    healthy by --healthy-deadline stops the update (exit 1, naming it, with
    its state and last error); with --auto-revert the template and the
    instances already updated, the failing one included, go back to their
    previous contents. Instances not desired launched get the new contents
    at the end. The result lists which instance runs which hash.
    """
    if min_healthy_time >= healthy_deadline:
        raise click.BadParameter(
            f"--healthy-deadline ({healthy_deadline:g}s) must be longer than "
            f"--min-healthy-time ({min_healthy_time:g}s)", param_hint="--healthy-deadline")
    from fleetpy.ctl.rollrun import Options
    from fleetpy.ctl.rollrun import rolling_update as run

    opts = Options(max_parallel, min_healthy_time, healthy_deadline, auto_revert)
    run_with_client(env, lambda client: run(client, template_file, opts))


COMMANDS: list[click.Command] = [rolling_update]
