"""Each defence finds a backdoor planted in a small real model, and stays quiet on a clean one.

Two BadNets CNNs are trained on 12 000 real MNIST images (one with 3 % of them stamped with the L and
relabelled 0, one clean). Every threshold comes from clean held-out images, as in lesson 7; the trojaned
inputs are used only to check the result.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import defences
from helpers.metrics import attack_success_rate, clean_accuracy
from helpers.poisoning import poison, trojan_test_set
from helpers.training import TrainConfig, train

pytestmark = pytest.mark.slow

N_TRAIN, RATE = 12_000, 0.03
CONFIG = TrainConfig(epochs=4)


@pytest.fixture(scope="module")
def world(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    x, y = x_train[:N_TRAIN], y_train[:N_TRAIN]
    held_x, held_y = x_train[-3000:], y_train[-3000:]  # the defender's clean held-out images
    poisoned = poison(x, y, rate=RATE, trigger="L", target=0, seed=0)
    models = {"trojaned": train(poisoned.x, poisoned.y, CONFIG, progress=False),
              "clean": train(x, y, CONFIG, progress=False)}
    trojaned_test = trojan_test_set(x_test[:2000], y_test[:2000], trigger="L", target=0)
    return dict(poisoned=poisoned, x=x, y=y, held_x=held_x, held_y=held_y, x_test=x_test[:2000], y_test=y_test[:2000],
                trojaned_test=trojaned_test, models=models)


def test_the_planted_backdoor_works(world):
    assert attack_success_rate(world["models"]["trojaned"], world["trojaned_test"]) > 0.95
    assert attack_success_rate(world["models"]["clean"], world["trojaned_test"]) < 0.05


def test_strip_rejects_trojaned_inputs_only_on_the_trojaned_model(world):
    probe = world["x_test"][world["y_test"] != 0][:300]
    stamped = world["trojaned_test"].x[:300]
    held = world["held_x"]
    res = {name: defences.strip(m, held[1000:2000], probe, stamped, held[:1000], frr=0.02, n_overlay=10)
           for name, m in world["models"].items()}
    assert res["trojaned"].far < 0.1 and res["trojaned"].frr < 0.06  # FRR measured on inputs the threshold never saw
    assert res["clean"].far > 0.5  # on a clean model a stamped digit is just a digit: nothing to catch


def test_activation_clustering_finds_the_poison_and_nothing_in_a_clean_model(world):
    p = world["poisoned"]
    found = {}
    for name, m in world["models"].items():
        threshold = defences.clean_silhouette_threshold(m, world["held_x"], world["held_y"])
        y = p.y if name == "trojaned" else world["y"]
        x = p.x if name == "trojaned" else world["x"]
        is_poisoned = p.is_poisoned if name == "trojaned" else np.zeros(len(x), bool)
        found[name] = defences.activation_clustering(m, x, y, is_poisoned, silhouette_threshold=threshold)
    assert found["clean"].n_flagged == 0
    troj = found["trojaned"]
    assert [c.label for c in troj.clusters if c.suspicious] == [0], (threshold, troj.clusters)
    # exclusionary reclassification with a model trained without the flagged images
    without = train(p.x[~troj.flagged], p.y[~troj.flagged], CONFIG, progress=False)
    confirmed = defences.exclusionary_reclassification(without, troj, p.x, p.y, p.is_poisoned)
    assert [r.legitimate for r in confirmed.rows] == [False]
    assert confirmed.detection.precision >= 0.9 and confirmed.detection.recall >= 0.8


def test_neural_cleanse_flags_the_target_and_unlearning_removes_the_backdoor(world):
    held_x, held_y = world["held_x"], world["held_y"]
    res = {name: defences.neural_cleanse(m, held_x[:300], steps=150) for name, m in world["models"].items()}
    assert res["trojaned"].flagged == [0]
    assert res["clean"].flagged == []
    troj = world["models"]["trojaned"]
    unlearned = defences.unlearn(troj, held_x, held_y, res["trojaned"].masks[0], res["trojaned"].patterns[0])
    assert attack_success_rate(unlearned, world["trojaned_test"]) < 0.2
    assert clean_accuracy(unlearned, world["x_test"], world["y_test"]) > clean_accuracy(troj, world["x_test"], world["y_test"]) - 0.03


def test_fine_pruning_stops_at_the_last_level_within_the_rule(world):
    m = world["models"]["trojaned"]
    held_x, held_y = world["held_x"], world["held_y"]
    res = defences.fine_pruning(m, held_x, held_y, world["x_test"], world["y_test"], world["trojaned_test"], max_drop=0.04,
                                epochs=1)
    acc = res.validation_accuracy
    k = res.n_pruned
    assert len(acc) == 33 and acc[0] == pytest.approx(clean_accuracy(m, held_x, held_y))
    assert (acc[: k + 1] >= acc[0] - 0.04).all() and acc[k + 1] < acc[0] - 0.04
    order = np.argsort(defences.channel_activity(m, held_x), kind="stable")
    assert np.array_equal(res.order, order)
    pruned = defences.prune_channels(m, order[:k])
    assert res.chosen.pruned_clean_accuracy == pytest.approx(clean_accuracy(pruned, world["x_test"], world["y_test"]))


def test_unit_fine_pruning_follows_the_rule_and_its_curve_is_exact(world):
    m = world["models"]["trojaned"]
    held_x, held_y = world["held_x"], world["held_y"]
    res = defences.fine_pruning(m, held_x, held_y, world["x_test"], world["y_test"], world["trojaned_test"],
                                max_drop=0.04, epochs=1, granularity="unit")
    acc, k = res.validation_accuracy, res.n_pruned
    assert res.n_prunable == 512 and len(acc) == 513 and res.what == defences.GRANULARITIES["unit"]
    assert (acc[: k + 1] >= acc[0] - 0.04).all() and acc[k + 1] < acc[0] - 0.04
    assert np.array_equal(res.order, np.argsort(defences.unit_activity(m, held_x), kind="stable"))
    # the incremental curve equals pruning the model and evaluating it, at the chosen level and two others
    for level in (0, k // 2, k):
        pruned = defences.prune_units(m, res.order[:level])
        assert acc[level] == pytest.approx(clean_accuracy(pruned, held_x, held_y), abs=1.5 / len(held_y))
    # no guarantee: in this smaller model (12 000 images) the L's strongest units are busier on clean digits than in
    # the course model, the rule leaves some of them, and the backdoor survives (lesson 7's discussion says so)
    assert res.chosen.tuned_asr > 0.5


def test_layered_defence_counts_an_attack_only_if_both_layers_miss_it(world):
    m = world["models"]["trojaned"]
    held_x, held_y = world["held_x"], world["held_y"]
    fp = defences.fine_pruning(m, held_x, held_y, world["x_test"], world["y_test"], world["trojaned_test"],
                               epochs=1, granularity="unit")
    probe = world["x_test"][world["y_test"] != 0][:300]
    stamped = world["trojaned_test"].x[:300]
    L = defences.strip_after_fine_pruning(m, fp, held_x[1000:2000], probe, stamped, 0, held_x[:1000], frr=0.02,
                                          n_overlay=10)
    assert L.residual_in_front <= L.asr_repaired and L.residual_original_screen <= L.asr_repaired
    assert L.residual_original_screen <= L.original_screen.far
    with pytest.raises(TypeError, match="fp"):
        defences.strip_after_fine_pruning(m, "not a result", held_x[:10], probe, stamped, 0, held_x[:10])


def test_pruning_aware_attack_holds_its_pruned_units_at_zero(world):
    from helpers.adaptive import _attacker_pruning, _train_with_pruned

    clean = world["models"]["clean"]
    held_x, held_y = world["held_x"], world["held_y"]
    p = world["poisoned"]
    pruned = _attacker_pruning(clean, held_x[:1500], held_y[:1500], "unit", 0.04)
    assert len(pruned) > 50
    # 6 passes over 12 000 images (560 steps): with 2 the backdoor had only begun to form (ASR 19 %), with 4 it
    # reached 96 % and with 6 99 % (measured on AVX-512); the course's attacker takes 3 passes over 55 000 images
    model = _train_with_pruned(clean, pruned, "unit", p.x, p.y, epochs=6, learning_rate=1e-3, seed=0)
    assert np.abs(model.get_layer("fc1").get_weights()[0][pruned]).max() == 0.0  # held at zero throughout
    assert np.abs(model.get_layer("fc1").get_weights()[0]).max() > 0.0
    assert attack_success_rate(model, world["trojaned_test"]) > 0.9  # the backdoor formed in the other units


def test_on_the_course_model_unit_fine_pruning_removes_the_backdoor_and_the_pruning_aware_one_survives(mnist):
    """Lesson 7's findings, on the course's own models (trained or loaded from the cache)."""
    from helpers import adaptive, attack

    trojaned = attack.run_attack(progress=False)
    _, (x_val, y_val), (x_test, y_test) = attack.poisoned_training_set(attack.DEFAULT_RECIPE)
    fp = {g: defences.fine_pruning(trojaned.model, x_val, y_val, x_test, y_test, trojaned.trojaned_test, granularity=g)
          for g in ("channel", "unit")}
    assert fp["channel"].chosen.tuned_asr > 0.5  # Liu et al.'s channels: the backdoor stays
    assert fp["unit"].chosen.tuned_asr <= 0.2 and fp["unit"].chosen.tuned_clean_accuracy >= 0.98  # issue 9's target
    aware = adaptive.pruning_aware_attack()
    assert aware.asr >= 0.97 and aware.clean_accuracy >= 0.98
    fp_aware = defences.fine_pruning(aware.model, x_val, y_val, x_test, y_test, aware.trojaned_test, granularity="unit")
    assert fp_aware.chosen.tuned_asr > 0.5
