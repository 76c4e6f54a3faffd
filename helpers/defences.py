"""Defences against data-poisoning backdoors (lesson 7).

Each function runs against any model, so a lesson can apply it to the
trojaned model *and* to a clean one and show the false alarms.

* :func:`strip` (Gao et al. 2019): superimpose an input on random clean
  images; a trojaned input keeps its (target) prediction whatever it is mixed
  with, so its predictions have **low entropy**.
* :func:`activation_clustering` (Chen et al. 2018): per label, the last hidden
  layer's activations of the training images, reduced and split in two; a
  small, separate cluster is flagged as poison.
* :func:`spectral_signatures` (Tran et al. 2018): per label, the images with the
  largest projection on the top singular vector of the centred representations
  are flagged.
* :func:`fine_pruning` (Liu et al. 2018): prune the last convolutional layer's
  channels that clean data leaves dormant, then fine-tune on clean data
  (:func:`helpers.training.fine_tune`). Pruned channels stay pruned while
  fine-tuning: their pre-activation is exactly 0, where ReLU's gradient is 0.
* :func:`neural_cleanse` (Wang et al. 2019): per class, the smallest mask and
  pattern that send clean images to that class; a class whose mask is an
  outlier by the median-absolute-deviation anomaly index is flagged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._checks import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    check_bool_mask,
    check_float_array,
    check_images,
    check_int,
    check_int_list,
    check_label_value,
    check_labels,
    check_layer,
    check_model,
    check_number,
    check_positive,
    check_rate,
    check_rates,
)
from .analysis import layer_outputs
from .metrics import attack_success_rate, check_trojaned, clean_accuracy, predict_proba
from .model import to_model_input
from .training import fine_tune

# ------------------------------------------------------------------ STRIP


def prediction_entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of probabilities."""
    p = check_float_array(p, "p", lo=0.0, hi=1.0)
    if p.ndim == 0:
        raise ValueError(f"p must be an array of probabilities (N, classes), got a scalar {p}")
    p = np.clip(p, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def strip_entropy(model, x: np.ndarray, pool: np.ndarray, *, n_overlay: int = 20, seed: int = 0) -> np.ndarray:
    """Mean prediction entropy of each image in ``x`` superimposed on ``n_overlay`` random images from ``pool``.

    Superimposition is Gao et al.'s pixel-wise addition, saturated at 255.
    """
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    pool = check_images(pool, "pool", shape=IMAGE_SHAPE)
    n_overlay = check_int(n_overlay, "n_overlay", 1)
    seed = check_int(seed, "seed", 0)
    check_model(model)
    picks = np.random.default_rng(seed).integers(0, len(pool), size=(len(x), n_overlay))
    mixed = np.minimum(x[:, None].astype(np.uint16) + pool[picks], 255).astype(np.uint8).reshape(-1, *x.shape[1:])
    return prediction_entropy(predict_proba(model, mixed)).reshape(len(x), n_overlay).mean(axis=1)


@dataclass(frozen=True)
class StripResult:
    clean_entropy: np.ndarray
    trojan_entropy: np.ndarray
    threshold: float
    frr: float  #: clean inputs wrongly rejected (entropy below the threshold)
    far: float  #: trojaned inputs wrongly accepted (entropy at or above the threshold)
    seconds: float


def strip_rates(clean_entropy: np.ndarray, trojan_entropy: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-rejection rate, false-acceptance rate) of the rule "reject when entropy < threshold"."""
    clean_entropy = check_float_array(clean_entropy, "clean_entropy", ndim=1, lo=0.0)
    trojan_entropy = check_float_array(trojan_entropy, "trojan_entropy", ndim=1, lo=0.0)
    threshold = check_number(threshold, "threshold")
    return float(np.mean(clean_entropy < threshold)), float(np.mean(trojan_entropy >= threshold))


def strip(model, x_clean: np.ndarray, x_trojan: np.ndarray, pool: np.ndarray, *, frr: float = 0.01, n_overlay: int = 20,
          seed: int = 0) -> StripResult:
    """STRIP with the threshold set at the ``frr`` quantile of the clean inputs' entropies."""
    check_images(x_clean, "x_clean", shape=IMAGE_SHAPE)
    check_images(x_trojan, "x_trojan", shape=IMAGE_SHAPE)
    check_images(pool, "pool", shape=IMAGE_SHAPE)
    frr = check_rate(frr, "frr")
    n_overlay, seed = check_int(n_overlay, "n_overlay", 1), check_int(seed, "seed", 0)
    check_model(model)
    start = time.perf_counter()
    clean = strip_entropy(model, x_clean, pool, n_overlay=n_overlay, seed=seed)
    trojan = strip_entropy(model, x_trojan, pool, n_overlay=n_overlay, seed=seed + 1)
    threshold = float(np.quantile(clean, frr))
    measured_frr, far = strip_rates(clean, trojan, threshold)
    return StripResult(clean, trojan, threshold, measured_frr, far, time.perf_counter() - start)


# --------------------------------------------- detection in the training set


@dataclass(frozen=True)
class Detection:
    """Training images a defence flags, scored against the truth (which images were poisoned)."""

    flagged: np.ndarray  #: boolean mask over the training set
    precision: float
    recall: float
    seconds: float

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())


