"""A real headless Chromium for the tests, and a loopback web server that logs requests.

The browser is Debian's ``chromium`` driven through ``chromedriver`` (``apt-get install
chromium chromium-driver``) with Selenium (``pip install 'iclopt[browser]'``); nothing is
downloaded at run time. The browser runs with a fresh profile and with every background
network feature off, so the only requests it makes are the ones a page asks for. Without
the browser the tests that need it skip, saying why; CI sets ``ICLOPT_REQUIRE_BROWSER=1``
so that they fail instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("ICLOPT_CHROMIUM", "chromium")
CHROMEDRIVER = os.environ.get("ICLOPT_CHROMEDRIVER", "chromedriver")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1200,900",
    "--force-device-scale-factor=1",
)


def _unavailable(why: str) -> None:
    if os.environ.get("ICLOPT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"a browser is required here (ICLOPT_REQUIRE_BROWSER=1): {why}")
    pytest.skip(f"needs headless Chromium: {why}")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A Selenium driver of a fresh headless Chromium (session-wide)."""
    binary, driver_bin = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    if binary is None or driver_bin is None:
        _unavailable(
            f"{CHROMIUM if binary is None else CHROMEDRIVER} is not on PATH "
            "(apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("Selenium is missing (pip install 'iclopt[browser]')")
    profile = tempfile.mkdtemp(prefix="iclopt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no telemetry
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_bin))
    except Exception as exc:  # the browser exists but does not start
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"chromium did not start: {type(exc).__name__}: {exc}")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``folder`` on 127.0.0.1 (a free port); yields its URL and the paths requested."""
    requested: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

        def do_POST(self) -> None:
            requested.append(f"POST {self.path}")
            self.send_error(405)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
