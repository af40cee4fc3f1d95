"""Replies for plain Celery producers, stored as Celery results under every id they may be read by.

A producer that publishes `relay.deliver` with plain Celery (`send_task`)
reads the reply with `AsyncResult(task_id).get()`; one that names a
`message_id` (to retry safely) may read it under that id instead. Every reply
such a message gets — the handler's value or error, a bad request, "no server
named 'x' is deployed", the reply of a message applied before — is stored
under both: the message id the ledger knows it by, and the id of each Celery
task that carried it. A task id is remembered in the store
(`{relay}:carried:MESSAGE_ID`) from when the message arrives until its reply is
stored.
"""

from __future__ import annotations

import redis
from celery import Celery

from .ledger import key

CARRIED_TTL = 7 * 24 * 3600  # a message may wait in its journal this long (a failed server) and still reach every id


class CeleryResults:
    def __init__(self, app: Celery, store: redis.Redis) -> None:
        self.app = app  # its backend is read at each store: Celery's backends are per thread
        self.store = store

    def carried(self, message_id: str, task_id: str) -> None:
        """Remembers that `task_id` carried message `message_id`: its reply will be stored under both."""
        if task_id and task_id != message_id:
            with self.store.pipeline(transaction=True) as pipe:
                pipe.sadd(key("carried", message_id), task_id)
                pipe.expire(key("carried", message_id), CARRIED_TTL)
                pipe.execute()

    def put(self, message_id: str, reply: dict, task_id: str | None = None) -> None:
        """Stores the reply under the message id, `task_id`, and every task id that carried the message."""
        with self.store.pipeline(transaction=True) as pipe:
            pipe.smembers(key("carried", message_id))
            pipe.delete(key("carried", message_id))
            carriers = pipe.execute()[0]
        ids = {message_id, *(t.decode() for t in carriers)} | ({task_id} if task_id else set())
        backend = self.app.backend
        for result_id in sorted(ids):
            backend.store_result(result_id, reply, "SUCCESS")
