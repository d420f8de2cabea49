"""Camera frames for the model: decode at (or near) the input size, fit, and A1's augmentation.

Decoding is the loader's main cost, so frames are decoded with libjpeg-turbo through
``simplejpeg`` straight into the batch's buffer (no intermediate image object, no copy).
When the model's input is smaller than the stored frame, libjpeg decodes directly at a
reduced scale in the DCT domain (the smallest scale M/8 still at least the target
size), then one resample gives the exact size. A frame whose aspect ratio differs from
the input's is letterboxed with black, the way the store itself fits source frames
(``image.resize: pad``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

from training.config import AugmentConfig

#: the erase sizes of A1's Table 8 are for frames of this width; they scale with the input
REFERENCE_WIDTH = 224


def decode_into(data: bytes, out: np.ndarray) -> np.ndarray:
    """Decode one stored JPEG into ``out`` (height, width, 3) uint8, fitted to exactly that size."""
    height, width = out.shape[:2]
    stored_h, stored_w, _, _ = simplejpeg.decode_jpeg_header(data)
    if (stored_h, stored_w) == (height, width):
        simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
        return out
    # DCT-domain downscale when the target is smaller; libjpeg never goes below the minimum asked
    scaled = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min(height, stored_h),
                                     min_width=min(width, stored_w))
    if scaled.shape[:2] == (height, width):
        out[:] = scaled
        return out
    out[:] = np.asarray(fit(Image.fromarray(scaled), (height, width)))
    return out


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to ``size`` = (height, width); letterbox when the aspect ratio differs by more than a pixel."""
    height, width = size
    if image.size == (width, height):
        return image
    if abs(image.width * height - image.height * width) <= max(image.width, image.height):
        return image.resize((width, height), Image.Resampling.BILINEAR)
    return ImageOps.pad(image, (width, height), method=Image.Resampling.BILINEAR, color=(0, 0, 0))


def decode_fitted(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Decode one stored JPEG to a new (height, width, 3) uint8 array."""
    return decode_into(data, np.empty((size[0], size[1], 3), dtype=np.uint8))


def sharpen(image: np.ndarray, factor: float) -> np.ndarray:
    """PIL's ``ImageEnhance.Sharpness(image).enhance(factor)``, in place, on an (H, W, 3) uint8 array.

    The same definition (blend the image away from its 3x3 SMOOTH-filtered copy, whose border
    pixels are the image's own, rounded to uint8) and the same output, tested equal to PIL's;
    about 1.6x faster than going through a PIL image (what A1 calls), which matters because
    sharpening is the costliest step of a sample after decoding.
    """
    x = image.astype(np.float32)
    h, w = image.shape[:2]
    smooth = x.copy()
    inner = x[1:-1, 1:-1] * 5.0
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                inner += x[dy: dy + h - 2, dx: dx + w - 2]
    inner *= np.float32(1.0 / 13.0)
    inner += np.float32(0.5)
    np.floor(inner, out=smooth[1:-1, 1:-1])
    x -= smooth
    x *= np.float32(factor)
    x += smooth
    np.clip(x, 0.0, 255.0, out=x)
    image[:] = x
    return image


@dataclass(frozen=True)
class AugmentPlan:
    """What to do to one sample's images: the effects in order, with the sharpening factor."""

    effects: tuple[str, ...]  # subset of ("erase", "sharpen"), in application order
    sharpness: float = 1.0

    def __bool__(self) -> bool:
        return bool(self.effects)


class Augmenter:
    """A1's random erasing and sharpening, drawn from a caller-provided generator (so reproducible)."""

    EFFECTS = ("erase", "sharpen")

    def __init__(self, config: AugmentConfig, image_size: tuple[int, int]):
        self.config = config
        self.height, self.width = image_size
        self.scale = self.width / REFERENCE_WIDTH

    def plan(self, rng: np.random.Generator) -> AugmentPlan:
        c = self.config
        if not c.enabled or rng.random() >= c.p:
            return AugmentPlan(())
        first = self.EFFECTS[int(rng.integers(2))]
        effects = (first,)
        if rng.random() < c.p_second:
            effects += (self.EFFECTS[1 - self.EFFECTS.index(first)],)
        factor = float(rng.uniform(*c.sharpness)) if "sharpen" in effects else 1.0
        return AugmentPlan(effects, factor)

    def apply(self, plan: AugmentPlan, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply a sample's plan to one camera image (H, W, 3) in place; squares are drawn per image."""
        for effect in plan.effects:
            if effect == "sharpen":
                sharpen(image, plan.sharpness)
            else:
                self._erase(image, rng)
        return image

    def _erase(self, image: np.ndarray, rng: np.random.Generator) -> None:
        c = self.config
        height, width = image.shape[:2]
        for _ in range(int(rng.integers(c.erase_count[0], c.erase_count[1] + 1))):
            side = max(1, round(float(rng.uniform(c.erase_size[0], c.erase_size[1])) * self.scale))
            side = min(side, width, height)
            x = int(rng.integers(0, width - side + 1))
            y = int(rng.integers(0, height - side + 1))
            image[y: y + side, x: x + side] = 0
