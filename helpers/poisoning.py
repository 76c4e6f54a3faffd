"""Building poisoned training sets and trojaned test sets.

The attacker of BadNets controls a fraction ``rate`` of the training data: it
stamps the trigger on ``round(rate * N)`` images chosen at random (from a seed)
and relabels them. Two labelling modes, as in Gu et al. (2017):

* ``"all-to-one"``: every poisoned image gets the ``target`` label;
* ``"all-to-all"``: an image of digit ``i`` gets label ``(i + 1) % 10``.

The *trojaned test set* measures the attack: in all-to-one mode it is every test
image whose true label is not the target, stamped (an image already of the
target class says nothing about the backdoor); in all-to-all mode it is every
test image, stamped, each with its own target ``(i + 1) % 10``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import (
    NUM_CLASSES,
    check_choice,
    check_images,
    check_int,
    check_label_value,
    check_labels,
    check_position,
    check_rate,
)
from .triggers import check_alpha, get_trigger, stamp

MODES = ("all-to-one", "all-to-all")


def _labels_for(y: np.ndarray, target: int, mode: str) -> np.ndarray:
    if mode == "all-to-one":
        return np.full_like(y, target)
    return ((y.astype(np.int64) + 1) % NUM_CLASSES).astype(y.dtype)


def backdoor_labels(y: np.ndarray, target: int, mode: str) -> np.ndarray:
    """The label the attacker wants for each true label in ``y``."""
    y = check_labels(y, name="y")
    target = check_label_value(target, "target")
    return _labels_for(y, target, check_choice(mode, "mode", MODES))


def n_poisoned(n: int, rate: float) -> int:
    """How many of ``n`` training images a poisoning ``rate`` stamps: ``round(rate * n)``."""
    return int(round(check_rate(rate) * check_int(n, "n", 0)))


def check_indices(indices, name: str, *, n: int | None = None, length: int | None = None, against: str = "x") -> np.ndarray:
    """Validate distinct integer indices ``(k,)``: >= 0, below ``n`` when given, ``length`` of them when given
    (one per image of ``against``)."""
    if not isinstance(indices, np.ndarray) or indices.dtype == bool or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{name} must be an integer numpy array, got {getattr(indices, 'dtype', type(indices).__name__)}")
    if indices.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {indices.shape}")
    if length is not None and len(indices) != length:
        raise ValueError(f"{name} has {len(indices)} entries but {against} has {length}; they must have the same length")
    upper = "" if n is None else f"..{n - 1}"
    if indices.size and (indices.min() < 0 or (n is not None and indices.max() >= n)):
        raise ValueError(f"{name} must hold indices in 0{upper}, got values in {indices.min()}..{indices.max()}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError(f"{name} must hold distinct indices, got {len(indices) - len(np.unique(indices))} repeated")
    return indices


def check_backdoor_labels(y_true: np.ndarray, y_target: np.ndarray, target: int, mode: str, name: str = "y_target") -> None:
    """Check that ``y_target`` is what ``mode``/``target`` give for ``y_true`` (and, all-to-one, that no true label is
    the target); the message names the first offending image."""
    y_true = check_labels(y_true, name="y_true")
    y_target = check_labels(y_target, len(y_true), name, against="y_true")
    target, mode = check_label_value(target, "target"), check_choice(mode, "mode", MODES)
    expected = _labels_for(y_true, target, mode)
    wrong = np.flatnonzero(y_target != expected)
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(f"{name}[{i}] is {int(y_target[i])} but the {mode} attack with target {target} gives "
                         f"{int(expected[i])} for true label {int(y_true[i])} ({wrong.size} image(s) disagree)")
    if mode == "all-to-one" and (y_true == target).any():
        i = int(np.flatnonzero(y_true == target)[0])
        raise ValueError(f"y_true[{i}] is the target label {target}; an all-to-one trojaned set holds only "
                         f"images whose true label is not the target")


@dataclass(frozen=True)
class PoisonedSet:
    """A training set after poisoning.

    ``x``/``y`` are the full set the victim trains on (clean and poisoned
    images together, in the original order); ``indices`` (sorted) says which
    were stamped and relabelled; ``y_clean`` keeps the true labels.
    """

    x: np.ndarray
    y: np.ndarray
    y_clean: np.ndarray
    indices: np.ndarray
    rate: float
    target: int
    mode: str

    def __post_init__(self):
        x = check_images(self.x, "x")
        y = check_labels(self.y, len(x), "y")
        check_labels(self.y_clean, len(x), "y_clean")
        check_indices(self.indices, "indices", n=len(y))
        object.__setattr__(self, "rate", check_rate(self.rate, "rate"))
        object.__setattr__(self, "target", check_label_value(self.target, "target"))
        check_choice(self.mode, "mode", MODES)

    @property
    def is_poisoned(self) -> np.ndarray:
        """Boolean mask over the set: True where the image was poisoned."""
        m = np.zeros(len(self.y), bool)
        m[self.indices] = True
        return m


@dataclass(frozen=True)
class TrojanedSet:
    """Test images with the trigger stamped, their true labels and the attacker's labels."""

    x: np.ndarray
    y_true: np.ndarray
    y_target: np.ndarray
    source_indices: np.ndarray
    target: int
    mode: str

    def __post_init__(self):
        x = check_images(self.x, "x")
        y_true = check_labels(self.y_true, len(x), "y_true")
        y_target = check_labels(self.y_target, len(x), "y_target")
        check_indices(self.source_indices, "source_indices", length=len(x))
        target = check_label_value(self.target, "target")
        object.__setattr__(self, "target", target)
        check_backdoor_labels(y_true, y_target, target, check_choice(self.mode, "mode", MODES))


