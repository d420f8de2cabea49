"""The in-memory episode record every converter produces and the store writer consumes.

Converters know nothing about zarr; the writer knows nothing about any source.
This module is the contract between them. Camera frames are *streams* (a factory
returning an iterator) so that a 3,000-frame, 3-camera episode never has to sit
decoded in memory: the writer pulls frames one block at a time.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EpisodeError, Reason
from .schema import ACTION, STATE, ActionKind, TimestampOrigin


@dataclass
class CameraStream:
    """One camera's frames, delivered lazily as HxWx3 uint8 RGB arrays.

    ``open_frames`` is called once by the writer and must yield exactly
    ``num_frames`` frames in time order. Yielding fewer or more is reported as a
    ``frame_count_mismatch``; a frame that cannot be decoded should raise
    :class:`EpisodeError` with ``image_decode_error`` / ``video_decode_error``.

    ``thread_safe`` lets the writer consume this episode's cameras on parallel
    threads (decode/resize/encode release the GIL, so a single long episode uses
    several cores). Set it only when streams share no unsynchronised handle
    (separate files, h5py datasets, in-memory data); e.g. several members of one
    ``tarfile`` object are *not* safe to read concurrently.
    """

    name: str
    num_frames: int
    open_frames: Callable[[], Iterator[np.ndarray]]
    thread_safe: bool = False
    #: what the source calls this camera (its key, stream or file stem) where ``name`` is the
    #: canonical slot name training uses (e.g. RoboChallenge's ``left_realsense_rgb`` -> ``cam_main``);
    #: empty when the source's name is ``name`` itself
    source_name: str = ""
    #: the file (relative to the input root) or dataset/column the frames are read from, so an
    #: auditor can go from a stored frame back to the source without re-running the converter
    source_file: str = ""

    @classmethod
    def from_array(cls, name: str, frames: np.ndarray | Sequence[np.ndarray]) -> CameraStream:
        """Frames already decoded in memory (raw uint8 sources, tests)."""
        return cls(name=name, num_frames=len(frames), open_frames=lambda: iter(frames), thread_safe=True)

    @classmethod
    def from_encoded(
        cls, name: str, encoded: Sequence[bytes], *, channel_order: str = "RGB", where: str = ""
    ) -> CameraStream:
        """Frames stored as individually encoded images (JPEG/PNG bytes), decoded on demand."""

        def frames() -> Iterator[np.ndarray]:
            for i in range(len(encoded)):
                yield decode_image_bytes(encoded[i], channel_order=channel_order, where=f"{where}[{i}]")

        return cls(name=name, num_frames=len(encoded), open_frames=frames, thread_safe=True)


#: encodings robot datasets store frames in; PIL's other sniffers (e.g. TGA) can "recognise"
#: raw pixel buffers as images, so decoding is restricted to these
IMAGE_FORMATS = ("JPEG", "PNG")


def decode_image_bytes(
    data: bytes | np.ndarray, *, channel_order: str = "RGB", where: str = "", formats: tuple[str, ...] = IMAGE_FORMATS
) -> np.ndarray:
    """Decode one encoded image into an HxWx3 uint8 RGB array, with a specific error on failure."""
    from PIL import Image, UnidentifiedImageError

    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    try:
        with Image.open(io.BytesIO(raw), formats=list(formats)) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise EpisodeError(
            Reason.IMAGE_DECODE_ERROR, f"cannot decode image {where} ({len(raw)} bytes): {exc}"
        ) from exc
    if channel_order == "BGR":
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


@dataclass
class Episode:
    """One synchronized (o, s, l, a) episode, as a converter read it.

    ``source``/``source_version``/``converter_version`` are filled in by
    :class:`converters.base.Converter`, not by the individual converter.
    """

    source_episode: str
    embodiment: str
    robot_type: str
    control_hz: float
    timestamp: np.ndarray
    state: np.ndarray
    state_names: list[str]
    action: np.ndarray
    action_names: list[str]
    action_kind: ActionKind
    instruction: str
    cameras: dict[str, CameraStream]
    timestamp_origin: TimestampOrigin = TimestampOrigin.RECORDED
    instruction_alternatives: list[str] = field(default_factory=list)
    subtasks: list[str | None] | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    extra_names: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    source_version: str = ""
    converter_version: str = ""
    #: the converter that read it, where that is not the source's own (default: ``source``)
    converter: str = ""

    @property
    def num_frames(self) -> int:
        return int(len(self.timestamp))


#: no joint angle, position, velocity, gripper width or force of a robot reaches this; garbage bytes
#: read as float32 usually do (1e36 and the like). Unlike curation's outlier bounds it needs no
#: statistics, so it holds from a source's first episode on.
MAX_ABS_VALUE = 1e6


def check_episode(ep: Episode, *, max_abs_value: float = MAX_ABS_VALUE) -> None:
    """Raise :class:`EpisodeError` for the first broken invariant of the unified format.

    Run on every record before it is written, so each converter gets the same
    checks (and the same reason codes) for free. ``max_abs_value``: the plausibility bound on
    every state and action value (``implausible_values`` beyond it).
    """
    where = ep.source_episode
    t = np.asarray(ep.timestamp)
    n = len(t)
    if n == 0:
        raise EpisodeError(Reason.EMPTY_EPISODE, f"{where}: episode has no frames")
    if t.ndim != 1:
        raise EpisodeError(Reason.SHAPE_MISMATCH, f"{where}: timestamp must be 1-D, got shape {t.shape}")
    for label, arr, names in ((STATE, ep.state, ep.state_names), (ACTION, ep.action, ep.action_names)):
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise EpisodeError(Reason.SHAPE_MISMATCH, f"{where}: {label} must be [T, D], got shape {arr.shape}")
        if arr.shape[0] != n:
            raise EpisodeError(
                Reason.LENGTH_MISMATCH,
                f"{where}: {label} has {arr.shape[0]} frames but timestamp has {n}",
            )
        if arr.shape[1] == 0:
            raise EpisodeError(Reason.SHAPE_MISMATCH, f"{where}: {label} has zero dimensions")
        if len(names) != arr.shape[1]:
            raise EpisodeError(
                Reason.NAME_MISMATCH,
                f"{where}: {label} has {arr.shape[1]} dimensions but {len(names)} names",
            )
        if len(set(names)) != len(names):
            raise EpisodeError(Reason.NAME_MISMATCH, f"{where}: {label} names are not unique: {names}")
        for reason, bad, what in ((Reason.NON_FINITE_VALUES, ~np.isfinite(arr), "non-finite values"),
                                  (Reason.IMPLAUSIBLE_VALUES, np.abs(arr) > max_abs_value,
                                   f"values beyond +-{max_abs_value:g}")):
            if bad.any():
                frame, dim = (int(v) for v in np.argwhere(bad)[0])
                raise EpisodeError(reason, f"{where}: {label} has {int(bad.sum())} {what}, first at frame {frame} "
                                           f"dimension '{names[dim]}' = {arr[frame, dim]:g}")
    if not np.all(np.isfinite(t)):
        raise EpisodeError(Reason.NON_FINITE_VALUES, f"{where}: timestamp has non-finite values")
    steps = np.diff(t)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        raise EpisodeError(
            Reason.NON_MONOTONIC_TIMESTAMPS,
            f"{where}: timestamp not strictly increasing at frame {i + 1}: {t[i]!r} -> {t[i + 1]!r}",
        )
    if not (np.isfinite(ep.control_hz) and ep.control_hz > 0):
        raise EpisodeError(Reason.INVALID_METADATA, f"{where}: control_hz must be > 0, got {ep.control_hz}")
    if not ep.instruction or not ep.instruction.strip():
        raise EpisodeError(Reason.MISSING_LANGUAGE, f"{where}: empty language instruction")
    if not ep.cameras:
        raise EpisodeError(Reason.MISSING_CAMERA, f"{where}: episode has no cameras")
    for name, cam in ep.cameras.items():
        if cam.num_frames == 0:
            raise EpisodeError(Reason.MISSING_CAMERA, f"{where}: camera '{name}' has no frames")
        if cam.num_frames != n:
            raise EpisodeError(
                Reason.FRAME_COUNT_MISMATCH,
                f"{where}: camera '{name}' has {cam.num_frames} frames but state has {n}",
            )
    if ep.subtasks is not None and len(ep.subtasks) != n:
        raise EpisodeError(
            Reason.LENGTH_MISMATCH, f"{where}: {len(ep.subtasks)} sub-task labels for {n} frames"
        )
    for key, arr in ep.extras.items():
        if len(arr) != n:
            raise EpisodeError(Reason.LENGTH_MISMATCH, f"{where}: extra field '{key}' has {len(arr)} rows for {n} frames")

