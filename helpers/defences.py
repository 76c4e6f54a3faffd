"""Defences against data-poisoning backdoors (lesson 7), each with a defender's protocol.

Each function runs against any model, so a lesson can apply it to the
trojaned model *and* to a clean one and show the false alarms. Every
threshold and stopping point comes from clean data the defender holds;
trojaned inputs and the test set only report.

* :func:`strip` (Gao et al. 2019): superimpose an input on random clean
  images; a trojaned input keeps its (target) prediction whatever it is mixed
  with, so its predictions have **low entropy**. The threshold is set on one
  clean set and the false-rejection rate measured on another.
* :func:`activation_clustering` (Chen et al. 2018): per label, the last hidden
  layer's activations of the training images, reduced (PCA) and split in two;
  a small cluster whose split separates better than any clean label's
  (:func:`clean_silhouette_threshold`) is flagged, and
  :func:`exclusionary_reclassification` confirms it.
* :func:`spectral_signatures` (Tran et al. 2018): per label, the images with the
  largest projection on the top singular vector of the centred representations
  are flagged.
* :func:`fine_pruning` (Liu et al. 2018): prune the last convolutional layer's
  channels that clean data leaves dormant while clean validation accuracy stays
  within a set drop, then fine-tune on clean data
  (:func:`helpers.training.fine_tune`). Pruned channels stay pruned while
  fine-tuning: their pre-activation is exactly 0, where ReLU's gradient is 0.
* :func:`neural_cleanse` (Wang et al. 2019): per class, the smallest mask and
  pattern that send clean images to that class; a class whose mask is an
  outlier by the median-absolute-deviation anomaly index is flagged, failed
  optimisations are gated out, and :func:`unlearn` mitigates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._checks import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    check_bool_mask,
    check_choice,
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
from ._tf import import_tensorflow
from .analysis import layer_outputs
from .memo import remembered
from .metrics import attack_success_rate, check_trojaned, clean_accuracy, predict_proba
from .model import to_model_input
from .training import fine_tune

#: What the defences run outside this module: editing any of it recomputes their cached results (helpers.memo).
USES = ("helpers.training", "helpers.metrics", "helpers.analysis", "helpers.model")

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
    calibration_entropy: np.ndarray  #: the defender's clean images that set the threshold
    clean_entropy: np.ndarray  #: other clean inputs, on which the false-rejection rate is measured
    trojan_entropy: np.ndarray  #: trojaned inputs, for reporting only
    threshold: float
    target_frr: float  #: the false-rejection rate the threshold was set for, on the calibration images
    frr: float  #: clean inputs wrongly rejected (entropy below the threshold), measured on ``clean_entropy``
    far: float  #: trojaned inputs wrongly accepted (entropy at or above the threshold)
    seconds: float


def strip_rates(clean_entropy: np.ndarray, trojan_entropy: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-rejection rate, false-acceptance rate) of the rule "reject when entropy < threshold"."""
    clean_entropy = check_float_array(clean_entropy, "clean_entropy", ndim=1, lo=0.0)
    trojan_entropy = check_float_array(trojan_entropy, "trojan_entropy", ndim=1, lo=0.0)
    threshold = check_number(threshold, "threshold")
    return float(np.mean(clean_entropy < threshold)), float(np.mean(trojan_entropy >= threshold))


