"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), for page tests.

Debian's ``chromium`` (``make system-deps``) is started with ``--remote-debugging-port=0``;
its ``DevToolsActivePort`` file gives the port, and one page target is driven with
``websocket-client``: navigate, evaluate JavaScript, collect console errors and uncaught
exceptions, take a full-page screenshot. Used by tests/test_dashboard.py and by
``python tests/browser.py URL OUT.png`` (the README screenshots).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The Chromium executable.

    Raises
    ------
    FileNotFoundError
        None is installed (``make system-deps`` installs Debian's ``chromium``).
    """
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("chromium is not installed: run `make system-deps`")


class Browser:
    """One headless Chromium with one page, closed by :meth:`close` (or ``with``).

    Parameters
    ----------
    profile
        An empty folder for the browser's profile (a test's tmp_path).
    width, height
        Viewport, CSS pixels.
    """

    def __init__(self, profile: Path, width: int = 1400, height: int = 900) -> None:
        self.width, self.height = width, height
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self.proc = subprocess.Popen(
            [
                chromium_path(),
                "--headless=new",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--hide-scrollbars",  # the same layout at every viewport height
                "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.ws = websocket.create_connection(
                self._page_url(profile), timeout=30, suppress_origin=True
            )
            for method in ("Runtime.enable", "Log.enable", "Page.enable"):
                self.send(method)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _page_url(self, profile: Path, timeout_s: float = 30.0) -> str:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            if port_file.exists() and port_file.read_text().strip():
                port = int(port_file.read_text().split()[0])
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    targets = json.loads(r.read())
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and stop the browser (the process this object started)."""
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- protocol ----------------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result; events seen meanwhile are handled.

        Raises
        ------
        RuntimeError
            The browser answered with an error.
        """
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait until its load event."""
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout_s=30)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited).

        Raises
        ------
        RuntimeError
            The expression threw.
        """
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, every_s: float = 0.2) -> Any:
        """Evaluate ``expression`` until it is truthy; returns that value.

        Raises
        ------
        TimeoutError
            Still falsy after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {value!r} after {timeout_s} s")
            time.sleep(every_s)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page (the viewport grown to the page's height)."""
        for _ in range(3):  # the layout may change with the height: until it is stable
            height = int(self.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom)"))
            if height == self.evaluate("window.innerHeight"):
                break
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=self.width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            time.sleep(0.3)  # the page re-lays out and redraws at the new size
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


#: JavaScript: per chart, canvas size, pixels painted, saturated (series, not axes or text:
#: those are grey) and of a colour (r, g, b within 40).
PIXELS_JS = """
((rgb) => Array.from(document.querySelectorAll('.chart')).map((box) => {
  const c = box.querySelector('canvas');
  if (!c) return {id: box.id, width: 0, height: 0, painted: 0, saturated: 0, colour: 0};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0, saturated = 0, colour = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 0) continue;
    painted++;
    if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) saturated++;
    if (Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i + 1] - rgb[1]) < 40
        && Math.abs(d[i + 2] - rgb[2]) < 40) colour++;
  }
  return {id: box.id, width: c.width, height: c.height, painted: painted, saturated: saturated,
          colour: colour};
}))(%s)
"""


def chart_pixels(browser: Browser, rgb: tuple[int, int, int]) -> dict[str, dict[str, int]]:
    """Per chart id: canvas ``width``, ``height``; ``painted``, ``saturated`` pixels, of ``rgb``."""
    rows = browser.evaluate(PIXELS_JS % json.dumps(list(rgb)))
    return {row["id"]: row for row in rows}


if __name__ == "__main__":  # python tests/browser.py URL OUT.png [WAIT_JS]
    import tempfile

    url, out = sys.argv[1], Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as profile, Browser(Path(profile)) as b:
        b.navigate(url)
        b.wait_for(sys.argv[3] if len(sys.argv) > 3 else "document.body.dataset.rendered")
        b.screenshot(out)
    print(out)
