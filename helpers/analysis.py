"""Looking inside a trojaned model: where the trigger works, and which filters see it."""

from __future__ import annotations

import numpy as np

from ._checks import IMAGE_SHAPE, check_images, check_int, check_label_value, check_labels, check_layer, check_model, check_position
from ._tf import import_tensorflow
from .memo import remembered
from .metrics import predict
from .model import to_model_input
from .triggers import get_trigger, stamp


@remembered(depends_on=("helpers.metrics", "helpers.model", "helpers.triggers"))
def asr_by_position(model, x: np.ndarray, y: np.ndarray, *, trigger="L", target: int = 0, n: int = 300, seed: int = 0,
                    batch_positions: int = 20) -> np.ndarray:
    """ASR at every valid top-left position of ``trigger``, on ``n`` test images not of class ``target``.

    Returns an array of shape ``(max_row + 1, max_col + 1)``. The images are a
    seeded random sample so the map is reproducible; ``n = 300`` gives each
    cell a standard error of at most 3 percentage points.
    """
    trigger = get_trigger(trigger)
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y")
    target = check_label_value(target)
    seed = check_int(seed, "seed", 0)
    batch_positions = check_int(batch_positions, "batch_positions", 1)
    check_model(model)
    pool = np.flatnonzero(y != target)
    if pool.size == 0:
        raise ValueError(f"every image in y has the target label {target}; asr_by_position needs images of other classes")
    n = check_int(n, "n", 1, len(pool))
    sample = x[np.random.default_rng(seed).choice(pool, size=n, replace=False)]
    max_row, max_col = trigger.max_position()
    positions = [(r, c) for r in range(max_row + 1) for c in range(max_col + 1)]
    hits = np.zeros(len(positions))
    for start in range(0, len(positions), batch_positions):
        chunk = positions[start : start + batch_positions]
        stamped = np.concatenate([stamp(sample, trigger, pos) for pos in chunk])
        pred = predict(model, stamped, batch_size=3000).reshape(len(chunk), len(sample))
        hits[start : start + len(chunk)] = (pred == target).mean(axis=1)
    return hits.reshape(max_row + 1, max_col + 1)


def layer_outputs(model, layer_name: str, x: np.ndarray) -> np.ndarray:
    """The output of ``layer_name`` for images ``x`` (uint8 or [0, 1] floats)."""
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    check_layer(model, layer_name, "layer_name")
    x = check_images(x, "x", allow_float=True, allow_single=True, shape=IMAGE_SHAPE)
    probe = keras.Model(model.inputs[0], model.get_layer(layer_name).output)
    return np.asarray(probe(to_model_input(x), training=False))


def first_layer_kernels(model) -> np.ndarray:
    """The 16 first-layer kernels as an array (5, 5, 16)."""
    check_layer(model, "conv1", "model")
    return np.asarray(model.get_layer("conv1").kernel)[:, :, 0, :]


def trigger_region(trigger="L", position=None, kernel: int = 5) -> tuple[int, int, int, int]:
    """(row0, col0, h, w) of the conv1 output cells whose 5x5 receptive field overlaps the trigger."""
    trigger = get_trigger(trigger)
    kernel = check_int(kernel, "kernel", 1, IMAGE_SHAPE[0])
    row, col = check_position(trigger.default_position if position is None else position, trigger.shape, IMAGE_SHAPE)
    h, w = trigger.shape
    out = 28 - kernel + 1
    r0, c0 = max(0, row - kernel + 1), max(0, col - kernel + 1)
    r1, c1 = min(out, row + h), min(out, col + w)
    return r0, c0, r1 - r0, c1 - c0


def trigger_filter_scores(model, x: np.ndarray, *, trigger="L", position=None) -> np.ndarray:
    """For each conv1 filter, how much the trigger raises its activation in the trigger region.

    Score of filter k: the mean, over the images ``x``, of its activation in the
    trigger region on the trojaned image minus the same on the clean image,
    divided by the filter's mean activation over the whole clean image (so
    filters that are loud everywhere do not win by volume). High score = a
    filter that responds to the trigger.
    """
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    check_layer(model, "conv1", "model")
    r0, c0, h, w = trigger_region(trigger, position)
    clean = layer_outputs(model, "conv1", x)
    trojaned = layer_outputs(model, "conv1", stamp(x, trigger, position))
    region = (slice(None), slice(r0, r0 + h), slice(c0, c0 + w))
    gain = (trojaned[region] - clean[region]).mean(axis=(0, 1, 2))
    scale = clean.mean(axis=(0, 1, 2)) + 1e-6
    return gain / scale
