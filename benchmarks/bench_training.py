"""Training speed and memory of the default recipe against a plain Keras baseline.

Each measurement runs in a fresh Python process (so start-up costs such as
graph tracing count, and peak memory is that process's own), and the figures
reported are medians over ``--runs`` repetitions (default 3).

* recipe:   the course's default attack recipe, trained from a cold cache
            (``helpers.training.train`` with ``TrainConfig()``);
* baseline: the same model and poisoned data, ``model.fit`` with Keras
            defaults (batch 32, Adam 1e-3), one epoch at a time until both goals
            are met (at most 10 epochs); only time spent in ``fit`` counts;
* load:     loading the cached recipe model (hash check + safe-mode load),
            once as the first TensorFlow work of the process and once more
            (the figure that matters in a running notebook kernel).

Usage: ``python benchmarks/bench_training.py [--runs 3]``; writes
``benchmarks/results/training.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import keras
    import numpy
    import tensorflow as tf

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_flags": cpu_flags(),
    }


def cpu_flags() -> list[str]:
    """The vector-instruction flags of this CPU (what decides TensorFlow's and oneDNN's kernels)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx", "sse4")))
    except OSError:
        pass
    return []


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(kind: str, cache: str) -> dict:
    from helpers.attack import ACCURACY_GOAL, ASR_GOAL, DEFAULT_RECIPE, poisoned_training_set, trojaned_for
    from helpers.metrics import attack_success_rate, clean_accuracy

    poisoned, _, (x_test, y_test) = poisoned_training_set(DEFAULT_RECIPE)
    trojaned = trojaned_for(DEFAULT_RECIPE, x_test, y_test)
    out: dict = {"kind": kind}
    if kind == "recipe":
        from helpers.training import train_cached

        t = train_cached(poisoned.x, poisoned.y, DEFAULT_RECIPE.train, describe=DEFAULT_RECIPE.describe(), cache_dir=cache, progress=False)
        assert not t.from_cache, "the recipe must be measured from a cold cache"
        out.update(seconds=t.train_seconds, epochs=DEFAULT_RECIPE.train.epochs, model=str(t.path))
        model = t.model
    elif kind == "baseline":
        import keras

        from helpers.model import build_badnets, to_model_input
        from helpers.training import make_deterministic

        make_deterministic(0)
        model = build_badnets()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        x = to_model_input(poisoned.x)
        seconds, epochs = 0.0, 0
        while epochs < 10:
            start = time.perf_counter()
            model.fit(x, poisoned.y, batch_size=32, epochs=1, verbose=0)
            seconds += time.perf_counter() - start
            epochs += 1
            if clean_accuracy(model, x_test, y_test) >= ACCURACY_GOAL and attack_success_rate(model, trojaned) >= ASR_GOAL:
                break
        out.update(seconds=seconds, epochs=epochs)
    elif kind == "load":
        from helpers.training import load_verified_model

        meta = json.loads(next(Path(cache).glob("*.json")).read_text())
        path = next(Path(cache).glob("*.keras"))
        start = time.perf_counter()
        model = load_verified_model(path, meta["sha256"])  # first load pays TensorFlow's start-up
        first = time.perf_counter() - start
        start = time.perf_counter()
        model = load_verified_model(path, meta["sha256"])  # as in a running notebook kernel
        out.update(seconds=time.perf_counter() - start, first_load_seconds=first)
    else:
        raise ValueError(kind)
    out.update(
        clean_accuracy=clean_accuracy(model, x_test, y_test),
        attack_success_rate=attack_success_rate(model, trojaned),
        peak_rss_mib=peak_rss_mib(),
    )
    return out


def run_worker(kind: str, cache: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--cache", cache], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--worker", choices=["recipe", "baseline", "load"], help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(HERE / "results" / "training.json"))
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.cache)))
        return 0
    runs: dict[str, list[dict]] = {"recipe": [], "baseline": [], "load": []}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            for kind in ("recipe", "load", "baseline"):
                r = run_worker(kind, cache)
                runs[kind].append(r)
                print(f"run {i + 1}/{args.runs} {kind:8s} {r['seconds']:7.2f} s  clean {r['clean_accuracy']:.2%}  "
                      f"ASR {r['attack_success_rate']:.2%}  peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "clean_accuracy", "attack_success_rate", "peak_rss_mib")} for k, v in runs.items()}
    med["baseline"]["epochs"] = statistics.median(r["epochs"] for r in runs["baseline"])
    med["load"]["first_load_seconds"] = statistics.median(r["first_load_seconds"] for r in runs["load"])
    result = {
        "machine": machine(),
        "runs": args.runs,
        "median": med,
        "speedup_vs_baseline": med["baseline"]["seconds"] / med["recipe"]["seconds"],
        "all_runs": runs,
        "date": time.strftime("%Y-%m-%d"),
    }
    sys.path.insert(0, str(HERE.parent))
    from helpers.io import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"\nmedian of {args.runs} runs on {result['machine']['cores']} cores ({result['machine']['cpu']}):")
    print(f"  recipe   {med['recipe']['seconds']:.2f} s to train (clean {med['recipe']['clean_accuracy']:.2%}, ASR {med['recipe']['attack_success_rate']:.2%}), peak {med['recipe']['peak_rss_mib']:.0f} MiB")
    print(f"  baseline {med['baseline']['seconds']:.2f} s, {med['baseline']['epochs']:.0f} epoch(s) (clean {med['baseline']['clean_accuracy']:.2%}, ASR {med['baseline']['attack_success_rate']:.2%}), peak {med['baseline']['peak_rss_mib']:.0f} MiB")
    print(f"  speed-up {result['speedup_vs_baseline']:.2f}x")
    print(f"  cached model load: {med['load']['seconds'] * 1000:.0f} ms in a running process, "
          f"{med['load']['first_load_seconds']:.2f} s as the first TensorFlow work of a fresh process")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