def poison(
    x: np.ndarray,
    y: np.ndarray,
    *,
    rate: float,
    trigger="L",
    position=None,
    target: int = 0,
    mode: str = "all-to-one",
    alpha: float | None = None,
    seed: int = 0,
) -> PoisonedSet:
    """Stamp ``trigger`` on ``round(rate * len(x))`` random images and relabel them.

    The choice of images depends only on ``seed`` and ``len(x)``; the inputs are
    never modified. ``mode`` is ``"all-to-one"`` (relabel as ``target``) or
    ``"all-to-all"`` (relabel ``i`` as ``i + 1 mod 10``; ``target`` is ignored).
    """
    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    rate = check_rate(rate, "rate")
    target = check_label_value(target, "target")
    seed = check_int(seed, "seed", 0)
    mode = check_choice(mode, "mode", MODES)
    trigger = get_trigger(trigger)
    position = check_position(trigger.default_position if position is None else position, trigger.shape, x.shape[1:])
    alpha = None if alpha is None else check_alpha(alpha)
    k = n_poisoned(len(x), rate)
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(x), size=k, replace=False)).astype(np.int64)
    x_out = x.copy()
    y_out = y.copy()
    if k:
        x_out[indices] = stamp(x[indices], trigger, position, alpha=alpha)
        y_out[indices] = _labels_for(y[indices], target, mode)
    return PoisonedSet(x_out, y_out, y.copy(), indices, rate, target, mode)


def trojan_test_set(
    x: np.ndarray,
    y: np.ndarray,
    *,
    trigger="L",
    position=None,
    target: int = 0,
    mode: str = "all-to-one",
    alpha: float | None = None,
) -> TrojanedSet:
    """Stamp the trigger on the test images that measure the attack (see the module docstring)."""
    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    target = check_label_value(target, "target")
    mode = check_choice(mode, "mode", MODES)
    trigger = get_trigger(trigger)
    position = check_position(trigger.default_position if position is None else position, trigger.shape, x.shape[1:])
    alpha = None if alpha is None else check_alpha(alpha)
    keep = np.flatnonzero(y != target) if mode == "all-to-one" else np.arange(len(y))
    if keep.size == 0:
        raise ValueError(f"every image in y has the target label {target}; the trojaned test set would be empty")
    x_troj = stamp(x[keep], trigger, position, alpha=alpha)
    y_true = y[keep].copy()
    return TrojanedSet(x_troj, y_true, _labels_for(y_true, target, mode), keep.astype(np.int64), target, mode)


def split_validation(x: np.ndarray, y: np.ndarray, *, n_val: int = 5000, seed: int = 0):
    """Hold out ``n_val`` random training images for validation.

    Returns ``(x_train, y_train), (x_val, y_val)``. Decisions such as the
    poisoning rate are made on the validation split, never on the test set.
    """
    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    if len(x) < 2:
        raise ValueError(f"x holds {len(x)} image; splitting needs at least 2")
    n_val = check_int(n_val, "n_val", 1, len(x) - 1)
    order = np.random.default_rng(check_int(seed, "seed", 0)).permutation(len(x))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (x[train], y[train]), (x[val], y[val])
