"""The detection matrix: every defence of lesson 7 against every attack of lesson 6, and against a clean model.

Each cell runs one defence, under the defender's protocol of lesson 7, on one model:

* **STRIP**: threshold at the 1 % quantile of 2 000 clean validation images (overlays from 1 000 others); the
  false-acceptance rate on 500 trojaned test inputs of *that* attack, the false-rejection rate on 500 clean ones;
* **activation clustering** (the size rule and the clean silhouette gate; no retraining) and **spectral
  signatures** (ε = 0.35, an upper bound stated in advance) on that attack's training set;
* **fine-pruning** at unit level, with Liu et al.'s 4-point rule, and its fine-tuning;
* **Neural Cleanse** (300 steps, λ = 0.01, the success gate), flagging classes with an anomaly index above 2.

The attacks are lesson 6's: the pixel, pattern and blended triggers at 10 % (the highest rate the lesson sweeps), the
course's L at its default rate, all-to-all at 10 %, and the clean-label attack at IBM ART's settings; "none" is the
clean baseline. Every model comes from the course's cache (or is trained). :func:`verdict` states, per defence, what
counts as catching an attack and as a false alarm on the clean model: the same targets as issue 9.

The matrix takes minutes (seven models, Neural Cleanse on each), so ``make matrix`` computes it once and writes
``results/detection_matrix.json`` with its provenance; lesson 7 shows that file, and a test recomputes one row.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._checks import check_choice, check_path
from .attack import DEFAULT_RECIPE, clean_baseline, poisoned_training_set, run_attack, trojaned_for
from .cache import cached_arrays, library_versions
from .io import atomic_write_json, read_json, sha256_array
from .metrics import attack_success_rate

ATTACKS = ("pixel", "pattern", "L", "blend", "all-to-all", "clean-label", "none")
DEFENCES = ("STRIP", "activation clustering", "spectral signatures", "fine-pruning", "Neural Cleanse")
MATRIX_RATE = 0.1  #: poisoning rate of the pixel, pattern, blend and all-to-all models
MATRIX_FILE = Path(__file__).resolve().parent.parent / "results" / "detection_matrix.json"
SOURCES = ("helpers.matrix", "helpers.defences", "helpers.attack", "helpers.variants", "helpers.training",
           "helpers.model", "helpers.poisoning", "helpers.triggers")
#: Largest difference between a recomputed cell and the committed one that is the same result (fractions): the
#: rates count a few to a few hundred of 500 inputs or of a few thousand poisoned images, and move by points between
#: CPUs for a model whose backdoor is only partly learned (the clean-label attack).
CELL_TOLERANCE = 0.05


@dataclass
class Victim:
    """One model under test, with what the defences need: its training set and its trojaned test inputs."""

    attack: str
    model: object
    model_key: str
    x_train: np.ndarray
    y_train: np.ndarray
    is_poisoned: np.ndarray
    trojaned: object  #: a TrojanedSet (for "none": the L on the clean model, to measure false acceptances anyway)
    target: int | None  #: None for all-to-all (every class is a target) and for "none"


def victim(attack: str, *, data=None, cache_dir=None) -> Victim:
    """The model of ``attack`` (one of :data:`ATTACKS`), trained or loaded from the cache."""
    from . import variants

    attack = check_choice(attack, "attack", ATTACKS)
    if attack == "clean-label":
        res = variants.clean_label_attack(data=data, cache_dir=cache_dir)
        base, _, (x_test, y_test) = poisoned_training_set(replace(DEFAULT_RECIPE, rate=0.0), data)
        x = base.x.copy()
        x[res.indices] = res.x_poisoned
        poisoned = np.zeros(len(x), bool)
        poisoned[res.indices] = True
        trojaned = trojaned_for(DEFAULT_RECIPE, x_test, y_test)
        key = "clean-label:" + sha256_array(x)[:16]
        return Victim(attack, res.model, key, x, base.y, poisoned, trojaned, DEFAULT_RECIPE.target)
    if attack == "none":
        r = clean_baseline(data=data, cache_dir=cache_dir, progress=False)
        return Victim(attack, r.model, r.trained.key, r.poisoned.x, r.poisoned.y, r.poisoned.is_poisoned,
                      r.trojaned_test, None)
    if attack == "all-to-all":
        recipe = replace(DEFAULT_RECIPE, mode="all-to-all", rate=MATRIX_RATE)
    elif attack == "L":
        recipe = DEFAULT_RECIPE
    else:
        recipe = replace(DEFAULT_RECIPE, trigger=attack, rate=MATRIX_RATE)
    r = run_attack(recipe, data=data, cache_dir=cache_dir, progress=False)
    return Victim(attack, r.model, r.trained.key, r.poisoned.x, r.poisoned.y, r.poisoned.is_poisoned, r.trojaned_test,
                  None if attack == "all-to-all" else recipe.target)


def _defender_data(data):
    _, (x_val, y_val), (x_test, y_test) = poisoned_training_set(DEFAULT_RECIPE, data)
    return x_val, y_val, x_test, y_test


def run_cell(v: Victim, defence: str, *, data=None, cache_dir=None) -> dict:
    """One defence on one victim: a flat dict of numbers (fractions in 0..1, counts, 0/1 flags), cached."""
    from . import defences

    defence = check_choice(defence, "defence", DEFENCES)
    x_val, y_val, x_test, y_test = _defender_data(data)
    pool, calibrate = x_val[:1000], x_val[1000:3000]
    keep = np.arange(min(500, len(v.trojaned.x)))
    trojaned_probe = v.trojaned.x[keep]
    clean_probe = x_test[y_test != (v.target if v.target is not None else -1)][:500]
    payload = {"model": v.model_key, "defence": defence, "train_x": sha256_array(v.x_train),
               "is_poisoned": sha256_array(v.is_poisoned), "trojaned": sha256_array(trojaned_probe),
               "val": sha256_array(x_val), "test": sha256_array(x_test)}

    def compute():
        start = time.perf_counter()
        if defence == "STRIP":
            s = defences.strip(v.model, calibrate, clean_probe, trojaned_probe, pool, frr=0.01, n_overlay=20)
            out = {"far": s.far, "frr": s.frr}
        elif defence in ("activation clustering", "spectral signatures"):
            acts = defences.representations(v.model, v.x_train)
            if defence == "activation clustering":
                threshold = defences.clean_silhouette_threshold(v.model, x_val, y_val)
                d = defences.activation_clustering(v.model, v.x_train, v.y_train, v.is_poisoned,
                                                   silhouette_threshold=threshold, acts=acts)
            else:
                d = defences.spectral_signatures(v.model, v.x_train, v.y_train, v.is_poisoned, eps=0.35, acts=acts)
            out = {"precision": d.precision, "recall": d.recall, "flagged": d.n_flagged,
                   "flagged_fraction": d.n_flagged / len(d.flagged)}
        elif defence == "fine-pruning":
            f = defences.fine_pruning(v.model, x_val, y_val, x_test, y_test, v.trojaned, granularity="unit")
            out = {"asr_before": attack_success_rate(v.model, v.trojaned),
                   "asr_after": f.chosen.tuned_asr, "clean_accuracy_after": f.chosen.tuned_clean_accuracy,
                   "n_pruned": f.n_pruned}
        else:
            res = defences.neural_cleanse(v.model, pool, steps=300, lam=0.01)
            flagged = np.zeros(10)
            flagged[res.flagged] = 1
            out = {"flags": flagged, "n_flagged": len(res.flagged)}
        out["seconds"] = time.perf_counter() - start
        return {k: np.asarray(val, np.float64) for k, val in out.items()}

    arrays, _, _ = cached_arrays("detection-matrix", payload, compute, cache_dir, depends_on=SOURCES)
    return {k: (a.tolist() if a.ndim else float(a)) for k, a in arrays.items()}


#: What counts as catching an attack, and as a false alarm on the clean model: issue 9's targets for each defence.
STRIP_MAX_FAR, STRIP_MAX_FRR = 0.05, 0.02
DETECTION_MIN = 0.9  #: precision and recall of the poison found in the training set
CLEAN_MAX_FLAGGED = 0.01  #: share of a clean training set flagged
FP_MAX_ASR, FP_MIN_ACCURACY = 0.2, 0.98


def rules() -> dict[str, str]:
    """The verdict rules of :func:`verdict`, in words, per defence (generated from the constants above)."""
    return {
        "STRIP": f"caught: FAR <= {STRIP_MAX_FAR:.0%} at held-out FRR <= {STRIP_MAX_FRR:.0%}; false alarm: FRR above "
                 f"{STRIP_MAX_FRR:.0%}",
        "activation clustering": f"caught: precision and recall >= {DETECTION_MIN:.0%}; false alarm: more than "
                                 f"{CLEAN_MAX_FLAGGED:.0%} of a clean training set flagged",
        "spectral signatures": f"caught: precision and recall >= {DETECTION_MIN:.0%}; false alarm: more than "
                               f"{CLEAN_MAX_FLAGGED:.0%} of a clean training set flagged",
        "fine-pruning": f"caught (removed): ASR after <= {FP_MAX_ASR:.0%} at clean accuracy >= {FP_MIN_ACCURACY:.0%}; "
                        f"false alarm: clean accuracy below {FP_MIN_ACCURACY:.0%}",
        "Neural Cleanse": "caught: flags exactly the target (all-to-all: flags any class); false alarm: flags any class",
    }


def verdict(attack: str, defence: str, cell: dict, target: int | None) -> str:
    """``"caught"``, ``"missed"``, ``"false alarm"`` or ``"quiet"`` (on the clean model), by :func:`rules`."""
    clean = attack == "none"
    if defence == "STRIP":
        if clean:
            return "false alarm" if cell["frr"] > STRIP_MAX_FRR else "quiet"
        return "caught" if cell["far"] <= STRIP_MAX_FAR and cell["frr"] <= STRIP_MAX_FRR else "missed"
    if defence in ("activation clustering", "spectral signatures"):
        if clean:
            return "false alarm" if cell["flagged_fraction"] > CLEAN_MAX_FLAGGED else "quiet"
        return "caught" if cell["precision"] >= DETECTION_MIN and cell["recall"] >= DETECTION_MIN else "missed"
    if defence == "fine-pruning":
        if clean:
            return "false alarm" if cell["clean_accuracy_after"] < FP_MIN_ACCURACY else "quiet"
        return "caught" if cell["asr_after"] <= FP_MAX_ASR and cell["clean_accuracy_after"] >= FP_MIN_ACCURACY else "missed"
    flags = np.flatnonzero(np.asarray(cell["flags"]))
    if clean:
        return "false alarm" if len(flags) else "quiet"
    if target is None:  # all-to-all: no single target to find; a flag names *a* backdoored class
        return "caught" if len(flags) else "missed"
    return "caught" if list(flags) == [target] else "missed"


def note(attack: str, defence: str, cell: dict) -> str:
    """The number behind a verdict, short enough for a cell of the matrix figure."""
    clean = attack == "none"
    if defence == "STRIP":
        return f"FRR {cell['frr']:.1%}" if clean else f"FAR {cell['far']:.1%}, FRR {cell['frr']:.1%}"
    if defence in ("activation clustering", "spectral signatures"):
        if clean or not cell["flagged"]:
            return f"flags {cell['flagged_fraction']:.1%}"
        return f"P {cell['precision']:.0%} R {cell['recall']:.0%}"
    if defence == "fine-pruning":
        return f"acc {cell['clean_accuracy_after']:.1%}" if clean else f"ASR {cell['asr_after']:.1%}"
    flags = np.flatnonzero(np.asarray(cell["flags"])).tolist()
    return "flags " + (", ".join(map(str, flags)) if flags else "none")


def run_matrix(attacks=ATTACKS, *, data=None, cache_dir=None, progress: bool = False) -> dict:
    """Every defence on every attack's model: ``{"cells": {attack: {defence: cell}}, "verdicts": ..., "provenance": ...}``."""
    attacks = [check_choice(a, "attacks", ATTACKS) for a in attacks]
    start = time.perf_counter()
    cells, verdicts, targets = {}, {}, {}
    for a in attacks:
        v = victim(a, data=data, cache_dir=cache_dir)
        targets[a] = v.target
        cells[a], verdicts[a] = {}, {}
        for d in DEFENCES:
            cells[a][d] = run_cell(v, d, data=data, cache_dir=cache_dir)
            verdicts[a][d] = verdict(a, d, cells[a][d], v.target)
            if progress:
                print(f"{a:12s} {d:22s} {verdicts[a][d]}", flush=True)
    from .grid import cpu_description

    provenance = {"format": 1, "rate": MATRIX_RATE, "default_recipe": {"rate": DEFAULT_RECIPE.rate, "trigger": "L",
                                                                       "epochs": DEFAULT_RECIPE.train.epochs},
                  "targets": targets, "versions": library_versions(), "seconds": round(time.perf_counter() - start, 1),
                  "machine": {**cpu_description(), "python": platform.python_version(),
                              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}}
    return {"cells": cells, "verdicts": verdicts, "provenance": provenance}


