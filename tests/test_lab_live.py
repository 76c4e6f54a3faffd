"""A lesson in JupyterLab with a real kernel: run it, move its slider, see the new state.

JupyterLab (the pinned one, from this environment) serves a copy of lesson 2
on the loopback interface; Debian's Chromium, driven by Playwright, opens it,
runs every cell, moves the trigger explorer's row slider with the keyboard and
reads the frame the explorer then shows. Nothing is mocked: the kernel computes
the frames, the JupyterLab widget manager renders them, the browser-side link
switches them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LESSON = "02_stamping_triggers.ipynb"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a copy of lesson 2 (its figures and results go to scratch folders)."""
    if CHROMIUM is None:
        pytest.fail("the JupyterLab test needs Debian's chromium package: apt-get install chromium")
    work = tmp_path_factory.mktemp("lab")
    (work / "notebooks").mkdir()
    # the lesson without its stored outputs, execution counts and widget state: only this kernel's run can show them
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / LESSON, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, work / "notebooks" / LESSON)
    port = _free_port()
    env = dict(os.environ, BADNETS_FIGURES_DIR=str(work / "figures"), BADNETS_RESULTS_DIR=str(work / "results"),
               JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={work / 'notebooks'}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(work / "lab.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work / "notebooks")
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/lab", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(work / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def accept_dialogs(page, seen: list) -> None:
    """Accept any modal dialog JupyterLab shows (on a slow start, "Select Kernel" with python3 preselected, or a
    server-connection notice), recording its text: a modal dialog takes every click meant for the notebook."""
    from playwright.sync_api import TimeoutError as NoDialog

    dialog = page.locator(".jp-Dialog")
    for _ in range(3):
        try:
            dialog.first.wait_for(state="visible", timeout=2_000)
        except NoDialog:  # the usual case
            return
        seen.append(" ".join(dialog.first.inner_text().split())[:200])
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        dialog.first.wait_for(state="hidden", timeout=10_000)


def test_trigger_slider_runs_in_jupyterlab_with_a_live_kernel(lab):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{lab}/lab/tree/{LESSON}", timeout=120_000)
            page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached(timeout=120_000)
            prompts = page.locator(".jp-InputPrompt")
            dialogs = []  # what JupyterLab asked on the way, for the failure message
            for attempt in range(4):  # a Run All sent before the kernel has connected is dropped: send it again
                accept_dialogs(page, dialogs)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.locator("li[data-command='runmenu:run-all']").click()
                try:  # the first code cell shows [*] or [1] once the kernel takes the cells
                    expect(prompts.filter(has_text=re.compile(r"\[(\*|\d+)\]")).first).to_be_attached(timeout=45_000)
                    break
                except AssertionError as exc:
                    if attempt == 3:
                        raise AssertionError(f"Run All never reached the kernel; JupyterLab's dialogs: {dialogs}") from exc
            explorer = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator(".widget-dropdown")).first
            explorer.wait_for(timeout=300_000)
            shown = explorer.locator(".widget-html:visible pre")
            expect(shown).to_have_text("L trigger at (row 1, col 24): benign digits above, stamped below", timeout=60_000)
            # the row slider of the L's own pair of sliders: focus its handle and step it right with the keyboard
            row = explorer.locator(".widget-hslider:visible").first
            row.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            expect(row.locator(".widget-readout")).to_have_text("7")
            expect(shown).to_have_text("L trigger at (row 7, col 24): benign digits above, stamped below", timeout=10_000)
            # another trigger brings its own sliders, at its own default position
            explorer.locator(".widget-dropdown select").select_option("pixel")
            expect(shown).to_have_text("pixel trigger at (row 26, col 26): benign digits above, stamped below", timeout=10_000)
        finally:
            browser.close()
