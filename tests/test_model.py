"""The BadNets CNN matches the paper's table."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.model import ARCHITECTURE, architecture_table, build_badnets, to_model_input


@pytest.fixture(scope="module")
def model():
    return build_badnets()


def test_layers_and_output_shapes_follow_the_paper(model):
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {
        "conv1": (24, 24, 16),
        "pool1": (12, 12, 16),
        "conv2": (8, 8, 32),
        "pool2": (4, 4, 32),
        "flatten": (512,),
        "fc1": (512,),
        "fc2": (10,),
    }
    assert [type(layer).__name__ for layer in model.layers] == [cls for _, cls, _ in ARCHITECTURE]


def test_parameter_count(model):
    # conv1 16*(5*5*1+1), conv2 32*(5*5*16+1), fc1 512*(512+1), fc2 10*(512+1)
    assert model.count_params() == 416 + 12832 + 262656 + 5130


def test_activations(model):
    acts = {layer.name: layer.activation.__name__ for layer in model.layers if hasattr(layer, "activation")}
    assert acts == {"conv1": "relu", "conv2": "relu", "fc1": "relu", "fc2": "softmax"}
    assert [layer.pool_size for layer in model.layers if "pool" in layer.name] == [(2, 2), (2, 2)]


def test_outputs_are_probabilities(model):
    p = np.asarray(model(to_model_input(np.zeros((3, 28, 28), np.uint8))))
    assert p.shape == (3, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_model_input_scaling():
    x = np.array([[[0, 255] + [0] * 26] * 28], np.uint8)
    out = to_model_input(x)
    assert out.dtype == np.float32 and out.shape == (1, 28, 28, 1) and out[0, 0, 1, 0] == 1.0
    assert to_model_input(x[0]).shape == (1, 28, 28, 1)


def test_architecture_table_lists_every_layer():
    assert [row["layer"] for row in architecture_table()] == ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2"]
