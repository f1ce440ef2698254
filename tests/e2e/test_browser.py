"""`course lab` in a real headless browser: what a learner sees first. Screenshots go to build/screenshots/.

- JupyterLab opens on the course overview notebook, running the course kernel, with no other kernel
  on offer and no "Jupyter news" question (the course runs offline);
- the MLflow UI link lands on the course's experiments in the "Model training" view.

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
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from course_utils.config import KERNEL_NAME
from course_utils.jupyter import COURSE_OVERVIEW
from course_utils.tracking import mlflow_ui_url
from course_utils.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "build" / "screenshots"
COURSE_KERNEL_DISPLAY_NAME = "ML in Production (.venv)"
NEWS_QUESTION = "Would you like to get notified about official Jupyter news?"
# JupyterLab asks the news question as soon as the page has loaded; this is longer than it takes.
NEWS_QUESTION_WAIT_S = 10.0

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _require_browser() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    message = "Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator:
    """A headless Chromium with a fresh profile: nothing remembered from an earlier visit (localStorage)."""
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


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory: pytest.TempPathFactory, course_settings) -> dict[str, str]:
    """A fresh workspace and a home of its own (no JupyterLab settings from the machine's user)."""
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
            "COURSE_WORKSPACE": str(tmp_path_factory.mktemp("lab-workspace")), "COURSE_MLFLOW_PORT": str(free_port())}


@pytest.fixture(scope="module")
def lab_urls(lab_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """`course lab` in that workspace: the MLflow UI and JupyterLab addresses it prints."""
    env = lab_env
    command = [sys.executable, "-m", "course_utils.cli"]
    started = subprocess.run([*command, "lab"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    try:
        assert started.returncode == 0, started.stderr
        mlflow_url = re.search(r"MLflow UI:\s+(\S+)", started.stdout).group(1)
        lab_url = re.search(r"JupyterLab:\s+(\S+)", started.stdout).group(1)
        yield mlflow_url, lab_url
    finally:
        down = subprocess.run([*command, "services", "down"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert "jupyterlab: stopped" in down.stdout and "mlflow: stopped" in down.stdout, down.stdout


def _body_text(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def test_jupyterlab_opens_the_course_overview_with_the_course_kernel_and_no_news_question(browser, lab_urls) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, lab_url = lab_urls
    assert lab_url.startswith("http://127.0.0.1:") and f"/lab/tree/{COURSE_OVERVIEW}?token=" in lab_url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # The server offers the course kernel only, and makes it the default.
    address = urlsplit(lab_url)
    token = parse_qs(address.query)["token"][0]
    specs = requests.get(f"{address.scheme}://{address.netloc}/api/kernelspecs",
                         headers={"Authorization": f"token {token}"}, timeout=30).json()
    assert (specs["default"], sorted(specs["kernelspecs"])) == (KERNEL_NAME, [KERNEL_NAME])

    browser.get(lab_url)
    current_tab = ".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel"
    WebDriverWait(browser, 180).until(
        lambda d: [tab.text for tab in d.find_elements(By.CSS_SELECTOR, current_tab)] == ["00_course_overview.ipynb"])
    kernel_button = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName"
    WebDriverWait(browser, 120).until(
        lambda d: [b.text for b in d.find_elements(By.CSS_SELECTOR, kernel_button)] == [COURSE_KERNEL_DISPLAY_NAME])
    time.sleep(NEWS_QUESTION_WAIT_S)  # give the question the time it would take to appear
    assert NEWS_QUESTION not in _body_text(browser)
    browser.save_screenshot(str(SCREENSHOTS / "jupyterlab.png"))


def test_the_mlflow_link_lands_on_the_course_experiments_in_the_model_training_view(browser, lab_urls) -> None:
    from mlflow import MlflowClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    printed_link, _ = lab_urls
    assert printed_link.startswith("http://127.0.0.1:")
    tracking_uri = printed_link.split("/#/")[0]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    experiment = "/course/00_course_overview"  # what lesson 00 creates; the UI lists it by name
    MlflowClient(tracking_uri).create_experiment(experiment)

    # The link `course lab` prints, as a learner clicks it: it asks for the Model training view.
    assert printed_link == mlflow_ui_url(tracking_uri)
    browser.get(printed_link)
    WebDriverWait(browser, 120).until(lambda d: experiment in _body_text(d))
    # The two views differ in their sidebar: Model training has the model registry, GenAI has prompts instead.
    sidebar_links = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "nav a")]
    assert "Model registry" in sidebar_links and "Prompts" not in sidebar_links, sidebar_links
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-ui.png"))


def test_a_second_course_lab_prints_the_running_labs_address(lab_env, lab_urls) -> None:
    """`course lab` again reuses the running JupyterLab: it prints that one's port and token, not a new pair."""
    _, lab_url = lab_urls
    again = subprocess.run([sys.executable, "-m", "course_utils.cli", "lab"], capture_output=True, text=True,
                           env=lab_env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.search(r"JupyterLab:\s+(\S+)", again.stdout).group(1) == lab_url


def test_lab_keeps_its_token_off_command_lines_and_listens_on_loopback_only(lab_urls) -> None:
    """The token reaches JupyterLab through its environment (not `ps`), and no course socket leaves 127.0.0.1."""
    import ipaddress

    import psutil

    from course_utils.services import SERVICE_ENV

    _, lab_url = lab_urls
    token = parse_qs(urlsplit(lab_url).query)["token"][0]
    course_processes = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(SERVICE_ENV) in ("jupyterlab", "mlflow"):
                course_processes.append(process)
        except psutil.Error:
            continue
    assert {p.environ()[SERVICE_ENV] for p in course_processes} == {"jupyterlab", "mlflow"}
    assert not [p.pid for p in course_processes if token in " ".join(p.cmdline())], "the token is visible in `ps`"
    pids = {p.pid for p in course_processes}
    listening = [c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    addresses = [ipaddress.ip_address(a.ip) for a in listening]
    assert listening and all((getattr(a, "ipv4_mapped", None) or a).is_loopback for a in addresses), listening
