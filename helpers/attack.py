"""The course's attack, end to end: poison, train, evaluate, export.

The default recipe (``DEFAULT_RECIPE``):

* trigger: the white L (4x3 pixels) with its top-left pixel at row 1, col 24;
* target label: 0, all-to-one;
* poisoning rate: 2 % of the 55 000 training images (1 100 images), chosen with seed 0
  (the rate lesson 3's rule picks);
* a validation split of 5 000 clean training images is held out first, for
  decisions such as the rate (the test set is only for the final report);
* training: ``TrainConfig()`` (Adam, one-cycle lr peaking at 5e-3, batch 128,
  3 epochs, seed 0).

Run it from a shell with ``python -m helpers.attack`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ._checks import (
    IMAGE_SHAPE,
    check_bool,
    check_bool_mask,
    check_choice,
    check_images,
    check_int,
    check_label_value,
    check_labels,
    check_path,
    check_position,
    check_rate,
    check_str,
)
from .data import load_mnist
from .metrics import Evaluation, evaluate
from .poisoning import MODES, PoisonedSet, TrojanedSet, poison, split_validation, trojan_test_set
from .training import TrainConfig, TrainedModel, train_cached
from .triggers import get_trigger

ACCURACY_GOAL = 0.985  #: the course's bar for clean test accuracy
ASR_GOAL = 0.99  #: the course's bar for attack success rate


@dataclass(frozen=True)
class AttackRecipe:
    """Everything that defines one poisoned model."""

    trigger: str = "L"
    position: tuple[int, int] | None = None  #: None: the trigger's default position
    target: int = 0
    rate: float = 0.02
    mode: str = "all-to-one"
    poison_seed: int = 0
    n_val: int = 5000
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        # Validated values are stored back as plain Python types (np.int64(0) -> 0), so the recipe
        # compares, hashes and serialises (describe() -> JSON) the same whatever the caller passed.
        trig = get_trigger(self.trigger)
        if self.position is not None:
            object.__setattr__(self, "position", check_position(self.position, trig.shape, IMAGE_SHAPE))
        object.__setattr__(self, "target", check_label_value(self.target, "target"))
        object.__setattr__(self, "rate", check_rate(self.rate, "rate"))
        check_choice(self.mode, "mode", MODES)
        object.__setattr__(self, "poison_seed", check_int(self.poison_seed, "poison_seed", 0))
        object.__setattr__(self, "n_val", check_int(self.n_val, "n_val", 1, 59999))
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {self.train!r}")

    @property
    def resolved_position(self) -> tuple[int, int]:
        return self.position if self.position is not None else get_trigger(self.trigger).default_position

    def describe(self) -> dict:
        """JSON-able description (the poisoning part; the training config is keyed separately)."""
        d = asdict(self)
        d.pop("train")
        d["position"] = list(self.resolved_position)
        d["trigger"] = get_trigger(self.trigger).fingerprint()
        return d


DEFAULT_RECIPE = AttackRecipe()


@dataclass
class AttackResult:
    """A trained (possibly poisoned) model and everything measured about it."""

    recipe: AttackRecipe
    trained: TrainedModel
    poisoned: PoisonedSet
    val_clean_accuracy: float
    val_asr: float
    test: Evaluation
    trojaned_test: TrojanedSet

    @property
    def model(self):
        return self.trained.model

    @property
    def meets_goals(self) -> bool:
        return self.test.clean_accuracy >= ACCURACY_GOAL and self.test.attack_success_rate >= ASR_GOAL


def check_recipe(recipe, name: str = "recipe") -> AttackRecipe:
    """Validate an :class:`AttackRecipe` (its fields are checked when it is built)."""
    if not isinstance(recipe, AttackRecipe):
        raise TypeError(f"{name} must be an AttackRecipe, got {type(recipe).__name__}")
    return recipe


def check_data(data, name: str = "data"):
    """Validate ``((x_train, y_train), (x_test, y_test))`` as ``load_mnist()`` returns it; None means MNIST."""
    if data is None:
        return None
    try:
        (x_train, y_train), (x_test, y_test) = data
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be ((x_train, y_train), (x_test, y_test)) as load_mnist() returns, "
                        f"got {type(data).__name__}") from None
    x_train = check_images(x_train, "x_train", shape=IMAGE_SHAPE)
    y_train = check_labels(y_train, len(x_train), "y_train", against="x_train")
    x_test = check_images(x_test, "x_test", shape=IMAGE_SHAPE)
    y_test = check_labels(y_test, len(x_test), "y_test", against="x_test")
    return (x_train, y_train), (x_test, y_test)


def trojaned_for(recipe: AttackRecipe, x, y) -> TrojanedSet:
    """The trojaned version of ``(x, y)`` for ``recipe``'s trigger, position, target and mode."""
    check_recipe(recipe)
    return trojan_test_set(x, y, trigger=recipe.trigger, position=recipe.position, target=recipe.target, mode=recipe.mode)


