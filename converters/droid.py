"""DROID: the RLDS/TFDS release (1.0.1, 1.0.0) and the raw release (``droid_raw``), one converter.

The format, the field mapping and what was verified are in ``docs/sources/droid.md``.

Two input modes, chosen by the ``mode`` option (``auto`` finds both under one root):

* **RLDS** (``mode: rlds``): a TFDS dataset folder ``<root>/<version>/`` (or the version
  folder itself) with ``dataset_info.json``, ``features.json`` and
  ``<name>-train.tfrecord-XXXXX-of-YYYYY`` shards. The schema and the shard file names
  come from the dataset's own metadata through ``tfds.builder_from_directory``; every
  TFRecord shard is one work unit and its records (one ``tf.train.Example`` = one
  episode) are read one at a time (CRC-checked TFRecord framing; TensorFlow itself is
  only the fallback) and parsed with TFDS's NumPy example parser against
  ``features.json``. JPEG frames stay encoded until the writer pulls them.
* **Raw** (``mode: raw``): ``<lab>/{success,failure}/<date>/<time>/`` folders holding
  ``trajectory.h5``, ``recordings/MP4/<serial>.mp4`` (HD720, left eye) and
  ``metadata_<uuid>.json``; the language comes from ``aggregated-annotations-*.json``
  keyed by the uuid. Every trajectory folder is one work unit; MP4 frames are decoded
  with PyAV one at a time, frame *i* aligned with step *i* of the HDF5 file.

Both modes feed the same declarative tables (``STATE_FIELDS``, ``ACTION_FIELDS``,
``CAMERAS``, ``LANGUAGE_KEYS``): a table row says where a field lives in each layout.

``write_samples`` writes both layouts (with TFDS/TensorFlow, h5py and PyAV, as the
releases were written) including deliberately broken episodes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from converters import register
from converters.base import Converter, SourceCard, episode_file, option, relative_inside
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import (
    ActionKind,
    CameraStream,
    Episode,
    TimestampOrigin,
    decode_image_bytes,
)

# --------------------------------------------------------------------------------------
# Declarative tables: one row per field, saying where it lives in each layout
# --------------------------------------------------------------------------------------

CONTROL_HZ = 15.0  # DROID's control and recording rate (RobotEnv.control_hz)
EMBODIMENT = "franka"
#: source_version of raw-release episodes (droid_raw has no version folder; the RLDS ones carry theirs)
RAW_SOURCE_VERSION = "raw"
ROBOT_TYPE = "franka_panda"

JOINTS = tuple(f"joint{i}" for i in range(1, 8))
EE_POSE = ("ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw")
EE_TWIST = ("ee_vx", "ee_vy", "ee_vz", "ee_vroll", "ee_vpitch", "ee_vyaw")
GRIPPER = "gripper"

#: the gripper convention of DROID, kept unchanged and recorded in every episode's metadata
GRIPPER_CONVENTION = {
    "dimension": GRIPPER,
    "open": 0.0,
    "closed": 1.0,
    "definition": "1 - width / max_width of the Robotiq 2F-85 (droid/franka/robot.py); commands use the same scale",
}


@dataclass(frozen=True)
class Field:
    """A per-step numeric field: its dimension names and where it is stored in each layout."""

    names: tuple[str, ...]
    rlds: str  # key under ``steps/`` in the RLDS features
    raw: str  # dataset path in ``trajectory.h5``


#: state = joint positions (7) + gripper (1) + end-effector pose (6), in this order
STATE_FIELDS: tuple[Field, ...] = (
    Field(JOINTS, "observation/joint_position", "observation/robot_state/joint_positions"),
    Field((GRIPPER,), "observation/gripper_position", "observation/robot_state/gripper_position"),
    Field(EE_POSE, "observation/cartesian_position", "observation/robot_state/cartesian_position"),
)

#: every commanded stream DROID records (RLDS ``action_dict/*``, raw ``action/*``)
ACTION_FIELDS: dict[str, Field] = {
    "joint_position": Field(JOINTS, "action_dict/joint_position", "action/joint_position"),
    "joint_velocity": Field(tuple(f"{j}_vel" for j in JOINTS), "action_dict/joint_velocity", "action/joint_velocity"),
    "cartesian_position": Field(EE_POSE, "action_dict/cartesian_position", "action/cartesian_position"),
    "cartesian_velocity": Field(EE_TWIST, "action_dict/cartesian_velocity", "action/cartesian_velocity"),
    "gripper_position": Field((GRIPPER,), "action_dict/gripper_position", "action/gripper_position"),
    "gripper_velocity": Field(("gripper_vel",), "action_dict/gripper_velocity", "action/gripper_velocity"),
}

#: ``action`` option -> (arm stream of ``ACTION_FIELDS``, kind, units). The gripper dimension
#: is always ``gripper_position`` (absolute, 0 open .. 1 closed).
ACTION_CHOICES: dict[str, tuple[str, ActionKind, str]] = {
    "joint_position": ("joint_position", ActionKind.JOINT_POSITION, "rad (absolute joint targets)"),
    "joint_velocity": ("joint_velocity", ActionKind.JOINT_VELOCITY,
                       "normalized joint velocity command in [-1, 1] (DROID's IK solver scales it per step)"),
    "cartesian_velocity": ("cartesian_velocity", ActionKind.EE_VELOCITY,
                           "normalized end-effector twist command in [-1, 1] (xyz, then euler rates)"),
}
DEFAULT_ACTION = "joint_position"
GRIPPER_ACTION = "gripper_position"

#: the 7-D RLDS ``action`` whose documented meaning contradicts its width; kept opaque in extras
RLDS_ACTION = Field(tuple(f"rlds_action_{i}" for i in range(7)), "action", "")


@dataclass(frozen=True)
class Camera:
    name: str  # camera name in the store (DROID's RLDS name)
    rlds: str  # image key under ``steps/``
    raw_serial_key: str  # metadata_<uuid>.json key holding the camera's serial number
    raw_role: str  # the DROID postprocessing role ("wrist" = camera_type 0, ext1/ext2 by sorted serial)


CAMERAS: tuple[Camera, ...] = (
    Camera("exterior_image_1_left", "observation/exterior_image_1_left", "ext1_cam_serial", "ext1"),
    Camera("exterior_image_2_left", "observation/exterior_image_2_left", "ext2_cam_serial", "ext2"),
    Camera("wrist_image_left", "observation/wrist_image_left", "wrist_cam_serial", "wrist"),
)

#: (RLDS step key, raw annotation key) per instruction slot, in priority order
LANGUAGE_KEYS: tuple[tuple[str, str], ...] = (
    ("language_instruction", "language_instruction1"),
    ("language_instruction_2", "language_instruction2"),
    ("language_instruction_3", "language_instruction3"),
)

#: raw-mode clocks, first present wins (integer milliseconds since the epoch): the control tick
#: (R2D2-era writer), then the robot-state read time (``RobotEnv.get_state``)
RAW_CLOCKS: tuple[str, ...] = (
    "observation/timestamp/control/step_start",
    "observation/timestamp/robot_state/read_start",
)
RAW_CAMERA_TYPE = "observation/camera_type"
RAW_MP4_DIR = "recordings/MP4"
RAW_TRAJECTORY = "trajectory.h5"
RAW_METADATA_GLOB = "metadata_*.json"
RAW_ANNOTATIONS_GLOB = "aggregated-annotations-*.json"
#: metadata_<uuid>.json keys copied to the episode metadata (user names are left out)
RAW_METADATA_KEYS = (
    "uuid", "lab", "user_id", "date", "timestamp", "building", "scene_id", "robot_serial", "droid_version",
    "current_task", "trajectory_length", "wrist_cam_serial", "ext1_cam_serial", "ext2_cam_serial",
    "wrist_cam_extrinsics", "ext1_cam_extrinsics", "ext2_cam_extrinsics",
)

#: ``<lab>/<success|failure>/<date>/<time>/trajectory.h5`` at the end of an RLDS ``file_path``
FILE_PATH_RE = re.compile(
    r"(?:^|/)(?P<lab>[^/]+)/(?P<outcome>success|failure)/(?P<date>[^/]+)/(?P<time>[^/]+)/[^/]+\.h5$"
)
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class DroidOptions:
    """``sources.droid.options`` in params.yaml (see docs/sources/droid.md)."""

    mode: Literal["auto", "rlds", "raw"] = "auto"
    #: the RLDS version folder to read when the root is its parent, e.g. ``"1.0.1"``; None: the newest
    version: str | None = option(None, pattern=VERSION_RE.pattern)
    split: str = "train"
    action: str = option(DEFAULT_ACTION, choices=tuple(ACTION_CHOICES))
    extras: bool = True
    annotations: str | None = None


# --------------------------------------------------------------------------------------
# TFDS (schema, example parsing) and the TFRecord framing
# --------------------------------------------------------------------------------------

_MODULES: dict[str, Any] = {}


def _tensorflow():
    """TensorFlow with its C++ logging silenced and no GPU visible: only the sample writers
    (and the reader's fallback, see ``_crc32c``) need it."""
    if "tf" not in _MODULES:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # oneDNN only changes float op kernels (unused here) and announces itself on stderr at import
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        import tensorflow as tf

        with contextlib.suppress(RuntimeError, ValueError):  # already initialised: leave it
            tf.config.set_visible_devices([], "GPU")
        _MODULES["tf"] = tf
    return _MODULES["tf"]


def _tfds():
    """tensorflow_datasets; reading schemas and parsing examples with it does not import TensorFlow."""
    if "tfds" not in _MODULES:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import absl.logging
        import tensorflow_datasets as tfds

        absl.logging.set_verbosity(absl.logging.WARNING)
        _MODULES["tfds"] = tfds
    return _MODULES["tfds"]


def _crc32c():
    """google-crc32c's ``value`` (C implementation), or ``None`` when the package is missing."""
    if "crc32c" not in _MODULES:
        try:
            import google_crc32c

            _MODULES["crc32c"] = google_crc32c.value
        except ImportError:
            _MODULES["crc32c"] = None
    return _MODULES["crc32c"]


def _masked_crc(data: bytes, crc32c) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class _Damage(Exception):
    """A TFRecord framing problem at a byte offset (turned into ``corrupt_file`` by the caller)."""


class BadRecord:
    """A record whose bytes fail their CRC while the framing around it holds (the length and its
    CRC are intact, the data and footer complete): that record is lost, the next one starts where
    the length says, so the rest of the shard still reads."""

    def __init__(self, length: int, problem: str):
        self.length, self.problem = length, problem

    def __len__(self) -> int:
        return self.length


def _next_record(fh, crc32c) -> bytes | BadRecord | None:
    """The next record of an open TFRecord file (``None`` at a clean end), both CRCs checked; a record
    that fails only its data CRC comes back as :class:`BadRecord`."""
    header = fh.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise _Damage("truncated record header")
    length = int.from_bytes(header[:8], "little")
    if _masked_crc(header[:8], crc32c) != int.from_bytes(header[8:], "little"):
        raise _Damage("corrupted record length (CRC mismatch)")
    data = fh.read(length)
    footer = fh.read(4)
    if len(data) < length or len(footer) < 4:
        raise _Damage(f"truncated record ({length} bytes announced)")
    if _masked_crc(data, crc32c) != int.from_bytes(footer, "little"):
        return BadRecord(length, "corrupted record (CRC mismatch)")
    return data


def read_tfrecords(path: Path, where: str) -> Iterator[tuple[int | None, bytes | BadRecord]]:
    """``(byte offset, record)`` for each record of a TFRecord file, one at a time, both CRCs
    checked as TensorFlow's reader does. A record that fails its data CRC inside intact framing is
    yielded as a :class:`BadRecord` and reading goes on; damaged framing (a bad length CRC, a
    truncation) ends the file with ``corrupt_file``, since nothing after it can be located.

    Framing (TensorFlow's documented TFRecord format): ``uint64 length``, ``uint32 masked
    crc32c(length)``, ``data``, ``uint32 masked crc32c(data)``, little-endian. Reading it
    directly keeps TensorFlow (~450 MiB of resident libraries) out of the workers; without
    google-crc32c the reader falls back to ``tf.data.TFRecordDataset`` (offsets are then ``None``).
    """
    crc32c = _crc32c()
    if crc32c is None:
        yield from ((None, record) for record in _read_tfrecords_tf(path, where))
        return
    with open(path, "rb") as fh:
        count = offset = 0
        while True:
            try:
                box = [_next_record(fh, crc32c)]
            except _Damage as exc:
                raise EpisodeError(
                    Reason.CORRUPT_FILE, f"{where}: unreadable after record {count}: {exc} at byte {offset}"
                ) from exc
            if box[0] is None:
                return
            count += 1
            start, offset = offset, offset + 16 + len(box[0])
            yield start, box.pop()  # the suspended generator keeps no reference to the record


def read_tfrecord_at(path: Path, offset: int, where: str) -> bytes:
    """The one record starting at ``offset`` (as ``read_tfrecords`` reported it), CRCs checked."""
    crc32c = _crc32c()
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = _next_record(fh, crc32c)
    except (_Damage, OSError) as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot re-read the record at byte {offset}: {exc}") from exc
    if isinstance(data, BadRecord):
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: the record at byte {offset}: {data.problem}")
    if data is None:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: no record at byte {offset} any more")
    return data


def _read_tfrecords_tf(path: Path, where: str) -> Iterator[bytes]:
    tf = _tensorflow()
    iterator = iter(tf.data.TFRecordDataset(os.fspath(path)))
    count = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            detail = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\].*$", "", str(exc.message)).strip()
            raise EpisodeError(
                Reason.CORRUPT_FILE, f"{where}: unreadable after record {count}: {type(exc).__name__}: {detail}"
            ) from exc
        count += 1
        box = [record.numpy()]
        del record
        yield box.pop()


