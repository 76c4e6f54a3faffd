"""The rendered decks are lecture-ready: offline, every slide fits 1280x720, readable, no code, keys behave.

Every lesson is rendered once (module fixture) from the committed, executed
notebooks into a temporary folder, with two extra decks made from copies whose
short teaching cells are tagged ``slides-show-code`` (the tag is the
instructor's, the copies prove the renderer honours it). The folder is served
on the loopback interface and opened in Debian's Chromium, driven by
Playwright, with every host name except 127.0.0.1 mapped to nothing: a single
request to a CDN would fail, and is recorded and reported.

In each deck the test steps through every slide and sub-slide (all fragments
shown) at a 1280x720 viewport and checks, for each: no text or element
reaches outside the slide box and nothing is clipped inside a scrolling box
(reported as deck, slide h/v, title and overflow in px); no ``In [n]:`` or
``Out[n]:`` prompt; no code input except in tagged cells; prose at >= 20 px
and no text below 14 px (after any scaling). A keyboard test moves a slider
and a dropdown with the arrow keys and checks that the deck stays put.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import render_slides  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Copies of lessons with short teaching cells tagged: (lesson, new stem, cell ids to tag).
TAGGED = [
    ("02_stamping_triggers", "02_tagged", ["9fc2ecfe"]),  # the stamping equation by hand
    ("07_defences", "07_tagged", ["a2f1c7dc"]),  # the anomaly index by hand (given a comment meant for nbval)
]
#: A comment meant for the test suite, added to the tagged cell of lesson 7's copy: it must not show.
NBVAL_COMMENT = "# NBVAL_IGNORE_OUTPUT\n"
DECKS = [nb.stem for nb in LESSONS] + [stem for _, stem, _ in TAGGED]
BOX_W, BOX_H = render_slides.WIDTH, render_slides.HEIGHT
BODY_PX, MIN_PX = 20, 14
SLACK = 1.0  # px of sub-pixel rounding

# Steps through every slide and sub-slide of the open deck, all fragments shown, and measures each one.
MEASURE = r"""
() => {
  const box = document.querySelector('.reveal .slides').getBoundingClientRect();
  const skip = 'aside.notes, script, style, .MJX_Assistive_MathML, .MathJax_Preview';
  const shown = el => { for (let p = el; p; p = p.parentElement) { const cs = getComputedStyle(p);
    if (cs.display === 'none' || cs.visibility === 'hidden') return false; } return true; };
  const scale = (el, stop) => { let f = 1; for (let p = el; p && p !== stop; p = p.parentElement) {
    const t = getComputedStyle(p).transform; if (t && t !== 'none') f *= new DOMMatrixReadOnly(t).a; } return f; };
  const out = [];
  document.querySelectorAll('.reveal .slides > section').forEach((stack, h) => {
    const leaves = stack.querySelectorAll(':scope > section');
    for (let v = 0; v < Math.max(1, leaves.length); v++) {
      Reveal.slide(h, v, 10000);
      const cur = Reveal.getCurrentSlide(), idx = Reveal.getIndices();
      const title = (cur.querySelector('h1, h2, h3') || {textContent: ''}).textContent.replace('¶', '').trim();
      const r = {h, v, at: [idx.h, idx.v], title: title || '(continued)', overflow: {right: 0, bottom: 0, left: 0, top: 0},
                 worst: '', clipped: [], prompts: [], code: [], body: null, smallest: null, symbols: []};
      const grow = (rc, what) => {
        if (!rc.width || !rc.height) return;
        const d = {right: rc.right - box.right, bottom: rc.bottom - box.bottom, left: box.left - rc.left, top: box.top - rc.top};
        for (const k in d) if (d[k] > r.overflow[k]) { r.overflow[k] = d[k]; r.worst = `${k}: ${what}`; }
      };
      const walk = document.createTreeWalker(cur, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
      for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        const el = n.nodeType === 1 ? n : n.parentElement;
        if (el.closest(skip) || !shown(el)) continue;
        if (n.nodeType === 3) {
          const text = n.textContent.trim();
          if (!text) continue;
          const range = document.createRange();
          range.selectNodeContents(n);
          grow(range.getBoundingClientRect(), JSON.stringify(text.slice(0, 50)));
          const px = parseFloat(getComputedStyle(el).fontSize) * scale(el, cur);
          r.smallest = r.smallest === null ? px : Math.min(r.smallest, px);
          if (el.closest('.jp-MarkdownCell .jp-RenderedMarkdown') && !el.closest('.MathJax, .mjx-chtml, code, pre, h1, h2, h3'))
            r.body = r.body === null ? px : Math.min(r.body, px);
          if (/\b(In|Out)\s*\[\s*\d*\s*\]\s*:/.test(text)) r.prompts.push(text.slice(0, 40));
          if (/[\u23f1]/.test(text)) r.symbols.push(text.slice(0, 40));
        } else {
          grow(n.getBoundingClientRect(), `<${n.tagName.toLowerCase()} class="${n.className}">`);
          const cs = getComputedStyle(n);
          if ((cs.overflowX !== 'visible' && n.scrollWidth > n.clientWidth + 1) ||
              (cs.overflowY !== 'visible' && n.scrollHeight > n.clientHeight + 1))
            r.clipped.push(`<${n.tagName.toLowerCase()} class="${n.className}"> holds ${n.scrollWidth}x${n.scrollHeight} px in ${n.clientWidth}x${n.clientHeight}`);
          if (n.matches('.jp-InputPrompt, .jp-OutputPrompt') && n.textContent.trim()) r.prompts.push(n.textContent.trim());
          if (n.matches('.jp-InputArea-editor')) r.code.push({tagged: !!n.closest('.celltag_slides-show-code'), text: n.textContent.trim()});
        }
      }
      out.push(r);
    }
  });
  Reveal.slide(0, 0, 0);
  return out;
}
"""


def _tagged_copy(lesson: str, stem: str, ids: list[str], folder: Path) -> Path:
    nb = nbformat.read(ROOT / "notebooks" / f"{lesson}.ipynb", as_version=4)
    nb = copy.deepcopy(nb)
    found = set()
    for cell in nb.cells:
        if cell.get("id") in ids:
            tags = cell.metadata.setdefault("tags", [])
            if render_slides.SHOW_CODE_TAG not in tags:  # the lesson may tag it already
                tags.append(render_slides.SHOW_CODE_TAG)
            cell.source = NBVAL_COMMENT + cell.source.rstrip() + "  # nbval's sanitize file blanks this"
            found.add(cell.id)
    assert found == set(ids), f"{lesson}: cells {sorted(set(ids) - found)} not found (the test's tagged copies need updating)"
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    copies = tmp_path_factory.mktemp("tagged")
    tagged = [_tagged_copy(lesson, stem, ids, copies) for lesson, stem, ids in TAGGED]
    render_slides.main(["--out", str(out), *map(str, LESSONS), *map(str, tagged)])
    return out


@pytest.fixture(scope="module")
def server(decks):
    with render_slides.serve(decks) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    if CHROMIUM is None:
        pytest.fail("the slides test needs Debian's chromium package: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"])
        try:
            yield b
        finally:
            b.close()


def open_deck(browser, server, stem, errors=None):
    """A page at 1280x720 with the deck loaded and fitted; also returns the list of off-host requests it made."""
    page = browser.new_page(viewport={"width": BOX_W, "height": BOX_H})
    remote = []
    page.on("request", lambda req: remote.append(req.url) if not req.url.startswith(("data:", "blob:" + server, server)) else None)
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/{stem}.slides.html")
    page.wait_for_selector("html[data-slides-fitted]", state="attached", timeout=60_000)
    # fragments fade in over 0.2 s: without transitions a shown fragment is measured at once
    page.add_style_tag(content=".reveal *, .reveal *::before, .reveal *::after { transition: none !important; }")
    return page, remote


@pytest.fixture(scope="module")
def measured(browser, server):
    """Every deck, measured slide by slide: {stem: (slides, off-host requests, page errors)}."""
    result = {}
    for stem in DECKS:
        errors = []
        page, remote = open_deck(browser, server, stem, errors)
        result[stem] = (page.evaluate(MEASURE), remote, errors)
        page.close()
    return result


def test_decks_reference_no_remote_scripts_or_styles(decks):
    for deck in decks.glob("*.slides.html"):
        html = deck.read_text()
        remote = re.findall(r'(?:src|href)\s*=\s*["\'](https?://[^"\']+)', html)
        assert remote == [], f"{deck.name} loads {remote}"
        assert "vendor/reveal.js/dist/reveal.js" in html and "vendor/mathjax/MathJax.js" in html


def test_vendor_files_are_the_pinned_ones(decks):
    assert (decks / "vendor" / "reveal.js" / "dist" / "reveal.js").is_file()
    assert (decks / "vendor" / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js").is_file()
    stamp = json.loads((decks / "vendor" / ".installed.json").read_text())
    assert stamp == json.loads(render_slides.MANIFEST.read_text())["packages"]


@pytest.mark.parametrize("stem", DECKS)
def test_every_slide_fits_and_reads(measured, stem):
    slides, remote, errors = measured[stem]
    assert remote == [], f"{stem} asked for {remote} (a deck must work offline)"
    assert len(slides) >= 5, f"{stem}: only {len(slides)} slides"
    problems = []
    for s in slides:
        where = f"{stem} slide {s['h']}/{s['v']} '{s['title'][:50]}'"
        assert s["at"] == [s["h"], s["v"]], f"{where}: reveal.js shows {s['at']}"
        over = {k: round(v, 1) for k, v in s["overflow"].items() if v > SLACK}
        if over:
            problems.append(f"{where}: cut off by {over} px (worst: {s['worst']})")
        problems += [f"{where}: clipped: {c}" for c in s["clipped"]]
        if s["prompts"]:
            problems.append(f"{where}: prompts {s['prompts']}")
        shown = [c["text"][:60] for c in s["code"] if not c["tagged"]]
        if shown:
            problems.append(f"{where}: code input of an untagged cell: {shown}")
        if s["body"] is not None and s["body"] < BODY_PX:
            problems.append(f"{where}: body text {s['body']:.1f} px < {BODY_PX}")
        if s["smallest"] is not None and s["smallest"] < MIN_PX:
            problems.append(f"{where}: text at {s['smallest']:.1f} px < {MIN_PX}")
        if s["symbols"]:
            problems.append(f"{where}: a symbol common fonts lack is left as text: {s['symbols']}")
    assert problems == [], "\n".join(problems)
    assert errors == [], f"{stem}: the page raised {errors}"


def test_prose_is_readable_on_every_deck(measured):
    for stem, (slides, _, _) in measured.items():
        body = [s["body"] for s in slides if s["body"] is not None]
        assert body and min(body) >= BODY_PX, f"{stem}: body text sizes {sorted(set(body))[:5]}"


def test_tagged_cells_show_their_code_without_test_comments(measured):
    code = {stem: [c for s in measured[stem][0] for c in s["code"]] for stem in ("02_tagged", "07_tagged")}
    assert any("by_hand" in c["text"] and c["tagged"] for c in code["02_tagged"]), code["02_tagged"]
    shown = [c for c in code["07_tagged"] if c["tagged"]]
    assert any("anomaly index by hand" in c["text"] for c in shown), shown
    for stem in DECKS:
        for c in (c for s in measured[stem][0] for c in s["code"]):
            assert not re.search(r"nbval|sanitiz", c["text"], re.IGNORECASE), f"{stem}: a test comment shows: {c['text']}"
    # the committed decks show code only where a cell is tagged
    for stem in DECKS:
        untagged = [c["text"][:80] for s in measured[stem][0] for c in s["code"] if not c["tagged"]]
        assert untagged == [], f"{stem}: untagged code on a slide: {untagged}"


def test_renderer_strips_test_comments():
    src = 'x = 1  # nbval\'s sanitize file blanks it\n# NBVAL_IGNORE_OUTPUT\ny = "# kept"\n\nprint(x)'
    assert render_slides.strip_test_comments(src) == 'x = 1\ny = "# kept"\n\nprint(x)'


def test_stopwatch_is_drawn_not_left_to_fonts(decks):
    html = (decks / "07_defences.slides.html").read_text()
    body = re.sub(r"<script\b.*?</script>", "", html, flags=re.DOTALL | re.IGNORECASE)
    assert "\u23f1" not in body and 'class="slides-glyph"' in body


def test_long_slides_are_split_into_sub_slides(measured):
    # lesson 7's fine-pruning cell prints four outputs under its heading: more than one 720 px slide holds
    slides = measured["07_defences"][0]
    continued = [f"{s['h']}/{s['v']}" for s in slides if s["title"] == "(continued)"]
    assert any(s["title"].startswith("4 · Fine-pruning") for s in slides) and continued, continued


def test_arrow_keys_on_a_focused_control_move_the_control_not_the_deck(browser, server):
    page, _ = open_deck(browser, server, "02_stamping_triggers")
    try:
        h, v = page.evaluate("""() => { const s = document.querySelector('.widget-hslider').closest('section');
                                        const i = Reveal.getIndices(s); Reveal.slide(i.h, i.v || 0); return [i.h, i.v || 0]; }""")
        indices = "() => { const i = Reveal.getIndices(); return [i.h, i.v || 0]; }"
        assert page.evaluate(indices) == [h, v]
        handle = page.locator("section.present .widget-hslider .noUi-handle").first
        before = handle.get_attribute("aria-valuenow")
        handle.focus()
        page.keyboard.press("ArrowRight")
        assert page.evaluate(indices) == [h, v], "ArrowRight on a slider moved the deck"
        assert handle.get_attribute("aria-valuenow") != before, "ArrowRight did not move the slider"
        select = page.locator("section.present .widget-dropdown select").first
        chosen = select.input_value()
        select.focus()
        page.keyboard.press("ArrowDown")
        assert page.evaluate(indices) == [h, v], "ArrowDown on a dropdown moved the deck"
        assert select.input_value() != chosen, "ArrowDown did not change the dropdown"
        # with nothing focused, or after a click on reveal.js's own arrow buttons, the arrow keys drive the deck
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("ArrowRight")
        assert page.evaluate(indices) == [h + 1, 0]
        page.locator(".reveal > .controls .navigate-left").click()
        assert page.evaluate(indices)[0] == h
        page.keyboard.press("ArrowRight")
        assert page.evaluate(indices) == [h + 1, 0], "after a click on the deck's arrow button the keys stopped working"
    finally:
        page.close()


def test_deck_renders_figures_maths_and_widgets_offline(browser, server):
    page, remote = open_deck(browser, server, "02_stamping_triggers")
    try:
        assert remote == []
        assert page.locator('img[src^="data:image/png;base64,"]').count() >= 2
        # the widget renderer turned the saved state into real controls (not just its CSS)
        assert page.locator(".widget-hslider .noUi-handle").count() >= 2  # row and col sliders
        assert page.locator(".widget-dropdown select").count() >= 1  # the trigger selector
        assert page.locator(".mjx-chtml").count() >= 1  # MathJax typeset the equations
    finally:
        page.close()
    page, _ = open_deck(browser, server, "01_background")
    try:
        assert page.locator(".mjx-chtml.MathJax_CHTML").count() >= 3
    finally:
        page.close()


# ------------------------------------------------------------------ sliders with no kernel
# Every control of every deck is moved (a slider one step, a dropdown to each option) and the frame then shown must
# name the control's new value: the frames were computed when the lesson ran and the browser switches them
# (helpers.widgets), so this passes only if the saved widget state, the vendored widget renderer and the
# browser-side links all work.

#: The lessons with sliders, and how many controls each deck must hold (so a slider that fails to render is caught).
SLIDER_DECKS = {"02_stamping_triggers": 3, "03_poisoning_rate_sweep": 1, "04_evaluation": 2, "07_defences": 1}

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


@pytest.mark.parametrize("deck", sorted(SLIDER_DECKS))
def test_every_control_of_the_deck_switches_to_the_state_it_names(deck, server, browser, tmp_path):
    errors = []
    page, _ = open_deck(browser, server, deck, errors)
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
    assert n_controls >= SLIDER_DECKS[deck], f"{deck}: only {n_controls} controls rendered, expected {SLIDER_DECKS[deck]}"
    assert not errors, f"{deck}: JavaScript errors {errors}"
