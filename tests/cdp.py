"""A minimal headless-Chromium driver over the DevTools protocol (websockets), for tests.

It opens one page, records what a reader's browser would complain about (failed loads, console
errors, uncaught exceptions, log errors) and every URL requested, and takes a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get when absent (idempotent; needs root)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("chromium is not installed; run: sudo apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("apt-get installed chromium but it is not on PATH")
    return found


@dataclass
class PageLoad:
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    clipped: bytes = b""  # the element `clip` selects, alone (empty when not asked)
    evaluated: dict[str, Any] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        return self.failed + self.console_errors + self.exceptions + self.log_errors


class _Session:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            got = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if got.get("id") == self.next_id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                result: dict[str, Any] = got.get("result", {})
                return result
            self.events.append(got)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while True:
            got = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(got)
            if got.get("method") == method:
                return

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return


def open_page(
    chromium: str,
    url: str,
    profile: Path,
    *,
    width: int = 1200,
    expressions: dict[str, str],
    clip: str | None = None,
) -> PageLoad:
    from websockets.sync.client import connect

    profile.mkdir(parents=True, exist_ok=True)
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)
    log = (profile / "chromium.log").open("w")
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"chromium did not start: {(profile / 'chromium.log').read_text()}"
                )
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30) as ws:
            s = _Session(ws)
            target = s.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = s.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log", "Network"):
                s.call(f"{domain}.enable", session=sid)
            s.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=sid,
            )
            nav = s.call("Page.navigate", {"url": url}, session=sid)
            if nav.get("errorText"):
                raise RuntimeError(f"navigation failed: {nav['errorText']}")
            s.wait_for("Page.loadEventFired")
            s.drain(0.5)  # late console messages
            out = PageLoad()
            for name, expr in expressions.items():
                res = s.call(
                    "Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sid
                )
                out.evaluated[name] = res.get("result", {}).get("value")
            size = s.call("Page.getLayoutMetrics", session=sid)["cssContentSize"]
            height = int(min(size["height"], 16000))
            s.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=sid,
            )
            shot = s.call("Page.captureScreenshot", {"format": "png"}, session=sid)
            out.screenshot = base64.b64decode(shot["data"])
            if clip is not None:
                box = s.call(
                    "Runtime.evaluate",
                    {
                        "expression": f"(() => {{ const r = document.querySelector("
                        f"{json.dumps(clip)}).getBoundingClientRect(); return [r.x, r.y + "
                        "window.scrollY, r.width, r.height]; })()",
                        "returnByValue": True,
                    },
                    session=sid,
                )["result"]["value"]
                x, y, w, h = box
                area = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
                part = s.call(
                    "Page.captureScreenshot", {"format": "png", "clip": area}, session=sid
                )
                out.clipped = base64.b64decode(part["data"])
            _collect(s.events, out)
            return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _collect(events: list[dict[str, Any]], out: PageLoad) -> None:
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Network.requestWillBeSent":
            out.requests.append(p["request"]["url"])
        elif m == "Network.loadingFailed":
            out.failed.append(f"load failed: {p.get('errorText')} ({p.get('requestId')})")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            out.console_errors.append(f"console.{p['type']}: {args}")
        elif m == "Runtime.exceptionThrown":
            out.exceptions.append(str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            out.log_errors.append(f"{p['entry'].get('source')}: {p['entry'].get('text')}")
