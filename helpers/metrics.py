"""How well a model does its job, and how well the backdoor does the attacker's.

* **Clean accuracy**: the fraction of clean test images classified correctly.
* **Attack success rate (ASR)**: the fraction of *trojaned* test images
  classified as the attacker's label. In the all-to-one attack the trojaned set
  holds only images whose true label is not the target (see
  :func:`helpers.poisoning.trojan_test_set`), so a model that simply predicts the
  target for a genuine 0 earns nothing.
* **Per-class errors** (BadNets, Table 2): for each true digit, the clean error
  (misclassified clean images) and the backdoor error (trojaned images *not*
  sent to the attacker's label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import IMAGE_SHAPE, NUM_CLASSES, check_bool_mask, check_images, check_int, check_labels, check_model
from .memo import remembered
from .model import to_model_input


def check_trojaned(trojaned, name: str = "trojaned"):
    """Validate a :class:`~helpers.poisoning.TrojanedSet` (its own fields are checked when it is built)."""
    from .poisoning import TrojanedSet

    if not isinstance(trojaned, TrojanedSet):
        raise TypeError(f"{name} must be a TrojanedSet (from helpers.poisoning.trojan_test_set), got {type(trojaned).__name__}")
    return trojaned


def predict_proba(model, x: np.ndarray, batch_size: int = 2500) -> np.ndarray:
    """Softmax outputs (N, 10) for uint8 or [0, 1] float images, computed in batches."""
    x = check_images(x, "x", allow_float=True, allow_single=True, shape=IMAGE_SHAPE)
    batch_size = check_int(batch_size, "batch_size", 1)
    check_model(model)
    x = x[None] if x.ndim == 2 else x
    out = [_to_numpy(model(to_model_input(x[i : i + batch_size]), training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


def _to_numpy(t) -> np.ndarray:
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def predict(model, x: np.ndarray, batch_size: int = 2500) -> np.ndarray:
    """Predicted labels (N,) as uint8."""
    return predict_proba(model, x, batch_size).argmax(axis=1).astype(np.uint8)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of positions where the two label arrays agree."""
    y_true = check_labels(y_true, name="y_true")
    y_pred = check_labels(y_pred, len(y_true), name="y_pred", against="y_true")
    return float(np.mean(y_true == y_pred))


def clean_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy on clean images."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y")
    return accuracy(y, predict(model, x))


def attack_success_rate(model, trojaned) -> float:
    """Fraction of the trojaned images (a :class:`~helpers.poisoning.TrojanedSet`) sent to the attacker's label."""
    trojaned = check_trojaned(trojaned)
    return accuracy(trojaned.y_target, predict(model, trojaned.x))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts ``C[i, j]`` of images of true class ``i`` predicted as ``j``."""
    num_classes = check_int(num_classes, "num_classes", 1)
    y_true = check_labels(y_true, name="y_true", classes=num_classes)
    y_pred = check_labels(y_pred, len(y_true), name="y_pred", against="y_true", classes=num_classes)
    return np.bincount(y_true.astype(np.int64) * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_error(y_true: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Per true class, the fraction of ``wrong`` (NaN for a class with no images)."""
    y_true = check_labels(y_true, name="y_true")
    wrong = check_bool_mask(wrong, len(y_true), "wrong", against="y_true")
    counts = np.bincount(y_true, minlength=NUM_CLASSES).astype(float)
    errors = np.bincount(y_true, weights=wrong.astype(float), minlength=NUM_CLASSES)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, errors / counts, np.nan)


@dataclass(frozen=True)
class Evaluation:
    """Everything the lessons report about one model, computed from one pass over the test data."""

    clean_accuracy: float
    attack_success_rate: float
    clean_pred: np.ndarray
    trojan_pred: np.ndarray
    clean_error_per_class: np.ndarray
    backdoor_error_per_class: np.ndarray
    clean_confusion: np.ndarray
    trojan_confusion: np.ndarray

    def summary(self) -> str:
        return f"clean accuracy {self.clean_accuracy:.2%}, attack success rate {self.attack_success_rate:.2%}"


@remembered(depends_on=("helpers.model",), min_seconds=0.2)  # read back on a rerun (helpers.memo)
def evaluate(model, x: np.ndarray, y: np.ndarray, trojaned) -> Evaluation:
    """Clean accuracy, ASR, per-class errors and confusion matrices of ``model``."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y")
    trojaned = check_trojaned(trojaned)
    check_model(model)
    clean_pred = predict(model, x)
    trojan_pred = predict(model, trojaned.x)
    return Evaluation(
        clean_accuracy=float(np.mean(clean_pred == y)),
        attack_success_rate=float(np.mean(trojan_pred == trojaned.y_target)),
        clean_pred=clean_pred,
        trojan_pred=trojan_pred,
        clean_error_per_class=per_class_error(y, clean_pred != y),
        backdoor_error_per_class=per_class_error(trojaned.y_true, trojan_pred != trojaned.y_target),
        clean_confusion=confusion_matrix(y, clean_pred),
        trojan_confusion=confusion_matrix(trojaned.y_true, trojan_pred),
    )
