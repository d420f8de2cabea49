"""RoboChallenge Table30: per-task folders of JSON-lines robot states and H.264 MP4 videos.

The layout, the mapping to the unified record and every rule below are specified in
``docs/sources/robochallenge.md``; this module is the only reader. Layout::

    <root>/<task>/task_desc.json                                  # optional
    <root>/<task>/meta/task_info.json                             # robot_id, task_desc{prompt}, video_info{fps}
    <root>/<task>/data/episode_<id>/meta/episode_meta.json        # episode_index|episode_idx, frames, times
    <root>/<task>/data/episode_<id>/states/states.jsonl           # single arm (ARX5, UR5, Franka)
    <root>/<task>/data/episode_<id>/states/{left,right}_states.jsonl   # dual arm (ALOHA)
    <root>/<task>/data/episode_<id>/videos/<camera>_rgb.mp4       # one H.264 MP4 per camera

One episode folder is one work unit; its ref is the folder's POSIX path relative to the
root (``arrange_flowers/data/episode_000012``). No action stream is stored: the action is
the next frame's state in the embodiment's control space (joint positions for ARX5, UR5
and ALOHA, end-effector pose for Franka), the gripper is normalised to an opening width in
metres, and the last frame holds its position. Everything that differs per embodiment or
per release (state keys, gripper units, camera file names, the key signature used to infer
the embodiment when task metadata is missing) lives in the ``EMBODIMENT_SPECS`` table.

``write_samples`` writes a small native-format sample set with json and PyAV (H.264 through
libx264, as the release's FFmpeg-written MP4s), including the quirks of the real release
and the partial downloads users run into.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from converters import register
from converters.base import Converter, SourceCard, episode_folder, is_dangling_link, option
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, CameraStream, Episode, TimestampOrigin

# --------------------------------------------------------------------------------------
# Native layout
# --------------------------------------------------------------------------------------

TASK_INFO = "meta/task_info.json"
TASK_DESC = "task_desc.json"
EPISODE_META = "meta/episode_meta.json"
DATA_DIR = "data"
STATES_DIR = "states"
VIDEOS_DIR = "videos"
VIDEO_SUFFIX = ".mp4"
EPISODE_DIR_RE = re.compile(r"^episode_(.+)$")

#: state file(s) per arm layout; the dual-arm streams are zipped by line index
STATE_FILES: dict[str, dict[str, str]] = {
    "single": {"": f"{STATES_DIR}/states.jsonl"},
    "dual": {"left": f"{STATES_DIR}/left_states.jsonl", "right": f"{STATES_DIR}/right_states.jsonl"},
}
TIMESTAMP_KEY = "timestamp"
#: keys of episode_meta.json that hold the episode number (Franka's release uses ``episode_idx``)
EPISODE_INDEX_KEYS = ("episode_index", "episode_idx")

DEFAULT_FPS = 30.0  # every verified video is 30 fps; task_info.json video_info.fps overrides it
ROBOTIQ_2F85_STROKE_M = 0.085

XYZ_QUAT = ("x", "y", "z", "qx", "qy", "qz", "qw")
XYZ_RPY = ("x", "y", "z", "roll", "pitch", "yaw")


def _names(prefix: str, items: tuple[str, ...] | range, suffix: str = "") -> tuple[str, ...]:
    return tuple(f"{prefix}{item}{suffix}" for item in items)


@dataclass(frozen=True)
class GripperUnit:
    """How one native gripper reading becomes the unified opening width in metres (0 = closed)."""

    to_metres: Callable[[np.ndarray], np.ndarray]
    description: str


GRIPPER_UNITS: dict[str, GripperUnit] = {
    "m": GripperUnit(lambda v: v, "finger opening width in metres, as recorded"),
    "robotiq_2f85_0_255": GripperUnit(
        lambda v: ROBOTIQ_2F85_STROKE_M * (255.0 - v) / 255.0,
        "Robotiq 2F-85 position register, 0 = open .. 255 = closed; "
        "converted linearly: width_m = 0.085 * (255 - value) / 255",
    ),
}


@dataclass(frozen=True)
class Vector:
    """A per-frame vector read from each state line: the first of ``keys`` found on line 1 is used."""

    keys: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class Extra:
    """An optional per-frame vector copied to ``Episode.extras[name]`` when line 1 has one of ``keys``."""

    name: str
    keys: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class Signature:
    """State-key signature used to infer the embodiment when no metadata names the robot."""

    layout: str  # "single" | "dual"
    joints: int  # length of joint_positions
    any_of: tuple[str, ...] = ()  # at least one of these keys on line 1
    none_of: tuple[str, ...] = ()  # none of these keys on line 1

    def matches(self, layout: str, first_lines: dict[str, dict[str, Any]]) -> bool:
        if layout != self.layout:
            return False
        for line in first_lines.values():
            joints = line.get("joint_positions")
            if not isinstance(joints, list) or len(joints) != self.joints:
                return False
            if self.any_of and not any(k in line for k in self.any_of):
                return False
            if any(k in line for k in self.none_of):
                return False
        return True


@dataclass(frozen=True)
class EmbodimentSpec:
    """Everything that differs between the release's four robots (one row per embodiment)."""

    embodiment: str
    robot_type: str
    layout: str  # "single" | "dual" (state files, see STATE_FILES)
    control_space: str  # "joint" | "ee_pose": the space the derived action lives in
    state: tuple[Vector, ...]  # per arm, followed by the gripper
    gripper: tuple[tuple[str, str], ...]  # (key, GRIPPER_UNITS key) candidates, per arm
    extras: tuple[Extra, ...]  # per arm
    cameras: tuple[tuple[str, tuple[str, ...]], ...]  # unified name -> candidate file stems (releases)
    primary_camera: str
    robot_id_tokens: tuple[str, ...]
    signature: Signature

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(STATE_FILES[self.layout])

    def state_names(self) -> list[str]:
        names: list[str] = []
        for arm in self.arms:
            prefix = f"{arm}_" if arm else ""
            for vec in self.state:
                names.extend(prefix + n for n in vec.names)
            names.append(f"{prefix}gripper")
        return names


_JOINTS6 = _names("joint", range(1, 7))
_JOINTS7 = _names("joint", range(1, 8))

