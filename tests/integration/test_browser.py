"""A real browser sees the fleet: headless Chromium opens Flower's task pages after relay tasks ran,
and the gateway's interactive docs.

Screenshots are saved as test artifacts in $RELAY_ARTIFACTS (default: artifacts/ in the checkout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import eventually
from relay_workers.devfleet import ROOT

from .test_flower import get, watched  # noqa: F401 - the fixture

ARTIFACTS = Path(os.environ.get("RELAY_ARTIFACTS", ROOT / "artifacts"))


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (.ci/test installs it with apt)")
    return exe


def browse(url: str, screenshot: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1400,900", "--virtual-time-budget=8000"]
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True)
    return dom.stdout


def test_flower_task_page_shows_relay_tasks(watched) -> None:  # noqa: F811
    fleet, flower = watched
    client = fleet.client()
    client.deploy("server counter { state { n: 0 }\n receive fn add(k) { state.n += k\n state.n } }")
    eventually(lambda: all(s["status"] == "running" for s in client.servers()), 30, "counter running")
    time.sleep(1)
    for k in range(2):
        client.call("counter", "add", k + 1)
    sent = client.send("counter", "add", 3)
    client.eval("counter.add(10)")
    client.close()
    eventually(lambda: sum(t["name"] == "relay.deliver" for t in get(f"{flower}/api/tasks").values()) >= 4, 30,
               "the messages in Flower", 0.3)
    shot = ARTIFACTS / "flower-tasks.png"
    dom = browse(f"{flower}/tasks", shot)
    print(f"screenshot: {shot}")
    assert "relay.deliver" in dom and "relay.eval" in dom and sent in dom
    assert shot.stat().st_size > 10_000
    dom = browse(f"{flower}/task/{sent}", ARTIFACTS / "flower-message.png")
    assert "counter.add(3)" in dom and "SUCCESS" in dom
    dom = browse(f"{flower}/workers", ARTIFACTS / "flower-workers.png")
    assert "w1@relay-test" in dom


def test_gateway_docs_page_shows_the_api(watched) -> None:  # noqa: F811
    from relay_workers.devfleet import free_port
    fleet, _flower = watched
    port = free_port()
    fleet.start_process("gateway", ["relay_workers.cli", "gateway", "--port", str(port)], RELAY_GATEWAY_TOKEN="t0ken")
    gateway = f"http://127.0.0.1:{port}"
    eventually(lambda: get(f"{gateway}/healthz"), 30, "the gateway")
    shot = ARTIFACTS / "gateway-docs.png"
    dom = browse(f"{gateway}/docs", shot)
    print(f"screenshot: {shot}")
    assert "/v1/servers/{name}/{handler}" in dom and "/v1/eval" in dom and "/rpc" in dom
    assert shot.stat().st_size > 10_000
