"""The series' wall time in two checkouts, run in alternation on one machine: a baseline and a candidate.

Each run executes ``scripts/run_series.py --no-slides`` of one checkout (with that checkout's ``helpers`` first on
the path), its notebooks written to a temporary folder, against the model cache ``--cache`` (default: the
project's ``.cache/models``). Runs alternate baseline, candidate, baseline, ... so drift in the machine's speed
falls on both. A first, unrecorded run of each fills the cache with whatever that checkout computes (``--no-fill``
skips it when the cache is already warm for both). Reports the median wall time of each, per lesson and in all,
and the ratio baseline / candidate; writes ``benchmarks/results/ab_series.json`` with the machine's CPU flags.

Usage: ``python benchmarks/ab_series.py --baseline /path/to/old/checkout [--candidate .] [--runs 3]``
(``git worktree add /tmp/base <commit>`` gives a baseline checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def one_run(checkout: Path, cache: Path, lessons: list[str]) -> dict:
    """One series run of ``checkout``: its wall time and each lesson's (kernel start-up included)."""
    with tempfile.TemporaryDirectory() as out:
        times = Path(out) / "lesson_times.json"
        env = dict(os.environ, BADNETS_CACHE=str(cache), PYTHONPATH=str(checkout),
                   BADNETS_RESULTS_DIR=str(Path(out) / "results"), BADNETS_FIGURES_DIR=str(Path(out) / "figures"))
        cmd = [sys.executable, str(checkout / "scripts" / "run_series.py"), "--no-slides", "--keep-results",
               "--output-dir", out, "--times-json", str(times), "--log", str(Path(out) / "series.log")]
        if lessons:
            cmd += ["--lessons", *lessons]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=checkout)
        seconds = time.perf_counter() - start
        per_lesson = json.loads(times.read_text(encoding="utf-8"))
    return {"seconds": seconds, "per_lesson": per_lesson}


def _median_table(runs: list[dict]) -> dict:
    lessons = sorted(runs[0]["per_lesson"])
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "per_lesson": {name: statistics.median(r["per_lesson"][name] for r in runs) for name in lessons}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="the checkout to compare against")
    p.add_argument("--candidate", type=Path, default=ROOT, help="the checkout under test (default: this one)")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "models")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lessons", nargs="*", default=[], help="only these lessons (NN prefixes)")
    p.add_argument("--no-fill", action="store_true", help="skip the unrecorded first run of each checkout")
    p.add_argument("--out", type=Path, default=HERE / "results" / "ab_series.json")
    args = p.parse_args(argv)
    if args.runs < 1:
        raise SystemExit(f"--runs must be at least 1, got {args.runs}")
    checkouts = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    for name, path in checkouts.items():
        if not (path / "scripts" / "run_series.py").is_file():
            raise SystemExit(f"--{name} {path} is not a checkout of the course (no scripts/run_series.py)")
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_training import machine
    from helpers._tf import import_tensorflow
    from helpers.io import atomic_write_json

    import_tensorflow()  # TensorFlow's start-up lines go to its log file, not to this report

    def commit(path: Path) -> str:
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return done.stdout.strip() + ("+changes" if dirty else "")

    if not args.no_fill:
        for name, path in checkouts.items():
            print(f"filling the cache for the {name} ({path})", flush=True)
            one_run(path, args.cache, args.lessons)
    runs = {"baseline": [], "candidate": []}
    for i in range(args.runs):
        for name, path in checkouts.items():
            r = one_run(path, args.cache, args.lessons)
            runs[name].append(r)
            print(f"run {i + 1}/{args.runs} {name:9s} {r['seconds']:7.1f} s", flush=True)
    median = {name: _median_table(rs) for name, rs in runs.items()}
    ratio = median["baseline"]["seconds"] / median["candidate"]["seconds"]
    print(f"median: baseline {median['baseline']['seconds']:.1f} s, candidate {median['candidate']['seconds']:.1f} s; "
          f"baseline / candidate = {ratio:.2f}x")
    for lesson in median["baseline"]["per_lesson"]:
        b, c = median["baseline"]["per_lesson"][lesson], median["candidate"]["per_lesson"][lesson]
        print(f"  {lesson:28s} {b:7.1f} s -> {c:7.1f} s")
    atomic_write_json(args.out, {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "checkouts": {name: {"path": str(path), "commit": commit(path)} for name, path in checkouts.items()},
        "cache": "warm for both (filled by an unrecorded first run of each)" if not args.no_fill else "as found",
        "lessons": args.lessons or "all",
        "runs": args.runs,
        "median": median,
        "ratio_baseline_over_candidate": ratio,
        "all_runs": runs,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
