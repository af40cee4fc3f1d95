"""What the dashboard reads, a page at a time: servers (filtered by name prefix, family, status and owner),
families and their sizes, hosts, dead letters, the supervisor's events; and a dead letter's replay.

Membership, order and counts come from the fleet index (index.py); the rows of a page are read afresh in
one pipeline, so a page costs what its rows cost whatever the fleet's size.
"""

from __future__ import annotations

import json
from typing import cast

from relay_lang.errors import RelayError

from ..catalog import Index, family_of
from ..ledger import key, text
from ..registry import node_of
from .errors import not_found
from .fleet import Fleet, ask_beats, ask_records, beating, read_records, seconds
from .index import Catalog

TOP_FAMILIES = 10  # families in the overview (the rest: /v1/fleet/families)
Entries = list[tuple[bytes, dict[bytes, bytes]]]  # a stream's entries as the store's client answers them


async def rows(fleet: Fleet, names: list[str]) -> list[dict]:
    """The records of these servers, read now (one pipeline), with their family."""
    async with fleet.store.pipeline(transaction=False) as pipe:
        ask_beats(pipe)
        ask_records(pipe, names)
        values = await pipe.execute()
    live = set(beating(values[0], values[1], fleet.client.registry.host_ttl))
    return [dict(r.public(), family=family_of(r.name)) for r in read_records(names, values[2:], live)]


async def servers_page(fleet: Fleet, catalog: Catalog, prefix: str, family: str | None, status: str | None,
                       owner: str | None, limit: int, offset: int) -> dict:
    index = await catalog.current()
    page = index.page(prefix, family, owner, status, limit, offset)
    return {"total": len(index.names), "matched": page.matched, "offset": offset, "limit": limit,
            "by_status": dict(page.by_status), "index_age": round(index.age(), 3),
            "servers": await rows(fleet, page.names)}


async def families_page(catalog: Catalog, prefix: str, limit: int, offset: int) -> dict:
    index = await catalog.current()
    families = [f for f in index.families if f[0].startswith(prefix)] if prefix else index.families
    return {"total": len(families), "offset": offset, "limit": limit,
            "families": [{"family": f, "servers": n} for f, n in families[offset:offset + limit]]}


async def hosts(fleet: Fleet, index: Index) -> list[dict]:
    """Every registered host: heartbeat age, liveness, memory, servers placed on it and leases it holds."""
    async with fleet.store.pipeline(transaction=False) as pipe:
        ask_beats(pipe)
        pipe.hgetall(key("memory"))
        beats, now, memory = await pipe.execute()
    ids = sorted(h.decode() for h in beats)
    async with fleet.store.pipeline(transaction=False) as pipe:
        for h in ids:
            pipe.hmget(key("host", h), "pid", "started")
        info = await pipe.execute()
    t = seconds(now)
    ttl = fleet.client.registry.host_ttl
    out = []
    for h, (pid, started) in zip(ids, info):
        age = max(0.0, t - float(beats[h.encode()]))
        rss = memory.get(h.encode())
        out.append({"id": h, "node": node_of(h), "pid": int(pid) if pid else None,
                    "started": float(started) if started else None, "heartbeat_age": round(age, 3),
                    "live": age <= ttl, "memory_bytes": int(rss) if rss else None,
                    "servers": index.by_host.get(h, 0), "leases": index.leases.get(h, 0)})
    return out


async def overview(fleet: Fleet, catalog: Catalog) -> dict:
    index = await catalog.current()
    return {"host_ttl": fleet.client.registry.host_ttl, "hosts": await hosts(fleet, index),
            "servers": len(index.names), "by_status": dict(index.by_status), "families": len(index.families),
            "top_families": [{"family": f, "servers": n} for f, n in index.families[:TOP_FAMILIES]],
            "dead_letters": await fleet.store.zcard(key("deadtime")), "index_age": round(index.age(), 3),
            "index_seconds": round(index.took, 3)}


def letter(raw: bytes | str) -> dict:
    d = json.loads(raw)
    d["replayable"] = "server" in d and "handler" in d and isinstance(d.get("args"), list)
    return d


async def dead_letters_page(fleet: Fleet, server: str | None, limit: int, offset: int) -> dict:
    """Dead letters, newest first; of one server: those of the kept ones (at most DeadLetters.KEPT)."""
    r = fleet.store
    if server is None:
        total = await r.zcard(key("deadtime"))
        ids = cast(list[bytes], await r.zrevrange(key("deadtime"), offset, offset + limit - 1))
        letters = [letter(x) for x in (await r.hmget(key("dead"), ids) if ids else []) if x is not None]
    else:
        ids = cast(list[bytes], await r.zrevrange(key("deadtime"), 0, -1))
        found = [d for x in (await r.hmget(key("dead"), ids) if ids else []) if x is not None
                 and (d := letter(x)).get("server") == server]
        total, letters = len(found), found[offset:offset + limit]
    return {"total": total, "offset": offset, "limit": limit, "letters": letters}


def event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict:
    f = {text(k): text(v) for k, v in fields.items()}
    return {"id": text(entry_id), "time": float(f.get("time", 0)), "kind": f.get("kind", ""),
            "server": f.get("server", ""), "from_host": f.get("from", ""), "to_host": f.get("to", ""),
            "host": f.get("host", ""), "reason": f.get("reason", "")}


async def events(fleet: Fleet, after: str | None, limit: int) -> dict:
    """The supervisor's events (relay_workers.supervisor: relay:events) after `after`, or the latest."""
    if after is not None:
        got = cast(Entries, await fleet.store.xrange(key("events"), min=f"({after}", count=limit))
    else:
        got = cast(Entries, await fleet.store.xrevrange(key("events"), count=limit))[::-1]
    found = [event(i, fields) for i, fields in got]
    return {"events": found, "last": found[-1]["id"] if found else after}


async def replay(fleet: Fleet, letter_id: str) -> dict:
    """Sends a dead-lettered message again to its server (as `POST /v1/servers/{name}/{handler}/send` does,
    under the id LETTER.replay: replayed twice, it is applied once), then drops the dead letter."""
    raw = await fleet.store.hget(key("dead"), letter_id)
    if raw is None:
        raise not_found(f"no dead letter with id {letter_id!r}")
    d = letter(raw)
    if not d["replayable"]:
        raise RelayError(f"dead letter {letter_id!r} is not a message to a server (it could not be decoded), so it "
                         "cannot be replayed", kind="bad request")
    message_id = await fleet.send(d["server"], d["handler"], d["args"], f"{letter_id}.replay")
    async with fleet.store.pipeline(transaction=True) as pipe:
        pipe.hdel(key("dead"), letter_id)
        pipe.zrem(key("deadtime"), letter_id)
        await pipe.execute()
    return {"message_id": message_id, "server": d["server"], "handler": d["handler"]}
