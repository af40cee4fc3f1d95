"""`relay gateway`: the app served by uvicorn, with a deadline for request heads and a bound on connections.

uvicorn closes an idle connection only between requests: its keep-alive timer starts when a response
ends, and any byte stops it. A connection that sends nothing, or part of a request head, is held
forever, and each holds a file descriptor; at the process's limit on open files accept() fails, new
clients are reset and the fleet's own connections cannot open. So the gateway raises its soft limit on
open files to the hard one and serves with `GatewayProtocol`: a connection whose request head has not
arrived within --header-timeout of connecting (or of its previous answer) is closed; past
`connection_limit` connections, a new one closes the one that has waited longest for a head (as nginx
reuses idle connections), and when every connection is busy with a request, uvicorn answers 503 (its
limit_concurrency) rather than the process running out of descriptors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
from typing import ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from relay_lang.errors import RelayError

from .app import create_app
from .config import GatewayConfig
from .errors import error_response
from .fleet import BROKER_CONNECTIONS, RESULT_CONNECTIONS, STORE_CONNECTIONS

RESERVED_DESCRIPTORS = 64  # the listening socket, the log, RelayClient's own connections, the interpreter's files


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with a deadline for each request head (request line and
    headers): `header_timeout` seconds from the connection's start, or from the end of its previous
    answer. A connection that misses it is closed, with a 408 when part of a head came; trickling bytes
    does not move it; a request's body and its answer are not under it (Edge bounds those). Past
    `max_connections`, a new connection closes the one that has waited longest for a head."""

    header_timeout: ClassVar[float]  # seconds; these three are set by `gateway_protocol`, for one server
    max_connections: ClassVar[int]
    waiting: ClassVar[dict[GatewayProtocol, None]]  # its connections awaiting a head, longest first (an ordered set)
    deadline: asyncio.TimerHandle | None = None
    head_started = False  # a byte of the awaited request head has come

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and self.waiting:
            next(iter(self.waiting)).close()
        self.await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_started = True

    def on_headers_complete(self) -> None:
        self.cancel_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)  # a pipelined request, its head already in, starts now
        super().on_response_complete()
        if not queued and not self.transport.is_closing():
            self.await_head()

    def await_head(self) -> None:
        self.cancel_deadline()
        self.head_started = False
        self.deadline = self.loop.call_later(self.header_timeout, self.head_missed)
        self.waiting[self] = None

    def cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.waiting.pop(self, None)

    def head_missed(self) -> None:
        """The deadline passed: a 408 when part of a head came, and the connection is closed."""
        if self.head_started and not self.transport.is_closing():
            err = RelayError(f"the request head did not arrive within {self.header_timeout:g} s", kind="timeout")
            answer = error_response(err, 408)
            headers = [*self.server_state.default_headers, *answer.raw_headers, (b"connection", b"close")]
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\n"
                                 + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
                                 + b"\r\n" + answer.body)
        self.close()

    def close(self) -> None:
        """Closes the connection, and stops counting it at once (for the next head's limit_concurrency)."""
        self.cancel_deadline()
        self.transport.close()
        self.connections.discard(self)


def gateway_protocol(header_timeout: float, max_connections: int) -> type[GatewayProtocol]:
    """The protocol class for one server: its deadline for request heads, its bound on connections."""

    class Protocol(GatewayProtocol):
        pass

    Protocol.header_timeout, Protocol.max_connections, Protocol.waiting = header_timeout, max_connections, {}
    return Protocol


def open_files_limit() -> int:
    """Raises this process's soft limit on open files to its hard limit (as Go's runtime does: the soft
    limit is often 1024 where the hard one is far higher) and returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # kept as it was (an infinite hard limit above the kernel's nr_open, for one)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(descriptors: int) -> int:
    """The most HTTP connections to serve at once with `descriptors` open files: each may hold, while its
    request waits on the fleet, a store connection and a result-backend connection too (up to their pools'
    sizes); the broker's pool and RESERVED_DESCRIPTORS come off the top. The largest n with
    n + min(n, STORE_CONNECTIONS) + min(n, RESULT_CONNECTIONS) <= the rest, found in each of its three
    ranges (n under both pools' sizes, between them, over both)."""
    free = descriptors - RESERVED_DESCRIPTORS - BROKER_CONNECTIONS
    return max(1, min(free // 3, RESULT_CONNECTIONS), min((free - RESULT_CONNECTIONS) // 2, STORE_CONNECTIONS),
               free - STORE_CONNECTIONS - RESULT_CONNECTIONS)


def serve(config: GatewayConfig, host: str, port: int) -> None:
    """Serves the gateway with uvicorn until interrupted."""
    descriptors = open_files_limit()
    connections = connection_limit(descriptors)
    print(f"relay gateway: request heads within {config.header_timeout:g} s; at most {connections} connections at "
          f"once ({descriptors} open files)", file=sys.stderr)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False,
                timeout_keep_alive=5, timeout_graceful_shutdown=10,
                http=gateway_protocol(config.header_timeout, connections),
                limit_concurrency=connections + 1)  # uvicorn's 503 when a head comes and more are open


def run_gateway(args: argparse.Namespace) -> int:
    """`relay gateway`: refuses to serve without RELAY_GATEWAY_TOKEN unless --insecure."""
    token = os.environ.get("RELAY_GATEWAY_TOKEN") or None
    if token is None and not args.insecure:
        print("relay gateway: RELAY_GATEWAY_TOKEN is not set; set it (clients then send `Authorization: Bearer "
              "TOKEN`) or pass --insecure to serve without authentication", file=sys.stderr)
        return 2
    if token is None:
        print("relay gateway: --insecure: serving WITHOUT authentication", file=sys.stderr)
    config = GatewayConfig(token, args.timeout, args.read_timeout, args.max_body, os.environ.get("RELAY_BROKER_URL"),
                           os.environ.get("RELAY_RESULT_BACKEND"), os.environ.get("RELAY_STORE_URL"),
                           header_timeout=args.header_timeout)
    serve(config, args.host, args.port)
    return 0
