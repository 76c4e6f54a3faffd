"""Input validation shared by every public helper.

Each check raises ``TypeError`` (wrong kind of object or dtype) or
``ValueError`` (right kind, wrong value) with a message that names the
parameter, the value it got and the range it allows, so a student can fix the
call without reading the source.

The checks accept NumPy scalars (``np.int64(3)``, ``np.float32(0.5)``) and
return plain Python ``int``/``float``/``bool``, so a validated value is safe to
store and to write as JSON. Booleans are never accepted where a number is
expected (``True`` is not a poisoning rate), and NaN and infinities never where
a finite number is.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)  #: (height, width) of an MNIST image, the only size the model takes


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _range_text(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    """"in [0, 1]", "in (0, 1]", ">= 0", "> 0", "<= 1"; "" when unbounded."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


# ------------------------------------------------------------------ scalars


def check_number(value, name: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> float:
    """Validate a finite real number in the interval given by ``lo``/``hi`` (closed unless ``*_open``); return a float."""
    allowed = _range_text(lo, hi, lo_open, hi_open)
    wanted = f"a finite number {allowed}".rstrip()
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {wanted}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {wanted}, got {value}")
    if (lo is not None and (value < lo or (lo_open and value == lo))) or (hi is not None and (value > hi or (hi_open and value == hi))):
        raise ValueError(f"{name} must be {allowed}, got {value:g}")
    return value


def check_rate(rate, name: str = "rate") -> float:
    """Validate a fraction in [0, 1]; return it as a float."""
    if _is_bool(rate) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {rate!r}")
    rate = float(rate)
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (a fraction, e.g. 0.05 for 5 %), got {rate}")
    return rate


def check_positive(value, name: str) -> float:
    """Validate a finite number > 0; return it as a float."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_int(value, name: str, lo: int, hi: int | None = None) -> int:
    """Validate an integer in ``lo..hi`` (``hi`` open-ended when None); return it as an int."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        upper = "" if hi is None else f"..{hi}"
        raise TypeError(f"{name} must be an integer in {lo}{upper}{'' if hi is not None else ' or more'}, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        upper = "" if hi is None else f"..{hi}"
        raise ValueError(f"{name} must be in {lo}{upper}{'' if hi is not None else ' or more'}, got {value}")
    return value


def check_label_value(value, name: str = "target") -> int:
    """Validate a single class label in 0..9; return it as an int."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer class label in 0..{NUM_CLASSES - 1}, got {value!r}")
    value = int(value)
    if not 0 <= value < NUM_CLASSES:
        raise ValueError(f"{name} must be a class label in 0..{NUM_CLASSES - 1}, got {value}")
    return value


def check_bool(value, name: str) -> bool:
    """Validate a flag: ``True``/``False`` (NumPy booleans too), not 0/1 or a string."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(value, name: str, choices) -> str:
    """Validate a string that must be one of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_str(value, name: str, *, allow_empty: bool = True) -> str:
    """Validate a string (a title, a label)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    if not allow_empty and not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_path(path, name: str = "path") -> Path:
    """Validate a file-system path (``str`` or ``os.PathLike``); return it as a ``Path``."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path), got {path!r}")
    if isinstance(path, str) and not path.strip():
        raise ValueError(f"{name} must be a non-empty path, got {path!r}")
    return Path(path)


# ---------------------------------------------------------------- sequences


def check_sequence(values, name: str, *, allow_empty: bool = False) -> list:
    """Validate a list-like of items (list, tuple, range, 1-D array); return it as a list."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list or tuple, got {values!r}")
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}")
    items = list(values)
    if not items and not allow_empty:
        raise ValueError(f"{name} is empty; pass at least one value")
    return items


def _check_unique(items: list, name: str) -> None:
    seen = set()
    for i, v in enumerate(items):
        if v in seen:
            raise ValueError(f"{name}[{i}] = {v!r} appears twice; every value of {name} must be distinct")
        seen.add(v)


def check_rates(rates, name: str = "rates", *, unique: bool = True, allow_empty: bool = False) -> list[float]:
    """Validate a list of fractions in [0, 1] (each checked, duplicates refused, empty only if allowed); return floats."""
    items = [check_rate(r, f"{name}[{i}]") for i, r in enumerate(check_sequence(rates, name, allow_empty=allow_empty))]
    if unique:
        _check_unique(items, name)
    return items


