"""Open an HTML file in headless Chromium over the DevTools protocol: console errors, requests, a screenshot."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_HEIGHT = 2000  # px of a full-page screenshot kept (long sample tables are cut)


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for (the file itself first)
    title: str = ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _DevTools:
    def __init__(self, url: str):
        import websocket

        self.socket = websocket.create_connection(url, timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {timeout} s")
            self.events.append(json.loads(self.socket.recv()))


def check_page(html_file: Path, screenshot: Path, *, click_sortable: bool = True) -> PageCheck:
    """Load `html_file`, save a full-page PNG, click a sortable header twice; what went wrong on the page."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found")
    port = _free_port()
    # Chromium's helper processes may still write the profile after the browser is killed
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                    f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                                    "--window-size=1200,900", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            target = _page_target(port)
            tools = _DevTools(target)
            for domain in ("Page", "Runtime", "Log", "Network"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=Path(html_file).resolve().as_uri())
            tools.wait_for("Page.loadEventFired")
            time.sleep(0.3)
            metrics = tools.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            height = min(int(size["height"]), MAX_HEIGHT)
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": max(int(size["width"]), 1200), "height": height,
                                    "scale": 1})
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            if click_sortable:  # after the picture: sorting must run without errors, both ways
                tools.call("Runtime.evaluate", expression="var h = document.querySelector('table.sortable th');"
                           " if (h) { h.click(); h.click(); }")
                time.sleep(0.3)
            title = tools.call("Runtime.evaluate", expression="document.title")["result"].get("value", "")
            tools.socket.close()
        finally:
            process.kill()
            process.wait()
    return _summarise(tools.events, title)


def _page_target(port: int) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as reply:
                pages = [t for t in json.load(reply) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("Chromium did not open its DevTools port")
        time.sleep(0.2)


def _summarise(events: list[dict], title: str) -> PageCheck:
    check = PageCheck(title=title)
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            check.console_errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            check.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                 for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            check.console_errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            check.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            check.failed_requests.append(f"{params.get('errorText')} ({params.get('requestId')})")
    return check
