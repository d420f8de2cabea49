"""In-house rig recordings: the ALOHA/ACT HDF5 layout plus one ``metadata.json`` per task folder.

The format is specified in ``docs/inhouse_format.md``; this module is its only reader.
Layout::

    <root>/<task_folder>/metadata.json
    <root>/<task_folder>/episode_<n>.hdf5   # /observations/{qpos,qvel,effort,images/<cam>}, /action

Every folder holding ``episode_*.hdf5`` files is a task folder and needs its own
``metadata.json``. Each HDF5 file is one episode; its source-episode ref is its
POSIX path relative to the root. Camera frames stream from the open HDF5 file a
few frames at a time: raw ``uint8 [T,H,W,3]``, JPEG bytes padded to a common
length (``uint8 [T,L]`` + optional root ``/compress_len [num_cameras,T]``, as
ALOHA's recorder writes them) or variable-length JPEG bytes (``vlen uint8 [T]``).

Sample data in this format (three robots, good and deliberately broken episodes) is
written by ``pipelines/samples/inhouse.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from converters import register
from converters.base import Converter, SourceCard, episode_file, option
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import (
    ActionKind,
    CameraStream,
    Episode,
    TimestampOrigin,
    decode_image_bytes,
)
from pipelines.episode_store.schema import METADATA_SUCCESS

METADATA_FILE = "metadata.json"
EPISODE_FILE_RE = re.compile(r"^episode_(.+)\.hdf5$")
FORMAT_VERSION = 1

#: robot_type (as written in metadata.json) -> embodiment id. Add a row for a new rig.
ROBOT_EMBODIMENTS: dict[str, str] = {
    "franka": "franka",
    "fr3": "franka",
    "panda": "franka",
    "ur5": "ur5",
    "ur5e": "ur5",
    "arx5": "arx5",
    "arx": "arx5",
    "agibot_g1": "agibot_g1",
    "aloha": "aloha",
    "aloha2": "aloha",
    "sawyer": "sawyer",
}
EMBODIMENTS = ("agibot_g1", "aloha", "arx5", "franka", "sawyer", "ur5")

#: dataset keys inside an episode file
QPOS, QVEL, EFFORT, ACTION, TIMESTAMP = (
    "/observations/qpos",
    "/observations/qvel",
    "/observations/effort",
    "/action",
    "/timestamp",
)
IMAGES = "/observations/images"
COMPRESS_LEN = "/compress_len"

#: optional per-joint streams copied to ``Episode.extras``: key -> (extras name, name suffix)
EXTRA_STREAMS = {QVEL: ("qvel", "_vel"), EFFORT: ("effort", "_effort")}

SLUG_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
CHANNEL_ORDERS = ("RGB", "BGR")
METADATA_KEYS = {
    "format_version",
    "instruction",
    "instruction_alternatives",
    "robot_type",
    "embodiment",
    "fps",
    "camera_names",
    "joint_names",
    "action_names",
    "action_kind",
    "image_channel_order",
    "episodes",
    "extra",
}
EPISODE_OVERRIDE_KEYS = {"instruction", "instruction_alternatives"}

# Errors h5py raises for unreadable bytes (truncated files, broken chunks, bad headers).
_H5_READ_ERRORS = (OSError, RuntimeError)


@dataclass(frozen=True)
class InhouseOptions:
    """``sources.<name>.options`` of a source in the in-house layout (docs/inhouse_format.md §4.4)."""

    #: frames read from HDF5 per block while streaming a camera
    frame_block: int = option(8, ge=1)


# --------------------------------------------------------------------------------------
# metadata.json
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskMetadata:
    """One task folder's ``metadata.json``, validated (see docs/inhouse_format.md)."""

    instruction: str
    robot_type: str
    embodiment: str
    fps: float
    camera_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    action_names: tuple[str, ...] | None
    action_kind: ActionKind
    image_channel_order: str
    instruction_alternatives: tuple[str, ...] = ()
    episodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path, where: str) -> TaskMetadata:
        if not path.is_file():
            raise EpisodeError(Reason.MISSING_METADATA, f"{where}: task folder has no {path.name} ({path})")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {path} is not UTF-8: {exc}") from exc
        except OSError as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read {path}: {exc}") from exc
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw, f"{where}: {path}")

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TaskMetadata:
        def bad(message: str) -> EpisodeError:
            return EpisodeError(Reason.INVALID_METADATA, f"{where}: {message}")

        if not isinstance(raw, dict):
            raise bad(f"top level must be a JSON object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - METADATA_KEYS)
        if unknown:
            raise bad(f"unknown keys {unknown} (allowed: {sorted(METADATA_KEYS)}; free-form data goes in 'extra')")
        version = raw.get("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT,
                f"{where}: format_version {version!r} (this converter reads {FORMAT_VERSION})",
            )
        for key in ("instruction", "robot_type", "fps", "camera_names", "joint_names"):
            if key not in raw:
                raise bad(f"missing required key '{key}'")

        instruction = raw["instruction"]
        if not isinstance(instruction, str):
            raise bad(f"'instruction' must be a string, got {instruction!r}")
        robot_type = raw["robot_type"]
        if not isinstance(robot_type, str) or not SLUG_RE.match(robot_type):
            raise bad(f"'robot_type' must be a lowercase slug like 'franka', got {robot_type!r}")
        embodiment = raw.get("embodiment", ROBOT_EMBODIMENTS.get(robot_type))
        if embodiment is None:
            raise bad(f"robot_type {robot_type!r} has no default embodiment; set 'embodiment' (one of {EMBODIMENTS})")
        if embodiment not in EMBODIMENTS:
            raise bad(f"embodiment {embodiment!r} is not one of {EMBODIMENTS}")
        fps = raw["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise bad(f"'fps' must be a number > 0, got {fps!r}")
        camera_names = _name_list(raw["camera_names"], "camera_names", bad)
        joint_names = _name_list(raw["joint_names"], "joint_names", bad)
        action_names = None
        if "action_names" in raw:
            action_names = _name_list(raw["action_names"], "action_names", bad)
        try:
            action_kind = ActionKind(raw.get("action_kind", ActionKind.JOINT_POSITION.value))
        except ValueError:
            raise bad(f"'action_kind' {raw['action_kind']!r} is not one of {[k.value for k in ActionKind]}") from None
        channel_order = raw.get("image_channel_order", "RGB")
        if channel_order not in CHANNEL_ORDERS:
            raise bad(f"'image_channel_order' must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        alternatives = _string_list(raw.get("instruction_alternatives", []), "instruction_alternatives", bad)
        episodes = raw.get("episodes", {})
        if not isinstance(episodes, dict):
            raise bad("'episodes' must be an object keyed by episode file name")
        for file_name, override in episodes.items():
            if not EPISODE_FILE_RE.match(file_name):
                raise bad(f"'episodes' key {file_name!r} is not an episode file name like 'episode_3.hdf5'")
            if not isinstance(override, dict) or set(override) - EPISODE_OVERRIDE_KEYS:
                raise bad(f"'episodes[{file_name!r}]' may only set {sorted(EPISODE_OVERRIDE_KEYS)}, got {override!r}")
            if "instruction" in override and not isinstance(override["instruction"], str):
                raise bad(f"'episodes[{file_name!r}].instruction' must be a string")
            alternatives_key = f"episodes[{file_name!r}].instruction_alternatives"
            _string_list(override.get("instruction_alternatives", []), alternatives_key, bad)
        extra = raw.get("extra", {})
        if not isinstance(extra, dict):
            raise bad("'extra' must be a JSON object")
        return cls(
            instruction=instruction,
            robot_type=robot_type,
            embodiment=embodiment,
            fps=float(fps),
            camera_names=camera_names,
            joint_names=joint_names,
            action_names=action_names,
            action_kind=action_kind,
            image_channel_order=channel_order,
            instruction_alternatives=alternatives,
            episodes=episodes,
            extra=extra,
        )

    def for_episode(self, file_name: str) -> tuple[str, list[str]]:
        """The instruction and its alternatives for one episode file (per-episode overrides applied)."""
        override = self.episodes.get(file_name, {})
        return (
            override.get("instruction", self.instruction),
            list(override.get("instruction_alternatives", self.instruction_alternatives)),
        )


def _string_list(value: Any, key: str, bad) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"'{key}' must be a list of strings, got {value!r}")
    return tuple(value)


def _name_list(value: Any, key: str, bad) -> tuple[str, ...]:
    names = _string_list(value, key, bad)
    if not names:
        raise bad(f"'{key}' must not be empty")
    if any(not n for n in names) or len(set(names)) != len(names):
        raise bad(f"'{key}' must hold unique non-empty names, got {list(names)}")
    odd = [n for n in names if "/" in n or n in (".", "..")]
    if odd:  # names become HDF5 paths (observations/images/<camera>): one must name one dataset
        raise bad(f"'{key}' holds names that are paths, not names: {odd}")
    return names


# --------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------


@register
class InhouseConverter(Converter):
    """Our rigs' ALOHA/ACT-layout HDF5 recordings (one file per episode, metadata.json per task)."""

    name = "inhouse"
    source_version = "aloha-hdf5-1"
    converter_version = "1.2.0"
    embodiments = EMBODIMENTS
    control_hz = 50.0  # ALOHA's rate; every task folder's metadata.json gives its own fps
    card = SourceCard.load("inhouse")  # converters/cards/inhouse.yaml
    options_type = InhouseOptions

    def discover(self) -> list[str]:
        """Every ``episode_*.hdf5`` under ``root``, as root-relative POSIX paths.

        Sorted by task folder, then naturally by episode number (``episode_2`` before
        ``episode_10``). Folders whose name starts with ``.`` are skipped.
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"in-house root {self.root} is not a directory")
        found: list[tuple[str, tuple, str]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            folder = Path(dirpath).relative_to(self.root).as_posix()
            # files, dangling links and directories alike: whatever carries an episode's name gets an outcome
            for file_name in filenames + dirnames:
                if EPISODE_FILE_RE.match(file_name):
                    ref = file_name if folder == "." else f"{folder}/{file_name}"
                    found.append(("" if folder == "." else folder, _natural_key(file_name), ref))
        return [ref for _, _, ref in sorted(found)]

    def task_metadata(self, source_episode: str) -> TaskMetadata:
        folder = (self.root / source_episode).parent
        return TaskMetadata.from_file(folder / METADATA_FILE, source_episode)

    @contextlib.contextmanager
    def open_episode(self, source_episode: str) -> Iterator[Episode]:
        meta = self.task_metadata(source_episode)
        path = episode_file(self.root, source_episode)
        try:
            h5 = h5py.File(path, "r")
        except _H5_READ_ERRORS as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"{source_episode}: cannot open HDF5 file: {exc}") from exc
        with h5:
            try:
                episode = self._build_episode(h5, source_episode, meta)
            except _H5_READ_ERRORS as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{source_episode}: unreadable HDF5 content: {exc}") from exc
            yield episode

    # -- reading ----------------------------------------------------------------------

    def _build_episode(self, h5: h5py.File, ref: str, meta: TaskMetadata) -> Episode:
        qpos = _read_matrix(h5, QPOS, ref, required=True)
        action = _read_matrix(h5, ACTION, ref, required=True)
        num_frames = len(qpos)
        joints = list(meta.joint_names)
        if qpos.shape[1] != len(joints):
            raise EpisodeError(
                Reason.NAME_MISMATCH,
                f"{ref}:{QPOS} has {qpos.shape[1]} dimensions but metadata joint_names has {len(joints)}: {joints}",
            )
        action_names = list(meta.action_names if meta.action_names is not None else joints)
        if action.shape[1] != len(action_names):
            source = "action_names" if meta.action_names is not None else "joint_names (no action_names given)"
            raise EpisodeError(
                Reason.NAME_MISMATCH,
                f"{ref}:{ACTION} has {action.shape[1]} dimensions but metadata {source} has {len(action_names)}",
            )
        _check_length(action, num_frames, ACTION, ref)

        extras: dict[str, np.ndarray] = {}
        extra_names: dict[str, list[str]] = {}
        for key, (extra, suffix) in EXTRA_STREAMS.items():
            values = _read_matrix(h5, key, ref, required=False)
            if values is None:
                continue
            if values.shape[1] != len(joints):
                raise EpisodeError(
                    Reason.NAME_MISMATCH,
                    f"{ref}:{key} has {values.shape[1]} dimensions but metadata joint_names has {len(joints)}",
                )
            _check_length(values, num_frames, key, ref)
            extras[extra] = values
            extra_names[extra] = [f"{j}{suffix}" for j in joints]

        timestamp, origin = self._timestamps(h5, ref, num_frames, meta.fps)
        cameras, layouts, unlisted = self._cameras(h5, ref, meta, num_frames)
        file_name = Path(ref).name
        instruction, alternatives = meta.for_episode(file_name)
        folder = Path(ref).parent.as_posix()
        number = EPISODE_FILE_RE.match(file_name).group(1)
        metadata = {
            "task_folder": "" if folder == "." else folder,
            "episode_file": file_name,
            "episode_index": int(number) if number.isdigit() else None,
            "sim": _attr_bool(h5.attrs.get("sim")),
            "compress": _attr_bool(h5.attrs.get("compress")),
            "image_layouts": layouts,
            "image_channel_order": meta.image_channel_order,
        }
        if "success" in h5.attrs:  # the attempt's outcome, where the recorder knows it (curation may drop failures)
            metadata[METADATA_SUCCESS] = _attr_bool(h5.attrs["success"])
        if unlisted:
            metadata["unlisted_cameras"] = unlisted
        if meta.extra:
            metadata["extra"] = meta.extra
        return Episode(
            source_episode=ref,
            embodiment=meta.embodiment,
            robot_type=meta.robot_type,
            control_hz=meta.fps,
            timestamp=timestamp,
            state=qpos,
            state_names=joints,
            action=action,
            action_names=action_names,
            action_kind=meta.action_kind,
            instruction=instruction,
            cameras=cameras,
            timestamp_origin=origin,
            instruction_alternatives=alternatives,
            extras=extras,
            extra_names=extra_names,
            metadata=metadata,
        )

    @staticmethod
    def _timestamps(h5: h5py.File, ref: str, num_frames: int, fps: float) -> tuple[np.ndarray, TimestampOrigin]:
        ds = _dataset(h5, TIMESTAMP, ref, required=False)
        if ds is None:
            return np.arange(num_frames, dtype=np.float64) / fps, TimestampOrigin.FROM_CONTROL_RATE
        _check_numeric(ds, TIMESTAMP, ref)
        if ds.ndim != 1:
            raise EpisodeError(Reason.SHAPE_MISMATCH, f"{ref}:{TIMESTAMP} must be [T], got shape {ds.shape}")
        values = np.asarray(ds[()], dtype=np.float64)
        _check_length(values, num_frames, TIMESTAMP, ref)
        return values, TimestampOrigin.RECORDED

    def _cameras(
        self, h5: h5py.File, ref: str, meta: TaskMetadata, num_frames: int
    ) -> tuple[dict[str, CameraStream], dict[str, str], list[str]]:
        group = h5.get(IMAGES)
        if group is not None and not isinstance(group, h5py.Group):
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}:{IMAGES} is not a group")
        present = sorted(group.keys()) if group is not None else []
        missing = [c for c in meta.camera_names if c not in present]
        if missing:
            raise EpisodeError(
                Reason.MISSING_CAMERA,
                f"{ref}: camera(s) {missing} listed in metadata.json have no dataset under {IMAGES} "
                f"(present: {present})",
            )
        lengths = self._compress_len(h5, ref, meta, num_frames)
        block = self.options.frame_block
        cameras: dict[str, CameraStream] = {}
        layouts: dict[str, str] = {}
        for index, name in enumerate(meta.camera_names):
            key = f"{IMAGES}/{name}"
            ds = group[name]
            if not isinstance(ds, h5py.Dataset):
                raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}:{key} is not a dataset")
            layout = _image_layout(ds, key, ref)
            if ds.shape[0] != num_frames:
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH,
                    f"{ref}:{key} has {ds.shape[0]} frames but {QPOS} has {num_frames}",
                )
            row = lengths[index] if (lengths is not None and layout == "jpeg_padded") else None
            cameras[name] = CameraStream(
                name=name,
                num_frames=num_frames,
                open_frames=_frame_reader(ds, layout, row, meta.image_channel_order, f"{ref}:{key}", block),
                thread_safe=True,  # h5py serialises access to the shared file with its own lock
                source_file=f"{ref}:{key}",
            )
            layouts[name] = layout
        unlisted = [c for c in present if c not in meta.camera_names]
        return cameras, layouts, unlisted

    @staticmethod
    def _compress_len(h5: h5py.File, ref: str, meta: TaskMetadata, num_frames: int) -> np.ndarray | None:
        ds = _dataset(h5, COMPRESS_LEN, ref, required=False)
        if ds is None:
            return None
        _check_numeric(ds, COMPRESS_LEN, ref)
        expected = (len(meta.camera_names), num_frames)
        if ds.ndim != 2 or ds.shape[0] != expected[0]:
            raise EpisodeError(
                Reason.SHAPE_MISMATCH,
                f"{ref}:{COMPRESS_LEN} must be [num_cameras={expected[0]}, T], got shape {ds.shape}",
            )
        if ds.shape[1] != num_frames:
            raise EpisodeError(
                Reason.FRAME_COUNT_MISMATCH,
                f"{ref}:{COMPRESS_LEN} lists {ds.shape[1]} frames per camera but {QPOS} has {num_frames}",
            )
        values = np.asarray(ds[()], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise EpisodeError(Reason.CORRUPT_FILE, f"{ref}:{COMPRESS_LEN} holds non-finite lengths")
        return values.astype(np.int64)


# --------------------------------------------------------------------------------------
# HDF5 helpers
# --------------------------------------------------------------------------------------


def _natural_key(file_name: str) -> tuple:
    number = EPISODE_FILE_RE.match(file_name).group(1)
    return (0, int(number), file_name) if number.isdigit() else (1, 0, file_name)


def _dataset(h5: h5py.File, key: str, ref: str, *, required: bool) -> h5py.Dataset | None:
    obj = h5.get(key)
    if obj is None:
        if required:
            raise EpisodeError(Reason.MISSING_KEY, f"{ref}: missing dataset '{key}'")
        return None
    if not isinstance(obj, h5py.Dataset):
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}:{key} is a {type(obj).__name__}, expected a dataset")
    return obj


def _check_numeric(ds: h5py.Dataset, key: str, ref: str) -> None:
    if not (np.issubdtype(ds.dtype, np.number) or np.issubdtype(ds.dtype, np.bool_)):
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}:{key} has non-numeric dtype {ds.dtype}")


def _read_matrix(h5: h5py.File, key: str, ref: str, *, required: bool) -> np.ndarray | None:
    """A ``[T, D]`` numeric dataset as float32, or ``None`` when optional and absent."""
    ds = _dataset(h5, key, ref, required=required)
    if ds is None:
        return None
    _check_numeric(ds, key, ref)
    if ds.ndim != 2:
        raise EpisodeError(Reason.SHAPE_MISMATCH, f"{ref}:{key} must be [T, D], got shape {ds.shape}")
    return np.asarray(ds[()], dtype=np.float32)


def _check_length(values: np.ndarray, num_frames: int, key: str, ref: str) -> None:
    if len(values) != num_frames:
        raise EpisodeError(
            Reason.LENGTH_MISMATCH, f"{ref}:{key} has {len(values)} frames but {QPOS} has {num_frames}"
        )


def _attr_bool(value: Any) -> bool | None:
    """A root attribute such as ``sim``/``compress`` as a JSON-friendly bool (``None`` if absent/odd)."""
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return bool(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


def _image_layout(ds: h5py.Dataset, key: str, ref: str) -> str:
    """``raw`` | ``jpeg_padded`` | ``jpeg_vlen``, decided by the dataset's dtype and rank."""
    vlen_base = h5py.check_vlen_dtype(ds.dtype)
    if vlen_base is not None:
        if np.dtype(vlen_base) != np.uint8 or ds.ndim != 1:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT,
                f"{ref}:{key} variable-length images must be vlen uint8 [T], got vlen {vlen_base} shape {ds.shape}",
            )
        return "jpeg_vlen"
    if ds.dtype != np.uint8:
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}:{key} images must be uint8, got {ds.dtype}")
    if ds.ndim == 4:
        if ds.shape[3] != 3 or ds.shape[1] == 0 or ds.shape[2] == 0:
            raise EpisodeError(Reason.SHAPE_MISMATCH, f"{ref}:{key} raw frames must be [T, H, W, 3], got {ds.shape}")
        return "raw"
    if ds.ndim == 2:
        return "jpeg_padded"
    raise EpisodeError(
        Reason.SHAPE_MISMATCH,
        f"{ref}:{key} must be [T,H,W,3] raw, [T,L] padded JPEG or vlen [T] JPEG, got shape {ds.shape}",
    )


