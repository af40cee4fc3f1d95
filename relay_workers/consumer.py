"""The worker's Celery consumer (of `relay.eval`): input it cannot use goes to the dead-letter list.

Celery logs such a message with a traceback and drops it; here it is kept,
with its reason, in the store's dead-letter list (`relay dead-letters`),
logged once in one line, and acknowledged so that it never loops.
"""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer

from .ledger import DeadLetters

log = logging.getLogger("relay.workers")


class Consumer(CeleryConsumer):
    def set_aside(self, message, reason: str) -> None:
        queue = message.delivery_info.get("routing_key") or "?"
        log.error("relay: set aside a message on %s: %s", queue, reason)
        try:
            DeadLetters.at(self.app.conf.relay_store_url).add(
                queue=queue, reason=reason, raw=repr(message.body)[:4096], message_id=message.headers.get("id"))
        except Exception as exc:  # noqa: BLE001 - the store away: logged above, the worker goes on
            log.error("relay: could not record the dead letter: %s", exc)
        message.ack()

    def on_decode_error(self, message, exc: Exception) -> None:
        self.set_aside(message, f"undecodable: {exc}")

    def on_unknown_message(self, body, message) -> None:
        self.set_aside(message, "not a Celery task message")

    def on_invalid_task(self, body, message, exc: Exception) -> None:
        self.set_aside(message, f"invalid task message: {exc}")
