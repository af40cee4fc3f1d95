"""The compile cache's store in Redis, shared by the fleet (keyed by relay_lang's cache key)."""

from __future__ import annotations

import contextlib
import time
from typing import cast

import redis

from .ledger import key

OBJECT_TTL = 7 * 24 * 3600  # compiled objects live a week after their last write
MAX_OBJECT = 16 * 1024 * 1024
LOCK_TTL = 30


class RedisObjectStore:
    """Object code by cache key (`obj:KEY`), with a short build lock (`objlock:KEY`).

    Entries expire OBJECT_TTL after they were written and objects over
    MAX_OBJECT bytes are not stored. `building(key)` is a short lock: a worker
    about to compile what another is compiling waits for its result instead.
    """

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def get(self, cache_key: str) -> bytes | None:
        return cast(bytes | None, self.r.get(key("obj", cache_key)))

    def put(self, cache_key: str, data: bytes) -> None:
        if len(data) <= MAX_OBJECT:
            self.r.set(key("obj", cache_key), data, ex=OBJECT_TTL)

    @contextlib.contextmanager
    def building(self, cache_key: str):
        lock = key("objlock", cache_key)
        deadline = time.monotonic() + LOCK_TTL
        while not self.r.set(lock, "1", nx=True, ex=LOCK_TTL):
            if self.get(cache_key) is not None or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        try:
            yield
        finally:
            self.r.delete(lock)