class UnreadableRelease(ValueError):
    """The release's own metadata (dataset_info.json, features.json) cannot be read: its shards cannot
    be listed, so the version folder is one unit, quarantined ``invalid_metadata``; raw trajectory
    folders beside it still convert."""


class RldsRelease:
    """One TFDS version folder: schema, shard list (from dataset_info.json) and a record reader."""

    def __init__(self, version_dir: Path, split: str):
        tfds = _tfds()
        from tensorflow_datasets.core import example_parser

        self.dir = version_dir
        try:
            builder = tfds.builder_from_directory(os.fspath(version_dir))
            info = builder.info
        except Exception as exc:  # noqa: BLE001 - TFDS raises many kinds for a broken folder
            raise UnreadableRelease(f"droid: {version_dir} is not a readable TFDS dataset folder: {exc}") from exc
        if split not in info.splits:
            raise ValueError(f"droid: {version_dir} has no split {split!r} (splits: {sorted(info.splits)})")
        split_info = info.splits[split]
        self.name = builder.name
        self.version = str(info.version)
        self.split = split
        self.shard_lengths: dict[str, int] = dict(zip(split_info.filenames, split_info.shard_lengths))
        self.features = info.features
        # TFDS's NumPy example parser (what its data sources use): flat lists become [T, ...] arrays
        self._parser = example_parser.ExampleParserNp(self.features.get_serialized_info())
        steps = self.features["steps"] if "steps" in self.features else None
        self.image_shapes: dict[str, tuple] = {}
        if steps is not None and "observation" in steps.feature:
            observation = steps.feature["observation"]
            for cam in CAMERAS:
                key = cam.rlds.split("/", 1)[1]
                if key in observation:
                    self.image_shapes[cam.name] = tuple(observation[key].shape)

    def records(self, path: Path, unit: str) -> Iterator[tuple[int | None, bytes]]:
        """``(offset, record)`` for the records of one shard, one at a time; damage raises after
        the good ones, as does a shard with fewer records than dataset_info.json lists."""
        expected = self.shard_lengths.get(path.name)
        count = 0
        records = read_tfrecords(path, unit)
        try:
            while True:
                box = [next(records, None)]
                if box[0] is None:
                    break
                count += 1
                yield box.pop()
        except EpisodeError as exc:
            lost = f"; {expected - count} of {expected} episodes lost" if expected is not None else ""
            raise EpisodeError(exc.reason, exc.message + lost) from exc
        if expected is not None and count != expected:
            raise EpisodeError(
                Reason.CORRUPT_FILE,
                f"{unit}: shard holds {count} records but dataset_info.json lists {expected} (truncated copy?)",
            )

    def parse(self, record: bytes) -> dict[str, Any]:
        return self._parser.parse_example(record)


# --------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------


