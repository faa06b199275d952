"""fleetd's read-only web dashboard (config ``dashboard_address``, off by default).

- :mod:`.model`: registry snapshot -> the page's JSON (pure).
- :mod:`.feed`: one registry watch keeping the snapshot; views and patches, paced.
- :mod:`.patch`: the rows that changed between two views (pure).
- :mod:`.server`: the page, server-sent events, a unit's journal over HTTP/1.1.
- :mod:`.remote`: the journal of a unit on another machine, from its dashboard.
- ``static/``: the page itself (HTML, JS, CSS; shipped in the package, no CDN).
"""

from __future__ import annotations

import asyncio
import contextlib

from fleetpy.api.transport import TlsFiles
from fleetpy.dashboard.feed import Feed
from fleetpy.dashboard.server import Dashboard, start_dashboard
from fleetpy.registry.base import Registry


class DashboardService:
    """The feed's task and the listener, started and stopped together."""

    def __init__(self, feed: Feed, task: asyncio.Task[None], server: asyncio.Server,
                 dashboard: Dashboard) -> None:
        self.feed, self._task, self.server, self._dashboard = feed, task, server, dashboard

    @classmethod
    async def start(cls, registry: Registry, machine_id: str, address: str,
                    tls: TlsFiles | None) -> DashboardService:
        feed = Feed(registry, machine_id)
        task = asyncio.create_task(feed.run(), name="dashboard-feed")
        try:
            server, dashboard = await start_dashboard(feed, address, tls)
        except BaseException:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        return cls(feed, task, server, dashboard)

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        self.server.close()
        await self._dashboard.close_connections()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
