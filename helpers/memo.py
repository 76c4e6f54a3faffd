"""Remember what a defence (or any slow, deterministic helper) computed, in the model cache.

A lesson that runs fine-pruning, STRIP or Neural Cleanse a second time should
not wait for them again: their results depend only on their arguments (a
model's weights, arrays of images, settings) and on the code that computes
them. :func:`remembered` wraps such a function so that its result is stored
in the same cache as the models (:mod:`helpers.cache`) and read back on the
next call with the same arguments::

    @remembered(depends_on=("helpers.training",))
    def fine_pruning(model, x_clean, y_clean, ...): ...

The key holds a fingerprint of every argument (:func:`fingerprint`: the
SHA-256 of each array and of each model's weights, the exact value of each
number), the source of the function's module, of this module and of what it
names in ``depends_on``, and the library versions. The result is stored as
plain arrays plus a JSON description of its structure (:func:`pack`), never
pickled, and rebuilt from them (:func:`unpack`): dataclasses of this
package, lists, tuples, dicts, numbers, strings, arrays, and Keras models
(rebuilt as a copy of the argument model, with the stored weights).

A result computed in under :data:`MIN_SECONDS` is not stored (a file would
cost more than it saves), and a call whose arguments cannot be fingerprinted
runs uncached, so the function's own checks still report bad input.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import numbers

import numpy as np

from .cache import cached_arrays
from .io import sha256_array

#: Results computed faster than this (seconds) are returned without being stored.
MIN_SECONDS = 0.5

_META = "__structure__"


class Unfingerprintable(TypeError):
    """An argument :func:`fingerprint` cannot identify (the call then runs uncached)."""


class Unstorable(TypeError):
    """A result :func:`pack` cannot store without pickle (it is then returned uncached)."""


def _is_model(value) -> bool:
    return hasattr(value, "get_weights") and hasattr(value, "layers") and hasattr(value, "set_weights")


def model_fingerprint(model) -> str:
    """SHA-256 of a Keras model's layer types and weights: two models with equal weights share it."""
    h = hashlib.sha256()
    for layer in model.layers:
        h.update(type(layer).__name__.encode())
        for w in layer.get_weights():
            w = np.ascontiguousarray(w)
            h.update(f"{w.dtype.str}{w.shape}".encode())
            h.update(w.tobytes())
    return h.hexdigest()


