"""The poisoning-rate sweep: one model per rate, and a stated rule to choose one.

The rates run from no poison to 10 %, denser and log-spaced at the low end,
where the backdoor goes from "does not take" to "works". Each model is trained
with the default recipe at that rate (and cached), then measured on the
validation split (for choosing) and on the test set (for reporting).

The rule (:func:`choose_rate`): **the smallest rate whose model meets both
goals on the validation split** (clean accuracy >= 98.5 %, ASR >= 99 %). The
smallest, because every poisoned image is one more chance for the victim to
notice (and clean accuracy only drops as the rate grows); on validation, so the
test set stays untouched until the final report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._checks import check_bool, check_int, check_number, check_path, check_rate, check_rates, check_sequence
from .attack import ACCURACY_GOAL, ASR_GOAL, DEFAULT_RECIPE, AttackRecipe, AttackResult, check_data, check_recipe, run_attack

#: Poisoning rates of the sweep (fractions of the training set).
DEFAULT_RATES = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.35, 0.5)


@dataclass(frozen=True)
class SweepPoint:
    """One rate's numbers."""

    rate: float
    n_poisoned: int
    val_clean_accuracy: float
    val_asr: float
    test_clean_accuracy: float
    test_asr: float
    train_seconds: float
    from_cache: bool

    def __post_init__(self):
        # stored back as plain Python types, so a point compares and serialises the same whatever it was built from
        object.__setattr__(self, "rate", check_rate(self.rate, "rate"))
        object.__setattr__(self, "n_poisoned", check_int(self.n_poisoned, "n_poisoned", 0))
        for name in ("val_clean_accuracy", "val_asr", "test_clean_accuracy", "test_asr"):
            object.__setattr__(self, name, check_rate(getattr(self, name), name))
        object.__setattr__(self, "train_seconds", check_number(self.train_seconds, "train_seconds", 0.0))
        object.__setattr__(self, "from_cache", check_bool(self.from_cache, "from_cache"))

    @property
    def meets_goals_on_validation(self) -> bool:
        return self.val_clean_accuracy >= ACCURACY_GOAL and self.val_asr >= ASR_GOAL


def run_sweep(rates=DEFAULT_RATES, recipe: AttackRecipe = DEFAULT_RECIPE, *, data=None, cache_dir=None, progress: bool = True):
    """Train (or load) one model per rate; return ``(points, results)`` with ``results[rate]`` the :class:`AttackResult`."""
    from tqdm.auto import tqdm

    rates = sorted(check_rates(rates, "rates"))
    check_recipe(recipe)
    data = check_data(data)
    cache_dir = None if cache_dir is None else check_path(cache_dir, "cache_dir")
    progress = check_bool(progress, "progress")
    results: dict[float, AttackResult] = {}
    for rate in tqdm(rates, desc="poisoning rates", unit="model", disable=not progress, leave=False):
        results[rate] = run_attack(replace(recipe, rate=rate), data=data, cache_dir=cache_dir, progress=False)
    points = [
        SweepPoint(
            rate=r,
            n_poisoned=len(res.poisoned.indices),
            val_clean_accuracy=res.val_clean_accuracy,
            val_asr=res.val_asr,
            test_clean_accuracy=res.test.clean_accuracy,
            test_asr=res.test.attack_success_rate,
            train_seconds=res.trained.train_seconds,
            from_cache=res.trained.from_cache,
        )
        for r, res in results.items()
    ]
    return points, results


def check_points(points, name: str = "points") -> list[SweepPoint]:
    """Validate a non-empty list of :class:`SweepPoint` with distinct rates."""
    points = check_sequence(points, name)
    for i, p in enumerate(points):
        if not isinstance(p, SweepPoint):
            raise TypeError(f"{name}[{i}] must be a SweepPoint (from run_sweep), got {type(p).__name__}")
    rates = [p.rate for p in points]
    for i, r in enumerate(rates):
        if r in rates[:i]:
            raise ValueError(f"{name}[{i}] repeats the rate {r:g}; every point of {name} must have its own rate")
    return points


def choose_rate(points: list[SweepPoint]) -> SweepPoint:
    """The smallest rate that meets both goals on the validation split (see the module docstring)."""
    points = check_points(points)
    ok = [p for p in sorted(points, key=lambda p: p.rate) if p.meets_goals_on_validation]
    if not ok:
        best = max(points, key=lambda p: min(p.val_clean_accuracy - ACCURACY_GOAL, p.val_asr - ASR_GOAL))
        raise ValueError(f"no rate in the sweep meets both goals on validation; closest: {best.rate:.2%} "
                         f"(clean {best.val_clean_accuracy:.2%}, ASR {best.val_asr:.2%}); extend the rates")
    return ok[0]


def sweep_table(points: list[SweepPoint]) -> str:
    """A fixed-width table of the sweep, for printing in a lesson."""
    points = check_points(points)
    lines = [f"{'rate':>7} {'poisoned':>8} {'val clean':>9} {'val ASR':>8} {'test clean':>10} {'test ASR':>8}  goals (val)"]
    for p in points:
        lines.append(
            f"{p.rate:>7.2%} {p.n_poisoned:>8d} {p.val_clean_accuracy:>9.2%} {p.val_asr:>8.2%} "
            f"{p.test_clean_accuracy:>10.2%} {p.test_asr:>8.2%}  {'met' if p.meets_goals_on_validation else '-'}"
        )
    return "\n".join(lines)