@register
class DroidConverter(Converter):
    """DROID (Franka Panda, 15 Hz): RLDS shards or raw trajectory folders."""

    name = "droid"
    source_version = "1.0.1"  # the RLDS release read by default; each episode carries the release it came from
    converter_version = "1.2.0"
    embodiments = (EMBODIMENT,)
    control_hz = CONTROL_HZ
    #: gripper position is defined as 1 - width / max_width (droid/franka/robot.py)
    physical_limits = {EMBODIMENT: {GRIPPER: (-1e-3, 1.0 + 1e-3), GRIPPER_ACTION: (-1e-3, 1.0 + 1e-3)}}
    card = SourceCard.load("droid")  # converters/cards/droid.yaml
    options_type = DroidOptions

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        self._releases: dict[Path, RldsRelease] = {}
        self._annotations: dict[Path, tuple[str, dict[str, Any]] | None] = {}

    # -- discovery --------------------------------------------------------------------

    def discover(self) -> list[str]:
        """RLDS shard paths and/or raw trajectory folders, relative to ``root``, sorted."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"droid root {self.root} is not a directory")
        units: list[str] = []
        version_dir = self.rlds_version_dir() if self.options.mode in ("auto", "rlds") else None
        if version_dir is not None:
            rel = version_dir.relative_to(self.root).as_posix()
            try:
                release = self.release(version_dir)
            except UnreadableRelease:
                units.append(rel)  # reported by episodes(rel), as one quarantined unit
            else:
                units += [name if rel == "." else f"{rel}/{name}" for name in release.shard_lengths]
        elif self.options.mode == "rlds":
            raise FileNotFoundError(f"droid: no TFDS version folder (with dataset_info.json) at or under {self.root}")
        if self.options.mode in ("auto", "raw"):
            raw = self._raw_trajectories()
            if not raw and self.options.mode == "raw":
                raise FileNotFoundError(f"droid: no raw trajectory folder (with {RAW_TRAJECTORY}) under {self.root}")
            units += raw
        if not units:
            raise FileNotFoundError(
                f"droid: nothing to convert under {self.root}: expected a TFDS version folder "
                f"(dataset_info.json + features.json + *.tfrecord-*) or raw <lab>/<success|failure>/<date>/<time>/"
                f"{RAW_TRAJECTORY} folders"
            )
        return sorted(units)

    def rlds_version_dir(self) -> Path | None:
        """``root`` itself when it is a TFDS version folder, else the chosen (default: newest) one under it."""
        if (self.root / "dataset_info.json").is_file():
            if self.options.version is not None and self.root.name != self.options.version:
                raise ValueError(
                    f"droid: root {self.root} is version folder {self.root.name}, option asks {self.options.version}"
                )
            return self.root
        versions = {
            p.name: p
            for p in self.root.iterdir()
            if p.is_dir() and VERSION_RE.match(p.name) and (p / "dataset_info.json").is_file()
        }
        if self.options.version is not None:
            if self.options.version not in versions:
                raise FileNotFoundError(
                    f"droid: no version folder {self.options.version} under {self.root} (found: {sorted(versions)})"
                )
            return versions[self.options.version]
        if not versions:
            return None
        return versions[max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))]

    def release(self, version_dir: Path) -> RldsRelease:
        if version_dir not in self._releases:
            self._releases[version_dir] = RldsRelease(version_dir, self.options.split)
        return self._releases[version_dir]

    def _raw_trajectories(self) -> list[str]:
        """Folders holding ``trajectory.h5`` (not descending into recordings/ or TFDS version folders)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d != "recordings"
                and not (VERSION_RE.match(d) and (here / d / "dataset_info.json").is_file())
            )
            # a directory (or anything) named trajectory.h5 still makes the folder an episode, which
            # then gets an outcome (corrupt_file) instead of vanishing from the run's report
            if RAW_TRAJECTORY in dirnames:
                dirnames.remove(RAW_TRAJECTORY)
                filenames.append(RAW_TRAJECTORY)
            if RAW_TRAJECTORY in filenames and here != self.root:
                found.append(here.relative_to(self.root).as_posix())
                dirnames[:] = []  # a trajectory folder holds no further trajectories
        return found

    # -- work units -------------------------------------------------------------------

    def episodes(self, unit: str):
        path = self.root / unit
        if (path / "dataset_info.json").is_file():  # a release whose metadata cannot be read
            try:
                self.release(path)
            except UnreadableRelease as exc:
                raise EpisodeError(Reason.INVALID_METADATA, f"{unit}: {exc}") from exc
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{unit}: a TFDS version folder, not an episode")
        if path.is_dir():  # a raw trajectory folder
            yield unit, lambda: self.open_episode(unit)
            return
        yield from self._rlds_episodes(unit, path)

    def _rlds_episodes(self, unit: str, path: Path):
        release = self.release(path.parent)
        if path.name not in release.shard_lengths:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT, f"{unit}: not a shard listed in {path.parent}/dataset_info.json"
            )
        if not path.is_file():
            raise EpisodeError(Reason.MISSING_FILE, f"{unit}: shard listed in dataset_info.json is missing ({path})")
        used: dict[str, int] = {}
        records = release.records(path, unit)
        index = -1
        while True:  # no enumerate(): it keeps the previous item (and its record bytes) alive
            item = next(records, None)
            if item is None:
                return
            index += 1
            offset, record = item
            del item
            if isinstance(record, BadRecord):  # lost alone: the shard's other records still convert
                parsed, error = None, EpisodeError(
                    Reason.CORRUPT_FILE, f"{unit}#{index}: record at byte {offset}: {record.problem}")
            else:
                parsed, error = self._parse_record(release, record, f"{unit}#{index}")
            del record
            ref, ref_note = self._rlds_ref(release, path.name, index, parsed, used)
            if error is not None or offset is None:
                load = functools.partial(_held, (parsed, error))  # TensorFlow fallback: keep it
            else:  # a handle: the record is read again when opened, so nothing is kept meanwhile
                load = functools.partial(self._reload, release, path, offset, f"{unit}#{index}")
            del parsed
            yield ref, self._rlds_opener(release, unit, index, ref, ref_note, load)

    @staticmethod
    def _parse_record(release: RldsRelease, record: bytes, where: str) -> tuple[dict | None, EpisodeError | None]:
        try:
            return release.parse(record), None
        except ValueError as exc:  # TFDS reshape of a list whose length does not fit the feature shape
            return None, EpisodeError(Reason.SHAPE_MISMATCH, f"{where}: {exc}")
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
            return None, EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot parse tf.train.Example: {exc}")

    def _reload(self, release: RldsRelease, path: Path, offset: int, where: str):
        return self._parse_record(release, read_tfrecord_at(path, offset, where), where)

    @staticmethod
    def _rlds_ref(release: RldsRelease, shard: str, index: int, parsed, used: dict[str, int]) -> tuple[str, str | None]:
        """``<version>/<lab>/<outcome>/<date>/<time>`` from ``file_path``; else ``<version>/<shard>#<index>``."""
        fallback = f"{release.version}/{shard}#{index}"
        if parsed is None:
            return fallback, "record could not be parsed"
        file_path = _text(parsed.get("episode_metadata", {}).get("file_path"))
        match = FILE_PATH_RE.search(file_path or "")
        if match is None:
            return fallback, f"episode_metadata/file_path {file_path!r} has no <lab>/<success|failure>/<date>/<time>"
        ref = f"{release.version}/{match['lab']}/{match['outcome']}/{match['date']}/{match['time']}"
        if ref in used:
            return fallback, f"file_path also used by record {used[ref]} of this shard"
        used[ref] = index
        return ref, None

    def _rlds_opener(self, release, unit, index, ref, ref_note, load):
        """Re-openable: each use loads (re-reads and parses) the record, so openers a consumer
        keeps around hold no episode data."""

        @contextlib.contextmanager
        def opener():
            parsed, error = load()
            if error is not None:
                raise error
            yield self._rlds_episode(release, unit, index, ref, ref_note, parsed)

        return opener

    # -- RLDS episode -----------------------------------------------------------------

    def _rlds_episode(self, release: RldsRelease, unit: str, index: int, ref: str, ref_note, parsed) -> Episode:
        where = f"{ref} ({unit}#{index})"
        steps = parsed.get("steps")
        if not isinstance(steps, dict):
            raise EpisodeError(Reason.MISSING_KEY, f"{where}: record has no 'steps'")

        def lookup(key: str):
            node: Any = steps
            for part in key.split("/"):
                node = node.get(part) if isinstance(node, dict) else None
            return node

        fields = self._fields(lookup, "rlds", where)
        num_frames = len(fields[STATE_FIELDS[0].rlds])
        if self.options.extras:
            rlds_action = lookup(RLDS_ACTION.rlds)
            if rlds_action is not None:
                fields[RLDS_ACTION.rlds] = _matrix(rlds_action, RLDS_ACTION, f"steps/{RLDS_ACTION.rlds}", where)

        texts: list[str] = []
        varying = []
        for key, _ in LANGUAGE_KEYS:
            values = steps.get(key)
            if values is None:
                texts.append("")
                continue
            _check_rows(values, num_frames, f"steps/{key}", where)
            decoded = [_text(v, f"{where}: steps/{key}") for v in values]
            texts.append(decoded[0] if decoded else "")
            if len(set(decoded)) > 1:
                varying.append(key)

        cameras = {}
        for cam in CAMERAS:
            encoded = lookup(cam.rlds)
            if encoded is None:
                raise EpisodeError(Reason.MISSING_CAMERA, f"{where}: no steps/{cam.rlds} in the record")
            if len(encoded) != num_frames:
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH,
                    f"{where}: steps/{cam.rlds} has {len(encoded)} frames but "
                    f"steps/{STATE_FIELDS[0].rlds} has {num_frames}",
                )
            shape = release.image_shapes.get(cam.name)
            cameras[cam.name] = _jpeg_stream(cam.name, encoded, shape, f"{where}:{cam.rlds}")
            cameras[cam.name].source_name = f"steps/{cam.rlds}"
            cameras[cam.name].source_file = f"{unit}#{index}"  # the TFRecord shard and the record in it

        meta_raw = parsed.get("episode_metadata") or {}
        episode_metadata = {k: _jsonable_value(v) for k, v in sorted(meta_raw.items())}
        file_path = episode_metadata.get("file_path") or ""
        metadata = {
            "layout": "rlds",
            "release": {"builder": release.name, "version": release.version, "split": release.split},
            "shard": Path(unit).name,
            "record_index": index,
            "success": _success_from_path(file_path),
            "episode_metadata": episode_metadata,
        }
        if ref_note:
            metadata["ref_fallback_reason"] = ref_note
        if varying:
            metadata["language_varies_within_episode"] = varying
        timestamp = np.arange(num_frames, dtype=np.float64) / CONTROL_HZ
        return self._assemble(where, ref, fields, cameras, texts, timestamp, TimestampOrigin.FROM_CONTROL_RATE,
                              metadata)

    # -- raw episode ------------------------------------------------------------------

    @contextlib.contextmanager
    def open_episode(self, source_episode: str) -> Iterator[Episode]:
        """A raw trajectory folder ``<lab>/<success|failure>/<date>/<time>`` (relative to ``root``)."""
        folder = self.root / source_episode
        where = source_episode
        meta_path, meta = self._raw_metadata(folder, where)
        h5_path = episode_file(self.root, f"{source_episode}/{RAW_TRAJECTORY}")  # a directory: corrupt_file
        try:
            h5 = h5py.File(h5_path, "r")
        except (OSError, RuntimeError) as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot open {RAW_TRAJECTORY}: {exc}") from exc
        with h5:
            try:
                episode = self._raw_episode(h5, folder, where, meta_path, meta)
            except (OSError, RuntimeError) as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: unreadable {RAW_TRAJECTORY} content: {exc}") from exc
            yield episode

    def _raw_metadata(self, folder: Path, where: str) -> tuple[Path, dict[str, Any]]:
        candidates = sorted(folder.glob(RAW_METADATA_GLOB))
        if not candidates:
            raise EpisodeError(
                Reason.MISSING_METADATA,
                f"{where}: no {RAW_METADATA_GLOB} (DROID only publishes one for valid episodes)",
            )
        if len(candidates) > 1:
            names = [p.name for p in candidates]
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: several metadata files {names}")
        path = candidates[0]
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {path.name} is not valid JSON: {exc}") from exc
        except OSError as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read {path.name}: {exc}") from exc
        if not isinstance(meta, dict):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {path.name} is not a JSON object")
        uuid = path.name[len("metadata_"):-len(".json")]
        if "uuid" in meta and meta["uuid"] != uuid:
            raise EpisodeError(
                Reason.INVALID_METADATA,
                f"{where}: {path.name} holds uuid {meta['uuid']!r}, its file name says {uuid!r}",
            )
        meta.setdefault("uuid", uuid)
        return path, meta

    def _raw_episode(self, h5: h5py.File, folder: Path, where: str, meta_path: Path, meta: dict[str, Any]) -> Episode:
        def lookup(key: str):
            obj = h5.get(key)
            if obj is not None and not isinstance(obj, h5py.Dataset):
                raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}: {RAW_TRAJECTORY}:{key} is not a dataset")
            return obj

        fields = self._fields(lookup, "raw", where)
        num_frames = len(fields[STATE_FIELDS[0].rlds])
        timestamp, origin, clock = _raw_timestamps(lookup, num_frames, where)
        serials = self._raw_serials(h5, meta, where)
        cameras = {}
        videos = {}
        for cam in CAMERAS:
            serial = serials[cam.name]
            video = folder / RAW_MP4_DIR / relative_inside(f"{serial}.mp4", f"{where}: camera '{cam.name}' serial")
            if not video.is_file():
                raise EpisodeError(
                    Reason.MISSING_CAMERA,
                    f"{where}: camera '{cam.name}' (serial {serial}): {RAW_MP4_DIR}/{video.name} not found",
                )
            label = f"{where}:{RAW_MP4_DIR}/{video.name}"
            videos[cam.name] = _probe_video(video, num_frames, label)
            cameras[cam.name] = _video_stream(cam.name, video, num_frames, label)
            cameras[cam.name].source_name = serial  # raw DROID names a camera by its ZED serial
            cameras[cam.name].source_file = video.relative_to(self.root).as_posix()

        uuid = str(meta["uuid"])
        annotations_file, annotation = self._raw_language(folder, where, uuid)
        texts = [str(annotation.get(key) or "") for _, key in LANGUAGE_KEYS] if annotation else ["", "", ""]
        success = _success_from_path(where)
        if success is None and isinstance(meta.get("success"), bool):
            success = meta["success"]
        metadata = {
            "layout": "raw",
            "metadata_file": meta_path.name,
            "success": success,
            "episode_metadata": {k: _jsonable_value(meta[k]) for k in RAW_METADATA_KEYS if k in meta},
            "h5_attrs": {k: _jsonable_value(v) for k, v in sorted(h5.attrs.items()) if k != "user"},
            "camera_serials": serials,
            "videos": videos,
            "timestamp_clock": clock,
            "annotations_file": annotations_file,
        }
        if annotations_file is None:
            hint = f"; no {RAW_ANNOTATIONS_GLOB} found (set the 'annotations' option)"
        elif annotation is None:
            hint = f"; uuid {uuid!r} is not in {annotations_file}"
        else:
            hint = f"; from {annotations_file}"
        return self._assemble(where, where, fields, cameras, texts, timestamp, origin, metadata, hint)

    def _raw_serials(self, h5: h5py.File, meta: dict[str, Any], where: str) -> dict[str, str]:
        """Camera name -> serial: from metadata_<uuid>.json, checked against ``observation/camera_type``."""
        group = h5.get(RAW_CAMERA_TYPE)
        types: dict[str, int] = {}
        if isinstance(group, h5py.Group):
            for serial in sorted(group):
                ds = group[serial]
                if isinstance(ds, h5py.Dataset) and ds.shape and ds.shape[0] > 0:
                    types[serial] = int(ds[0])
        by_role: dict[str, str] = {}
        exteriors = [s for s in sorted(types) if types[s] != 0]
        wrists = [s for s in sorted(types) if types[s] == 0]
        if wrists:
            by_role["wrist"] = wrists[0]
        by_role.update(zip(("ext1", "ext2"), exteriors))
        serials = {}
        for cam in CAMERAS:
            value = meta.get(cam.raw_serial_key)
            if value is None:
                if cam.raw_role not in by_role:
                    raise EpisodeError(
                        Reason.INVALID_METADATA,
                        f"{where}: no '{cam.raw_serial_key}' in the metadata file and {RAW_CAMERA_TYPE} does not "
                        f"identify the {cam.raw_role} camera (types: {types})",
                    )
                value = by_role[cam.raw_role]
            serial = str(value)
            if serial in types and (types[serial] == 0) != (cam.raw_role == "wrist"):
                raise EpisodeError(
                    Reason.INVALID_METADATA,
                    f"{where}: '{cam.raw_serial_key}' = {serial} but {RAW_CAMERA_TYPE}/{serial} = {types[serial]} "
                    "(0 = wrist, 1 = exterior)",
                )
            serials[cam.name] = serial
        if len(set(serials.values())) != len(serials):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: cameras share a serial: {serials}")
        return serials

    def _raw_language(self, folder: Path, where: str, uuid: str) -> tuple[str | None, dict[str, Any] | None]:
        """(annotations file relative to root, its entry for ``uuid``) — see ``annotations`` option."""
        if self.options.annotations:
            path = Path(self.options.annotations)
            path = path if path.is_absolute() else self.root / path
            table = self._load_annotations(path, where)
        else:
            table = None
            # the release base is the folder holding <lab>/; look there first, then up to root
            base = folder.parents[3] if len(folder.relative_to(self.root).parts) >= 4 else self.root
            for candidate_dir in [base, *base.parents]:
                found = sorted(candidate_dir.glob(RAW_ANNOTATIONS_GLOB))
                if found:
                    table = self._load_annotations(found[-1], where)
                    break
                if candidate_dir == self.root:
                    break
        if table is None:
            return None, None
        name, entries = table
        entry = entries.get(uuid)
        return name, entry if isinstance(entry, dict) else None

    def _load_annotations(self, path: Path, where: str) -> tuple[str, dict[str, Any]]:
        if path not in self._annotations:
            if not path.is_file():
                raise EpisodeError(Reason.MISSING_FILE, f"{where}: annotations file {path} not found")
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {path} is not valid JSON: {exc}") from exc
            if not isinstance(entries, dict):
                raise EpisodeError(Reason.INVALID_METADATA, f"{where}: {path} must map episode uuid -> instructions")
            try:
                name = path.relative_to(self.root).as_posix()
            except ValueError:
                name = os.fspath(path)
            self._annotations[path] = (name, entries)
        return self._annotations[path]

    # -- shared assembly --------------------------------------------------------------

    def _fields(self, lookup, layout: str, where: str) -> dict[str, np.ndarray]:
        """State and action streams as float64 [T, D], keyed by their RLDS key, lengths checked."""
        arm, _, _ = ACTION_CHOICES[self.options.action]
        required = [*STATE_FIELDS, ACTION_FIELDS[arm], ACTION_FIELDS[GRIPPER_ACTION]]
        optional = [f for k, f in ACTION_FIELDS.items() if k not in (arm, GRIPPER_ACTION)]
        optional = optional if self.options.extras else []
        fields: dict[str, np.ndarray] = {}
        for field in [*required, *optional]:
            value = lookup(field.rlds if layout == "rlds" else field.raw)
            if value is None:
                if field in optional:
                    continue
                raise EpisodeError(Reason.MISSING_KEY, f"{where}: missing {_stream_label(field, layout)}")
            fields[field.rlds] = _matrix(value, field, _stream_label(field, layout), where)
        first = STATE_FIELDS[0]
        num_frames = len(fields[first.rlds])
        if num_frames == 0:
            raise EpisodeError(Reason.EMPTY_EPISODE, f"{where}: {_stream_label(first, layout)} has no steps")
        for field in [*required, *optional]:
            if field.rlds in fields and len(fields[field.rlds]) != num_frames:
                raise EpisodeError(
                    Reason.LENGTH_MISMATCH,
                    f"{where}: {_stream_label(field, layout)} has {len(fields[field.rlds])} steps but "
                    f"{_stream_label(first, layout)} has {num_frames}",
                )
        return fields

    def _assemble(
        self, where: str, ref: str, fields, cameras, texts, timestamp, origin, metadata, language_hint: str = ""
    ) -> Episode:
        arm, kind, units = ACTION_CHOICES[self.options.action]
        arm_field, grip_field = ACTION_FIELDS[arm], ACTION_FIELDS[GRIPPER_ACTION]
        state = np.concatenate([fields[f.rlds] for f in STATE_FIELDS], axis=1).astype(np.float32)
        action = np.concatenate([fields[arm_field.rlds], fields[grip_field.rlds]], axis=1).astype(np.float32)
        extras, extra_names = {}, {}
        for key, field in [*ACTION_FIELDS.items(), ("rlds", RLDS_ACTION)]:
            if key in (arm, GRIPPER_ACTION) or field.rlds not in fields:
                continue
            values = fields[field.rlds]
            name = "rlds_action" if field is RLDS_ACTION else f"action_{key}"
            bad = ~np.isfinite(values)
            if bad.any():
                frame, dim = (int(v) for v in np.argwhere(bad)[0])
                raise EpisodeError(
                    Reason.NON_FINITE_VALUES,
                    f"{where}: {name} has {int(bad.sum())} non-finite values, first at frame {frame} "
                    f"dimension '{field.names[dim]}' = {values[frame, dim]}",
                )
            extras[name] = values.astype(np.float32)
            extra_names[name] = list(field.names)
        cleaned = [t.strip() for t in texts]
        present = [t for t in cleaned if t]
        if not present:
            slots = ", ".join(k if metadata["layout"] == "rlds" else a for k, a in LANGUAGE_KEYS)
            raise EpisodeError(Reason.MISSING_LANGUAGE, f"{where}: all instructions are empty ({slots}){language_hint}")
        alternatives = list(dict.fromkeys(t for t in present[1:] if t != present[0]))
        metadata = {
            **metadata,
            "language_instructions": cleaned,
            "gripper": GRIPPER_CONVENTION,
            "action": {
                "option": self.options.action,
                "streams": [_stream_label(f, metadata["layout"]) for f in (arm_field, grip_field)],
                "units": units,
            },
        }
        return Episode(
            source_episode=ref,
            source_version=metadata["release"]["version"] if metadata["layout"] == "rlds" else RAW_SOURCE_VERSION,
            embodiment=EMBODIMENT,
            robot_type=ROBOT_TYPE,
            control_hz=CONTROL_HZ,
            timestamp=timestamp,
            state=state,
            state_names=[n for f in STATE_FIELDS for n in f.names],
            action=action,
            action_names=[*arm_field.names, *grip_field.names],
            action_kind=kind,
            instruction=present[0],
            cameras=cameras,
            timestamp_origin=origin,
            instruction_alternatives=alternatives,
            extras=extras,
            extra_names=extra_names,
            metadata=metadata,
        )

    # -- samples ----------------------------------------------------------------------

    @classmethod
    def write_samples(cls, out_dir: Path, seed: int = 0) -> dict[str, str | None]:
        """RLDS 1.0.1 (two shards, one truncated) and raw trajectories, with broken episodes."""
        return write_samples(Path(out_dir), seed)

    @classmethod
    def write_synthetic(
        cls, out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0
    ) -> None:
        """Valid RLDS episodes (the layout most users convert) at the requested size."""
        write_synthetic(Path(out_dir), episodes=episodes, frames=frames, height=height, width=width, seed=seed)


