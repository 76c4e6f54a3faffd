"""Wall time and peak memory of the whole series, from a cold and from a warm model cache.

Runs ``scripts/run_series.py --no-slides`` (every lesson top to bottom in a
fresh kernel, outputs written to a temporary folder so the committed lessons
stay untouched) ``--runs`` times from an empty model cache and ``--runs``
times from the cache the cold run filled. Peak memory is the largest
resident set of any process of the run (the lesson kernels included).
Reports medians, of the whole series and of each lesson (``per_lesson``, which the instructor guide
turns into durations); writes ``benchmarks/results/series.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def one_run(cache: str, out: str) -> dict:
    """Run the series in a child process; its RUSAGE_CHILDREN covers the kernels it started.

    Returns the whole run's seconds and peak memory, and each lesson's seconds (``per_lesson``, from
    ``run_series.py --times-json``: the wall time of executing that notebook, kernel start-up included).
    """
    times = os.path.join(out, "lesson_times.json")
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        f"subprocess.run([sys.executable, {str(ROOT / 'scripts' / 'run_series.py')!r}, '--no-slides', '--output-dir', {out!r},"
        f" '--times-json', {times!r}], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = dict(os.environ, BADNETS_CACHE=cache)
    seconds, rss_kib = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.split()
    with open(times, encoding="utf-8") as f:
        per_lesson = json.load(f)
    return {"seconds": float(seconds), "peak_rss_mib": int(rss_kib) / 1024, "per_lesson": per_lesson}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "series.json"))
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_training import machine
    from helpers.io import atomic_write_json

    info = machine()
    runs = {"cold": [], "warm": []}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            for kind in ("cold", "warm"):
                r = one_run(cache, out)
                runs[kind].append(r)
                print(f"run {i + 1}/{args.runs} {kind}: {r['seconds']:.1f} s, peak {r['peak_rss_mib']:.0f} MiB", flush=True)
        # written after every run, so an interrupted benchmark still leaves its medians so far
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_rss_mib")} for k, v in runs.items()}
        per_lesson = {k: {stem: statistics.median(r["per_lesson"][stem] for r in v) for stem in v[0]["per_lesson"]}
                      for k, v in runs.items()}
        atomic_write_json(args.out, {"machine": info, "runs_done": i + 1, "runs_planned": args.runs, "median": med,
                                     "per_lesson": per_lesson, "all_runs": runs, "date": time.strftime("%Y-%m-%d")})
    print(f"median of {args.runs}: cold cache {med['cold']['seconds']:.1f} s (peak {med['cold']['peak_rss_mib']:.0f} MiB), "
          f"warm cache {med['warm']['seconds']:.1f} s (peak {med['warm']['peak_rss_mib']:.0f} MiB)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
