"""The discovery document of fleet's v1 API (Google API discovery format).

Built here from the entities and methods fleet's API documents; served at
``/fleet/v1/discovery.json`` with its ``rootUrl`` left as ``$ENDPOINT/``, as
fleet ships it (clients set the root themselves).
"""

from __future__ import annotations

import json
from typing import Any

_STATES = {"type": "string", "enum": ["inactive", "loaded", "launched"]}


def _strings(*names: str) -> dict[str, Any]:
    return {n: {"type": "string"} for n in names}


def _page(kind: str, field: str) -> dict[str, Any]:
    return {"id": f"{kind}Page", "type": "object", "properties": {
        field: {"type": "array", "items": {"$ref": kind}},
        "nextPageToken": {"type": "string"}}}


def _method(ident: str, http: str, path: str, doc: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"fleet.{ident}", "description": doc, "httpMethod": http, "path": path,
            **extra}


_TOKEN = {"nextPageToken": {"type": "string", "location": "query"}}
_NAME = {"parameters": {"unitName": {"type": "string", "location": "path", "required": True}},
         "parameterOrder": ["unitName"]}

DOCUMENT: dict[str, Any] = {
    "kind": "discovery#restDescription",
    "discoveryVersion": "v1",
    "id": "fleet:v1",
    "name": "schema",
    "version": "v1",
    "title": "fleet API",
    "description": "",
    "documentationLink": "http://github.com/coreos/fleet",
    "protocol": "rest",
    "icons": {"x16": "", "x32": ""},
    "labels": [],
    "baseUrl": "$ENDPOINT/fleet/v1/",
    "basePath": "/fleet/v1/",
    "rootUrl": "$ENDPOINT/",
    "servicePath": "fleet/v1/",
    "batchPath": "batch",
    "parameters": {},
    "auth": {},
    "schemas": {
        "Machine": {"id": "Machine", "type": "object", "properties": {
            **_strings("id", "primaryIP"),
            "metadata": {"type": "object", "properties": {},
                         "additionalProperties": {"type": "string"}}}},
        "MachinePage": _page("Machine", "machines"),
        "UnitOption": {"id": "UnitOption", "type": "object",
                       "properties": _strings("section", "name", "value")},
        "Unit": {"id": "Unit", "type": "object", "properties": {
            "name": {"type": "string"},
            "options": {"type": "array", "items": {"$ref": "UnitOption"}},
            "desiredState": _STATES, "currentState": _STATES,
            "machineID": {"type": "string", "required": True}}},
        "UnitPage": _page("Unit", "units"),
        "UnitState": {"id": "UnitState", "type": "object", "properties": _strings(
            "name", "hash", "machineID", "systemdLoadState", "systemdActiveState",
            "systemdSubState")},
        "UnitStatePage": _page("UnitState", "states"),
    },
    "resources": {
        "Machines": {"methods": {"List": _method(
            "Machine.List", "GET", "machines", "Retrieve a page of Machine objects.",
            parameters=_TOKEN, response={"$ref": "MachinePage"})}},
        "Units": {"methods": {
            "List": _method("Unit.List", "GET", "units", "Retrieve a page of Unit objects.",
                            parameters=_TOKEN, response={"$ref": "UnitPage"}),
            "Get": _method("Unit.Get", "GET", "units/{unitName}",
                           "Retrieve a single Unit object.", **_NAME,
                           response={"$ref": "Unit"}),
            "Delete": _method("Unit.Delete", "DELETE", "units/{unitName}",
                              "Delete the referenced Unit object.", **_NAME),
            "Set": _method("Unit.Set", "PUT", "units/{unitName}", "Create or update a Unit.",
                           **_NAME, request={"$ref": "Unit"}),
        }},
        "UnitState": {"methods": {"List": _method(
            "UnitState.List", "GET", "state", "Retrieve a page of UnitState objects.",
            parameters={**_TOKEN, **{n: {"type": "string", "location": "query"}
                                     for n in ("unitName", "machineID")}},
            response={"$ref": "UnitStatePage"})}},
    },
}

DOCUMENT_BYTES = json.dumps(DOCUMENT, indent=2).encode("utf-8")