# --------------------------------------------------------------------------------------
# Reading helpers
# --------------------------------------------------------------------------------------


def _held(value):
    return value


def _stream_label(field: Field, layout: str) -> str:
    return f"steps/{field.rlds}" if layout == "rlds" else f"{RAW_TRAJECTORY}:{field.raw}"


def _text(value: Any, where: str | None = None) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            if where is None:
                return value.decode("utf-8", "replace")
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: text is not UTF-8: {exc}") from exc
    return str(value)


def _jsonable_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_jsonable_value(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _success_from_path(path: str) -> bool | None:
    """DROID's only success flag: a ``success`` or ``failure`` folder in the episode's path."""
    parts = path.replace("\\", "/").split("/")
    if "success" in parts:
        return True
    if "failure" in parts:
        return False
    return None


def _check_rows(values, num_frames: int, key: str, where: str) -> None:
    if len(values) != num_frames:
        raise EpisodeError(
            Reason.LENGTH_MISMATCH, f"{where}: {key} has {len(values)} steps but the state has {num_frames}"
        )


def _matrix(value: Any, field: Field, label: str, where: str) -> np.ndarray:
    """A numeric stream as float64 ``[T, len(field.names)]`` ([T] accepted for one-dimensional fields)."""
    if isinstance(value, h5py.Dataset):
        if not (np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.bool_)):
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}: {label} has non-numeric dtype {value.dtype}")
        value = value[()]
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}: {label} has non-numeric dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    width = len(field.names)
    if arr.ndim == 1 and width == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise EpisodeError(
            Reason.SHAPE_MISMATCH, f"{where}: {label} must be [T, {width}] ({', '.join(field.names)}), got {arr.shape}"
        )
    return arr


