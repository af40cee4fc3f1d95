"""The fleet's catalog (relay_workers/catalog.py) reads the registry's indexes (`placed`, `failed`, the
name sets), not each server's record: through every step that changes a server's owner or status
(activation, a restart on another host, passivation, failure, `relay restart`, a host's death) the
catalog's status of each server is the status its own record gives (RelayClient's rows); a store written
before the indexes gets them from its records."""

from __future__ import annotations

import pytest
import redis

from relay_lang.errors import RelayError
from relay_workers.catalog import read
from relay_workers.client import RelayClient
from relay_workers.ledger import key
from relay_workers.registry import Registry

FAMILY = "server meter[id] { state { n: 0 } receive fn read() { state.n } }"
PLAIN = "server clock { state { t: 0 } receive fn now() { state.t } }"


def agree(client: RelayClient, r: redis.Redis, registry: Registry) -> dict[str, str]:
    """Every server's status in the catalog, checked against the status of its row read from its record."""
    live = set(registry.live_hosts())
    index = read(r, live)
    statuses = {name: index.status(name) for name in index.names}
    rows = {name: client._row(name, live)["status"] for name in index.names}
    assert statuses == rows
    assert sum(index.by_status.values()) == len(index.names)
    return statuses


def test_the_catalog_follows_every_change_of_owner_and_status(redis_url) -> None:
    url = f"{redis_url}/9"
    r = redis.Redis.from_url(url)
    r.flushdb()
    client = RelayClient(url, url, url)
    registry = Registry(r, host_ttl=8, max_restarts=5, restart_period=60)
    try:
        registry.register("meter[]", FAMILY, "<test>")
        registry.register("clock", PLAIN, "<test>")  # no live host: left for the supervisor
        assert agree(client, r, registry) == {"clock": "inactive", "meter[]": "family"}

        for host in ("a#1.x", "b#2.y"):
            registry.register_host(host, host.split("#")[0], 1)
            registry.heartbeat(host)
        for name in ("meter[1]", "meter[2]", "meter[3]", "clock"):
            assert registry.activate(name) in ("a#1.x", "b#2.y")
        r.set(key("lease", "meter[1]"), f"{registry.owner('meter[1]')} 1")  # its host took its lease
        statuses = agree(client, r, registry)
        assert statuses["meter[1]"] == "running" and statuses["meter[2]"] == "starting"

        registry.passivate("meter[2]", registry.owner("meter[2]"), "")
        registry.mark_failed("meter[3]", "restarted 5 times within 60 s")
        statuses = agree(client, r, registry)
        assert (statuses["meter[2]"], statuses["meter[3]"]) == ("inactive", "failed")

        registry.restart("meter[3]")  # placed anew
        assert agree(client, r, registry)["meter[3]"] in ("running", "starting")

        dead = registry.owner("meter[1]")
        registry.remove_host(dead)
        registry.release_dead()  # the dead host's servers stay its own until their next message
        statuses = agree(client, r, registry)
        assert statuses["meter[1]"] == "restarting"
        assert registry.activate("meter[1]") not in (None, dead)  # restarted on the live host
        assert agree(client, r, registry)["meter[1]"] == "starting"
        assert r.hkeys(key("placed")) and not r.hexists(key("placed"), "meter[2]")

        with pytest.raises(RelayError, match="is a family"):  # its record is no server: never placed
            registry.restart("meter")
        registry.mark_failed("clock", "restarted 5 times within 60 s")
        before = agree(client, r, registry)
        r.delete(key("placed"), key("failed"), key("indexed"))  # a store written before the indexes
        assert registry.index() and not registry.index()  # built from the records, once
        assert agree(client, r, registry) == before
    finally:
        client.close()
        r.flushdb()
        r.close()
