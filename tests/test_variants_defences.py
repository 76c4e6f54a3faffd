"""Attack variants and defences on small synthetic data and hand-made models."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import defences, variants
from helpers.attack import AttackRecipe
from helpers.model import build_badnets
from helpers.training import TrainConfig, fine_tune, make_deterministic
from helpers.triggers import stamp
from tests.conftest import synthetic


class Constant:
    """A 'model' returning fixed probabilities for every input."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, np.float32)

    def __call__(self, x, training=False):
        return np.repeat(self.probs[None], len(np.asarray(x)), axis=0)


def test_prediction_entropy():
    assert defences.prediction_entropy(np.eye(10)[[3]])[0] == pytest.approx(0, abs=1e-9)
    assert defences.prediction_entropy(np.full((1, 10), 0.1))[0] == pytest.approx(np.log(10))


def test_strip_threshold_and_rates():
    clean, trojan = np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.01, 0.02, 0.9])
    assert defences.strip_rates(clean, trojan, 0.55) == (0.25, pytest.approx(1 / 3))
    x, _ = synthetic(10)
    res = defences.strip(Constant(np.full(10, 0.1)), x, x, x, frr=0.1, n_overlay=3)
    assert res.clean_entropy == pytest.approx(np.full(10, np.log(10)), rel=1e-5)


def test_strip_superimposition_saturates():
    x = np.full((1, 28, 28), 200, np.uint8)
    seen = []

    class Spy(Constant):
        def __call__(self, xb, training=False):
            seen.append(np.asarray(xb))
            return super().__call__(xb)

    defences.strip_entropy(Spy(np.eye(10)[0]), x, x, n_overlay=2)
    assert seen[0].max() == 1.0  # 200 + 200 saturates at 255


def test_two_means_separates_two_blobs():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.1, (50, 3)), rng.normal(5, 0.1, (10, 3))])
    labels = defences.two_means(z)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[-1]


def test_detection_scoring_and_clustering_find_a_planted_cluster():
    rng = np.random.default_rng(0)
    n = 200
    y = np.zeros(n, np.uint8)
    acts = rng.normal(0, 1, (n, 16))
    poisoned = np.zeros(n, bool)
    poisoned[:30] = True
    acts[poisoned] += 8.0  # the poison sits apart
    x = np.zeros((n, 28, 28), np.uint8)
    ac = defences.activation_clustering(None, x, y, poisoned, acts=acts)
    assert ac.precision == 1.0 and ac.recall == 1.0 and ac.n_flagged == 30
    ss = defences.spectral_signatures(None, x, y, poisoned, eps=0.1, acts=acts)
    assert ss.n_flagged == 30 and ss.precision == 1.0


def test_anomaly_index_flags_the_low_outlier():
    idx = defences.anomaly_index([3.0, 10, 11, 12, 9, 10.5])
    assert idx[0] > 2 and (idx[1:] < 2).all()


def test_pruned_channels_output_zero_and_stay_pruned_when_fine_tuned():
    make_deterministic(0)
    model = build_badnets()
    x, y = synthetic(64)
    pruned = defences.prune_channels(model, [0, 5])
    from helpers.analysis import layer_outputs

    out = layer_outputs(pruned, "conv2", x)
    assert (out[..., [0, 5]] == 0).all() and (out[..., 1] != 0).any()
    tuned = fine_tune(pruned, x, y, epochs=1)
    kernel, bias = tuned.get_layer("conv2").get_weights()
    assert (kernel[..., [0, 5]] == 0).all() and (bias[[0, 5]] == 0).all()
    assert not np.array_equal(tuned.get_layer("conv2").get_weights()[0], pruned.get_layer("conv2").get_weights()[0])
    # the original model is untouched
    assert (np.asarray(model.get_layer("conv2").kernel)[..., 0] != 0).any()


def test_pgd_stays_in_the_ball_and_raises_the_loss():
    make_deterministic(0)
    model = build_badnets()
    x, y = synthetic(16)
    xf = x.astype(np.float32) / 255
    adv = variants.pgd_linf(model, xf, y, eps=0.1, step=0.05, steps=3)
    assert adv.shape == xf.shape and np.abs(adv - xf).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy()
    assert float(loss(y, model(adv[..., None]))) > float(loss(y, model(xf[..., None])))
    with pytest.raises(TypeError, match="float images"):
        variants.pgd_linf(model, x, y)


def test_reverse_engineer_trigger_returns_masks_in_range():
    make_deterministic(0)
    model = build_badnets()
    x, _ = synthetic(32)
    m, p, success = defences.reverse_engineer_trigger(model, x, 3, steps=5, batch_size=16)
    assert m.shape == p.shape == (28, 28) and 0 <= m.min() and m.max() <= 1 and 0 <= success <= 1


def test_poison_needed_reads_the_smallest_rate():
    rows = [variants.TriggerRow("L", r, int(r * 1000), asr, 0.99, asr) for r, asr in [(0.01, 0.9), (0.02, 0.995), (0.05, 0.999)]]
    rows.append(variants.TriggerRow("pixel", 0.05, 50, 0.5, 0.99, 0.5))
    need = variants.poison_needed(rows)
    assert need["L"].rate == 0.02 and need["pixel"] is None


def test_clean_label_keeps_every_label_and_poisons_only_the_target(tmp_path):
    x, y = synthetic(300)
    xt, yt = synthetic(40, seed=1)
    recipe = AttackRecipe(n_val=50, train=TrainConfig(epochs=0.2, batch_size=50))
    res = variants.clean_label_attack(n_poison=10, perturb=False, recipe=recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path)
    assert len(res.indices) == 10 and res.pgd_seconds == 0.0
    np.testing.assert_array_equal(res.x_poisoned, stamp(res.x_original, "L"))
    with pytest.raises(ValueError, match="n_poison must be in 1"):
        variants.clean_label_attack(n_poison=10_000, perturb=False, recipe=recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path)


def test_fine_tune_curve_starts_from_the_unchanged_model():
    make_deterministic(0)
    model = build_badnets()
    x, y = synthetic(64)
    from helpers.poisoning import trojan_test_set

    troj = trojan_test_set(x, y)
    before = model.get_weights()
    curve, tuned = variants.fine_tune_curve(model, x, y, x, y, troj, epochs=2)
    assert [e for e, _, _ in curve] == [0, 1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