def _jpeg_stream(name: str, encoded: np.ndarray, shape: tuple | None, where: str) -> CameraStream:
    """Frames decoded one at a time from the record's JPEG bytes, checked against features.json."""
    expected = tuple(shape) if shape and all(isinstance(d, int) for d in shape) else None

    def frames() -> Iterator[np.ndarray]:
        for i in range(len(encoded)):
            frame = decode_image_bytes(encoded[i], where=f"{where}[{i}]")
            if expected is not None and frame.shape != expected:
                raise EpisodeError(
                    Reason.SHAPE_MISMATCH, f"{where}[{i}]: frame is {frame.shape}, features.json declares {expected}"
                )
            yield frame

    return CameraStream(name=name, num_frames=len(encoded), open_frames=frames, thread_safe=True)


def _raw_timestamps(lookup, num_frames: int, where: str) -> tuple[np.ndarray, TimestampOrigin, str | None]:
    for key in RAW_CLOCKS:
        ds = lookup(key)
        if ds is None:
            continue
        values = np.asarray(ds[()])
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            raise EpisodeError(
                Reason.SHAPE_MISMATCH, f"{where}: {RAW_TRAJECTORY}:{key} must be numeric [T], got {values.shape}"
            )
        _check_rows(values, num_frames, f"{RAW_TRAJECTORY}:{key}", where)
        return values.astype(np.float64) / 1000.0, TimestampOrigin.RECORDED, key
    return np.arange(num_frames, dtype=np.float64) / CONTROL_HZ, TimestampOrigin.FROM_CONTROL_RATE, None


def _av():
    import av

    return av


def _probe_video(path: Path, num_frames: int, where: str) -> dict[str, Any]:
    """Open the MP4 once to fail early on an unreadable file or a header that lists too few frames."""
    av = _av()
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: no video stream")
            stream = container.streams.video[0]
            info = {
                "codec": stream.codec_context.name,
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "header_frames": int(stream.frames),
            }
    except EpisodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc
    if 0 < info["header_frames"] < num_frames:
        raise EpisodeError(
            Reason.FRAME_COUNT_MISMATCH,
            f"{where}: video has {info['header_frames']} frames but {RAW_TRAJECTORY} has {num_frames} steps",
        )
    return info