def check_int_list(values, name: str, lo: int, hi: int | None = None, *, unique: bool = True,
                   allow_empty: bool = True) -> list[int]:
    """Validate a list of integers in ``lo..hi`` (each checked, duplicates refused when ``unique``); return ints."""
    items = [check_int(v, f"{name}[{i}]", lo, hi) for i, v in enumerate(check_sequence(values, name, allow_empty=allow_empty))]
    if unique:
        _check_unique(items, name)
    return items


def check_strings(values, name: str, n: int | None = None, *, against: str = "") -> list[str]:
    """Validate a list of strings, of length ``n`` (the length of ``against``) when given."""
    items = check_sequence(values, name, allow_empty=n == 0)
    for i, v in enumerate(items):
        check_str(v, f"{name}[{i}]")
    if n is not None and len(items) != n:
        raise ValueError(f"{name} has {len(items)} entries but {against} has {n}; they must have the same length")
    return items


# ------------------------------------------------------------------- arrays


def _length_error(name: str, got: int, n: int, against: str, what: str) -> ValueError:
    return ValueError(f"{name} has {got} {what} but {against} has {n}; {against} and {name} must have the same length")


def check_images(x, name: str = "x", *, allow_float: bool = False, allow_single: bool = False,
                 shape: tuple[int, int] | None = None, n: int | None = None, against: str = "") -> np.ndarray:
    """Validate a batch of greyscale images ``(N, H, W)`` and return it as an array.

    uint8 images must hold 0..255. With ``allow_float`` a float image in [0, 1]
    is accepted too (stamping works in both spaces); float values above 1 are
    rejected because they almost always mean "0..255 stored as float", and NaN
    is rejected. With ``allow_single`` a single ``(H, W)`` image is accepted.
    ``shape`` requires each image to be ``(H, W)`` (the model takes 28x28);
    ``n`` requires ``N`` images (as many as ``against`` holds).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of images, got {type(x).__name__}")
    ranks = (2, 3) if allow_single else (3,)
    if x.ndim not in ranks:
        expected = "(H, W) or (N, H, W)" if allow_single else "(N, H, W)"
        raise ValueError(f"{name} must have shape {expected} (greyscale images), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); pass at least one image")
    if shape is not None and tuple(x.shape[-2:]) != tuple(shape):
        raise ValueError(f"{name} must hold {shape[0]}x{shape[1]} images (the model's input), got shape {x.shape}")
    if n is not None and x.ndim == 3 and len(x) != n:
        raise _length_error(name, len(x), n, against, "images")
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


def check_labels(y, n: int | None = None, name: str = "y", *, against: str = "x", classes: int = NUM_CLASSES) -> np.ndarray:
    """Validate integer class labels in ``0..classes-1``, optionally of length ``n`` (that of ``against``)."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of labels, got {type(y).__name__}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (N,), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError(f"{name} is empty; pass at least one label")
    if n is not None and len(y) != n:
        source = "" if against == "x" else f" ({against} has {n})"
        raise ValueError(f"{name} has {len(y)} labels but the images hold {n}{source}; "
                         f"{against} and {name} must have the same length")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(f"{name} must hold labels in 0..{classes - 1}, got values in {lo}..{hi}")
    return y


