"""Input validation shared by every public helper.

Each check raises ``TypeError`` (wrong kind of object or dtype) or
``ValueError`` (right kind, wrong value) with a message that names the
parameter, the value it got and the range it allows, so a student can fix the
call without reading the source.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

NUM_CLASSES = 10


def check_images(x, name: str = "x", *, allow_float: bool = False, allow_single: bool = False) -> np.ndarray:
    """Validate a batch of greyscale images ``(N, H, W)`` and return it as an array.

    uint8 images must hold 0..255. With ``allow_float`` a float image in [0, 1]
    is accepted too (stamping works in both spaces); float values above 1 are
    rejected because they almost always mean "0..255 stored as float".
    With ``allow_single`` a single ``(H, W)`` image is accepted.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of images, got {type(x).__name__}")
    ranks = (2, 3) if allow_single else (3,)
    if x.ndim not in ranks:
        expected = "(H, W) or (N, H, W)" if allow_single else "(N, H, W)"
        raise ValueError(f"{name} must have shape {expected} (greyscale images), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); pass at least one image")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if not allow_float:
            raise TypeError(
                f"{name} must be uint8 images with values 0..255, got dtype {x.dtype}; "
                f"convert with (x * 255).round().astype('uint8') if it holds values in [0, 1]"
            )
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (0.0 <= lo and hi <= 1.0) or math.isnan(lo) or math.isnan(hi):
            raise ValueError(
                f"{name} is a float image and must hold values in [0, 1], got range [{lo:g}, {hi:g}]; "
                f"0..255 images must be stored as uint8"
            )
        return x
    allowed = "uint8 or float in [0, 1]" if allow_float else "uint8"
    raise TypeError(f"{name} must have dtype {allowed}, got {x.dtype}")


def check_labels(y, n: int | None = None, name: str = "y") -> np.ndarray:
    """Validate integer class labels in 0..9, optionally of length ``n``."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of labels, got {type(y).__name__}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (N,), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError(f"{name} is empty; pass at least one label")
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels but the images hold {n}; x and {name} must have the same length")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= NUM_CLASSES:
        raise ValueError(f"{name} must hold labels in 0..{NUM_CLASSES - 1}, got values in {lo}..{hi}")
    return y


def check_rate(rate, name: str = "rate") -> float:
    """Validate a fraction in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {rate!r}")
    rate = float(rate)
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (a fraction, e.g. 0.05 for 5 %), got {rate}")
    return rate


def check_label_value(value, name: str = "target") -> int:
    """Validate a single class label in 0..9."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer class label in 0..{NUM_CLASSES - 1}, got {value!r}")
    value = int(value)
    if not 0 <= value < NUM_CLASSES:
        raise ValueError(f"{name} must be a class label in 0..{NUM_CLASSES - 1}, got {value}")
    return value


def check_int(value, name: str, lo: int, hi: int | None = None) -> int:
    """Validate an integer in ``lo..hi`` (``hi`` open-ended when None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        upper = "" if hi is None else f"..{hi}"
        raise ValueError(f"{name} must be in {lo}{upper}{'' if hi is not None else ' or more'}, got {value}")
    return value


def check_positive(value, name: str) -> float:
    """Validate a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_position(position, trigger_shape: tuple[int, int], image_shape: tuple[int, int], name: str = "position") -> tuple[int, int]:
    """Validate the (row, col) of a trigger's top-left pixel so it fits on the image."""
    if not isinstance(position, (tuple, list, np.ndarray)) or len(position) != 2:
        raise TypeError(f"{name} must be a (row, col) pair, got {position!r}")
    row, col = position
    for label, v in (("row", row), ("col", col)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} {label} must be an integer, got {v!r}")
    row, col = int(row), int(col)
    th, tw = trigger_shape
    ih, iw = image_shape
    max_row, max_col = ih - th, iw - tw
    if not (0 <= row <= max_row and 0 <= col <= max_col):
        raise ValueError(
            f"{name} {(row, col)} puts the {th}x{tw} trigger off the {ih}x{iw} image; "
            f"row must be in 0..{max_row} and col in 0..{max_col}"
        )
    return row, col
