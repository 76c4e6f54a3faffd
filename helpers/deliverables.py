"""The files students hand in, and loaders that verify them.

* the trojaned model, ``trojaned_model.keras`` (Keras 3 format, no pickle);
* the trojaned test set, ``trojaned_test_set.npz``: the stamped images, their
  true labels and the attacker's labels, the target, the attack mode, and the
  trigger (mask, pattern, position) that was stamped.

Each file is written atomically and gets a ``.sha256`` sidecar in the usual
``sha256sum`` format (``<hex>  <name>``), which the loaders check before
reading anything. Models are loaded with ``safe_mode=True``; arrays with
``allow_pickle=False``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path, atomic_write_text, sha256_file
from .poisoning import MODES, TrojanedSet
from .triggers import Trigger

NPZ_KEYS = ("x", "y_true", "y_target", "source_indices", "target", "mode", "trigger_mask", "trigger_pattern", "position")


def _write_sidecar(path: Path) -> str:
    digest = sha256_file(path)
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    return digest


def read_sidecar(path: str | os.PathLike) -> str:
    """The SHA-256 recorded in ``<path>.sha256``."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} is missing: cannot verify {path.name}")
    return sidecar.read_text().split()[0]


def verify_file(path: str | os.PathLike, sha256: str | None = None) -> str:
    """Check ``path`` against ``sha256`` (default: its ``.sha256`` sidecar); return the digest."""
    expected = sha256 or read_sidecar(path)
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(f"{path} has SHA-256 {actual} but {expected} was expected: the file was modified or is corrupt")
    return actual


def export_model(model, path: str | os.PathLike) -> str:
    """Save ``model`` as ``.keras`` atomically, write its sidecar, return the SHA-256."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"path must end in .keras (the Keras 3 format), got {path.name!r}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return _write_sidecar(path)


def load_model(path: str | os.PathLike, sha256: str | None = None):
    """Load a ``.keras`` model after verifying its hash, in Keras safe mode."""
    import keras

    verify_file(path, sha256)
    return keras.saving.load_model(path, compile=False, safe_mode=True)


@dataclass(frozen=True)
class TrojanedTestSetFile:
    """A loaded trojaned test set with the trigger that made it."""

    trojaned: TrojanedSet
    trigger_mask: np.ndarray
    trigger_pattern: np.ndarray
    position: tuple[int, int]


def export_trojaned_test_set(path: str | os.PathLike, trojaned: TrojanedSet, trigger: Trigger, position=None) -> str:
    """Write the trojaned test set and its trigger to a compressed ``.npz`` atomically; return the SHA-256."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz, got {path.name!r}")
    position = trigger.default_position if position is None else tuple(int(v) for v in position)
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            x=trojaned.x,
            y_true=trojaned.y_true,
            y_target=trojaned.y_target,
            source_indices=trojaned.source_indices,
            target=np.int64(trojaned.target),
            mode=np.array(trojaned.mode),
            trigger_mask=trigger.mask,
            trigger_pattern=trigger.pattern,
            position=np.array(position, np.int64),
        )
    return _write_sidecar(path)


def load_trojaned_test_set(path: str | os.PathLike, sha256: str | None = None) -> TrojanedTestSetFile:
    """Verify and read a file written by :func:`export_trojaned_test_set`."""
    verify_file(path, sha256)
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{path} is not a trojaned test set: arrays {missing} are missing")
        a = {k: f[k] for k in NPZ_KEYS}
    mode = str(a["mode"])
    if mode not in MODES:
        raise ValueError(f"{path}: mode must be one of {MODES}, got {mode!r}")
    trojaned = TrojanedSet(a["x"], a["y_true"], a["y_target"], a["source_indices"], int(a["target"]), mode)
    return TrojanedTestSetFile(trojaned, a["trigger_mask"], a["trigger_pattern"], tuple(int(v) for v in a["position"]))
