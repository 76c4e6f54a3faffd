"""Loading MNIST offline or online, verified by hash.

:func:`load_mnist` returns the arrays exactly as ``keras.datasets.mnist.load_data()``
does, but first checks every array's SHA-256 against the published values, so a
tampered or truncated copy is never used (a poisoned *dataset* is the very
attack this course is about). It looks, in order, at

1. the ``path`` argument,
2. the ``MNIST_NPZ`` environment variable,
3. the Keras cache (``$KERAS_HOME/datasets/mnist.npz``, by default ``~/.keras``),
4. and only then downloads through Keras.

The source file is opened read-only, with ``allow_pickle=False``. A file that is
missing, empty, truncated, not an ``.npz``, holds pickled objects or differs
from the published hashes raises :class:`MnistIntegrityError` (or
:class:`MnistUnavailableError` when there is no file at all) naming the file and
the fix, never a raw NumPy or ``zipfile`` error. A bad copy in the Keras cache is
reported, not silently replaced.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._checks import check_path
from .io import read_npz, sha256_array

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


#: The most bytes an array of the MNIST .npz may unpack to (x_train is 47 040 000); more is not MNIST (or a zip bomb).
MAX_MEMBER_BYTES = 64 << 20


class MnistError(Exception):
    """Base class of the MNIST loading errors."""


class MnistUnavailableError(MnistError, RuntimeError):
    """No verified copy of MNIST could be found or downloaded."""


class MnistIntegrityError(MnistError, ValueError):
    """A copy of MNIST was found but it cannot be read or its arrays do not match the published hashes."""


def keras_cache_path() -> Path:
    """Where Keras caches ``mnist.npz`` (honours ``KERAS_HOME``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def read_verified_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the four MNIST arrays from ``path`` and check shape, dtype and SHA-256.

    Raises :class:`MnistIntegrityError` naming the file and the first array
    that differs, or what is wrong with the file (empty, truncated, not an
    ``.npz``, pickled objects), and :class:`MnistUnavailableError` when there is
    no file at ``path``. Results are memoised per file (path, size and
    modification time), so a lesson that loads MNIST twice pays for the
    hashing once.
    """
    path = check_path(path).resolve()
    if not path.is_file():
        what = "is a directory, not the mnist.npz file" if path.is_dir() else "does not exist"
        raise MnistUnavailableError(f"no MNIST file at {path}: the path {what}. {FIX_HINT}")
    stat = path.stat()
    if stat.st_size == 0:
        raise MnistIntegrityError(f"{path} is empty (0 bytes), not an MNIST .npz; the download or copy was cut short. {FIX_HINT}")
    return _read_verified(path, stat.st_size, stat.st_mtime_ns)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of ``path``, read without pickle; library errors become :class:`MnistIntegrityError`."""
    return read_npz(path, tuple(MNIST_SHA256), error=MnistIntegrityError, what="an MNIST .npz", fix=FIX_HINT,
                    max_member_bytes=MAX_MEMBER_BYTES)


@lru_cache(maxsize=4)
def _read_verified(path: Path, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    arrays = _read_arrays(path)
    for key, a in arrays.items():
        if a.dtype != np.uint8 or a.shape != MNIST_SHAPES[key]:
            raise MnistIntegrityError(
                f"{path}: {key} should be uint8 of shape {MNIST_SHAPES[key]}, got {a.dtype} {a.shape}. {FIX_HINT}"
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


def _bad_cache(cache: Path, exc: MnistIntegrityError) -> MnistIntegrityError:
    return MnistIntegrityError(
        f"the copy of MNIST in the Keras cache is bad: {exc} Delete it (rm {cache}) so that Keras downloads a fresh "
        f"copy, or set MNIST_NPZ to a verified copy elsewhere."
    )


def find_mnist(path: str | os.PathLike | None = None) -> Path:
    """Return the path of a verified MNIST file, following the documented order.

    A copy in the Keras cache that fails verification is reported (it may
    have been tampered with), never silently replaced by a download.
    """
    if path is not None:
        path = check_path(path)
        read_verified_npz(path)
        return path
    env = os.environ.get("MNIST_NPZ")
    if env:
        if not Path(env).is_file():
            raise MnistUnavailableError(f"MNIST_NPZ is set to {env!r}, but no file is there. {FIX_HINT}")
        read_verified_npz(env)
        return Path(env)
    cache = keras_cache_path()
    if cache.exists():
        try:
            read_verified_npz(cache)
            return cache
        except MnistError as exc:  # tampered, truncated, a directory ...: the user must decide, not us
            raise _bad_cache(cache, exc) from exc
    try:
        downloaded = _download_with_keras()
    except Exception as exc:  # no network, proxy, DNS ...
        raise MnistUnavailableError(
            f"MNIST is not in MNIST_NPZ or the Keras cache ({cache}) and downloading it failed "
            f"({type(exc).__name__}: {exc}). {FIX_HINT}"
        ) from exc
    try:
        read_verified_npz(downloaded)
    except MnistIntegrityError as exc:
        raise _bad_cache(downloaded, exc) from exc
    return downloaded


def load_mnist(path: str | os.PathLike | None = None):
    """Return ``(x_train, y_train), (x_test, y_test)`` as verified, read-only uint8 arrays.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28) and (10000,), exactly
    as Keras returns them. The arrays are read-only so that no lesson can
    change the shared copy by accident: take ``.copy()`` to edit one.
    """
    a = read_verified_npz(find_mnist(path))
    return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])
