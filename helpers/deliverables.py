"""The files students hand in, and loaders that verify them.

* the trojaned model, ``trojaned_model.keras`` (Keras 3 format, no pickle);
* the trojaned test set, ``trojaned_test_set.npz``: the stamped images, their
  true labels and the attacker's labels, the target, the attack mode, and the
  trigger (mask, pattern, position) that was stamped.

Each file is written atomically and gets a ``.sha256`` sidecar in the usual
``sha256sum`` format (``<hex>  <name>``), which the loaders check before
reading anything. Models are loaded with ``safe_mode=True``; arrays with
``allow_pickle=False``.

The loaders then check the *content*: a model must take 28x28x1 images and
output 10 classes; a trojaned test set must hold every array with the right
dtype and shape, consistent labels, a sane trigger, and that trigger stamped at
the recorded position in every image (a hash only proves that nobody changed
the file since its sidecar was written, not that the file is right). Every
problem raises :class:`DeliverableError` naming the file and how to fix it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._checks import IMAGE_SHAPE, check_images, check_label_value, check_labels, check_path, check_position
from ._tf import import_tensorflow
from .io import atomic_path, atomic_write_text, read_npz, sha256_file
from .poisoning import MODES, TrojanedSet, check_backdoor_labels, check_indices
from .triggers import Trigger, check_alpha, check_mask, get_trigger

NPZ_KEYS = ("x", "y_true", "y_target", "source_indices", "target", "mode", "trigger_mask", "trigger_pattern", "position")
OPTIONAL_NPZ_KEYS = ("trigger_alpha",)  #: written only for blended triggers (alpha < 1); absent means 1
MAX_MEMBER_BYTES = 256 << 20  #: refuse an .npz member that would unpack to more than this (a zip bomb)
MAX_SIDECAR_BYTES = 4096

MODEL_FIX = "Re-export it with helpers.deliverables.export_model (or python -m helpers.attack), which also writes the sidecar."
TEST_SET_FIX = ("Re-export it with helpers.deliverables.export_trojaned_test_set (or helpers.attack.export_deliverables), "
                "which also writes the sidecar.")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DeliverableError(ValueError):
    """A hand-in file (model or trojaned test set) or its sidecar is missing, corrupt, tampered with or malformed."""


def _fix_for(path: Path) -> str:
    return MODEL_FIX if path.suffix == ".keras" else TEST_SET_FIX


def _write_sidecar(path: Path) -> str:
    digest = sha256_file(path)
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    return digest


def check_sha256(sha256, name: str = "sha256") -> str:
    """Validate a SHA-256 given as 64 hexadecimal digits; return it in lower case."""
    if not isinstance(sha256, str):
        raise TypeError(f"{name} must be a SHA-256 as a string of 64 hexadecimal digits, got {sha256!r}")
    if not _HEX64.fullmatch(sha256.strip().lower()):
        raise ValueError(f"{name} must be 64 hexadecimal digits, got {sha256!r} ({len(sha256)} characters)")
    return sha256.strip().lower()


def read_sidecar(path: str | os.PathLike) -> str:
    """The SHA-256 recorded in ``<path>.sha256`` (``sha256sum`` format: ``<64 hex digits>  <name>``)."""
    path = check_path(path)
    sidecar = path.with_name(path.name + ".sha256")
    fix = f"{_fix_for(path)} Or pass the expected digest as sha256=..."
    if not sidecar.is_file():
        raise DeliverableError(f"{sidecar} is missing: cannot verify {path.name}. {fix}")
    try:
        with open(sidecar, "rb") as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
        text = raw.decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeliverableError(f"{sidecar} cannot be read as a sidecar ({type(exc).__name__}: {exc}). {fix}") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise DeliverableError(f"{sidecar} is {len(raw)}+ bytes, too long for a sidecar "
                               f"('<64 hex digits>  {path.name}'). {fix}")
    fields = text.split()
    if not fields:
        raise DeliverableError(f"{sidecar} is empty; a sidecar holds '<64 hex digits>  {path.name}'. {fix}")
    if not _HEX64.fullmatch(fields[0].lower()):
        raise DeliverableError(f"{sidecar} does not start with a SHA-256 (64 hexadecimal digits), got {fields[0][:80]!r} "
                               f"({len(fields[0])} characters). {fix}")
    return fields[0].lower()


def verify_file(path: str | os.PathLike, sha256: str | None = None) -> str:
    """Check ``path`` against ``sha256`` (default: its ``.sha256`` sidecar); return the digest."""
    path = check_path(path)
    expected = None if sha256 is None else check_sha256(sha256)
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "missing"
        raise DeliverableError(f"{path} is {what}. {_fix_for(path)}")
    expected = expected or read_sidecar(path)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise DeliverableError(f"{path} cannot be read ({type(exc).__name__}: {exc}). {_fix_for(path)}") from None
    if actual != expected:
        raise DeliverableError(f"{path} has SHA-256 {actual} but {expected} was expected: the file was modified or is "
                               f"corrupt. {_fix_for(path)}")
    return actual


def export_model(model, path: str | os.PathLike) -> str:
    """Save ``model`` as ``.keras`` atomically, write its sidecar, return the SHA-256."""
    path = check_path(path)
    if path.suffix != ".keras":
        raise ValueError(f"path must end in .keras (the Keras 3 format), got {path.name!r}")
    if not hasattr(model, "save"):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return _write_sidecar(path)


def load_model(path: str | os.PathLike, sha256: str | None = None):
    """Load a ``.keras`` model after verifying its hash, in Keras safe mode; check it maps 28x28x1 images to 10 classes."""
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    path = check_path(path)
    if path.suffix != ".keras":
        raise DeliverableError(f"{path} is not a .keras file; a hand-in model is saved in the Keras 3 format. {MODEL_FIX}")
    verify_file(path, sha256)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # not a zip, truncated, unknown or unsafe layers ...
        raise DeliverableError(f"{path} passed its hash check but is not a loadable Keras model "
                               f"({type(exc).__name__}: {exc}). {MODEL_FIX}") from exc
    try:
        shapes = (tuple(model.input_shape), tuple(model.output_shape))
    except Exception:  # a model with several inputs or outputs
        shapes = None
    if shapes != ((None, *IMAGE_SHAPE, 1), (None, 10)):
        raise DeliverableError(f"{path} holds a model that does not map (28, 28, 1) images to 10 classes "
                               f"(input, output shapes: {shapes}). {MODEL_FIX}")
    return model


@dataclass(frozen=True)
class TrojanedTestSetFile:
    """A loaded trojaned test set with the trigger that made it."""

    trojaned: TrojanedSet
    trigger_mask: np.ndarray
    trigger_pattern: np.ndarray
    position: tuple[int, int]
    alpha: float = 1.0  #: the trigger's opacity (1: pasted, as BadNets)


def first_unstamped(x: np.ndarray, mask: np.ndarray, pattern: np.ndarray, position: tuple[int, int],
                    alpha: float = 1.0) -> int | None:
    """Index of the first image of ``x`` that does not carry the trigger at ``position``, or None if all do.

    With ``alpha = 1`` every masked pixel must equal the pattern exactly. A
    blended pixel is ``round((1 - alpha) * x + alpha * pattern)`` for an
    unknown original ``x`` in 0..255, so it must lie between ``alpha *
    pattern`` and ``(1 - alpha) * 255 + alpha * pattern``.
    """
    row, col = position
    h, w = mask.shape
    window = x[:, row : row + h, col : col + w][:, mask].astype(np.float64)
    p = pattern[mask].astype(np.float64)
    if alpha == 1.0:
        bad = (window != p).any(axis=1)
    else:
        lo, hi = np.floor(alpha * p), np.ceil((1.0 - alpha) * 255.0 + alpha * p)
        bad = ((window < lo) | (window > hi)).any(axis=1)
    wrong = np.flatnonzero(bad)
    return int(wrong[0]) if wrong.size else None


def export_trojaned_test_set(path: str | os.PathLike, trojaned: TrojanedSet, trigger: Trigger, position=None, *,
                             alpha: float | None = None) -> str:
    """Write the trojaned test set and its trigger to a compressed ``.npz`` atomically; return the SHA-256.

    ``trigger`` (a :class:`Trigger` or a built-in name), ``position`` (default:
    the trigger's own) and ``alpha`` (default: the trigger's own) must be the
    ones the images were stamped with: every image is checked before writing.
    """
    path = check_path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz, got {path.name!r}")
    if not isinstance(trojaned, TrojanedSet):
        raise TypeError(f"trojaned must be a TrojanedSet (from helpers.poisoning.trojan_test_set), got {type(trojaned).__name__}")
    check_images(trojaned.x, "trojaned.x", shape=IMAGE_SHAPE)
    trigger = get_trigger(trigger)
    position = check_position(trigger.default_position if position is None else position, trigger.shape, IMAGE_SHAPE)
    alpha = trigger.alpha if alpha is None else check_alpha(alpha)
    bad = first_unstamped(trojaned.x, trigger.mask, trigger.pattern, position, alpha)
    if bad is not None:
        raise ValueError(f"trojaned.x[{bad}] does not carry the {trigger.name} trigger at position {position} "
                         f"(alpha {alpha:g}); pass the trigger, position and alpha the images were stamped with")
    extra = {} if alpha == 1.0 else {"trigger_alpha": np.float64(alpha)}
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
            **extra,
        )
    return _write_sidecar(path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every known array of ``path``, read without pickle; library errors become :class:`DeliverableError`."""
    return read_npz(path, NPZ_KEYS, OPTIONAL_NPZ_KEYS, error=DeliverableError, what="a trojaned test set",
                    fix=TEST_SET_FIX, max_member_bytes=MAX_MEMBER_BYTES)