EMBODIMENT_SPECS: dict[str, EmbodimentSpec] = {
    "arx5": EmbodimentSpec(
        embodiment="arx5",
        robot_type="arx5",
        layout="single",
        control_space="joint",
        state=(Vector(("joint_positions",), _JOINTS6),),
        gripper=(("gripper_width", "m"),),
        extras=(
            Extra("joint_vel", ("joint_velocities",), _names("joint", range(1, 7), "_vel")),
            Extra("ee_pose_rpy", ("end_effector_pose",), _names("ee_", XYZ_RPY)),
            Extra("ee_pose_quat", ("ee_positions",), _names("ee_", XYZ_QUAT)),
            Extra("gripper_vel", ("gripper_velocity",), ("gripper_vel",)),
            Extra("effort", ("effort",), _names("joint", range(1, 7), "_effort") + ("gripper_effort",)),
        ),
        cameras=(
            ("cam_global", ("global_realsense_rgb", "cam_global_rgb")),
            ("cam_wrist", ("arm_realsense_rgb", "cam_arm_rgb")),
            ("cam_side", ("right_realsense_rgb", "cam_side_rgb")),
        ),
        primary_camera="cam_global",
        robot_id_tokens=("arx5", "arx"),
        signature=Signature("single", 6, any_of=("end_effector_pose", "gripper_velocity")),
    ),
    "ur5": EmbodimentSpec(
        embodiment="ur5",
        robot_type="ur5",
        layout="single",
        control_space="joint",
        state=(Vector(("joint_positions",), _JOINTS6),),
        gripper=(("gripper", "robotiq_2f85_0_255"), ("gripper_width", "m")),
        extras=(
            Extra("ee_pose_quat", ("ee_positions",), _names("ee_", XYZ_QUAT)),
            Extra("gripper_raw", ("gripper",), ("gripper_raw",)),
        ),
        cameras=(
            ("cam_global", ("global_realsense_rgb", "cam_global_rgb")),
            ("cam_wrist", ("handeye_realsense_rgb", "cam_arm_rgb")),
        ),
        primary_camera="cam_global",
        robot_id_tokens=("ur5", "ur5e"),
        signature=Signature("single", 6, none_of=("end_effector_pose", "gripper_velocity")),
    ),
    "franka": EmbodimentSpec(
        embodiment="franka",
        robot_type="franka",
        layout="single",
        control_space="ee_pose",
        state=(Vector(("ee_positions",), _names("ee_", XYZ_QUAT)),),
        gripper=(("gripper_width", "m"),),
        extras=(
            Extra("joint_positions", ("joint_positions",), _JOINTS7),
            Extra("gripper_raw", ("gripper",), ("gripper_raw_0", "gripper_raw_1")),
        ),
        cameras=(
            ("cam_main", ("main_realsense_rgb",)),
            ("cam_wrist", ("handeye_realsense_rgb",)),
            ("cam_side", ("side_realsense_rgb",)),
        ),
        primary_camera="cam_main",
        robot_id_tokens=("franka", "fr3", "panda"),
        signature=Signature("single", 7),
    ),
    "aloha": EmbodimentSpec(
        embodiment="aloha",
        robot_type="aloha",
        layout="dual",
        control_space="joint",
        state=(Vector(("joint_positions",), _JOINTS6),),
        gripper=(("gripper", "m"), ("gripper_width", "m")),
        extras=(
            Extra("joint_vel", ("joint_vel", "joint_velocities"),
                  _names("joint", range(1, 7), "_vel") + ("gripper_vel",)),
            Extra("qpos", ("qpos",), _names("qpos", range(1, 7))),
            Extra("ee_pose_quat", ("ee_pose_quaternion", "ee_positions"), _names("ee_", XYZ_QUAT)),
            Extra("ee_pose_rpy", ("ee_pose_rpy",), _names("ee_", XYZ_RPY)),
            Extra("leader_qpos", ("master_qpos",), _names("leader_joint", range(1, 7)) + ("leader_gripper",)),
            Extra("effort", ("effort",), _names("joint", range(1, 7), "_effort") + ("gripper_effort",)),
        ),
        cameras=(
            ("cam_high", ("cam_high_rgb",)),
            ("cam_left_wrist", ("cam_wrist_left_rgb", "cam_left_wrist_rgb")),
            ("cam_right_wrist", ("cam_wrist_right_rgb", "cam_right_wrist_rgb")),
        ),
        primary_camera="cam_high",
        robot_id_tokens=("aloha",),
        signature=Signature("dual", 6),
    ),
}
EMBODIMENTS = tuple(sorted(EMBODIMENT_SPECS))

#: robot_id tokens of robots RoboChallenge records that this converter does not map (Table30 v2's DOS-W1)
UNSUPPORTED_ROBOT_TOKENS = ("w1", "dos")

#: timestamp unit -> seconds per unit; ``auto`` picks by magnitude (see _timestamp_unit)
TIMESTAMP_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}

# --------------------------------------------------------------------------------------
# Options (params.yaml: sources.robochallenge.options)
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoboChallengeOptions:
    """Converter options; each is documented in docs/sources/robochallenge.md ("Options")."""

    required_cameras: Literal["primary", "all", "any"] = "primary"
    language_fallback: Literal["folder_name", "none"] = "folder_name"
    last_frame: Literal["hold", "drop"] = "hold"
    timestamp_unit: str = option("auto", choices=("auto", *TIMESTAMP_UNITS))
    frame_count_tolerance: int = option(0, ge=0)
    decode_threads: int = option(1, ge=1)


# --------------------------------------------------------------------------------------
# Task- and episode-level metadata
# --------------------------------------------------------------------------------------


def _read_json(path: Path, label: str, where: str) -> Any:
    """A metadata JSON file; ``label`` is its path as the docs name it (``meta/task_info.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {label} is not UTF-8: {exc}") from exc
    except OSError as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read {label}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {label} is not valid JSON: {exc}") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class TaskInfo:
    """``<task>/meta/task_info.json``. Keys beyond these are ignored (the release adds some)."""

    robot_id: str | None
    task_name: str | None
    prompt: str | None
    fps: float | None
    video_size: tuple[int, int] | None  # (height, width)
    task_tag: list[Any] | None

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TaskInfo:
        def bad(message: str) -> EpisodeError:
            return EpisodeError(Reason.INVALID_METADATA, f"{where}: {TASK_INFO} {message}")

        if not isinstance(raw, dict):
            raise bad(f"must be a JSON object, got {type(raw).__name__}")
        robot_id = raw.get("robot_id")
        if robot_id is not None and not isinstance(robot_id, str):
            raise bad(f"'robot_id' must be a string, got {robot_id!r}")
        desc = raw.get("task_desc", {})
        if not isinstance(desc, dict):
            raise bad(f"'task_desc' must be an object, got {desc!r}")
        prompt, task_name = desc.get("prompt"), desc.get("task_name")
        for key, value in (("task_desc.prompt", prompt), ("task_desc.task_name", task_name)):
            if value is not None and not isinstance(value, str):
                raise bad(f"'{key}' must be a string, got {value!r}")
        video = raw.get("video_info", {})
        if not isinstance(video, dict):
            raise bad(f"'video_info' must be an object, got {video!r}")
        fps = video.get("fps")
        if fps is not None and not (_is_number(fps) and math.isfinite(fps) and fps > 0):
            raise bad(f"'video_info.fps' must be a number > 0, got {fps!r}")
        h, w = video.get("height"), video.get("width")
        size = (int(h), int(w)) if _is_number(h) and _is_number(w) else None
        tags = desc.get("task_tag")
        return cls(
            robot_id=robot_id,
            task_name=task_name,
            prompt=prompt,
            fps=float(fps) if fps is not None else None,
            video_size=size,
            task_tag=tags if isinstance(tags, list) else None,
        )


def _task_desc_prompt(raw: Any, where: str) -> str | None:
    """The prompt in ``<task>/task_desc.json``: a string, ``{"prompt"}`` or ``{"task_desc": {"prompt"}}``."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        if isinstance(raw.get("task_desc"), dict):
            raw = raw["task_desc"]
        for key in ("prompt", "description", "instruction"):
            if isinstance(raw.get(key), str):
                return raw[key]
        return None
    raise EpisodeError(
        Reason.INVALID_METADATA, f"{where}: {TASK_DESC} must be a string or an object, got {type(raw).__name__}"
    )


@dataclass(frozen=True)
class EpisodeMeta:
    """``<episode>/meta/episode_meta.json``."""

    index: int | None
    index_key: str | None
    frames: int | None
    start_time: float | None
    end_time: float | None
    robot_id: str | None
    features: dict[str, Any] | None  # per-camera calibration (later releases)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> EpisodeMeta:
        def bad(message: str) -> EpisodeError:
            return EpisodeError(Reason.INVALID_METADATA, f"{where}: {EPISODE_META} {message}")

        if not isinstance(raw, dict):
            raise bad(f"must be a JSON object, got {type(raw).__name__}")
        index = index_key = None
        for key in EPISODE_INDEX_KEYS:
            if key in raw:
                if isinstance(raw[key], bool) or not isinstance(raw[key], int):
                    raise bad(f"'{key}' must be an integer, got {raw[key]!r}")
                index, index_key = raw[key], key
                break
        frames = raw.get("frames")
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 0):
            raise bad(f"'frames' must be an integer >= 0, got {frames!r}")
        times = {}
        for key in ("start_time", "end_time"):
            value = raw.get(key)
            if value is not None and not _is_number(value):
                raise bad(f"'{key}' must be a number, got {value!r}")
            times[key] = float(value) if value is not None else None
        robot_id = raw.get("robot_id")
        if robot_id is not None and not isinstance(robot_id, str):
            raise bad(f"'robot_id' must be a string, got {robot_id!r}")
        features = raw.get("features")
        return cls(
            index=index,
            index_key=index_key,
            frames=frames,
            start_time=times["start_time"],
            end_time=times["end_time"],
            robot_id=robot_id,
            features=features if isinstance(features, dict) else None,
        )


