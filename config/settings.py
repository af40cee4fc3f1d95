"""Celery and fleet settings for Relay. Every value can be overridden from the environment.

RELAY_BROKER_URL       broker (default redis://localhost:6379/0; an amqp:// RabbitMQ URL works too)
RELAY_RESULT_BACKEND   Celery results (default: the broker when it is Redis, else redis://localhost:6379/1)
RELAY_STORE_URL        Redis for the registry, each server's ledger and the compile cache
                       (default redis://localhost:6379/2)
RELAY_JOB_TIME_LIMIT   seconds an eval job or one message may run (default 60)
RELAY_LEASE_TTL        seconds a server's lease lasts unless its owner renews it (default 6)
RELAY_HOST_TTL         seconds without a heartbeat before a host is declared dead (default 8)
RELAY_HEARTBEAT        seconds between a host's heartbeats and lease renewals (default 1)
RELAY_MAX_MEMORY_KIB   prefork children are recycled past this (default 1 GiB)
RELAY_HOST_MAX_MEMORY_MIB  a host past this hands its servers off and restarts its worker (default 2048)
RELAY_MAX_RESTARTS, RELAY_RESTART_PERIOD  a server's restart intensity (default 5 restarts in 60 s)
RELAY_MAX_ATTEMPTS     a message whose handling killed its owner this many times is set aside (default 3)
RELAY_OUTPUT_LIMIT     characters a job or a message may print (default 1,000,000)
RELAY_SUPERVISE_EVERY  seconds between the supervisor runs `celery -A relay_workers beat` schedules (default 2)
"""

from __future__ import annotations

import os


def _seconds(name: str, default: float) -> float:
    """A positive number from the environment; a bad value stops with one line saying which."""
    text = os.environ.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        raise SystemExit(f"relay: {name}={text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise SystemExit(f"relay: {name}={text!r} must be a positive number")
    return value


broker_url = os.environ.get("RELAY_BROKER_URL", "redis://localhost:6379/0")
result_backend = os.environ.get(
    "RELAY_RESULT_BACKEND", broker_url if broker_url.startswith("redis") else "redis://localhost:6379/1")
relay_store_url = os.environ.get("RELAY_STORE_URL", "redis://localhost:6379/2")

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 3600

# Eval jobs are stateless: one in flight when its worker dies runs again.
# Server messages never go through the pool: see docs/fleet.md.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True

# Flower shows what the fleet does: workers send task events (server messages too, see relay_workers.events).
worker_send_task_events = True
task_send_sent_event = True

# Redis: undecodable items on a relay queue are set aside, not fatal (relay_workers.transport).
broker_transport_options = {"visibility_timeout": 3600, "relay_dead_letters_url": relay_store_url}
if broker_url.startswith(("redis://", "rediss://")):
    broker_transport = "relay_workers.transport:Transport"

relay_job_time_limit = _seconds("RELAY_JOB_TIME_LIMIT", 60)
relay_lease_ttl = _seconds("RELAY_LEASE_TTL", 6)
relay_host_ttl = _seconds("RELAY_HOST_TTL", 8)
relay_heartbeat = _seconds("RELAY_HEARTBEAT", 1)
relay_max_restarts = int(_seconds("RELAY_MAX_RESTARTS", 5))
relay_restart_period = _seconds("RELAY_RESTART_PERIOD", 60)
relay_max_attempts = int(_seconds("RELAY_MAX_ATTEMPTS", 3))
relay_output_limit = int(_seconds("RELAY_OUTPUT_LIMIT", 1_000_000))
relay_host_max_memory_mib = int(_seconds("RELAY_HOST_MAX_MEMORY_MIB", 2048))

# The supervisor (relay_workers.supervisor) on a schedule; hosts also run it at once when they see a death.
beat_schedule = {
    "relay-supervise": {"task": "relay.supervise", "schedule": _seconds("RELAY_SUPERVISE_EVERY", 2),
                        "options": {"queue": "relay.eval", "expires": 10}},
}

# llvmlite leaks a little per optimisation and MCJIT never frees code:
# recycle pool children that grow (prefork pool).
worker_max_memory_per_child = int(os.environ.get("RELAY_MAX_MEMORY_KIB", "1048576"))