def _video_stream(name: str, path: Path, num_frames: int, where: str) -> CameraStream:
    """Frame i of the MP4 for step i (extra trailing frames are ignored), decoded to RGB by PyAV."""
    av = _av()

    def frames() -> Iterator[np.ndarray]:
        produced = 0
        try:
            with av.open(os.fspath(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.thread_count = 2  # several cameras and workers decode at once
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
                    produced += 1
                    if produced == num_frames:
                        return
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise EpisodeError(
                Reason.VIDEO_DECODE_ERROR, f"{where}: decoding failed after {produced} frames: {exc}"
            ) from exc

    return CameraStream(name=name, num_frames=num_frames, open_frames=frames, thread_safe=True)


# --------------------------------------------------------------------------------------
# Sample data: a synthetic Franka doing pick-and-place, written in both DROID layouts
# --------------------------------------------------------------------------------------

#: DROID's reset pose (RobotEnv.reset_joints)
HOME = np.array([0.0, -np.pi / 5, 0.0, -4 * np.pi / 5, 0.0, 3 * np.pi / 5, 0.0])
#: synthetic scaling of DROID's normalized velocity commands (per-step delta at command 1.0)
MAX_JOINT_DELTA, MAX_LIN_DELTA, MAX_ROT_DELTA, MAX_GRIPPER_DELTA = 0.2, 0.075, 0.15, 0.25
SAMPLE_IMAGE_HW = (72, 128)  # DROID's RLDS frames are 180x320 (same 9:16 aspect)
RAW_SAMPLE_IMAGE_HW = (72, 128)  # stands in for HD720 (1280x720)
RAW_SAMPLES_DIR = "droid_raw"
ANNOTATIONS_NAME = "aggregated-annotations-030724.json"
SAMPLE_VERSION = "1.0.1"
SAMPLE_BUILDER = "droid_101"

TASKS = (
    ("put the marker in the cup", "move the marker into the cup", "place the pen inside the mug"),
    ("pick up the red block and place it on the plate", "put the red cube on the plate",
     "move the block onto the dish"),
    ("put the spoon in the bowl", "place the spoon into the bowl", "drop the spoon in the bowl"),
    ("move the sponge to the left side of the sink", "slide the sponge left", "push the sponge to the left"),
)


@dataclass(frozen=True)
class SampleEpisode:
    lab: str
    outcome: str  # success | failure
    when: str  # "%Y-%m-%d %H:%M:%S"
    task: int
    language: tuple[bool, bool, bool] = (True, True, True)  # which instruction slots are filled
    defect: str | None = None


#: defect -> reason the converter must report (``None``: the episode is lost with its shard's tail)
SAMPLE_DEFECTS: dict[str, Reason | None] = {
    "no_language": Reason.MISSING_LANGUAGE,  # RLDS: all three instructions empty
    "nan_action": Reason.NON_FINITE_VALUES,  # teleop glitch: NaN in commanded joint positions
    "bad_jpeg": Reason.IMAGE_DECODE_ERROR,  # one wrist frame is a truncated JPEG
    "lost": None,  # after the point where the shard copy was cut
    "no_metadata": Reason.MISSING_METADATA,  # raw: no metadata_<uuid>.json ("not a valid episode")
    "truncated_mp4": Reason.VIDEO_DECODE_ERROR,  # raw: exterior MP4 cut in half (no moov atom)
    "short_mp4": Reason.FRAME_COUNT_MISMATCH,  # raw: wrist MP4 lost its last frames
    "unannotated": Reason.MISSING_LANGUAGE,  # raw: uuid absent from the annotations file
    "corrupt_h5": Reason.CORRUPT_FILE,  # raw: trajectory.h5 cut to 60 %
}

#: two shards; the second is cut inside its record ``TRUNCATE_AT`` (records before it survive)
RLDS_SAMPLE_SHARDS: tuple[tuple[SampleEpisode, ...], ...] = (
    (
        SampleEpisode("RAIL", "success", "2023-04-17 14:48:05", 0),
        SampleEpisode("RAIL", "failure", "2023-04-17 15:02:41", 1),
        SampleEpisode("IRIS", "success", "2023-05-02 10:11:09", 2, language=(False, True, False)),
        SampleEpisode("IRIS", "success", "2023-05-02 10:20:55", 3, language=(False, False, False),
                      defect="no_language"),
    ),
    (
        SampleEpisode("AUTOLab", "success", "2023-07-07 09:42:23", 1),
        SampleEpisode("AUTOLab", "success", "2023-07-07 09:55:10", 0, defect="nan_action"),
        SampleEpisode("ILIAD", "failure", "2023-08-21 16:30:00", 2, defect="bad_jpeg"),
        SampleEpisode("ILIAD", "success", "2023-08-21 16:41:37", 3, defect="lost"),
        SampleEpisode("ILIAD", "success", "2023-08-21 16:52:02", 0, defect="lost"),
    ),
)
TRUNCATE_SHARD, TRUNCATE_AT = 1, 3

RAW_SAMPLES: tuple[SampleEpisode, ...] = (
    SampleEpisode("RAIL", "success", "2023-06-05 21:44:09", 0),
    SampleEpisode("RAIL", "failure", "2023-06-05 22:01:30", 2, language=(True, False, False)),
    SampleEpisode("GuptaLab", "success", "2023-09-12 11:03:51", 1, language=(True, True, False)),
    SampleEpisode("GuptaLab", "success", "2023-09-12 11:15:00", 3, defect="no_metadata"),
    SampleEpisode("GuptaLab", "success", "2023-09-12 11:27:45", 0, defect="truncated_mp4"),
    SampleEpisode("PennPAL", "success", "2023-10-30 08:05:12", 1, defect="short_mp4"),
    SampleEpisode("PennPAL", "failure", "2023-10-30 08:19:40", 2, defect="unannotated"),
    SampleEpisode("PennPAL", "success", "2023-10-30 08:33:03", 3, defect="corrupt_h5"),
)


def _folder_name(when: datetime) -> str:
    """DROID's trajectory folder name, e.g. ``Mon_Apr_17_14:48:05_2023`` (day padded with '_')."""
    day = f"_{when.day}" if when.day < 10 else str(when.day)
    return f"{when:%a}_{when:%b}_{day}_{when:%H:%M:%S}_{when.year}"


def _sample_path(ep: SampleEpisode) -> str:
    when = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S")
    return f"{ep.lab}/{ep.outcome}/{when:%Y-%m-%d}/{_folder_name(when)}"


def _instructions(ep: SampleEpisode) -> list[str]:
    return [text if filled else "" for text, filled in zip(TASKS[ep.task], ep.language)]


# -- kinematics -------------------------------------------------------------------------

#: Franka Panda modified-DH parameters (a, d, alpha) for joints 1..7 and the flange
_PANDA_DH = (
    (0.0, 0.333, 0.0), (0.0, 0.0, -np.pi / 2), (0.0, 0.316, np.pi / 2), (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2), (0.0, 0.0, np.pi / 2), (0.088, 0.0, np.pi / 2), (0.0, 0.107, 0.0),
)
_TCP_OFFSET = 0.1034  # flange to fingertip centre along the tool z axis


def panda_fk(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tool-centre position [T,3] and rotation [T,3,3] in the robot base frame."""
    q = np.atleast_2d(q)
    n = len(q)
    transform = np.tile(np.eye(4), (n, 1, 1))
    for j, (a, d, alpha) in enumerate(_PANDA_DH):
        theta = q[:, j] if j < 7 else np.zeros(n)
        ca, sa = np.cos(alpha), np.sin(alpha)
        ct, st = np.cos(theta), np.sin(theta)
        link = np.zeros((n, 4, 4))
        link[:, 0, 0], link[:, 0, 1], link[:, 0, 3] = ct, -st, a
        link[:, 1, 0], link[:, 1, 1], link[:, 1, 2], link[:, 1, 3] = st * ca, ct * ca, -sa, -sa * d
        link[:, 2, 0], link[:, 2, 1], link[:, 2, 2], link[:, 2, 3] = st * sa, ct * sa, ca, ca * d
        link[:, 3, 3] = 1.0
        transform = transform @ link
    rot = transform[:, :3, :3]
    pos = transform[:, :3, 3] + _TCP_OFFSET * rot[:, :, 2]
    return pos, rot


def euler_xyz(rot: np.ndarray) -> np.ndarray:
    """Extrinsic x-y-z Euler angles (scipy ``as_euler("xyz")``, DROID's convention) of [T,3,3]."""
    roll = np.arctan2(rot[:, 2, 1], rot[:, 2, 2])
    pitch = np.arctan2(-rot[:, 2, 0], np.hypot(rot[:, 2, 1], rot[:, 2, 2]))
    yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    return np.stack([roll, pitch, yaw], axis=1)


def _min_jerk(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    tau = np.arange(1, steps + 1) / steps
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return a + s[:, None] * (b - a)


@dataclass
class Trajectory:
    """One synthetic pick-and-place, every DROID stream derived from the joint path."""

    joints: np.ndarray  # [T,7]
    gripper: np.ndarray  # [T] measured, 0 open .. 1 closed
    gripper_cmd: np.ndarray  # [T] commanded
    ee: np.ndarray  # [T,6] xyz + euler xyz
    rot: np.ndarray  # [T,3,3]
    obj: np.ndarray  # [T,3] object position (follows the tool while grasped)
    success: bool

    @property
    def num_frames(self) -> int:
        return len(self.joints)

    def action_dict(self) -> dict[str, np.ndarray]:
        """The commanded streams, as DROID's controller derives them (velocities normalized to [-1, 1])."""
        nxt = np.concatenate([self.joints[1:], self.joints[-1:]])
        ee_next = np.concatenate([self.ee[1:], self.ee[-1:]])
        twist = ee_next - self.ee
        twist[:, 3:] = (twist[:, 3:] + np.pi) % (2 * np.pi) - np.pi
        scale = np.array([MAX_LIN_DELTA] * 3 + [MAX_ROT_DELTA] * 3)
        return {
            "joint_position": nxt,
            "joint_velocity": np.clip((nxt - self.joints) / MAX_JOINT_DELTA, -1, 1),
            "cartesian_position": ee_next,
            "cartesian_velocity": np.clip(twist / scale, -1, 1),
            "gripper_position": self.gripper_cmd[:, None],
            "gripper_velocity": np.clip((self.gripper_cmd - self.gripper) / MAX_GRIPPER_DELTA, -1, 1)[:, None],
        }


def sample_trajectory(rng: np.random.Generator, num_frames: int, success: bool = True) -> Trajectory:
    """Idle start, reach, descend, grasp, a still hold, transport, release, retreat, idle end.

    A failure lets the object slip out during transport: the fingers close fully on nothing
    and the object drops to the table.
    """
    idle = int(round(num_frames * rng.uniform(0.10, 0.18)))
    tail = int(round(num_frames * rng.uniform(0.05, 0.10)))
    phases = rng.dirichlet([3.0, 1.5, 1.0, 1.0, 3.0, 1.0, 2.0])  # reach, descend, close, hold, move, open, retreat
    phases[3] = max(phases[3], 0.12)  # the hold is a real static stretch
    phases /= phases.sum()
    moving = num_frames - 1 - idle - tail
    steps = np.maximum(2, np.round(phases * moving).astype(int))
    steps[-1] = max(2, moving - int(steps[:-1].sum()))
    spread = np.array([1.0, 0.5, 1.0, 0.4, 1.0, 0.4, 1.0])
    above = HOME + rng.uniform(-0.35, 0.35, 7) * spread
    grasp = above + np.array([0.0, 0.3, 0.0, 0.2, 0.0, -0.1, 0.0])  # lower the tool
    place = HOME + rng.uniform(-0.35, 0.35, 7) * spread
    retreat = HOME + rng.uniform(-0.08, 0.08, 7)
    closed = rng.uniform(0.72, 0.85)  # the fingers stop on the object before 1.0
    carry = closed if success else 1.0
    knots = [  # (joints, measured gripper, commanded gripper) at the end of each phase
        (above, 0.0, 0.0), (grasp, 0.0, 0.0), (grasp, closed, 1.0), (grasp, closed, 1.0),
        (place, carry, 1.0), (place, 0.0, 0.0), (retreat, 0.0, 0.0),
    ]
    rows = [np.repeat(np.append(HOME, [0.0, 0.0])[None], idle + 1, axis=0)]
    for (q, g, cmd), n in zip(knots, steps):
        segment = _min_jerk(rows[-1][-1], np.append(q, [g, cmd]), int(n))
        segment[:, 8] = cmd  # commands switch at once, the measured gripper follows smoothly
        rows.append(segment)
    rows.append(np.repeat(rows[-1][-1:], tail, axis=0))
    path = np.concatenate(rows)[:num_frames]
    joints, gripper, gripper_cmd = path[:, :7], np.clip(path[:, 7], 0.0, 1.0), path[:, 8]
    pos, rot = panda_fk(joints)
    ee = np.concatenate([pos, euler_xyz(rot)], axis=1)

    ends = idle + np.cumsum(steps)  # frame index at the end of each phase
    grasped, released = int(ends[2]), int(ends[4]) if success else int(ends[3] + steps[4] // 3)
    grasped, released = min(grasped, num_frames - 1), min(released, num_frames - 1)
    below = np.array([0.0, 0.0, 0.02])
    obj = np.repeat((pos[int(ends[1])] - below)[None], num_frames, axis=0)
    obj[grasped:released] = pos[grasped:released] - below
    dropped = pos[released] - below
    dropped[2] = obj[0, 2]  # back on the table
    obj[released:] = dropped
    return Trajectory(joints, gripper, gripper_cmd, ee, rot, obj, success)


# -- rendering --------------------------------------------------------------------------

#: exterior cameras: (position, look-at) in the robot base frame, left and right of the table
_EXTERIOR_VIEWS = {
    "exterior_image_1_left": (np.array([0.35, 0.7, 0.5]), np.array([0.4, 0.0, 0.4])),
    "exterior_image_2_left": (np.array([0.2, -0.65, 0.55]), np.array([0.42, 0.0, 0.4])),
}


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])  # rows: camera x (right), y (down), z (forward)


def render_camera(camera: str, traj: Trajectory, t: int, hw: tuple[int, int]) -> np.ndarray:
    """One RGB frame of a toy scene driven by the state: same state, same pixels."""
    h, w = hw
    img = _background(h, w, camera).copy()
    focal = 0.9 * w
    grip_open = 1.0 - traj.gripper[t]

    def project(points: np.ndarray, eye: np.ndarray, rows: np.ndarray):
        cam = (points - eye) @ rows.T
        z = np.maximum(cam[..., 2], 1e-3)
        return w / 2 + focal * cam[..., 0] / z, h / 2 + focal * cam[..., 1] / z, z

    if camera in _EXTERIOR_VIEWS:
        eye, target = _EXTERIOR_VIEWS[camera]
        rows = _look_at(eye, target)
        tool, obj = traj.ee[t, :3], traj.obj[t]
        base_u, base_v, _ = project(np.array([0.0, 0.0, 0.35]), eye, rows)
        tool_u, tool_v, tool_z = project(tool, eye, rows)
        obj_u, obj_v, obj_z = project(obj, eye, rows)
        _segment(img, base_u, base_v, tool_u, tool_v, 0.035 * focal / tool_z, (235, 235, 230))
        _disc(img, obj_u, obj_v, 0.03 * focal / obj_z, (200, 40, 40))
        side = traj.rot[t, :, 1] * (0.01 + 0.04 * grip_open)
        for sign in (-1, 1):
            fu, fv, fz = project(tool + sign * side, eye, rows)
            _disc(img, fu, fv, 0.012 * focal / fz, (60, 60, 60))
    else:  # wrist camera: looks along the tool axis, fingers at the bottom of the image
        rows = traj.rot[t].T  # base -> tool frame
        eye = traj.ee[t, :3] - 0.15 * traj.rot[t, :, 2]
        obj_u, obj_v, obj_z = project(traj.obj[t], eye, rows)
        if obj_z > 0.05:
            _disc(img, obj_u, obj_v, min(0.02 * focal / obj_z, w), (200, 40, 40))
        gap = w * (0.06 + 0.2 * grip_open)
        for x0 in (w / 2 - gap - w * 0.08, w / 2 + gap):
            _box(img, x0, h * 0.78, x0 + w * 0.08, h, (70, 70, 70))
    return np.clip(img, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _background(h: int, w: int, camera: str) -> np.ndarray:
    tint = (sum(camera.encode()) % 5) * 8.0
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    wall = np.array([180 + tint, 182, 190 - tint], dtype=np.float32)
    table = np.array([135, 110 + tint, 80], dtype=np.float32)
    img = np.where(rows < 0.3, wall, table + (rows - 0.3) * 50.0) * np.ones((1, w, 1), np.float32)
    img[int(h * 0.3): int(h * 0.32)] = (95.0, 85.0, 75.0)
    img[int(h * 0.35):, :: max(8, w // 10)] *= 0.92  # plank seams
    img.flags.writeable = False
    return img


def _window(img: np.ndarray, x0: float, y0: float, x1: float, y1: float):
    """The pixel grid of ``img`` clipped to a bounding box, or ``None`` when it is off-image."""
    h, w = img.shape[:2]
    c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)) + 1)
    r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)) + 1)
    if c0 >= c1 or r0 >= r1:
        return None
    yy = np.arange(r0, r1, dtype=np.float32)[:, None]
    xx = np.arange(c0, c1, dtype=np.float32)[None, :]
    return (slice(r0, r1), slice(c0, c1)), xx, yy


def _blend(img, region, alpha, colour) -> None:
    patch = img[region]
    alpha = alpha[..., None]
    patch *= 1.0 - alpha
    patch += alpha * np.asarray(colour, np.float32)


def _disc(img, cx, cy, r, colour) -> None:
    found = _window(img, cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1)
    if found is not None:
        region, xx, yy = found
        _blend(img, region, np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0.0, 1.0), colour)