def _robot_tokens(robot_id: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", robot_id.lower()) if t}


def _spec_from_robot_id(robot_id: str, where: str) -> EmbodimentSpec | None:
    tokens = _robot_tokens(robot_id)
    if tokens & set(UNSUPPORTED_ROBOT_TOKENS):
        raise EpisodeError(
            Reason.UNSUPPORTED_LAYOUT,
            f"{where}: robot_id {robot_id!r} is a robot this converter does not map (supported: {EMBODIMENTS})",
        )
    found = [spec for spec in EMBODIMENT_SPECS.values() if tokens & set(spec.robot_id_tokens)]
    return found[0] if len(found) == 1 else None


# --------------------------------------------------------------------------------------
# JSON-lines states
# --------------------------------------------------------------------------------------


def _iter_jsonl(path: Path, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, object)`` for each line; a blank line is allowed only at the end."""
    blank_at = None
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot open: {exc}") from exc
    with f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                blank_at = blank_at or lineno
                continue
            if blank_at is not None:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: line {blank_at} is blank but data follows")
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
                snippet = raw[:60].decode("utf-8", "replace").rstrip()
                raise EpisodeError(
                    Reason.CORRUPT_FILE, f"{where}: line {lineno} is not valid JSON ({detail}): {snippet!r}..."
                ) from exc
            if not isinstance(obj, dict):
                raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: line {lineno} is not a JSON object")
            yield lineno, obj


def _first_line(path: Path, where: str) -> dict[str, Any] | None:
    for _, obj in _iter_jsonl(path, where):
        return obj
    return None


def _values(obj: dict[str, Any], key: str, width: int, where: str, lineno: int) -> list[float]:
    """``obj[key]`` as ``width`` floats; a scalar counts as one value and JSON null as NaN."""
    if key not in obj:
        raise EpisodeError(Reason.MISSING_KEY, f"{where}: line {lineno} has no '{key}'")
    value = obj[key]
    items = value if isinstance(value, list) else [value]
    out: list[float] = []
    for item in items:
        if item is None:
            out.append(math.nan)
        elif _is_number(item):
            out.append(float(item))
        else:
            raise EpisodeError(
                Reason.CORRUPT_FILE,
                f"{where}: line {lineno} '{key}' holds {type(item).__name__} {item!r}, not a number",
            )
    if len(out) != width:
        raise EpisodeError(
            Reason.SHAPE_MISMATCH, f"{where}: line {lineno} '{key}' has {len(out)} values, expected {width}"
        )
    return out


@dataclass
class _Column:
    key: str
    width: int
    rows: list[list[float]] = field(default_factory=list)


def _matrix(column: _Column, n: int) -> np.ndarray:
    return np.asarray(column.rows, dtype=np.float64).reshape(n, column.width)


def _read_arm(path: Path, where: str, columns: list[_Column]) -> int:
    """Fill ``columns`` from every line of one state file; returns the number of lines."""
    n = 0
    for lineno, obj in _iter_jsonl(path, where):
        for col in columns:
            col.rows.append(_values(obj, col.key, col.width, where, lineno))
        n += 1
    return n


# --------------------------------------------------------------------------------------
# Videos (PyAV)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    height: int
    width: int
    codec: str
    pix_fmt: str | None


def probe_video(path: Path, where: str) -> VideoInfo:
    """Frame count and size from the MP4 header (counts packets if the header has no count)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EpisodeError(
                    Reason.VIDEO_DECODE_ERROR,
                    f"{where}: no video stream (truncated download? the MP4 index is written last)",
                )
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
            if frames == 0:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            ctx = stream.codec_context
            return VideoInfo(frames, int(ctx.height), int(ctx.width), ctx.name, ctx.pix_fmt)
    except av.error.FFmpegError as exc:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc


class _Lifetime:
    """Open while the episode context is; camera streams refuse to start after it closes."""

    def __init__(self) -> None:
        self.open = True


def _frame_reader(path: Path, where: str, declared: int, limit: int, threads: int, life: _Lifetime):
    """``open_frames`` for one camera: decodes one frame at a time from its own container."""

    def frames() -> Iterator[np.ndarray]:
        if not life.open:
            raise RuntimeError(f"{where}: episode context is closed")
        i = 0
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = threads
                if threads > 1:
                    stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    if i >= limit:
                        break
                    yield frame.to_ndarray(format="rgb24")
                    i += 1
        except av.error.FFmpegError as exc:
            raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: decoding failed at frame {i}: {exc}") from exc
        if i < limit:
            raise EpisodeError(
                Reason.VIDEO_DECODE_ERROR,
                f"{where}: stream ended after {i} of the {declared} frames its header declares",
            )

    return frames


# --------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------


def _natural_key(name: str) -> tuple:
    suffix = EPISODE_DIR_RE.match(name).group(1)
    return (0, int(suffix), name) if suffix.isdigit() else (1, 0, name)


def _timestamp_unit(values: np.ndarray) -> str:
    """Unix time in s, ms or us, told apart by magnitude (s ~1.7e9, ms ~1.7e12, us ~1.7e15)."""
    finite = np.abs(values[np.isfinite(values)])
    magnitude = float(np.median(finite)) if finite.size else 0.0
    return "us" if magnitude >= 1e14 else "ms" if magnitude >= 1e11 else "s"


@register
class RoboChallengeConverter(Converter):
    """RoboChallenge Table30: ARX5, UR5, Franka and ALOHA demonstrations (JSONL states + MP4)."""

    name = "robochallenge"
    source_version = "table30-v1"
    converter_version = "1.1.0"
    embodiments = EMBODIMENTS
    control_hz = DEFAULT_FPS
    card = SourceCard.load("robochallenge")  # converters/cards/robochallenge.yaml
    options_type = RoboChallengeOptions

    def discover(self) -> list[str]:
        """Every ``<task>/data/episode_*`` folder under ``root``, as root-relative POSIX paths.

        Sorted by task path, then naturally by episode suffix (``episode_000002`` before
        ``episode_000010``, non-numeric suffixes such as ``episode_FFFFFF`` last). Hidden
        folders are skipped; an episode folder is never searched further.
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"robochallenge root {self.root} is not a directory")
        found: list[tuple[str, tuple, str]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            if here.name != DATA_DIR:
                continue
            task = here.parent.relative_to(self.root).as_posix()
            episodes = [d for d in dirnames if EPISODE_DIR_RE.match(d)]
            # a link to a folder that is gone is listed among the files: it stays an episode (missing_file)
            episodes += [f for f in filenames if EPISODE_DIR_RE.match(f) and is_dangling_link(here / f)]
            dirnames[:] = [d for d in dirnames if d not in episodes]
            for d in episodes:
                ref = f"{DATA_DIR}/{d}" if task == "." else f"{task}/{DATA_DIR}/{d}"
                found.append(("" if task == "." else task, _natural_key(d), ref))
        return [ref for _, _, ref in sorted(found)]

    @contextlib.contextmanager
    def open_episode(self, source_episode: str) -> Iterator[Episode]:
        life = _Lifetime()
        try:
            yield self._build(source_episode, life)
        finally:
            life.open = False

    # -- reading ----------------------------------------------------------------------

    def _build(self, ref: str, life: _Lifetime) -> Episode:
        ep_dir = episode_folder(self.root, ref)
        task_dir = ep_dir.parent.parent
        flags: list[str] = []

        task_info = None
        if (task_dir / TASK_INFO).is_file():
            task_info = TaskInfo.from_dict(_read_json(task_dir / TASK_INFO, TASK_INFO, ref), ref)
        else:
            flags.append("task_info_missing")
        episode_meta = None
        if (ep_dir / EPISODE_META).is_file():
            episode_meta = EpisodeMeta.from_dict(_read_json(ep_dir / EPISODE_META, EPISODE_META, ref), ref)
        else:
            flags.append("episode_meta_missing")

        layout = self._state_layout(ep_dir, ref)
        firsts = self._first_lines(ep_dir, ref, layout)
        spec, embodiment_source, robot_id = self._embodiment(ref, layout, firsts, task_info, episode_meta)
        if embodiment_source == "state_keys":
            flags.append("embodiment_inferred")
        if spec.layout != layout:
            wanted = " and ".join(STATE_FILES[spec.layout].values())
            raise EpisodeError(
                Reason.MISSING_FILE,
                f"{ref}: {spec.embodiment} (from {embodiment_source} {robot_id!r}) records {wanted}: not found",
            )
        arms, schema = self._read_states(ep_dir, ref, spec, firsts)
        num_frames = arms[spec.arms[0]]["n"]
        if episode_meta is not None and episode_meta.frames is not None and episode_meta.frames != num_frames:
            raise EpisodeError(
                Reason.LENGTH_MISMATCH,
                f"{ref}: {EPISODE_META} says frames={episode_meta.frames} but "
                f"{STATE_FILES[spec.layout][spec.arms[0]]} has {num_frames} lines",
            )

        state = np.concatenate([arms[arm]["state"] for arm in spec.arms], axis=1)
        timestamp, unit = self._timestamps(arms[spec.arms[0]]["timestamp"])
        if unit != "s":
            flags.append("timestamps_rescaled")
        keep = num_frames - 1 if (self.options.last_frame == "drop" and num_frames > 1) else num_frames
        action = np.concatenate([state[1:], state[-1:]])  # next frame's state; the last frame holds
        padded = np.zeros((num_frames, 1), dtype=bool)
        padded[-1, 0] = True
        extras = {"action_padded": padded}
        extra_names = {"action_padded": ["action_padded"]}
        for name, (values, names) in self._extras(arms, spec).items():
            extras[name], extra_names[name] = values, names

        cameras, camera_meta = self._cameras(ep_dir, ref, spec, num_frames, keep, life, flags)
        instruction, language_source = self._language(ref, task_dir, task_info, flags)

        fps_default = task_info is None or task_info.fps is None
        fps = DEFAULT_FPS if fps_default else task_info.fps
        gripper_unit = schema["gripper_unit"]
        metadata: dict[str, Any] = {
            "task": task_dir.name,
            "task_folder": task_dir.relative_to(self.root).as_posix() if task_dir != self.root else "",
            "episode_dir": ep_dir.name,
            "episode_index": episode_meta.index if episode_meta else None,
            "episode_index_key": episode_meta.index_key if episode_meta else None,
            "robot_id": robot_id,
            "embodiment_source": embodiment_source,
            "language_source": language_source,
            "task_name": task_info.task_name if task_info else None,
            "fps_source": "default" if fps_default else "task_info.video_info.fps",
            "start_time": episode_meta.start_time if episode_meta else None,
            "end_time": episode_meta.end_time if episode_meta else None,
            "frames_declared": episode_meta.frames if episode_meta else None,
            "state_keys": {k: schema[k] for k in ("state", "gripper", "extras")},
            "gripper": {
                "unit": "m",
                "convention": "finger opening width in metres, 0 = closed",
                "source_key": schema["gripper"],
                "source_unit": gripper_unit,
                "conversion": GRIPPER_UNITS[gripper_unit].description,
            },
            "action": {
                "derived_from": "next_state",
                "control_space": spec.control_space,
                "last_frame": self.options.last_frame,
            },
            "timestamp": {"source": f"{STATE_FILES[spec.layout][spec.arms[0]]}:{TIMESTAMP_KEY}", "unit_detected": unit},
            **camera_meta,
        }
        if spec.layout == "dual":
            left, right = (arms[a]["timestamp"] for a in spec.arms)
            metadata["arm_timestamp_max_skew_s"] = float(np.max(np.abs(left - right))) * TIMESTAMP_UNITS[unit]
        if task_info is not None and task_info.task_tag is not None:
            metadata["task_tag"] = task_info.task_tag
        if task_info is not None and task_info.video_size is not None:
            metadata["video_info_size"] = list(task_info.video_size)
        if episode_meta is not None and episode_meta.features is not None:
            metadata["camera_features"] = episode_meta.features
        metadata["flags"] = sorted(set(flags))

        if keep != num_frames:
            timestamp, state, action = timestamp[:keep], state[:keep], state[1 : keep + 1]
            extras = {k: v[:keep] for k, v in extras.items()}
            extras["action_padded"] = np.zeros((keep, 1), dtype=bool)
        return Episode(
            source_episode=ref,
            embodiment=spec.embodiment,
            robot_type=spec.robot_type,
            control_hz=fps,
            timestamp=timestamp,
            state=state.astype(np.float32),
            state_names=spec.state_names(),
            action=action.astype(np.float32),
            action_names=spec.state_names(),
            action_kind=ActionKind.NEXT_STATE,
            instruction=instruction,
            cameras=cameras,
            timestamp_origin=TimestampOrigin.RECORDED,
            extras=extras,
            extra_names=extra_names,
            metadata=metadata,
        )

    @staticmethod
    def _state_layout(ep_dir: Path, ref: str) -> str:
        present = {layout: [arm for arm, rel in files.items() if (ep_dir / rel).is_file()]
                   for layout, files in STATE_FILES.items()}
        if present["dual"]:
            missing = [rel for arm, rel in STATE_FILES["dual"].items() if arm not in present["dual"]]
            if missing:
                raise EpisodeError(Reason.MISSING_FILE, f"{ref}: {missing[0]} is missing (the other arm's file exists)")
            return "dual"
        if present["single"]:
            return "single"
        expected = ", or ".join(" + ".join(files.values()) for files in STATE_FILES.values())
        raise EpisodeError(Reason.MISSING_FILE, f"{ref}: no state file ({expected})")

    @staticmethod
    def _first_lines(ep_dir: Path, ref: str, layout: str) -> dict[str, dict[str, Any]]:
        firsts = {}
        for arm, rel in STATE_FILES[layout].items():
            line = _first_line(ep_dir / rel, f"{ref}/{rel}")
            if line is None:
                raise EpisodeError(Reason.EMPTY_EPISODE, f"{ref}/{rel}: the file has no lines")
            firsts[arm] = line
        return firsts

    @staticmethod
    def _embodiment(
        ref: str, layout: str, firsts: dict[str, dict[str, Any]], task_info: TaskInfo | None,
        episode_meta: EpisodeMeta | None,
    ) -> tuple[EmbodimentSpec, str, str | None]:
        """The robot: from a ``robot_id`` (task_info, then episode_meta), else from the state-key signature."""
        robot_id = None
        for source, meta in (("task_info.robot_id", task_info), ("episode_meta.robot_id", episode_meta)):
            if meta is not None and meta.robot_id:
                robot_id = robot_id or meta.robot_id
                spec = _spec_from_robot_id(meta.robot_id, ref)
                if spec is not None:
                    return spec, source, robot_id
        matches = [spec for spec in EMBODIMENT_SPECS.values() if spec.signature.matches(layout, firsts)]
        if len(matches) != 1:
            keys = sorted(next(iter(firsts.values())))
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT,
                f"{ref}: no robot_id names the robot (robot_id={robot_id!r}) and the {layout}-arm state keys "
                f"{keys} match {[s.embodiment for s in matches] or 'no known embodiment'}",
            )
        return matches[0], "state_keys", robot_id

    def _read_states(
        self, ep_dir: Path, ref: str, spec: EmbodimentSpec, firsts: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Per arm: state [T, D] (float64, gripper in metres), timestamps [T] and extras columns.

        Which key feeds each vector (release variants) is decided on line 1 of the first arm's
        file; every later line of every arm must have the same keys.
        """
        lead = firsts[spec.arms[0]]
        lead_where = f"{ref}/{STATE_FILES[spec.layout][spec.arms[0]]}"
        state_keys = []
        for vec in spec.state:
            key = next((k for k in vec.keys if k in lead), None)
            if key is None:
                raise EpisodeError(Reason.MISSING_KEY, f"{lead_where}: line 1 has none of {list(vec.keys)}")
            state_keys.append(key)
        gripper = next(((k, u) for k, u in spec.gripper if k in lead), None)
        if gripper is None:
            raise EpisodeError(
                Reason.MISSING_KEY, f"{lead_where}: line 1 has no gripper key (one of {[k for k, _ in spec.gripper]})"
            )
        extras: list[tuple[Extra, str]] = []
        for extra in spec.extras:
            key = next((k for k in extra.keys if all(k in first for first in firsts.values())), None)
            if key is not None:
                extras.append((extra, key))
        arms: dict[str, dict[str, Any]] = {}
        for arm, rel in STATE_FILES[spec.layout].items():
            where = f"{ref}/{rel}"
            vec_cols = [_Column(key, len(vec.names)) for vec, key in zip(spec.state, state_keys)]
            grip_col = _Column(gripper[0], 1)
            ts_col = _Column(TIMESTAMP_KEY, 1)
            extra_cols = {extra.name: _Column(key, len(extra.names)) for extra, key in extras}
            n = _read_arm(ep_dir / rel, where, [*vec_cols, grip_col, ts_col, *extra_cols.values()])
            grip = GRIPPER_UNITS[gripper[1]].to_metres(_matrix(grip_col, n))
            arms[arm] = {
                "n": n,
                "state": np.concatenate([_matrix(c, n) for c in vec_cols] + [grip], axis=1),
                "timestamp": _matrix(ts_col, n)[:, 0],
                "extras": {name: _matrix(c, n) for name, c in extra_cols.items()},
            }
        if spec.layout == "dual":
            counts = {arm: arms[arm]["n"] for arm in spec.arms}
            if len(set(counts.values())) > 1:
                detail = ", ".join(f"{STATE_FILES['dual'][a]} has {c} lines" for a, c in counts.items())
                raise EpisodeError(Reason.LENGTH_MISMATCH, f"{ref}: arm streams differ in length: {detail}")
        schema = {
            "state": state_keys,
            "gripper": gripper[0],
            "gripper_unit": gripper[1],
            "extras": {extra.name: key for extra, key in extras},
        }
        return arms, schema

    @staticmethod
    def _extras(arms: dict[str, dict[str, Any]], spec: EmbodimentSpec) -> dict[str, tuple[np.ndarray, list[str]]]:
        out: dict[str, tuple[np.ndarray, list[str]]] = {}
        first = arms[spec.arms[0]]["extras"]
        for extra in spec.extras:
            if extra.name not in first:
                continue
            values = np.concatenate([arms[arm]["extras"][extra.name] for arm in spec.arms], axis=1)
            names = [f"{arm}_{n}" if arm else n for arm in spec.arms for n in extra.names]
            out[extra.name] = (values.astype(np.float32), names)
        return out

    def _timestamps(self, raw: np.ndarray) -> tuple[np.ndarray, str]:
        unit = self.options.timestamp_unit
        if unit == "auto":
            unit = _timestamp_unit(raw)
        return raw * TIMESTAMP_UNITS[unit], unit

    def _cameras(
        self, ep_dir: Path, ref: str, spec: EmbodimentSpec, num_frames: int, keep: int, life: _Lifetime,
        flags: list[str],
    ) -> tuple[dict[str, CameraStream], dict[str, Any]]:
        videos = ep_dir / VIDEOS_DIR
        files = sorted(p.name for p in videos.iterdir() if p.is_file()) if videos.is_dir() else []
        mp4s = [f for f in files if f.endswith(VIDEO_SUFFIX)]
        chosen: dict[str, str] = {}
        for camera, stems in spec.cameras:
            stem = next((s for s in stems if f"{s}{VIDEO_SUFFIX}" in mp4s), None)
            if stem is not None:
                chosen[camera] = f"{stem}{VIDEO_SUFFIX}"
        missing = [camera for camera, _ in spec.cameras if camera not in chosen]
        expected = {camera: [f"{VIDEOS_DIR}/{s}{VIDEO_SUFFIX}" for s in stems] for camera, stems in spec.cameras}
        rule = self.options.required_cameras
        required = {"all": missing, "primary": [c for c in missing if c == spec.primary_camera], "any": []}[rule]
        if not chosen or required:
            lacking = required or missing
            raise EpisodeError(
                Reason.MISSING_CAMERA,
                f"{ref}: {'no camera video' if not chosen else 'required camera(s) missing'}: "
                + "; ".join(f"{c} ({' or '.join(expected[c])})" for c in lacking)
                + f" [required_cameras={rule}; videos present: {mp4s}]",
            )
        cameras: dict[str, CameraStream] = {}
        trimmed: dict[str, int] = {}
        for camera, file_name in chosen.items():
            where = f"{ref}/{VIDEOS_DIR}/{file_name} (camera '{camera}')"
            info = probe_video(videos / file_name, where)
            extra = info.frames - num_frames
            if extra != 0 and not (0 < extra <= self.options.frame_count_tolerance):
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH,
                    f"{where}: video has {info.frames} frames but the states have {num_frames} lines"
                    + (f" (frame_count_tolerance={self.options.frame_count_tolerance})" if extra > 0 else ""),
                )
            if extra:
                trimmed[camera] = extra
            cameras[camera] = CameraStream(
                name=camera,
                num_frames=keep,
                open_frames=_frame_reader(
                    videos / file_name, where, info.frames, keep, self.options.decode_threads, life
                ),
                thread_safe=True,  # each stream opens its own container
                source_name=file_name.removesuffix(VIDEO_SUFFIX),  # e.g. left_realsense_rgb -> cam_main
                source_file=f"{ref}/{VIDEOS_DIR}/{file_name}",
            )
        if missing:
            flags.append("missing_cameras")
        if trimmed:
            flags.append("video_frames_trimmed")
        meta: dict[str, Any] = {"missing_cameras": missing}  # each camera's file: its stream's source_file
        unlisted = [f for f in mp4s if f not in chosen.values()]
        if unlisted:
            meta["unlisted_videos"] = unlisted
        if trimmed:
            meta["video_frames_trimmed"] = trimmed
        return cameras, meta

    def _language(self, ref: str, task_dir: Path, task_info: TaskInfo | None, flags: list[str]) -> tuple[str, str]:
        if task_info is not None and task_info.prompt and task_info.prompt.strip():
            return task_info.prompt.strip(), "task_info"
        if (task_dir / TASK_DESC).is_file():
            prompt = _task_desc_prompt(_read_json(task_dir / TASK_DESC, TASK_DESC, ref), ref)
            if prompt and prompt.strip():
                return prompt.strip(), "task_desc"
        if self.options.language_fallback == "folder_name":
            flags.append("language_from_folder_name")
            return task_dir.name.replace("_", " ").strip(), "folder_name"
        raise EpisodeError(
            Reason.MISSING_LANGUAGE,
            f"{ref}: no prompt in {TASK_INFO} or {TASK_DESC} (language_fallback=none)",
        )

    # -- samples ----------------------------------------------------------------------

    @classmethod
    def write_samples(cls, out_dir: Path, seed: int = 0) -> dict[str, str | None]:
        """Write the sample set of ``SAMPLE_TASKS``; returns ref -> expected reason (None = converts)."""
        return write_samples(Path(out_dir), seed)

    @classmethod
    def write_synthetic(
        cls, out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0
    ) -> None:
        write_synthetic(Path(out_dir), episodes=episodes, frames=frames, height=height, width=width, seed=seed)



