"""The fleet's catalog: every server's name, family, owner and status, for views that page, filter and
count (`relay servers`, RelayClient.servers_page, the gateway's /v1/fleet pages) at 100,000 servers.

The catalog is read from the registry's indexes, not from each server's record: the deployed servers
(`servers`), each family's servers (`instances:FAM`), the servers that have an owner (`placed`, server ->
host id: the active ones and those whose owner died), the failed ones (`failed`), and the leases of the
placed servers. Every other server is inactive. So the store answers a few commands whose replies grow
with the servers (the sets: one bulk string per server) and reads a key per *active* server only; what
costs is building the entries (100,000 servers, 10,000 of them active: about 0.2 s in all). Only
membership, order and counts come from the catalog: what a page shows of its rows is read afresh.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple, cast

import redis

from .ledger import Lease, deployment_of, key, text
from .registry import Status, node_of, status_of

LEASES_A_CALL = 10_000  # lease keys one MGET reads
INACTIVE = str(Status.INACTIVE)


def family_of(name: str) -> str:
    """A server's family: `account` for `account[ada]` and `account[]`; a plain name is a family of one."""
    cut = name.find("[")
    return name[:cut] if cut > 0 and name.endswith("]") else name


def of_family(name: str, family: str) -> bool:
    """family_of(name) == family, without splitting a name that does not start with the family."""
    if not name.startswith(family):
        return False
    if len(name) == len(family):
        return family_of(name) == family  # `account`, not `a[b]` of family `a`
    return name[len(family)] == "[" and name[-1] == "]" and "[" not in family


class Entry(NamedTuple):
    name: str
    family: str
    host: str  # the owner's host id, "" when none
    holder: str  # the lease's holder, "" when none
    status: str  # relay_workers.registry.Status


class Page(NamedTuple):
    names: list[str]  # the page's servers, in name order
    matched: int  # servers that match every filter
    by_status: Counter[str]  # the servers that match the filters but the status, by status


@dataclass
class Index:
    names: list[str]  # every server's name (a family as `account[]`), in order
    special: dict[str, Entry]  # the servers that are not plainly inactive: placed, failed, and families' rows
    built: float  # time.monotonic() when it was read
    took: float  # seconds it took to read
    special_names: list[str] = field(default_factory=list)  # the keys of `special`, in order
    by_status: Counter[str] = field(default_factory=Counter)
    by_host: Counter[str] = field(default_factory=Counter)  # servers placed on a host
    leases: Counter[str] = field(default_factory=Counter)  # leases a host holds
    families: list[tuple[str, int]] = field(default_factory=list)  # most servers first, then by name

    @classmethod
    def of(cls, names: list[str], special: list[Entry], sizes: Counter[str], built: float, took: float) -> Index:
        """The index of these servers (`names` in order), the entries of those not plainly inactive, and the
        servers of each family (a plain server is a family of one)."""
        index = cls(names, {e.name: e for e in special}, built, took, sorted(e.name for e in special))
        index.by_status.update(e.status for e in special)
        if len(names) > len(special):
            index.by_status[INACTIVE] += len(names) - len(special)
        index.by_host.update(e.host for e in special if e.host)
        index.leases.update(e.holder for e in special if e.holder)
        index.families = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
        return index

    def age(self) -> float:
        return time.monotonic() - self.built

    def status(self, name: str) -> str:
        entry = self.special.get(name)
        return entry.status if entry else INACTIVE

    def select(self, prefix: str = "", family: str | None = None, owner: str | None = None) -> Iterator[str]:
        """The servers whose name starts with `prefix`, of `family`, owned by `owner` (a node name or a host
        id), in name order: a prefix (a family is one too) is found by bisection, and only servers with an
        owner are looked at for `owner`."""
        start = max(prefix, family or "", key=len)
        names = self.names if owner is None else self.special_names
        for i in range(bisect.bisect_left(names, start), len(names)):
            name = names[i]
            if not name.startswith(start):
                return
            if not name.startswith(prefix) or (family is not None and not of_family(name, family)):
                continue
            if owner is not None:
                host = self.special[name].host
                if not host or (host != owner and node_of(host) != owner):
                    continue
            yield name

    def page(self, prefix: str = "", family: str | None = None, owner: str | None = None,
             status: str | None = None, limit: int = 50, offset: int = 0) -> Page:
        """One page of the servers that match the filters, with how many match and the matches by status
        whatever `status`: without filters from the counts kept, else in one walk over the names that match."""
        if not (prefix or family or owner):
            if status is None:
                return Page(self.names[offset:offset + limit], len(self.names), self.by_status)
            walked = self.names if status == INACTIVE else self.special_names
            chosen = (n for n in walked if self.status(n) == status)
            return Page(list(islice(chosen, offset, offset + limit)), self.by_status.get(status, 0), self.by_status)
        by_status: Counter[str] = Counter()
        names: list[str] = []
        matched = 0
        for name in self.select(prefix, family, owner):
            got = self.status(name)
            by_status[got] += 1
            if status is None or got == status:
                if offset <= matched < offset + limit:
                    names.append(name)
                matched += 1
        return Page(names, matched, by_status)


