"""The Celery app of the Relay fleet: `celery -A relay_workers worker -Q 'relay.*'`.

Celery takes `-Q relay.*` literally (it has no wildcard queues), so the
`RelayHosts` consumer step gives the pattern its meaning: a worker started
with it registers as a host in Redis, consumes `relay.eval` (stateless eval
jobs) and the queue `relay.NAME` of every server placed on it, and picks up
servers placed on it later without a restart (a timer in the worker's own
event loop, not remote control: a busy solo worker answers no control
command). On boot it re-adds the queues of its servers from the registry.
`-Q relay.NAME` pins one server to a worker.
"""

from __future__ import annotations

import logging

from celery import Celery, bootsteps

from relay_lang.compiler import engine

from .store import Registry, connect, restore_unacked

log = logging.getLogger("relay.workers")

app = Celery("relay", include=["relay_workers.tasks"])
app.config_from_object("config.settings")
app.conf.task_routes = {"relay.eval": {"queue": "relay.eval"}}

WILDCARD = "relay.*"
EVAL_QUEUE = "relay.eval"
POLL_SECONDS = 0.5


class RelayHosts(bootsteps.StartStopStep):
    """Expands `-Q relay.*` into a host of Relay servers."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer = None
        self.hosting = False

    def start(self, c) -> None:
        queues = {q.name for q in c.task_consumer.queues}
        self.hosting = WILDCARD in queues
        self.registry = Registry(connect(c.app.conf.relay_store_url))
        engine.initialise()  # LLVM's target now, not in the first job that compiles or loads code
        if not self.hosting:  # pinned to servers: heartbeat only, so they are not taken over
            if any(q.startswith("relay.") for q in queues):
                self.timer = c.timer.call_repeatedly(POLL_SECONDS, self.registry.heartbeat, (c.hostname, "pinned"))
                self.registry.heartbeat(c.hostname, "pinned")
            return
        c.cancel_task_queue(WILDCARD)
        c.add_task_queue(EVAL_QUEUE)
        self.consuming = {EVAL_QUEUE}
        self.poll(c)
        self.timer = c.timer.call_repeatedly(POLL_SECONDS, self.poll, (c,), priority=10)
        from .tasks import warm_up
        warm_up(c.hostname)
        log.info("relay: %s hosts Relay servers", c.hostname)

    def poll(self, c) -> None:
        """Heartbeat, and consume the queues of the servers placed on this worker."""
        try:
            self.registry.heartbeat(c.hostname)
            for name in self.registry.orphans():  # the supervisor: servers of dead workers move here
                if self.registry.claim(name, c.hostname):
                    restored = restore_unacked(c.app.conf.broker_url, f"relay.{name}")
                    log.info("relay: %s takes over server %s (%d in-flight messages restored)",
                             c.hostname, name, restored)
            for name in self.registry.assigned_to(c.hostname):
                queue = f"relay.{name}"
                if queue not in self.consuming:
                    c.add_task_queue(queue)
                    self.consuming.add(queue)
        except Exception as exc:  # Redis away for a moment: try again at the next tick
            log.warning("relay: host poll failed: %s", exc)

    def stop(self, c) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.hosting:
            from .tasks import release_host
            release_host()
            self.registry.remove_host(c.hostname)


app.steps["consumer"].add(RelayHosts)
