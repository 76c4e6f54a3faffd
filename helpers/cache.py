"""A small on-disk cache for arrays that take a while to compute (PGD images, reverse-engineered triggers).

Entries live beside the model cache, keyed by a SHA-256 of a JSON description
of everything that determines them plus the helpers version; they are written
atomically as ``.npz`` (no pickle), verified by a hash sidecar on load, and
recomputed when missing or corrupt. The sidecar also records how long the
computation took, so a lesson can report the real cost even when it loads.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import __version__
from .io import atomic_path, atomic_write_json, sha256_array, sha256_file


def key_of(payload: dict) -> str:
    """SHA-256 of ``payload`` (JSON, keys sorted) and the helpers version."""
    text = json.dumps({"payload": payload, "helpers_version": __version__}, sort_keys=True, default=str)
    return sha256_array(np.frombuffer(text.encode(), np.uint8))


def cached_arrays(name: str, payload: dict, compute: Callable[[], dict[str, np.ndarray]], cache_dir=None):
    """Return ``(arrays, seconds, from_cache)``; ``compute()`` runs only on a miss.

    ``seconds`` is the time ``compute()`` took when it ran (read from the
    sidecar on a hit).
    """
    from .training import default_cache_dir

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = key_of({"name": name, **payload})
    path, sidecar = folder / f"{name}-{key[:24]}.npz", folder / f"{name}-{key[:24]}.json"
    if path.is_file() and sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            if meta["key"] != key or sha256_file(path) != meta["sha256"]:
                raise ValueError("hash mismatch")
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}, float(meta["seconds"]), True
        except Exception as exc:
            warnings.warn(f"array cache entry {path.name} is unusable ({exc}); recomputing", stacklevel=2)
    start = time.perf_counter()
    arrays = compute()
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    atomic_write_json(sidecar, {"key": key, "sha256": sha256_file(path), "seconds": round(seconds, 3), "payload": payload})
    return arrays, seconds, False
