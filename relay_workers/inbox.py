"""A host's inbox: the kombu consumer of the fleet's shard queues (`relay.shard-K`, every host consumes them
all) and of the stray `relay.NAME` queues (relay_workers.strays), on its own thread and connection.

Each `relay.deliver` message is journalled at its server (unless its producer did) and acknowledged, then
handed to the host (`deliver`: wake the server's actor, ring its owner's bell, or activate it); a message
that is not one, or names no server, is answered with an error (and set aside when it cannot be read).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Protocol

import kombu
from celery import Celery

from relay_lang.errors import RelayError

from .ledger import SHARD_QUEUES, STORE_ERRORS, DeadLetters, Ledger, refused
from .results import CeleryResults
from .runtime import JOURNALLED
from .wire import Delivery, bad_request, named_message_id, parse_delivery

log = logging.getLogger("relay.workers")



class Receiver(Protocol):
    """What the inbox needs of its host (relay_workers.host.Host)."""

    app: Celery
    dead: DeadLetters
    ledger: Ledger
    results: CeleryResults
    stopping: threading.Event

    def deliver(self, name: str) -> None: ...

    def store_result(self, message_id: str, reply: dict, task_id: str | None = None) -> None: ...


class Inbox:
    """The kombu consumer of the fleet's shard queues (every host consumes all of them) and of the
    stray `relay.NAME` queues, on its own thread and connection."""

    def __init__(self, host: Receiver) -> None:
        self.host = host
        self.strays: set[str] = set()  # queues relay.NAME that hold messages (relay_workers.strays)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="relay-inbox", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.join(5)

    def answer(self, strays: set[str]) -> None:
        """Consumes these stray queues too, delivering (or answering) what waits there."""
        with self.lock:
            self.strays = strays

    @staticmethod
    def queue(q: str) -> kombu.Queue:
        return kombu.Queue(q, kombu.Exchange(q, type="direct"), routing_key=q)

    def _run(self) -> None:
        backoff = 0.1
        while not self.host.stopping.is_set():
            try:
                with self.host.app.connection_for_read() as conn:
                    self._consume(conn)
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - broker away: reconnect
                log.warning("relay: inbox lost the broker (%s); reconnecting", exc)
                self.host.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _consume(self, conn: kombu.Connection) -> None:
        consumer = kombu.Consumer(conn.channel(), queues=[], callbacks=[self.on_message], accept=["json"],
                                  on_decode_error=self.on_decode_error, prefetch_count=64)
        consuming: set[str] = set()
        while not self.host.stopping.is_set():
            with self.lock:
                wanted = set(SHARD_QUEUES) | {f"relay.{name}" for name in self.strays}
            for q in wanted - consuming:
                consumer.add_queue(self.queue(q))
            if wanted - consuming:
                consumer.consume()
            for q in consuming - wanted:
                consumer.cancel_by_queue(q)
            consuming = wanted
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
        consumer.cancel()

    def on_decode_error(self, message: kombu.Message, exc: Exception) -> None:
        queue = message.delivery_info.get("routing_key", "?")
        log.error("relay: set aside an undecodable message on %s: %s", queue, exc)
        self.host.dead.add(queue=queue, reason=f"undecodable: {exc}", raw=repr(message.body)[:4096],
                           message_id=message.headers.get("id"))
        message.ack()

    def on_message(self, body: object, message: kombu.Message) -> None:
        try:
            self.receive(body, message)
        except STORE_ERRORS as exc:  # not journalled: the broker delivers it again
            log.warning("relay: could not journal a message (%s); it goes back to the queue", exc)
            message.requeue()
            time.sleep(0.2)
            return
        message.ack()

    def receive(self, body: object, message: kombu.Message) -> None:
        headers = message.headers or {}
        task_id = str(headers.get("id") or uuid.uuid4().hex)
        queue = message.delivery_info.get("routing_key", "?")
        if headers.get("task") != "relay.deliver" or not isinstance(body, list) or len(body) != 3:
            reason = f"not a relay.deliver task in Celery's message protocol 2 (task {headers.get('task')!r})"
            log.error("relay: set aside a message on %s: %s", queue, reason)
            self.host.dead.add(queue=queue, reason=reason, raw=json.dumps(body)[:4096], message_id=task_id)
            self.host.store_result(task_id, {"error": bad_request(f"{queue} takes relay.deliver messages only").to_dict()})
            return
        try:
            d = parse_delivery(body[0], body[1], task_id)
        except RelayError as err:
            self.host.store_result(named_message_id(body[0], body[1]) or task_id, {"error": err.to_dict()}, task_id)
            return
        stray = queue not in SHARD_QUEUES  # journalled or not: check
        if (headers.get(JOURNALLED) and not stray) or self.journal(d, task_id):
            self.host.deliver(d.server)

    def journal(self, d: Delivery, task_id: str) -> bool:
        """Records the message of a plain Celery producer at its server (a no-op when it is there already);
        True when it waits there to be applied. Its reply goes to its message id and its task id."""
        self.host.results.carried(d.message_id, task_id)
        try:
            status, reply = self.host.ledger.journal(d.server, d.message_id, d.handler, d.args, d.chain,
                                                     wait=False, result=True)
        except RelayError as err:  # no server's name
            self.host.store_result(d.message_id, {"error": bad_request(err.message).to_dict()}, task_id)
            return False
        if status < 0:
            self.host.store_result(d.message_id, {"error": refused(d.server, status).to_dict()}, task_id)
        elif status == 1 and reply is not None:  # applied before: the reply again, for Celery's AsyncResult
            self.host.store_result(d.message_id, reply, task_id)
        return status == 0
