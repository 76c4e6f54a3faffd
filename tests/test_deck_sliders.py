"""Every slider of every deck works with no kernel: moved in Chromium, it shows the state it names.

The decks are rendered from the committed lessons, served on the loopback
interface and opened in Debian's Chromium (Playwright drives the system
browser; nothing is downloaded). For every control in every deck the test goes
to its slide, moves it with the keyboard (a slider one step, a dropdown to each
option) and checks that the frame now shown names the control's new value: the
frames were computed when the lesson ran and the browser switches them
(``helpers.widgets``), so this passes only if the saved widget state, the
vendored widget renderer and the browser-side links all work.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import render_slides  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The lessons with sliders, and how many controls each deck must hold (so a slider that fails to render is caught).
DECKS = {"02_stamping_triggers": 3, "03_poisoning_rate_sweep": 1, "04_evaluation": 2, "07_defences": 1}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("the deck test needs Debian's chromium package: apt-get install chromium")
    out = tmp_path_factory.mktemp("decks")
    render_slides.main(["--out", str(out), *(str(ROOT / "notebooks" / f"{d}.ipynb") for d in DECKS)])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _shown_text(explorer) -> str:
    """The text of the frame the explorer shows now (hidden stack children are not visible)."""
    texts = [t for t in explorer.locator(".widget-html pre").all() if t.is_visible()]
    assert len(texts) == 1, f"expected one visible frame, found {len(texts)}"
    return texts[0].inner_text()


def _readouts(explorer) -> list[str]:
    return [r.inner_text().strip() for r in explorer.locator(".widget-readout").all() if r.is_visible()]


def _names(text: str, readout: str) -> bool:
    """Whether a frame's first line (the state; predictions follow) names a value: "7" in "(row 7, col 24)" ..."""
    return re.search(rf"(?<![\d.]){re.escape(readout)}(?![\d])", text.splitlines()[0]) is not None


@pytest.mark.parametrize("deck", sorted(DECKS))
def test_every_control_of_the_deck_switches_to_the_state_it_names(deck, server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/{deck}.slides.html")
    page.wait_for_function("() => window.Reveal && Reveal.isReady()")
    page.locator(".widget-hslider, .widget-dropdown").first.wait_for(state="attached", timeout=60_000)
    sections = page.locator("section:not(.stack)").filter(has=page.locator(".widget-hslider, .widget-dropdown"))
    n_controls = 0
    for s in range(sections.count()):
        section = sections.nth(s)
        h, v = page.evaluate("(el) => { const i = Reveal.getIndices(el); return [i.h, i.v || 0]; }", section.element_handle())
        page.evaluate(f"Reveal.slide({h}, {v})")
        explorer = section.locator(".widget-vbox").filter(has=page.locator(".widget-html pre")).first
        explorer.wait_for(state="visible")
        for d in range(explorer.locator(".widget-dropdown select").count()):
            select = explorer.locator(".widget-dropdown select").nth(d)
            n_controls += 1
            for option in select.locator("option").all_inner_texts():
                select.select_option(option)
                assert option in _shown_text(explorer), f"{deck}: choosing {option!r} did not show its frame"
                for readout in _readouts(explorer):  # the chosen trigger's own sliders, at its own default
                    assert _names(_shown_text(explorer), readout), f"{deck}: {option} shows {_shown_text(explorer)!r}"
            select.select_option(index=0)
        sliders = [sl for sl in explorer.locator(".widget-hslider").all() if sl.is_visible()]
        for slider in sliders:
            n_controls += 1
            before, readout_before = _shown_text(explorer), slider.locator(".widget-readout").inner_text()
            handle = slider.locator(".noUi-handle")
            handle.focus()
            slide_before = page.evaluate("Reveal.getIndices().h")
            page.keyboard.press("ArrowRight")
            if slider.locator(".widget-readout").inner_text() == readout_before:  # already at its last value
                page.keyboard.press("ArrowLeft")
            readout = slider.locator(".widget-readout").inner_text().strip()
            after = _shown_text(explorer)
            assert readout != readout_before.strip(), f"{deck}: the slider did not move"
            assert after != before and _names(after, readout), f"{deck}: slider at {readout} shows {after!r}"
            assert all(_names(after, r) for r in _readouts(explorer)), f"{deck}: {after!r} vs {_readouts(explorer)}"
            assert page.evaluate("Reveal.getIndices().h") == slide_before, f"{deck}: the arrow key also moved the deck"
    page.close()
    assert n_controls >= DECKS[deck], f"{deck}: only {n_controls} controls rendered, expected {DECKS[deck]}"
    assert not errors, f"{deck}: JavaScript errors {errors}"
