"""The Celery app of the Relay fleet: `celery -A relay_workers worker -Q 'relay.*'`.

Celery takes `-Q relay.*` literally (it has no wildcard queues), so the
`RelayHosting` worker step gives the pattern its meaning: the worker's
Celery consumer takes `relay.eval` (stateless eval jobs, run by the pool),
and a `Host` in the worker's main process hosts Relay servers, consuming the
queue `relay.NAME` of each server placed on it (relay_workers.host). Any pool
works (prefork, solo, threads): server messages never run in the pool.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import Celery, bootsteps

from .settings import celery_config, load

if TYPE_CHECKING:
    from celery.worker import WorkController

    from .host import Host

log = logging.getLogger("relay.workers")

app = Celery("relay", include=["relay_workers.tasks"])
app.config_from_object(celery_config(load()))  # a bad RELAY_* variable: ConfigurationError
app.conf.task_routes = {"relay.eval": {"queue": "relay.eval"}}
app.conf.worker_consumer = "relay_workers.consumer:Consumer"

WILDCARD = "relay.*"
EVAL_QUEUE = "relay.eval"


class RelayHosting(bootsteps.StartStopStep):
    """Turns `-Q relay.*` into `relay.eval` for the pool plus a host of Relay servers."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, w: WorkController, **kwargs: object) -> None:
        super().__init__(w, **kwargs)
        self.host: Host | None = None
        queues = w.app.amqp.queues
        self.hosting = WILDCARD in queues
        if self.hosting:
            queues.deselect([WILDCARD])
            queues.select_add(EVAL_QUEUE)

    def start(self, w: WorkController) -> None:
        if not self.hosting:
            return
        from relay_lang.compiler import engine

        from .host import Host
        engine.initialise()  # LLVM's target now, not in the first job that compiles or loads code
        self.host = Host(w.app, w.hostname)
        self.host.start()
        self.host.warm_up()

    def stop(self, w: WorkController) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None


app.steps["worker"].add(RelayHosting)
