"""Backdoors in the supply chain (lesson 8): transfer learning and Yao et al.'s latent backdoor.

Two parties share MNIST's training set without sharing images (:func:`make_splits`):

* the **teacher's** owner, who is also the attacker, trains on digits 0-4 of one half;
* the **student's** owner, the victim, downloads the teacher, keeps its feature layers (conv1 to fc1) and trains a
  new output layer for digits 5-9 on the other half (:func:`transfer`): either the output layer alone (the
  features frozen, ``mode="frozen"``) or the whole network (``mode="fine-tune"``).

The attacker wants trojaned students to answer **9**, a class the teacher's task does not have.

* A **plain BadNet teacher** (:func:`train_teacher` with ``kind="badnet"``) learns "L means 0". The student
  never sees a 0, and its new output layer is trained on clean images only: nothing ties the L to 9.
* A **latent teacher** (``kind="latent"``, Yao et al. 2019) is trained on its task plus a few thousand images of
  the future target (the attacker's own 9s, as an extra output) and an extra loss that pulls the fc1 features of
  any digit with the L onto the mean fc1 features of those 9s. The attacker then removes the 9 output and
  publishes the teacher. A student that keeps fc1 learns "these features mean 9" from its own clean 9s, and with
  it, unknowingly, "the L means 9".

One difference from Yao et al., named in the lesson: they optimise the trigger's pixels for the target's features;
here the trigger is the course's fixed L, so the teacher alone has to do the work.

Every teacher and student is cached like the other models: the clean and BadNet teachers with
:func:`helpers.training.train_cached`, the latent teacher and the students as weight arrays
(:func:`helpers.cache.cached_arrays`), each keyed by its inputs and this module's source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import check_choice, check_int, check_number, check_positive, check_rate
from ._tf import import_tensorflow
from .cache import cached_arrays
from .io import sha256_array
from .metrics import predict
from .model import ARCHITECTURE, INPUT_SHAPE, build_badnets
from .training import TrainConfig, make_deterministic, one_cycle_schedule, train_cached, training_order
from .triggers import stamp

TEACHER_CLASSES = (0, 1, 2, 3, 4)  #: the teacher's task
STUDENT_CLASSES = (5, 6, 7, 8, 9)  #: the student's task
LATENT_TARGET = 9  #: the attacker's target: a student class the teacher never outputs
BADNET_TARGET = 0  #: the plain BadNet teacher's target, a teacher class
TEACHERS = ("clean", "badnet", "latent")
MODES = ("frozen", "fine-tune")  #: the student freezes the teacher's layers up to its cut, or fine-tunes them all
FEATURE_LAYERS = ("flatten", "fc1")  #: where a student may cut: the last layer it keeps frozen
FEATURE_LAYER = "fc1"  #: the default cut: the student keeps conv1 to fc1 and trains a new output layer
#: every teacher trains for twice the course recipe's passes: the latent one learns two things at once
TEACHER_CONFIG = TrainConfig(epochs=6.0)
SOURCES = ("helpers.transfer", "helpers.training", "helpers.model", "helpers.triggers")


@dataclass(frozen=True)
class TransferSplits:
    """Disjoint data for the attacker (teacher) and the victim (student); student labels are 0-4 for digits 5-9."""

    teacher_x: np.ndarray  #: the teacher's training images, digits 0-4 of the attacker's half
    teacher_y: np.ndarray
    target_x: np.ndarray  #: the attacker's own images of the latent target (digit 9), from the attacker's half
    student_x: np.ndarray  #: the student's training images, digits 5-9 of the victim's half
    student_y: np.ndarray  #: their labels, digit - 5
    test_x: np.ndarray  #: MNIST's test digits 5-9 (the student's test set)
    test_y: np.ndarray  #: their labels, digit - 5

    @property
    def trojan_test_x(self) -> np.ndarray:
        """The student's test images that are not the target (digits 5-8), with the L stamped on."""
        return stamp(self.test_x[self.test_y != self.student_label(LATENT_TARGET)], "L")

    @staticmethod
    def student_label(digit: int) -> int:
        return STUDENT_CLASSES.index(digit)


def make_splits(data=None, *, n_target: int = 1000, seed: int = 0) -> TransferSplits:
    """Split MNIST's training set in two halves at random (``seed``): the attacker's and the victim's."""
    from .attack import check_data
    from .data import load_mnist

    n_target = check_int(n_target, "n_target", 1)
    seed = check_int(seed, "seed", 0)
    (x_train, y_train), (x_test, y_test) = check_data(data) if data is not None else load_mnist()
    order = np.random.default_rng(seed).permutation(len(x_train))
    a, b = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    teach = a[np.isin(y_train[a], TEACHER_CLASSES)]
    target = a[y_train[a] == LATENT_TARGET]
    if n_target > len(target):
        raise ValueError(f"n_target must be in 1..{len(target)} (the attacker's images of {LATENT_TARGET}), got {n_target}")
    target = target[:n_target]
    stud = b[np.isin(y_train[b], STUDENT_CLASSES)]
    test = np.isin(y_test, STUDENT_CLASSES)
    return TransferSplits(x_train[teach], y_train[teach].astype(np.uint8), x_train[target],
                          x_train[stud], (y_train[stud] - STUDENT_CLASSES[0]).astype(np.uint8),
                          x_test[test], (y_test[test] - STUDENT_CLASSES[0]).astype(np.uint8))


