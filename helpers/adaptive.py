"""An attack built to beat a named defence: Liu et al.'s pruning-aware attack on fine-pruning (2018, §5).

Fine-pruning works when the backdoor lives in units that clean inputs leave quiet. The pruning-aware attacker,
who controls training, makes sure it does not:

1. train a clean model (the course's clean baseline);
2. prune it as the defender will (:func:`helpers.defences.fine_pruning`'s rule: the quietest units on clean data,
   for as long as clean accuracy stays within ``max_drop``), on the attacker's own clean images;
3. train the pruned model on the poisoned training set, the pruned units held at zero, so the backdoor has to be
   learned by the units clean inputs use;
4. hand the model over. Liu et al. then "de-prune": they put back the neurons they removed, made dormant, because
   their pruning changed the architecture. Pruning here zeroes weights and keeps the architecture, so the model
   already has the victim's shape; the pruned units keep zero weights.

The defender's pruning then removes exactly the units the backdoor never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import check_choice, check_int, check_positive, check_rate
from ._tf import import_tensorflow
from .analysis import layer_outputs
from .attack import DEFAULT_RECIPE, AttackRecipe, check_recipe, clean_baseline, poisoned_training_set, trojaned_for
from .cache import cached_arrays
from .defences import GRANULARITIES, _unit_pruning_accuracy, channel_activity, prune_channels
from .io import sha256_array
from .memo import remembered
from .metrics import attack_success_rate, clean_accuracy
from .training import batches, make_deterministic

SOURCES = ("helpers.adaptive", "helpers.defences", "helpers.training", "helpers.model", "helpers.attack",
           "helpers.poisoning", "helpers.triggers")
N_ATTACKER_CLEAN = 5000  #: clean training images the attacker uses to rank and stop, like the defender's 5 000


@dataclass
class PruningAwareResult:
    """The pruning-aware model, and what the attacker pruned to build it."""

    model: object
    granularity: str
    pruned: np.ndarray  #: the units (or channels) held at zero while the backdoor was trained
    n_prunable: int
    clean_accuracy: float  #: test (the model the victim receives)
    asr: float  #: test
    trojaned_test: object
    seconds: float  #: time to build it (read from the cache on a hit)
    from_cache: bool

    @property
    def n_pruned(self) -> int:
        return len(self.pruned)


def _rule(accuracy: np.ndarray, max_drop: float) -> int:
    breach = np.flatnonzero(accuracy < accuracy[0] - max_drop)
    return int(breach[0] - 1) if len(breach) else len(accuracy) - 1


@remembered(depends_on=SOURCES)  # the attacker's rule, read back on a rerun
def _attacker_pruning(model, x, y, granularity: str, max_drop: float) -> np.ndarray:
    """The units (or channels) the defender's rule would prune, found on the attacker's clean images."""
    if granularity == "unit":
        features = layer_outputs(model, "flatten", x)
        order = np.argsort(features.mean(axis=0), kind="stable")
        accuracy = _unit_pruning_accuracy(model, features, y, order)
    else:
        order = np.argsort(channel_activity(model, x, "conv2"), kind="stable")
        accuracy = np.array([clean_accuracy(prune_channels(model, order[:k]), x, y) for k in range(len(order) + 1)])
    return np.sort(order[:_rule(accuracy, max_drop)])


def _train_with_pruned(clean_model, pruned: np.ndarray, granularity: str, x, y, epochs: int, learning_rate: float,
                       seed: int):
    """Train a copy of ``clean_model`` on ``(x, y)`` with the ``pruned`` units' weights held at zero (a constraint)."""
    _, keras = import_tensorflow()

    make_deterministic(seed)
    model = keras.models.clone_model(clean_model)
    model.set_weights(clean_model.get_weights())
    if granularity == "unit":
        layer = model.get_layer("fc1")
        mask = np.ones(layer.kernel.shape, np.float32)
        mask[pruned, :] = 0.0
        layer.kernel.constraint = lambda w: w * mask
    else:
        layer = model.get_layer("conv2")
        mask = np.ones(layer.kernel.shape, np.float32)
        mask[..., pruned] = 0.0
        bias_mask = np.ones(layer.bias.shape, np.float32)
        bias_mask[pruned] = 0.0
        layer.kernel.constraint = lambda w: w * mask
        layer.bias.constraint = lambda b: b * bias_mask
    kernel, bias = (np.array(w) for w in layer.get_weights())
    layer.set_weights([kernel * mask, bias if granularity == "unit" else bias * bias_mask])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  steps_per_execution=10)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(epochs)]).astype(np.int32)
    model.fit(batches(x, y, order, 128), epochs=1, verbose=0, shuffle=False)
    layer.kernel.constraint = None
    layer.bias.constraint = None
    return model


def pruning_aware_attack(recipe: AttackRecipe = DEFAULT_RECIPE, *, granularity: str = "unit", max_drop: float = 0.04,
                         epochs: int = 3, learning_rate: float = 1e-3, data=None, cache_dir=None) -> PruningAwareResult:
    """Liu et al.'s pruning-aware attack against fine-pruning at ``granularity`` (see the module docstring).

    The attacker trains the backdoor for ``epochs`` passes over ``recipe``'s poisoned training set at a constant
    ``learning_rate``, starting from the clean baseline; ``max_drop`` is the defender's rule, which the attacker
    anticipates.
    """
    check_recipe(recipe)
    granularity = check_choice(granularity, "granularity", tuple(GRANULARITIES))
    max_drop = check_rate(max_drop, "max_drop")
    epochs = check_int(epochs, "epochs", 1, 100)
    learning_rate = check_positive(learning_rate, "learning_rate")
    poisoned, _, (x_test, y_test) = poisoned_training_set(recipe, data)
    clean = clean_baseline(recipe, data=data, cache_dir=cache_dir, progress=False)
    untouched = np.setdiff1d(np.arange(len(poisoned.x)), poisoned.indices)[:N_ATTACKER_CLEAN]
    x_att, y_att = poisoned.x[untouched], poisoned.y[untouched]
    pruned = _attacker_pruning(clean.model, x_att, y_att, granularity, max_drop)
    payload = {"clean_model": clean.trained.key, "train_x": sha256_array(poisoned.x), "train_y": sha256_array(poisoned.y),
               "pruned": pruned.tolist(), "granularity": granularity, "epochs": epochs, "learning_rate": learning_rate,
               "seed": recipe.train.seed}

    def compute():
        model = _train_with_pruned(clean.model, pruned, granularity, poisoned.x, poisoned.y, epochs, learning_rate,
                                   recipe.train.seed)
        return {f"w{i:02d}": np.asarray(w) for i, w in enumerate(model.get_weights())}

    arrays, seconds, hit = cached_arrays("pruning-aware", payload, compute, cache_dir, depends_on=SOURCES)
    _, keras = import_tensorflow()
    model = keras.models.clone_model(clean.model)
    model.set_weights([arrays[k] for k in sorted(arrays)])
    trojaned = trojaned_for(recipe, x_test, y_test)
    n_prunable = int(clean.model.get_layer("fc1" if granularity == "unit" else "conv2").kernel.shape[0 if granularity == "unit" else -1])
    return PruningAwareResult(model, granularity, pruned, n_prunable, clean_accuracy(model, x_test, y_test),
                              attack_success_rate(model, trojaned), trojaned, float(seconds), bool(hit))