@remembered(depends_on=USES)
def strip(model, x_calibrate: np.ndarray, x_clean: np.ndarray, x_trojan: np.ndarray, pool: np.ndarray, *,
          frr: float = 0.01, n_overlay: int = 20, seed: int = 0) -> StripResult:
    """STRIP with a defender's protocol.

    The threshold is the ``frr`` quantile of the entropies of ``x_calibrate``, clean images the defender holds;
    the false-rejection rate is then *measured* on other clean inputs ``x_clean`` and the false-acceptance rate
    on the trojaned inputs ``x_trojan`` (which only the evaluator has). ``pool`` holds the clean images that are
    superimposed; keep it apart from all three.
    """
    check_images(x_calibrate, "x_calibrate", shape=IMAGE_SHAPE)
    check_images(x_clean, "x_clean", shape=IMAGE_SHAPE)
    check_images(x_trojan, "x_trojan", shape=IMAGE_SHAPE)
    check_images(pool, "pool", shape=IMAGE_SHAPE)
    frr = check_rate(frr, "frr")
    n_overlay, seed = check_int(n_overlay, "n_overlay", 1), check_int(seed, "seed", 0)
    check_model(model)
    start = time.perf_counter()
    calibration = strip_entropy(model, x_calibrate, pool, n_overlay=n_overlay, seed=seed)
    clean = strip_entropy(model, x_clean, pool, n_overlay=n_overlay, seed=seed + 1)
    trojan = strip_entropy(model, x_trojan, pool, n_overlay=n_overlay, seed=seed + 2)
    threshold = float(np.quantile(calibration, frr))
    measured_frr, far = strip_rates(clean, trojan, threshold)
    return StripResult(calibration, clean, trojan, threshold, frr, measured_frr, far, time.perf_counter() - start)


# --------------------------------------------- detection in the training set


@dataclass(frozen=True)
class LabelClusters:
    """Activation clustering's view of one label: the 2-means split of its training images."""

    label: int
    n: int  #: training images with this label
    smaller_fraction: float  #: relative size of the smaller cluster
    silhouette: float  #: how well the two clusters separate (-1..1)
    suspicious: bool  #: smaller cluster under the size threshold *and* silhouette above the clean threshold


@dataclass(frozen=True)
class Detection:
    """Training images a defence flags, scored against the truth (which images were poisoned)."""

    flagged: np.ndarray  #: boolean mask over the training set
    precision: float
    recall: float
    seconds: float
    clusters: tuple = ()  #: activation clustering only: one :class:`LabelClusters` per label

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())


def _score(flagged: np.ndarray, is_poisoned: np.ndarray, seconds: float, clusters: tuple = ()) -> Detection:
    tp = int((flagged & is_poisoned).sum())
    precision = tp / flagged.sum() if flagged.any() else 1.0
    recall = tp / is_poisoned.sum() if is_poisoned.any() else 1.0
    return Detection(flagged, float(precision), float(recall), seconds, tuple(clusters))


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


