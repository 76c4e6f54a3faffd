"""Backdoor triggers and how to stamp them onto images.

A trigger is a small ``mask`` (which pixels it sets) and a ``pattern`` (the
0..255 value each of those pixels gets), placed on the image with its top-left
pixel at ``position = (row, col)``. Stamping replaces the masked pixels::

    out[r, c] = (1 - alpha) * x[r, c] + alpha * pattern[r - row, c - col]   where mask is set

``alpha = 1`` pastes the trigger (BadNets); ``alpha < 1`` blends it into the
image (Chen et al. 2017). Pixels outside the mask are never touched.

The course's trigger is the **L**: four pixels down and three across, white
(255), with its top-left pixel at row 1, column 24 of the 28x28 image, i.e. in
the upper-right corner, one pixel in from the top and right edges::

    col: 24 25 26
    row 1:  #  .  .
    row 2:  #  .  .
    row 3:  #  .  .
    row 4:  #  #  #

That corner is empty in almost every MNIST digit (digits sit in the central
20x20 box), so the trigger never hides a stroke and a model can learn it from a
few hundred examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import IMAGE_SHAPE, check_image_shape, check_images, check_int, check_number, check_position, check_str


def check_alpha(alpha, name: str = "alpha") -> float:
    """Validate a blending factor in (0, 1] (alpha = 0 would stamp nothing); return it as a float."""
    return check_number(alpha, name, 0.0, 1.0, lo_open=True)


def check_mask(mask, name: str = "mask") -> np.ndarray:
    """Validate a trigger mask: a non-empty 2-D array of 0/1 (or bool) that sets at least one pixel and fits
    on a 28x28 image; return it as a bool array."""
    if isinstance(mask, (str, bytes)):
        raise TypeError(f"trigger {name} must be a 2-D array of 0/1 values, got {mask!r}")
    mask = np.asarray(mask)
    if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise TypeError(f"trigger {name} must hold 0/1 or True/False values, got dtype {mask.dtype}")
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"trigger {name} must be a non-empty 2-D array, got shape {mask.shape}")
    if mask.shape[0] > IMAGE_SHAPE[0] or mask.shape[1] > IMAGE_SHAPE[1]:
        raise ValueError(f"trigger {name} of shape {mask.shape} does not fit on a {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} image")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"trigger {name} must hold only 0/1 or True/False values")
        mask = mask.astype(bool)
    if not mask.any():
        raise ValueError(f"trigger {name} must set at least one pixel, got all zeros of shape {mask.shape}")
    return mask


@dataclass(frozen=True, eq=False)
class Trigger:
    """A trigger: which pixels it sets (``mask``), to what (``pattern``), where, and how opaque (``alpha``)."""

    name: str
    mask: np.ndarray
    pattern: np.ndarray
    default_position: tuple[int, int] = (0, 0)
    description: str = field(default="", compare=False)
    alpha: float = 1.0  #: 1 pastes the pattern (BadNets); < 1 blends it in (Chen et al. 2017)

    def __post_init__(self):
        check_str(self.name, "name", allow_empty=False)
        check_str(self.description, "description")
        mask = check_mask(self.mask)
        if isinstance(self.pattern, (str, bytes)):
            raise TypeError(f"trigger pattern must be a uint8 array (0..255), got {self.pattern!r}")
        pattern = np.asarray(self.pattern)
        if pattern.shape != mask.shape:
            raise ValueError(f"trigger pattern shape {pattern.shape} must equal mask shape {mask.shape}")
        if pattern.dtype != np.uint8:
            raise TypeError(f"trigger pattern must be uint8 (0..255), got dtype {pattern.dtype}")
        mask, pattern = mask.copy(), pattern.copy()
        mask.setflags(write=False)
        pattern.setflags(write=False)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "pattern", pattern)
        check_position(self.default_position, mask.shape, IMAGE_SHAPE, name="default_position")
        object.__setattr__(self, "default_position", tuple(int(v) for v in self.default_position))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the trigger's bounding box."""
        return self.mask.shape

    @property
    def n_pixels(self) -> int:
        """How many pixels the trigger sets."""
        return int(self.mask.sum())

    def max_position(self, image_shape: tuple[int, int] = IMAGE_SHAPE) -> tuple[int, int]:
        """Largest valid (row, col) of the top-left pixel on an image of ``image_shape``."""
        image_shape = check_image_shape(image_shape)
        if image_shape[0] < self.shape[0] or image_shape[1] < self.shape[1]:
            raise ValueError(f"image_shape {image_shape} is smaller than the {self.shape[0]}x{self.shape[1]} trigger")
        return image_shape[0] - self.shape[0], image_shape[1] - self.shape[1]

    def canvas(self, position=None, image_shape: tuple[int, int] = IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
        """Full-image ``(mask, pattern)`` with the trigger placed at ``position``."""
        image_shape = check_image_shape(image_shape)
        row, col = check_position(self.default_position if position is None else position, self.shape, image_shape)
        h, w = self.shape
        mask = np.zeros(image_shape, bool)
        pattern = np.zeros(image_shape, np.uint8)
        mask[row : row + h, col : col + w] = self.mask
        pattern[row : row + h, col : col + w] = np.where(self.mask, self.pattern, 0)
        return mask, pattern

    def fingerprint(self) -> dict:
        """A JSON-able description that identifies the trigger exactly (for cache keys)."""
        return {
            "name": self.name,
            "mask": self.mask.astype(int).tolist(),
            "pattern": self.pattern.astype(int).tolist(),
            "default_position": list(self.default_position),
            "alpha": self.alpha,
        }

    def __repr__(self) -> str:
        blend = "" if self.alpha == 1.0 else f", alpha={self.alpha}"
        return f"Trigger({self.name!r}, shape={self.shape}, pixels={self.n_pixels}, default_position={self.default_position}{blend})"


def trigger_from_mask(mask, *, name: str = "custom", pattern=None, value: int = 255, default_position=(0, 0)) -> Trigger:
    """Build a trigger from any 0/1 mask; ``pattern`` defaults to ``value`` on every set pixel."""
    mask = check_mask(mask)
    if pattern is None:
        value = check_int(value, "value", 0, 255)
        pattern = np.where(mask, np.uint8(value), np.uint8(0)).astype(np.uint8)
    return Trigger(name, mask, pattern, default_position)


def l_trigger() -> Trigger:
    """The course's white L, 4x3 pixels, upper-right corner at (row 1, col 24)."""
    mask = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]], bool)
    return Trigger("L", mask, np.where(mask, 255, 0).astype(np.uint8), (1, 24), "white L, upper-right corner")