def check_bool_mask(mask, n: int, name: str, *, against: str = "x") -> np.ndarray:
    """Validate a boolean mask ``(n,)`` over the images of ``against``."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a boolean numpy array, got {type(mask).__name__}")
    if mask.dtype != bool:
        raise TypeError(f"{name} must have dtype bool, got {mask.dtype}; convert with {name}.astype(bool)")
    if mask.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (N,), got shape {mask.shape}")
    if len(mask) != n:
        raise _length_error(name, len(mask), n, against, "entries")
    return mask


def check_float_array(a, name: str, *, ndim: int | tuple[int, ...] | None = None, lo: float | None = None,
                      hi: float | None = None, allow_nan: bool = False, n: int | None = None, against: str = "") -> np.ndarray:
    """Validate a non-empty numeric array (lists are converted) of finite values in [lo, hi]; return it as an array.

    The dtype is kept (no float64 copy of a large float32 array, and the
    same numerics as before validation).

    With ``allow_nan`` NaN entries pass (they mean "no value", e.g. a class
    without images); infinities never do.
    """
    if isinstance(a, (str, bytes)) or _is_bool(a):
        raise TypeError(f"{name} must be a numeric array, got {a!r}")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__} ({exc})") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a numeric array (int or float), got dtype {arr.dtype}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if ranks is not None and arr.ndim not in ranks:
        raise ValueError(f"{name} must have {' or '.join(map(str, ranks))} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one value")
    if n is not None and len(arr) != n:
        raise _length_error(name, len(arr), n, against, "entries")
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{name} must hold finite values, got {arr[i]} at index {i[0] if len(i) == 1 else i}")
    values = arr[~np.isnan(arr)] if allow_nan else arr
    if values.size and ((lo is not None and values.min() < lo) or (hi is not None and values.max() > hi)):
        raise ValueError(f"{name} must hold values {_range_text(lo, hi)}, "
                         f"got values in [{values.min():g}, {values.max():g}]")
    return arr


# -------------------------------------------------------------- positions


def check_position(position, trigger_shape: tuple[int, int], image_shape: tuple[int, int], name: str = "position") -> tuple[int, int]:
    """Validate the (row, col) of a trigger's top-left pixel so it fits on the image; return a tuple of ints."""
    if not isinstance(position, (tuple, list, np.ndarray)) or len(position) != 2 or np.ndim(position) != 1:
        raise TypeError(f"{name} must be a (row, col) pair of integers, got {position!r}")
    row, col = position
    for label, v in (("row", row), ("col", col)):
        if _is_bool(v) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} {label} must be an integer, got {v!r}")
    row, col = int(row), int(col)
    th, tw = trigger_shape
    ih, iw = image_shape
    max_row, max_col = ih - th, iw - tw
    if max_row < 0 or max_col < 0:
        raise ValueError(f"the {th}x{tw} trigger does not fit on the {ih}x{iw} image at any {name}")
    if not (0 <= row <= max_row and 0 <= col <= max_col):
        raise ValueError(
            f"{name} {(row, col)} puts the {th}x{tw} trigger off the {ih}x{iw} image; "
            f"row must be in 0..{max_row} and col in 0..{max_col}"
        )
    return row, col


def check_cell(cell, shape: tuple[int, int], name: str) -> tuple[int, int]:
    """Validate a (row, col) index into a 2-D array of ``shape``; return a tuple of ints."""
    if not isinstance(cell, (tuple, list, np.ndarray)) or len(cell) != 2 or np.ndim(cell) != 1:
        raise TypeError(f"{name} must be a (row, col) pair of integers, got {cell!r}")
    return (check_int(cell[0], f"{name} row", 0, shape[0] - 1), check_int(cell[1], f"{name} col", 0, shape[1] - 1))


def check_image_shape(shape, name: str = "image_shape") -> tuple[int, int]:
    """Validate an image size ``(height, width)`` of positive integers."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise TypeError(f"{name} must be a (height, width) pair of integers, got {shape!r}")
    return (check_int(shape[0], f"{name} height", 1), check_int(shape[1], f"{name} width", 1))


# ------------------------------------------------------------------ models


def check_model(model, name: str = "model"):
    """Validate a model: anything callable on a batch of images (a Keras model, or a stand-in in tests)."""
    if model is None or not callable(model):
        raise TypeError(f"{name} must be a Keras model (callable on a batch of images), got {type(model).__name__}")
    return model


def check_layer(model, layer, name: str = "layer"):
    """Validate that ``model`` has a layer called ``layer``; return the layer.

    ``name`` is the parameter that chose the layer; pass ``"model"`` when the
    layer name is fixed (e.g. ``conv1``) and the model is what is wrong.
    """
    if not isinstance(layer, str):
        raise TypeError(f"{name} must be the name of a layer (a string), got {layer!r}")
    if not hasattr(model, "get_layer") or not hasattr(model, "layers"):
        raise TypeError(f"model must be a Keras model with named layers, got {type(model).__name__}")
    names = [lay.name for lay in model.layers]
    if layer not in names:
        if name == "model":
            raise ValueError(f"model has no layer {layer!r} (its layers: {names}); pass a BadNets model from "
                             f"helpers.model.build_badnets")
        raise ValueError(f"{name} must be one of the model's layers {names}, got {layer!r}")
    return model.get_layer(layer)
