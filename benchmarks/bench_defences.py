"""Run time of each defence of lesson 7 against the course's trojaned model, on this machine.

Median of ``--runs`` repetitions (default 3) in one process, after a warm-up
that loads the models (the cache is filled by the first call if needed).
Writes ``benchmarks/results/defences.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "defences.json"))
    args = p.parse_args()

    from benchmarks.bench_training import machine
    from helpers import attack, data, defences, triggers
    from helpers.io import atomic_write_json

    (_, _), (x_test, y_test) = data.load_mnist()
    trojaned = attack.run_attack(progress=False)
    poisoned, (x_val, y_val), _ = attack.poisoned_training_set(attack.DEFAULT_RECIPE)
    probe = x_test[y_test != 0][:500]
    probe_trojaned = triggers.stamp(probe, "L")
    m = trojaned.model
    tasks = {
        "STRIP (3000 inputs x 20 overlays)": lambda: defences.strip(m, x_val[1000:3000], probe, probe_trojaned, x_val[:1000]),
        "activation clustering (55000 images, detection only, clean threshold included)": lambda: defences.activation_clustering(
            m, poisoned.x, poisoned.y, poisoned.is_poisoned, silhouette_threshold=defences.clean_silhouette_threshold(m, x_val, y_val)),
        "spectral signatures (55000 images, detection only)": lambda: defences.spectral_signatures(m, poisoned.x, poisoned.y, poisoned.is_poisoned),
        "fine-pruning (stopping rule over 33 levels, 2 epochs fine-tuning)": lambda: defences.fine_pruning(m, x_val, y_val, x_test, y_test, trojaned.trojaned_test),
        "Neural Cleanse (10 classes x 300 steps)": lambda: defences.neural_cleanse(m, x_val[:1000], steps=300),
    }
    results = {}
    for name, task in tasks.items():
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            task()
            times.append(time.perf_counter() - start)
        results[name] = {"median_seconds": statistics.median(times), "runs": times}
        print(f"{statistics.median(times):7.1f} s  {name}", flush=True)
    atomic_write_json(args.out, {"machine": machine(), "runs": args.runs, "results": results, "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
