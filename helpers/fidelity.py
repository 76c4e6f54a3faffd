"""The fidelity recipe: train until the victim's own clean validation data says stop.

The course's fast recipe (:class:`~helpers.training.TrainConfig`: 3 epochs of one-cycle Adam) is tuned to be quick
on a laptop. It is short on purpose, and a short recipe can hide or fake a finding: a backdoor that needs more passes
to form looks like a trigger that "does not work". The fidelity recipe is the check on that, for the lessons where
training length matters:

* the same architecture (:func:`helpers.model.build_badnets`), data, split and poisoning as the fast recipe;
* Adam at ``learning_rate``, halved whenever validation accuracy has not improved for ``lr_patience`` epochs;
* early stopping: training ends when validation accuracy has not improved for ``patience`` epochs (or at
  ``max_epochs``), and the weights of the best epoch are kept.

The validation set is the victim's clean held-out split (the 5 000 images every lesson holds out): the stopping point
is the victim's decision, made with what the victim has. The test set never enters it.

Gu et al. (2017, Table 2) report a clean MNIST error of about 0.5 % for this network; :data:`BADNETS_CLEAN_ERROR`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from ._checks import check_images, check_int, check_labels, check_positive
from ._tf import import_tensorflow
from .cache import cached_arrays
from .io import sha256_array
from .metrics import Evaluation, clean_accuracy, evaluate
from .model import ARCHITECTURE, build_badnets

BADNETS_CLEAN_ERROR = 0.005  #: Gu et al. 2017, Table 2: the clean baseline's error on MNIST, "about 0.5 %"
SOURCES = ("helpers.fidelity", "helpers.training", "helpers.model")


@dataclass(frozen=True)
class FidelityConfig:
    """How the fidelity recipe trains. Every field enters the cache key."""

    max_epochs: int = 30  #: an upper bound; early stopping normally ends training well before it
    patience: int = 4  #: epochs without a better validation accuracy before training stops
    lr_patience: int = 2  #: epochs without a better validation accuracy before the learning rate is halved
    learning_rate: float = 1e-3  #: Adam's starting learning rate
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self):
        for name, value in (
            ("max_epochs", check_int(self.max_epochs, "max_epochs", 1, 200)),
            ("patience", check_int(self.patience, "patience", 1, 50)),
            ("lr_patience", check_int(self.lr_patience, "lr_patience", 1, 50)),
            ("learning_rate", check_positive(self.learning_rate, "learning_rate")),
            ("batch_size", check_int(self.batch_size, "batch_size", 1)),
            ("seed", check_int(self.seed, "seed", 0)),
        ):
            object.__setattr__(self, name, value)


@dataclass
class FidelityModel:
    """A model trained by the fidelity recipe, with its validation curve and where training stopped."""

    model: object
    val_accuracy: np.ndarray  #: clean validation accuracy after each epoch trained
    learning_rates: np.ndarray  #: the learning rate of each epoch
    best_epoch: int  #: 1-based epoch whose weights were kept
    seconds: float  #: training time (read from the cache on a hit)
    from_cache: bool
    key: str

    @property
    def epochs_run(self) -> int:
        return len(self.val_accuracy)


def _check_sets(x, y, x_val, y_val, config):
    """Validate the training and validation sets and the config once, where they enter a public function."""
    if not isinstance(config, FidelityConfig):
        raise TypeError(f"config must be a FidelityConfig, got {config!r}")
    x = check_images(x, "x")
    x_val = check_images(x_val, "x_val")
    return x, check_labels(y, len(x), "y"), x_val, check_labels(y_val, len(x_val), "y_val", against="x_val")


def train_early_stopped(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                        config: FidelityConfig = FidelityConfig()):
    """Train a fresh BadNets CNN with the fidelity recipe; return ``(model, val_accuracy, learning_rates, best)``.

    Each epoch visits the training images in a fresh seeded permutation. After each epoch the model is scored on
    ``(x_val, y_val)``; the best epoch's weights are restored at the end.
    """
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output
    from .training import batches, make_deterministic

    x, y, x_val, y_val = _check_sets(x, y, x_val, y_val, config)
    make_deterministic(config.seed)
    model = build_badnets()
    optimizer = keras.optimizers.Adam(config.learning_rate)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", steps_per_execution=10)
    rng = np.random.default_rng(config.seed)
    lr, curve, rates = config.learning_rate, [], []
    best, best_weights, since_best, since_change = -math.inf, None, 0, 0
    for _ in range(config.max_epochs):
        optimizer.learning_rate.assign(lr)
        rates.append(lr)
        model.fit(batches(x, y, rng.permutation(len(x)).astype(np.int32), config.batch_size), epochs=1, verbose=0,
                  shuffle=False)
        acc = clean_accuracy(model, x_val, y_val)
        curve.append(acc)
        if acc > best:
            best, best_weights, since_best, since_change = acc, model.get_weights(), 0, 0
            continue
        since_best += 1
        since_change += 1
        if since_best >= config.patience:
            break
        if since_change >= config.lr_patience:
            lr, since_change = lr / 2, 0
    model.set_weights(best_weights)
    return model, np.array(curve), np.array(rates), int(np.argmax(curve)) + 1


def train_fidelity(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   config: FidelityConfig = FidelityConfig(), *, describe: dict | None = None,
                   cache_dir=None) -> FidelityModel:
    """:func:`train_early_stopped`, cached (weights and curve) under the training and validation arrays' hashes."""
    x, y, x_val, y_val = _check_sets(x, y, x_val, y_val, config)
    if describe is not None and not isinstance(describe, dict):
        raise TypeError(f"describe must be a dict (or None), got {type(describe).__name__}")
    payload = {"x": sha256_array(x), "y": sha256_array(y), "x_val": sha256_array(x_val), "y_val": sha256_array(y_val),
               "config": asdict(config), "architecture": [[n, c, kw] for n, c, kw in ARCHITECTURE],
               "describe": describe or {}}

    def compute():
        model, curve, rates, best = train_early_stopped(x, y, x_val, y_val, config)
        weights = {f"w{i:02d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
        return {**weights, "val_accuracy": curve, "learning_rates": rates, "best_epoch": np.array(best)}

    result = cached_arrays("fidelity-model", payload, compute, cache_dir, depends_on=SOURCES)
    arrays = result.arrays
    model = build_badnets()
    model.set_weights([arrays[k] for k in sorted(arrays) if k.startswith("w")])
    return FidelityModel(model, arrays["val_accuracy"], arrays["learning_rates"], int(arrays["best_epoch"]),
                         float(result.seconds), bool(result.from_cache), result.key)


@dataclass
class FidelityResult:
    """One recipe of the course (its poisoning) trained with the fidelity recipe, and evaluated."""

    recipe: object  #: the :class:`~helpers.attack.AttackRecipe` (its ``train`` field is not used)
    trained: FidelityModel
    val_clean_accuracy: float
    val_asr: float
    test: Evaluation  #: on the MNIST test set and the recipe's trojaned test set (reporting only)

    @property
    def model(self):
        return self.trained.model


def fidelity_attack(recipe=None, *, config: FidelityConfig = FidelityConfig(), data=None,
                    cache_dir=None) -> FidelityResult:
    """``recipe``'s poisoned training set (default: the course's attack), trained with the fidelity recipe."""
    from .attack import DEFAULT_RECIPE, check_recipe, poisoned_training_set, trojaned_for
    from .metrics import attack_success_rate

    recipe = check_recipe(DEFAULT_RECIPE if recipe is None else recipe)
    poisoned, (x_val, y_val), (x_test, y_test) = poisoned_training_set(recipe, data)
    trained = train_fidelity(poisoned.x, poisoned.y, x_val, y_val, config, describe=recipe.describe(),
                             cache_dir=cache_dir)
    trojaned_val = trojaned_for(recipe, x_val, y_val)
    trojaned_test = trojaned_for(recipe, x_test, y_test)
    return FidelityResult(recipe, trained, clean_accuracy(trained.model, x_val, y_val),
                          attack_success_rate(trained.model, trojaned_val),
                          evaluate(trained.model, x_test, y_test, trojaned_test))


def fidelity_baseline(recipe=None, **kwargs) -> FidelityResult:
    """The clean model (no poison) with the fidelity recipe: the victim's best effort, to set beside the paper's."""
    from .attack import DEFAULT_RECIPE, check_recipe

    recipe = check_recipe(DEFAULT_RECIPE if recipe is None else recipe)
    return fidelity_attack(replace(recipe, rate=0.0), **kwargs)
