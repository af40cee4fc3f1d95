"""Celery task events for server messages, so that Flower (and `celery events`) shows them.

Server messages never run as Celery tasks (docs/fleet.md), so the host sends
the events a worker would: `task-received`, `task-started`, then
`task-succeeded` or `task-failed`, named `relay.deliver`, with the message id
as the task id and the server, handler and arguments readable in `args`
(`counter.add(1, 2)`). Sent only when the worker sends task events
(`worker_send_task_events`, on by default in relay_workers/settings.py, or `-E`).
They are buffered and published together (one `task.multi` event, which
Celery's event receivers and Flower unpack) when a batch of messages commits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from celery import Celery
from celery.events.dispatcher import EventDispatcher

from relay_lang.values import show

from .wire import describe, from_wire

log = logging.getLogger("relay.workers")
BUFFERED = 1000  # events published at once at most (a batch flushes sooner)


class MessageEvents:
    def __init__(self, app: Celery, hostname: str, enabled: bool) -> None:
        self.app = app
        self.hostname = hostname
        self.enabled = enabled
        self.lock = threading.Lock()  # one dispatcher, one connection, many server threads
        self.dispatcher: EventDispatcher | None = None

    def _use(self, act: Callable[[EventDispatcher], object]) -> None:
        """Runs act on the dispatcher (created on first use); a failure drops it and what it buffered."""
        if not self.enabled:
            return
        try:
            with self.lock:
                if self.dispatcher is None:
                    self.dispatcher = self.app.events.Dispatcher(self.app.connection_for_write(),
                                                                 hostname=self.hostname, enabled=True,
                                                                 buffer_group=["task"], buffer_limit=BUFFERED)
                act(self.dispatcher)
        except Exception as exc:  # noqa: BLE001 - events are for watching: never fail a message for them
            log.warning("relay: could not send task events (%s)", exc)
            with self.lock:
                self.dispatcher = None

    def _send(self, kind: str, **fields: object) -> None:
        self._use(lambda d: d.send(kind, **fields))

    def flush(self) -> None:
        """Publishes the buffered events in one message."""
        self._use(lambda d: d.flush())

    def started(self, message_id: str, server: str, handler: str, args: list) -> float:
        self._send("task-received", uuid=message_id, name="relay.deliver", args=describe(server, handler, args),
                   kwargs="{}",
                   root_id=message_id, parent_id=None, retries=0, eta=None, expires=None)
        self._send("task-started", uuid=message_id)
        return time.monotonic()

    def finished(self, message_id: str, reply: dict, started: float) -> None:
        runtime = time.monotonic() - started
        if "error" in reply:
            self._send("task-failed", uuid=message_id, exception=str(reply["error"].get("text", ""))[:1000],
                       traceback="", runtime=runtime)
        else:
            self._send("task-succeeded", uuid=message_id, result=show(from_wire(reply["value"]))[:1000], runtime=runtime)
