"""The rendered decks work offline: headless Chromium, network off, shows slides, a figure and a slider.

The decks are rendered from the committed, executed lessons into a temporary
folder, served on the loopback interface, and opened in Debian's Chromium
with every host name except 127.0.0.1 mapped to nothing, so a single request
to a CDN would fail and leave its library missing.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import render_slides  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    lessons = [ROOT / "notebooks" / "01_background.ipynb", ROOT / "notebooks" / "02_stamping_triggers.ipynb"]
    render_slides.main(["--out", str(out), *map(str, lessons)])
    return out


@pytest.fixture(scope="module")
def server(decks):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(decks))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def dump_dom(url: str, tmp_path: Path) -> str:
    if CHROMIUM is None:
        pytest.fail("the slides test needs Debian's chromium package: apt-get install chromium")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000", "--dump-dom", url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout


def test_decks_reference_no_remote_scripts_or_styles(decks):
    for deck in decks.glob("*.slides.html"):
        html = deck.read_text()
        remote = re.findall(r'(?:src|href)\s*=\s*["\'](https?://[^"\']+)', html)
        assert remote == [], f"{deck.name} loads {remote}"
        assert "vendor/reveal.js/dist/reveal.js" in html and "vendor/mathjax/MathJax.js" in html


def test_vendor_files_are_the_pinned_ones(decks):
    assert (decks / "vendor" / "reveal.js" / "dist" / "reveal.js").is_file()
    assert (decks / "vendor" / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js").is_file()


def test_deck_renders_slides_figures_maths_and_a_slider_offline(server, tmp_path):
    dom = dump_dom(f"{server}/02_stamping_triggers.slides.html", tmp_path)
    assert 'class="reveal' in dom and dom.count("<section") >= 10  # reveal.js laid out the slides
    assert re.search(r'<img[^>]+src="data:image/png;base64,', dom)  # a stored figure
    # the widget renderer turned the saved state into real controls (not just its CSS):
    assert len(re.findall(r'class="[^"]*jupyter-widgets[^"]*widget-hslider', dom)) >= 2  # row and col sliders
    assert re.search(r'class="[^"]*jupyter-widgets[^"]*widget-dropdown', dom)  # the trigger selector
    assert 'class="mjx-chtml' in dom  # MathJax typeset the equations


def test_lesson_one_deck_has_its_maths_typeset(server, tmp_path):
    dom = dump_dom(f"{server}/01_background.slides.html", tmp_path)
    assert dom.count('class="mjx-chtml') >= 3
