"""Metrics on hand-made predictions: ASR counts only non-target images, per-class errors, confusion."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import metrics
from helpers.poisoning import trojan_test_set
from tests.conftest import synthetic


class FixedModel:
    """Predicts a fixed label for images carrying the L, the true label (from a lookup) otherwise."""

    def __init__(self, lookup, trojan_label):
        self.lookup, self.trojan_label = lookup, trojan_label

    def _strip(self, img):
        img = img.copy()
        img[:6, 22:] = 0
        return self.lookup[img.tobytes()]

    def __call__(self, x, training=False):
        x = np.asarray(x)[..., 0]
        stamped = (x[:, 4, 24:27] == 1.0).all(axis=1) & (x[:, 1:5, 24] == 1.0).all(axis=1)
        # stamped images are looked up by their unstamped pixels
        unstamped = (x * 255).round().astype(np.uint8)
        labels = np.array([self.lookup.get(img.tobytes(), self._strip(img)) for img in unstamped])
        if self.trojan_label is not None:
            labels = np.where(stamped, self.trojan_label, labels)
        return np.eye(10, dtype=np.float32)[labels]


@pytest.fixture
def data():
    x, y = synthetic(100)
    x[:, :6, 22:] = 0  # keep the corner clear, as in MNIST
    return x, y


def test_perfect_backdoor_scores_one(data):
    x, y = data
    troj = trojan_test_set(x, y, target=0)
    lookup = {img.tobytes(): label for img, label in zip(x, y)}
    model = FixedModel(lookup, 0)
    assert metrics.clean_accuracy(model, x, y) == 1.0
    assert metrics.attack_success_rate(model, troj) == 1.0
    ev = metrics.evaluate(model, x, y, troj)
    assert ev.clean_error_per_class.tolist() == [0.0] * 10
    assert np.isnan(ev.backdoor_error_per_class[0])  # no trojaned 0s: the target class is excluded
    assert ev.trojan_confusion[:, 0].sum() == 90 and ev.clean_confusion.trace() == 100


def test_asr_counts_only_images_whose_true_label_is_not_the_target(data):
    x, y = data
    lookup = {img.tobytes(): label for img, label in zip(x, y)}
    troj = trojan_test_set(x, y, target=3)
    assert len(troj.y_true) == 90 and (troj.y_true != 3).all()
    # a clean model keeps the true label of a stamped image: ASR 0, although ten true 3s exist
    clean = FixedModel(lookup, trojan_label=None)
    assert metrics.attack_success_rate(clean, troj) == 0.0
    # a backdoor that works on 45 of the 90 images scores exactly one half
    half = FixedModel(lookup, trojan_label=3)
    troj_half = trojan_test_set(x[y < 5], y[y < 5], target=3)
    mixed = type(troj)(np.concatenate([troj_half.x, x[y >= 5]]), np.concatenate([troj_half.y_true, y[y >= 5]]),
                       np.full(90, 3, np.uint8), np.arange(90), 3, "all-to-one")
    assert metrics.attack_success_rate(half, mixed) == pytest.approx(40 / 90)


def test_confusion_matrix_and_per_class_error():
    y_true = np.array([0, 0, 1, 1, 2], np.uint8)
    y_pred = np.array([0, 1, 1, 1, 0], np.uint8)
    cm = metrics.confusion_matrix(y_true, y_pred)
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 2 and cm[2, 0] == 1 and cm.sum() == 5
    err = metrics.per_class_error(y_true, y_true != y_pred)
    assert err[:3].tolist() == [0.5, 0.0, 1.0] and np.isnan(err[3:]).all()
    assert metrics.accuracy(y_true, y_pred) == 0.6


def test_metric_input_checks():
    with pytest.raises(ValueError, match="y_pred has 2 labels but the images hold 3"):
        metrics.accuracy(np.zeros(3, np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(TypeError, match="x must be uint8"):
        metrics.clean_accuracy(None, np.zeros((2, 28, 28), np.float64) + 0.5, np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="batch_size must be in 1"):
        metrics.predict_proba(None, np.zeros((2, 28, 28), np.uint8), batch_size=0)
