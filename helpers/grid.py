"""BadNets' single-target grid: every (source ``i``, target ``j``) attack, run as independent jobs.

Gu et al. (2017, Fig. 5) poison only images of class ``i``, each stamped and relabelled ``j``, and
report every one of the 90 pairs ``i != j`` as two heatmaps: the error on clean images and the error
on backdoored images. Here each pair is one model of the course recipe:

* the L trigger at its default position, stamped in place on ``n_poisoned`` random training images
  of class ``source`` (the same validation split as every lesson), relabelled ``target``;
* the fast recipe (:class:`~helpers.training.TrainConfig`), cached like every other model;
* clean accuracy on the whole MNIST test set, and ASR over the test images of class ``source`` with
  the L (the share predicted ``target``).

The pairs are independent, so :func:`run_grid` runs them on `Ray <https://docs.ray.io>`_: a
local Ray with ``workers`` processes by default, or the cluster at ``$RAY_ADDRESS`` when it is set.
``executor="local"`` runs them one after the other in this process (no Ray needed). Every
number is computed by :func:`run_pair`, whatever runs it.

``make grid`` writes ``results/grid.json`` (:func:`save_grid`): the key numbers, every pair, and the
provenance (recipe, library versions, seeds, data and model hashes, machine). Lesson 6 reads that
file (:func:`load_grid`); a test recomputes two pairs and compares them within :data:`PAIR_TOLERANCE`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._checks import (NUM_CLASSES, check_bool, check_choice, check_images, check_int, check_label_value, check_labels,
                      check_path)
from .cache import library_versions
from .io import atomic_write_json, read_json, sha256_array
from .metrics import clean_accuracy, predict
from .poisoning import split_validation
from .training import TrainConfig, train_cached
from .triggers import get_trigger, stamp

GRID_TRIGGER = "L"
GRID_N_POISONED = 550  #: images of the source class poisoned per pair: 1 % of the 55 000 training images
GRID_FILE = Path(__file__).resolve().parent.parent / "results" / "grid.json"
GRID_FORMAT = 1
EXECUTORS = ("ray", "local")
#: Largest difference between a recomputed pair and the committed one that counts as the same result
#: (fractions). Round-off from another CPU, thread count or process moves a pair's clean accuracy by
#: hundredths of a point and a learned backdoor's ASR by tenths; a pair whose backdoor failed to form
#: would move by tens of points and fail.
PAIR_TOLERANCE = {"clean_accuracy": 0.005, "asr": 0.02}


@dataclass(frozen=True)
class GridPair:
    """One single-target attack: class ``source`` poisoned to ``target``, and what it achieved."""

    source: int
    target: int
    n_poisoned: int
    clean_accuracy: float  #: on the whole clean test set
    asr: float  #: share of the source-class test images with the trigger predicted ``target``
    n_asr_images: int  #: source-class test images the ASR counts
    model_sha256: str | None  #: the cached model file's SHA-256 (None if it could not be cached)
    train_seconds: float  #: training time, or the time to load it from the cache
    from_cache: bool

    @property
    def clean_error(self) -> float:
        return 1.0 - self.clean_accuracy


@dataclass
class GridResult:
    """Every pair of a grid, with the recipe and provenance that produced it."""

    pairs: list[GridPair]
    provenance: dict = field(default_factory=dict)

    def matrix(self, what: str) -> np.ndarray:
        """10x10 array of ``what`` (``"asr"``, ``"clean_error"`` or ``"clean_accuracy"``) per (source, target); NaN where no pair ran."""
        check_choice(what, "what", ("asr", "clean_error", "clean_accuracy"))
        out = np.full((NUM_CLASSES, NUM_CLASSES), np.nan)
        for p in self.pairs:
            out[p.source, p.target] = getattr(p, what)
        return out

    def pair(self, source: int, target: int) -> GridPair:
        for p in self.pairs:
            if (p.source, p.target) == (source, target):
                return p
        raise KeyError(f"no pair ({source}, {target}) in this grid")

    def key_numbers(self) -> dict[str, float]:
        asr = np.array([p.asr for p in self.pairs])
        err = np.array([p.clean_error for p in self.pairs])
        return {"grid_pairs": len(self.pairs), "grid_median_asr": float(np.median(asr)), "grid_min_asr": float(asr.min()),
                "grid_median_clean_error": float(np.median(err)), "grid_max_clean_error": float(err.max())}


def all_pairs() -> list[tuple[int, int]]:
    """The 90 (source, target) pairs with source != target, source-major."""
    return [(i, j) for i in range(NUM_CLASSES) for j in range(NUM_CLASSES) if i != j]


def check_pairs(pairs, name: str = "pairs") -> list[tuple[int, int]]:
    """Validate a list of (source, target) pairs: two different labels each, no repeats, at least one."""
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
        raise TypeError(f"{name} must be a list of (source, target) pairs, got {pairs!r}")
    out = []
    for k, p in enumerate(pairs):
        if isinstance(p, (str, bytes)) or not hasattr(p, "__len__") or len(p) != 2:
            raise ValueError(f"{name}[{k}] must be a (source, target) pair, got {p!r}")
        s, t = check_label_value(p[0], f"{name}[{k}][0]"), check_label_value(p[1], f"{name}[{k}][1]")
        if s == t:
            raise ValueError(f"{name}[{k}] = ({s}, {t}): the source and the target must differ")
        out.append((s, t))
    if not out:
        raise ValueError(f"{name} is empty; give at least one (source, target) pair")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats a pair: {out}")
    return out


def poison_source(x: np.ndarray, y: np.ndarray, *, source: int, target: int, n_poisoned: int = GRID_N_POISONED,
                  seed: int = 0):
    """``(x_poisoned, y_poisoned, indices)``: ``n_poisoned`` random images of class ``source`` stamped with the L
    and relabelled ``target``; every other image untouched. The inputs are never modified."""
    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    source, target = check_label_value(source, "source"), check_label_value(target, "target")
    if source == target:
        raise ValueError(f"source and target must differ, got {source} for both")
    candidates = np.flatnonzero(y == source)
    if candidates.size == 0:
        raise ValueError(f"y has no image of class source={source}, so there is nothing to poison")
    n_poisoned = check_int(n_poisoned, "n_poisoned", 1, len(candidates))  # at most every image of the class
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    indices = np.sort(rng.choice(candidates, size=n_poisoned, replace=False)).astype(np.int64)
    trigger = get_trigger(GRID_TRIGGER)
    x_out, y_out = x.copy(), y.copy()
    x_out[indices] = stamp(x[indices], trigger, trigger.default_position)
    y_out[indices] = target
    return x_out, y_out, indices


def _check_data(data):
    if data is None:
        from .data import load_mnist

        return load_mnist()
    try:
        (x_train, y_train), (x_test, y_test) = data
    except (TypeError, ValueError):
        raise TypeError("data must be ((x_train, y_train), (x_test, y_test)) or None for MNIST") from None
    x_train = check_images(x_train, "x_train")
    x_test = check_images(x_test, "x_test")
    return ((x_train, check_labels(y_train, len(x_train), "y_train", against="x_train")),
            (x_test, check_labels(y_test, len(x_test), "y_test", against="x_test")))


def run_pair(source: int, target: int, *, n_poisoned: int = GRID_N_POISONED, config: TrainConfig = TrainConfig(),
             n_val: int = 5000, data=None, cache_dir=None) -> GridPair:
    """Poison class ``source`` to ``target``, train (or load from the cache) and evaluate one model."""
    source, target = check_pairs([(source, target)], "(source, target)")[0]
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {config!r}")
    (x_train, y_train), (x_test, y_test) = _check_data(data)
    n_val = check_int(n_val, "n_val", 1, len(x_train) - 1)
    (x_tr, y_tr), _ = split_validation(x_train, y_train, n_val=n_val, seed=0)
    xp, yp, _ = poison_source(x_tr, y_tr, source=source, target=target, n_poisoned=n_poisoned)
    describe = {"grid": {"source": source, "target": target, "n_poisoned": int(n_poisoned), "n_val": n_val,
                         "trigger": get_trigger(GRID_TRIGGER).fingerprint()}}
    trained = train_cached(xp, yp, config, describe=describe, cache_dir=cache_dir, progress=False,
                           desc=f"{source}->{target}")
    keep = np.flatnonzero(y_test == source)
    if keep.size == 0:
        raise ValueError(f"the test set has no image of class {source}, so the pair's ASR is undefined")
    trigger = get_trigger(GRID_TRIGGER)
    pred = predict(trained.model, stamp(x_test[keep], trigger, trigger.default_position))
    return GridPair(source, target, int(n_poisoned), clean_accuracy(trained.model, x_test, y_test),
                    float(np.mean(pred == target)), int(keep.size), trained.sha256, float(trained.train_seconds),
                    bool(trained.from_cache))


def _pair_job(source, target, n_poisoned, config_dict, n_val, data, cache_dir, env):
    """What one Ray worker runs: the same :func:`run_pair`, in a fresh process."""
    os.environ.update(env)
    return asdict(run_pair(source, target, n_poisoned=n_poisoned, config=TrainConfig(**config_dict), n_val=n_val,
                           data=data, cache_dir=cache_dir))


#: Environment a Ray worker needs to see what this process sees (the data, the cache, the numeric path).
FORWARDED_ENV = ("MNIST_NPZ", "BADNETS_CACHE", "BADNETS_LOG_DIR", "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA",
                 "TF_CPP_MIN_LOG_LEVEL")


def _run_on_ray(jobs, workers: int, address: str | None, progress: bool) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ImportError("the grid runs on Ray: install it with  pip install -e '.[grid]'  "
                          "(or pass executor='local' to run the pairs in this process)") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        ray.init(**kwargs, log_to_driver=False, logging_level="ERROR", configure_logging=False)
    try:
        job = ray.remote(num_cpus=1)(_pair_job)
        data_ref = ray.put(jobs[0][5]) if jobs and jobs[0][5] is not None else None
        refs = [job.remote(*j[:5], data_ref, *j[6:]) for j in jobs]
        out, pending, done = {}, list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            out[ready[0]] = ray.get(ready[0])
            done += 1
            if progress:
                r = out[ready[0]]
                print(f"[{done}/{len(refs)}] {r['source']}->{r['target']}: ASR {r['asr']:.2%}, "
                      f"clean {r['clean_accuracy']:.2%}", flush=True)
        return [out[r] for r in refs]
    finally:
        if started_here:
            ray.shutdown()


def cpu_description() -> dict:
    """The CPU's model name and the SIMD flags that change TensorFlow's numeric path."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx")))
                break
    except OSError:
        pass
    return {"model": name, "simd_flags": flags, "cores": os.cpu_count()}


