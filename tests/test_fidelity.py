"""The fidelity recipe (helpers.fidelity): validation, early stopping by the victim's clean validation data, the
best epoch's weights kept, the learning rate halved on a plateau, and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import fidelity
from helpers.metrics import clean_accuracy


@pytest.mark.parametrize("field, value, error", [
    ("max_epochs", 0, ValueError), ("max_epochs", True, TypeError), ("patience", 0, ValueError),
    ("lr_patience", 1.5, TypeError), ("learning_rate", float("nan"), ValueError), ("learning_rate", -1e-3, ValueError),
    ("batch_size", 0, ValueError), ("seed", -1, ValueError),
])
def test_config_rejects_bad_values_naming_the_field(field, value, error):
    with pytest.raises(error, match=field):
        fidelity.FidelityConfig(**{field: value})


def test_config_accepts_numpy_scalars_and_stores_plain_numbers():
    c = fidelity.FidelityConfig(max_epochs=np.int64(5), learning_rate=np.float32(0.002))
    assert type(c.max_epochs) is int and type(c.learning_rate) is float and c == fidelity.FidelityConfig(
        max_epochs=5, learning_rate=float(np.float32(0.002)))


def test_train_rejects_mismatched_validation_data(small):
    x, y = small
    with pytest.raises(ValueError, match="y_val"):
        fidelity.train_fidelity(x, y, x[:20], y[:19])
    with pytest.raises(TypeError, match="config"):
        fidelity.train_fidelity(x, y, x[:20], y[:20], config={"max_epochs": 3})


@pytest.fixture(scope="module")
def tiny(mnist):
    (x_train, y_train), _ = mnist
    return x_train[:3000], y_train[:3000], x_train[-1000:], y_train[-1000:]


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch_and_follows_its_rules(tiny, tmp_path):
    x, y, x_val, y_val = tiny
    config = fidelity.FidelityConfig(max_epochs=12, patience=2, lr_patience=1, learning_rate=3e-3)
    run = fidelity.train_fidelity(x, y, x_val, y_val, config, cache_dir=tmp_path)
    curve, rates = run.val_accuracy, run.learning_rates
    assert 1 <= run.epochs_run <= config.max_epochs and len(rates) == run.epochs_run
    assert run.best_epoch == int(np.argmax(curve)) + 1
    # the kept weights are the best epoch's: the model scores exactly that epoch's validation accuracy
    assert clean_accuracy(run.model, x_val, y_val) == pytest.approx(curve[run.best_epoch - 1])
    if run.epochs_run < config.max_epochs:  # stopped early: the last `patience` epochs brought nothing better
        assert run.epochs_run - run.best_epoch == config.patience
        assert (curve[run.best_epoch:] <= curve[run.best_epoch - 1]).all()
    # the rate starts at learning_rate, never rises, and only ever halves
    assert rates[0] == pytest.approx(config.learning_rate)
    assert all(b == pytest.approx(a) or b == pytest.approx(a / 2) for a, b in zip(rates, rates[1:]))
    assert curve.max() > 0.9  # it learned
    again = fidelity.train_fidelity(x, y, x_val, y_val, config, cache_dir=tmp_path)
    assert again.from_cache and again.key == run.key
    assert all(np.array_equal(a, b) for a, b in zip(again.model.get_weights(), run.model.get_weights()))
    assert np.array_equal(again.val_accuracy, curve) and again.best_epoch == run.best_epoch
    other = fidelity.train_fidelity(x, y, x_val[:500], y_val[:500], config, cache_dir=tmp_path)
    assert other.key != run.key  # the validation data is part of what the model depends on
