"""Real-browser test: JupyterLab on loopback, notebook 06 in headless Chromium: move the margin
slider, then press the retrain panel's Train button and wait for its accuracy line and its map.

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` Python package (its own
browser downloads are not used). The notebook runs on a copy in a temporary folder, with
``TKD_RESULTS`` pointing there (the project's saved teacher is copied in when it exists), so the
test writes nothing into the repository. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium (apt-get install "
                              "chromium); Playwright's own browser downloads are not used"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebook 06; yields (url, token)."""
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / "06_interactive.ipynb", folder)
    results = tmp_path / "results"
    saved_teacher = ROOT / "results" / "quick" / "teacher"
    if (saved_teacher / "model.pt").is_file():
        shutil.copytree(saved_teacher, results / "quick" / "teacher")
    # JupyterLab 4 skips the layout of cells outside the viewport ("windowingMode"), so a widget
    # below tall figures would never count as visible: lay every cell out, as a reader scrolls.
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, TKD_RESULTS=str(results), TKD_PRESET="quick",  # the digits: seconds
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "run"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    jupyter = Path(sys.executable).parent / "jupyter"
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate", *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n"
                                + (tmp_path / "jupyter.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token
    finally:
        try:  # shut the kernels down first, then the server and anything it left behind
            for kernel in _api(base, token, "/api/kernels"):
                _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
        log.close()


def _margin_text(page) -> str:
    """The margin explorer's reading: ``margin m: triplet loss …, active triplets …``."""
    return page.locator(".widget-html", has_text="active triplets").filter(
        has_text="margin ").last.inner_text()


def _train_in_browser(page) -> str:
    """Press the retrain panel's Train button; wait for the run's accuracy line and its map."""
    panel = page.locator(".widget-vbox", has=page.locator("button", has_text="Train")).first
    panel.scroll_into_view_if_needed()
    image = panel.locator("img.widget-image").first
    map_before = image.get_attribute("src")
    # One epoch fewer than the panel shows: a run that repeats the notebook's last one would
    # draw the same map, and an unchanged image value is not sent again.
    epochs = panel.locator(".widget-slider", has_text="epochs").locator(".noUi-handle").first
    epochs.focus()
    epochs.press("ArrowLeft")
    runs = panel.locator(".widget-html", has_text="test accuracy")
    before = runs.first.inner_text() if runs.count() else ""  # the notebook may train first
    panel.locator("button", has_text="Train").first.click()
    page.wait_for_function(  # tkd.widgets.RetrainPanel's status line once the new run is done
        "before => [...document.querySelectorAll('.widget-html')].some("
        "e => /^run \\d+: test accuracy/.test(e.innerText) && e.innerText !== before)",
        arg=before, timeout=300_000)
    status = panel.locator(".widget-html", has_text="test accuracy").first.inner_text()
    assert status != before and status.startswith("run "), status
    page.wait_for_function(  # the map is drawn after the status line (a UMAP of the run)
        "([e, before]) => e.src !== before && e.complete && e.naturalWidth > 100",
        arg=[image.element_handle(), map_before], timeout=120_000)
    assert image.get_attribute("src") != map_before, "the map did not appear"
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "browser_retrain_after.png"))
    return status


def test_margin_slider_and_train_button_in_jupyterlab(lab):
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/06_interactive.ipynb?token={token}&reset",
                      timeout=60_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
            try:  # JupyterLab may ask which kernel to start: take the proposed one
                dialog.wait_for(timeout=10_000)
                dialog.locator("button.jp-mod-accept").click()
            except playwright.TimeoutError:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()

            explorer = page.locator(".widget-vbox", has=page.locator(
                ".widget-html", has_text="active triplets")).first
            # The sandbox holds only the teacher: the notebook first trains the saved student
            # it explores (seconds on an idle core, minutes on a loaded one).
            explorer.wait_for(timeout=400_000)
            explorer.scroll_into_view_if_needed()
            page.wait_for_function(  # the explorer's first reading, at the paper's margin
                "() => [...document.querySelectorAll('.widget-html')].some("
                "e => e.innerText.startsWith('margin 5:'))", timeout=400_000)
            before = _margin_text(page)
            page.screenshot(path=str(ARTIFACTS / "browser_margin_before.png"))
            image_before = explorer.locator("img.widget-image").get_attribute("src")

            handle = explorer.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(6):  # step 0.5: margin 5 -> 8
                handle.press("ArrowRight")
            page.wait_for_function(  # each key press is one change; wait for the last one
                "() => [...document.querySelectorAll('.widget-html')].some("  # the callback
                "e => e.innerText.startsWith('margin 8:'))",  # waits for the cells run-all
                timeout=400_000)  # queued after it (06 trains three small students)
            after = _margin_text(page)
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser_margin_after.png"))
            assert after != before
            assert after.startswith("margin 8:"), after
            assert before.startswith("margin 5:"), before
            assert explorer.locator("img.widget-image").get_attribute("src") != image_before

            status = _train_in_browser(page)
            accuracy = float(status.split("test accuracy")[1].split(",")[0])
            assert 0.0 <= accuracy <= 1.0, status
            errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']")
            assert errors.count() == 0, errors.first.inner_text()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
