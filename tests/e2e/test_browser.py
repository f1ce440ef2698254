"""`course lab` in a real headless browser: JupyterLab and the MLflow UI render, screenshots in build/.

Uses Debian's chromium and chromedriver (nothing is downloaded). Where they are not installed
the tests skip with the command that installs them — except in CI (`CI=true`), where
`.ci/run` installs them and a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "build" / "screenshots"


def _require_browser() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    message = "Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture()
def browser(tmp_path):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def lab_urls(tmp_path, course_settings):
    env = {**os.environ, "COURSE_WORKSPACE": str(tmp_path / "ws"), "COURSE_MLFLOW_PORT": str(free_port())}
    command = [sys.executable, "-m", "course_utils.cli"]
    started = subprocess.run([*command, "lab"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    try:
        assert started.returncode == 0, started.stderr
        mlflow_url = re.search(r"MLflow UI:\s+(\S+)", started.stdout).group(1)
        lab_url = re.search(r"JupyterLab:\s+(\S+)", started.stdout).group(1)
        assert mlflow_url.startswith("http://127.0.0.1:") and lab_url.startswith("http://127.0.0.1:")
        yield mlflow_url, lab_url
    finally:
        down = subprocess.run([*command, "services", "down"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert "jupyterlab: stopped" in down.stdout and "mlflow: stopped" in down.stdout


@pytest.mark.slow
@pytest.mark.browser
def test_course_lab_serves_jupyterlab_and_the_mlflow_ui(browser, lab_urls) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    mlflow_url, lab_url = lab_urls
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    browser.get(mlflow_url)
    WebDriverWait(browser, 120).until(lambda d: "Experiments" in d.find_element(By.TAG_NAME, "body").text)
    assert "MLflow" in browser.title
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-ui.png"))

    browser.get(lab_url)
    WebDriverWait(browser, 180).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-Launcher, .jp-DirListing-content")))
    WebDriverWait(browser, 60).until(lambda d: "notebooks" in d.find_element(By.CSS_SELECTOR, ".jp-DirListing-content").text)
    kernel_cards = browser.find_elements(By.CSS_SELECTOR, ".jp-LauncherCard")
    assert any("ML in Production" in (card.get_attribute("title") or card.text) for card in kernel_cards), \
        "the course kernel is offered in the launcher"
    browser.save_screenshot(str(SCREENSHOTS / "jupyterlab.png"))
