"""The OHIF viewer end to end: headless Chromium (Debian's, driven by Selenium) opens a study's viewer URL, signs
in on identity's page, and the pushed CT is drawn from our /dicomweb with the OIDC access token.

The platform runs in this process, its gateway on a fixed port that is also the public URL (the token issuer,
the OIDC authority and the redirect URI the browser comes back to). Needs `make tools viewer`: skipped without
Chromium or the prepared viewer, failed under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from pydicom.uid import generate_uid

from gateway.viewer import MARKER, study_url
from support.platform import DEMO_PASSWORD, KINDS, platform_of
from support.servers import unavailable
from support.studies import ORG_ROOT, ct_instance, storescu
from telerad.platform import Platform

pytestmark = pytest.mark.integration

VIEWER_DIR = Path(__file__).resolve().parents[2] / "var" / "ohif" / "viewer"
SIZE = 128
#: Drawing the first image takes OHIF 10-20 s on two busy cores with a software rasteriser.
DRAWN_WITHIN_SECONDS = 180

#: The cornerstone viewport's canvas: its size, and where its bright (> 200) and dark (< 55) pixels are.
CANVAS_PIXELS = """
const canvas = document.querySelector('canvas.cornerstone-canvas');
if (!canvas || !canvas.width || !canvas.height) return null;
const {width, height} = canvas;
const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
let bright = 0, dark = 0, minX = width, maxX = -1, minY = height, maxY = -1;
for (let y = 0; y < height; y++) {
  for (let x = 0; x < width; x++) {
    const i = (y * width + x) * 4, value = (data[i] + data[i + 1] + data[i + 2]) / 3;
    if (value > 200) {
      bright++;
      minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
    } else if (value < 55) {
      dark++;
    }
  }
}
return {width, height, bright, dark, minX, maxX, minY, maxY};
"""


@dataclass(frozen=True)
class Visit:
    sign_in_page: str
    sign_in_title: str
    final_url: str
    canvas: dict[str, int]
    console: list[dict[str, Any]]
    responses: list[tuple[int, str]]  # (status, url) of every response the page received


def browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        unavailable("Debian's chromium and chromium-driver (make tools)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium (pip install -e '.[dev]')")
    if not (VIEWER_DIR / MARKER).is_file():
        unavailable(f"the OHIF viewer in {VIEWER_DIR} (make viewer)")
    assert chromium is not None and driver is not None
    return chromium, driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=KINDS)
async def platform(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                   ) -> AsyncIterator[Platform]:
    browser_paths()
    port = free_port()
    monkeypatch.setenv("TELERAD_PUBLIC_URL", f"http://127.0.0.1:{port}")  # what the browser sees is the issuer
    gateway = {"http_port": port, "viewer_dir": VIEWER_DIR}
    async with platform_of(request.param, tmp_path / "platform", gateway=gateway) as running:
        yield running


def write_half_bright_ct(folder: Path) -> tuple[str, list[Path]]:
    """A CT series whose left half is bone (+1000 HU: white at its window 40/400) and right half air (black)."""
    folder.mkdir(parents=True)
    study_uid, series_uid = generate_uid(ORG_ROOT), generate_uid(ORG_ROOT)
    stored = np.zeros((SIZE, SIZE), dtype=np.uint16)
    stored[:, : SIZE // 2] = 1000 + 1024  # RescaleIntercept -1024
    files = []
    for number in (1, 2, 3):
        dataset = ct_instance(study_uid, series_uid, 1, number, stored.tobytes(), SIZE, "ACCVIEW1", "PATVIEW1",
                              "Viewer^Test")
        path = folder / f"i{number}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return study_uid, files


def open_study(url: str, email: str, password: str) -> Visit:
    """Blocking (Selenium): run in a thread, since the platform answers on this test's event loop."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--enable-unsafe-swiftshader", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: urlsplit(d.current_url).path == "/oidc/authorize")
        sign_in_page, sign_in_title = driver.current_url, driver.title
        driver.find_element(By.NAME, "email").send_keys(email)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]:not([name=cancel])").click()

        def drawn(d: Any) -> dict[str, int] | None:
            pixels: dict[str, int] | None = d.execute_script(CANVAS_PIXELS)
            return pixels if pixels and pixels["bright"] > 1000 else None

        canvas = WebDriverWait(driver, DRAWN_WITHIN_SECONDS, poll_frequency=0.25).until(drawn)
        canvas = drawn(driver) or canvas  # once more: the first draw may have been mid-resize
        responses = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.responseReceived":
                response = message["params"]["response"]
                responses.append((int(response["status"]), str(response["url"])))
        return Visit(sign_in_page, sign_in_title, driver.current_url, canvas, driver.get_log("browser"), responses)
    finally:
        driver.quit()


async def test_a_radiologist_signs_in_and_the_pushed_ct_is_drawn(platform: Platform, tmp_path: Path) -> None:
    study_uid, files = write_half_bright_ct(tmp_path / "study")
    await storescu(platform.dicom_port, *files)
    public_url = platform.common.public_url
    assert public_url == platform.gateway_url

    visit = await asyncio.to_thread(open_study, study_url(public_url, study_uid), "radiologist@demo.telerad",
                                    DEMO_PASSWORD)

    assert visit.sign_in_page.startswith(f"{public_url}/oidc/authorize?client_id=ohif&")
    assert "code_challenge_method=S256" in visit.sign_in_page and visit.sign_in_title.startswith("Sign in")
    assert visit.final_url == study_url(public_url, study_uid)  # back from /viewer/callback where it started

    canvas = visit.canvas
    width, height = canvas["maxX"] - canvas["minX"] + 1, canvas["maxY"] - canvas["minY"] + 1
    assert 0.4 < width / height < 0.6, canvas  # the white is the left half of a square image...
    assert canvas["bright"] > 0.95 * width * height, canvas  # ...solid...
    assert canvas["maxX"] <= canvas["width"] / 2 + 2, canvas  # ...left of the centre, the air black beside it
    assert canvas["dark"] > canvas["bright"], canvas

    dicomweb = [(status, url) for status, url in visit.responses if urlsplit(url).path.startswith("/dicomweb/")]
    assert [r for r in dicomweb if r[0] != 200] == [], dicomweb
    paths = [urlsplit(url).path for _, url in dicomweb]
    assert "/dicomweb/studies" in paths  # QIDO-RS: the study
    assert any(path.endswith("/series") for path in paths)  # its series
    assert any(path.endswith("/metadata") for path in paths)  # WADO-RS metadata
    assert any("/frames/" in path for path in paths)  # and the pixels
    failed = [(status, url) for status, url in visit.responses if status >= 400]
    assert failed == []
    severe = [entry["message"] for entry in visit.console if entry["level"] == "SEVERE"]
    assert severe == []  # no resource that failed to load, no Content-Security-Policy violation
