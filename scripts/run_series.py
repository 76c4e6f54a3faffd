"""Run the whole series top to bottom as a student would, then render the slides.

Each lesson is executed in a fresh kernel with its working directory in
``notebooks/`` (so it writes ``figures/`` and ``artifacts/`` as it would in
JupyterLab), its outputs and widget state are saved back into the notebook,
and its wall time is printed. Then every lesson is rendered to offline
reveal.js slides in ``slides/``, and a summary is printed: the chosen
poisoning rate, clean accuracy and attack success rate.

Usage: ``python scripts/run_series.py [--no-slides] [--output-dir DIR]``
(``--output-dir`` writes the executed notebooks there instead of in place).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def execute(path: Path, out: Path, timeout: int = 900) -> float:
    """Execute one notebook (widget state stored) and write it to ``out``; return the wall time."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    from helpers.io import atomic_write_text

    atomic_write_text(out, nbformat.writes(nb) + "\n")
    return seconds


def summary() -> str:
    from helpers import sweep

    points, results = sweep.run_sweep(sweep.DEFAULT_RATES, progress=False)  # every model is cached by now
    chosen = sweep.choose_rate(points)
    return (f"chosen poisoning rate {chosen.rate:.2%} ({chosen.n_poisoned} images): "
            f"clean test accuracy {chosen.test_clean_accuracy:.2%}, attack success rate {chosen.test_asr:.2%}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-slides", action="store_true", help="skip rendering the slides")
    p.add_argument("--output-dir", type=Path, help="write executed notebooks here instead of in place")
    args = p.parse_args(argv)
    lessons = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    total = time.perf_counter()
    for nb in lessons:
        out = (args.output_dir / nb.name) if args.output_dir else nb
        print(f"{nb.name:40s} {execute(nb, out):6.1f} s", flush=True)
    print(f"{'all lessons':40s} {time.perf_counter() - total:6.1f} s")
    if not args.no_slides:
        import render_slides

        render_slides.main(["--out", str(ROOT / "slides"), *[str((args.output_dir or NOTEBOOKS) / nb.name) for nb in lessons]])
    print(summary())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