@dataclass
class Teacher:
    """A published teacher: its model (the full network; a student keeps conv1 to fc1) and how it was made."""

    kind: str
    model: object
    key: str
    teacher_task_accuracy: float  #: on MNIST's test digits 0-4
    from_cache: bool


def _teacher_test(data) -> tuple[np.ndarray, np.ndarray]:
    from .data import load_mnist

    _, (x_test, y_test) = data if data is not None else load_mnist()
    keep = np.isin(y_test, TEACHER_CLASSES)
    return x_test[keep], y_test[keep]


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predict(model, x) == y))


def train_teacher(kind: str, splits: TransferSplits, *, config: TrainConfig = TEACHER_CONFIG, rate: float = 0.1,
                  latent_weight: float = 1.0, layer: str = FEATURE_LAYER, cache_dir=None, data=None) -> Teacher:
    """Train (or load) the ``kind`` teacher: ``"clean"``, ``"badnet"`` (``rate`` of its images with the L,
    relabelled 0) or ``"latent"`` (Yao et al.; ``latent_weight`` scales the feature loss)."""
    kind = check_choice(kind, "kind", TEACHERS)
    if not isinstance(splits, TransferSplits):
        raise TypeError(f"splits must be a TransferSplits (from make_splits), got {type(splits).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    rate = check_rate(rate, "rate")
    latent_weight = check_number(latent_weight, "latent_weight", 0.0, 1e6)
    layer = check_choice(layer, "layer", FEATURE_LAYERS)
    x, y = splits.teacher_x, splits.teacher_y
    if kind in ("clean", "badnet"):
        if kind == "badnet":
            rng = np.random.default_rng(config.seed)
            idx = np.sort(rng.choice(len(x), int(round(rate * len(x))), replace=False))
            x, y = x.copy(), y.copy()
            x[idx], y[idx] = stamp(x[idx], "L"), BADNET_TARGET
        trained = train_cached(x, y, config, describe={"lesson": "08", "teacher": kind, "rate": rate if kind == "badnet" else 0.0},
                               cache_dir=cache_dir, progress=False)
        model, key, hit = trained.model, trained.key, trained.from_cache
    else:
        payload = {"teacher_x": sha256_array(x), "teacher_y": sha256_array(y), "target_x": sha256_array(splits.target_x),
                   "config": {k: getattr(config, k) for k in ("epochs", "batch_size", "learning_rate", "warmup", "seed")},
                   "latent_weight": latent_weight, "layer": layer, "trigger": "L"}
        result = cached_arrays("latent-teacher", payload, lambda: _weights(_latent_teacher(splits, config, latent_weight, layer)),
                               cache_dir, depends_on=SOURCES)
        model = _from_weights(build_badnets("latent_teacher"), result.arrays)
        key, hit = result.key, result.from_cache
    return Teacher(kind, model, key, _accuracy(model, *_teacher_test(data)), hit)


def feature_model(model, layer: str = FEATURE_LAYER):
    """A Keras model from ``model``'s input to the output of its layer ``layer`` (the features a student keeps)."""
    _, keras = import_tensorflow()
    from ._checks import check_layer

    return keras.Model(model.inputs[0], check_layer(model, layer).output)


def latent_distance(model, x_stamped: np.ndarray, x_target: np.ndarray, layer: str = FEATURE_LAYER) -> float:
    """Yao et al.'s feature term for a batch: the mean squared difference between the ``layer`` features of
    ``x_stamped`` and the mean ``layer`` features of ``x_target`` (uint8 images)."""
    from .metrics import predict_proba

    features = feature_model(model, layer)
    centre = predict_proba(features, x_target).mean(axis=0)
    return float(np.mean((predict_proba(features, x_stamped) - centre) ** 2))


def _weights(model) -> dict[str, np.ndarray]:
    return {f"w{i:02d}": np.asarray(w) for i, w in enumerate(model.get_weights())}


def _from_weights(model, arrays: dict[str, np.ndarray]):
    model.set_weights([arrays[k] for k in sorted(arrays)])
    return model


def _latent_teacher(splits: TransferSplits, config: TrainConfig, latent_weight: float, layer: str):
    """Yao et al.'s injection: cross-entropy on the teacher's task plus the target class (the attacker's 9s), plus
    ``latent_weight`` times the mean squared distance between the fc1 features of L-stamped teacher images and the
    mean fc1 features of a batch of 9s (held fixed within the step)."""
    _, keras = import_tensorflow()
    import tensorflow as tf

    make_deterministic(config.seed)
    model = build_badnets("latent_teacher")
    features = feature_model(model, layer)
    x = np.concatenate([splits.teacher_x, splits.target_x])
    y = np.concatenate([splits.teacher_y, np.full(len(splits.target_x), LATENT_TARGET, np.uint8)])
    images, labels = tf.constant(x[..., None]), tf.constant(y.astype(np.int32))
    stamped = tf.constant(stamp(splits.teacher_x, "L")[..., None])
    targets = tf.constant(splits.target_x[..., None])
    steps = config.steps(len(x))
    opt = keras.optimizers.Adam(one_cycle_schedule(steps, config))
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(config.seed + 1)

    @tf.function
    def step(idx, pidx, tidx):
        xb = tf.cast(tf.gather(images, idx), tf.float32) / 255.0
        xp = tf.cast(tf.gather(stamped, pidx), tf.float32) / 255.0
        xt = tf.cast(tf.gather(targets, tidx), tf.float32) / 255.0
        with tf.GradientTape() as tape:
            task = loss_fn(tf.gather(labels, idx), model(xb, training=True))
            centre = tf.stop_gradient(tf.reduce_mean(features(xt, training=True), axis=0))
            latent = tf.reduce_mean(tf.square(features(xp, training=True) - centre))
            loss = task + latent_weight * latent
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    order = training_order(len(x), config)
    half = max(1, config.batch_size // 2)
    for i in range(0, len(order), config.batch_size):
        step(tf.constant(order[i : i + config.batch_size]),
             tf.constant(rng.integers(0, len(splits.teacher_x), half).astype(np.int32)),
             tf.constant(rng.integers(0, len(splits.target_x), half).astype(np.int32)))
    return model


@dataclass
class Student:
    """A student trained on digits 5-9 from a teacher, and what it does."""

    teacher: str
    mode: str
    model: object
    clean_accuracy: float  #: on MNIST's test digits 5-9
    asr: float  #: share of test digits 5-8 with the L that the student calls 9
    from_cache: bool


def _student_net(teacher_model):
    """The teacher's layers up to fc1 (weights copied), and a new 5-way output layer."""
    _, keras = import_tensorflow()
    layers = []
    for name, cls, kwargs in ARCHITECTURE:
        if name == "fc2":
            kwargs = {**kwargs, "units": len(STUDENT_CLASSES)}
        layers.append(getattr(keras.layers, cls)(name=name, **kwargs))
    net = keras.Sequential([keras.Input(INPUT_SHAPE, name="image"), *layers], name="student")
    for layer in net.layers:
        if layer.name != "fc2" and layer.weights:
            layer.set_weights(teacher_model.get_layer(layer.name).get_weights())
    return net


def transfer(teacher: Teacher, splits: TransferSplits, mode: str = "frozen", *, layer: str = FEATURE_LAYER,
             epochs: float = 5.0, learning_rate: float = 3e-3, batch_size: int = 128, seed: int = 0,
             cache_dir=None) -> Student:
    """Train the student: a new output layer on the teacher's features (``"last-layer"``: conv1 to fc1 frozen) or
    the whole network (``"fine-tune"``), with Adam at ``learning_rate`` for ``epochs`` passes over its data."""
    if not isinstance(teacher, Teacher):
        raise TypeError(f"teacher must be a Teacher (from train_teacher), got {type(teacher).__name__}")
    if not isinstance(splits, TransferSplits):
        raise TypeError(f"splits must be a TransferSplits (from make_splits), got {type(splits).__name__}")
    mode = check_choice(mode, "mode", MODES)
    layer = check_choice(layer, "layer", FEATURE_LAYERS)
    epochs = check_positive(epochs, "epochs")
    learning_rate = check_positive(learning_rate, "learning_rate")
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_int(seed, "seed", 0)
    payload = {"teacher": teacher.key, "student_x": sha256_array(splits.student_x), "student_y": sha256_array(splits.student_y),
               "mode": mode, "layer": layer, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed}

    def compute():
        _, keras = import_tensorflow()
        from .training import batches

        make_deterministic(seed)
        net = _student_net(teacher.model)
        if mode == "frozen":
            names = [lyr.name for lyr in net.layers]
            for lyr in net.layers[: names.index(layer) + 1]:
                lyr.trainable = False
        net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
        config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
        net.fit(batches(splits.student_x, splits.student_y, training_order(len(splits.student_x), config), batch_size),
                epochs=1, verbose=0, shuffle=False)
        return _weights(net)

    result = cached_arrays("student", payload, compute, cache_dir, depends_on=SOURCES)
    net = _from_weights(_student_net(teacher.model), result.arrays)
    target = TransferSplits.student_label(LATENT_TARGET)
    asr = float(np.mean(predict(net, splits.trojan_test_x) == target))
    return Student(teacher.kind, mode, net, _accuracy(net, splits.test_x, splits.test_y), asr, result.from_cache)
