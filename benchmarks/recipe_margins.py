"""How far the default recipe clears the course's two goals, over seeds and numeric configurations.

For each training-and-poisoning seed (the same number seeds both) and each
numeric configuration, the default recipe is trained from its own model cache
in a fresh process, and its clean accuracy and attack success rate are
measured on the validation split and on the test set. The margin of a number
is how far it lies above its goal (98.5 % clean accuracy, 99 % ASR); the
smallest margin over every run is what the README reports.

Numeric configurations (each changes the floating-point round-off of training):

* ``default``: whatever this machine gives (oneDNN on, its widest vector ISA, every core);
* ``onednn-off``: ``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's own kernels;
* ``avx2-1core``: oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) on one core.

Usage: ``python benchmarks/recipe_margins.py [--seeds 0 1 2 3 4] [--configs default onednn-off avx2-1core]``
Writes ``benchmarks/results/recipe_margins.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CONFIGS = {
    "default": {},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "avx2-1core": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2", "BADNETS_ONE_CORE": "1"},
}

ONE_RUN = """
import json, os, sys
if os.environ.get("BADNETS_ONE_CORE"):
    os.sched_setaffinity(0, {0})
from dataclasses import replace
from helpers import attack
from helpers.training import TrainConfig
seed = int(sys.argv[1])
d = attack.DEFAULT_RECIPE
recipe = replace(d, poison_seed=seed, train=replace(d.train, seed=seed))
r = attack.run_attack(recipe, progress=False)
print(json.dumps({"seed": seed, "rate": recipe.rate, "epochs": recipe.train.epochs,
                  "val_clean_accuracy": r.val_clean_accuracy, "val_asr": r.val_asr,
                  "test_clean_accuracy": r.test.clean_accuracy, "test_asr": r.test.attack_success_rate,
                  "train_seconds": r.trained.train_seconds, "from_cache": r.trained.from_cache}))
"""


def markdown_table(data: dict) -> str:
    """The README's table: the smallest number over seeds per configuration, and the smallest margin."""
    goals = data["goals"]
    cols = [("val", "clean_accuracy"), ("val", "asr"), ("test", "clean_accuracy"), ("test", "asr")]
    lines = ["| configuration | seeds | " + " | ".join(f"lowest {s} {m.replace('_', ' ').replace('asr', 'ASR')}" for s, m in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for config in dict.fromkeys(r["config"] for r in data["runs"]):
        runs = [r for r in data["runs"] if r["config"] == config]
        cells = [f"{min(r[f'{s}_{m}'] for r in runs):.2%}" for s, m in cols]
        lines.append(f"| {config} | {', '.join(str(r['seed']) for r in runs)} | " + " | ".join(cells) + " |")
    margins = [f"{data['smallest_margin'][f'{s}_{m}'] * 100:+.2f} pp" for s, m in cols]
    lines.append("| **smallest margin above the goal** | | " + " | ".join(margins) + " |")
    lines.append("")
    lines.append(f"Goals: clean accuracy {goals['clean_accuracy']:.1%}, ASR {goals['asr']:.0%}. "
                 f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['date']}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--cache-root", default=str(ROOT / ".cache" / "margins"),
                   help="one model cache per configuration below this folder (default %(default)s)")
    p.add_argument("--out", default=str(HERE / "results" / "recipe_margins.json"))
    p.add_argument("--table", action="store_true", help="print the README's table from --out and stop")
    args = p.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_training import machine
    from helpers.attack import ACCURACY_GOAL, ASR_GOAL
    from helpers.io import atomic_write_json

    runs = []
    for config in args.configs:
        env = dict(os.environ, **CONFIGS[config])
        if config != "default":  # the default configuration shares the lessons' cache (seed 0 is their model)
            env["BADNETS_CACHE"] = str(Path(args.cache_root) / config)
        for seed in args.seeds:
            out = subprocess.run([sys.executable, "-c", ONE_RUN, str(seed)], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            run = {"config": config, **json.loads(out.strip().splitlines()[-1])}
            runs.append(run)
            print(f"{config:11s} seed {seed}: val {run['val_clean_accuracy']:.2%} / {run['val_asr']:.2%}, "
                  f"test {run['test_clean_accuracy']:.2%} / {run['test_asr']:.2%}", flush=True)
    goals = {"clean_accuracy": ACCURACY_GOAL, "asr": ASR_GOAL}
    smallest = {f"{split}_{metric}": min(r[f"{split}_{metric}"] - goal for r in runs)
                for split in ("val", "test") for metric, goal in goals.items()}
    atomic_write_json(args.out, {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "goals": goals,
                                 "smallest_margin": smallest, "runs": runs})
    print("smallest margins above the goals: " + ", ".join(f"{k} {v * 100:+.2f} pp" for k, v in smallest.items()))
    print(f"wrote {args.out}")
    print(markdown_table(json.loads(Path(args.out).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