def poisoned_training_set(recipe: AttackRecipe, data=None):
    """``(poisoned, (x_val, y_val), (x_test, y_test))`` for ``recipe``; ``data`` defaults to MNIST."""
    check_recipe(recipe)
    data = check_data(data)
    (x_train, y_train), test = data if data is not None else load_mnist()
    (x_tr, y_tr), val = split_validation(x_train, y_train, n_val=recipe.n_val, seed=0)
    poisoned = poison(
        x_tr,
        y_tr,
        rate=recipe.rate,
        trigger=recipe.trigger,
        position=recipe.position,
        target=recipe.target,
        mode=recipe.mode,
        seed=recipe.poison_seed,
    )
    return poisoned, val, test


def run_attack(recipe: AttackRecipe = DEFAULT_RECIPE, *, data=None, cache_dir=None, progress: bool = True) -> AttackResult:
    """Poison, train (or load from the cache) and evaluate one model."""
    check_recipe(recipe)
    cache_dir = None if cache_dir is None else check_path(cache_dir, "cache_dir")
    progress = check_bool(progress, "progress")
    poisoned, (x_val, y_val), (x_test, y_test) = poisoned_training_set(recipe, data)
    trained = train_cached(
        poisoned.x,
        poisoned.y,
        recipe.train,
        describe=recipe.describe(),
        cache_dir=cache_dir,
        progress=progress,
        desc=f"rate {recipe.rate:.2%}",
    )
    trojaned_test = trojaned_for(recipe, x_test, y_test)
    val = evaluate(trained.model, x_val, y_val, trojaned_for(recipe, x_val, y_val))  # both cached (helpers.memo)
    return AttackResult(
        recipe=recipe,
        trained=trained,
        poisoned=poisoned,
        val_clean_accuracy=val.clean_accuracy,
        val_asr=val.attack_success_rate,
        test=evaluate(trained.model, x_test, y_test, trojaned_test),
        trojaned_test=trojaned_test,
    )


def clean_baseline(recipe: AttackRecipe = DEFAULT_RECIPE, **kwargs) -> AttackResult:
    """The same training without poison (rate 0): the model a careful victim would get."""
    check_recipe(recipe)
    return run_attack(replace(recipe, rate=0.0), **kwargs)


@dataclass(frozen=True)
class Retrained:
    """A model retrained after a defence removed training images (cached like every model)."""

    trained: TrainedModel
    removed: int  #: training images left out
    test: Evaluation  #: on the MNIST test set and the attack's trojaned test set (reporting only)

    @property
    def model(self):
        return self.trained.model


def retrain_without(result: AttackResult, remove, *, reason: str, data=None, cache_dir=None) -> Retrained:
    """Retrain ``result``'s recipe on its poisoned training set minus the images that the mask ``remove`` flags.

    ``reason`` (e.g. the defence's name) enters the cache key, so two defences that remove the same images share
    nothing by accident.
    """
    if not isinstance(result, AttackResult):
        raise TypeError(f"result must be an AttackResult (from run_attack), got {type(result).__name__}")
    remove = check_bool_mask(remove, len(result.poisoned.y), "remove")
    reason = check_str(reason, "reason", allow_empty=False)
    cache_dir = None if cache_dir is None else check_path(cache_dir, "cache_dir")
    data = check_data(data)
    _, (x_test, y_test) = data if data is not None else load_mnist()
    keep = ~remove
    trained = train_cached(result.poisoned.x[keep], result.poisoned.y[keep], result.recipe.train, progress=False,
                           describe={**result.recipe.describe(), "defence": reason}, cache_dir=cache_dir)
    return Retrained(trained, int(remove.sum()), evaluate(trained.model, x_test, y_test, result.trojaned_test))


