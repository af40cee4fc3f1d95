"""The gateway against connections that send no request: `relay gateway` as a process, sockets opened to it
that send nothing, part of a request head, or a head one byte at a time, and a process with few open files
(RLIMIT_NOFILE) facing more such connections than it has descriptors."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from relay_workers.devfleet import ROOT, LocalFleet, free_port
from relay_workers.gateway.fleet import RESULT_CONNECTIONS, STORE_CONNECTIONS
from relay_workers.gateway.serving import RESERVED_DESCRIPTORS, connection_limit

from .conftest import wait_answering
from .test_gateway import AUTH, TOKEN, stop

HEADER_TIMEOUT = 2.0
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends a head never comes
TRICKLE = PARTIAL + b"X-Slow: " + b"a" * 1000  # sent one byte at a time


@contextmanager
def gateway(redis_url: str, logs, *args: str, open_files: int | None = None) -> Iterator[tuple[str, int]]:
    """`relay gateway` serving (its URL and PID), with at most `open_files` descriptors when given; stopped
    by its process group at the end."""

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "relay_workers.cli", "gateway", "--port", str(port), *args],
                            cwd=ROOT, env=dict(LocalFleet.on(redis_url, logs=logs).env, RELAY_GATEWAY_TOKEN=TOKEN),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=limit)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{url}/healthz", proc, "the gateway did not start")
        yield url, proc.pid
    finally:
        out = stop(proc)
        assert "Traceback" not in out, out


def connect(url: str, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    s.sendall(first)
    return s


def test_connections_without_a_request_head_are_closed_at_the_header_timeout(redis_url, tmp_path) -> None:
    """Sockets that send nothing, part of a head, a head one byte every 0.25 s, or part of a second head
    after a first answer: each is closed by the gateway --header-timeout after it opened (after its first
    answer), with a 408 when part of a head came; a normal client is answered meanwhile."""
    with gateway(redis_url, tmp_path, "--header-timeout", str(HEADER_TIMEOUT)) as (url, _pid):
        kinds: dict[socket.socket, str] = {}
        started: dict[socket.socket, float] = {}
        for kind, first, count in (("silent", b"", 100), ("partial", PARTIAL, 100), ("trickle", TRICKLE[:1], 10)):
            for _ in range(count):
                s = connect(url, first)
                kinds[s], started[s] = kind, time.monotonic()
        for _ in range(10):  # a first request answered, then part of a second
            s = connect(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b'{"status":"ok"}'):
                first += s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            kinds[s], started[s] = "after an answer", time.monotonic()
            s.sendall(PARTIAL)
        t = time.monotonic()
        assert httpx.get(f"{url}/healthz").status_code == 200 and time.monotonic() - t < 0.5
        closed, answers = watch(kinds, started, HEADER_TIMEOUT + 3)
        for s in kinds:
            s.close()
    assert len(closed) == len(kinds), f"{len(kinds) - len(closed)} of {len(kinds)} still open"
    for kind in ("silent", "partial", "trickle", "after an answer"):
        times = [closed[s] for s in kinds if kinds[s] == kind]
        print(f"\n{len(times)} {kind}: closed {min(times):.2f} to {max(times):.2f} s after the head was due to "
              f"start (--header-timeout {HEADER_TIMEOUT:g})", end="")
        assert HEADER_TIMEOUT - 0.05 <= min(times) and max(times) <= HEADER_TIMEOUT + 1.0
    for s, kind in kinds.items():
        if kind == "silent":
            assert answers[s] == b""
        elif kind != "trickle":  # a trickler may find its socket reset by the byte it sent after the close
            assert answers[s].startswith(b"HTTP/1.1 408") and b'"kind":"timeout"' in answers[s], answers[s]


def watch(kinds: dict[socket.socket, str], started: dict[socket.socket, float],
          seconds: float) -> tuple[dict[socket.socket, float], dict[socket.socket, bytes]]:
    """Reads every socket until the gateway closes it (a trickler sends a byte of its head every 0.25 s):
    the seconds from `started` to each close, and what each received."""
    selector = selectors.DefaultSelector()
    sent = dict.fromkeys(kinds, 1)
    for s in kinds:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    closed: dict[socket.socket, float] = {}
    answers = {s: b"" for s in kinds}
    end = next_byte = time.monotonic()
    end += seconds
    while len(closed) < len(kinds) and time.monotonic() < end:
        if time.monotonic() >= next_byte:
            next_byte += 0.25
            for s in kinds:
                if kinds[s] == "trickle" and s not in closed:
                    try:
                        s.send(TRICKLE[sent[s]: sent[s] + 1])
                        sent[s] += 1
                    except OSError:
                        pass  # closed: the read below sees it
        for key, _ in selector.select(0.05):
            s = key.fileobj
            try:
                data = s.recv(65536)  # type: ignore[union-attr]
            except ConnectionResetError:
                data = b""
            if data:
                answers[s] += data  # type: ignore[index]
            else:
                closed[s] = time.monotonic() - started[s]  # type: ignore[index]
                selector.unregister(s)
    selector.close()
    return closed, answers


def test_more_connections_than_descriptors_shed_idle_ones_then_503(redis_url, tmp_path) -> None:
    """A gateway with 512 open files faced with 400 silent sockets (its head deadline 30 s): past its
    connection limit each new connection closes the one that waited longest for a head, so its descriptors
    stay within bounds and a normal client is answered; when every connection is busy with a request, a new
    client gets a 503 (uvicorn's), not a reset."""
    limit = connection_limit(512)
    with gateway(redis_url, tmp_path, "--header-timeout", "30", "--read-timeout", "30",
                 open_files=512) as (url, pid):
        silent = [connect(url) for _ in range(400)]
        response = httpx.get(f"{url}/healthz", timeout=5)
        descriptors = len(os.listdir(f"/proc/{pid}/fd"))
        print(f"\n400 silent sockets, connection limit {limit}: the gateway holds {descriptors} descriptors "
              f"of 512; /healthz {response.status_code}", end="")
        assert response.status_code == 200 and descriptors <= limit + 50
        for s in silent:
            s.settimeout(5)
        shed = [s.recv(1) == b"" for s in silent[: 400 - limit]]  # the oldest: closed by the newer ones
        assert all(shed)
        for s in silent:
            s.close()
        busy = [connect(url, b"POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH["Authorization"].encode()
                        + b"\r\nContent-Length: 100\r\n\r\n") for _ in range(limit)]  # each awaits its body
        try:
            time.sleep(0.5)
            refused = httpx.get(f"{url}/healthz", timeout=5)
            print(f"; {limit} requests awaiting their bodies: /healthz {refused.status_code}", end="")
            assert refused.status_code == 503 and refused.text == "Service Unavailable"
        finally:
            for s in busy:
                s.close()
        time.sleep(0.5)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_connection_limit_fits_the_descriptors() -> None:
    """n connections, each with a store and a result-backend connection (up to their pools), the broker's
    pool and the reserve fit in the open files; n + 1 do not."""
    def needs(n: int) -> int:
        return n + min(n, STORE_CONNECTIONS) + min(n, RESULT_CONNECTIONS) + 10 + RESERVED_DESCRIPTORS

    assert (connection_limit(1024), connection_limit(512), connection_limit(20000)) == (425, 169, 18826)
    for files in range(200, 6000, 7):
        n = connection_limit(files)
        assert needs(n) <= files < needs(n + 1)
