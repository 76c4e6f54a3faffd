"""Run the whole series top to bottom as a student would, then render the slides.

Each lesson is executed in a fresh kernel with its working directory in
``notebooks/`` (so it writes ``figures/``, ``results/`` and ``artifacts/`` as
it would in JupyterLab), and its outputs and widget state are saved back into
the notebook. The terminal shows one progress bar over the lessons and, at
the end, a summary: each lesson's wall time, the chosen poisoning rate, clean
accuracy and attack success rate. Everything else the kernels print (Jupyter's
and TensorFlow's own log lines) goes to a log file whose path is printed.

By default the run regenerates the committed results (``results/*.json``,
``BADNETS_RESULTS_UPDATE=1``) and lists every key number that moved.

Usage: ``python scripts/run_series.py [--no-slides] [--output-dir DIR] [--log FILE] [--keep-results]``
(``--output-dir`` writes the executed notebooks there instead of in place).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"


def execute(path: Path, out: Path, timeout: int = 900) -> float:
    """Execute one notebook (widget state stored) and write it to ``out``; return the wall time."""
    import nbformat
    from nbclient import NotebookClient

    from helpers.io import atomic_write_text

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    seconds = time.perf_counter() - start
    atomic_write_text(out, nbformat.writes(nb) + "\n")
    return seconds


@contextlib.contextmanager
def output_to_log(log: Path):
    """Point file descriptors 1 and 2 (ours and the kernels') at ``log``; yield a stream to the terminal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
        terminal.close()


def read_all_results() -> dict[str, dict]:
    out = {}
    for p in sorted(RESULTS.glob("*.json")):
        with contextlib.suppress(ValueError):
            out[p.stem] = json.loads(p.read_text())
    return out


def moved(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """One line per key number whose committed value changed in this run."""
    lines = []
    for lesson, values in sorted(after.items()):
        old = before.get(lesson, {})
        for key, v in sorted(values.items()):
            if old.get(key) != v:
                lines.append(f"  {lesson}.{key}: {old.get(key, '(new)')} -> {v}")
    return lines


def summary() -> str:
    """The chosen rate and its test numbers, read from lesson 3's fresh results."""
    out = Path(os.environ.get("BADNETS_RESULTS_DIR") or RESULTS) / "03_poisoning_rate_sweep.json"
    r = json.loads(out.read_text())
    return (f"chosen poisoning rate {r['chosen_rate']:.2%} ({r['chosen_n_poisoned']} images): "
            f"clean test accuracy {r['test_clean_accuracy']:.2%}, attack success rate {r['test_asr']:.2%}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-slides", action="store_true", help="skip rendering the slides")
    p.add_argument("--output-dir", type=Path, help="write executed notebooks here instead of in place")
    p.add_argument("--log", type=Path, default=ROOT / ".cache" / "logs" / "series.log",
                   help="file for everything the kernels print (default %(default)s)")
    p.add_argument("--keep-results", action="store_true",
                   help="check against results/*.json instead of regenerating them (fresh ones go to $BADNETS_RESULTS_DIR)")
    p.add_argument("--lessons", nargs="*", help="run only these lessons (file names or NN prefixes)")
    p.add_argument("--times-json", type=Path,
                   help="also write each lesson's wall time, {lesson stem: seconds}, to this JSON file")
    args = p.parse_args(argv)
    from tqdm import tqdm

    lessons = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        lessons = [nb for nb in lessons if any(nb.name.startswith(s) for s in args.lessons)]
    if not args.keep_results:
        os.environ["BADNETS_RESULTS_UPDATE"] = "1"
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the kernel's debugger warning
    before = read_all_results()
    times = {}
    total = time.perf_counter()
    with output_to_log(args.log) as terminal:
        print(f"raw output of the kernels: {args.log}", file=terminal)
        bar = tqdm(lessons, desc="lessons", unit="lesson", file=terminal, dynamic_ncols=True)
        for nb in bar:
            bar.set_postfix_str(nb.stem)
            out = (args.output_dir / nb.name) if args.output_dir else nb
            out.parent.mkdir(parents=True, exist_ok=True)
            times[nb.name] = execute(nb, out)
            print(f"{nb.name}: {times[nb.name]:.1f} s", flush=True)
        bar.close()
        if not args.no_slides:
            import render_slides

            render_slides.main(["--out", str(ROOT / "slides"),
                                *[str((args.output_dir or NOTEBOOKS) / nb.name) for nb in lessons]])
            print(f"slides written to {ROOT / 'slides'}", file=terminal)
    for name, seconds in times.items():
        print(f"{name:40s} {seconds:6.1f} s")
    if args.times_json:
        from helpers.io import atomic_write_json

        atomic_write_json(args.times_json, {Path(name).stem: seconds for name, seconds in times.items()})
    print(f"{'all lessons':40s} {time.perf_counter() - total:6.1f} s")
    if not args.keep_results:
        changes = moved(before, read_all_results())
        print("\n".join(["key numbers that moved in results/:", *changes]) if changes else "results/: no key number moved")
    if any(nb.name.startswith("03_") for nb in lessons):
        print(summary())
    if not args.output_dir and not args.keep_results:  # the lessons and results/ changed in place: so does the guide
        import make_instructor

        make_instructor.main([])
    print(f"raw output of the kernels: {args.log}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