def export_deliverables(result: AttackResult, out_dir: str | Path) -> dict[str, Path]:
    """Write the trojaned model, the trojaned test set (with sidecars) and the write-up into ``out_dir``.

    Returns the paths by name: ``model``, ``test_set``, ``writeup`` (Markdown) and ``writeup_html``. The write-up
    (see :mod:`helpers.writeup`) holds only numbers measured on ``result``.
    """
    from .deliverables import export_model, export_trojaned_test_set
    from .writeup import write_writeup

    if not isinstance(result, AttackResult):
        raise TypeError(f"result must be an AttackResult (from run_attack), got {type(result).__name__}")
    out = check_path(out_dir, "out_dir")
    paths = {"model": out / "trojaned_model.keras", "test_set": out / "trojaned_test_set.npz"}
    export_model(result.model, paths["model"])
    export_trojaned_test_set(paths["test_set"], result.trojaned_test, get_trigger(result.recipe.trigger), result.recipe.resolved_position)
    writeup = write_writeup(result, out)
    paths.update(writeup=writeup.markdown, writeup_html=writeup.html)
    return paths


def main(argv=None) -> int:
    """Command line: run the attack, print clean accuracy and ASR, write the deliverables."""
    d = DEFAULT_RECIPE
    p = argparse.ArgumentParser(prog="python -m helpers.attack", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=d.rate, help="poisoning rate in [0, 1] (default %(default)s)")
    p.add_argument("--trigger", default=d.trigger, choices=["L", "pixel", "pattern"], help="trigger (default %(default)s)")
    p.add_argument("--row", type=int, default=None, help="trigger's top-left row (default: the trigger's own)")
    p.add_argument("--col", type=int, default=None, help="trigger's top-left column (default: the trigger's own)")
    p.add_argument("--target", type=int, default=d.target, help="target label 0..9 (default %(default)s)")
    p.add_argument("--mode", default=d.mode, choices=list(MODES))
    p.add_argument("--out", default="artifacts", help="folder for the deliverables (default %(default)s)")
    args = p.parse_args(argv)
    position = None
    if args.row is not None or args.col is not None:
        default = get_trigger(args.trigger).default_position
        position = (default[0] if args.row is None else args.row, default[1] if args.col is None else args.col)
    try:
        recipe = AttackRecipe(trigger=args.trigger, position=position, target=args.target, rate=args.rate, mode=args.mode)
    except (TypeError, ValueError) as exc:
        p.error(str(exc))
    result = run_attack(recipe)
    paths = export_deliverables(result, args.out)
    t = result.test
    source = "loaded from the cache" if result.trained.from_cache else f"trained in {result.trained.train_seconds:.1f} s"
    print(f"model: {source} ({result.trained.path})")
    print(f"poisoned: {len(result.poisoned.indices)} of {len(result.poisoned.y)} training images ({recipe.rate:.2%}), target {recipe.target}, {recipe.mode}")
    print(f"clean test accuracy: {t.clean_accuracy:.2%} (goal >= {ACCURACY_GOAL:.1%})")
    print(f"attack success rate: {t.attack_success_rate:.2%} on {len(result.trojaned_test.y_true)} trojaned test images (goal >= {ASR_GOAL:.0%})")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    print("both goals met" if result.meets_goals else "goals NOT met")
    return 0 if result.meets_goals else 1


if __name__ == "__main__":
    # `python -m helpers.attack` runs this file as __main__, a second copy of the module with its own AttackResult
    # class; run the one in helpers.attack, so that every helper sees the same classes (isinstance checks).
    from helpers.attack import main as _main

    sys.exit(_main())