def save_matrix(matrix: dict, path: str | os.PathLike = MATRIX_FILE) -> Path:
    path = check_path(path, "path")
    atomic_write_json(path, matrix)
    return path


def load_matrix(path: str | os.PathLike = MATRIX_FILE) -> dict:
    """Read ``results/detection_matrix.json``, checking its shape and that every verdict follows from its cell."""
    path = check_path(path, "path")
    raw = read_json(path, "detection matrix")
    if not isinstance(raw, dict) or not {"cells", "verdicts", "provenance"} <= set(raw):
        raise ValueError(f"{path} must hold 'cells', 'verdicts' and 'provenance'")
    for a, row in raw["cells"].items():
        if a not in ATTACKS or not isinstance(row, dict) or set(row) != set(DEFENCES):
            raise ValueError(f"{path}: row {a!r} must be an attack of {ATTACKS} with a cell per defence {DEFENCES}")
        for d, cell in row.items():
            try:
                expected = verdict(a, d, cell, raw["provenance"]["targets"][a])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{path}: cell ({a}, {d}) is incomplete: {exc}") from None
            if raw["verdicts"].get(a, {}).get(d) != expected:
                raise ValueError(f"{path}: verdict ({a}, {d}) = {raw['verdicts'].get(a, {}).get(d)!r} does not follow "
                                 f"from its cell ({expected!r})")
    return raw


def main(argv=None) -> int:
    """``make matrix`` (``scripts/run_matrix.py``): compute the matrix and write ``results/detection_matrix.json``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(MATRIX_FILE))
    args = parser.parse_args(argv)
    matrix = run_matrix(progress=True)
    path = save_matrix(matrix, args.out)
    print(f"wrote {path} in {matrix['provenance']['seconds']} s")
    return 0
