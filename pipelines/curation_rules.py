"""Curation rules: pure functions over an episode's low-dimensional streams.

Each rule answers one question with frame-exact output so it can be tested against
constructed episodes whose answer is known, and so every removed frame carries a
reason. The conversion pipeline composes them (``pipelines/curation.py``); nothing
here touches images, files or Beam.

Frame ranges are half-open ``[start, stop)`` in *source-frame indices* (the index of
the frame in the episode as the converter read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class CurationReason(StrEnum):
    """Why frames or episodes were removed by curation (stable codes, like ``Reason``)."""

    # whole-episode corruption
    TOO_SHORT = "too_short"
    TIMESTAMP_GAP = "timestamp_gap"
    DUPLICATED_FRAMES = "duplicated_frames"
    OUTLIER = "outlier"
    PHYSICAL_RANGE = "physical_range"
    DUPLICATE_EPISODE = "duplicate_episode"
    NO_MOTION = "no_motion"
    FAILED_ATTEMPT = "failed_attempt"
    # frame ranges
    IDLE_PREFIX = "idle_prefix"
    IDLE_SUFFIX = "idle_suffix"
    STATIC_RUN = "static_run"
    SHORT_SEGMENT = "short_segment"


@dataclass(frozen=True)
class MotionThresholds:
    """When a frame counts as "not moving", in the embodiment's own units.

    A step t -> t+1 is idle when every state dimension moves slower than
    ``state_velocity`` (units/s) and every action dimension changes by less than
    ``action_change`` (units per step). Dimensions listed in ``ignore`` (e.g. a
    gripper whose sensor jitters) are left out of both tests.
    """

    state_velocity: float = 0.01
    action_change: float = 1e-3
    ignore: tuple[str, ...] = ()
    #: optional third signal: a step whose largest camera change (mean absolute grey-level
    #: difference, 0..255, of 1/8-scale frames) reaches this is moving; None = not used
    image_change: float | None = None


@dataclass(frozen=True)
class SegmentRules:
    """How idle frames become removed ranges (defaults follow openpi's DROID idle filter).

    openpi drops idle runs of 7 or more steps (a policy executes 8-step action chunks,
    so shorter pauses are part of normal motion) and keeps only moving ranges of at
    least 16 steps (~1 s at 15 Hz); we apply the same numbers in frames, per embodiment
    overridable, and always trim idle prefixes and suffixes.
    """

    max_idle_run: int = 6
    min_segment: int = 16
    trim_prefix: bool = True
    trim_suffix: bool = True


@dataclass
class Removal:
    start: int
    stop: int
    reason: CurationReason
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "reason": str(self.reason), "message": self.message}


@dataclass
class Segmentation:
    kept: list[tuple[int, int]] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)

    @property
    def kept_frames(self) -> int:
        return sum(b - a for a, b in self.kept)

    def removed_frames(self) -> int:
        return sum(r.stop - r.start for r in self.removed)


# ---------------------------------------------------------------------------------- motion


def idle_steps(
    timestamp: np.ndarray,
    state: np.ndarray,
    action: np.ndarray,
    state_names: list[str],
    action_names: list[str],
    thresholds: MotionThresholds,
    image_change: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean per frame: True where the robot neither moves nor is commanded to.

    Frame t is idle when the step into it (t-1 -> t) *and* the step out of it
    (t -> t+1) are both idle, so the first frame of a motion is kept and a static
    run is exactly the frames between two motions.
    """
    n = len(timestamp)
    if n < 2:
        return np.zeros(n, dtype=bool)
    keep_s = [j for j, name in enumerate(state_names) if name not in thresholds.ignore]
    keep_a = [j for j, name in enumerate(action_names) if name not in thresholds.ignore]
    dt = np.diff(np.asarray(timestamp, dtype=np.float64))
    ds = np.abs(np.diff(np.asarray(state, dtype=np.float64)[:, keep_s], axis=0))
    da = np.abs(np.diff(np.asarray(action, dtype=np.float64)[:, keep_a], axis=0))
    velocity = ds / dt[:, None] if ds.size else np.zeros((n - 1, 0))
    step_idle = np.ones(n - 1, dtype=bool)
    if velocity.shape[1]:
        step_idle &= velocity.max(axis=1) < thresholds.state_velocity
    if da.shape[1]:
        step_idle &= da.max(axis=1) < thresholds.action_change
    if thresholds.image_change is not None and image_change is not None:
        step_idle &= np.asarray(image_change, dtype=np.float64) < thresholds.image_change
    before = np.r_[True, step_idle]  # frame 0 has no step into it
    after = np.r_[step_idle, True]  # the last frame has no step out of it
    return before & after


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ranges where ``mask`` is True."""
    if not len(mask):
        return []
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def segment(idle: np.ndarray, rules: SegmentRules) -> Segmentation:
    """Turn an idle mask into kept ranges and reason-coded removed ranges covering every frame."""
    n = len(idle)
    result = Segmentation()
    if n == 0:
        return result
    removed_mask = np.zeros(n, dtype=bool)
    for a, b in _runs(idle):
        if a == 0 and rules.trim_prefix and b < n:
            reason = CurationReason.IDLE_PREFIX
        elif b == n and rules.trim_suffix and a > 0:
            reason = CurationReason.IDLE_SUFFIX
        elif a == 0 and b == n:
            reason = CurationReason.NO_MOTION
        elif b - a > rules.max_idle_run:
            reason = CurationReason.STATIC_RUN
        else:
            continue
        result.removed.append(Removal(a, b, reason, f"{b - a} idle frames"))
        removed_mask[a:b] = True
    for a, b in _runs(~removed_mask):
        if b - a < rules.min_segment:
            result.removed.append(
                Removal(a, b, CurationReason.SHORT_SEGMENT, f"{b - a} moving frames < minimum {rules.min_segment}")
            )
        else:
            result.kept.append((a, b))
    result.removed.sort(key=lambda r: r.start)
    return result


# ------------------------------------------------------------------------------ corruption


@dataclass(frozen=True)
class CorruptionRules:
    min_frames: int = 10
    #: a step longer than this many nominal control periods is a gap (dropped frames)
    max_gap_periods: float = 5.0
    #: share of consecutive exactly-repeated (state, action) frames above which frames were duplicated
    max_duplicate_fraction: float = 0.5


def corruption(
    timestamp: np.ndarray, state: np.ndarray, action: np.ndarray, control_hz: float, rules: CorruptionRules
) -> tuple[CurationReason, str] | None:
    """The first whole-episode corruption found, or None.

    Invariants the store enforces anyway (finite, strictly increasing timestamps,
    equal lengths, finite values) are checked before curation by ``check_episode``;
    these are the problems a valid-looking episode can still have.
    """
    n = len(timestamp)
    if n < rules.min_frames:
        return CurationReason.TOO_SHORT, f"{n} frames < minimum {rules.min_frames}"
    steps = np.diff(np.asarray(timestamp, dtype=np.float64))
    limit = rules.max_gap_periods / control_hz
    if steps.size and steps.max() > limit:
        i = int(np.argmax(steps))
        return (
            CurationReason.TIMESTAMP_GAP,
            f"{steps[i]:.3f} s between frames {i} and {i + 1} (> {rules.max_gap_periods:g} periods at {control_hz:g} Hz)",
        )
    both = np.concatenate([np.asarray(state, np.float64), np.asarray(action, np.float64)], axis=1)
    repeated = np.all(both[1:] == both[:-1], axis=1)
    if n > 1 and repeated.mean() > rules.max_duplicate_fraction:
        return (
            CurationReason.DUPLICATED_FRAMES,
            f"{int(repeated.sum())} of {n - 1} steps repeat the previous frame exactly",
        )
    return None


# -------------------------------------------------------------------------------- outliers


@dataclass(frozen=True)
class OutlierRules:
    """Robust bounds: [q01 - k * (q99 - q01), q99 + k * (q99 - q01)] per dimension.

    The q01..q99 range of an embodiment's data is insensitive to a few extreme
    episodes; widening it by ``k`` times its own width keeps extreme-but-valid motion
    (fast moves, full gripper strokes) and catches values that no working robot of
    that embodiment produces (sensor glitches, unit errors).
    """

    k: float = 1.0
    #: a dimension whose q01..q99 width is below this is treated as having this width
    min_width: float = 1e-3


def robust_bounds(q01: np.ndarray, q99: np.ndarray, rules: OutlierRules) -> tuple[np.ndarray, np.ndarray]:
    q01 = np.asarray(q01, dtype=np.float64)
    q99 = np.asarray(q99, dtype=np.float64)
    width = np.maximum(q99 - q01, rules.min_width)
    return q01 - rules.k * width, q99 + rules.k * width


def first_violation(
    values: np.ndarray, names: list[str], low: np.ndarray, high: np.ndarray, label: str
) -> str | None:
    """Message naming the dimension, frame, value and bound of the worst excursion, or None."""
    values = np.asarray(values, dtype=np.float64)
    over = np.maximum(values - high, 0.0)
    under = np.maximum(low - values, 0.0)
    excess = np.maximum(over, under)
    if not np.any(excess > 0):
        return None
    frame, dim = np.unravel_index(int(np.argmax(excess)), excess.shape)
    bound = high[dim] if over[frame, dim] > 0 else low[dim]
    side = "above" if over[frame, dim] > 0 else "below"
    return (
        f"{label} '{names[dim]}' = {values[frame, dim]:.6g} at frame {frame} is {side} the bound {bound:.6g} "
        f"({int((excess > 0).sum())} values out of bounds)"
    )


def physical_violation(
    values: np.ndarray, names: list[str], limits: dict[str, tuple[float, float]], label: str
) -> str | None:
    """Check declared physical limits (e.g. gripper opening 0..0.085 m, joint limits)."""
    values = np.asarray(values, dtype=np.float64)
    for j, name in enumerate(names):
        if name not in limits:
            continue
        lo, hi = limits[name]
        col = values[:, j]
        bad = np.flatnonzero((col < lo) | (col > hi))
        if bad.size:
            i = int(bad[0])
            return f"{label} '{name}' = {col[i]:.6g} at frame {i} outside its physical range [{lo:g}, {hi:g}]"
    return None


# ------------------------------------------------------------------------------ duplicates


def duplicates(digests: dict[str, str]) -> dict[str, str]:
    """episode id -> id of the episode it duplicates (the smallest id with the same digest is kept)."""
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for eid in sorted(digests):
        d = digests[eid]
        if d in first:
            out[eid] = first[d]
        else:
            first[d] = eid
    return out
