"""Render every lesson to a reveal.js deck in slides/ that works offline.

Each deck loads reveal.js, jQuery, require.js, MathJax and the
Jupyter widget renderer from ``slides/vendor/``, never from a CDN. Those
packages come from the npm registry (``npm pack``), are checked against the
sha512 integrity values pinned in ``scripts/slides_vendor.json`` and unpacked;
the tarballs are kept in ``.cache/npm`` so later renders need no network.

Usage: ``python scripts/render_slides.py [--out slides] [notebooks ...]``
(default: every ``notebooks/NN_*.ipynb``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).resolve().parent / "slides_vendor.json"
TEMPLATES = Path(__file__).resolve().parent / "slides_template"
TARBALLS = ROOT / ".cache" / "npm"

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


def render(notebook: Path, out: Path) -> Path:
    args = [sys.executable, "-m", "nbconvert", "--to", "slides", str(notebook), "--output-dir", str(out),
            f"--TemplateExporter.extra_template_basedirs={TEMPLATES}", "--template", "offline",
            "--SlidesExporter.reveal_scroll=True", "--SlidesExporter.reveal_theme=white",
            "--SlidesExporter.reveal_transition=none", "--SlidesExporter.reveal_width=1200",
            "--SlidesExporter.reveal_height=800"]
    args += [f"--SlidesExporter.{k}={v}" for k, v in URLS.items()]
    subprocess.run(args, check=True, capture_output=True, text=True)
    return out / (notebook.stem + ".slides.html")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "slides")
    args = p.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    install_vendor(args.out / "vendor")
    for nb in notebooks:
        print(f"slides: {render(nb, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
