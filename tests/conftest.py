"""Shared fixtures: real MNIST (verified) and small synthetic data sets."""

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