def pixel_trigger() -> Trigger:
    """BadNets' single bright pixel, near the bottom-right corner (row 26, col 26)."""
    return Trigger("pixel", np.ones((1, 1), bool), np.full((1, 1), 255, np.uint8), (26, 26), "one white pixel")


def pattern_trigger() -> Trigger:
    """BadNets' pattern trigger: a 3x3 pattern of bright pixels near the bottom-right corner.

    The pixels form an X (corners and centre), as in the pattern backdoor of
    Gu et al.'s MNIST figure.
    """
    mask = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], bool)
    return Trigger("pattern", mask, np.where(mask, 255, 0).astype(np.uint8), (24, 24), "3x3 X of white pixels")


def blend_trigger(seed: int = 0, alpha: float = 0.2) -> Trigger:
    """Chen et al.'s (2017) blended trigger: a fixed random-noise image over the whole digit, at opacity ``alpha``.

    Every pixel changes a little instead of a few pixels changing a lot, so the
    trigger is hard to see, but the model can still learn the noise pattern.
    """
    seed, alpha = check_int(seed, "seed", 0), check_alpha(alpha)
    pattern = np.random.default_rng(seed).integers(0, 256, size=IMAGE_SHAPE, dtype=np.uint8)
    return Trigger("blend", np.ones(IMAGE_SHAPE, bool), pattern, (0, 0), f"random noise blended at alpha={alpha}", alpha)


TRIGGERS = {"L": l_trigger, "pixel": pixel_trigger, "pattern": pattern_trigger, "blend": blend_trigger}


def get_trigger(name_or_trigger) -> Trigger:
    """Return a :class:`Trigger` given one, or the name of a built-in one."""
    if isinstance(name_or_trigger, Trigger):
        return name_or_trigger
    if not isinstance(name_or_trigger, str):
        raise TypeError(f"trigger must be a Trigger or one of {sorted(TRIGGERS)}, got {name_or_trigger!r}")
    if name_or_trigger in TRIGGERS:
        return TRIGGERS[name_or_trigger]()
    raise ValueError(f"trigger must be a Trigger or one of {sorted(TRIGGERS)}, got {name_or_trigger!r}")


def stamp(x: np.ndarray, trigger, position=None, *, alpha: float | None = None) -> np.ndarray:
    """Return a copy of ``x`` with ``trigger`` stamped on every image.

    ``x`` is one image ``(H, W)`` or a batch ``(N, H, W)``, uint8 in 0..255 or
    float in [0, 1]; the result has the same shape, dtype and range, and ``x``
    itself is never modified. ``position`` is the (row, col) of the trigger's
    top-left pixel (default: the trigger's own). ``alpha`` in (0, 1] blends
    (default: the trigger's own, 1 for the BadNets triggers).
    The work is one vectorised operation on the trigger's window of the batch.
    """
    trigger = get_trigger(trigger)
    x = check_images(x, "x", allow_float=True, allow_single=True)
    alpha = trigger.alpha if alpha is None else check_alpha(alpha)
    position = trigger.default_position if position is None else position
    row, col = check_position(position, trigger.shape, x.shape[-2:])
    h, w = trigger.shape
    out = x.copy()
    window = out[..., row : row + h, col : col + w]
    target = trigger.pattern.astype(np.float64)
    if np.issubdtype(x.dtype, np.floating):
        target = target / 255.0
    if alpha == 1.0:
        blended = np.broadcast_to(target, window.shape)
    else:
        blended = (1.0 - alpha) * window + alpha * target
    if x.dtype == np.uint8:
        blended = np.clip(np.rint(blended), 0, 255)
    window[...] = np.where(trigger.mask, blended, window).astype(x.dtype)
    return out
