"""Bad input never kills a worker, loops, or shows a traceback: garbage, pickle, misrouted, malformed."""

from __future__ import annotations

import base64
import json
import uuid

import kombu
import redis

from .conftest import SEQ, deploy, record, settle, wait_until


def raw_celery_message(task: str, queue: str, body_text: str) -> tuple[str, str]:
    """A Celery protocol-2 message as the Redis transport stores it; returns (id, JSON envelope)."""
    task_id = uuid.uuid4().hex
    envelope = {"body": base64.b64encode(body_text.encode()).decode(), "content-encoding": "utf-8",
                "content-type": "application/json", "headers": {"task": task, "id": task_id, "lang": "py"},
                "properties": {"delivery_tag": uuid.uuid4().hex, "body_encoding": "base64",
                               "delivery_info": {"exchange": queue, "routing_key": queue}, "priority": 0}}
    return task_id, json.dumps(envelope)


def test_bad_input_is_set_aside_or_answered(fleet, client) -> None:
    worker = fleet.start("w1")
    deploy(client, SEQ.format(name="seq") + SEQ.format(name="other"))
    broker = redis.Redis.from_url(fleet.env["RELAY_BROKER_URL"])
    garbage = ["not json {", '{"a": 1}', "[1, 2]", '"text"']
    for queue in ("relay.eval", "relay.seq"):
        for item in garbage:
            broker.lpush(queue, item)
    with kombu.Connection(fleet.env["RELAY_BROKER_URL"]) as conn:  # pickle: refused, never unpickled
        conn.Producer(serializer="pickle").publish({"task": "relay.deliver"}, routing_key="relay.seq",
                                                   headers={"task": "relay.deliver", "id": "pickled"})
    deep_id, deep = raw_celery_message("relay.deliver", "relay.seq", "[" * 100_000 + "]" * 100_000)
    broker.lpush("relay.seq", deep)
    broker.lpush("relay.eval", raw_celery_message("relay.eval", "relay.eval", "[" * 100_000 + "]" * 100_000)[1])
    dead_expected = 2 * len(garbage) + 2
    wait_until(lambda: len(client.dead_letters()) >= dead_expected, 30, "the dead letters")

    # malformed fields of relay.deliver: each a structured "bad request"
    bad_deliveries = {
        "bad $num": ["seq", "add", [{"$num": "abc"}, 1]],
        "a sixth argument": ["seq", "add", ["p", 1], "id-x", [], "extra"],
        "nesting too deep": ["seq", "add", [json.loads("[" * 300 + "]" * 300), 1]],
        "handler not a string": ["seq", 5, []],
        "args not a list": ["seq", "add", "p"],
    }
    kinds = {}
    for what, args in bad_deliveries.items():
        reply = client.app.send_task("relay.deliver", args=args, queue="relay.seq").get(timeout=20)
        kinds[what] = reply["error"]["kind"]
    # malformed fields of relay.eval
    bad_evals = {
        "time_limit 'abc'": ["1", {"time_limit": "abc"}],
        "tier 'bogus'": ["1", {"tier": "bogus"}],
        "a third argument": ["1", {}, "extra"],
        "source not a string": [5],
    }
    for what, args in bad_evals.items():
        reply = client.app.send_task("relay.eval", args=args, queue="relay.eval").get(timeout=20)
        kinds[what] = reply["error"]["kind"]
    assert set(kinds.values()) == {"bad request"}, kinds

    # misrouted: on the wrong server's queue, or on relay.eval: it reaches its server
    misrouted = client.app.send_task("relay.deliver", args=["other", "add", ["m", 0]], queue="relay.seq")
    to_pool = client.app.send_task("relay.deliver", args=["other", "add", ["m", 1]], queue="relay.eval")
    unknown = client.app.send_task("relay.deliver", args=["nosuch", "add", []], queue="relay.seq")
    assert {misrouted.get(timeout=20)["value"], to_pool.get(timeout=20)["value"]} == {1, 2}  # two paths: any order
    assert unknown.get(timeout=20)["error"]["message"] == "no server named 'nosuch' is deployed"

    for k in range(50):  # the worker and its servers go on
        client.send("seq", "add", "p", k)
    figures = settle(client, "seq", 50)
    assert client.eval("1 + 1").value == 2
    letters = client.dead_letters()
    record("garbage, pickle, deep nesting, malformed fields, misrouted", dead_letters=len(letters),
           bad_requests=len(kinds), **figures)
    assert fleet.workers[worker].poll() is None
    assert "Traceback" not in fleet.log(worker)
    assert {d["queue"] for d in letters} == {"relay.eval", "relay.seq"}
    assert any("x-python-serialize" in d["reason"] for d in letters), letters
    assert any(d["id"] == deep_id for d in letters), [(d["reason"], d["id"]) for d in letters]
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    # nothing requeued in a loop (the last wake-ups may still be on their way: the journal is applied first)
    wait_until(lambda: broker.llen("relay.seq") == 0 and broker.llen("relay.eval") == 0, 10, "empty queues")
