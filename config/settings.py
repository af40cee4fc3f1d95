"""Celery settings for the Relay fleet. Every URL can be overridden from the environment.

RELAY_BROKER_URL      broker (default redis://localhost:6379/0; an amqp:// RabbitMQ URL works too)
RELAY_RESULT_BACKEND  results of eval jobs and calls (default: the broker when it is Redis, else
                      redis://localhost:6379/1)
RELAY_STORE_URL       Redis for server state, leases, the registry and the compile cache
                      (default redis://localhost:6379/2)
"""

from __future__ import annotations

import os

broker_url = os.environ.get("RELAY_BROKER_URL", "redis://localhost:6379/0")
result_backend = os.environ.get(
    "RELAY_RESULT_BACKEND", broker_url if broker_url.startswith("redis") else "redis://localhost:6379/1")
relay_store_url = os.environ.get("RELAY_STORE_URL", "redis://localhost:6379/2")

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 3600

# A message in flight when its worker dies is delivered again; the server's
# checkpoint records the last message applied, so it is not applied twice.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# With the Redis transport an unacknowledged message comes back after the
# visibility timeout: jobs are bounded well below it (RELAY_JOB_TIME_LIMIT).
broker_transport_options = {"visibility_timeout": 3600}
relay_job_time_limit = float(os.environ.get("RELAY_JOB_TIME_LIMIT", "60"))
broker_connection_retry_on_startup = True

# llvmlite leaks a little per optimisation and MCJIT never frees code:
# recycle pool children that grow (prefork pool; the solo pool is recycled
# by restarting the worker).
worker_max_memory_per_child = int(os.environ.get("RELAY_MAX_MEMORY_KIB", "1048576"))