def fingerprint(value):
    """A JSON identity of ``value`` for a cache key; raises :class:`Unfingerprintable` for other types.

    Numbers keep their kind (bool, int, float) and exact value, so a numpy scalar and the same Python number
    share an identity, and NaN is an identity like any other (the function's own check rejects it).
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return {"bool": bool(value)}
    if isinstance(value, numbers.Integral):
        return {"int": int(value)}
    if isinstance(value, numbers.Real):
        return {"float": repr(float(value))}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise Unfingerprintable(f"object array of shape {value.shape}")
        return {"array": sha256_array(value), "dtype": value.dtype.str, "shape": list(value.shape)}
    if _is_model(value):
        return {"model": model_fingerprint(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": _class_path(type(value)),
                "fields": {f.name: fingerprint(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [fingerprint(v) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: fingerprint(v) for k, v in sorted(value.items())}}
    raise Unfingerprintable(f"{type(value).__module__}.{type(value).__qualname__}")


def _class_path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_ours(path: str) -> bool:
    module, _, name = path.partition(":")
    return (module == "helpers" or module.startswith("helpers.")) and name.isidentifier()


def _dataclass_named(path: str):
    """The dataclass ``module:QualName`` of this package (nothing else is ever rebuilt)."""
    module, _, name = path.partition(":")
    if not _is_ours(path):
        raise ValueError(f"a stored result names the class {path!r}, which is not a dataclass of helpers")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"a stored result names the class {path!r}, which is not a dataclass of helpers")
    return cls


def pack(value) -> dict[str, np.ndarray]:
    """``value`` as plain arrays: its arrays and model weights by position, and its structure as JSON."""
    arrays: dict[str, np.ndarray] = {}

    def put(a) -> str:
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(a)
        return key

    def node(v):
        if v is None or isinstance(v, (str, bool)):
            return {"value": v}
        if isinstance(v, np.generic) and not isinstance(v, np.ndarray):
            return {"scalar": v.dtype.str, "value": v.item() if not isinstance(v, np.floating) else repr(float(v))}
        if isinstance(v, int):
            return {"value": v}
        if isinstance(v, float):
            return {"float": repr(v)}
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise Unstorable(f"cannot store an object array (shape {v.shape}) without pickle")
            return {"array": put(v)}
        if _is_model(v):
            return {"model": [put(w) for w in v.get_weights()]}
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            path = _class_path(type(v))
            if not _is_ours(path):
                raise Unstorable(f"cannot store a {path} in the cache: only the dataclasses of helpers are rebuilt")
            return {"dataclass": path,
                    "fields": {f.name: node(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}}
        if isinstance(v, (list, tuple)):
            return {type(v).__name__: [node(x) for x in v]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"dict": {k: node(x) for k, x in v.items()}}
        raise Unstorable(f"cannot store a {type(v).__module__}.{type(v).__qualname__} in the cache")

    structure = json.dumps(node(value), allow_nan=False)
    arrays[_META] = np.frombuffer(structure.encode("utf-8"), dtype=np.uint8)
    return arrays


def unpack(arrays: dict[str, np.ndarray], template=None):
    """The value :func:`pack` stored; each model is rebuilt as a copy of ``template`` with the stored weights."""
    if _META not in arrays:
        raise ValueError("the stored arrays hold no structure: not written by helpers.memo.pack")
    structure = json.loads(arrays[_META].tobytes().decode("utf-8"))

    def build(n):
        if not isinstance(n, dict) or len(n) == 0:
            raise ValueError(f"malformed stored structure: {n!r}")
        if "scalar" in n:
            dtype = np.dtype(n["scalar"])
            return dtype.type(float(n["value"]) if dtype.kind == "f" else n["value"])
        if "value" in n:
            return n["value"]
        if "float" in n:
            return float(n["float"])
        if "array" in n:
            return arrays[n["array"]]
        if "model" in n:
            if template is None:
                raise ValueError("a stored result holds a model but no template model was given to rebuild it")
            return _rebuilt(template, [arrays[k] for k in n["model"]])
        if "dataclass" in n:
            return _dataclass_named(n["dataclass"])(**{k: build(v) for k, v in n["fields"].items()})
        if "list" in n:
            return [build(x) for x in n["list"]]
        if "tuple" in n:
            return tuple(build(x) for x in n["tuple"])
        if "dict" in n:
            return {k: build(x) for k, x in n["dict"].items()}
        raise ValueError(f"malformed stored structure: {sorted(n)}")

    return build(structure)


def _rebuilt(template, weights):
    from ._tf import import_tensorflow

    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output
    model = keras.models.clone_model(template)
    model.set_weights(weights)
    return model


def remembered(func=None, *, depends_on=(), min_seconds: float | None = None):
    """Decorate a deterministic function so its results are cached by argument (see the module's docstring).

    ``depends_on`` names the code ``func`` runs outside its own module (modules, module names, functions);
    editing any of it, the function's module or this module gives new keys. Results computed in under
    ``min_seconds`` (default: :data:`MIN_SECONDS` at the time of the call) are not stored.
    """
    if func is None:
        return functools.partial(remembered, depends_on=depends_on, min_seconds=min_seconds)
    signature = inspect.signature(func)
    module = inspect.getmodule(func)
    sources = (module, __name__, *depends_on)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return func(*args, **kwargs)  # let Python report the bad call as it would
        bound.apply_defaults()
        try:
            payload = {"function": func.__qualname__,
                       "arguments": {k: fingerprint(v) for k, v in bound.arguments.items()}}
        except Unfingerprintable:
            return func(*args, **kwargs)  # an argument we cannot identify: run uncached, checks included
        computed = []

        def compute():
            computed.append(func(*args, **kwargs))
            return pack(computed[0])

        try:
            result = cached_arrays(f"memo-{func.__name__}"[:64], payload, compute, depends_on=sources,
                                   min_seconds=MIN_SECONDS if min_seconds is None else min_seconds)
        except Unstorable:
            return computed[0]  # computed, but not storable without pickle: returned as it is
        if computed:
            return computed[0]  # computed just now: the object itself
        template = next((v for v in _walk(bound.arguments.values()) if _is_model(v)), None)
        return unpack(result.arrays, template)

    wrapper.__wrapped__ = func
    return wrapper


def _walk(values):
    """Every value in ``values``, descending into lists, tuples, dicts and dataclasses (to find a model)."""
    for v in values:
        yield v
        if isinstance(v, (list, tuple)):
            yield from _walk(v)
        elif isinstance(v, dict):
            yield from _walk(v.values())
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            yield from _walk(getattr(v, f.name) for f in dataclasses.fields(v))


__all__ = ["MIN_SECONDS", "Unfingerprintable", "Unstorable", "fingerprint", "model_fingerprint", "pack", "remembered", "unpack"]