def run_grid(pairs=None, *, executor: str = "ray", workers: int = 2, n_poisoned: int = GRID_N_POISONED,
             config: TrainConfig = TrainConfig(), n_val: int = 5000, data=None, cache_dir=None,
             progress: bool = False) -> GridResult:
    """Run the single-target attacks ``pairs`` (default: all 90) and collect them, with provenance.

    ``executor="ray"`` (the default) sends each pair to a Ray worker: a local Ray with ``workers``
    processes, or the cluster at ``$RAY_ADDRESS``. ``executor="local"`` runs them here, in turn.
    """
    pairs = all_pairs() if pairs is None else check_pairs(pairs)
    executor = check_choice(executor, "executor", EXECUTORS)
    workers = check_int(workers, "workers", 1, 256)
    n_poisoned = check_int(n_poisoned, "n_poisoned", 1)
    n_val = check_int(n_val, "n_val", 1)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {config!r}")
    progress = check_bool(progress, "progress")
    cache_dir = None if cache_dir is None else str(check_path(cache_dir, "cache_dir"))
    data_used = _check_data(data)
    start = time.perf_counter()
    if executor == "local":
        rows = []
        for k, (s, t) in enumerate(pairs):
            rows.append(asdict(run_pair(s, t, n_poisoned=n_poisoned, config=config, n_val=n_val, data=data_used,
                                        cache_dir=cache_dir)))
            if progress:
                print(f"[{k + 1}/{len(pairs)}] {s}->{t}: ASR {rows[-1]['asr']:.2%}", flush=True)
        address = None
    else:
        address = os.environ.get("RAY_ADDRESS") or None
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        jobs = [(s, t, n_poisoned, asdict(config), n_val, data, cache_dir, env) for s, t in pairs]
        rows = _run_on_ray(jobs, workers, address, progress)
    seconds = time.perf_counter() - start
    (x_train, y_train), (x_test, y_test) = data_used
    provenance = {
        "format": GRID_FORMAT,
        "attack": {"trigger": GRID_TRIGGER, "position": list(get_trigger(GRID_TRIGGER).default_position),
                   "n_poisoned_per_pair": n_poisoned, "poisoned_from": "source class only, stamped in place",
                   "poison_seed": 0, "n_val": n_val, "validation_seed": 0},
        "recipe": {"name": "fast", **asdict(config)},
        "data": {"x_train_sha256": sha256_array(x_train), "y_train_sha256": sha256_array(y_train),
                 "x_test_sha256": sha256_array(x_test), "y_test_sha256": sha256_array(y_test)},
        "versions": {**library_versions(), "ray": _ray_version()},
        "executor": {"kind": executor, "workers": workers if executor == "ray" and not address else None,
                     "cluster": bool(address), "seconds": round(seconds, 1)},
        "machine": {**cpu_description(), "python": platform.python_version(),
                    "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                    "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default")},
    }
    return GridResult([GridPair(**r) for r in rows], provenance)


def _ray_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:  # noqa: BLE001 - Ray is optional
        return None


def save_grid(result: GridResult, path: str | os.PathLike = GRID_FILE) -> Path:
    """Write ``result`` as JSON, atomically: key numbers at the top, then every pair, then the provenance."""
    if not isinstance(result, GridResult):
        raise TypeError(f"result must be a GridResult, got {type(result).__name__}")
    path = check_path(path, "path")
    atomic_write_json(path, {**result.key_numbers(), "pairs": [asdict(p) for p in result.pairs],
                             "provenance": result.provenance})
    return path


_PAIR_FIELDS = {"source": int, "target": int, "n_poisoned": int, "clean_accuracy": float, "asr": float,
                "n_asr_images": int, "model_sha256": (str, type(None)), "train_seconds": float, "from_cache": bool}


def load_grid(path: str | os.PathLike = GRID_FILE) -> GridResult:
    """Read a grid written by :func:`save_grid`, checking every field (the file may be edited or corrupt)."""
    path = check_path(path, "path")
    raw = read_json(path, "grid file")
    if not isinstance(raw, dict) or not isinstance(raw.get("pairs"), list) or not isinstance(raw.get("provenance"), dict):
        raise ValueError(f"{path} must hold a JSON object with 'pairs' (a list) and 'provenance' (an object)")
    pairs = []
    for k, row in enumerate(raw["pairs"]):
        if not isinstance(row, dict) or set(row) != set(_PAIR_FIELDS):
            raise ValueError(f"{path}: pairs[{k}] must have exactly the fields {sorted(_PAIR_FIELDS)}")
        for name, kind in _PAIR_FIELDS.items():
            value = row[name]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = row[name] = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{path}: pairs[{k}].{name} = {value!r} is not a {getattr(kind, '__name__', kind)}")
        for name in ("clean_accuracy", "asr"):
            if not 0.0 <= row[name] <= 1.0:
                raise ValueError(f"{path}: pairs[{k}].{name} = {row[name]!r} must lie in 0..1")
        pairs.append(GridPair(**row))
    check_pairs([(p.source, p.target) for p in pairs], f"{path}: pairs")
    result = GridResult(pairs, raw["provenance"])
    for key, value in result.key_numbers().items():
        if key in raw and not np.isclose(raw[key], value):
            raise ValueError(f"{path}: {key} = {raw[key]!r} does not match its pairs ({value!r})")
    return result


def main(argv=None) -> int:
    """``make grid`` (``scripts/run_grid.py``): run the 90 pairs and write ``results/grid.json``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executor", choices=EXECUTORS, default="ray")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="local Ray worker processes (ignored when RAY_ADDRESS names a cluster)")
    parser.add_argument("--out", default=str(GRID_FILE))
    args = parser.parse_args(argv)
    result = run_grid(executor=args.executor, workers=args.workers, progress=True)
    path = save_grid(result, args.out)
    print(json.dumps(result.key_numbers(), indent=1))
    print(f"wrote {path} in {result.provenance['executor']['seconds']} s")
    return 0

