"""Shared fixtures: real MNIST (verified), small synthetic data sets, and the two trained models of the slow tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("course", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("course")


@pytest.fixture(scope="session")
def mnist():
    """The real, hash-verified MNIST (CI points MNIST_NPZ at ../shared/data/mnist.npz)."""
    from helpers.data import load_mnist

    return load_mnist()


def synthetic(n: int = 200, seed: int = 0):
    """``n`` random uint8 28x28 images with balanced labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    return x, y


@pytest.fixture
def small():
    return synthetic()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One model cache for the whole session, cold at its start."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def trojaned_result(mnist, model_cache):
    """The default recipe's trojaned model (trained once per session, from a cold cache)."""
    from helpers import attack

    return attack.run_attack(attack.DEFAULT_RECIPE, data=mnist, cache_dir=model_cache, progress=False)


@pytest.fixture(scope="session")
def clean_result(mnist, model_cache):
    """The same training without poison: the clean baseline (trained once per session)."""
    from helpers import attack

    return attack.clean_baseline(data=mnist, cache_dir=model_cache, progress=False)
