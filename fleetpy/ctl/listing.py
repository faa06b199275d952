"""The list commands' work: list-units, list-unit-files, list-machines (no click).

Row builders are pure (data in, field -> value out); the commands fetch, then
hand the rows to the one renderer (fleetpy.ctl.render). fleetpy.ctl.lists makes
them click commands; fleetpy.ctl.quick runs them without click.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING

from fleetpy.ctl.common import CtlEnv, CtlError, err, out, run_with_client
from fleetpy.ctl.render import parse_fields, render, render_rows, write

if TYPE_CHECKING:
    from fleetpy.api.snapshot import Snapshot
    from fleetpy.ctl.client import FleetClient
    from fleetpy.model.cordon import Cordon
    from fleetpy.model.types import Machine, UnitState
    from fleetpy.registry.unreadable import Unreadable

Row = dict[str, str | None]

UNITS_FIELDS = ("unit", "machine", "load", "active", "sub", "hash")
UNITS_DEFAULT = "unit,machine,active,sub"
UNIT_FILES_FIELDS = ("unit", "hash", "dstate", "state", "target", "global", "desc", "reason")
UNIT_FILES_DEFAULT = "unit,hash,dstate,state,target"
MACHINES_FIELDS = ("machine", "ip", "metadata", "state")
MACHINES_DEFAULT = "machine,ip,metadata"
PAGE = 1000  # rows per page read (etcd range limit; API message)


# One list-units row while the pages arrive: (unit, machine id, load, active, sub, hash).
StateRow = tuple[str, str, str, str, str, str]


def state_row(s: UnitState, share: dict[str, str], with_hash: bool = True) -> StateRow:
    """A state as plain strings; the few distinct machine IDs and load/active/sub values
    are shared, the hash is kept only when shown."""
    return (s.name, share.setdefault(s.machine_id, s.machine_id),
            share.setdefault(s.load_state, s.load_state),
            share.setdefault(s.active_state, s.active_state),
            share.setdefault(s.sub_state, s.sub_state), s.hash if with_hash else "")


def state_cells(
    rows: Iterable[StateRow], machines: Mapping[str, Machine], full: bool
) -> Iterator[Row]:
    """list-units rows, by unit then machine ID, from compact rows."""
    from fleetpy.ctl.legend import machine_legend

    legends: dict[str, str] = {}  # machine id -> its legend, made once
    for name, machine_id, load, active, sub, hsh in sorted(rows, key=lambda r: (r[0], r[1])):
        legend = legends.get(machine_id)
        if legend is None and machine_id:
            legend = legends[machine_id] = machine_legend(machine_id, machines, full)
        yield {"unit": name, "machine": legend, "load": load, "active": active, "sub": sub,
               "hash": hsh if full else hsh[:7]}


def unit_state_rows(
    states: Iterable[UnitState], machines: Mapping[str, Machine], full: bool
) -> list[Row]:
    share: dict[str, str] = {}
    return list(state_cells((state_row(s, share) for s in states), machines, full))


def unit_file_rows(
    snap: Snapshot, full: bool, fields: Iterable[str] = UNIT_FILES_FIELDS
) -> list[Row]:
    from fleetpy.ctl.state import description, machine_legend, views

    want_desc = "desc" in fields
    rows: list[Row] = []
    seen = views(snap, snap.units)
    for name in sorted(snap.units):
        v = seen[name]
        assert v.record is not None
        unit = v.record.unit
        target = None
        if v.is_global:
            target = "global"
        elif v.machine is not None:
            target = machine_legend(v.machine, snap.machines, full)
        # Desired loaded or launched but on no machine: the engine says why (reason);
        # on its machine, fleet's last failed operation there (e.g. a refused stop);
        # a global unit also says why machines skip it (they have the unit outside fleet).
        waiting = v.waiting if not v.targets else None
        error = v.state.error if v.state is not None and v.state.error else None
        reason = v.waiting if not v.targets or v.is_global else None
        rows.append({
            "unit": name,
            "hash": unit.hash if full else unit.hash[:7],
            "dstate": str(v.record.desired),
            "state": "waiting" if waiting else None if v.is_global else v.shown,
            "target": target,
            "global": "true" if v.is_global else "false",
            "desc": description(unit.contents) if want_desc else None,
            "reason": reason or error,
        })
    return rows


def unreadable_report(entries: Sequence[Unreadable], output: str) -> str:
    """What list-unit-files says on stderr about registry entries fleet skips."""
    if output == "json":
        import json

        data = [{"key": e.key, "problem": e.problem, "revision": e.revision} for e in entries]
        return json.dumps({"unreadable": data}, indent=2)
    noun = "entry" if len(entries) == 1 else "entries"
    lines = [f"Skipped {len(entries)} unreadable registry {noun}:"]
    lines += [f"  {e.shown_key}: {e.problem}" for e in entries]
    return "\n".join(lines)


def known_machines(machines: Sequence[Machine], cordons: Mapping[str, Cordon]) -> list[Machine]:
    """Live machines, and cordoned ones whose lease is gone (their cordon stays)."""
    from fleetpy.model.types import Machine

    live = {m.id for m in machines}
    return [*machines, *(Machine(mid, "") for mid in sorted(cordons) if mid not in live)]


def machine_rows(
    machines: Iterable[Machine], full: bool, cordons: Mapping[str, Cordon] | None = None
) -> list[Row]:
    """One row per machine; STATE ready, cordoned or draining (fleetpy.model.cordon).
    A cordoned machine whose lease is gone is listed too (IP -): its cordon stays."""
    from fleetpy.ctl.legend import format_metadata, machine_id_legend

    cordons = cordons or {}
    return [
        {
            "machine": machine_id_legend(m.id, full),
            "ip": m.public_ip or None,
            "metadata": format_metadata(m.metadata) or None,
            "state": cordons[m.id].state.value if m.id in cordons else "ready",
        }
        for m in sorted(known_machines(list(machines), cordons), key=lambda m: m.id)
    ]


def _fields(spec: str, valid: tuple[str, ...]) -> list[str]:
    try:
        return parse_fields(spec, valid)
    except ValueError as e:
        raise CtlError(str(e), prefix=False) from None


def list_units(env: CtlEnv, full: bool, no_legend: bool, fields: str, output: str) -> None:
    """``fleetctl list-units`` (its help: fleetpy.ctl.lists)."""
    cols = _fields(fields, UNITS_FIELDS)

    async def action(client: FleetClient) -> int:
        import asyncio

        machines: dict[str, Machine] = {}
        rows: list[StateRow] = []

        async def read_machines() -> None:
            async with aclosing(client.machine_pages(PAGE)) as pages:
                async for page in pages:
                    machines.update((m.id, m) for m in page)

        async def read_states() -> None:
            share: dict[str, str] = {}
            async with aclosing(client.unit_state_pages(None, PAGE)) as pages:
                async for page in pages:
                    rows.extend(state_row(s, share, "hash" in cols) for s in page)

        await asyncio.gather(read_states(), *([read_machines()] if "machine" in cols else []))
        cells = state_cells(rows, machines, full or output == "json")
        write(render_rows(cols, cells, output=output, legend=not no_legend))
        return 0

    run_with_client(env, action)


def list_unit_files(env: CtlEnv, full: bool, no_legend: bool, fields: str, output: str) -> None:
    """``fleetctl list-unit-files`` (its help: fleetpy.ctl.lists)."""
    cols = _fields(fields, UNIT_FILES_FIELDS)

    async def action(client: FleetClient) -> int:
        import asyncio

        from fleetpy.api.snapshot import read_snapshot

        snap, unreadable = await asyncio.gather(read_snapshot(client), client.list_unreadable())
        rows = unit_file_rows(snap, full or output == "json", cols)
        out(render(cols, rows, output=output, legend=not no_legend), nl=False)
        if unreadable:
            err(unreadable_report(unreadable, output))
        return 0

    run_with_client(env, action)


def list_machines(env: CtlEnv, full: bool, no_legend: bool, fields: str, output: str) -> None:
    """``fleetctl list-machines`` (its help: fleetpy.ctl.lists)."""
    cols = _fields(fields, MACHINES_FIELDS)

    async def action(client: FleetClient) -> int:
        import asyncio

        async def pages() -> list[Machine]:
            found: list[Machine] = []
            async with aclosing(client.machine_pages(PAGE)) as stream:
                async for page in stream:
                    found.extend(page)
            return found

        found, cordons = await asyncio.gather(pages(), client.list_cordons())
        if fields == MACHINES_DEFAULT and (cordons or output == "json"):
            cols.append("state")
        write(render_rows(cols, machine_rows(found, full or output == "json", cordons),
                          output=output, legend=not no_legend))
        return 0

    run_with_client(env, action)
