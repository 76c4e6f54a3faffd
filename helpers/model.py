"""The BadNets MNIST network (Gu et al. 2017, Table 1), in Keras 3.

=========  ==========================  ===========
layer      filter / units              output
=========  ==========================  ===========
conv1      16 @ 5x5, stride 1, ReLU    24x24x16
pool1      average, 2x2                12x12x16
conv2      32 @ 5x5, stride 1, ReLU    8x8x32
pool2      average, 2x2                4x4x32
fc1        512, ReLU                   512
fc2        10, softmax                 10
=========  ==========================  ===========

The model takes float32 images in [0, 1] of shape (28, 28, 1); use
:func:`to_model_input` to turn the uint8 MNIST arrays into that.
"""

from __future__ import annotations

import numpy as np

from ._checks import IMAGE_SHAPE, check_images, check_str
from ._tf import import_tensorflow

#: The layers, in order: (name, Keras layer class, keyword arguments).
ARCHITECTURE = (
    ("conv1", "Conv2D", {"filters": 16, "kernel_size": 5, "activation": "relu"}),
    ("pool1", "AveragePooling2D", {"pool_size": 2}),
    ("conv2", "Conv2D", {"filters": 32, "kernel_size": 5, "activation": "relu"}),
    ("pool2", "AveragePooling2D", {"pool_size": 2}),
    ("flatten", "Flatten", {}),
    ("fc1", "Dense", {"units": 512, "activation": "relu"}),
    ("fc2", "Dense", {"units": 10, "activation": "softmax"}),
)
INPUT_SHAPE = (28, 28, 1)


def build_badnets(name: str = "badnets"):
    """A fresh, untrained BadNets CNN (weights drawn from Keras' seeded initialisers)."""
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    check_str(name, "name", allow_empty=False)
    layers = [getattr(keras.layers, cls)(name=lname, **kwargs) for lname, cls, kwargs in ARCHITECTURE]
    return keras.Sequential([keras.Input(INPUT_SHAPE, name="image"), *layers], name=name)


def architecture_table() -> list[dict]:
    """The architecture as rows (layer, kind, settings) for display in the lessons."""
    return [{"layer": n, "kind": cls, "settings": ", ".join(f"{k}={v}" for k, v in kw.items())} for n, cls, kw in ARCHITECTURE]


def to_model_input(x: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) in 0..255, or floats in [0, 1] -> float32 (N, 28, 28, 1) in [0, 1]."""
    x = check_images(x, "x", allow_float=True, allow_single=True, shape=IMAGE_SHAPE)
    if x.ndim == 2:
        x = x[None]
    scaled = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32)
    return scaled[..., None]
