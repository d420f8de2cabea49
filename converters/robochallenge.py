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

``pipelines/samples/robochallenge.py`` writes a small native-format sample set with json and
PyAV (H.264 through libx264, as the release's FFmpeg-written MP4s), including the quirks of the
real release and the partial downloads users run into.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from converters import register
from converters.base import Converter, SourceCard, episode_folder, is_dangling_link, option
from converters.formats.video import decode_frames, probe_video
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import CameraStream, Episode
from pipelines.episode_store.schema import ACTION_PADDED_EXTRA, ActionKind, TimestampOrigin

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
# Videos (decoded with converters/formats/video.py)
# --------------------------------------------------------------------------------------


class _Lifetime:
    """Open while the episode context is; camera streams refuse to start after it closes."""

    def __init__(self) -> None:
        self.open = True


def _frame_reader(path: Path, where: str, declared: int, limit: int, threads: int, life: _Lifetime):
    """``open_frames`` for one camera: its first ``limit`` frames, decoded one at a time from its own container."""

    def frames() -> Iterator[np.ndarray]:
        if not life.open:
            raise RuntimeError(f"{where}: episode context is closed")
        with contextlib.closing(decode_frames(path, where, expected=declared, threads=threads)) as decoded:
            for frame in itertools.islice(decoded, limit):
                yield frame.to_ndarray(format="rgb24")

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
        extras = {ACTION_PADDED_EXTRA: padded}
        extra_names = {ACTION_PADDED_EXTRA: [ACTION_PADDED_EXTRA]}
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
            extras[ACTION_PADDED_EXTRA] = np.zeros((keep, 1), dtype=bool)
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
