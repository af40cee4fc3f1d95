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


def test_deliveries_to_an_undeployed_servers_queue_are_answered_under_every_id(fleet, client) -> None:
    """A plain-Celery relay.deliver on the queue of a server that is not deployed (no worker consumes it) is
    answered within seconds; a plain-Celery producer gets every reply, value or error, under its task id
    and under the message id it names."""
    import time

    worker = fleet.start("w1")
    deploy(client, SEQ.format(name="seq"))
    broker = redis.Redis.from_url(fleet.env["RELAY_BROKER_URL"])
    app = client.app
    sent = time.monotonic()
    plain = app.send_task("relay.deliver", args=["nosuch", "add", ["s", 0]], queue="relay.nosuch")
    named = app.send_task("relay.deliver", args=["nosuch", "add", ["s", 1]], kwargs={"message_id": "stray-1"},
                          queue="relay.nosuch")
    to_seq = app.send_task("relay.deliver", args=["seq", "add", ["s", 0]], queue="relay.nosuch")  # misrouted there
    answer = plain.get(timeout=20)
    answered = time.monotonic() - sent
    assert answer["error"]["message"] == "no server named 'nosuch' is deployed"
    assert named.get(timeout=20) == app.AsyncResult("stray-1").get(timeout=5) == answer
    assert to_seq.get(timeout=20) == {"value": 1}
    wait_until(lambda: broker.llen("relay.nosuch") == 0, 10, "relay.nosuch empty")

    by_id = {}  # each reply as the task id and the message id get it
    cases = {
        "value": (["seq", "add", ["s", 1]], {"message_id": "m-ok"}, "relay.seq"),
        "value again (a retry, applied before)": (["seq", "add", ["s", 1]], {"message_id": "m-ok"}, "relay.seq"),
        "bad request": (["seq", "add", [{"$num": "abc"}]], {"message_id": "m-bad"}, "relay.seq"),
        "handler error": (["seq", "nope", []], {"message_id": "m-nope"}, "relay.seq"),
        "no server": (["nosuch", "add", []], {"message_id": "m-gone"}, "relay.seq"),
        "through the pool": (["seq", "add", ["s", 2]], {"message_id": "m-pool"}, "relay.eval"),
        "bad request, pool": (["seq", "add", "x"], {"message_id": "m-pool-bad"}, "relay.eval"),
    }
    for what, (args, kwargs, queue) in cases.items():
        task = app.send_task("relay.deliver", args=args, kwargs=kwargs, queue=queue)
        by_task = task.get(timeout=20)
        by_message = app.AsyncResult(kwargs["message_id"]).get(timeout=5)
        assert by_task == by_message, (what, by_task, by_message)
        by_id[what] = by_task.get("value", by_task.get("error", {}).get("kind"))
    assert by_id == {"value": 2, "value again (a retry, applied before)": 2, "bad request": "bad request",
                     "handler error": "error", "no server": "error", "through the pool": 3,
                     "bad request, pool": "bad request"}, by_id
    assert client.call("seq", "stats")[:3] == [3, 0, 0]  # s0, s1, s2: once each, in order
    record("relay.deliver to an undeployed server's queue", answered_s=answered, **{
        k.split(" (")[0].replace(" ", "_").replace(",", ""): v for k, v in by_id.items()})
    assert answered < 5
    assert fleet.workers[worker].poll() is None and "Traceback" not in fleet.log(worker)