# --------------------------------------------------------------------------------------
# Sample data: the native layout written with json and PyAV, with deliberate defects
# --------------------------------------------------------------------------------------

#: defect -> outcome the converter must give it (None: the episode converts, flagged where noted)
SAMPLE_DEFECTS: dict[str, Reason | None] = {
    "missing_secondary_video": None,  # partial download: a non-primary camera's MP4 is absent (flagged)
    "no_episode_meta": None,  # partial download: meta/episode_meta.json is absent (flagged)
    "skewed_arms": None,  # right-arm timestamps differ from the left by < 2 ms; zipped by line index
    "stray_partial_file": None,  # an interrupted download left videos/<camera>.mp4.<random> beside the MP4
    "malformed_line": Reason.CORRUPT_FILE,  # one line of states.jsonl cut in half mid-file
    "no_states": Reason.MISSING_FILE,  # partial download: no states/ folder
    "truncated_video": Reason.VIDEO_DECODE_ERROR,  # primary MP4 cut to 60 % (its index, written last, is lost)
    "states_cut": Reason.LENGTH_MISMATCH,  # states.jsonl lost its last lines; episode_meta says more frames
    "short_video": Reason.FRAME_COUNT_MISMATCH,  # the wrist MP4 has 3 frames fewer than the states
    "no_videos": Reason.MISSING_CAMERA,  # partial download: empty videos/ folder
    "missing_primary_video": Reason.MISSING_CAMERA,  # the main camera's MP4 is absent
    "nan_joint": Reason.NON_FINITE_VALUES,  # a NaN in joint_positions (Python's json writes NaN)
    "no_timestamp": Reason.MISSING_KEY,  # one line lacks "timestamp"
    "arm_length_mismatch": Reason.LENGTH_MISMATCH,  # right_states.jsonl 4 lines shorter than left_states.jsonl
    "corrupt_task_info": Reason.INVALID_METADATA,  # the task's meta/task_info.json is cut mid-way
}


