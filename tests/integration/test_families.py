"""Server families on the fleet: `account[ada]` from its first message, with its own state and key, by
every way in (RelayClient, a handler's call and send, the CLI, plain Celery), and hot upgrades."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from conftest import eventually
from relay_lang.errors import RelayError
from relay_workers.ledger import shard_queue

ACCOUNTS = """
server account[id] {
    state { balance: 0, owner: self.id }
    receive fn deposit(n: number) { state.balance += n; state.balance }
    receive fn get() { state }
}
server teller {
    state { done: 0 }
    receive fn pay(who, n) { account[who].deposit(n); send(account[who], "deposit", n); state.done += 1 }
}
"""

UPGRADED = ACCOUNTS.replace("state { balance: 0, owner: self.id }", "state { balance: 0, owner: self.id, since: 1 }") \
    .replace("receive fn get() { state }", "receive fn get() { state }\n    receive fn twice() { state.balance * 2 }")


@pytest.fixture(scope="module")
def hosts(fleet):
    return [fleet.start("f1", "relay.*"), fleet.start("f2", "relay.*")]


def test_a_family_server_starts_at_its_first_message_with_its_own_state(hosts, client) -> None:
    deployed = dict(client.deploy(ACCOUNTS))
    assert set(deployed) == {"account[]", "teller"}
    assert client.call("account[ada]", "deposit", 5) == 5
    assert client.call("account[ada]", "deposit", 2) == 7
    assert client.call("account[bob]", "get") == {"balance": 0, "owner": "bob"}
    client.call("teller", "pay", "cy", 3)  # a call and a send from a handler
    eventually(lambda: client.call("account[cy]", "get")["balance"] == 6, 10, "cy's send applied")
    listed = {s["name"]: s for s in client.servers()}
    assert listed["account[]"]["status"] == "family" and listed["account[]"]["servers"] == 3
    result = client.app.send_task("relay.deliver", args=["account[dee]", "deposit", [1]],
                                  queue=shard_queue("account[dee]")).get(timeout=30)
    assert result == {"value": 1}


def test_names_that_address_no_server_are_refused(hosts, client) -> None:
    client.deploy(ACCOUNTS)
    for name, message in [("account", "is a family"), ("teller[x]", "is not a family"),
                          ("account[", "ending in ']'"), ("nosuch[x]", "no server named")]:
        with pytest.raises(RelayError, match=message.replace("[", r"\[").replace("]", r"\]")):
            client.call(name, "get")


def test_a_hot_upgrade_reaches_every_server_of_the_family(hosts, client) -> None:
    client.deploy(ACCOUNTS)
    client.call("account[eve]", "deposit", 4)
    client.deploy(UPGRADED)
    assert client.call("account[eve]", "twice") == 8
    assert client.call("account[eve]", "get") == {"balance": 4, "owner": "eve", "since": 1}
    assert client.call("account[fay]", "get") == {"balance": 0, "owner": "fay", "since": 1}


def test_the_cli_addresses_a_family_server(hosts, client, fleet) -> None:
    client.deploy(ACCOUNTS)
    done = subprocess.run([sys.executable, "-m", "relay_workers.cli", "call", "account[gus]", "deposit", "5"],
                          capture_output=True, text=True, env=fleet.env, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "5"), done.stderr


METERS = """
server meter[id] {
    state { reads: 0 }
    receive fn read() { state.reads += 1; state.reads }
}
"""


def seed_meters(store_url: str, count: int) -> None:
    """`count` servers of family `meter` that received a message once and went idle, straight in the store as
    the registry records them (its `instances` set and a placement record each); every 100th failed (marked in
    its record and in the `failed` set)."""
    r = redis.Redis.from_url(store_url)
    with r.pipeline(transaction=False) as pipe:
        for i in range(count):
            name = f"meter[m{i:06d}]"
            pipe.sadd("{relay}:instances:meter", name)
            failed = {"status": "failed", "reason": "restarted 5 times within 60 s"} if i % 100 == 0 else {}
            pipe.hset(f"{{relay}}:server:{name}", mapping={"owner": "", "restarts": 0, **failed})
            if failed:
                pipe.sadd("{relay}:failed", name)
            if len(pipe) >= 20_000:
                pipe.execute()
        pipe.execute()


def test_relay_servers_pages_and_counts_100000_servers_of_a_family(hosts, client, fleet) -> None:
    client.deploy(METERS)
    seed_meters(fleet.env["RELAY_STORE_URL"], 100_000)
    assert client.call("meter[live1]", "read") == 1 and client.call("meter[live2]", "read") == 1

    def relay(*args: str) -> dict:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "relay_workers.cli", "servers", *args, "--json"],
                              capture_output=True, text=True, env=fleet.env, timeout=60)
        assert done.returncode == 0, done.stderr
        print(f"relay servers {' '.join(args)}: {time.monotonic() - started:.2f} s (with Python's start)")
        return json.loads(done.stdout)

    page = relay("--family", "meter", "--status", "failed", "--limit", "20", "--offset", "5")
    assert page["matched"] == 1000 and page["total"] >= 100_002
    assert [s["name"] for s in page["servers"]] == [f"meter[m{i:06d}]" for i in range(500, 2500, 100)]
    assert all(s["status"] == "failed" and s["reason"] for s in page["servers"])
    assert page["by_status"]["inactive"] == 99_000 and page["by_status"]["failed"] == 1000
    assert page["families"]["meter"] == 100_002
    running = relay("--family", "meter", "--status", "running")
    assert [s["name"] for s in running["servers"]] == ["meter[live1]", "meter[live2]"]
    owners = {s["owner"] for s in running["servers"]}
    assert owners <= set(hosts) and sum(running["hosts"].values()) >= 2
    assert relay("--owner", next(iter(owners)), "--family", "meter")["matched"] >= 1
    assert relay("--prefix", "meter[m09999")["matched"] == 10
    listing = subprocess.run([sys.executable, "-m", "relay_workers.cli", "servers", "--family", "meter", "--limit", "3"],
                             capture_output=True, text=True, env=fleet.env, timeout=60)
    assert "-- 1-3 of 100003 matching" in listing.stdout  # meter[] itself, first and "--offset 3 for more" in listing.stdout
    assert "by family: " in listing.stdout and "meter 100002" in listing.stdout