def _lloyd(z: np.ndarray, centres: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    labels = np.full(len(z), -1, np.int64)
    for _ in range(iterations):
        d = ((z[:, None, :] - centres[None]) ** 2).sum(axis=2)
        new = d.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in (0, 1):
            if (labels == c).any():
                centres[c] = z[labels == c].mean(axis=0)
    inertia = float(((z - centres[labels]) ** 2).sum())
    return labels, inertia


def two_means(z: np.ndarray, iterations: int = 50, *, n_init: int = 10, seed: int = 0) -> np.ndarray:
    """2-means (Lloyd) with ``n_init`` starts, keeping the split of least inertia; returns labels 0/1.

    The first start is the two extremes of the first coordinate, the others k-means++ draws from a
    fixed seed, so the result is deterministic and does not hang on one lucky start.
    """
    z = check_float_array(z, "z", ndim=2).astype(np.float64)
    iterations = check_int(iterations, "iterations", 1)
    n_init = check_int(n_init, "n_init", 1)
    seed = check_int(seed, "seed", 0)
    if len(z) < 2:
        raise ValueError(f"z must hold at least 2 points to split in two, got {len(z)}")
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = None, np.inf
    for start in range(n_init):
        if start == 0:
            first, second = z[:, 0].argmin(), z[:, 0].argmax()
        else:
            first = rng.integers(len(z))
            d2 = ((z - z[first]) ** 2).sum(axis=1)
            second = rng.choice(len(z), p=d2 / d2.sum()) if d2.sum() > 0 else (first + 1) % len(z)
        labels, inertia = _lloyd(z, z[[first, second]].copy(), iterations)
        if best_labels is None or inertia < best_inertia * (1 - 1e-9):
            best_labels, best_inertia = labels, inertia
    return best_labels


def silhouette(z: np.ndarray, labels: np.ndarray, *, max_points: int = 2000, seed: int = 0) -> float:
    """Mean silhouette of a 2-cluster split, (b - a) / max(a, b) per point, on at most ``max_points`` points.

    ``a`` is a point's mean distance to its own cluster, ``b`` to the other one; near 1 the clusters stand
    apart, near 0 they touch. A cluster of one point scores 0 (the usual convention).
    """
    z = check_float_array(z, "z", ndim=2).astype(np.float64)
    labels = np.asarray(labels)
    if labels.shape != (len(z),) or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, one per point of z ({len(z)}), got shape {labels.shape}")
    max_points = check_int(max_points, "max_points", 2)
    if len(np.unique(labels)) < 2:
        return 0.0
    if len(z) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(z), max_points, replace=False))
        z, labels = z[pick], labels[pick]
    sq = (z**2).sum(axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * z @ z.T, 0.0))
    s = np.zeros(len(z))
    for c in (0, 1):
        own, other = labels == c, labels != c
        if own.sum() < 2 or not other.any():
            continue
        a = d[np.ix_(own, own)].sum(axis=1) / (own.sum() - 1)
        b = d[np.ix_(own, other)].mean(axis=1)
        s[own] = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    return float(s.mean())


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
    """Run ``flag_label(label, acts of that label) -> (bool mask, info)`` on every label's fc1 activations and
    score the flags (inputs already validated by :func:`_check_detection_inputs`)."""
    start = time.perf_counter()
    acts = representations(model, x) if acts is None else acts
    flagged = np.zeros(len(x), bool)
    infos = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(y == c)
        if len(idx) >= 2:
            mask, info = flag_label(c, acts[idx])
            flagged[idx[mask]] = True
            if info is not None:
                infos.append(info)
    return _score(flagged, is_poisoned, time.perf_counter() - start, tuple(infos))


def _split(a: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, float, float]:
    """PCA to ``n_components``, 2-means; (mask of the smaller cluster, its relative size, the silhouette)."""
    z = _pca(a, min(n_components, a.shape[1]))
    labels = two_means(z, seed=seed)
    small = labels == int(np.argmin(np.bincount(labels, minlength=2)))
    return small, float(small.mean()), silhouette(z, labels, seed=seed)


@remembered(depends_on=USES)
def clean_silhouette_threshold(model, x_clean: np.ndarray, y_clean: np.ndarray, *, n_components: int = 10,
                               seed: int = 0, acts: np.ndarray | None = None) -> float:
    """The largest silhouette that activation clustering finds in any label of *clean* held-out images.

    A label of the training set whose split separates better than every clean label's is suspicious: this is
    the defender's threshold, set on data the defender holds and knows to be clean.
    """
    x_clean = check_images(x_clean, "x_clean", shape=IMAGE_SHAPE)
    y_clean = check_labels(y_clean, len(x_clean), "y_clean", against="x_clean")
    n_components = check_int(n_components, "n_components", 1)
    seed = check_int(seed, "seed", 0)
    if acts is None:
        check_layer(model, "fc1", "model")
        acts = representations(model, x_clean)
    else:
        acts = check_float_array(acts, "acts", ndim=2, n=len(x_clean), against="x_clean")
    scores = [_split(acts[y_clean == c], n_components, seed)[2] for c in range(NUM_CLASSES) if (y_clean == c).sum() >= 2]
    if not scores:
        raise ValueError("x_clean must hold at least 2 images of some label")
    return float(max(scores))


