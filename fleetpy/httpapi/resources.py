"""fleet's v1 resources over a Registry: the same registry calls the gRPC API makes.

Status codes and error bodies are fleet's (api/*.go): an error is
``{"error": {"code": <status>, "message": <text>}}``; 201 on create, 204 on a
change or delete, 404 for an unknown unit or path, 405 for a method a resource
does not take, 409 for a create without options (or a change without
desiredState), 400 for an invalid entity, name or page token, 415 for a body
that is not application/json, 500 when the registry fails.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetpy.api.validation import checked_unit_file
from fleetpy.httpapi.discovery import DOCUMENT_BYTES
from fleetpy.httpapi.options import (
    InvalidOptions,
    options_from_json,
    options_to_text,
    text_to_options,
)
from fleetpy.httpapi.pages import TOKEN_LIMIT, BadToken, decode_token, page_of
from fleetpy.model.names import validate_unit_name
from fleetpy.model.types import ScheduledUnit, TargetState, UnitState
from fleetpy.registry.base import Registry, RegistryError, UnitRecord

log = logging.getLogger(__name__)

PREFIXES = ("/fleet/v1", "/v1-alpha")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, Sequence[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


class HttpError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _json(status: int, entity: object) -> Response:
    return Response(status, json.dumps(entity, separators=(",", ":")).encode("utf-8"))


def error_response(status: int, message: str = "") -> Response:
    return _json(status, {"error": {"code": status, "message": message}})


def _page(field_name: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    page: dict[str, Any] = {}
    if items:
        page[field_name] = items
    if token:
        page["nextPageToken"] = token
    return page


def unit_entity(record: UnitRecord, scheduled: Sequence[ScheduledUnit]) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "name": record.unit.name,
        "options": [o.to_json() for o in text_to_options(record.unit.contents)],
        "desiredState": str(record.desired),
    }
    if scheduled:
        entity["currentState"] = str(scheduled[0].target)
        if len(scheduled) == 1:
            entity["machineID"] = scheduled[0].machine_id
    return entity


def state_entity(state: UnitState) -> dict[str, str]:
    entity = {"name": state.name, "hash": state.hash, "machineID": state.machine_id,
              "systemdLoadState": state.load_state, "systemdActiveState": state.active_state,
              "systemdSubState": state.sub_state}
    return {k: v for k, v in entity.items() if v}


class Resources:
    """Routes a request to fleet's resource and method; one instance per API server."""

    def __init__(self, registry: Registry, token_limit: int = TOKEN_LIMIT) -> None:
        self.registry = registry
        self.token_limit = token_limit

    async def handle(self, req: Request) -> Response:
        try:
            return await self._route(req)
        except HttpError as e:
            return error_response(e.status, e.message)
        except ValueError as e:  # a name the registry refuses
            return error_response(400, str(e))
        except RegistryError as e:
            log.warning("HTTP %s %s: registry failed: %s", req.method, req.path, e)
            return error_response(500, str(e) or type(e).__name__)

    async def _route(self, req: Request) -> Response:
        path = req.path
        for prefix in PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix):].strip("/")
                break
        else:
            raise HttpError(405 if path == "/" else 404)
        if rest == "discovery.json":
            if req.method != "GET":
                raise HttpError(400, "only HTTP GET supported against this resource")
            return Response(200, DOCUMENT_BYTES)
        if rest in ("units", "state", "machines"):
            if req.method != "GET":
                raise HttpError(405, "only GET supported against this resource")
            page = self._page_number(req)
            if rest == "units":
                return _json(200, await self._list_units(page))
            if rest == "state":
                return _json(200, await self._list_states(req, page))
            return _json(200, await self._list_machines(page))
        if rest.startswith("units/") and rest.count("/") == 1:
            name = rest[len("units/"):]
            if req.method == "GET":
                return await self._get_unit(name)
            if req.method == "DELETE":
                return await self._destroy_unit(name)
            if req.method == "PUT":
                return await self._set_unit(req, name)
            raise HttpError(405, "only GET, PUT and DELETE supported against this resource")
        if not rest:
            raise HttpError(405)
        raise HttpError(404)

    def _page_number(self, req: Request) -> int:
        values = req.query.get("nextPageToken", [])
        if len(values) > 1:
            raise HttpError(400, "too many values for page token")
        if not values:
            return 1
        try:
            return decode_token(values[0], self.token_limit)
        except BadToken as e:
            raise HttpError(400, str(e)) from None

    async def _schedule(self) -> dict[str, list[ScheduledUnit]]:
        by_name: dict[str, list[ScheduledUnit]] = {}
        for s in await self.registry.list_schedule():
            by_name.setdefault(s.name, []).append(s)
        return by_name

    async def _list_units(self, page: int) -> dict[str, Any]:
        records = sorted(await self.registry.list_units(), key=lambda r: r.unit.name)
        items, token = page_of(records, page, self.token_limit)
        schedule = await self._schedule() if items else {}
        return _page("units", [unit_entity(r, schedule.get(r.unit.name, [])) for r in items],
                     token)

    async def _list_states(self, req: Request, page: int) -> dict[str, Any]:
        machine = next(iter(req.query.get("machineID", [])), "")
        unit = next(iter(req.query.get("unitName", [])), "")
        states = await self.registry.list_unit_states(machine or None)
        chosen = sorted((s for s in states if not unit or s.name == unit),
                        key=lambda s: (s.name, s.machine_id))
        items, token = page_of(chosen, page, self.token_limit)
        return _page("states", [state_entity(s) for s in items], token)

    async def _list_machines(self, page: int) -> dict[str, Any]:
        machines = sorted(await self.registry.list_machines(), key=lambda m: m.id)
        items, token = page_of(machines, page, self.token_limit)
        return _page("machines", [{"id": m.id, "primaryIP": m.public_ip,
                                   "metadata": dict(m.metadata)} for m in items], token)

    async def _get_unit(self, name: str) -> Response:
        record = await self.registry.get_unit(name)
        if record is None:
            raise HttpError(404, "unit does not exist")
        scheduled = [s for s in await self.registry.list_schedule() if s.name == name]
        return _json(200, unit_entity(record, scheduled))

    async def _destroy_unit(self, name: str) -> Response:
        if not await self.registry.destroy_unit(name):
            raise HttpError(404, "unit does not exist")
        return Response(204)

    async def _set_unit(self, req: Request, name: str) -> Response:
        content_type = req.headers.get("content-type", "").split(";", 1)[0].strip()
        if content_type != "application/json":
            raise HttpError(415, "only acceptable Content-Type is application/json")
        entity = _decode_unit(req.body)
        body_name = entity.get("name") or name
        if body_name != name:
            raise HttpError(400, f"name in URL {name!r} differs from unit name in request "
                                 f"body {body_name!r}")
        try:
            validate_unit_name(name)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        desired = _desired(entity.get("desiredState"))
        options = entity.get("options") or []
        if await self.registry.get_unit(name) is None:
            if not options:
                raise HttpError(409, "unit does not exist and options field empty")
            if desired is None:
                raise HttpError(400, "must provide desiredState to create a unit")
            try:
                text = options_to_text(options_from_json(options))
                unit, _ = checked_unit_file(name, text)
            except (InvalidOptions, ValueError) as e:
                raise HttpError(400, str(e)) from None
            if not await self.registry.create_unit(unit, desired):
                raise HttpError(409, "unit already exists")
            log.info("HTTP API: created %s (%s), desired %s", name, unit.hash[:7], desired)
            return Response(201)
        if desired is None:
            raise HttpError(409, "must provide DesiredState to update existing unit")
        if not await self.registry.set_desired(name, desired):
            raise HttpError(404, "unit does not exist")
        return Response(204)


def _decode_unit(body: bytes) -> dict[str, Any]:
    try:
        entity = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise HttpError(400, f"unable to decode body: {e}") from None
    if not isinstance(entity, dict):
        raise HttpError(400, "unable to decode body: not a Unit object")
    if not isinstance(entity.get("name", ""), str) or not isinstance(
            entity.get("options") or [], list):
        raise HttpError(400, "unable to decode body: name must be a string, options a list")
    return entity


def _desired(value: object) -> TargetState | None:
    if value in (None, ""):
        return None
    try:
        return TargetState(str(value) if isinstance(value, str) else "")
    except ValueError:
        raise HttpError(400, f"invalid desiredState {value!r}: expected inactive, loaded "
                             "or launched") from None
