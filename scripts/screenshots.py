"""Screenshots of the real decks for the README: one slide, and one slider in two states.

Renders lessons 2 and 3 with ``render_slides``, serves them on the loopback
interface, opens them in Debian's Chromium (driven by Playwright; no browser is
downloaded) at 1280x720, and writes

* ``figures/screenshots/03_sweep_slide.png``: the slide with lesson 3's sweep figure;
* ``figures/screenshots/02_slider_before.png`` and ``02_slider_after.png``: lesson 2's
  trigger slider at the L's training position, then two steps down (arrow keys on
  the slider, no kernel).

Usage: ``python scripts/screenshots.py [--out DIR]`` (``make screenshots``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
import render_slides  # noqa: E402

from helpers.io import atomic_path  # noqa: E402


def _goto_section_with(page, selector: str):
    """Go to the first slide holding ``selector``; return that section."""
    section = page.locator("section:not(.stack)").filter(has=page.locator(selector)).first
    h, v = page.evaluate("(el) => { const i = Reveal.getIndices(el); return [i.h, i.v || 0]; }", section.element_handle())
    page.evaluate(f"Reveal.slide({h}, {v})")
    page.wait_for_timeout(300)
    return section


def _shot(page, path: Path) -> None:
    with atomic_path(path) as tmp:
        page.screenshot(path=str(tmp))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "figures" / "screenshots")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        p.error("Debian's chromium is needed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        decks = Path(tmp)
        render_slides.main(["--out", str(decks), str(ROOT / "notebooks" / "02_stamping_triggers.ipynb"),
                            str(ROOT / "notebooks" / "03_poisoning_rate_sweep.ipynb")])
        with render_slides.serve(decks) as url:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"{url}/03_poisoning_rate_sweep.slides.html")
                page.wait_for_function("() => window.Reveal && Reveal.isReady()")
                _goto_section_with(page, "img[src*='data:image/png']")
                _shot(page, args.out / "03_sweep_slide.png")
                page.goto(f"{url}/02_stamping_triggers.slides.html")
                page.wait_for_function("() => window.Reveal && Reveal.isReady()")
                page.locator(".widget-hslider").first.wait_for(state="attached", timeout=60_000)
                section = _goto_section_with(page, ".widget-hslider")
                _shot(page, args.out / "02_slider_before.png")
                section.locator(".widget-hslider:visible .noUi-handle").first.focus()
                for _ in range(2):
                    page.keyboard.press("ArrowRight")
                page.wait_for_timeout(300)
                _shot(page, args.out / "02_slider_after.png")
                browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
