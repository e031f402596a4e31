"""Headless Chromium driving the viewer (Selenium): the browser tests and the documentation's screenshots.

Needs ``selenium`` (``pip install "mrseg[dev]"``) and Debian's ``chromium`` and ``chromium-driver``
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``; ``apt-get install chromium chromium-driver``). The
browser runs with a fresh profile, no GPU, no sandbox (containers run as root) and none of Chromium's
background network traffic; Selenium is given both binaries, so it never downloads one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mrseg.core.errors import MrsegError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def find_chromium() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` paths on ``PATH`` (``$MRSEG_CHROMIUM``/``$MRSEG_CHROMEDRIVER`` first), or None."""
    browser = os.environ.get("MRSEG_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = os.environ.get("MRSEG_CHROMEDRIVER") or next(filter(None, map(shutil.which, DRIVER_NAMES)), None)
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A Selenium ``webdriver.Chrome`` on headless Chromium with a ``width x height`` window, closed afterwards.

    Raises
    ------
    MrsegError
        selenium is not installed, or Chromium / chromedriver are not found.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise MrsegError('the browser helper needs selenium: pip install "mrseg[dev]"') from None
    found = find_chromium()
    if found is None:
        raise MrsegError("Chromium and chromedriver not found: apt-get install chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="mrseg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver: Any, script: str, timeout: float = 30.0, what: str = "the page") -> Any:
    """Evaluate the JavaScript expression ``script`` until truthy; return it (``TimeoutError`` after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}: {script}")
        time.sleep(0.05)


def wait_for_tiles(driver: Any, timeout: float = 60.0) -> None:
    """Wait until the viewer page has drawn every tile of every visible pane (and its vector layers)."""
    wait_until(driver, "window.mrsegView && window.mrsegView.ready && window.mrsegView.fullyLoaded()", timeout, "tiles")
    time.sleep(0.2)  # one more animation frame for the last tiles' blending


def screenshot(driver: Any, path: str | os.PathLike[str]) -> Path:
    """Save the window as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


__all__ = ["CHROMIUM_FLAGS", "find_chromium", "headless_chromium", "screenshot", "wait_for_tiles", "wait_until"]