def _score(flagged: np.ndarray, is_poisoned: np.ndarray, seconds: float) -> Detection:
    tp = int((flagged & is_poisoned).sum())
    precision = tp / flagged.sum() if flagged.any() else 1.0
    recall = tp / is_poisoned.sum() if is_poisoned.any() else 1.0
    return Detection(flagged, float(precision), float(recall), seconds)


def representations(model, x: np.ndarray, layer: str = "fc1", batch_size: int = 5000) -> np.ndarray:
    """Activations of ``layer`` (default: the last hidden layer) for every image in ``x``."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    check_layer(model, layer)
    batch_size = check_int(batch_size, "batch_size", 1)
    return np.concatenate([layer_outputs(model, layer, x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _pca(a: np.ndarray, k: int) -> np.ndarray:
    centred = a - a.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T


def two_means(z: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Deterministic 2-means: starts from the extremes of the first coordinate; returns labels 0/1."""
    z = check_float_array(z, "z", ndim=2)
    iterations = check_int(iterations, "iterations", 1)
    centres = z[[z[:, 0].argmin(), z[:, 0].argmax()]].astype(np.float64)
    labels = np.zeros(len(z), np.int64)
    for _ in range(iterations):
        d = ((z[:, None, :] - centres[None]) ** 2).sum(axis=2)
        new = d.argmin(axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for c in (0, 1):
            if (labels == c).any():
                centres[c] = z[labels == c].mean(axis=0)
    return labels


def _check_detection_inputs(model, x, y, is_poisoned, acts):
    """Validate the inputs shared by the training-set detectors; ``model`` may be None when ``acts`` is given."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y")
    is_poisoned = check_bool_mask(is_poisoned, len(x), "is_poisoned")
    if acts is None:
        check_layer(model, "fc1", "model")
    else:
        acts = check_float_array(acts, "acts", ndim=2, n=len(x), against="x")
    return x, y, is_poisoned, acts


def _detect_per_label(model, x, y, is_poisoned, acts, flag_label) -> Detection:
    """Run ``flag_label(acts of one label) -> bool mask`` on every label's fc1 activations and score the flags
    (inputs already validated by :func:`_check_detection_inputs`)."""
    start = time.perf_counter()
    acts = representations(model, x) if acts is None else acts
    flagged = np.zeros(len(x), bool)
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(y == c)
        if len(idx) >= 2:
            flagged[idx[flag_label(acts[idx])]] = True
    return _score(flagged, is_poisoned, time.perf_counter() - start)


def activation_clustering(model, x: np.ndarray, y: np.ndarray, is_poisoned: np.ndarray, *, n_components: int = 10,
                          size_threshold: float = 0.35, acts: np.ndarray | None = None) -> Detection:
    """Chen et al.: per label, PCA of the fc1 activations to ``n_components``, 2-means, and flag the
    smaller cluster when it holds less than ``size_threshold`` of the label's images."""
    x, y, is_poisoned, acts = _check_detection_inputs(model, x, y, is_poisoned, acts)
    size_threshold = check_rate(size_threshold, "size_threshold")
    n_components = check_int(n_components, "n_components", 1, None if acts is None else acts.shape[1])

    def flag(a):
        labels = two_means(_pca(a, n_components))
        small = labels == int(np.argmin(np.bincount(labels, minlength=2)))
        return small if small.mean() < size_threshold else np.zeros(len(a), bool)

    return _detect_per_label(model, x, y, is_poisoned, acts, flag)


def spectral_scores(acts: np.ndarray) -> np.ndarray:
    """Tran et al.'s outlier score: squared projection on the top singular vector of the centred representations."""
    acts = check_float_array(acts, "acts", ndim=2)
    return _pca(acts, 1)[:, 0] ** 2


def spectral_signatures(model, x: np.ndarray, y: np.ndarray, is_poisoned: np.ndarray, *, eps: float = 0.35,
                        acts: np.ndarray | None = None) -> Detection:
    """Tran et al.: per label, flag the ``1.5 * eps`` fraction of images with the highest spectral score.

    ``eps`` is the defender's upper bound on the fraction of a label's images that are poisoned.
    """
    x, y, is_poisoned, acts = _check_detection_inputs(model, x, y, is_poisoned, acts)
    eps = check_rate(eps, "eps")

    def flag(a):
        out = np.zeros(len(a), bool)
        out[np.argsort(spectral_scores(a))[::-1][: min(len(a), int(round(1.5 * eps * len(a))))]] = True
        return out

    return _detect_per_label(model, x, y, is_poisoned, acts, flag)


# ------------------------------------------------------------ fine-pruning


def channel_activity(model, x: np.ndarray, layer: str = "conv2") -> np.ndarray:
    """Mean activation of each channel of ``layer`` over the images ``x``."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    if len(check_layer(model, layer).output.shape) != 4:
        raise ValueError(f"layer must be a convolutional layer (output (N, H, W, C)), got {layer!r}")
    return layer_outputs(model, layer, x).mean(axis=(0, 1, 2))


def prune_channels(model, channels, layer: str = "conv2"):
    """A copy of ``model`` whose ``layer`` channels ``channels`` always output 0 (kernel and bias zeroed)."""
    import keras

    weights = check_layer(model, layer).get_weights()
    if len(weights) != 2 or weights[0].ndim != 4:
        raise ValueError(f"layer must be a convolutional layer with a kernel and a bias, got {layer!r}")
    channels = check_int_list(channels, "channels", 0, weights[1].shape[0] - 1)
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    conv = pruned.get_layer(layer)
    kernel, bias = (np.array(w) for w in conv.get_weights())
    kernel[..., channels] = 0.0
    bias[channels] = 0.0
    conv.set_weights([kernel, bias])
    return pruned


@dataclass(frozen=True)
class PruningRow:
    fraction: float
    n_pruned: int
    pruned_clean_accuracy: float
    pruned_asr: float
    tuned_clean_accuracy: float
    tuned_asr: float


def fine_pruning(model, x_clean: np.ndarray, y_clean: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, trojaned, *,
                 fractions=(0.0, 0.25, 0.5, 0.625, 0.75, 0.8125, 0.875, 0.9375), epochs: int = 2, layer: str = "conv2"):
    """Liu et al.: prune the least active channels (on clean data) of ``layer``, then fine-tune; one row per fraction."""
    x_clean = check_images(x_clean, "x_clean", shape=IMAGE_SHAPE)
    y_clean = check_labels(y_clean, len(x_clean), "y_clean", against="x_clean")
    x_test = check_images(x_test, "x_test", shape=IMAGE_SHAPE)
    y_test = check_labels(y_test, len(x_test), "y_test", against="x_test")
    trojaned = check_trojaned(trojaned)
    fractions = check_rates(fractions, "fractions")
    epochs = check_int(epochs, "epochs", 1)
    check_layer(model, layer)
    order = np.argsort(channel_activity(model, x_clean, layer))  # least active first
    n_channels = len(order)
    rows = []
    for f in fractions:
        k = int(round(f * n_channels))
        pruned = prune_channels(model, order[:k], layer)
        tuned = fine_tune(pruned, x_clean, y_clean, epochs=epochs)
        rows.append(PruningRow(f, k, clean_accuracy(pruned, x_test, y_test), attack_success_rate(pruned, trojaned),
                               clean_accuracy(tuned, x_test, y_test), attack_success_rate(tuned, trojaned)))
    return rows


# ---------------------------------------------------------- Neural Cleanse


def reverse_engineer_trigger(model, x: np.ndarray, target: int, *, steps: int = 300, lam: float = 0.01, lr: float = 0.1,
                             batch_size: int = 128, seed: int = 0):
    """Smallest mask ``m`` and pattern ``p`` with ``f((1 - m) x + m p) = target`` on clean images ``x``.

    Minimises cross-entropy towards ``target`` plus ``lam * |m|_1`` with Adam;
    ``m`` and ``p`` are parametrised through a sigmoid so they stay in [0, 1].
    Returns ``(mask, pattern, success)``, success being the fraction of ``x``
    the recovered trigger sends to ``target``.
    """
    import tensorflow as tf

    x = check_images(x, "x", shape=IMAGE_SHAPE)
    target = check_label_value(target, "target")
    steps = check_int(steps, "steps", 1)
    lam = check_number(lam, "lam", 0.0)
    lr = check_positive(lr, "lr")
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_int(seed, "seed", 0)
    check_model(model)
    inputs = tf.constant(to_model_input(x))
    rng = np.random.default_rng(seed)
    m_raw = tf.Variable(np.full((28, 28, 1), -3.0, np.float32))
    p_raw = tf.Variable(rng.normal(0, 0.1, (28, 28, 1)).astype(np.float32))
    opt = tf.keras.optimizers.Adam(lr)
    labels = tf.fill([batch_size], target)
    ce = tf.keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            m, p = tf.sigmoid(m_raw), tf.sigmoid(p_raw)
            loss = ce(labels[: tf.shape(batch)[0]], model((1 - m) * batch + m * p, training=False)) + lam * tf.reduce_sum(m)
        opt.apply_gradients(zip(tape.gradient(loss, [m_raw, p_raw]), [m_raw, p_raw]))

    for _ in range(steps):
        step(tf.gather(inputs, rng.integers(0, len(x), batch_size)))
    m, p = tf.sigmoid(m_raw).numpy(), tf.sigmoid(p_raw).numpy()
    stamped = (1 - m) * to_model_input(x) + m * p
    success = float(np.mean(np.asarray(model(stamped, training=False)).argmax(axis=1) == target))
    return m[..., 0], p[..., 0], success


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Wang et al.'s anomaly index: distance from the median in units of 1.4826 x the median absolute deviation."""
    values = check_float_array(values, "values", ndim=1).astype(float)
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    return np.abs(values - med) / (mad if mad > 0 else 1e-12)


@dataclass(frozen=True)
class CleanseResult:
    masks: np.ndarray  #: (10, 28, 28)
    patterns: np.ndarray  #: (10, 28, 28)
    success: np.ndarray  #: (10,) how well each recovered trigger works
    norms: np.ndarray  #: (10,) L1 norm of each mask
    index: np.ndarray  #: (10,) anomaly index of each norm
    flagged: list[int]  #: classes with index > 2 and a norm below the median
    seconds: float


def neural_cleanse(model, x: np.ndarray, *, steps: int = 300, lam: float = 0.01, seed: int = 0, threshold: float = 2.0) -> CleanseResult:
    """Reverse-engineer a trigger for every class and flag the outliers."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    steps, seed = check_int(steps, "steps", 1), check_int(seed, "seed", 0)
    lam = check_number(lam, "lam", 0.0)
    threshold = check_number(threshold, "threshold", 0.0)
    check_model(model)
    start = time.perf_counter()
    found = [reverse_engineer_trigger(model, x, c, steps=steps, lam=lam, seed=seed + c) for c in range(NUM_CLASSES)]
    masks = np.stack([f[0] for f in found])
    norms = masks.reshape(NUM_CLASSES, -1).sum(axis=1)
    index = anomaly_index(norms)
    flagged = [c for c in range(NUM_CLASSES) if index[c] > threshold and norms[c] < np.median(norms)]
    return CleanseResult(masks, np.stack([f[1] for f in found]), np.array([f[2] for f in found]), norms, index, flagged,
                         time.perf_counter() - start)
