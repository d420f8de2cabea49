"""Frame resizing and per-frame JPEG encoding, configured from ``params.yaml`` (``image:``)."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageOps

RESIZE_MODES = ("pad", "stretch", "none")


@dataclass(frozen=True)
class ImageConfig:
    """How camera frames are stored.

    ``pad`` keeps the aspect ratio and letterboxes with black (what openpi's
    ``resize_with_pad`` does for VLA inputs); ``stretch`` ignores aspect ratio;
    ``none`` keeps the native resolution (all frames of a camera must then agree).
    """

    height: int = 224
    width: int = 224
    resize: str = "pad"
    quality: int = 90

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"image.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"image.quality must be in 1..100, got {self.quality}")
        if self.resize != "none" and (self.height <= 0 or self.width <= 0):
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    @classmethod
    def from_params(cls, params: dict | None) -> ImageConfig:
        params = dict(params or {})
        return cls(**{k: params[k] for k in ("height", "width", "resize", "quality") if k in params})

    def to_dict(self) -> dict:
        return asdict(self)

    def output_size(self, source_hw: tuple[int, int]) -> tuple[int, int]:
        return source_hw if self.resize == "none" else (self.height, self.width)


def resize_frame(frame: np.ndarray, config: ImageConfig) -> Image.Image:
    im = Image.fromarray(frame, mode="RGB") if frame.dtype == np.uint8 else Image.fromarray(frame.astype(np.uint8))
    if config.resize == "none" or (im.height, im.width) == (config.height, config.width):
        return im
    if config.resize == "stretch":
        return im.resize((config.width, config.height), Image.Resampling.BILINEAR)
    return ImageOps.pad(im, (config.width, config.height), method=Image.Resampling.BILINEAR, color=(0, 0, 0))


def encode_jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def image_change_per_step(frames_by_camera: list[list[bytes]]) -> np.ndarray:
    """Largest mean absolute grey-level change between consecutive frames over cameras, per step.

    JPEG frames are decoded at 1/8 scale in greyscale (libjpeg's DCT scaling: cheap),
    which keeps the signal about scene motion rather than sensor noise. It lives with the format
    because the store's index computes it once per episode (``index.py``); curation's image-motion
    rule reads it from there.
    """
    steps = None
    for frames in frames_by_camera:
        previous = None
        change = np.zeros(max(len(frames) - 1, 0))
        for i, data in enumerate(frames):
            with Image.open(io.BytesIO(data)) as im:
                im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
                grey = np.asarray(im.convert("L"), dtype=np.float32)
            if previous is not None and previous.shape == grey.shape:
                change[i - 1] = float(np.abs(grey - previous).mean())
            previous = grey
        steps = change if steps is None else np.maximum(steps, change)
    return steps if steps is not None else np.zeros(0)
