"""kombu's Redis transport, hardened: an undecodable item on a queue is set aside, never fatal.

kombu parses each item it pops with `json.loads` and builds a message from
its envelope; one item that is not JSON, or not a kombu envelope, raises out
of the worker's event loop and stops the worker ("Unrecoverable error").
Anyone who can write to the broker could stop the whole fleet that way. This
channel checks each popped item first; a bad one goes to the dead-letter list
(`{relay}:dead` in the store, see relay_workers.ledger.DeadLetters) with its
reason, is logged once, and the worker goes on.
"""

from __future__ import annotations

import json
import logging

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

log = logging.getLogger("relay.workers")

ACCEPTED = ("application/json",)


def envelope_problem(item: object) -> str | None:
    """Why a popped item is not a kombu message we accept, or None when it is one."""
    if not isinstance(item, dict):
        return "not a kombu message envelope"
    properties = item.get("properties")
    if not isinstance(properties, dict) or "body" not in item or not isinstance(item.get("headers", {}), dict):
        return "not a kombu message envelope (no body, properties or headers)"
    if item.get("content-type") not in ACCEPTED:
        return f"content type {item.get('content-type')!r} is not accepted (only JSON)"
    return None


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options):
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, raw = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            text = bytes_to_str(raw)
            try:
                item = json.loads(text)
                problem = envelope_problem(item)
            except ValueError as exc:
                problem = f"not JSON ({exc})"
            if problem is not None:
                self._set_aside(dest, text, problem)
                return True
            self.connection._deliver(item, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # as kombu's own _brpop_read (its class says bool)
            self._flush_brpop_reauth()  # as kombu's own _brpop_read

    def _set_aside(self, queue: str, text: str, reason: str) -> None:
        from .ledger import DeadLetters  # the store's dead-letter list
        log.error("relay: set aside an undecodable item on %s: %s", queue, reason)
        url = self.connection.client.transport_options.get("relay_dead_letters_url")
        if url:
            try:
                DeadLetters.at(url).add(queue=queue, reason=reason, raw=text)
            except Exception as exc:  # noqa: BLE001 - the store away: the item is logged, the worker goes on
                log.error("relay: could not record the dead letter: %s", exc)


class Transport(kombu_redis.Transport):
    Channel = Channel


def restore_unacked(broker_url: str, queues: set[str]) -> int:
    """Puts back, first in line, the messages of these queues that consumers took and never acknowledged.

    A host acknowledges a server message as soon as it is journalled, so only
    a message taken in that short window can be left here, and only when its
    producer did not journal it (plain Celery `send_task`). kombu restores such
    messages only after the visibility timeout; the supervisor's host restores
    them when a host is declared dead. A live consumer's message restored too
    is delivered twice, which the journal makes harmless (it is journalled
    once, by its id). RabbitMQ redelivers on its own when the dead consumer's
    connection drops.
    """
    if not broker_url.startswith(("redis://", "rediss://")):
        return 0
    import redis
    r = redis.Redis.from_url(broker_url, socket_timeout=30, socket_connect_timeout=5)
    restored = 0
    for tag, raw in r.hgetall("unacked").items():
        try:
            payload, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key not in queues:
            continue
        payload.setdefault("headers", {})["redelivered"] = True
        with r.pipeline() as pipe:
            pipe.rpush(routing_key, json.dumps(payload))  # consumers pop from the right: next in line
            pipe.hdel("unacked", tag)
            pipe.zrem("unacked_index", tag)
            pipe.execute()
        restored += 1
    r.close()
    return restored
