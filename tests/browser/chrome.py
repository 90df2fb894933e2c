"""Headless Chromium from Debian (/usr/bin/chromium, /usr/bin/chromedriver) driven by Selenium, for the page tests.

Nothing is downloaded: both paths are given, so Selenium Manager never runs. A fresh profile per browser; the flags
keep Chromium off the network (its background connections are refused here) and out of the sandbox (root).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1480,1100",
)
WAIT_S = 20.0

T = TypeVar("T")


def available() -> str | None:
    """None when the browser can run here, else why not."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (make test installs Debian's chromium and chromium-driver)"
    return None


@contextmanager
def chrome() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="murmur-chrome-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: Callable[[], T | None], timeout_s: float = WAIT_S, why: str = "") -> T:
    """Poll `what` until it returns something truthy (DOM races: a stale element just means "not yet")."""
    import time

    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            got = what()
            if got:
                return got
        except (StaleElementReferenceException, WebDriverException) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {why or what}: {last}")