@remembered(depends_on=USES)
def activation_clustering(model, x: np.ndarray, y: np.ndarray, is_poisoned: np.ndarray, *, silhouette_threshold: float,
                          n_components: int = 10, size_threshold: float = 0.35, acts: np.ndarray | None = None,
                          seed: int = 0) -> Detection:
    """Chen et al. with a defender's gates.

    Per label: PCA of the fc1 activations to ``n_components`` (Chen et al. use ICA; PCA is ART's default),
    2-means with restarts, and the smaller cluster is *suspicious* when it holds less than ``size_threshold``
    of the label (their relative-size rule) and the split's silhouette exceeds ``silhouette_threshold``
    (set on clean held-out data with :func:`clean_silhouette_threshold`). Suspicious clusters are flagged;
    confirm them with :func:`exclusionary_reclassification` before believing them.
    """
    x, y, is_poisoned, acts = _check_detection_inputs(model, x, y, is_poisoned, acts)
    size_threshold = check_rate(size_threshold, "size_threshold")
    silhouette_threshold = check_number(silhouette_threshold, "silhouette_threshold", -1.0, 1.0)
    n_components = check_int(n_components, "n_components", 1, None if acts is None else acts.shape[1])
    seed = check_int(seed, "seed", 0)

    def flag(label, a):
        small, fraction, sil = _split(a, n_components, seed)
        suspicious = fraction < size_threshold and sil > silhouette_threshold
        info = LabelClusters(label, len(a), fraction, sil, suspicious)
        return (small if suspicious else np.zeros(len(a), bool)), info

    return _detect_per_label(model, x, y, is_poisoned, acts, flag)


@dataclass(frozen=True)
class Reclassified:
    """Chen et al.'s exclusionary reclassification of one flagged cluster."""

    label: int  #: the cluster's label in the training set
    n: int  #: images in the cluster
    own: int  #: how many a model trained without the cluster still puts in ``label``
    other_label: int  #: the most frequent other prediction
    other: int  #: how many go there
    legitimate: bool  #: ``own > ratio * other``: the cluster is real data of its label, not poison


@dataclass(frozen=True)
class Confirmed:
    rows: list  #: one :class:`Reclassified` per flagged label
    detection: Detection  #: the flags that survive, rescored


def exclusionary_reclassification(model_without, detection: Detection, x: np.ndarray, y: np.ndarray,
                                  is_poisoned: np.ndarray, *, ratio: float = 1.0) -> Confirmed:
    """Chen et al.: classify each flagged cluster with ``model_without`` (trained with the flagged images removed).

    Images of a legitimate cluster are still classified as their label; poisoned ones (a stamped 7 relabelled 0)
    go back to their true class. A cluster is kept as poison when ``own <= ratio * other``.
    """
    if not isinstance(detection, Detection):
        raise TypeError(f"detection must be a Detection (from activation_clustering), got {type(detection).__name__}")
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y", against="x")
    is_poisoned = check_bool_mask(is_poisoned, len(x), "is_poisoned")
    if detection.flagged.shape != (len(x),):
        raise ValueError(f"detection must cover x ({len(x)} images), got {detection.flagged.shape[0]} flags")
    ratio = check_positive(ratio, "ratio")
    check_model(model_without)
    start = time.perf_counter()
    keep = detection.flagged.copy()
    rows = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(detection.flagged & (y == c))
        if not len(idx):
            continue
        pred = predict_proba(model_without, x[idx]).argmax(axis=1)
        counts = np.bincount(pred, minlength=NUM_CLASSES)
        own = int(counts[c])
        counts[c] = -1
        other_label = int(counts.argmax())
        row = Reclassified(c, len(idx), own, other_label, int(counts[other_label]), own > ratio * counts[other_label])
        rows.append(row)
        if row.legitimate:
            keep[idx] = False
    confirmed = _score(keep, is_poisoned, detection.seconds + time.perf_counter() - start, detection.clusters)
    return Confirmed(rows, confirmed)


def spectral_scores(acts: np.ndarray) -> np.ndarray:
    """Tran et al.'s outlier score: squared projection on the top singular vector of the centred representations."""
    acts = check_float_array(acts, "acts", ndim=2)
    return _pca(acts, 1)[:, 0] ** 2