def special_entries(names: list[str], placed: dict[str, str], holders: dict[str, str], failed: set[str],
                    live: set[str]) -> list[Entry]:
    """The entries of the servers that are not plainly inactive among these (families' rows, the servers
    with an owner, the failed ones), from the servers' owners (`placed`: server -> host id), the hosts
    holding their leases, the failed servers and the live hosts."""
    statuses: dict[tuple[str, str, bool, bool], str] = {}  # a few owners and holders, many servers
    out = []
    for name in names:
        owner = placed.get(name, "")
        holder = holders.get(name, "")
        group = (owner, holder, name in failed, name.endswith("[]"))
        status = statuses.get(group)
        if status is None:
            status = statuses[group] = str(status_of(name, owner, holder, live, failed=group[2]))
        out.append(Entry(name, family_of(name), owner, holder, status))
    return out


def read(r: redis.Redis, live: set[str]) -> Index:
    """The catalog now, read with the store's client `r` (the gateway calls it on its thread pool)."""
    started = time.monotonic()
    deployed = [text(n) for n in cast(set[bytes], r.smembers(key("servers")))]
    families = [deployment_of(n) for n in deployed if n.endswith("[]")]
    with r.pipeline(transaction=False) as pipe:
        pipe.hgetall(key("placed"))
        pipe.smembers(key("failed"))
        for family in families:
            pipe.smembers(key("instances", family))
        placed_raw, failed_raw, *members = pipe.execute()
    placed = {n.decode(): h.decode() for n, h in placed_raw.items()}
    failed = {n.decode() for n in failed_raw}
    sizes = Counter(family_of(n) for n in deployed if not n.endswith("[]"))
    names = list(deployed)
    for family, found in zip(families, members):
        names += (n.decode() for n in found)
        sizes[family] += len(found)
    names.sort()
    known = set(names)  # an index's entry for a name that is no server (a family's own record) is left out
    special = [*(n for n in deployed if n.endswith("[]")), *(n for n in placed if n in known),
               *(n for n in failed - placed.keys() if n in known)]
    entries = special_entries(special, placed, lease_holders(r, list(placed)), failed, live)
    return Index.of(names, entries, sizes, started, time.monotonic() - started)


def lease_holders(r: redis.Redis, names: list[str]) -> dict[str, str]:
    """The host holding each of these servers' leases (those with none left out)."""
    with r.pipeline(transaction=False) as pipe:
        for at in range(0, len(names), LEASES_A_CALL):
            pipe.mget([key("lease", n) for n in names[at:at + LEASES_A_CALL]])
        leases = [lease for got in pipe.execute() for lease in got]
    return {n: holder for n, lease in zip(names, leases) if lease and (holder := Lease.holder_of(lease))}
