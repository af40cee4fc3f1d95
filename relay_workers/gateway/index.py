"""The fleet index: every deployed server's name, family, owner and status, for the dashboard's paging,
filters and counts (overview.py), without reading 100,000 servers at every request.

`Catalog` builds an `Index` with a Lua script that walks the `servers` set with SSCAN, CHUNK members a
call, and returns each member's owner, failed mark, version and lease as one string: a few milliseconds
of the store's time a call, the fleet's other clients served between calls, and one string to split
instead of a reply per server (redis-py's parser is what costs: 100,000 HMGETs take it seconds).
An index is kept until it is older than MIN_AGE seconds or four times its build time, whichever is more
(100,000 servers: about a second to build, so at most a few seconds old); a small fleet's index is
rebuilt in the request that finds it stale, a large one's in the background while the old one serves.
What a page shows of each of its servers is read afresh (fleet.ask_records): only membership, order and
counts come from the index.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..ledger import key
from ..registry import node_of
from .fleet import Fleet, beating, status_of

log = logging.getLogger("relay.gateway")

CHUNK = 500  # members of the servers set a script call reads
MIN_AGE = 1.0  # seconds an index is kept at least
INLINE = 0.05  # an index that took less to build is rebuilt in the request that finds it stale
SEP = "\0"  # between fields (a server's name never holds NUL)
FIELDS = 5  # name, owner, failed mark, version, lease

SCAN = """
local got = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {}
for i, name in ipairs(got[2]) do
  local v = redis.call('HMGET', KEYS[2] .. name, 'owner', 'status', 'version')
  out[i] = table.concat({name, v[1] or '', v[2] or '', v[3] or '', redis.call('GET', KEYS[3] .. name) or ''}, ARGV[3])
end
return {got[1], table.concat(out, ARGV[3])}
"""


def family_of(name: str) -> str:
    """A server's family: `account` for `account[ada]`; a plain name is a family of one (itself)."""
    cut = name.find("[")
    return name[:cut] if cut > 0 and name.endswith("]") else name


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    family: str
    host: str  # the owner's host id, "" when none
    holder: str  # the lease's holder, "" when none
    status: str  # relay_workers.registry.Status


@dataclass
class Index:
    entries: list[Entry]  # by name
    names: list[str]  # the same order, for bisect
    built: float  # time.monotonic() when it was read
    took: float  # seconds it took to read
    by_status: Counter[str] = field(default_factory=Counter)
    by_host: Counter[str] = field(default_factory=Counter)  # servers placed on a host
    leases: Counter[str] = field(default_factory=Counter)  # leases a host holds
    families: list[tuple[str, int]] = field(default_factory=list)  # most servers first, then by name

    @classmethod
    def of(cls, entries: list[Entry], built: float, took: float) -> Index:
        entries.sort(key=lambda e: e.name)
        index = cls(entries, [e.name for e in entries], built, took)
        index.by_status.update(e.status for e in entries)
        index.by_host.update(e.host for e in entries if e.host)
        index.leases.update(e.holder for e in entries if e.holder)
        sizes = Counter(e.family for e in entries)
        index.families = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
        return index

    def age(self) -> float:
        return time.monotonic() - self.built

    def select(self, prefix: str = "", family: str | None = None, owner: str | None = None) -> Iterator[Entry]:
        """The entries whose name starts with `prefix`, of `family`, owned by `owner` (a node name or a host
        id), in name order: a prefix (a family is one too) is found by bisection."""
        start = max(prefix, family or "", key=len)
        for i in range(bisect.bisect_left(self.names, start), len(self.entries)):
            e = self.entries[i]
            if not e.name.startswith(start):
                return
            if (family is None or e.family == family) and e.name.startswith(prefix) and \
                    (owner is None or e.host == owner or (e.host and node_of(e.host) == owner)):
                yield e


def parse(text: str, live: set[str]) -> list[Entry]:
    """The entries of one script call's string (servers no longer deployed left out)."""
    values = text.split(SEP) if text else []
    entries = []
    for i in range(0, len(values) - FIELDS + 1, FIELDS):
        name, owner, failed, version, lease = values[i:i + FIELDS]
        if version:
            holder = lease.rsplit(" ", 1)[0] if lease else ""
            status = status_of(name, owner, holder, live, failed=failed == "failed")
            entries.append(Entry(name, family_of(name), owner, holder, status))
    return entries


class Catalog:
    """The gateway's index of the fleet (one per gateway process), rebuilt as it ages."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.script = fleet.store.register_script(SCAN)
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
        started = time.monotonic()
        async with self.fleet.store.pipeline(transaction=False) as pipe:
            pipe.hgetall(key("hosts"))
            pipe.time()
            beats, now = await pipe.execute()
        live = set(beating(beats, now, self.fleet.client.registry.host_ttl))
        found: dict[str, Entry] = {}  # SSCAN may return a member twice
        cursor: bytes | int = 0
        while True:
            cursor, text = await self.script(keys=[key("servers"), key("server", ""), key("lease", "")],
                                             args=[cursor, CHUNK, SEP])
            found.update((e.name, e) for e in parse(text.decode(), live))
            if int(cursor) == 0:
                break
        return Index.of(list(found.values()), started, time.monotonic() - started)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
