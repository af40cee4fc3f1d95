"""The gateway's settings (`relay gateway`'s options and the fleet's URLs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GatewayConfig:
    token: str | None  # None: no authentication (`--insecure`)
    timeout: float = 60.0  # seconds a request may take, at most (longer asked timeouts are capped)
    read_timeout: float = 10.0  # seconds a client may take to send its request body
    max_body: int = 1 << 20  # bytes of request body
    broker_url: str | None = None
    result_backend: str | None = None
    store_url: str | None = None
    header_timeout: float = 10.0  # seconds a client may take to send a request's line and headers

    def cap(self, timeout: float) -> float:
        """A timeout a request asked for, capped by --timeout."""
        return min(timeout, self.timeout)