@dataclass(frozen=True)
class SampleTask:
    folder: str
    embodiment: str
    prompt: str
    episodes: tuple[tuple[str, str | None], ...]  # (episode folder suffix, defect)
    release: str = "table30"  # "table30" (verified Table30 keys/files) | "later" (keys/files of later recordings)
    robot_id: str | None = None
    task_info: str = "present"  # present | absent | corrupt
    task_desc: bool = False
    robot_id_in_episode_meta: bool = False


SAMPLE_TASKS: tuple[SampleTask, ...] = (
    SampleTask(
        "arrange_paper_cups", "arx5", "stack the paper cups into a pyramid", robot_id="arx5_1", task_desc=True,
        episodes=(("000000", None), ("000001", None), ("000002", "missing_secondary_video"),
                  ("000003", "malformed_line"), ("000004", "no_states"), ("000005", "truncated_video"),
                  ("000006", "states_cut")),
    ),
    SampleTask(
        "shred_scrap_paper", "ur5", "put the scrap paper into the shredder", robot_id="ur5_1",
        episodes=(("000000", None), ("000001", None), ("000002", "short_video"), ("000003", "no_videos"),
                  ("000004", "nan_joint")),
    ),
    SampleTask(
        "press_three_buttons", "franka", "press the three buttons from left to right", robot_id="franka_1",
        episodes=(("FFFFFF", None), ("000081", None), ("000082", "missing_primary_video"),
                  ("000083", "no_timestamp")),
    ),
    SampleTask(
        "pour_fries_into_plate", "aloha", "pour the fries from the box onto the plate", task_info="absent",
        task_desc=True,
        episodes=(("000000", None), ("000001", "skewed_arms"), ("000002", "arm_length_mismatch"),
                  ("000003", "no_episode_meta")),
    ),
    SampleTask(
        "wipe_the_table", "arx5", "", release="later", robot_id="rc_arx5_5", task_info="absent",
        robot_id_in_episode_meta=True, episodes=(("000000", None), ("000001", "stray_partial_file")),
    ),
    SampleTask("turn_on_faucet", "ur5", "", task_info="absent", episodes=(("000000", None),)),
    SampleTask(
        "sort_books", "arx5", "put the books back on the shelf", robot_id="arx5_2", task_info="corrupt",
        episodes=(("000000", "corrupt_task_info"),),
    ),
)