def _segment(img, x0, y0, x1, y1, r, colour) -> None:
    found = _window(img, min(x0, x1) - r - 1, min(y0, y1) - r - 1, max(x0, x1) + r + 1, max(y0, y1) + r + 1)
    if found is None:
        return
    region, xx, yy = found
    dx, dy = x1 - x0, y1 - y0
    s = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    dist = np.hypot(xx - (x0 + s * dx), yy - (y0 + s * dy))
    _blend(img, region, np.clip(r - dist + 0.5, 0.0, 1.0), colour)


def _box(img, x0, y0, x1, y1, colour) -> None:
    h, w = img.shape[:2]
    c0, c1 = max(0, int(np.ceil(x0))), min(w, int(np.ceil(x1)))
    r0, r1 = max(0, int(np.ceil(y0))), min(h, int(np.ceil(y1)))
    if c0 < c1 and r0 < r1:
        img[r0:r1, c0:c1] = colour


# -- RLDS writer ------------------------------------------------------------------------


def droid_features(image_hw: tuple[int, int], *, release: str = SAMPLE_VERSION):
    """DROID's TFDS FeaturesDict (official schema; 1.0.1 adds the episode-metadata fields)."""
    _tensorflow()  # its image encoder is TensorFlow's: import it with logging and devices set up
    tfds = _tfds()
    f = tfds.features

    def image(doc):
        return f.Image(shape=(*image_hw, 3), dtype=np.uint8, encoding_format="jpeg", doc=doc)

    def vec(n, doc):
        return f.Tensor(shape=(n,), dtype=np.float64, doc=doc)

    metadata = {
        "file_path": f.Text(doc="Path to the original data file."),
        "recording_folderpath": f.Text(doc="Path to the folder of recordings."),
    }
    if release != "1.0.0":
        metadata.update({
            "building": f.Text(doc="Building name."),
            "collector_id": f.Text(doc="Data collector id."),
            "date": f.Text(doc="Collection date."),
            "scene_id": f.Scalar(dtype=np.int64, doc="Scene id."),
            "task_category": f.Text(doc="Task category."),
            "extrinsics_wrist_cam": vec(6, "Wrist camera extrinsics: xyz + euler xyz."),
            "extrinsics_exterior_cam_1": vec(6, "Exterior camera 1 extrinsics: xyz + euler xyz."),
            "extrinsics_exterior_cam_2": vec(6, "Exterior camera 2 extrinsics: xyz + euler xyz."),
        })
    return f.FeaturesDict({
        "steps": f.Dataset({
            "is_first": f.Scalar(dtype=np.bool_, doc="True on first step of the episode."),
            "is_last": f.Scalar(dtype=np.bool_, doc="True on last step of the episode."),
            "is_terminal": f.Scalar(dtype=np.bool_, doc="True on last step of the episode if it is a terminal step."),
            "language_instruction": f.Text(doc="Language instruction."),
            "language_instruction_2": f.Text(doc="Alternative language instruction."),
            "language_instruction_3": f.Text(doc="Alternative language instruction."),
            "observation": f.FeaturesDict({
                "gripper_position": vec(1, "Gripper position state."),
                "cartesian_position": vec(6, "Robot Cartesian state."),
                "joint_position": vec(7, "Joint position state."),
                "wrist_image_left": image("Wrist camera RGB left viewpoint."),
                "exterior_image_1_left": image("Exterior camera 1 left viewpoint."),
                "exterior_image_2_left": image("Exterior camera 2 left viewpoint."),
            }),
            "action_dict": f.FeaturesDict({
                "gripper_position": vec(1, "Commanded gripper position."),
                "gripper_velocity": vec(1, "Commanded gripper velocity."),
                "cartesian_position": vec(6, "Commanded Cartesian position."),
                "cartesian_velocity": vec(6, "Commanded Cartesian velocity."),
                "joint_position": vec(7, "Commanded joint position."),
                "joint_velocity": vec(7, "Commanded joint velocity."),
            }),
            "discount": f.Scalar(dtype=np.float32, doc="Discount if provided, default to 1."),
            "reward": f.Scalar(dtype=np.float32, doc="Reward if provided, 1 on final step for demos."),
            "action": vec(7, "Robot action, consists of [6x joint velocities, 1x gripper position]."),
        }),
        "episode_metadata": f.FeaturesDict(metadata),
    })


def _extrinsics(rng: np.random.Generator) -> dict[str, list[float]]:
    out = {}
    for key, (eye, target) in zip(("ext1", "ext2"), _EXTERIOR_VIEWS.values()):
        rows = _look_at(eye, target)
        out[key] = [*eye.tolist(), *euler_xyz(rows.T[None])[0].tolist()]
    out["wrist"] = [0.0, -0.06, 0.04 + float(rng.uniform(0, 0.01)), 0.0, 0.0, -np.pi / 2]
    return out


