"""Headless Chromium driven over the DevTools protocol (websockets, a dependency of uvicorn[standard]): a live
page that keeps running its scripts while a test changes the fleet under it, read through its DOM.

Chromium runs in its own process group with a profile of its own; `close` ends the group (also after a
failure: use it as a context manager).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (.ci/test installs it with apt)")
    return exe


class Page:
    """One tab of a headless Chromium."""

    def __init__(self, workdir: Path, width: int = 1400, height: int = 1000) -> None:
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "chromium.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                 f"--window-size={width},{height}", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                 "about:blank"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ws: ClientConnection | None = None
        self.next_id = 0
        self.session = ""
        self.problems: list[str] = []  # the page's uncaught exceptions and console errors
        try:
            self.ws = connect(self.browser_url(profile / "DevToolsActivePort"), max_size=None, open_timeout=30)
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def browser_url(self, port_file: Path) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if port_file.exists() and len(lines := port_file.read_text().split()) == 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not start:\n{self.log.read_text()}")

    def send(self, method: str, **params: Any) -> dict:
        """A DevTools command's result (events that arrive meanwhile are noted if they are problems)."""
        assert self.ws is not None
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            got = json.loads(self.ws.recv(timeout=60))
            if got.get("id") == self.next_id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})
            self.note(got)

    def note(self, event: dict) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            self.problems.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error" \
                and params["entry"].get("source") != "network":  # a 401 before signing in is expected
            self.problems.append(params["entry"].get("text", "")[:500])

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", 30, "the page to load")

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float, what: str, pause: float = 0.05, show: str = "") -> Any:
        """The first truthy value of `expression`, evaluated every `pause` seconds; on a timeout the failure
        shows the value of `show` (what the page shows, say)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}" +
                                     (f"; the page shows {self.js(show)}" if show else ""))
            time.sleep(pause)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