#: Franka's sample folder is the release's ``episode_FFFFFF``; its episode_idx is this
FRANKA_FFFFFF_INDEX = 80
SAMPLE_HW = (96, 128)  # 4:3 like the release's 480x640; multiples of 16 (see write_video)

#: per embodiment: arm home pose, reach (max waypoint offset per dimension) and gripper (open, grasped)
_MOTION: dict[str, dict[str, Any]] = {
    "arx5": {"home": (0.0, 0.85, 1.0, -0.55, 0.0, 0.0), "reach": 0.45, "gripper": (0.087, 0.028)},
    "ur5": {"home": (0.0, -1.571, -1.571, -1.571, 1.571, 0.06), "reach": 0.5, "gripper": (3.0, 228.0)},
    "franka": {"home": (0.45, 0.0, 0.35, 0.0), "reach": (0.12, 0.15, 0.12, 0.6), "gripper": (0.085, 0.031)},
    "aloha": {"home": (0.0, -0.3, 0.4, 0.0, 0.3, 0.0), "reach": 0.35, "gripper": (0.0517, 0.0029)},
}
_FRANKA_JOINT_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
_FRANKA_IK = np.array([  # toy linear map from (dx, dy, dz, yaw) to joint offsets, for the joint_positions extra
    [0.2, 2.0, 0.0, 0.0], [1.5, 0.0, -1.0, 0.0], [0.0, 0.5, 0.0, 0.0], [2.0, 0.0, 1.5, 0.0],
    [0.0, 0.3, 0.0, 0.2], [-1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0],
])

#: how the release encodes each robot's MP4s (verified: Franka yuv444p, GOP 30, no B-frames; others yuv420p)
_VIDEO_ENCODING: dict[str, dict[str, Any]] = {
    "franka": {"pix_fmt": "yuv444p", "options": {"bf": "0", "g": "30"}},
    "default": {"pix_fmt": "yuv420p", "options": {}},
}

#: camera view used by the toy renderer: overview | side | wrist:<arm index>
_VIEWS = {
    "cam_global": "overview", "cam_main": "overview", "cam_high": "overview", "cam_side": "side",
    "cam_wrist": "wrist:0", "cam_left_wrist": "wrist:0", "cam_right_wrist": "wrist:1",
}


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """Write every task of ``SAMPLE_TASKS`` under ``out_dir``; byte-identical for a given seed."""
    expected: dict[str, str | None] = {}
    for task_index, task in enumerate(SAMPLE_TASKS):
        task_dir = out_dir / task.folder
        _write_task_files(task_dir, task, SAMPLE_HW)
        for number, (suffix, defect) in enumerate(task.episodes):
            rng = np.random.default_rng([seed, task_index, number])
            _write_episode(task_dir, task, suffix, defect, rng, SAMPLE_HW)
            outcome = SAMPLE_DEFECTS[defect] if defect else None
            expected[f"{task.folder}/{DATA_DIR}/episode_{suffix}"] = outcome.value if outcome else None
    return expected


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """``episodes`` valid episodes of ``frames`` frames, cycling ARX5, ALOHA and Franka (three cameras each)."""
    cycle = (
        SampleTask("arrange_flowers", "arx5", "insert the flowers into the vase", (), robot_id="arx5_1"),
        SampleTask("pour_fries_into_plate", "aloha", "pour the fries onto the plate", (), robot_id="aloha_1"),
        SampleTask("press_three_buttons", "franka", "press the three buttons", (), robot_id="franka_1"),
    )
    for task in cycle[: max(0, min(episodes, len(cycle)))]:
        _write_task_files(out_dir / task.folder, task, (height, width))
    for i in range(episodes):
        task = cycle[i % len(cycle)]
        rng = np.random.default_rng([seed, i])
        _write_episode(out_dir / task.folder, task, f"{i // len(cycle):06d}", None, rng, (height, width),
                       num_frames=frames, encoder_threads=0)


