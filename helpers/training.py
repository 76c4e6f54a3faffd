"""Deterministic, fast training of the BadNets CNN, with an on-disk model cache.

The recipe (see ``TrainConfig``) keeps the paper's architecture and tunes only
the training: Adam with a one-cycle learning rate (linear warm-up, cosine decay
to zero), batch 128, three passes over the data. Three, because shorter
training leaves too thin a margin: with 1.5 passes one training seed in five
misses 98.5 % clean accuracy on the validation split (README, "The default
recipe").

Every trained model is cached (see :mod:`helpers.cache`) under a key hashed
from everything that determines it: the exact training arrays (which covers the
data, the trigger and the poisoning), the training configuration, the
architecture, any description the caller adds, the source code of this module
and of :mod:`helpers.model`, and the helpers, NumPy, TensorFlow and Keras
versions. Cache files are written atomically and durably, verified against the
SHA-256 in their sidecar on load, loaded with Keras' ``safe_mode=True`` (no
arbitrary code from a model file), and retrained when missing or corrupt.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._checks import check_images, check_int, check_labels, check_positive, check_rate
from ._tf import import_tensorflow
from .cache import MODEL, EntryKey, entry_key, load_keras, load_or_compute, verify_file
from .cache import default_cache_dir  # noqa: F401  (re-exported: it used to live here)
from .io import sha256_array
from .model import ARCHITECTURE, build_badnets


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Every field enters the cache key."""

    epochs: float = 3.0  #: passes over the training set (fractions allowed)
    batch_size: int = 128
    learning_rate: float = 5e-3  #: peak learning rate of the one-cycle schedule
    warmup: float = 0.15  #: fraction of the steps spent warming up
    seed: int = 0  #: seeds weights, data order and every random op

    def __post_init__(self):
        # Store plain Python numbers: numpy scalars are accepted but converted, so
        # the config compares, prints and enters the cache key the same either way.
        for name, value in (
            ("epochs", check_positive(self.epochs, "epochs")),
            ("batch_size", check_int(self.batch_size, "batch_size", 1)),
            ("learning_rate", check_positive(self.learning_rate, "learning_rate")),
            ("warmup", check_rate(self.warmup, "warmup")),
            ("seed", check_int(self.seed, "seed", 0)),
        ):
            object.__setattr__(self, name, value)

    def steps(self, n: int) -> int:
        """Optimizer steps for a training set of ``n`` images."""
        return math.ceil(self.n_samples(n) / self.batch_size)

    def n_samples(self, n: int) -> int:
        """Images seen during training (``epochs * n``, rounded)."""
        return max(1, int(round(self.epochs * n)))


