"""The edge of every HTTP request (ASGI middleware): body size, slow clients, the request's time, and the
request metrics."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay_lang.errors import RelayError

from .config import GatewayConfig
from .errors import error_response
from .metrics import IN_FLIGHT, REQUEST_SECONDS, REQUESTS


class Edge:
    """ASGI middleware: reads the whole body first (at most `max_body` bytes, within `read_timeout`),
    bounds the request's time, counts it for /metrics, and answers its own errors as JSON."""

    def __init__(self, app: ASGIApp, config: GatewayConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.handle(scope, receive, sending)
        finally:
            IN_FLIGHT.dec()
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()
            REQUEST_SECONDS.labels(scope["method"], path).observe(time.perf_counter() - started)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(self.config.read_timeout):
                read = await self.read_body(scope, receive)
        except TimeoutError:
            await error_response(RelayError(f"the request body did not arrive within {self.config.read_timeout:g} s",
                                            kind="timeout"), 408)(scope, receive, send)
            return
        if read is None:  # the client went away
            return
        body, too_large = read
        if too_large:
            await error_response(RelayError(f"the request body is larger than {self.config.max_body} bytes",
                                            kind="too large"))(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = [False]

        async def sending(message: Message) -> None:
            started[0] = True
            await send(message)

        try:
            async with asyncio.timeout(self.config.timeout + 5):  # a backstop: routes bound their own waits
                await self.app(scope, replay, sending)
        except TimeoutError:
            if started[0]:
                raise
            await error_response(RelayError(f"no answer within {self.config.timeout:g} s",
                                            kind="timeout"))(scope, receive, send)

    async def read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool] | None:
        """The body, and whether it was over the limit (the rest is read and dropped, so the client
        gets its 413 instead of a reset connection); None when the client disconnected."""
        limit = self.config.max_body
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        too_large = declared.isdigit() and int(declared) > limit
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > limit
            if not too_large:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), too_large
