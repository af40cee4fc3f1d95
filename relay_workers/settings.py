"""The fleet's settings (Celery's and Relay's), each from the environment.

`load()` reads them; `celery_config()` turns them into the configuration of a
Celery app (relay_workers.celery's, and each RelayClient's). Every variable,
its default and its meaning: config/relay.env.example.

A bad value is a `ConfigurationError` (a RelayError of kind "configuration
error" naming the variable and the value), raised where the settings are
read: `RelayClient()` raises it, the `relay` command prints it on one line and
exits 2, a worker stops at start-up with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from relay_lang.errors import RelayError

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_RESULT_BACKEND = "redis://localhost:6379/1"  # when the broker is not Redis
DEFAULT_STORE_URL = "redis://localhost:6379/2"


class ConfigurationError(RelayError):
    """A setting from the environment that cannot be used: `variable` and `value` name it."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        super().__init__(f"{variable}={value!r} {problem}", kind="configuration error")
        self.variable = variable
        self.value = value


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: str  # RELAY_BROKER_URL
    result_backend: str  # RELAY_RESULT_BACKEND
    store_url: str  # RELAY_STORE_URL: the registry, each server's ledger and the compile cache
    job_time_limit: float  # RELAY_JOB_TIME_LIMIT: seconds an eval job or one message may run
    lease_ttl: float  # RELAY_LEASE_TTL: seconds a server's lease lasts unless its owner renews it
    host_ttl: float  # RELAY_HOST_TTL: seconds without a heartbeat before a host is declared dead
    heartbeat: float  # RELAY_HEARTBEAT: seconds between a host's heartbeats and lease renewals
    max_restarts: int  # RELAY_MAX_RESTARTS within RELAY_RESTART_PERIOD: a server's restart intensity
    restart_period: float
    max_attempts: int  # RELAY_MAX_ATTEMPTS: a message that killed its owner this often is set aside
    output_limit: int  # RELAY_OUTPUT_LIMIT: characters a job or a message may print
    host_max_memory_mib: int  # RELAY_HOST_MAX_MEMORY_MIB: a host past this hands its servers off and restarts
    idle_timeout: float  # RELAY_IDLE_TIMEOUT: seconds without a message after which a server is let go (inactive)
    actor_threads: int  # RELAY_ACTOR_THREADS: threads a host runs its active servers' messages on (relay_workers.runners)
    supervise_every: float  # RELAY_SUPERVISE_EVERY: seconds between the supervisor runs beat schedules
    max_memory_kib: int  # RELAY_MAX_MEMORY_KIB: prefork children are recycled past this


def _positive(environ: Mapping[str, str], name: str, default: float) -> float:
    """A number > 0 (and finite) from the environment, or the default when the variable is unset or empty."""
    text = environ.get(name, "")
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(name, text, "is not a number") from None
    if not 0 < value < float("inf"):
        raise ConfigurationError(name, text, "must be a positive number")
    return value


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole number > 0 from the environment (1e6 is one), or the default."""
    value = _positive(environ, name, default)
    if value != int(value):
        raise ConfigurationError(name, environ[name], "must be a whole number")
    return int(value)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ` (default os.environ); a bad value raises ConfigurationError."""
    env = os.environ if environ is None else environ
    broker = env.get("RELAY_BROKER_URL") or DEFAULT_BROKER_URL
    backend = env.get("RELAY_RESULT_BACKEND") or (broker if broker.startswith("redis") else DEFAULT_RESULT_BACKEND)
    return Settings(
        broker_url=broker,
        result_backend=backend,
        store_url=env.get("RELAY_STORE_URL") or DEFAULT_STORE_URL,
        job_time_limit=_positive(env, "RELAY_JOB_TIME_LIMIT", 60),
        lease_ttl=_positive(env, "RELAY_LEASE_TTL", 6),
        host_ttl=_positive(env, "RELAY_HOST_TTL", 8),
        heartbeat=_positive(env, "RELAY_HEARTBEAT", 1),
        max_restarts=_count(env, "RELAY_MAX_RESTARTS", 5),
        restart_period=_positive(env, "RELAY_RESTART_PERIOD", 60),
        max_attempts=_count(env, "RELAY_MAX_ATTEMPTS", 3),
        output_limit=_count(env, "RELAY_OUTPUT_LIMIT", 1_000_000),
        host_max_memory_mib=_count(env, "RELAY_HOST_MAX_MEMORY_MIB", 2048),
        idle_timeout=_positive(env, "RELAY_IDLE_TIMEOUT", 120),
        actor_threads=_count(env, "RELAY_ACTOR_THREADS", 16),
        supervise_every=_positive(env, "RELAY_SUPERVISE_EVERY", 2),
        max_memory_kib=_count(env, "RELAY_MAX_MEMORY_KIB", 1_048_576),
    )


def celery_config(s: Settings) -> dict[str, object]:
    """A Celery app's configuration: Celery's own settings, and Relay's as `relay_*` keys (app.conf.relay_...)."""
    config: dict[str, object] = {
        "broker_url": s.broker_url,
        "result_backend": s.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 3600,
        # Eval jobs are stateless: one in flight when its worker dies runs again.
        # Server messages never go through the pool: see docs/fleet.md.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Flower shows what the fleet does: workers send task events (server messages too, see relay_workers.events).
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Redis: undecodable items on a relay queue are set aside, not fatal (relay_workers.transport).
        "broker_transport_options": {"visibility_timeout": 3600, "relay_dead_letters_url": s.store_url},
        # The supervisor (relay_workers.supervisor) on a schedule; hosts also run it at once when they see a death.
        "beat_schedule": {
            "relay-supervise": {"task": "relay.supervise", "schedule": s.supervise_every,
                                "options": {"queue": "relay.eval", "expires": 10}},
        },
        # llvmlite leaks a little per optimisation and MCJIT never frees code:
        # recycle pool children that grow (prefork pool).
        "worker_max_memory_per_child": s.max_memory_kib,
        "relay_store_url": s.store_url,
        "relay_job_time_limit": s.job_time_limit,
        "relay_lease_ttl": s.lease_ttl,
        "relay_host_ttl": s.host_ttl,
        "relay_heartbeat": s.heartbeat,
        "relay_max_restarts": s.max_restarts,
        "relay_restart_period": s.restart_period,
        "relay_max_attempts": s.max_attempts,
        "relay_output_limit": s.output_limit,
        "relay_host_max_memory_mib": s.host_max_memory_mib,
        "relay_idle_timeout": s.idle_timeout,
        "relay_actor_threads": s.actor_threads,
    }
    if s.broker_url.startswith(("redis://", "rediss://")):
        config["broker_transport"] = "relay_workers.transport:Transport"
    return config
