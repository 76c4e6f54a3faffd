"""Render every lesson to a reveal.js deck in slides/ that works offline and that an instructor can lecture from.

Each deck loads reveal.js, jQuery, require.js, MathJax and the
Jupyter widget renderer from ``slides/vendor/``, never from a CDN. Those
packages come from the npm registry (``npm pack``), are checked against the
sha512 integrity values pinned in ``scripts/slides_vendor.json`` and unpacked;
the tarballs are kept in ``.cache/npm`` so later renders need no network.

What a deck shows (see :func:`prepare`): the outputs of the committed, executed
lessons and their prose, no ``In [n]:``/``Out[n]:`` prompts, and code only in
cells tagged ``slides-show-code`` (short teaching cells), without the comments
meant for the test suite. Symbols that common fonts lack (the stopwatch) are
drawn as inline SVG. The template in ``scripts/slides_template/offline`` lays
every slide out in a 1280x720 box and fits it once the page has rendered:
wide outputs are scaled down (never below 14 px) or wrapped, tall slides are
split at cell, then output, boundaries into vertical sub-slides, and arrow
keys on a focused slider or dropdown move the control, not the deck.
``tests/test_slides.py`` checks all of this in Chromium, slide by slide.

Usage: ``python scripts/render_slides.py [--out slides] [notebooks ...]``
(default: every ``notebooks/NN_*.ipynb``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import functools
import hashlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import nbformat
from nbconvert.exporters import SlidesExporter
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).resolve().parent / "slides_vendor.json"
TEMPLATES = Path(__file__).resolve().parent / "slides_template"
TARBALLS = ROOT / ".cache" / "npm"
sys.path.insert(0, str(ROOT))
from helpers.io import atomic_write_text  # noqa: E402

#: The slide box every deck is laid out in (16:9); scripts/slides_template/offline fits each slide into it.
WIDTH, HEIGHT = 1280, 720

#: Where each library's entry point lies inside slides/vendor/.
URLS = {
    "reveal_url_prefix": "vendor/reveal.js",
    "jquery_url": "vendor/jquery/dist/jquery.min.js",
    "require_js_url": "vendor/requirejs/require.js",
    "mathjax_url": "vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    "widget_renderer_url": "vendor/@jupyter-widgets/html-manager/dist/embed-amd.js",
}
#: What we keep of each package (the rest, e.g. sources and tests, is not needed by a deck).
KEEP = {
    "reveal.js": ["dist", "plugin"],
    "jquery": ["dist"],
    "requirejs": ["require.js"],
    "mathjax": ["MathJax.js", "config", "jax", "extensions", "localization", "fonts/HTML-CSS/TeX/woff", "fonts/HTML-CSS/TeX/otf"],
    "@jupyter-widgets/html-manager": ["dist"],
}


def sri(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(name: str, version: str, integrity: str) -> Path:
    """The verified tarball of name@version, from .cache/npm or the npm registry."""
    TARBALLS.mkdir(parents=True, exist_ok=True)
    tgz = TARBALLS / (name.replace("@", "").replace("/", "-") + f"-{version}.tgz")
    if not tgz.is_file():
        if shutil.which("npm") is None:
            sys.exit(f"npm is needed once to fetch {name}@{version} into {TARBALLS} (install Node.js)")
        out = subprocess.run(["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(TARBALLS)],
                             check=True, capture_output=True, text=True).stdout
        tgz = TARBALLS / json.loads(out)[0]["filename"]
    actual = sri(tgz)
    if actual != integrity:
        tgz.unlink()
        sys.exit(f"{name}@{version}: integrity {actual} does not match the pinned {integrity}; refusing to use it")
    return tgz


def install_vendor(dest: Path) -> None:
    """Unpack the pinned, verified packages into ``dest`` (slides/vendor)."""
    packages = json.loads(MANIFEST.read_text())["packages"]
    stamp = dest / ".installed.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == packages:
        return
    if dest.exists():
        shutil.rmtree(dest)
    for name, pin in packages.items():
        tgz = fetch(name, pin["version"], pin["integrity"])
        target = dest / name
        with tarfile.open(tgz) as tar:
            members = [m for m in tar.getmembers() if any(
                m.name.removeprefix("package/") == k or m.name.removeprefix("package/").startswith(k + "/") for k in KEEP[name])]
            for m in members:
                m.name = m.name.removeprefix("package/")
            tar.extractall(target, members=members, filter="data")
    stamp.write_text(json.dumps(packages))


#: Code cells tagged with this show their code on the slide (short teaching cells); every other cell shows only its outputs.
SHOW_CODE_TAG = "slides-show-code"
#: A comment meant for the test suite (nbval's markers and sanitize notes), never shown on a slide.
TEST_COMMENT = re.compile(r"[ \t]*#[^\n]*(?:nbval|NBVAL|sanitiz)[^\n]*", re.IGNORECASE)
#: Symbols that common fonts lack (they would render as a box), drawn as inline SVG instead (emoji form first).
GLYPHS = ("\u23f1\ufe0f", "\u23f1")
STOPWATCH_SVG = (
    '<svg class="slides-glyph" role="img" aria-label="run time" viewBox="0 0 24 24" width="0.9em" height="0.9em" '
    'style="vertical-align:-0.1em"><title>run time</title><circle cx="12" cy="13.5" r="8.5" fill="none" '
    'stroke="currentColor" stroke-width="2"/><path d="M9 2.5h6M12 2.5v2.5M12 13.5V8.5M18.5 6.5l1.5-1.5" '
    'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>'
)


def strip_test_comments(source: str) -> str:
    """``source`` without the comments meant for the test suite (whole lines dropped, trailing ones cut)."""
    out = []
    for line in source.splitlines():
        cut = TEST_COMMENT.sub("", line)
        if cut.strip() or not line.strip():
            out.append(cut.rstrip())
    return "\n".join(out)


def prepare(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` as the deck shows it: code hidden unless tagged, no test comments, no empty cells."""
    nb = copy.deepcopy(nb)
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        show = SHOW_CODE_TAG in cell.metadata.get("tags", [])
        if show:
            cell.source = strip_test_comments(cell.source)
        else:
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        slideshow = cell.metadata.setdefault("slideshow", {})
        kind = slideshow.get("slide_type", "-")
        if show or cell.outputs or kind in ("skip", "notes"):
            continue
        # an empty cell would leave a blank block (or a blank slide): hand its slide break to the next shown cell
        if kind in ("slide", "subslide"):
            for nxt in cells[i + 1:]:
                nkind = nxt.metadata.get("slideshow", {}).get("slide_type", "-")
                if nkind in ("skip", "notes"):
                    continue
                if nkind in ("-", "fragment") or (nkind == "subslide" and kind == "slide"):
                    nxt.metadata.setdefault("slideshow", {})["slide_type"] = kind
                break
        slideshow["slide_type"] = "skip"
    return nb