def _frame_reader(
    ds: h5py.Dataset, layout: str, lengths: np.ndarray | None, channel_order: str, where: str, block: int
):
    """``open_frames`` for one camera: reads ``block`` frames at a time from the open file."""
    num_frames = ds.shape[0]

    def frames() -> Iterator[np.ndarray]:
        shape = None
        for start in range(0, num_frames, block):
            stop = min(start + block, num_frames)
            try:
                rows = ds[start:stop]
            except _H5_READ_ERRORS as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read frames {start}:{stop}: {exc}") from exc
            if len(rows) != stop - start:
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH, f"{where}: read {len(rows)} frames at {start}, expected {stop - start}"
                )
            for offset, row in enumerate(rows):
                i = start + offset
                frame = _decode_row(row, layout, lengths, i, channel_order, where)
                if shape is None:
                    shape = frame.shape
                elif frame.shape != shape:
                    raise EpisodeError(
                        Reason.SHAPE_MISMATCH, f"{where}[{i}]: frame is {frame.shape}, earlier frames are {shape}"
                    )
                yield frame

    return frames


def _decode_row(
    row: np.ndarray, layout: str, lengths: np.ndarray | None, i: int, channel_order: str, where: str
) -> np.ndarray:
    if layout == "raw":
        return np.ascontiguousarray(row[..., ::-1]) if channel_order == "BGR" else row
    data = np.asarray(row, dtype=np.uint8)
    if lengths is not None:
        n = int(lengths[i])
        if not 0 < n <= len(data):
            raise EpisodeError(
                Reason.IMAGE_DECODE_ERROR,
                f"{where}[{i}]: {COMPRESS_LEN} says {n} bytes but the padded row holds {len(data)}",
            )
        data = data[:n]
    return decode_image_bytes(data, channel_order=channel_order, where=f"{where}[{i}]")
