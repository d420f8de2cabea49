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

``pipelines/samples/droid.py`` writes both layouts (with TFDS/TensorFlow, h5py and PyAV, as
the releases were written) including deliberately broken episodes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from converters import register
from converters.base import Converter, SourceCard, episode_file, option, relative_inside
from converters.formats.video import decode_frames, probe_video
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import (
    ActionKind,
    CameraStream,
    Episode,
    TimestampOrigin,
    decode_image_bytes,
)
from pipelines.episode_store.schema import METADATA_SUCCESS

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


def load_tensorflow():
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


def load_tfds():
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
    tf = load_tensorflow()
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
        tfds = load_tfds()
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
            METADATA_SUCCESS: _success_from_path(file_path),
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
            METADATA_SUCCESS: success,
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


def _probe_video(path: Path, num_frames: int, where: str) -> dict[str, Any]:
    """Open the MP4 once to fail early on an unreadable file or a header that lists too few frames."""
    info = probe_video(path, where)
    if 0 < info.header_frames < num_frames:
        raise EpisodeError(
            Reason.FRAME_COUNT_MISMATCH,
            f"{where}: video has {info.header_frames} frames but {RAW_TRAJECTORY} has {num_frames} steps",
        )
    return {"codec": info.codec, "width": info.width, "height": info.height, "header_frames": info.header_frames}


def _video_stream(name: str, path: Path, num_frames: int, where: str) -> CameraStream:
    """Frame i of the MP4 for step i (extra trailing frames are ignored), decoded to RGB by PyAV."""

    def frames() -> Iterator[np.ndarray]:
        # two threads each: several cameras and workers decode at once
        with contextlib.closing(decode_frames(path, where, threads=2)) as decoded:
            for frame in itertools.islice(decoded, num_frames):
                yield frame.to_ndarray(format="rgb24")

    return CameraStream(name=name, num_frames=num_frames, open_frames=frames, thread_safe=True)
