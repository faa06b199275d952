"""fleet's v1 HTTP API (JSON over HTTP/1.1), beside fleetpy's gRPC API.

- :mod:`.options`: unit options (section/name/value) <-> unit file text, the
  way fleet serialises them, so a unit has one hash whichever API made it;
- :mod:`.pages`: fleet's page tokens and pagination;
- :mod:`.resources`: the resources (``/fleet/v1/units``, ``state``,
  ``machines``, ``discovery.json``) over the registry, as fleet's api/ does;
- :mod:`.http11`: a small HTTP/1.1 server over asyncio streams;
- :mod:`.front`: the listeners: each connection is told HTTP/2 (gRPC, piped
  to the gRPC server on a private socket) from HTTP/1.x (served here) by its
  first bytes, so one address (``unix:///var/run/fleet.sock``, ``api_tcp``)
  serves both APIs.
"""