def _scalar(a: np.ndarray, name: str, kind: str):
    """The Python value of a 0-d array of dtype kind ``kind`` ("i": integer, "f": number, "U": string)."""
    kinds = {"i": "iu", "f": "iuf", "U": "U"}[kind]
    if a.shape != () or a.dtype.kind not in kinds:
        what = {"i": "integer", "f": "number", "U": "string"}[kind]
        raise ValueError(f"{name} must be a single {what}, got an array of dtype {a.dtype} and shape {a.shape}")
    return a.item()


def _check_content(a: dict[str, np.ndarray]) -> TrojanedTestSetFile:
    """Check that the arrays of a trojaned test set are consistent with each other; raise ValueError/TypeError if not."""
    x = check_images(a["x"], "x", shape=IMAGE_SHAPE)
    y_true = check_labels(a["y_true"], len(x), "y_true")
    y_target = check_labels(a["y_target"], len(x), "y_target")
    check_indices(a["source_indices"], "source_indices", length=len(x))
    target = check_label_value(_scalar(a["target"], "target", "i"), "target")
    mode = _scalar(a["mode"], "mode", "U")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_backdoor_labels(y_true, y_target, target, mode)
    mask = check_mask(a["trigger_mask"], "trigger_mask")
    pattern = a["trigger_pattern"]
    if pattern.dtype != np.uint8 or pattern.shape != mask.shape:
        raise ValueError(f"trigger_pattern must be uint8 of the mask's shape {mask.shape}, got {pattern.dtype} {pattern.shape}")
    pos = a["position"]
    if pos.shape != (2,) or pos.dtype.kind not in "iu":
        raise ValueError(f"position must be two integers (row, col), got an array of dtype {pos.dtype} and shape {pos.shape}")
    position = check_position(tuple(pos.tolist()), mask.shape, IMAGE_SHAPE)
    alpha = check_alpha(_scalar(a["trigger_alpha"], "trigger_alpha", "f"), "trigger_alpha") if "trigger_alpha" in a else 1.0
    bad = first_unstamped(x, mask, pattern, position, alpha)
    if bad is not None:
        raise ValueError(f"image {bad} (x[{bad}]) does not carry the recorded trigger at position {position}: "
                         f"the trigger was removed or the images were changed")
    trojaned = TrojanedSet(x, y_true, y_target, a["source_indices"], target, mode)
    return TrojanedTestSetFile(trojaned, mask, pattern, position, alpha)


def load_trojaned_test_set(path: str | os.PathLike, sha256: str | None = None) -> TrojanedTestSetFile:
    """Verify and read a file written by :func:`export_trojaned_test_set`.

    The hash is checked first, then the content (see the module docstring);
    any problem raises :class:`DeliverableError` naming the file.
    """
    path = check_path(path)
    verify_file(path, sha256)
    arrays = _read_npz(path)
    try:
        return _check_content(arrays)
    except (TypeError, ValueError) as exc:
        raise DeliverableError(f"{path}: {exc}. {TEST_SET_FIX}") from None
