"""Training speed and memory of the course's two recipes against plain Keras, stopping on validation data.

Each measurement runs in a fresh Python process (so start-up costs such as
graph tracing count, and peak memory is that process's own); the kinds of one
run are measured one after another and the runs repeat that order, so the
recipe and its baseline alternate; the figures reported are medians over
``--runs`` repetitions (default 3). Each measurement records the wall time and
the CPU time spent in training alone.

* recipe:            the course's default attack recipe, trained from a cold cache
                     (``helpers.training.train`` with ``TrainConfig()``);
* baseline:          the same model and poisoned data, ``model.fit`` with Keras
                     defaults (batch 32, Adam 1e-3), one epoch at a time until
                     both goals are met on the victim's clean *validation* split
                     and its stamped copy (at most 10 epochs): what a victim
                     without the course's recipe would do. The test set is
                     scored once, at the end, for the report;
* fidelity:          the fidelity recipe (``helpers.fidelity``) on the same poisoned
                     data, from a cold cache: early stopping on validation accuracy;
* fidelity_baseline: plain ``model.fit`` (batch 32, Adam 1e-3), one epoch at a
                     time until its validation accuracy reaches the fidelity
                     model's (at most ``FidelityConfig.max_epochs`` epochs);
* load:              loading the cached recipe model (hash check + safe-mode
                     load), once as the first TensorFlow work of the process and
                     once more (the figure that matters in a running notebook kernel).

Usage: ``python benchmarks/bench_training.py [--runs 3] [--no-fidelity]``;
writes ``benchmarks/results/training.json`` and prints a table.
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


def _plain_fit_until(model, x, y, done, max_epochs: int):
    """Plain ``model.fit`` (Keras defaults: batch 32, shuffled) one epoch at a time until ``done(model)``."""
    seconds = cpu = 0.0
    epochs = 0
    while epochs < max_epochs:
        start, start_cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        epochs += 1
        if done(model):
            return seconds, cpu, epochs, True
    return seconds, cpu, epochs, False


def _plain_model():
    import keras

    from helpers.model import build_badnets
    from helpers.training import make_deterministic

    make_deterministic(0)
    model = build_badnets()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def worker(kind: str, cache: str, target: float | None = None) -> dict:
    from helpers.attack import ACCURACY_GOAL, ASR_GOAL, DEFAULT_RECIPE, poisoned_training_set, trojaned_for
    from helpers.metrics import attack_success_rate, clean_accuracy
    from helpers.model import to_model_input

    poisoned, (x_val, y_val), (x_test, y_test) = poisoned_training_set(DEFAULT_RECIPE)
    trojaned_val = trojaned_for(DEFAULT_RECIPE, x_val, y_val)
    out: dict = {"kind": kind}
    if kind == "recipe":
        from helpers.training import train_cached

        start_cpu = time.process_time()
        t = train_cached(poisoned.x, poisoned.y, DEFAULT_RECIPE.train, describe=DEFAULT_RECIPE.describe(), cache_dir=cache, progress=False)
        assert not t.from_cache, "the recipe must be measured from a cold cache"
        out.update(seconds=t.train_seconds, cpu_seconds=time.process_time() - start_cpu, epochs=DEFAULT_RECIPE.train.epochs)
        model = t.model
    elif kind == "baseline":
        model = _plain_model()

        def done(m):  # the victim's own goals, on its clean validation split and its stamped copy
            return clean_accuracy(m, x_val, y_val) >= ACCURACY_GOAL and attack_success_rate(m, trojaned_val) >= ASR_GOAL

        seconds, cpu, epochs, reached = _plain_fit_until(model, to_model_input(poisoned.x), poisoned.y, done, 10)
        out.update(seconds=seconds, cpu_seconds=cpu, epochs=epochs, reached=reached)
    elif kind == "fidelity":
        from helpers.fidelity import train_fidelity

        start, start_cpu = time.perf_counter(), time.process_time()
        f = train_fidelity(poisoned.x, poisoned.y, x_val, y_val, describe=DEFAULT_RECIPE.describe(), cache_dir=cache)
        assert not f.from_cache, "the fidelity recipe must be measured from a cold cache"
        out.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - start_cpu,
                   epochs=f.epochs_run, best_epoch=f.best_epoch, val_clean_accuracy=float(f.val_accuracy.max()))
        model = f.model
    elif kind == "fidelity_baseline":
        from helpers.fidelity import FidelityConfig

        if target is None:
            raise ValueError("fidelity_baseline needs --target (the fidelity model's validation accuracy)")
        model = _plain_model()
        seconds, cpu, epochs, reached = _plain_fit_until(
            model, to_model_input(poisoned.x), poisoned.y, lambda m: clean_accuracy(m, x_val, y_val) >= target,
            FidelityConfig().max_epochs)
        out.update(seconds=seconds, cpu_seconds=cpu, epochs=epochs, reached=reached, target=target,
                   val_clean_accuracy=clean_accuracy(model, x_val, y_val))
    elif kind == "load":
        from helpers.training import load_verified_model

        sidecars = (json.loads(p.read_text()) for p in sorted(Path(cache).glob("*.json")))
        meta = next(m for m in sidecars if m.get("file", "").endswith(".keras"))  # the recipe's model
        path = Path(cache) / meta["file"]
        start = time.perf_counter()
        model = load_verified_model(path, meta["sha256"])  # first load pays TensorFlow's start-up
        first = time.perf_counter() - start
        start = time.perf_counter()
        model = load_verified_model(path, meta["sha256"])  # as in a running notebook kernel
        out.update(seconds=time.perf_counter() - start, first_load_seconds=first)
    else:
        raise ValueError(kind)
    trojaned_test = trojaned_for(DEFAULT_RECIPE, x_test, y_test)
    out.update(  # the test set, for the report only: it decided nothing above
        clean_accuracy=clean_accuracy(model, x_test, y_test),
        attack_success_rate=attack_success_rate(model, trojaned_test),
        peak_rss_mib=peak_rss_mib(),
    )
    return out


def run_worker(kind: str, cache: str, target: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--cache", cache]
    if target is not None:
        cmd += ["--target", repr(target)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


METRICS = ("seconds", "cpu_seconds", "clean_accuracy", "attack_success_rate", "peak_rss_mib")


def _median(rows: list[dict]) -> dict:
    med = {m: statistics.median(r[m] for r in rows) for m in METRICS if all(m in r for r in rows)}
    for extra in ("epochs", "first_load_seconds", "val_clean_accuracy"):
        if all(extra in r for r in rows):
            med[extra] = statistics.median(r[extra] for r in rows)
    if all("reached" in r for r in rows):
        med["reached_in_every_run"] = all(r["reached"] for r in rows)
    return med


def _ratios(med: dict, fast: str, slow: str) -> dict:
    return {"wall": med[slow]["seconds"] / med[fast]["seconds"], "cpu": med[slow]["cpu_seconds"] / med[fast]["cpu_seconds"]}


def readme_paragraph(data: dict, name: str = "training.json") -> str:
    """The README's sentences on training speed, made from ``name`` in ``benchmarks/results/`` (a test checks the
    README quotes them)."""
    m, med = data["machine"], data["median"]
    rec, base, load = med["recipe"], med["baseline"], med["load"]
    isa = "AVX-512" if "avx512f" in m["cpu_flags"] else "AVX2" if "avx2" in m["cpu_flags"] else "no AVX2"
    text = (f"`{name}` was measured on {data['date']} on {m['cpu']} ({m['cores']} cores, {isa}) by `{data['command']}` "
            f"(medians): the default recipe trained in {rec['seconds']:.1f} s ({rec['cpu_seconds']:.1f} s of CPU time; "
            f"{rec['epochs']:g} epochs; clean {rec['clean_accuracy']:.2%}, ASR {rec['attack_success_rate']:.2%}; peak "
            f"{rec['peak_rss_mib'] / 1024:.1f} GiB) against {base['seconds']:.1f} s ({base['cpu_seconds']:.1f} s CPU; "
            f"{base['epochs']:g} epochs) for plain Keras stopped on the validation split, "
            f"{data['speedup_vs_baseline']['wall']:.2f}x in wall time and {data['speedup_vs_baseline']['cpu']:.2f}x in "
            f"CPU time.")
    if "fidelity" in med:
        fid, fb = med["fidelity"], med["fidelity_baseline"]
        reached = ("" if fb["reached_in_every_run"] else
                   f", which after {fb['epochs']:g} epochs had still not reached the fidelity model's validation "
                   f"accuracy (so {data['fidelity_speedup_vs_baseline']['wall']:.1f}x is a lower bound)")
        text += (f" The fidelity recipe trained in {fid['seconds']:.1f} s ({fid['epochs']:g} epochs) against "
                 f"{fb['seconds']:.1f} s for plain Keras{reached}.")
    text += (f" Loading a cached model takes {load['seconds'] * 1000:.0f} ms in a running kernel "
             f"({load['first_load_seconds']:.1f} s as a process's first TensorFlow work).")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-fidelity", action="store_true", help="only the default recipe (the fidelity pair takes minutes)")
    p.add_argument("--worker", choices=["recipe", "baseline", "fidelity", "fidelity_baseline", "load"], help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--target", type=float, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(HERE / "results" / "training.json"))
    p.add_argument("--paragraph", action="store_true", help="print the README's sentences from --out and stop")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.cache, args.target)))
        return 0
    if args.paragraph:
        print(readme_paragraph(json.loads(Path(args.out).read_text(encoding="utf-8")), Path(args.out).name))
        return 0
    kinds = ["recipe", "load", "baseline"] + ([] if args.no_fidelity else ["fidelity", "fidelity_baseline"])
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            target = None
            for kind in kinds:
                r = run_worker(kind, cache, target if kind == "fidelity_baseline" else None)
                if kind == "fidelity":
                    target = r["val_clean_accuracy"]
                runs[kind].append(r)
                print(f"run {i + 1}/{args.runs} {kind:17s} {r['seconds']:7.2f} s  clean {r['clean_accuracy']:.2%}  "
                      f"ASR {r['attack_success_rate']:.2%}  epochs {r.get('epochs', '-')}  peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    med = {k: _median(v) for k, v in runs.items()}
    result = {
        "machine": machine(),
        "runs": args.runs,
        "median": med,
        "speedup_vs_baseline": _ratios(med, "recipe", "baseline"),
        "all_runs": runs,
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/bench_training.py --runs %d%s%s" % (
            args.runs, " --no-fidelity" if args.no_fidelity else "",
            "" if Path(args.out).resolve() == (HERE / "results" / "training.json").resolve() else f" --out {args.out}"),
    }
    if not args.no_fidelity:
        result["fidelity_speedup_vs_baseline"] = _ratios(med, "fidelity", "fidelity_baseline")
    sys.path.insert(0, str(HERE.parent))
    from helpers.io import atomic_write_json

    atomic_write_json(args.out, result)
    m = result["machine"]
    print(f"\nmedian of {args.runs} runs on {m['cores']} cores ({m['cpu']}; {' '.join(m['cpu_flags'])}):")
    for kind in kinds:
        r = med[kind]
        if kind == "load":
            print(f"  cached model load: {r['seconds'] * 1000:.0f} ms in a running process, "
                  f"{r['first_load_seconds']:.2f} s as the first TensorFlow work of a fresh process")
            continue
        print(f"  {kind:17s} {r['seconds']:7.2f} s wall, {r['cpu_seconds']:7.2f} s CPU, {r['epochs']:g} epoch(s), "
              f"clean {r['clean_accuracy']:.2%}, ASR {r['attack_success_rate']:.2%}, peak {r['peak_rss_mib']:.0f} MiB")
    for name, key in (("recipe", "speedup_vs_baseline"), ("fidelity", "fidelity_speedup_vs_baseline")):
        if key in result:
            print(f"  {name} speed-up: {result[key]['wall']:.2f}x wall, {result[key]['cpu']:.2f}x CPU")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
