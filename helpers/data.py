"""Loading MNIST offline or online, verified by hash.

:func:`load_mnist` returns the arrays exactly as ``keras.datasets.mnist.load_data()``
does, but first checks every array's SHA-256 against the published values, so a
tampered or truncated copy is never used (a poisoned *dataset* is the very
attack this course is about). It looks, in order, at

1. the ``path`` argument,
2. the ``MNIST_NPZ`` environment variable,
3. the Keras cache (``$KERAS_HOME/datasets/mnist.npz``, by default ``~/.keras``),
4. and only then downloads through Keras.

The source file is opened read-only, with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .io import sha256_array

#: SHA-256 of each array's raw bytes, computed from the canonical IDX files.
MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}

FIX_HINT = (
    "To fix it, either set MNIST_NPZ to a verified copy (for this course: "
    "export MNIST_NPZ=/path/to/shared/data/mnist.npz) or pass load_mnist(path=...), "
    "or go online once so Keras can download and cache MNIST in ~/.keras/datasets."
)


class MnistUnavailableError(RuntimeError):
    """No verified copy of MNIST could be found or downloaded."""


class MnistIntegrityError(ValueError):
    """A copy of MNIST was found but its arrays do not match the published hashes."""


def keras_cache_path() -> Path:
    """Where Keras caches ``mnist.npz`` (honours ``KERAS_HOME``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def read_verified_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the four MNIST arrays from ``path`` and check shape, dtype and SHA-256.

    Raises :class:`MnistIntegrityError` naming the first array that differs.
    Results are memoised per file (path, size and modification time), so a
    lesson that loads MNIST twice pays for the hashing once.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no MNIST file at {path}")
    stat = path.stat()
    return _read_verified(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _read_verified(path: Path, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        missing = sorted(set(MNIST_SHA256) - set(f.files))
        if missing:
            raise MnistIntegrityError(f"{path} is not an MNIST .npz: arrays {missing} are missing (found {f.files})")
        arrays = {k: f[k] for k in MNIST_SHA256}
    for key, a in arrays.items():
        if a.dtype != np.uint8 or a.shape != MNIST_SHAPES[key]:
            raise MnistIntegrityError(
                f"{path}: {key} should be uint8 of shape {MNIST_SHAPES[key]}, got {a.dtype} {a.shape}"
            )
        digest = sha256_array(a)
        if digest != MNIST_SHA256[key]:
            raise MnistIntegrityError(
                f"{path}: {key} has SHA-256 {digest}, expected {MNIST_SHA256[key]}; "
                f"the file is corrupt or has been modified. {FIX_HINT}"
            )
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def _download_with_keras() -> Path:
    import keras  # imported here: the offline path needs no TensorFlow

    keras.datasets.mnist.load_data()  # downloads into the Keras cache and checks its own file hash
    return keras_cache_path()


def find_mnist(path: str | os.PathLike | None = None) -> Path:
    """Return the path of a verified MNIST file, following the documented order."""
    if path is not None:
        read_verified_npz(path)
        return Path(path)
    env = os.environ.get("MNIST_NPZ")
    if env:
        if not Path(env).is_file():
            raise MnistUnavailableError(f"MNIST_NPZ is set to {env!r}, but no file is there. {FIX_HINT}")
        read_verified_npz(env)
        return Path(env)
    cache = keras_cache_path()
    if cache.is_file():
        try:
            read_verified_npz(cache)
            return cache
        except MnistIntegrityError:
            pass  # a bad cached copy: let Keras fetch a fresh one below
    try:
        downloaded = _download_with_keras()
        read_verified_npz(downloaded)
        return downloaded
    except MnistIntegrityError:
        raise
    except Exception as exc:  # no network, proxy, DNS ...
        raise MnistUnavailableError(
            f"MNIST is not in MNIST_NPZ or the Keras cache ({cache}) and downloading it failed "
            f"({type(exc).__name__}: {exc}). {FIX_HINT}"
        ) from exc


def load_mnist(path: str | os.PathLike | None = None):
    """Return ``(x_train, y_train), (x_test, y_test)`` as verified, read-only uint8 arrays.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28) and (10000,), exactly
    as Keras returns them. The arrays are read-only so that no lesson can
    change the shared copy by accident: take ``.copy()`` to edit one.
    """
    a = read_verified_npz(find_mnist(path))
    return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])