def rlds_episode(features, ep: SampleEpisode, traj: Trajectory, rng, *, file_root: str, release: str) -> dict:
    """One episode as TFDS's ``serialize_example`` takes it; frames go in as JPEG bytes that the
    features' own encoder produced (same bytes as passing arrays, without holding decoded frames)."""
    n = traj.num_frames
    observation = features["steps"].feature["observation"]
    images = {}
    for cam in CAMERAS:
        key = cam.rlds.split("/", 1)[1]
        hw = observation[key].shape[:2]
        images[key] = [observation[key].encode_example(render_camera(cam.name, traj, t, hw)) for t in range(n)]
    if ep.defect == "bad_jpeg":
        blob = images["wrist_image_left"][n // 2]
        images["wrist_image_left"][n // 2] = blob[: len(blob) // 2]
    actions = traj.action_dict()
    if ep.defect == "nan_action":
        actions["joint_position"][n // 2: n // 2 + 3, 3] = np.nan
    texts = _instructions(ep)
    path = f"{file_root}/{_sample_path(ep)}"
    steps = {
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
        "is_terminal": np.arange(n) == n - 1,
        "language_instruction": [texts[0]] * n,
        "language_instruction_2": [texts[1]] * n,
        "language_instruction_3": [texts[2]] * n,
        "observation": {
            "gripper_position": traj.gripper[:, None],
            "cartesian_position": traj.ee,
            "joint_position": traj.joints,
            **images,
        },
        "action_dict": actions,
        "discount": np.ones(n, np.float32),
        "reward": ((np.arange(n) == n - 1) & traj.success).astype(np.float32),
        "action": np.concatenate([actions["cartesian_velocity"], actions["gripper_position"]], axis=1),
    }
    metadata = {"file_path": f"{path}/trajectory.h5", "recording_folderpath": f"{path}/recordings/MP4"}
    if release != "1.0.0":
        when = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S")
        ext = _extrinsics(rng)
        metadata.update({
            "building": f"{ep.lab}-building-{ep.task % 2}",
            "collector_id": f"{int(rng.integers(0, 2**32)):08x}",
            "date": f"{when:%Y-%m-%d}",
            "scene_id": int(rng.integers(1, 10_000)),
            "task_category": ("Move object into or out of container", "Move object")[ep.task % 2],
            "extrinsics_wrist_cam": np.array(ext["wrist"]),
            "extrinsics_exterior_cam_1": np.array(ext["ext1"]),
            "extrinsics_exterior_cam_2": np.array(ext["ext2"]),
        })
    return {"steps": steps, "episode_metadata": metadata}


def write_rlds(
    version_dir: Path,
    shards: list[list[dict]],
    *,
    features,
    builder: str = SAMPLE_BUILDER,
    split: str = "train",
) -> list[Path]:
    """Serialize episodes with TFDS, write TFRecord shards with TensorFlow, and let TFDS write
    ``dataset_info.json`` / ``features.json``.

    ``tf.train.Example`` maps are re-serialized with sorted keys (``deterministic=True``):
    protobuf's map order is otherwise random per process, the only thing that kept two
    runs from being byte-identical. Readers are order-agnostic.
    """
    tf, tfds = _tensorflow(), _tfds()
    version_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, episodes in enumerate(shards):
        path = version_dir / f"{builder}-{split}.tfrecord-{index:05d}-of-{len(shards):05d}"
        with tf.io.TFRecordWriter(os.fspath(path)) as writer:
            for i in range(len(episodes)):
                episode = episodes[i]() if callable(episodes[i]) else episodes[i]
                example = tf.train.Example.FromString(features.serialize_example(episode))
                del episode  # keep at most two copies of a long episode alive
                writer.write(example.SerializeToString(deterministic=True))
                del example
        paths.append(path)
    split_info = tfds.core.SplitInfo(
        name=split,
        shard_lengths=[len(s) for s in shards],
        num_bytes=sum(p.stat().st_size for p in paths),
        filename_template=None,
    )
    tfds.folder_dataset.write_metadata(
        data_dir=version_dir,
        features=features,
        split_infos=[split_info],
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        check_data=False,
        description="Synthetic DROID-layout sample (a1pipe); not real robot data.",
        homepage="https://droid-dataset.github.io/",
    )
    return paths


# -- raw writer -------------------------------------------------------------------------


def write_mp4(path: Path, frames, size_hw: tuple[int, int], fps: float = CONTROL_HZ) -> None:
    """MPEG-4 Part 2 (``mp4v``, the codec DROID's svo2mp4 writes through OpenCV/FFmpeg), bit-exact."""
    av = _av()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(os.fspath(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        # fixed quantiser (ffmpeg -q:v 4): global_quality is in lambda units (FF_QP2LAMBDA = 118)
        stream = container.add_stream("mpeg4", rate=int(fps), options={"flags": "+qscale", "global_quality": "472"})
        stream.height, stream.width = size_hw
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_trajectory_h5(path: Path, traj: Trajectory, ep: SampleEpisode, serials: dict[str, str], rng, t0_ms: int):
    """``trajectory.h5`` as DROID's TrajectoryWriter lays it out: resizable [T, ...] datasets per key."""
    n = traj.num_frames
    actions = traj.action_dict()
    ext = _extrinsics(rng)
    step_ms = t0_ms + np.round(np.arange(n) * 1000 / CONTROL_HZ + rng.uniform(-3, 3, n)).astype(np.int64)
    data: dict[str, np.ndarray] = {
        **{f"action/{k}": (v[:, 0] if v.shape[1] == 1 else v) for k, v in actions.items()},
        "action/target_cartesian_position": actions["cartesian_position"],
        "action/target_gripper_position": actions["gripper_position"][:, 0],
        "observation/robot_state/cartesian_position": traj.ee,
        "observation/robot_state/gripper_position": traj.gripper,
        "observation/robot_state/joint_positions": traj.joints,
        "observation/robot_state/joint_velocities": np.gradient(traj.joints, axis=0) * CONTROL_HZ,
        "observation/robot_state/joint_torques_computed": 5.0 * np.sin(traj.joints),
        "observation/robot_state/motor_torques_measured": 5.0 * np.sin(traj.joints) + rng.normal(0, 0.05, (n, 7)),
        "observation/robot_state/prev_controller_latency_ms": rng.uniform(0.5, 2.0, n),
        "observation/robot_state/prev_command_successful": np.ones(n, bool),
        "observation/controller_info/controller_on": np.ones(n, bool),
        "observation/controller_info/movement_enabled": np.arange(n) > 2,
        "observation/controller_info/success": (np.arange(n) == n - 1) & traj.success,
        "observation/controller_info/failure": (np.arange(n) == n - 1) & ~traj.success,
        "observation/timestamp/skip_action": np.zeros(n, bool),
        "observation/timestamp/control/control_start": step_ms - 2,
        "observation/timestamp/control/policy_start": step_ms + 1,
        "observation/timestamp/control/sleep_start": step_ms + 30,
        "observation/timestamp/control/step_start": step_ms,
        "observation/timestamp/control/step_end": step_ms + 66,
        "observation/timestamp/robot_state/read_start": step_ms + 3,
        "observation/timestamp/robot_state/read_end": step_ms + 4,
        "observation/timestamp/robot_state/robot_timestamp_seconds": (step_ms + 3) // 1000,
        "observation/timestamp/robot_state/robot_timestamp_nanos": ((step_ms + 3) % 1000) * 1_000_000,
    }
    for role, serial in serials.items():
        data[f"observation/camera_type/{serial}"] = np.full(n, 0 if role == "wrist" else 1, np.int64)
        for eye in ("left", "right"):
            data[f"observation/camera_extrinsics/{serial}_{eye}"] = np.repeat(np.array(ext[role])[None], n, axis=0)
        for clock, offset in (("estimated_capture", 5), ("frame_received", 12), ("read_start", 10), ("read_end", 14)):
            data[f"observation/timestamp/cameras/{serial}_{clock}"] = step_ms + offset
    with h5py.File(path, "w") as f:
        for key in sorted(data):
            value = np.asarray(data[key])
            f.create_dataset(key, data=value, maxshape=(None, *value.shape[1:]), track_times=False)
        f.attrs["building"] = f"{ep.lab}-building"
        f.attrs["scene_id"] = int(rng.integers(1, 10_000))
        f.attrs["user"] = "Synthetic Collector"
        f.attrs["current_task"] = TASKS[ep.task][0]
        f.attrs["success"] = traj.success
        f.attrs["failure"] = not traj.success
        f.attrs["robot_serial_number"] = f"{ep.lab.lower()}-panda-1"
        f.attrs["time"] = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S").strftime("%a_%b_%d_%H:%M:%S_%Y")
        f.attrs["version_number"] = "1.3"
        f.attrs["timesteps"] = n


def _write_raw_episode(base: Path, ep: SampleEpisode, seed: int, index: int) -> tuple[str, str]:
    """One raw trajectory folder; returns (folder relative to ``base``, uuid)."""
    rng = np.random.default_rng([seed, 2, index])
    rel = _sample_path(ep)
    folder = base / rel
    folder.mkdir(parents=True, exist_ok=True)
    traj = sample_trajectory(rng, int(rng.integers(45, 76)), success=ep.outcome == "success")
    serials = {role: str(int(rng.integers(10_000_000, 40_000_000))) for role in ("ext1", "ext2", "wrist")}
    serials["ext1"], serials["ext2"] = sorted([serials["ext1"], serials["ext2"]])  # ext1/ext2 by sorted serial
    when = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S")
    t0_ms = int((when - datetime(1970, 1, 1)).total_seconds() * 1000)
    _write_trajectory_h5(folder / RAW_TRAJECTORY, traj, ep, serials, rng, t0_ms)
    for cam in CAMERAS:
        serial = serials[cam.raw_role]
        n = traj.num_frames - (4 if ep.defect == "short_mp4" and cam.raw_role == "wrist" else 0)
        video = folder / RAW_MP4_DIR / f"{serial}.mp4"
        write_mp4(video, (render_camera(cam.name, traj, t, RAW_SAMPLE_IMAGE_HW) for t in range(n)),
                  RAW_SAMPLE_IMAGE_HW)
        if ep.defect == "truncated_mp4" and cam.raw_role == "ext2":
            video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    user_id = f"{int(rng.integers(0, 2**32)):08x}"
    uuid = f"{ep.lab}+{user_id}+{when:%Y-%m-%d-%Hh-%Mm-%Ss}"
    if ep.defect != "no_metadata":
        ext = _extrinsics(np.random.default_rng([seed, 3, index]))
        mp4_dir = f"{ep.outcome}/{when:%Y-%m-%d}/{_folder_name(when)}/{RAW_MP4_DIR}"
        record = {
            "uuid": uuid, "lab": ep.lab, "user": "Synthetic Collector", "user_id": user_id,
            "date": f"{when:%Y-%m-%d}", "timestamp": f"{when:%Y-%m-%d-%Hh-%Mm-%Ss}",
            "hdf5_path": f"{ep.outcome}/{when:%Y-%m-%d}/{_folder_name(when)}/{RAW_TRAJECTORY}",
            "building": f"{ep.lab}-building", "scene_id": int(rng.integers(1, 10_000)),
            "success": ep.outcome == "success", "robot_serial": f"{ep.lab.lower()}-panda-1", "droid_version": "1.3",
            "current_task": TASKS[ep.task][0], "trajectory_length": traj.num_frames,
            **{f"{role}_cam_serial": serials[role] for role in ("wrist", "ext1", "ext2")},
            **{f"{role}_cam_extrinsics": ext[role] for role in ("wrist", "ext1", "ext2")},
            **{f"{role}_mp4_path": f"{mp4_dir}/{serials[role]}.mp4" for role in ("wrist", "ext1", "ext2")},
            **{f"{role}_svo_path": f"{mp4_dir[:-3]}SVO/{serials[role]}.svo" for role in ("wrist", "ext1", "ext2")},
            "left_mp4_path": f"{mp4_dir}/{serials['ext1']}.mp4", "right_mp4_path": f"{mp4_dir}/{serials['ext2']}.mp4",
        }
        (folder / f"metadata_{uuid}.json").write_text(json.dumps(record), encoding="utf-8")
    if ep.defect == "corrupt_h5":
        h5_path = folder / RAW_TRAJECTORY
        h5_path.write_bytes(h5_path.read_bytes()[: h5_path.stat().st_size * 6 // 10])
    return rel, uuid


# -- entry points -----------------------------------------------------------------------


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """``out_dir/1.0.1/`` (RLDS) and ``out_dir/droid_raw/`` (raw); returns ref -> expected reason."""
    expected: dict[str, str | None] = {}
    version_dir = out_dir / SAMPLE_VERSION
    features = droid_features(SAMPLE_IMAGE_HW)
    shards: list[list] = []
    for s, episodes in enumerate(RLDS_SAMPLE_SHARDS):
        shard = []
        for e, ep in enumerate(episodes):
            rng = np.random.default_rng([seed, 1, s, e])
            traj = sample_trajectory(rng, int(rng.integers(40, 71)), success=ep.outcome == "success")
            root = ("gs://xembodiment_data/r2d2/r2d2-data-full", "/nfs/data/r2d2-data-full")[e % 2]
            shard.append(rlds_episode(features, ep, traj, rng, file_root=root, release=SAMPLE_VERSION))
            reason = SAMPLE_DEFECTS[ep.defect] if ep.defect else None
            if ep.defect != "lost":
                expected[f"{SAMPLE_VERSION}/{_sample_path(ep)}"] = reason.value if reason else None
        shards.append(shard)
    paths = write_rlds(version_dir, shards, features=features)
    _truncate_shard(paths[TRUNCATE_SHARD], TRUNCATE_AT)
    expected[paths[TRUNCATE_SHARD].relative_to(out_dir).as_posix()] = Reason.CORRUPT_FILE.value

    base = out_dir / RAW_SAMPLES_DIR
    annotations = {}
    for index, ep in enumerate(RAW_SAMPLES):
        rel, uuid = _write_raw_episode(base, ep, seed, index)
        if ep.defect != "unannotated":
            texts = _instructions(ep)
            annotations[uuid] = {key: text for (_, key), text in zip(LANGUAGE_KEYS, texts) if text}
        reason = SAMPLE_DEFECTS[ep.defect] if ep.defect else None
        expected[f"{RAW_SAMPLES_DIR}/{rel}"] = reason.value if reason else None
    (base / ANNOTATIONS_NAME).write_text(json.dumps(annotations, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return expected


def _truncate_shard(path: Path, record: int) -> None:
    """Cut a TFRecord file in the middle of record ``record`` (records before it stay intact)."""
    data = path.read_bytes()
    offset = 0
    for _ in range(record):
        length = int.from_bytes(data[offset: offset + 8], "little")
        offset += 8 + 4 + length + 4
    length = int.from_bytes(data[offset: offset + 8], "little")
    path.write_bytes(data[: offset + 12 + length // 2])


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """``episodes`` valid RLDS episodes of ``frames`` steps at ``height x width``, one shard per episode
    (up to 64 shards, then several episodes per shard). Episodes are built one at a time."""
    features = droid_features((height, width))
    num_shards = max(1, min(episodes, 64))
    per_shard = [len(range(s, episodes, num_shards)) for s in range(num_shards)]
    start = datetime(2024, 1, 1, 9, 0, 0)

    def make(index: int):
        def build():
            rng = np.random.default_rng([seed, 9, index])
            when = start + timedelta(minutes=7 * index)
            ep = SampleEpisode(("RAIL", "AUTOLab", "IRIS", "ILIAD")[index % 4], "success",
                               when.strftime("%Y-%m-%d %H:%M:%S"), index % len(TASKS))
            traj = sample_trajectory(rng, frames)
            return rlds_episode(features, ep, traj, rng, file_root="/synthetic/r2d2-data-full", release=SAMPLE_VERSION)
        return build

    shards, index = [], 0
    for count in per_shard:
        shards.append([make(index + i) for i in range(count)])
        index += count
    write_rlds(Path(out_dir) / SAMPLE_VERSION, shards, features=features)
