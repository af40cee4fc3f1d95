"""The fleet's catalog: every server's name, family, owner and status, for views that page, filter and
count (`relay servers`, RelayClient.servers_page, the gateway's /v1/fleet pages) at 100,000 servers.

The catalog is read with a Lua script (SCAN) that walks one set with SSCAN, CHUNK members a call, and
returns each member's owner, failed mark, version and lease as one string: a few milliseconds of the
store's time a call, the fleet's other clients served between calls, and one string to split instead of
a reply per server (redis-py's parser is what costs: 100,000 HMGETs take it seconds). It walks the
deployed servers (`servers`), then each family's servers (`instances:FAM`). Only membership, order and
counts come from the catalog: what a page shows of its rows is read afresh.
"""

from __future__ import annotations

import bisect
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import redis

from .ledger import Lease, deployment_of, key, text
from .registry import node_of, status_of

CHUNK = 500  # members of a set one script call reads
SEP = "\0"  # between fields (a server's name never holds NUL)
FIELDS = 5  # name, owner, failed mark, version, lease

# KEYS: the set, the `server:` and `lease:` prefixes; ARGV: cursor, chunk, separator, and "1" when the
# set is a family's (its servers' records hold no version: the family's deployment is theirs). A family
# deployed (`account[]` in `servers`) is read from its deployment's record (`server:account`).
SCAN = """
local got = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {}
for i, name in ipairs(got[2]) do
  local record = name
  if string.sub(name, -2) == '[]' then record = string.sub(name, 1, -3) end  -- a family: its deployment's
  local v = redis.call('HMGET', KEYS[2] .. record, 'owner', 'status', 'version')
  local version = v[3] or (ARGV[4] == '1' and '1') or ''
  local lease = ''
  if v[1] and v[1] ~= '' then lease = redis.call('GET', KEYS[3] .. name) or '' end  -- no owner, no lease to read
  out[i] = table.concat({name, v[1] or '', v[2] or '', version, lease}, ARGV[3])
end
return {got[1], table.concat(out, ARGV[3])}
"""


def family_of(name: str) -> str:
    """A server's family: `account` for `account[ada]` and `account[]`; a plain name is a family of one."""
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
        sizes = Counter(e.family for e in entries if not e.name.endswith("[]"))
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
    statuses: dict[tuple[str, str, str, bool], str] = {}  # a few owners and holders, many servers
    entries = []
    for i in range(0, len(values) - FIELDS + 1, FIELDS):
        name, owner, failed, version, lease = values[i:i + FIELDS]
        if version:
            holder = Lease.holder_of(lease)
            group = (owner, holder, failed, name.endswith("[]"))
            status = statuses.get(group)
            if status is None:
                status = statuses[group] = str(status_of(name, owner, holder, live, failed=failed == "failed"))
            entries.append(Entry(name, family_of(name), owner, holder, status))
    return entries


def scan_keys(family: str | None) -> tuple[list[str], str]:
    """The SCAN script's keys, and its family flag, for the deployed servers (None) or a family's."""
    walked = key("servers") if family is None else key("instances", family)
    return [walked, key("server", ""), key("lease", "")], "" if family is None else "1"


def families_in(entries: list[Entry]) -> list[str]:
    """The families deployed among these entries (`account` for `account[]`)."""
    return [deployment_of(e.name) for e in entries if e.name.endswith("[]")]


def read(r: redis.Redis, live: set[str]) -> Index:
    """The catalog now, read with the store's client `r` (the gateway calls it on its thread pool). A
    thread reads each family's chunks while this one parses the last: the store's time and the parsing
    overlap (100,000 servers: about 0.5 s of each)."""
    started = time.monotonic()
    script = r.register_script(SCAN)
    found: dict[str, Entry] = {}  # SSCAN may return a member twice

    def chunks(family: str | None) -> Iterator[str]:
        keys, flag = scan_keys(family)
        cursor: bytes | int = 0
        while True:
            cursor, chunk = script(keys=keys, args=[cursor, CHUNK, SEP, flag])
            yield text(chunk)
            if int(cursor) == 0:
                return

    for chunk in chunks(None):
        found.update((e.name, e) for e in parse(chunk, live))
    for family in families_in(list(found.values())):
        for chunk in prefetched(chunks(family)):
            found.update((e.name, e) for e in parse(chunk, live))
    return Index.of(list(found.values()), started, time.monotonic() - started)


def prefetched(items: Iterator[str], ahead: int = 8) -> Iterator[str]:
    """The items of `items`, produced by a thread of their own up to `ahead` in advance."""
    done = object()
    ready: queue.Queue[object] = queue.Queue(ahead)

    def produce() -> None:
        try:
            for item in items:
                ready.put(item)
            ready.put(done)
        except BaseException as exc:  # noqa: BLE001 - raised in the consuming thread
            ready.put(exc)

    threading.Thread(target=produce, name="relay-catalog", daemon=True).start()
    while (item := ready.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield cast(str, item)
