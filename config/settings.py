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
"""

from __future__ import annotations

import os


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        raise SystemExit(f"relay: {name}={text!r} is not a number of seconds") from None
    if not 0 < value < 1e6:
        raise SystemExit(f"relay: {name}={text!r} must be a positive number of seconds")
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

# Redis: undecodable items on a relay queue are set aside, not fatal (relay_workers.transport).
broker_transport_options = {"visibility_timeout": 3600, "relay_dead_letters_url": relay_store_url}
if broker_url.startswith(("redis://", "rediss://")):
    broker_transport = "relay_workers.transport:Transport"

relay_job_time_limit = _seconds("RELAY_JOB_TIME_LIMIT", 60)
relay_lease_ttl = _seconds("RELAY_LEASE_TTL", 6)
relay_host_ttl = _seconds("RELAY_HOST_TTL", 8)
relay_heartbeat = _seconds("RELAY_HEARTBEAT", 1)

# llvmlite leaks a little per optimisation and MCJIT never frees code:
# recycle pool children that grow (prefork pool).
worker_max_memory_per_child = int(os.environ.get("RELAY_MAX_MEMORY_KIB", "1048576"))
