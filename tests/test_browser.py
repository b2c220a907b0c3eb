"""The workbook in a real browser: JupyterLab on 127.0.0.1, driven by Playwright in the
system's headless Chromium (``/usr/bin/chromium``; ``.ci/run`` installs it with apt-get).

For notebook 00 and a later one (06): Run All Cells, check that every code cell ran and that
no cell shows an error, find each explorer (an ipywidgets output holding a control and a
figure), move one control and check that the figure changes. The server runs with one torch
thread, serves copies of the notebooks from a temporary folder (so nothing is saved into the
repository), and is stopped by its PID.

Run alone with ``pytest -m browser``. Outside CI a machine without /usr/bin/chromium skips
this test, saying so; under CI (``CI=true``) a missing browser fails it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOKS = ["00_gradient_of_an_expectation", "06_implicit_reparameterization"]
RUN_TIMEOUT_S = 300
TOKEN = "vitools-browser-test"


def _require_browser():
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is absent (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed (pip install -e '.[test]')")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser test must run in CI, but {reason}")
        pytest.skip(f"no browser for the browser test: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings: every cell stays in the page, no news or update pop-ups."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 over copies of the notebooks; yields its base URL."""
    _require_browser()
    home = tmp_path_factory.mktemp("lab")
    (home / "notebooks").mkdir()
    for name in NOTEBOOKS:
        shutil.copy2(ROOT / "notebooks" / f"{name}.ipynb", home / "notebooks")
    _write_settings(home / "settings")
    port = _free_port()
    env = {**os.environ, "VITOOLS_THREADS": "1", "OMP_NUM_THREADS": "1", "VITOOLS_DEVICE": "cpu",
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={home}", "--ServerApp.open_browser=False", "--ServerApp.allow_root=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)            # the server shuts its kernels down
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)     # its own process group: the server and its kernels
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _run_all(page) -> None:
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"\(ipykernel\) \| Idle")).first.wait_for(timeout=120_000)   # the status bar
    # Clear the stored outputs first, so that every number in a prompt comes from this run.
    numbered = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].some(p => /\\d/.test(p.textContent))"
    for attempt in range(3):
        page.get_by_role("menuitem", name="Edit", exact=True).click()
        page.get_by_text("Clear Outputs of All Cells", exact=True).click()
        page.wait_for_timeout(1000)
        if not page.evaluate(numbered):
            break
    else:
        pytest.fail("Edit > Clear Outputs of All Cells left numbered prompts")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    # Every code cell ends with a number in its prompt; a failing cell stops Run All short.
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
            return prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t));
        }""", timeout=RUN_TIMEOUT_S * 1000)


def _errors(page) -> list[str]:
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    return [t[:500] for t in texts if re.search(r"Traceback|\w+Error\b|Exception", t)]


def _explorers(page):
    """Widget outputs that hold a control (slider, dropdown, toggle) and a figure."""
    outputs = page.locator(".jp-OutputArea-output:has(.jupyter-widgets)")
    found = []
    for i in range(outputs.count()):
        out = outputs.nth(i)
        has_control = out.locator(".widget-slider, .widget-dropdown, .widget-toggle-buttons, .widget-radio").count()
        has_figure = out.locator("img, canvas").count()
        if has_control and has_figure:
            found.append(out)
    return found


def _move_one_control(explorer, page) -> str:
    slider = explorer.locator(".widget-slider .noUi-handle")
    if slider.count():
        handle = slider.first
        handle.focus()
        handle.press("ArrowRight")
        page.wait_for_timeout(200)
        handle.press("ArrowRight")
        return "slider"
    select = explorer.locator(".widget-dropdown select").first
    options = select.locator("option").all_inner_texts()
    current = select.input_value()
    select.select_option(index=[o for o in range(len(options)) if options[o] != current][0])
    return "dropdown"


def _figure(explorer) -> str:
    """The explorer's figures as data, read in one step (an update replaces the elements)."""
    return explorer.evaluate(
        "e => [...e.querySelectorAll('img, canvas')].map(x => x.tagName === 'IMG' ? x.src : x.toDataURL()).join('|')")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_and_its_explorers_respond(lab, browser, name, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own (reset): only this notebook is open in the page.
        page.goto(f"{lab}/lab/workspaces/{name[:2]}/tree/notebooks/{name}.ipynb?reset&token={TOKEN}", timeout=120_000)
        started = time.monotonic()
        _run_all(page)
        ran_s = time.monotonic() - started
        assert not _errors(page), _errors(page)
        explorers = _explorers(page)
        assert explorers, "no explorer (control + figure) found after Run All"
        for k, explorer in enumerate(explorers):
            explorer.scroll_into_view_if_needed()
            before = _figure(explorer)
            control = _move_one_control(explorer, page)
            deadline = time.monotonic() + 60
            while _figure(explorer) == before:
                assert time.monotonic() < deadline, f"explorer {k}: moving its {control} left the figure unchanged"
                page.wait_for_timeout(250)
            page.wait_for_timeout(1000)
            explorer.screenshot(path=str(tmp_path / f"{name}-explorer{k}.png"))
        assert not _errors(page), _errors(page)
        print(f"{name}: Run All in {ran_s:.0f} s, {len(explorers)} explorer(s) responded")
    finally:
        page.close()
