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

from ._checks import check_images, check_position, check_rate

IMAGE_SHAPE = (28, 28)


def check_alpha(alpha) -> float:
    """Validate a blending factor in (0, 1]."""
    alpha = check_rate(alpha, "alpha")
    if alpha == 0.0:
        raise ValueError("alpha must be in (0, 1]; alpha = 0 would stamp nothing")
    return alpha


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
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or mask.size == 0:
            raise ValueError(f"trigger mask must be a non-empty 2-D array, got shape {mask.shape}")
        if mask.dtype != bool:
            if not np.isin(mask, (0, 1)).all():
                raise ValueError("trigger mask must hold only 0/1 or True/False values")
            mask = mask.astype(bool)
        if not mask.any():
            raise ValueError("trigger mask must set at least one pixel")
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
        return image_shape[0] - self.shape[0], image_shape[1] - self.shape[1]

    def canvas(self, position=None, image_shape: tuple[int, int] = IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
        """Full-image ``(mask, pattern)`` with the trigger placed at ``position``."""
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
    mask = np.asarray(mask)
    if pattern is None:
        if not 0 <= int(value) <= 255:
            raise ValueError(f"value must be in 0..255, got {value}")
        pattern = np.where(mask.astype(bool), np.uint8(value), np.uint8(0)).astype(np.uint8)
    return Trigger(name, mask, np.asarray(pattern), default_position)


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
    pattern = np.random.default_rng(seed).integers(0, 256, size=IMAGE_SHAPE, dtype=np.uint8)
    return Trigger("blend", np.ones(IMAGE_SHAPE, bool), pattern, (0, 0), f"random noise blended at alpha={alpha}", alpha)


TRIGGERS = {"L": l_trigger, "pixel": pixel_trigger, "pattern": pattern_trigger, "blend": blend_trigger}


def get_trigger(name_or_trigger) -> Trigger:
    """Return a :class:`Trigger` given one, or the name of a built-in one."""
    if isinstance(name_or_trigger, Trigger):
        return name_or_trigger
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
