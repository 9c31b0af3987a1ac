"""A real browser for the viewer tests: Debian's headless Chromium through its chromedriver
(selenium's own browser download does not work offline), software WebGL (SwiftShader).

`open_page` loads a page, waits until it has drawn, and reports what a user would see: the
screenshot, whether the WebGL canvas shows a picture, the console errors of the page's own
loading, and every URL the page requested (none may leave the server: no CDN)."""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REQUIRED = os.environ.get("FMRISCALING_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: pycortex's optional Leap Motion controller socket: refused everywhere, harmlessly
LEAP_MOTION = "127.0.0.1:6437"
#: what headless Chromium needs: software WebGL, and a canvas 2D that is rasterised on the CPU
#: (pycortex rasterises its overlay SVG through one: 29 s on SwiftShader, 1 s on the CPU)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-accelerated-2d-canvas",
    "--window-size=1000,700",
)


def chromium():
    """A selenium driver of Debian's Chromium, or a skip (a failure with
    FMRISCALING_REQUIRE_BROWSER=1, as `.ci/run` sets)."""
    reason = None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - a dev install has it
        reason = "selenium is not installed (pip install -e .[dev])"
    if reason is None and not (CHROMIUM and CHROMEDRIVER):
        reason = "Chromium or chromedriver not found (apt-get install chromium chromium-driver)"
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"FMRISCALING_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@dataclass
class PageView:
    seconds: float
    screenshot: bytes
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def image(self) -> np.ndarray:
        import matplotlib.image

        return matplotlib.image.imread(io.BytesIO(self.screenshot), format="png")

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.screenshot)
        return path


def _wait(driver, condition: str, timeout: float, what: str) -> None:
    start = time.monotonic()
    while not driver.execute_script(condition):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} after {timeout:.0f} s")
        time.sleep(0.25)


def open_page(driver, url: str, *, kind: str, timeout: float = 120.0) -> PageView:
    """Load ``url`` (a pycortex viewer or a nilearn page) and wait until it has drawn.

    pycortex: its loading indicator (``#ctmload``, "Loading brain...") is hidden once the
    surfaces are in. nilearn: plotly has drawn its WebGL scene (``.gl-container canvas``).
    """
    import json

    driver.get_log("browser")  # drop what earlier pages left
    driver.get_log("performance")
    start = time.monotonic()
    driver.get(url)
    if kind == "pycortex":
        _wait(
            driver,
            "var e = document.getElementById('ctmload');"
            "return e !== null && getComputedStyle(e).display === 'none';",
            timeout,
            f"{url} still shows 'Loading brain...'",
        )
    else:
        _wait(
            driver,
            "return document.readyState === 'complete' &&"
            " document.querySelector('.js-plotly-plot .gl-container canvas') !== null;",
            timeout,
            f"{url} drew no plotly WebGL scene",
        )
    time.sleep(1.0)  # a frame or two after the last load
    seconds = time.monotonic() - start
    screenshot = driver.get_screenshot_as_png()
    errors = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and LEAP_MOTION not in entry["message"]
    ]
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    return PageView(seconds, screenshot, errors, requests)


def picture_shown(image: np.ndarray) -> float:
    """Fraction of the screenshot's pixels that differ from its most common colour (the
    background): ~0 for a blank page or a canvas that drew nothing."""
    rgb = np.round(image[..., :3] * 255).astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    _, counts = np.unique(packed, return_counts=True)
    return float(1.0 - counts.max() / packed.size)


def distinct_colours(image: np.ndarray) -> int:
    rgb = np.round(image[..., :3] * 255).astype(np.int32)
    return int(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).size)
