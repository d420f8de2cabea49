"""What the sample generators share: motion, a toy table scene, MP4 and image encoding.

Every generator draws its cameras from the robot state (same state, same pixels, so a still
stretch of motion gives still video) and writes them as its release did. The pieces here are
the one copy of each. Sources drew their scenes with slightly different pixel arithmetic
before the pieces were shared; where a difference changes the bytes of a source's samples, it
is a keyword here (named after what it does), so every sample set stays byte-identical.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

# --------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------


def min_jerk(a: np.ndarray, b: np.ndarray, steps: int, *, factored: bool = False) -> np.ndarray:
    """``steps`` samples from ``a`` (excluded) to ``b`` (included) on a minimum-jerk profile.

    ``factored`` evaluates the profile as τ³(10 − 15τ + 6τ²) rather than 10τ³ − 15τ⁴ + 6τ⁵: the
    same curve with different last bits (RoboChallenge's samples were written with it).
    """
    tau = np.arange(1, steps + 1) / steps
    s = tau**3 * (10 - 15 * tau + 6 * tau**2) if factored else 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return a + s[:, None] * (b - a)


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a sample robot: joint count, home pose, gripper dims (open, closed values)."""

    joints: int
    home: tuple[float, ...]
    reach: float
    gripper: tuple[float, float] | None = (1.0, 0.0)  # (open, closed); None: no gripper dimension


def arm_trajectory(arms: Sequence[ArmSpec], rng: np.random.Generator, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[T, D]`` (per arm: joints then gripper) and the phase index of every frame.

    Idle prefix at home, then reach, descend, close, a still hold (>= 10%), carry, open,
    retreat, on one knot schedule for all arms so still stretches are still everywhere.
    Phase -1 is the idle prefix.
    """
    idle = int(round(num_frames * rng.uniform(0.10, 0.20)))
    phases = rng.dirichlet([3.0, 2.0, 1.2, 1.2, 3.0, 1.2, 2.0])
    phases[3] = max(phases[3], 0.10)
    phases /= phases.sum()
    steps = np.maximum(1, np.round(phases * (num_frames - 1 - idle)).astype(int))
    steps[-1] = max(1, num_frames - 1 - idle - int(steps[:-1].sum()))
    phase_of = np.concatenate([np.full(idle + 1, -1)] + [np.full(int(n), k) for k, n in enumerate(steps)])
    columns = []
    for arm in arms:
        home = np.asarray(arm.home, dtype=np.float64)
        way = [home + rng.uniform(-arm.reach, arm.reach, len(home)) for _ in range(4)]
        opened, closed = arm.gripper if arm.gripper else (0.0, 0.0)
        knots = [(way[0], opened), (way[1], opened), (way[1], closed), (way[1], closed),
                 (way[2], closed), (way[2], opened), (way[3], opened)]
        start = np.append(home, opened)
        rows = [np.repeat(start[None], idle + 1, axis=0)]
        for (pose, grip), n in zip(knots, steps):
            rows.append(min_jerk(rows[-1][-1], np.append(pose, grip), int(n)))
        traj = np.concatenate(rows)[:num_frames]
        columns.append(traj if arm.gripper else traj[:, :-1])
    return np.concatenate(columns, axis=1), phase_of[:num_frames]


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backdrop:
    """A wall above a table with plank seams, the background of every toy scene (one per source).

    ``tint`` (a number derived from the camera, e.g. the sum of its name's bytes) shifts the
    wall's red and blue and the table's green by ``(tint % tint_levels) * tint_step``, so the
    cameras of one episode look different.
    """

    wall: tuple[float, float, float]
    table: tuple[float, float, float]
    #: fraction of the height where the table starts
    horizon: float
    #: how much the table brightens per image height below the horizon
    slope: float
    #: the table's front edge: its colour, and where it ends (a fraction of the height; None: a
    #: band of ``max(1, height // 40)`` rows)
    edge: tuple[float, float, float]
    edge_end: float | None
    #: plank seams from ``seam_top`` down: every ``max(seam_spacing[0], width // seam_spacing[1])``
    #: columns, darkened by ``seam_shade``
    seam_top: float
    seam_spacing: tuple[int, int]
    seam_shade: float
    tint_levels: int
    tint_step: float

    def render(self, height: int, width: int, tint: int) -> np.ndarray:
        """The background, float32 ``[height, width, 3]`` (not clipped: draw on it, then clip)."""
        t = (tint % self.tint_levels) * self.tint_step
        rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        wall = np.array([self.wall[0] + t, self.wall[1], self.wall[2] - t], np.float32)
        table = np.array([self.table[0], self.table[1] + t, self.table[2]], np.float32)
        img = np.where(rows < self.horizon, wall, table + (rows - self.horizon) * self.slope)
        img = img * np.ones((1, width, 1), np.float32)
        top = int(height * self.horizon)
        bottom = int(height * self.edge_end) if self.edge_end is not None else top + max(1, height // 40)
        img[top:bottom] = self.edge
        every = max(self.seam_spacing[0], width // self.seam_spacing[1])
        img[int(height * self.seam_top):, ::every] *= self.seam_shade
        return img


def camera_tint(camera: str) -> int:
    """A camera's ``tint`` for :meth:`Backdrop.render`: the sum of its name's bytes."""
    return sum(camera.encode())


def disc(img: np.ndarray, cx: float, cy: float, r: float, colour: Sequence[float], *,
         precision: type = np.float32, centred: bool = False, stepwise: bool = False) -> None:
    """Blend an anti-aliased disc into ``img`` (float32 or uint8 RGB), touching only its bounding box.

    A pixel's coverage is ``clip(r - distance + 0.5, 0, 1)``, the distance measured from the
    pixel's index (``centred``: from its centre, index + 0.5) on a pixel grid of dtype
    ``precision`` (numpy widens the arithmetic to float64 when a coordinate is a float64 scalar).
    See :func:`_blend` for ``stepwise``.
    """
    found = _window(img, cx - r, cy - r, cx + r, cy + r, precision)
    if found is None:
        return
    region, xx, yy = found
    if centred:
        xx += 0.5
        yy += 0.5
    _blend(img, region, np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0.0, 1.0), colour, stepwise)


def segment(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, r: float, colour: Sequence[float], *,
            stepwise: bool = False) -> None:
    """Blend an anti-aliased stroke of radius ``r`` from ``(x0, y0)`` to ``(x1, y1)`` into ``img``."""
    found = _window(img, min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r, np.float32)
    if found is None:
        return
    region, xx, yy = found
    dx, dy = x1 - x0, y1 - y0
    s = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    dist = np.hypot(xx - (x0 + s * dx), yy - (y0 + s * dy))
    _blend(img, region, np.clip(r - dist + 0.5, 0.0, 1.0), colour, stepwise)


def box(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: Sequence[float], *,
        snap: Callable[[float], int] = math.ceil) -> None:
    """Fill the pixels from ``snap(x0)`` up to (excluding) ``snap(x1)``, and the same for rows.

    The default takes the pixels whose index lies in ``[x0, x1)``; ``snap=int`` truncates the
    bounds instead (how some sources drew their finger bars).
    """
    h, w = img.shape[:2]
    c0, c1 = max(0, snap(x0)), min(w, snap(x1))
    r0, r1 = max(0, snap(y0)), min(h, snap(y1))
    if c0 < c1 and r0 < r1:
        img[r0:r1, c0:c1] = colour


def _window(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, precision: type):
    """``img``'s pixel grid over a shape's extent ``[x0, x1] x [y0, y1]`` (plus the anti-aliasing
    fringe), clipped to the image: ``(region, xx, yy)``, or None when it is off the image."""
    h, w = img.shape[:2]
    c0, c1 = max(0, int(x0 - 2)), min(w, int(x1 + 3))
    r0, r1 = max(0, int(y0 - 2)), min(h, int(y1 + 3))
    if c0 >= c1 or r0 >= r1:
        return None
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(precision)
    return (slice(r0, r1), slice(c0, c1)), xx, yy


def _blend(img: np.ndarray, region, alpha: np.ndarray, colour: Sequence[float], stepwise: bool) -> None:
    """``img[region] = img * (1 - alpha) + alpha * colour``.

    A uint8 image is blended in float and rounded to the nearest value. A float image is
    blended in one expression, or, ``stepwise``, in place: scaled, rounded to the image's
    precision, then the colour added (the two round differently when ``alpha`` is float64).
    """
    alpha = alpha[..., None]
    colour = np.asarray(colour, np.float32)
    if img.dtype == np.uint8:
        img[region] = np.rint(img[region].astype(np.float32) * (1.0 - alpha) + alpha * colour).astype(np.uint8)
    elif stepwise:
        patch = img[region]
        patch *= 1.0 - alpha
        patch += alpha * colour
    else:
        img[region] = img[region] * (1.0 - alpha) + alpha * colour


#: the backdrop of :class:`SceneRenderer` (and of the in-house samples)
TABLETOP = Backdrop(wall=(170, 175, 185), table=(120, 95, 70), horizon=0.35, slope=40.0, edge=(90, 80, 70),
                    edge_end=0.37, seam_top=0.4, seam_spacing=(8, 8), seam_shade=0.9, tint_levels=7, tint_step=6.0)


class SceneRenderer:
    """Frames of a toy table scene driven by the state vector of :class:`ArmSpec` arms.

    ``view``: ``overview`` (one disc per arm, position from the arm's first two joints,
    size from its gripper) or ``wrist:<arm>`` (the target moving against that arm's
    joints, finger bars whose gap follows its gripper). Drawing touches only each shape's
    bounding box, so large frames stay cheap.
    """

    def __init__(self, arms: Sequence[ArmSpec], view: str, height: int, width: int, tint: int = 0):
        self.arms, self.view, self.h, self.w = list(arms), view, height, width
        self.background = TABLETOP.render(height, width, tint)
        offsets = [0]
        for arm in self.arms:
            offsets.append(offsets[-1] + arm.joints + (1 if arm.gripper else 0))
        self.offsets = offsets

    def __call__(self, q: np.ndarray) -> np.ndarray:
        img = self.background.copy()
        h, w = self.h, self.w
        for a, arm in enumerate(self.arms):
            lo = self.offsets[a]
            j = np.asarray(q[lo: lo + arm.joints], dtype=np.float64) - np.asarray(arm.home)
            if arm.gripper:
                opened, closed = arm.gripper
                grip = float((q[lo + arm.joints] - closed) / (opened - closed)) if opened != closed else 1.0
            else:
                grip = 0.5 + 0.5 * math.tanh(float(j[-1]))
            if self.view == "overview":
                cx = w * (0.5 + (a - (len(self.arms) - 1) / 2) * 0.4) + j[0] * w * 0.5
                cy = h * 0.6 + j[1 % len(j)] * h * 0.5
                colour = (220, 60, 40) if a % 2 == 0 else (40, 90, 220)
                disc(img, cx, cy, h * (0.08 + 0.05 * grip), colour)
            elif self.view == f"wrist:{a}":
                cx = w * 0.5 - j[min(3, len(j) - 1)] * w * 0.8 - j[0] * w * 0.4
                cy = h * 0.45 - j[1 % len(j)] * h * 0.6 - j[2 % len(j)] * h * 0.3
                disc(img, cx, cy, h * 0.2, (230, 200, 40))
                gap = w * (0.08 + 0.22 * grip)
                for x0 in (w / 2 - gap - w * 0.06, w / 2 + gap):
                    box(img, x0, h * 0.8, x0 + w * 0.06, h, (70, 70, 70), snap=int)
        return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------


class Mp4Writer:
    """Appends RGB frames to one MP4 with PyAV, frame ``i`` presented at ``i / fps``.

    Every sample video is written through it; what differs between sources, their encoder
    settings (codec and its ``options``, pixel format, muxer ``container_options``), stays each
    source's own data. ``target`` is a path or a binary file object. A ``yuv420p`` frame of odd
    size is padded to even (4:2:0 needs it) by repeating its last row/column. ``threads`` and
    ``bitexact`` set the codec context's thread count and bit-exact flag (encoders that take no
    such option).
    """

    def __init__(self, target: str | os.PathLike | BinaryIO, codec: str, fps: float, height: int, width: int, *,
                 options: dict[str, str] | None = None, pix_fmt: str = "yuv420p",
                 container_options: dict[str, str] | None = None, threads: int | None = None,
                 bitexact: bool = False):
        if isinstance(target, (str, os.PathLike)):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            target = os.fspath(target)
        if codec.startswith("libsvtav1"):
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr at info level
        if pix_fmt == "yuv420p":
            height, width = height + height % 2, width + width % 2
        self.height, self.width = height, width
        self.container = av.open(target, mode="w", format="mp4", options=dict(container_options or {}))
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001),
                                                options=dict(options or {}))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt
        if threads is not None:
            self.stream.codec_context.thread_count = threads
        if bitexact:
            self.stream.codec_context.flags |= av.codec.context.Flags.bitexact
        self.count = 0  # frame slots used; pts are in the codec time base 1/fps

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, dtype=np.uint8)
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            frame = np.pad(frame, ((0, self.height - frame.shape[0]), (0, self.width - frame.shape[1]), (0, 0)),
                           mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.count
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_mp4(target: str | os.PathLike | BinaryIO, frames: Iterable[np.ndarray], codec: str, fps: float,
              height: int, width: int, **settings: Any) -> None:
    """Every frame of ``frames`` into one MP4 (:class:`Mp4Writer` takes ``settings``)."""
    with Mp4Writer(target, codec, fps, height, width, **settings) as writer:
        for frame in frames:
            writer.write(frame)


def encode_jpeg(frame: np.ndarray, quality: int = 85, *, optimize: bool = False) -> bytes:
    """JPEG bytes of an HxWx3 uint8 frame (Pillow; ``optimize`` computes optimal Huffman tables)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality, optimize=optimize)
    return buf.getvalue()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an image (Pillow, zlib's default level): RGB frames and uint16 depth maps."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()