@remembered(depends_on=USES)
def spectral_signatures(model, x: np.ndarray, y: np.ndarray, is_poisoned: np.ndarray, *, eps: float = 0.35,
                        acts: np.ndarray | None = None) -> Detection:
    """Tran et al.: per label, flag the ``1.5 * eps`` fraction of images with the highest spectral score.

    ``eps`` is the defender's upper bound on the fraction of a label's images that are poisoned.
    """
    x, y, is_poisoned, acts = _check_detection_inputs(model, x, y, is_poisoned, acts)
    eps = check_rate(eps, "eps")

    def flag(label, a):
        out = np.zeros(len(a), bool)
        out[np.argsort(spectral_scores(a))[::-1][: min(len(a), int(round(1.5 * eps * len(a))))]] = True
        return out, None

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
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

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


def unit_activity(model, x: np.ndarray, layer: str = "flatten") -> np.ndarray:
    """Mean activation, over the images ``x``, of each unit of ``layer`` (default: conv2's pooled output,
    flattened: 4 x 4 positions x 32 channels = the 512 inputs of ``fc1``)."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    check_layer(model, layer)
    out = layer_outputs(model, layer, x)
    return out.reshape(len(out), -1).mean(axis=0)


def prune_units(model, units, layer: str = "fc1"):
    """A copy of ``model`` with the inputs ``units`` of the dense ``layer`` disconnected (their rows of the kernel
    zeroed): for ``fc1``, a unit is one channel of conv2's pooled output at one of its 4 x 4 positions."""
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    weights = check_layer(model, layer).get_weights()
    if len(weights) != 2 or weights[0].ndim != 2:
        raise ValueError(f"layer must be a dense layer with a kernel and a bias, got {layer!r}")
    units = check_int_list(units, "units", 0, weights[0].shape[0] - 1)
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    dense = pruned.get_layer(layer)
    kernel, bias = (np.array(w) for w in dense.get_weights())
    kernel[units, :] = 0.0
    dense.set_weights([kernel, bias])
    return pruned