def make_deterministic(seed: int = 0) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic.

    It also starts TensorFlow's runtime, with the start-up lines TensorFlow's
    C++ core prints (oneDNN, CPU features, CUDA probing) sent to a log file
    (:func:`helpers._tf.import_tensorflow`), so a lesson shows none of them.
    """
    from ._tf import import_tensorflow

    tf, keras = import_tensorflow()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def training_order(n: int, config: TrainConfig) -> np.ndarray:
    """The order in which the ``n`` training images are visited.

    A fresh random permutation per epoch (seeded), concatenated and cut at
    ``epochs * n`` images, so a fractional last epoch sees a random subset.
    """
    rng = np.random.default_rng(config.seed)
    total = config.n_samples(n)
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(total / n))])
    return order[:total].astype(np.int32)


def one_cycle_schedule(steps: int, config: TrainConfig):
    """Linear warm-up from lr/10 to ``learning_rate``, then cosine decay to 0."""
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    warmup = int(round(config.warmup * steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10,
        decay_steps=max(1, steps - warmup),
        alpha=0.0,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def _progress_callback(total: int, desc: str):
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output
    from tqdm.auto import tqdm

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=total, desc=desc, unit="step", leave=False)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(batch + 1 - self.bar.n)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

        def on_train_end(self, logs=None):
            self.bar.close()

    return Progress()


def train(x: np.ndarray, y: np.ndarray, config: TrainConfig = TrainConfig(), *, progress: bool = True, desc: str = "training"):
    """Train a fresh BadNets CNN on uint8 images ``x`` with labels ``y``; return the model.

    The model is built after seeding, so the same inputs give the same
    weights. To continue training an existing model, use :func:`fine_tune`.
    """
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    make_deterministic(config.seed)
    model = build_badnets()
    order = training_order(len(x), config)
    steps = config.steps(len(x))
    model.compile(
        optimizer=keras.optimizers.Adam(one_cycle_schedule(steps, config)),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=10,
    )
    callbacks = [_progress_callback(steps, desc)] if progress else []
    model.fit(batches(x, y, order, config.batch_size), epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
    return model


def batches(x: np.ndarray, y: np.ndarray, order: np.ndarray, batch_size: int):
    """A tf.data pipeline of ``(images, labels)`` batches visiting ``x`` in ``order``.

    The images stay uint8 in memory (4x smaller than float32); each batch is
    gathered and scaled to [0, 1] on the fly, exactly as ``to_model_input`` does.
    """
    import tensorflow as tf

    images = tf.constant(x[..., None])
    labels = tf.constant(y.astype(np.int32))

    def batch(idx):
        return tf.cast(tf.gather(images, idx), tf.float32) / 255.0, tf.gather(labels, idx)

    return tf.data.Dataset.from_tensor_slices(order.astype(np.int32)).batch(batch_size).map(batch).prefetch(2)


def fine_tune(model, x: np.ndarray, y: np.ndarray, *, epochs: int = 2, learning_rate: float = 1e-3, batch_size: int = 128,
              seed: int = 0, on_epoch=None):
    """Fine-tune a *copy* of ``model`` on ``(x, y)`` with Adam at a constant learning rate; return the copy.

    ``on_epoch(epoch, model)`` is called after every epoch (for curves).
    """
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    make_deterministic(seed)
    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    tuned.compile(optimizer=keras.optimizers.Adam(check_positive(learning_rate, "learning_rate")), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    for epoch in range(1, check_int(epochs, "epochs", 1) + 1):
        tuned.fit(batches(x, y, rng.permutation(len(x)), batch_size), epochs=1, shuffle=False, verbose=0)
        if on_epoch is not None:
            on_epoch(epoch, tuned)
    return tuned


# ---------------------------------------------------------------- the cache

#: The code a trained model depends on: editing either file gives new cache keys.
MODEL_SOURCES = ("helpers.training", "helpers.model")


def _array_id(a: np.ndarray) -> dict:
    """An array's identity for a cache key: SHA-256 of its bytes, its dtype and its shape."""
    return {"sha256": sha256_array(a), "dtype": a.dtype.str, "shape": list(a.shape)}


def model_key(x: np.ndarray, y: np.ndarray, config: TrainConfig, describe: dict | None = None) -> EntryKey:
    """The cache key of the model :func:`train` would give for these inputs (see :mod:`helpers.cache`).

    It covers the training arrays (which covers the data, the trigger and the
    poisoning), the config, the architecture, ``describe``, the source of
    ``MODEL_SOURCES`` and the library versions. A ``describe`` that is not
    plain JSON is refused here, before any training.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if describe is not None and not isinstance(describe, dict):
        raise TypeError(f"describe must be a dict (or None), got {type(describe).__name__}")
    inputs = {
        "x": _array_id(x),
        "y": _array_id(y),
        "config": asdict(config),
        "architecture": [[n, c, kw] for n, c, kw in ARCHITECTURE],
        "describe": describe or {},
    }
    return entry_key("model", "model", inputs, MODEL_SOURCES)


def cache_key(x: np.ndarray, y: np.ndarray, config: TrainConfig, describe: dict | None = None) -> str:
    """The hex SHA-256 cache key of :func:`model_key`."""
    return model_key(x, y, config, describe).digest


@dataclass
class TrainedModel:
    """A model with where it came from: its cache key and file, and whether it was loaded.

    ``path`` is the ``.keras`` file (named by its content) and ``sidecar`` the
    JSON record beside it (key, SHA-256, compute time); both are None only if
    the model could not be written to the cache.
    """

    model: object
    key: str
    path: Path | None
    from_cache: bool
    train_seconds: float
    sidecar: Path | None = None
    sha256: str | None = None


def load_verified_model(path: str | os.PathLike, sha256: str):
    """Load a ``.keras`` file in safe mode after checking its SHA-256; raise ``ValueError`` if it differs."""
    verify_file(path, sha256)
    return load_keras(path)


def train_cached(
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig = TrainConfig(),
    *,
    describe: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "training",
) -> TrainedModel:
    """Load the model for these inputs from the cache, or train and cache it.

    ``describe`` (plain JSON: dict, list, str, int, float, bool, None; no
    numpy scalars) is recorded beside the model and enters the key: use it
    for what the arrays alone do not say (e.g. the poisoning settings). All
    inputs are checked before training starts.
    """
    x = check_images(x, "x")
    y = check_labels(y, len(x), "y")
    key = model_key(x, y, config, describe)
    result = load_or_compute(key, MODEL, lambda: train(x, y, config, progress=progress, desc=desc), cache_dir)
    return TrainedModel(result.value, key.digest, result.path, result.from_cache, result.seconds,
                        result.sidecar, result.sha256)
