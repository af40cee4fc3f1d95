"""The gateway's fleet catalog (relay_workers.catalog), kept for the dashboard's paging, filters and
counts (overview.py) without reading 100,000 servers at every request.

An index is kept until it is older than MIN_AGE seconds or four times its build time, whichever is more
(100,000 servers, most of them inactive: about 0.2 s to build, so at most a few seconds old); a small fleet's index is
rebuilt in the request that finds it stale, a large one's in the background while the old one serves.
"""

from __future__ import annotations

import asyncio
import logging

from .. import catalog
from ..catalog import Index
from .fleet import Fleet, ask_beats, beating

log = logging.getLogger("relay.gateway")

MIN_AGE = 1.0  # seconds an index is kept at least
INLINE = 0.05  # an index that took less to build is rebuilt in the request that finds it stale


class Catalog:
    """The gateway's index of the fleet (one per gateway process), rebuilt as it ages."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.index: Index | None = None
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def current(self) -> Index:
        index = self.index
        if index is None:
            await self.refresh(None)
        elif index.age() > max(MIN_AGE, 4 * index.took):
            if index.took < INLINE:
                await self.refresh(index)
            elif self.task is None or self.task.done():
                self.task = asyncio.create_task(self.background(index))
        assert self.index is not None
        return self.index

    async def refresh(self, seen: Index | None) -> None:
        """Builds a new index unless another request replaced `seen` meanwhile (one build at a time)."""
        async with self.lock:
            if self.index is seen:
                self.index = await self.build()

    async def background(self, seen: Index) -> None:
        try:
            await self.refresh(seen)
        except Exception as exc:  # noqa: BLE001 - the old index serves; the next request tries again
            log.warning("relay gateway: could not rebuild the fleet index (%s)", exc)

    async def build(self) -> Index:
        async with self.fleet.store.pipeline(transaction=False) as pipe:
            ask_beats(pipe)
            beats, now = await pipe.execute()
        live = set(beating(beats, now, self.fleet.client.registry.host_ttl))
        return await self.fleet.blocking(catalog.read, self.fleet.client.registry.r, live)  # on the gateway's pool

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