def _unit_pruning_accuracy(model, features: np.ndarray, y: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Accuracy on ``(features, y)`` with the first k units of ``order`` disconnected, k = 0..n, computed exactly
    from fc1 and fc2's weights, one unit at a time (disconnecting unit u subtracts its outer product)."""
    w1, b1 = (np.asarray(w, np.float64) for w in model.get_layer("fc1").get_weights())
    w2, b2 = (np.asarray(w, np.float64) for w in model.get_layer("fc2").get_weights())
    f = np.asarray(features, np.float64)
    pre = f @ w1 + b1
    out = np.empty(len(order) + 1)
    for k in range(len(order) + 1):
        out[k] = np.mean(np.argmax(np.maximum(pre, 0.0) @ w2 + b2, axis=1) == y)
        if k < len(order):
            u = order[k]
            pre -= np.outer(f[:, u], w1[u])
    return out


GRANULARITIES = {  #: what fine-pruning removes, and where
    "channel": "conv2 channels",  # Liu et al.: whole feature maps of the last convolutional layer
    "unit": "conv2 units (channel x position)",  # each of the 512 pooled activations that feed fc1
}


@dataclass(frozen=True)
class PruningRow:
    fraction: float
    n_pruned: int
    pruned_clean_accuracy: float
    pruned_asr: float
    tuned_clean_accuracy: float
    tuned_asr: float


@dataclass(frozen=True)
class FinePruningResult:
    """Fine-pruning with Liu et al.'s stopping rule, and the rows a report needs."""

    order: np.ndarray  #: channels (or units), least active on clean data first
    validation_accuracy: np.ndarray  #: clean validation accuracy with the first k channels of ``order`` pruned, k = 0..n
    max_drop: float  #: the stopping rule: prune while validation accuracy stays within this of the unpruned model's
    chosen: PruningRow  #: the defence's operating point, chosen by the rule (test-set numbers for reporting)
    rows: list  #: a :class:`PruningRow` per swept fraction, for the report only
    seconds: float  #: time to reach and fine-tune the operating point (the sweep's rows not counted)
    granularity: str = "channel"  #: a key of :data:`GRANULARITIES`
    pruned_model: object = None  #: the model at the operating point, pruned and fine-tuned (for STRIP on top)

    @property
    def n_pruned(self) -> int:
        return self.chosen.n_pruned

    @property
    def n_prunable(self) -> int:
        return len(self.order)

    @property
    def what(self) -> str:
        return GRANULARITIES[self.granularity]


def _prune_and_tune(prune, order, k, x_clean, y_clean, x_test, y_test, trojaned, epochs, learning_rate):
    pruned = prune(order[:k])
    tuned = fine_tune(pruned, x_clean, y_clean, epochs=epochs, learning_rate=learning_rate)
    row = PruningRow(k / len(order), k, clean_accuracy(pruned, x_test, y_test), attack_success_rate(pruned, trojaned),
                     clean_accuracy(tuned, x_test, y_test), attack_success_rate(tuned, trojaned))
    return row, tuned


@remembered(depends_on=USES)
def fine_pruning(model, x_clean: np.ndarray, y_clean: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, trojaned, *,
                 max_drop: float = 0.04, fractions=(), epochs: int = 2, learning_rate: float = 1e-3,
                 layer: str = "conv2", granularity: str = "channel") -> FinePruningResult:
    """Liu et al.: prune the channels of ``layer`` that clean data leaves least active, one at a time, for as long as
    clean validation accuracy stays within ``max_drop`` of the unpruned model's (their rule, 4 %), then fine-tune.

    ``granularity="unit"`` prunes finer: each of the 512 units of conv2's pooled output (one channel at one of its
    4 x 4 positions, an input of ``fc1``; ``layer`` is then ignored), ranked and stopped by the same rule. A trigger
    always stamped in the same corner reaches the classifier through the units at that corner's positions, which clean
    digits leave quiet even where the channel itself is busy elsewhere.

    ``(x_clean, y_clean)`` is the defender's clean data: it ranks the channels, decides when to stop and fine-tunes.
    ``(x_test, y_test)`` and ``trojaned`` only report what the operating point achieves. ``fractions`` adds rows at
    other pruning levels, for a curve: a defender could not choose among them (that needs trojaned inputs).
    """
    x_clean = check_images(x_clean, "x_clean", shape=IMAGE_SHAPE)
    y_clean = check_labels(y_clean, len(x_clean), "y_clean", against="x_clean")
    x_test = check_images(x_test, "x_test", shape=IMAGE_SHAPE)
    y_test = check_labels(y_test, len(x_test), "y_test", against="x_test")
    trojaned = check_trojaned(trojaned)
    max_drop = check_rate(max_drop, "max_drop")
    fractions = check_rates(fractions, "fractions", allow_empty=True)
    epochs = check_int(epochs, "epochs", 1)
    learning_rate = check_positive(learning_rate, "learning_rate")
    granularity = check_choice(granularity, "granularity", tuple(GRANULARITIES))
    check_layer(model, layer)
    start = time.perf_counter()
    if granularity == "channel":
        order = np.argsort(channel_activity(model, x_clean, layer), kind="stable")  # least active first
        accuracy = np.array([clean_accuracy(prune_channels(model, order[:k], layer), x_clean, y_clean)
                             for k in range(len(order) + 1)])

        def prune(units):
            return prune_channels(model, units, layer)
    else:
        features = layer_outputs(model, "flatten", x_clean)
        order = np.argsort(features.mean(axis=0), kind="stable")  # least active first
        accuracy = _unit_pruning_accuracy(model, features, y_clean, order)

        def prune(units):
            return prune_units(model, units)
    n = len(order)
    breach = np.flatnonzero(accuracy < accuracy[0] - max_drop)
    k_stop = int(breach[0] - 1) if len(breach) else n  # the last level before the first breach
    chosen, tuned = _prune_and_tune(prune, order, k_stop, x_clean, y_clean, x_test, y_test, trojaned, epochs, learning_rate)
    seconds = time.perf_counter() - start
    rows = [_prune_and_tune(prune, order, int(round(f * n)), x_clean, y_clean, x_test, y_test, trojaned, epochs,
                            learning_rate)[0] for f in fractions]
    return FinePruningResult(order, accuracy, max_drop, chosen, rows, seconds, granularity, tuned)


@dataclass(frozen=True)
class LayeredDefence:
    """The seeds' combination: fine-pruning repairs the model, STRIP screens its inputs.

    STRIP can screen with either model: the repaired one (``in_front``), or the original one while the repaired model
    answers (``original_screen``). A trojaned input gets through when STRIP accepts it *and* the repaired model sends
    it to the target.
    """

    fine_pruning: FinePruningResult
    in_front: StripResult  #: STRIP with the repaired model's entropies (threshold from the defender's clean images)
    original_screen: StripResult  #: STRIP with the original model's entropies (ditto)
    asr_repaired: float  #: trojaned inputs the repaired model sends to the target, unscreened
    residual_in_front: float  #: ... that STRIP in front of the repaired model lets through
    residual_original_screen: float  #: ... that STRIP screening with the original model lets through


@remembered(depends_on=USES)
def strip_after_fine_pruning(model, fp: FinePruningResult, x_calibrate: np.ndarray, x_clean: np.ndarray,
                             x_trojan: np.ndarray, target: int, pool: np.ndarray, *, frr: float = 0.01,
                             n_overlay: int = 20, seed: int = 0) -> LayeredDefence:
    """STRIP (thresholds from ``x_calibrate``, as in :func:`strip`) combined with ``fp``, the fine-pruning of ``model``.

    ``x_trojan`` (the evaluator's trojaned inputs) and ``target`` only report how many attacks get through.
    """
    check_model(model)
    if not isinstance(fp, FinePruningResult) or fp.pruned_model is None:
        raise TypeError(f"fp must be the FinePruningResult of fine_pruning(), got {type(fp).__name__}")
    target = check_label_value(target, "target")
    in_front = strip(fp.pruned_model, x_calibrate, x_clean, x_trojan, pool, frr=frr, n_overlay=n_overlay, seed=seed)
    original = strip(model, x_calibrate, x_clean, x_trojan, pool, frr=frr, n_overlay=n_overlay, seed=seed)
    hit = predict_proba(fp.pruned_model, x_trojan).argmax(axis=1) == target
    through = [float((hit & (s.trojan_entropy >= s.threshold)).mean()) for s in (in_front, original)]
    return LayeredDefence(fp, in_front, original, float(hit.mean()), *through)


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

    @tf.function(autograph=False)  # straight-line code: nothing for AutoGraph to convert
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
    success: np.ndarray  #: (10,) fraction of the clean images each recovered trigger sends to its class
    norms: np.ndarray  #: (10,) L1 norm of each mask
    trusted: np.ndarray  #: (10,) the trigger passed the success gate; failed runs are left out of the statistics
    index: np.ndarray  #: (10,) anomaly index of each norm among the trusted ones (NaN where not trusted)
    flagged: list[int]  #: trusted classes with index > threshold and a norm below the median
    seconds: float


def cleanse_result(masks: np.ndarray, patterns: np.ndarray, success: np.ndarray, *, threshold: float = 2.0,
                   gate: float = 0.9, seconds: float = 0.0) -> CleanseResult:
    """Wang et al.'s outlier test over reverse-engineered triggers (e.g. from a cache).

    A trigger that sends less than ``gate`` of the clean images to its class is a failed optimisation, not a small
    trigger: it is left out of the median and MAD and is never flagged. At least three classes must pass.
    """
    masks = check_float_array(masks, "masks", ndim=3, lo=0.0, hi=1.0)
    patterns = check_float_array(patterns, "patterns", ndim=3, lo=0.0, hi=1.0)
    success = check_float_array(success, "success", ndim=1, lo=0.0, hi=1.0)
    if masks.shape[0] != NUM_CLASSES or patterns.shape != masks.shape or success.shape != (NUM_CLASSES,):
        raise ValueError(f"masks, patterns and success must hold one entry per class ({NUM_CLASSES}), got shapes "
                         f"{masks.shape}, {patterns.shape}, {success.shape}")
    threshold = check_number(threshold, "threshold", 0.0)
    gate = check_rate(gate, "gate")
    norms = masks.reshape(NUM_CLASSES, -1).sum(axis=1).astype(float)
    trusted = success >= gate
    index = np.full(NUM_CLASSES, np.nan)
    flagged = []
    if trusted.sum() >= 3:
        index[trusted] = anomaly_index(norms[trusted])
        median = np.median(norms[trusted])
        flagged = [c for c in range(NUM_CLASSES) if trusted[c] and index[c] > threshold and norms[c] < median]
    return CleanseResult(masks, patterns, success, norms, trusted, index, flagged, float(seconds))


@remembered(depends_on=USES)
def neural_cleanse(model, x: np.ndarray, *, steps: int = 300, lam: float = 0.01, seed: int = 0, threshold: float = 2.0,
                   gate: float = 0.9) -> CleanseResult:
    """Reverse-engineer a trigger for every class on the clean images ``x`` and flag the outliers (:func:`cleanse_result`)."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    steps, seed = check_int(steps, "steps", 1), check_int(seed, "seed", 0)
    lam = check_number(lam, "lam", 0.0)
    threshold = check_number(threshold, "threshold", 0.0)
    gate = check_rate(gate, "gate")
    check_model(model)
    start = time.perf_counter()
    found = [reverse_engineer_trigger(model, x, c, steps=steps, lam=lam, seed=seed + c) for c in range(NUM_CLASSES)]
    return cleanse_result(np.stack([f[0] for f in found]), np.stack([f[1] for f in found]), np.array([f[2] for f in found]),
                          threshold=threshold, gate=gate, seconds=time.perf_counter() - start)


def stamp_reversed(x: np.ndarray, mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """``(1 - m) x + m p`` on uint8 images, with a reverse-engineered mask and pattern in [0, 1]."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    mask = check_float_array(mask, "mask", lo=0.0, hi=1.0)
    pattern = check_float_array(pattern, "pattern", lo=0.0, hi=1.0)
    if mask.shape != IMAGE_SHAPE or pattern.shape != IMAGE_SHAPE:
        raise ValueError(f"mask and pattern must have the image shape {IMAGE_SHAPE}, got {mask.shape} and {pattern.shape}")
    out = (1 - mask) * x.astype(np.float64) + mask * pattern * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@remembered(depends_on=USES)
def unlearn(model, x_clean: np.ndarray, y_clean: np.ndarray, mask: np.ndarray, pattern: np.ndarray, *,
            stamp_fraction: float = 0.2, epochs: int = 1, seed: int = 0):
    """Wang et al.'s mitigation: fine-tune on clean data in which ``stamp_fraction`` of the images carry the
    reverse-engineered trigger *with their correct labels*, so the model unlearns the trigger -> target link.
    Returns the fine-tuned copy."""
    x_clean = check_images(x_clean, "x_clean", shape=IMAGE_SHAPE)
    y_clean = check_labels(y_clean, len(x_clean), "y_clean", against="x_clean")
    stamp_fraction = check_rate(stamp_fraction, "stamp_fraction")
    epochs, seed = check_int(epochs, "epochs", 1), check_int(seed, "seed", 0)
    check_model(model)
    pick = np.random.default_rng(seed).permutation(len(x_clean))[: int(round(stamp_fraction * len(x_clean)))]
    x = x_clean.copy()
    x[pick] = stamp_reversed(x_clean[pick], mask, pattern)
    return fine_tune(model, x, y_clean, epochs=epochs, seed=seed)