def replace_glyphs(html: str) -> str:
    """Draw the symbols fonts lack as inline SVG, outside <script> blocks (widget state stays intact)."""
    parts = re.split(r"(<script\b[^>]*>.*?</script>)", html, flags=re.DOTALL | re.IGNORECASE)
    for i in range(0, len(parts), 2):
        for glyph in GLYPHS:
            parts[i] = parts[i].replace(glyph, STOPWATCH_SVG)
    return "".join(parts)


def exporter() -> SlidesExporter:
    c = Config()
    c.TemplateExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.TemplateExporter.exclude_input_prompt = True
    c.TemplateExporter.exclude_output_prompt = True
    c.SlidesExporter.reveal_theme = "white"
    c.SlidesExporter.reveal_transition = "none"
    c.SlidesExporter.reveal_width = str(WIDTH)
    c.SlidesExporter.reveal_height = str(HEIGHT)
    c.SlidesExporter.reveal_scroll = False
    for k, v in URLS.items():
        setattr(c.SlidesExporter, k, v)
    return SlidesExporter(config=c, template_name="offline")


def render(notebook: Path, out: Path, exp: SlidesExporter | None = None) -> Path:
    """Render one lesson to ``out/<stem>.slides.html`` (written atomically); returns its path."""
    nb = prepare(nbformat.read(notebook, as_version=4))
    body, _ = (exp or exporter()).from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    dest = out / (notebook.stem + ".slides.html")
    atomic_write_text(dest, replace_glyphs(body))
    return dest


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on the loopback interface (a free port, no request log); yields the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "slides")
    args = p.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(nb) for nb in notebooks if nb.suffix != ".ipynb" or not nb.is_file()]
    if missing:
        p.error(f"notebooks: {missing} are not .ipynb files (expected executed lessons such as notebooks/01_background.ipynb)")
    install_vendor(args.out / "vendor")
    exp = exporter()
    for nb in notebooks:
        print(f"slides: {render(nb, args.out, exp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