def _dump(path: Path, obj: Any, *, indent: int, newline: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent) + ("\n" if newline else ""), encoding="utf-8")


def _write_task_files(task_dir: Path, task: SampleTask, hw: tuple[int, int]) -> None:
    (task_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)
    if task.task_info != "absent":
        info = {
            "robot_id": task.robot_id,
            "task_desc": {
                "task_name": task.folder,
                "prompt": task.prompt,
                "scoring": "one point per completed step",
                "task_tag": ["table-top", f"{EMBODIMENT_SPECS[task.embodiment].layout}-arm"],
            },
            "video_info": {"fps": 30, "width": hw[1], "height": hw[0]},
        }
        _dump(task_dir / TASK_INFO, info, indent=4, newline=True)
        if task.task_info == "corrupt":
            path = task_dir / TASK_INFO
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    if task.task_desc:
        _dump(task_dir / TASK_DESC, {"task_name": task.folder, "prompt": task.prompt}, indent=4, newline=True)


def _min_jerk(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    tau = np.arange(1, steps + 1) / steps
    s = tau**3 * (10 - 15 * tau + 6 * tau**2)
    return a + s[:, None] * (b - a)


def _motion(rng: np.random.Generator, n: int, home: np.ndarray, reach: np.ndarray, arms: int) -> list[np.ndarray]:
    """Per arm ``[n, D + 1]``: pose then gripper closedness (0 open .. 1 closed).

    Still prefix of 12-20 %, then reach, descend, close, a still hold (>= 12 %), carry,
    open and retreat on minimum-jerk profiles. All arms share the schedule, so still
    stretches are still everywhere (and in every camera).
    """
    idle = int(round(n * rng.uniform(0.12, 0.20)))
    weights = rng.dirichlet([3.0, 2.0, 1.0, 1.5, 3.0, 1.0, 2.0])
    weights[3] = max(weights[3], 0.12)
    weights /= weights.sum()
    moving = n - 1 - idle
    steps = np.maximum(1, np.floor(weights * moving).astype(int))
    steps[-1] = max(1, moving - int(steps[:-1].sum()))
    out = []
    for _ in range(arms):
        points = [home + rng.uniform(-1.0, 1.0, len(home)) * reach for _ in range(4)]
        knots = [(points[0], 0.0), (points[1], 0.0), (points[1], 1.0), (points[1], 1.0),
                 (points[2], 1.0), (points[2], 0.0), (points[3], 0.0)]
        rows = [np.repeat(np.append(home, 0.0)[None], idle + 1, axis=0)]
        for (pose, closed), k in zip(knots, steps):
            rows.append(_min_jerk(rows[-1][-1], np.append(pose, closed), int(k)))
        out.append(np.concatenate(rows)[:n])
    return out


def _quat_from_rpy(rpy: np.ndarray) -> np.ndarray:
    """``[n, 3]`` roll/pitch/yaw -> ``[n, 4]`` unit quaternions (x, y, z, w)."""
    cr, sr = np.cos(rpy[:, 0] / 2), np.sin(rpy[:, 0] / 2)
    cp, sp = np.cos(rpy[:, 1] / 2), np.sin(rpy[:, 1] / 2)
    cy, sy = np.cos(rpy[:, 2] / 2), np.sin(rpy[:, 2] / 2)
    return np.stack([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy], axis=1)


def _toy_fk(j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth stand-in for forward kinematics: joints ``[n, 6]`` -> (xyz ``[n, 3]``, rpy ``[n, 3]``)."""
    xyz = np.stack([0.30 + 0.15 * np.sin(j[:, 1]) + 0.05 * np.cos(j[:, 2]), 0.25 * np.sin(j[:, 0]),
                    0.30 + 0.12 * np.cos(j[:, 1] + j[:, 2])], axis=1)
    rpy = np.stack([np.pi + 0.5 * j[:, 3], 0.5 * j[:, 4], j[:, 0] + j[:, 5]], axis=1)
    return xyz, rpy


def _sample_times(task: SampleTask, rng: np.random.Generator, n: int) -> np.ndarray:
    t0 = 1.749e9 + float(rng.uniform(0.0, 1e7))
    if task.embodiment == "aloha":  # verified: ALOHA clocks tick exactly 33 ms, rounded to ms
        return np.round(round(t0, 3) + 0.033 * np.arange(n), 3)
    if task.embodiment == "ur5":  # verified: irregular, 2 ms .. 0.4 s between lines
        dt = np.maximum(0.002, rng.gamma(2.0, 1 / 60.0, n - 1))
    else:
        dt = (1 / 30.0) * (1.0 + rng.uniform(-0.3, 0.3, n - 1))
    return t0 + np.concatenate([[0.0], np.cumsum(dt)])


def _state_lines(task: SampleTask, motion: list[np.ndarray], times: np.ndarray, rng: np.random.Generator,
                 defect: str | None) -> dict[str, list[dict[str, Any]]]:
    """The JSON objects of each state file, in the release's key order."""
    emb, n, fps = task.embodiment, len(times), 30.0
    g_open, g_closed = _MOTION[emb]["gripper"]
    lines: dict[str, list[dict[str, Any]]] = {}
    for arm, m in zip(STATE_FILES[EMBODIMENT_SPECS[emb].layout], motion):
        pose, closed = m[:, :-1], m[:, -1]
        grip = g_open + closed * (g_closed - g_open)
        if emb == "franka":
            yaw = pose[:, 3]
            quat = np.stack([np.cos(yaw / 2), np.sin(yaw / 2), np.zeros(n), np.zeros(n)], axis=1)  # down-facing
            joints = _FRANKA_JOINT_HOME + (pose - _MOTION["franka"]["home"]) @ _FRANKA_IK.T
            command = (np.gradient(closed) > 1e-6).astype(float)  # 1 while the gripper is commanded to close
            cols = {"joint_positions": joints, "ee_positions": np.concatenate([pose[:, :3], quat], axis=1),
                    "gripper": np.stack([command, np.zeros(n)], axis=1), "gripper_width": grip[:, None]}
        else:
            xyz, rpy = _toy_fk(pose)
            quat = np.concatenate([xyz, _quat_from_rpy(rpy)], axis=1)
            vel = np.gradient(pose, axis=0) * fps + rng.normal(0.0, 0.005, pose.shape)
            if emb == "arx5" and task.release == "table30":
                cols = {"joint_positions": pose, "joint_velocities": vel,
                        "end_effector_pose": np.concatenate([xyz, rpy], 1),
                        "gripper_width": grip, "gripper_velocity": np.gradient(grip) * fps}
            elif emb == "arx5":
                effort = np.concatenate([2.0 * np.sin(pose) + 0.3 * vel, 0.5 * closed[:, None]], axis=1)
                cols = {"joint_positions": pose, "joint_velocities": vel, "effort": effort, "ee_positions": quat,
                        "gripper_width": grip, "gripper_velocity": np.gradient(grip) * fps}
            elif emb == "ur5":
                cols = {"joint_positions": pose, "ee_positions": quat, "gripper": np.round(grip).astype(int)}
            else:  # aloha: qpos is joint_positions one line late (verified on the release sample)
                qpos = np.concatenate([pose[:1], pose[:-1]])
                gvel = np.gradient(grip) * fps
                cols = {"joint_positions": pose, "joint_vel": np.concatenate([vel, gvel[:, None]], axis=1),
                        "gripper": grip, "qpos": qpos, "ee_pose_quaternion": quat,
                        "ee_pose_rpy": np.concatenate([xyz, rpy], axis=1)}
        stamps = times + (rng.uniform(-0.0015, 0.0015, n) if (arm == "right" and defect == "skewed_arms") else 0.0)
        rows = []
        for i in range(n):
            row = {k: (v[i].tolist() if v.ndim == 2 else v[i].item()) for k, v in cols.items()}
            row[TIMESTAMP_KEY] = float(stamps[i])
            rows.append(row)
        lines[arm] = rows
    return lines


def _write_episode(task_dir: Path, task: SampleTask, suffix: str, defect: str | None, rng: np.random.Generator,
                   hw: tuple[int, int], *, num_frames: int | None = None, encoder_threads: int = 1) -> None:
    spec = EMBODIMENT_SPECS[task.embodiment]
    ep_dir = task_dir / DATA_DIR / f"episode_{suffix}"
    ep_dir.mkdir(parents=True, exist_ok=True)
    n = num_frames or int(rng.integers(45, 91))
    params = _MOTION[task.embodiment]
    home = np.asarray(params["home"], dtype=np.float64)
    reach = np.broadcast_to(np.asarray(params["reach"], dtype=np.float64), home.shape)
    motion = _motion(rng, n, home, reach, len(spec.arms))
    times = _sample_times(task, rng, n)
    lines = _state_lines(task, motion, times, rng, defect)

    if defect == "nan_joint":
        lines[""][n // 2]["joint_positions"][2] = math.nan
    if defect == "no_timestamp":
        del lines[""][n // 3][TIMESTAMP_KEY]
    if defect == "arm_length_mismatch":
        lines["right"] = lines["right"][:-4]
    if defect != "no_states":
        for arm, rel in STATE_FILES[spec.layout].items():
            rows = lines[arm][:-7] if defect == "states_cut" else lines[arm]
            text = [json.dumps(row, separators=(",", ":")) for row in rows]
            if defect == "malformed_line":
                k = n // 2
                text[k] = text[k][: len(text[k]) // 2]
            path = ep_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(t + "\n" for t in text), encoding="utf-8")

    if defect != "no_episode_meta":
        index = FRANKA_FFFFFF_INDEX if suffix == "FFFFFF" else int(suffix)
        start, end = float(times[0]) - float(rng.uniform(0.01, 0.05)), float(times[-1])
        if task.release == "later":
            meta: dict[str, Any] = {"start_time": start, "end_time": end, "frames": n}
            if task.robot_id_in_episode_meta:
                meta["robot_id"] = task.robot_id
            meta["features"] = {
                cam: {"intrinsics": [[600.0, 0.0, hw[1] / 2], [0.0, 600.0, hw[0] / 2], [0.0, 0.0, 1.0]],
                      "extrinsics": {}}
                for cam, _ in spec.cameras
            }
            _dump(ep_dir / EPISODE_META, meta, indent=2, newline=True)
        elif task.embodiment == "franka":  # verified quirk: episode_idx, 2-space indent, trailing newline
            _dump(ep_dir / EPISODE_META, {"episode_idx": index, "start_time": start, "end_time": end, "frames": n},
                  indent=2, newline=True)
        else:
            _dump(ep_dir / EPISODE_META, {"episode_index": index, "start_time": start, "end_time": end, "frames": n},
                  indent=4, newline=False)

    videos = ep_dir / VIDEOS_DIR
    videos.mkdir(parents=True, exist_ok=True)
    if defect == "no_videos":
        return
    secondary = [c for c, _ in spec.cameras if c != spec.primary_camera]
    skip = {"missing_secondary_video": secondary[-1], "missing_primary_video": spec.primary_camera}.get(defect)
    encoding = _VIDEO_ENCODING.get(task.embodiment, _VIDEO_ENCODING["default"])
    for camera, stems in spec.cameras:
        if camera == skip:
            continue
        stem = stems[0] if task.release == "table30" else stems[-1]
        path = videos / f"{stem}{VIDEO_SUFFIX}"
        count = n - 3 if (defect == "short_video" and camera == "cam_wrist") else n
        frames = (_render(camera, [m[i] for m in motion], home, reach, hw) for i in range(count))
        write_video(path, frames, hw, encoding["pix_fmt"], encoding["options"], threads=encoder_threads)
        if defect == "truncated_video" and camera == spec.primary_camera:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 6 // 10])
        if defect == "stray_partial_file" and camera == spec.primary_camera:
            data = path.read_bytes()
            (videos / f"{stem}{VIDEO_SUFFIX}.9F9FaDFb").write_bytes(data[: len(data) * 4 // 10])


def write_video(path: Path, frames: Iterator[np.ndarray], hw: tuple[int, int], pix_fmt: str,
                options: dict[str, str], *, threads: int = 1, fps: int = 30) -> None:
    """H.264 MP4 through libx264, one frame at a time (single-threaded = byte-identical output)."""
    if pix_fmt == "yuv420p" and (hw[0] % 2 or hw[1] % 2):
        pix_fmt = "yuv444p"  # 4:2:0 needs even sizes
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "veryfast", "crf": "28", "threads": str(threads), **options}
        )
        stream.height, stream.width, stream.pix_fmt = hw[0], hw[1], pix_fmt
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


_BACKGROUNDS: dict[tuple[str, int, int], np.ndarray] = {}


def _background(camera: str, h: int, w: int) -> np.ndarray:
    key = (camera, h, w)
    if key not in _BACKGROUNDS:
        tint = float(sum(camera.encode()) % 5) * 8.0
        rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        wall = np.array([165 + tint, 172, 182 - tint], np.float32)
        table = np.array([118, 96 + tint, 72], np.float32)
        img = np.where(rows < 0.38, wall, table + (rows - 0.38) * 50.0) * np.ones((1, w, 1), np.float32)
        img[int(h * 0.38): int(h * 0.38) + max(1, h // 40)] = (88, 78, 66)
        img[int(h * 0.45):, :: max(6, w // 10)] *= 0.88  # plank seams
        _BACKGROUNDS[key] = np.clip(img, 0, 255).astype(np.uint8)
    return _BACKGROUNDS[key]


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    alpha = np.clip(r - np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) + 0.5, 0.0, 1.0)[..., None]
    window = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.rint(window * (1.0 - alpha) + alpha * np.asarray(colour, np.float32)).astype(np.uint8)


def _render(
    camera: str, arms: list[np.ndarray], home: np.ndarray, reach: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """One RGB frame of a toy scene drawn from the state (same state -> same pixels).

    Overview cameras show one disc per arm moving with its first two pose dimensions and
    shrinking as the gripper closes; the side camera shows the second and third; a wrist
    camera shows the target object moving against its arm's motion and two finger bars
    whose gap follows the gripper.
    """
    h, w = hw
    img = _background(camera, h, w).copy()
    view = _VIEWS[camera]
    colours = ((214, 62, 44), (46, 92, 214))
    for a, state in enumerate(arms):
        u = np.clip((state[:-1] - home) / reach, -1.0, 1.0)
        closed = float(state[-1])
        centre = 0.5 + (a - (len(arms) - 1) / 2) * 0.4
        if view == "overview":
            _disc(img, w * (centre + 0.22 * u[0]), h * (0.62 + 0.2 * u[1]), h * (0.14 - 0.05 * closed), colours[a % 2])
        elif view == "side":
            _disc(img, w * (centre + 0.22 * u[1]), h * (0.55 - 0.25 * u[2]), h * (0.12 - 0.04 * closed), colours[a % 2])
        elif int(view.split(":")[1]) == a:
            _disc(img, w * (0.5 - 0.3 * u[0]), h * (0.45 - 0.3 * u[1]), h * 0.2, (228, 198, 42))
            gap = w * (0.06 + 0.2 * (1.0 - closed))
            bar = max(2, int(w * 0.06))
            for x0 in (int(w / 2 - gap) - bar, int(w / 2 + gap)):
                img[int(h * 0.78):, max(0, x0): max(0, x0 + bar)] = (66, 66, 70)
    return img
