"""AgiBot World (Alpha / Beta): task_info JSON + per-episode MP4 videos + ``proprio_stats.h5``.

The format, what was verified and what is assumed are in ``docs/sources/agibot.md``;
this module is its only reader. Layout under the input root (both forms may be mixed)::

    task_info/task_<task>.json                                   # a JSON list of episode records
    observations/<task>/<episode>/videos/<cam>_color.mp4         # extracted
    observations/<task>/<episode>/{depth,tactile}/...
    observations/<task>/<first>-<last>.tar                       # HF shard: members <episode>/videos/...
    proprio_stats/<task>/<episode>/proprio_stats.h5              # extracted
    proprio_stats/*.tar                                          # members <task>/<episode>/proprio_stats.h5
    proprio_stats/<task>/<first>-<last>.tar                      # per task: members <episode>/proprio_stats.h5
    parameters/<task>/<episode>/[parameters/]camera/<cam>_*.json # extracted (optional)
    parameters/*.tar                                             # members <task>/<episode>/[parameters/]camera/...
    parameters/<task>/*.tar                                      # per task: members <episode>/[parameters/]camera/...

Work units are ``observations/<task>/<episode>`` folders (one episode each) and
``observations/<task>/<name>.tar`` shards (several episodes each, read member by
member without unpacking). Either way the source-episode ref is ``<task>/<episode>``,
so an episode keeps its id whether it is read from a shard or from an extracted copy.
Proprio and camera-parameter files are found extracted first, else inside the tars of
their section (indexed once per process).

Per-variant differences live in the tables below: the state/action field layout
(``STATE_LAYOUT``/``ACTION_LAYOUT`` + ``FIELDS``), the effector types
(``EFFECTOR_TYPES``: embodiment id, effector dimension names and units, cameras) and
the task catalogue (``DEXHAND_TASKS``/``TACTILE_TASKS``). Camera frames are decoded
with PyAV one frame at a time while the writer consumes them.

``write_samples`` writes a small synthetic release in this layout (h5py, PyAV with
H.264 and AV1, tarfile) with the source's quirks and deliberately broken episodes;
``write_synthetic`` writes valid episodes of any size for benchmarks.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import tarfile
import tempfile
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import av
import h5py
import numpy as np

from converters import register
from converters.base import Converter, Rule, SourceCard, episode_file, episode_folder, is_dangling_link, option
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, CameraStream, Episode, TimestampOrigin

# --------------------------------------------------------------------------------------
# Declarative tables
# --------------------------------------------------------------------------------------

FPS = 30.0  # both public converters hard-code 30 Hz; the MP4s are 30 fps
ROBOT_TYPE = "agibot_g1"  # AgiBot G1 (the dataset calls it "a2d")
SIDES = ("left", "right")

ARM_JOINTS = tuple(f"{side}_arm_joint_{i}" for side in SIDES for i in range(7))
END_POSITION = tuple(f"{side}_end_{axis}" for side in SIDES for axis in "xyz")
END_ORIENTATION = tuple(f"{side}_end_q{axis}" for side in SIDES for axis in "xyzw")  # the source stores xyzw
HAND_JOINTS = tuple(f"{side}_hand_joint_{i}" for side in SIDES for i in range(6))


@dataclass(frozen=True)
class FieldSpec:
    """One ``proprio_stats.h5`` field (``state/<key>`` and/or ``action/<key>``) -> named dimensions."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    frame_shape: tuple[int, ...]  # per-frame shape in the file, e.g. (2, 3) for [N, 2, 3]
    action_gap_fill: str = "state"  # how frames without a command are filled: "state" (hold/state) | "zero"


def _units(unit: str, n: int) -> tuple[str, ...]:
    return (unit,) * n


#: fields shared by every effector type; ``effector/position`` comes from ``EFFECTOR_TYPES``
FIELDS: dict[str, FieldSpec] = {
    "joint/position": FieldSpec(ARM_JOINTS, _units("rad", 14), (14,)),
    "head/position": FieldSpec(("head_yaw", "head_pitch"), ("rad", "rad"), (2,)),
    "waist/position": FieldSpec(("waist_pitch", "waist_lift"), ("rad", "m"), (2,)),
    "robot/velocity": FieldSpec(("base_vel_x", "base_vel_yaw"), ("m/s", "rad/s"), (2,), action_gap_fill="zero"),
    "end/position": FieldSpec(END_POSITION, _units("m", 6), (2, 3)),
    "end/orientation": FieldSpec(END_ORIENTATION, _units("quaternion xyzw", 8), (2, 4)),
}
#: the unified state / action vectors, in this order (see docs/sources/agibot.md)
STATE_LAYOUT = ("joint/position", "effector/position", "head/position", "waist/position", "end/position",
                "end/orientation")
ACTION_LAYOUT = ("joint/position", "effector/position", "head/position", "waist/position", "robot/velocity",
                 "end/position", "end/orientation")
#: ``action/<group>/index`` to use when a group's own index is empty (any4lerobot: "agibot lost end index")
INDEX_FALLBACK = {"end": "joint"}
#: optional per-frame state fields kept as ``Episode.extras`` (absent or empty ``(0,)`` -> not written)
STATE_EXTRAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "joint_current": (("joint/current_value",), tuple(f"{j}_current" for j in ARM_JOINTS)),
    "base_pose": (("robot/position", "robot/orientation"),
                  ("base_x", "base_y", "base_z", "base_qx", "base_qy", "base_qz", "base_qw")),
}
STATE_EXTRA_SHAPES = {"joint/current_value": (14,), "robot/position": (3,), "robot/orientation": (4,)}

TACTILE_SENSORS = ("left_sensor_1", "left_sensor_2", "right_sensor_1", "right_sensor_2")
#: where a camera's video lives inside the episode folder (default ``videos/<cam>_color.mp4``)
CAMERA_FILES = {name: f"tactile/{name}.mp4" for name in TACTILE_SENSORS}
OBSERVATION_SUBDIRS = ("videos", "depth", "tactile")


def camera_file(camera: str) -> str:
    return CAMERA_FILES.get(camera, f"videos/{camera}_color.mp4")


@dataclass(frozen=True)
class EffectorType:
    """What differs between the G1's end effectors: embodiment id, effector dimensions, cameras."""

    name: str
    embodiment: str
    state_effector: FieldSpec
    action_effector: FieldSpec
    same_units: bool  # can a missing effector command be filled from the effector state?
    convention: str
    cameras: tuple[str, ...]
    optional_cameras: tuple[str, ...] = ()


_GRIPPER_STATE = FieldSpec(tuple(f"{s}_gripper_opening_mm" for s in SIDES), _units("mm (opening)", 2), (2,))
_GRIPPER_ACTION = FieldSpec(tuple(f"{s}_gripper_closedness" for s in SIDES), _units("0=open..1=closed", 2), (2,))
_GRIPPER_CONVENTION = ("state: gripper opening in mm (larger = more open); "
                       "action: commanded closedness 0 = fully open .. 1 = fully closed")
_HAND = FieldSpec(HAND_JOINTS, _units("rad", 12), (12,))

EFFECTOR_TYPES: dict[str, EffectorType] = {
    "gripper": EffectorType("gripper", "agibot_g1_gripper", _GRIPPER_STATE, _GRIPPER_ACTION, False,
                            _GRIPPER_CONVENTION, ("head", "hand_left", "hand_right")),
    "dexhand": EffectorType("dexhand", "agibot_g1_dexhand", _HAND, _HAND, True,
                            "state and action: 6 finger joint angles per hand (rad)",
                            ("head", "hand_left_fisheye", "hand_right_fisheye")),
    "tactile": EffectorType("tactile", "agibot_g1_tactile", _GRIPPER_STATE, _GRIPPER_ACTION, False,
                            _GRIPPER_CONVENTION + "; visuo-tactile sensor videos as extra cameras",
                            ("head", "hand_left", "hand_right"), TACTILE_SENSORS),
}
EMBODIMENTS = tuple(sorted(e.embodiment for e in EFFECTOR_TYPES.values()))

#: task catalogue (any4lerobot config.py, "from the task catalog sheet"); every other task is a gripper task
DEXHAND_TASKS = frozenset({475, 536, 547, 548, 549, 554, 577, 578, 591, 595, 608, 620, 622, 660, 679, 705, 710,
                           727, 730, 731, 749, 753})
TACTILE_TASKS = frozenset({666, 675, 676, 677, 694, 737, 774})
TASK_EFFECTORS: dict[int, str] = {**{t: "dexhand" for t in DEXHAND_TASKS}, **{t: "tactile" for t in TACTILE_TASKS}}

#: an AgiBot World task id: a YAML integer key (``327``) or its digits as a string (``"327"``)
TaskId = Annotated[int, Rule(ge=0)] | Annotated[str, Rule(pattern="[0-9]+")]
EffectorName = Annotated[str, Rule(choices=tuple(EFFECTOR_TYPES))]
CameraNames = tuple[Annotated[str, Rule(nonempty=True)], ...]
Slug = Annotated[str, Rule(pattern="[a-z0-9]+(?:_[a-z0-9]+)*")]


@dataclass(frozen=True)
class AgibotOptions:
    """``sources.agibot.options`` in params.yaml (docs/sources/agibot.md §4); a table left out or null
    changes nothing."""

    control_hz: float = option(FPS, gt=0, lt=math.inf)
    #: {task id: effector type}, overriding the catalogue for the tasks it lists
    effector_types: dict[TaskId, EffectorName] | None = None
    #: {effector type: embodiment id}
    embodiments: dict[EffectorName, Slug] | None = None
    #: {effector type: [camera, ...]}: the required cameras
    cameras: dict[EffectorName, Annotated[CameraNames, Rule(nonempty=True)]] | None = None
    #: {effector type: [camera, ...]}: included when present
    optional_cameras: dict[EffectorName, CameraNames] | None = None
    action_gap_fill: Literal["hold", "state"] = "hold"
    #: video/proprio frame-count difference reconciled by nearest timestamp
    max_frame_drift: int = option(3, ge=0)
    camera_parameters: Literal["read", "strict", "ignore"] = "read"
    #: e.g. ``"{task_name} | {init_scene_text}"``
    instruction_template: str | None = None
    #: threads per video decoder; 0 = FFmpeg decides (Beam already runs a worker per core)
    decode_threads: int = option(1, ge=0)

    def __post_init__(self):
        """The template may name only the three task_info texts: checked once here, not per episode."""
        if self.instruction_template is not None:
            try:
                self.instruction_template.format(task_name="", init_scene_text="", english_task_name="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"option instruction_template {self.instruction_template!r} may only use "
                                 f"{{task_name}}, {{init_scene_text}}, {{english_task_name}}: {exc}") from None


_H5_ERRORS = (OSError, RuntimeError)
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError)
_TASK_INFO_RE = re.compile(r"^task_(\d+)\.json$")
_RANGE_TAR_RE = re.compile(r"^(\d+)-(\d+)\.tar$")
_TASK_INFO_CACHE = 8


# --------------------------------------------------------------------------------------
# Reading files in place: extracted folders and tar members
# --------------------------------------------------------------------------------------


class _MemberReader(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``offset`` of a file (one tar member)."""

    def __init__(self, path: Path, offset: int, size: int):
        self._fh = open(path, "rb", buffering=0)
        self._offset, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + pos < 0:
            raise OSError(f"negative seek position {base + pos}")
        self._pos = base + pos
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._offset + self._pos)
        got = self._fh.readinto(memoryview(buffer)[:n]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def _open_member(path: Path, offset: int, size: int):
    return io.BufferedReader(_MemberReader(path, offset, size), buffer_size=1 << 18)


class _FolderFiles:
    """An episode's observation files in an extracted folder."""

    kind = "extracted"

    def __init__(self, folder: Path):
        self.folder = folder

    def has(self, rel: str) -> bool:
        return (self.folder / rel).is_file()

    def open(self, rel: str):
        return open(self.folder / rel, "rb")

    def origin(self, rel: str, root: Path) -> str:
        """Where ``rel`` is, relative to the release root (recorded as the stream's source file)."""
        return (self.folder / rel).relative_to(root).as_posix()

    def listing(self, subdir: str) -> list[str]:
        base = self.folder / subdir
        return sorted(f"{subdir}/{p.name}" for p in base.iterdir() if p.is_file()) if base.is_dir() else []

    def count(self, subdir: str, suffix: str) -> int:
        base = self.folder / subdir
        if not base.is_dir():
            return 0
        return sum(1 for entry in os.scandir(base) if entry.name.endswith(suffix) and entry.is_file())


class _TarFiles:
    """An episode's observation files as members of a tar shard (byte ranges, no extraction)."""

    kind = "tar"

    def __init__(self, tar: Path, members: dict[str, tuple[int, int]], counts: dict[str, int] | None = None):
        self.tar, self.members, self.counts = tar, members, dict(counts or {})

    def has(self, rel: str) -> bool:
        return rel in self.members

    def open(self, rel: str):
        offset, size = self.members[rel]
        return _open_member(self.tar, offset, size)

    def origin(self, rel: str, root: Path) -> str:
        """The shard relative to the release root, and the episode's member in it."""
        return f"{self.tar.relative_to(root).as_posix()}:{rel}"

    def listing(self, subdir: str) -> list[str]:
        return sorted(rel for rel in self.members if rel.startswith(subdir + "/"))

    def count(self, subdir: str, suffix: str) -> int:
        return self.counts.get(f"{subdir}/*{suffix}", 0) + sum(
            1 for rel in self.members if rel.startswith(subdir + "/") and rel.endswith(suffix))


class _TarDamaged(Exception):
    """``member``: the header that was read but whose data is cut off (``None``: no readable header)."""

    def __init__(self, path: Path, offset: int, detail: str, member: tarfile.TarInfo | None = None):
        self.path, self.offset, self.detail, self.member = path, offset, detail, member
        super().__init__(f"{path.name}: damaged at byte {offset}: {detail}")


def _iter_tar(path: Path) -> Iterator[tarfile.TarInfo]:
    """Yield a tar's members header by header (data is skipped by seeking), then check its end marker.

    Raises :class:`_TarDamaged` where the archive stops being readable: an unreadable
    header, a member whose data runs past the end of the file, or a missing
    end-of-archive block (a file cut at a member boundary, which ``tarfile`` alone
    reads as a clean end). Only the current header is kept in memory.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        try:
            tf = tarfile.open(fileobj=fh, mode="r:")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise _TarDamaged(path, 0, f"not a readable tar archive ({exc})") from exc
        with tf:
            while True:
                try:
                    info = tf.next()
                except (tarfile.TarError, EOFError, OSError) as exc:
                    raise _TarDamaged(path, tf.offset, str(exc)) from exc
                tf.members.clear()  # tarfile keeps every header it read; a shard can hold millions
                if info is None:
                    break
                if info.isfile() and info.offset_data + info.size > size:
                    raise _TarDamaged(path, info.offset_data, f"member {info.name} ({info.size} bytes) runs past "
                                                              f"the end of the file ({size} bytes)", info)
                yield info
            fh.seek(tf.offset)
            block = fh.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE or block.strip(b"\0"):
                raise _TarDamaged(path, tf.offset, "no end-of-archive block where the next header should be "
                                                   "(file truncated or a header is corrupt)")


def _member_parts(name: str) -> list[str]:
    name = name[2:] if name.startswith("./") else name
    return [p for p in name.split("/") if p]


def _observation_member(name: str) -> tuple[str, str] | None:
    """``(episode, rel)`` of a shard member such as ``<episode>/videos/head_color.mp4``."""
    parts = _member_parts(name)
    for i in range(1, len(parts) - 1):
        if parts[i] in OBSERVATION_SUBDIRS and parts[i - 1].isdigit():
            return parts[i - 1], "/".join(parts[i:])
    return None


def _sidecar_member(name: str, task: str | None = None) -> tuple[str, str, str] | None:
    """``(task, episode, rel)`` of a proprio/parameters tar member ``[...]/<task>/<episode>/<rel>``.

    ``task``: the task of a tar grouped per task (``proprio_stats/<task>/...tar``), whose members
    may be relative to the task (``<episode>/<rel>``) or to the release root; the member is found
    by its path suffix either way."""
    parts = _member_parts(name)
    for i in range(len(parts) - 2):
        if parts[i].isdigit() and parts[i + 1].isdigit() and (task is None or parts[i] == task):
            return parts[i], parts[i + 1], "/".join(parts[i + 2:])
    if task is not None:
        for i in range(len(parts) - 1):
            if parts[i].isdigit():
                return task, parts[i], "/".join(parts[i + 1:])
    return None


class _TarIndex:
    """Byte ranges of one tar's members as sorted numpy columns (~36 bytes per member, not ~400 in dicts)."""

    def __init__(self, rows: dict[str, array], names: list[str]):
        order = np.lexsort((np.frombuffer(rows["task"], np.int64), np.frombuffer(rows["episode"], np.int64)))
        self.episode, self.task = (np.frombuffer(rows[k], np.int64)[order] for k in ("episode", "task"))
        self.name = np.frombuffer(rows["name"], np.int32)[order]
        self.offset, self.size = (np.frombuffer(rows[k], np.int64)[order] for k in ("offset", "size"))
        self.names = names

    def members(self, task: int, episode: int) -> dict[str, tuple[int, int]]:
        lo, hi = np.searchsorted(self.episode, [episode, episode + 1])
        return {self.names[self.name[i]]: (int(self.offset[i]), int(self.size[i]))
                for i in range(lo, hi) if self.task[i] == task}


class _SidecarIndex:
    """Where each episode's files are inside the tars of one section (``proprio_stats/``, ``parameters/``).

    A tar is scanned (headers only) the first time an episode could be in it: tars
    named ``<first>-<last>.tar`` only for episode ids in that range, other names
    (Alpha's ``proprio_stats.tar``) always. The index holds byte ranges, not data.
    """

    def __init__(self, section: Path):
        self.section = section
        tars = sorted(section.glob("*.tar")) if section.is_dir() else []
        # grouped per task as well: <section>/<task>/<first>-<last>.tar
        tars += sorted(t for t in section.glob("*/*.tar") if t.parent.name.isdigit()) if section.is_dir() else []
        self._ranges: list[tuple[Path, tuple[int, int] | None, str | None]] = []
        for tar in tars:
            m = _RANGE_TAR_RE.match(tar.name)
            task = tar.parent.name if tar.parent != section else None
            self._ranges.append((tar, (int(m.group(1)), int(m.group(2))) if m else None, task))
        self._task_of = {tar: task for tar, _, task in self._ranges}
        self._index: dict[Path, _TarIndex] = {}
        self.damaged: dict[Path, str] = {}

    def candidates(self, episode: int, task: str | None = None) -> list[Path]:
        """The tars that may hold ``episode`` (of ``task``): ranged ones covering it, then unranged."""
        mine = [(t, r) for t, r, k in self._ranges if k is None or task is None or int(k) == int(task)]
        ranged = [t for t, r in mine if r is not None and r[0] <= episode <= r[1]]
        return ranged + [t for t, r in mine if r is None]

    def _scan(self, tar: Path) -> _TarIndex:
        if tar not in self._index:
            rows = {"episode": array("q"), "task": array("q"), "name": array("i"), "offset": array("q"),
                    "size": array("q")}
            names: dict[str, int] = {}
            try:
                for info in _iter_tar(tar):
                    parsed = _sidecar_member(info.name, self._task_of[tar]) if info.isfile() else None
                    if parsed is None:
                        continue
                    task, episode, rel = parsed
                    rows["episode"].append(int(episode))
                    rows["task"].append(int(task))
                    rows["name"].append(names.setdefault(rel, len(names)))
                    rows["offset"].append(info.offset_data)
                    rows["size"].append(info.size)
            except _TarDamaged as exc:  # keep what was readable before the damage
                self.damaged[tar] = str(exc)
            self._index[tar] = _TarIndex(rows, list(names))
        return self._index[tar]

    def lookup(self, task: str, episode: str) -> tuple[Path, dict[str, tuple[int, int]]] | None:
        for tar in self.candidates(int(episode), task):
            members = self._scan(tar).members(int(task), int(episode))
            if members:
                return tar, members
        return None

    def damage_note(self, episode: str) -> str | None:
        notes = [self.damaged[t] for t in self.candidates(int(episode)) if t in self.damaged]
        return "; ".join(notes) if notes else None


class _Lease:
    """Keeps track of an open episode's file handles; frames cannot be read once the context has exited."""

    def __init__(self, ref: str):
        self.ref, self.closed, self._handles = ref, False, set()

    def open(self, opener: Callable[[], Any]):
        if self.closed:
            raise RuntimeError(f"{self.ref}: episode context has exited; its camera streams are closed")
        handle = opener()
        self._handles.add(handle)
        return handle

    def release(self, handle) -> None:
        self._handles.discard(handle)
        handle.close()

    def close(self) -> None:
        self.closed = True
        for handle in list(self._handles):
            with contextlib.suppress(Exception):
                handle.close()
        self._handles.clear()


# --------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------


@dataclass
class _Proprio:
    num_frames: int
    t0_ns: int
    t_rel: np.ndarray
    state: np.ndarray
    state_names: list[str]
    state_units: list[str]
    action: np.ndarray
    action_names: list[str]
    action_units: list[str]
    commanded: np.ndarray
    commanded_names: list[str]
    action_sources: dict[str, dict[str, Any]]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    extra_names: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Video:
    camera: str
    rel: str
    codec: str
    width: int
    height: int
    fps: float | None
    frames: int
    alignment: str


@register
class AgibotConverter(Converter):
    """AgiBot World Alpha/Beta: MP4 cameras (PyAV), ``proprio_stats.h5`` (h5py), ``task_info`` JSON."""

    name = "agibot"
    source_version = "agibotworld-alpha-beta"
    converter_version = "1.1.0"
    embodiments = EMBODIMENTS
    control_hz = FPS
    card = SourceCard.load("agibot")  # converters/cards/agibot.yaml
    options_type = AgibotOptions

    def __init__(self, root, options=None):
        super().__init__(root, options)
        self.effectors = _effector_table(self.options)
        self.task_effectors = {**TASK_EFFECTORS, **{int(t): e for t, e in (self.options.effector_types or {}).items()}}
        self._task_info: OrderedDict[str, dict[str, Any] | EpisodeError] = OrderedDict()
        self._proprio_tars = _SidecarIndex(self.root / "proprio_stats")
        self._parameter_tars = _SidecarIndex(self.root / "parameters")

    # -- discovery --------------------------------------------------------------------

    def discover(self) -> list[str]:
        """``observations/<task>/<episode>`` folders and ``observations/<task>/*.tar`` shards.

        Sorted by task id, then extracted episodes by id, then shards by name. Entries
        whose names are not numeric ids (and non-tar files) are ignored; anything named like a
        shard is listed, so a directory or dangling link under a shard's name gets an outcome.
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"AgiBot World root {self.root} is not a directory")
        observations = self.root / "observations"
        found: list[tuple[tuple, str]] = []
        if observations.is_dir():
            for task in os.scandir(observations):
                if not (task.is_dir() and task.name.isdigit()):
                    continue
                for entry in os.scandir(task.path):
                    unit = f"observations/{task.name}/{entry.name}"
                    if entry.name.isdigit() and (entry.is_dir() or is_dangling_link(entry)):
                        found.append(((int(task.name), 0, int(entry.name), ""), unit))
                    elif entry.name.endswith(".tar"):
                        found.append(((int(task.name), 1, 0, entry.name), unit))
        return [unit for _, unit in sorted(found)]

    def episodes(self, unit: str) -> Iterator[tuple[str, Callable]]:
        parts = unit.split("/")
        if len(parts) == 3 and parts[0] == "observations" and parts[1].isdigit():
            task = parts[1]
            if parts[2].isdigit():  # the folder is checked on opening, so a dangling link is this episode's outcome
                yield f"{task}/{parts[2]}", lambda: self._open(task, parts[2],
                                                               _FolderFiles(episode_folder(self.root, unit)), unit)
                return
            if parts[2].endswith(".tar"):
                yield from self._shard_episodes(unit, task)
                return
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{unit}: not an observations/<task>/<episode> folder or "
                                                      f"observations/<task>/<shard>.tar")

    def _shard_episodes(self, unit: str, task: str) -> Iterator[tuple[str, Callable]]:
        """Episodes of one tar shard, in member order, each as soon as its last member has been seen.

        A damaged shard still yields every episode completed before the damage, then
        raises ``corrupt_file`` for the unit (the episode being read is lost with it).
        """
        path = episode_file(self.root, unit)  # a directory or dangling link by a shard's name is reported
        done: set[str] = set()
        reappeared: list[str] = []
        current: str | None = None
        members: dict[str, tuple[int, int]] = {}
        counts: dict[str, int] = {}

        def item(episode: str):
            done.add(episode)
            if (self.root / "observations" / task / episode).is_dir():
                return None  # an extracted copy exists: that unit converts it (documented)
            files = _TarFiles(path, dict(members), counts)
            return f"{task}/{episode}", lambda: self._open(task, episode, files, unit)

        damage: _TarDamaged | None = None
        try:
            for info in _iter_tar(path):
                parsed = _observation_member(info.name) if info.isfile() else None
                if parsed is None:
                    continue
                episode, rel = parsed
                if episode != current:
                    if current is not None and (pair := item(current)) is not None:
                        yield pair
                    if episode in done:
                        reappeared.append(episode)
                    current, members, counts = episode, {}, {}
                if rel.startswith("depth/"):  # never read: count, don't index (thousands per episode)
                    key = f"depth/*{Path(rel).suffix}"
                    counts[key] = counts.get(key, 0) + 1
                else:
                    members[rel] = (info.offset_data, info.size)
        except _TarDamaged as exc:
            damage = exc
        if damage is not None:
            # A cut-off member that opens a new episode means the episode before it is complete.
            cut = _observation_member(damage.member.name) if damage.member is not None else None
            if cut is not None and cut[0] != current:
                if current is not None and (pair := item(current)) is not None:
                    yield pair
                current = cut[0]
            lost = f"episode {task}/{current} was being read and is lost" if current else "no episode was read"
            raise EpisodeError(
                Reason.CORRUPT_FILE,
                f"{unit}: tar shard is damaged at byte {damage.offset} ({damage.detail}); {len(done)} episode(s) "
                f"before the damage were read, {lost}, later members are unreachable",
            ) from damage
        if current is not None and (pair := item(current)) is not None:
            yield pair
        if reappeared:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT,
                f"{unit}: members of episode(s) {sorted(set(reappeared))} are not contiguous in the shard; "
                f"those episodes were read from their first run of members only",
            )

    def open_episode(self, source_episode: str):
        """Open ``<task>/<episode>`` wherever it is (extracted folder, else a shard of its task)."""
        task, _, episode = source_episode.partition("/")
        if not (task.isdigit() and episode.isdigit()):
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{source_episode}: refs are '<task>/<episode>'")
        folder = self.root / "observations" / task / episode
        if folder.is_dir():
            return self._open(task, episode, _FolderFiles(folder), f"observations/{task}/{episode}")
        shards = sorted((self.root / "observations" / task).glob("*.tar"))
        for shard in shards:
            unit = shard.relative_to(self.root).as_posix()
            with contextlib.suppress(EpisodeError):
                for ref, opener in self._shard_episodes(unit, task):
                    if ref == source_episode:
                        return opener()
        raise EpisodeError(Reason.MISSING_FILE, f"{source_episode}: no observations folder or shard member found")

    # -- one episode ------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, task: str, episode: str, files, unit: str) -> Iterator[Episode]:
        ref = f"{task}/{episode}"
        record = self._episode_record(task, episode, ref)
        effector = self.effector_type(task)
        instruction, alternatives = self._language(record, ref)
        with self._proprio_file(task, episode, ref) as (h5, proprio_from):
            try:
                proprio = _read_proprio(h5, ref, effector, self.options.action_gap_fill)
            except _H5_ERRORS as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{ref}: unreadable proprio_stats.h5 content: {exc}") from exc
        subtasks, clipped = _subtasks(record, proprio.num_frames, ref)
        lease = _Lease(ref)
        try:
            cameras, videos = self._cameras(files, ref, effector, proprio, lease)
            params_meta, params_extras = self._camera_parameters(task, episode, ref, list(cameras),
                                                                 proprio.num_frames)
            extras = {**proprio.extras, "action_commanded": proprio.commanded}
            extra_names = {**proprio.extra_names, "action_commanded": proprio.commanded_names}
            for key, (values, names) in params_extras.items():
                extras[key], extra_names[key] = values, names
            metadata = self._metadata(task, episode, record, effector, files, unit, proprio, videos, clipped)
            metadata["proprio_from"] = proprio_from
            metadata.update(params_meta)
            yield Episode(
                source_episode=ref,
                embodiment=effector.embodiment,
                robot_type=ROBOT_TYPE,
                control_hz=self.options.control_hz,
                timestamp=proprio.t_rel,
                state=proprio.state,
                state_names=proprio.state_names,
                action=proprio.action,
                action_names=proprio.action_names,
                action_kind=ActionKind.JOINT_POSITION,
                instruction=instruction,
                cameras=cameras,
                timestamp_origin=TimestampOrigin.RECORDED,
                instruction_alternatives=alternatives,
                subtasks=subtasks,
                extras=extras,
                extra_names=extra_names,
                metadata=metadata,
            )
        finally:
            lease.close()

    def effector_type(self, task: str | int) -> EffectorType:
        name = self.task_effectors.get(int(task), "gripper")
        return self.effectors[name]

    # -- task_info ----------------------------------------------------------------------

    def _task_records(self, task: str, ref: str) -> dict[str, Any]:
        cached = self._task_info.get(task)
        if cached is None:
            cached = self._load_task_info(task, ref)
            self._task_info[task] = cached
            while len(self._task_info) > _TASK_INFO_CACHE:
                self._task_info.popitem(last=False)
        else:
            self._task_info.move_to_end(task)
        if isinstance(cached, EpisodeError):
            raise EpisodeError(cached.reason, f"{ref}: {cached.message}")
        return cached

    def _load_task_info(self, task: str, ref: str) -> dict[str, Any] | EpisodeError:
        path = self.root / "task_info" / f"task_{task}.json"
        rel = f"task_info/task_{task}.json"
        if not path.is_file():
            return EpisodeError(Reason.MISSING_METADATA, f"{rel} not found")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return EpisodeError(Reason.INVALID_METADATA, f"{rel} is not valid UTF-8 JSON: {exc}")
        except OSError as exc:
            return EpisodeError(Reason.CORRUPT_FILE, f"cannot read {rel}: {exc}")
        if not isinstance(raw, list):
            return EpisodeError(Reason.INVALID_METADATA, f"{rel} must hold a JSON list of episode records, "
                                                         f"got {type(raw).__name__}")
        records: dict[str, Any] = {}
        for i, rec in enumerate(raw):
            eid = rec.get("episode_id") if isinstance(rec, dict) else None
            if isinstance(eid, bool) or not isinstance(eid, (int, str)) or not str(eid).isdigit():
                return EpisodeError(Reason.INVALID_METADATA, f"{rel}[{i}] has no integer 'episode_id': {eid!r}")
            key = str(int(eid))
            records[key] = _Duplicate(key) if key in records else rec
        return records

    def _episode_record(self, task: str, episode: str, ref: str) -> dict[str, Any]:
        records = self._task_records(task, ref)
        record = records.get(str(int(episode)))
        if record is None:
            raise EpisodeError(Reason.MISSING_METADATA,
                               f"{ref}: episode {episode} is on disk but not listed in task_info/task_{task}.json")
        if isinstance(record, _Duplicate):
            raise EpisodeError(Reason.INVALID_METADATA,
                               f"{ref}: episode {episode} is listed more than once in task_info/task_{task}.json")
        return record

    def _language(self, record: dict[str, Any], ref: str) -> tuple[str, list[str]]:
        texts = {}
        for key in ("task_name", "init_scene_text", "english_task_name"):
            value = record.get(key)
            if value is not None and not isinstance(value, str):
                raise EpisodeError(Reason.INVALID_METADATA, f"{ref}: task_info '{key}' must be a string, got {value!r}")
            texts[key] = (value or "").strip()
        template = self.options.instruction_template
        if template:
            instruction = template.format(**texts).strip()
        else:
            instruction = _join_sentences(texts["task_name"], texts["init_scene_text"])
        if not instruction:
            raise EpisodeError(Reason.MISSING_LANGUAGE,
                               f"{ref}: task_info record has empty 'task_name' and 'init_scene_text'")
        alternatives = [t for t in (texts["task_name"], texts["english_task_name"]) if t and t != instruction]
        return instruction, list(dict.fromkeys(alternatives))

    # -- proprio ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _proprio_file(self, task: str, episode: str, ref: str) -> Iterator[tuple[h5py.File, str]]:
        """The open ``proprio_stats.h5`` (extracted, else a ``proprio_stats/*.tar`` member) and where it is."""
        path = self.root / "proprio_stats" / task / episode / "proprio_stats.h5"
        handle = None
        if path.is_file():
            where = f"proprio_stats/{task}/{episode}/proprio_stats.h5"
            target: Any = path
        else:
            hit = self._proprio_tars.lookup(task, episode)
            if hit is None or "proprio_stats.h5" not in hit[1]:
                damage = self._proprio_tars.damage_note(episode)
                if damage:
                    raise EpisodeError(Reason.CORRUPT_FILE, f"{ref}: proprio_stats.h5 not found; a proprio_stats "
                                                            f"tar that could hold it is damaged: {damage}")
                raise EpisodeError(Reason.MISSING_FILE, f"{ref}: no proprio_stats/{task}/{episode}/proprio_stats.h5 "
                                                        f"and no proprio_stats/*.tar member for it")
            tar, members = hit
            where = f"{tar.relative_to(self.root).as_posix()}:{task}/{episode}/proprio_stats.h5"
            target = handle = _open_member(tar, *members["proprio_stats.h5"])
        try:
            try:
                h5 = h5py.File(target, "r")
            except _H5_ERRORS as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{ref}: cannot open {where}: {exc}") from exc
            with h5:
                yield h5, where
        finally:
            if handle is not None:
                handle.close()

    # -- cameras ----------------------------------------------------------------------

    def _cameras(self, files, ref: str, effector: EffectorType, proprio: _Proprio, lease: _Lease):
        wanted = list(effector.cameras)
        missing = [c for c in wanted if not files.has(camera_file(c))]
        if missing:
            present = files.listing("videos") + files.listing("tactile")
            raise EpisodeError(Reason.MISSING_CAMERA, f"{ref}: camera video(s) {[camera_file(c) for c in missing]} "
                                                      f"not found (present: {present})")
        wanted += [c for c in effector.optional_cameras if c not in wanted and files.has(camera_file(c))]
        cameras: dict[str, CameraStream] = {}
        videos: dict[str, _Video] = {}
        n = proprio.num_frames
        tolerance = self.options.max_frame_drift
        for cam in wanted:
            rel = camera_file(cam)
            video = _probe_video(files, rel, cam, f"{ref}: camera '{cam}' ({rel})")
            drift = video.frames - n
            if drift == 0:
                alignment = "index"
            elif abs(drift) <= tolerance:
                alignment = "nearest_timestamp"
            else:
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH,
                    f"{ref}: camera '{cam}' video has {video.frames} frames but proprio_stats has {n} frames "
                    f"(difference {drift:+d}, reconcilable up to {tolerance})",
                )
            video = replace(video, alignment=alignment)
            videos[cam] = video
            # every stream opens its own file handle (also for tar members), so the writer
            # may consume the cameras on parallel threads
            cameras[cam] = CameraStream(cam, n, _frame_reader(files, video, proprio.t_rel, lease,
                                                              f"{ref}: camera '{cam}' ({rel})",
                                                              self.options.decode_threads),
                                        thread_safe=True, source_name=Path(rel).stem,
                                        source_file=files.origin(rel, self.root))
        return cameras, videos

    # -- camera parameters -------------------------------------------------------------

    def _parameter_files(self, task: str, episode: str):
        base = self.root / "parameters" / task / episode
        for folder in (base / "parameters" / "camera", base / "camera"):
            if folder.is_dir():
                return _FolderFiles(folder), folder.relative_to(self.root).as_posix()
        hit = self._parameter_tars.lookup(task, episode)
        if hit is None:
            return None, None
        tar, members = hit
        flat = {}
        for rel, span in members.items():
            parts = rel.split("/")
            if len(parts) >= 2 and parts[-2] == "camera":
                flat[parts[-1]] = span
        return _TarFiles(tar, flat), f"{tar.relative_to(self.root).as_posix()}:{task}/{episode}"

    def _camera_parameters(self, task: str, episode: str, ref: str, cameras: list[str], n: int):
        mode = self.options.camera_parameters
        if mode == "ignore":
            return {}, {}
        files, where = self._parameter_files(task, episode)
        if files is None:
            return {}, {}
        meta: dict[str, Any] = {"camera_parameters_from": where}
        extras: dict[str, tuple[np.ndarray, list[str]]] = {}
        intrinsics: dict[str, dict[str, float]] = {}
        issues: list[str] = []
        for cam in cameras:
            name = f"{cam}_intrinsic_params.json"
            if files.has(name):
                try:
                    intrinsics[cam] = _intrinsics(_read_json(files, name), name)
                except ValueError as exc:
                    issues.append(str(exc))
            name = f"{cam}_extrinsic_params_aligned.json"
            if files.has(name):
                try:
                    poses = _aligned_extrinsics(_read_json(files, name), name)
                except ValueError as exc:
                    issues.append(str(exc))
                else:
                    if len(poses) == n:
                        extras[f"{cam}_extrinsic"] = (poses, [f"{cam}_{c}" for c in EXTRINSIC_COLUMNS])
                    else:
                        issues.append(f"{name} has {len(poses)} poses for {n} frames (not stored)")
        if issues and mode == "strict":
            raise EpisodeError(Reason.INVALID_METADATA, f"{ref}: camera parameters ({where}): {'; '.join(issues)}")
        if intrinsics:
            meta["camera_intrinsics"] = intrinsics
        if issues:
            meta["camera_parameter_issues"] = issues
        return meta, extras

    # -- metadata -----------------------------------------------------------------------

    def _metadata(self, task, episode, record, effector, files, unit, proprio, videos, clipped) -> dict[str, Any]:
        n = proprio.num_frames
        steps = np.diff(proprio.t_rel)
        metadata: dict[str, Any] = {
            "task_id": int(task),
            "episode_id": int(episode),
            "task_name": record.get("task_name"),
            "init_scene_text": record.get("init_scene_text"),
            "effector_type": effector.name,
            "effector_convention": effector.convention,
            "quaternion_order": "xyzw",
            "layout": files.kind,
            "unit": unit,
            "timestamp_start_ns": proprio.t0_ns,
            "timestamp": "seconds since timestamp_start_ns (proprio_stats.h5 /timestamp, int64 ns)",
            "measured_hz": round(1.0 / float(np.median(steps)), 3) if n > 1 and np.median(steps) > 0 else None,
            "state_units": proprio.state_units,
            "action_units": proprio.action_units,
            "action_gap_fill": self.options.action_gap_fill,
            "action_sources": proprio.action_sources,
            "videos": {cam: {"file": v.rel, "codec": v.codec, "height": v.height, "width": v.width, "fps": v.fps,
                             "frames": v.frames, "alignment": v.alignment} for cam, v in videos.items()},
            "depth_frames": files.count("depth", ".png"),
            "depth_converted": False,
        }
        for key in ("english_task_name",):
            if isinstance(record.get(key), str):
                metadata[key] = record[key]
        label_info = record.get("label_info")
        if isinstance(label_info, dict):
            metadata["label_info"] = label_info
        if clipped:
            metadata["subtask_frames_clipped"] = clipped
        if proprio.ignored:
            metadata["ignored_fields"] = proprio.ignored
        return metadata

    # -- samples ----------------------------------------------------------------------

    @classmethod
    def write_samples(cls, out_dir: Path, seed: int = 0) -> dict[str, str | None]:
        """The synthetic sample release (``SAMPLE_TASKS``); ref -> expected reason or ``None``."""
        return write_samples(Path(out_dir), seed)

    @classmethod
    def write_synthetic(cls, out_dir: Path, *, episodes: int, frames: int, height: int, width: int,
                        seed: int = 0) -> None:
        write_synthetic(Path(out_dir), episodes=episodes, frames=frames, height=height, width=width, seed=seed)


class _Duplicate:
    def __init__(self, episode: str):
        self.episode = episode


def _join_sentences(first: str, second: str) -> str:
    if first and second:
        return f"{first}{'' if first[-1] in '.!?。' else '.'} {second}"
    return first or second


def _effector_table(options: AgibotOptions) -> dict[str, EffectorType]:
    table = {}
    for name, spec in EFFECTOR_TYPES.items():
        table[name] = replace(
            spec,
            embodiment=(options.embodiments or {}).get(name, spec.embodiment),
            cameras=(options.cameras or {}).get(name, spec.cameras),
            optional_cameras=(options.optional_cameras or {}).get(name, spec.optional_cameras),
        )
    return table


# --------------------------------------------------------------------------------------
# proprio_stats.h5
# --------------------------------------------------------------------------------------


def _h5_dataset(h5: h5py.File, key: str, ref: str) -> h5py.Dataset | None:
    """The dataset at ``key``; ``None`` when absent or empty (the source writes unused fields as ``(0,)``)."""
    obj = h5.get(key)
    if obj is None:
        return None
    if not isinstance(obj, h5py.Dataset):
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}: proprio_stats.h5:/{key} is a group, expected a dataset")
    if not (np.issubdtype(obj.dtype, np.number) or np.issubdtype(obj.dtype, np.bool_)):
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT,
                           f"{ref}: proprio_stats.h5:/{key} has non-numeric dtype {obj.dtype}")
    if obj.size == 0:
        return None
    return obj


def _field_values(ds: h5py.Dataset, key: str, spec_shape: tuple[int, ...], ref: str, hint: str = "") -> np.ndarray:
    if tuple(ds.shape[1:]) != spec_shape:
        raise EpisodeError(
            Reason.SHAPE_MISMATCH,
            f"{ref}: proprio_stats.h5:/{key} has shape {tuple(ds.shape)}, "
            f"expected [N, {', '.join(map(str, spec_shape))}]{hint}",
        )
    return np.asarray(ds[()], dtype=np.float64).reshape(ds.shape[0], -1)


def _read_proprio(h5: h5py.File, ref: str, effector: EffectorType, gap_fill: str) -> _Proprio:
    ts = _h5_dataset(h5, "timestamp", ref)
    if ts is None:
        if "timestamp" in h5:
            raise EpisodeError(Reason.EMPTY_EPISODE, f"{ref}: proprio_stats.h5:/timestamp is empty (0 frames)")
        raise EpisodeError(Reason.MISSING_KEY, f"{ref}: proprio_stats.h5 has no /timestamp")
    if ts.ndim != 1:
        raise EpisodeError(Reason.SHAPE_MISMATCH, f"{ref}: proprio_stats.h5:/timestamp must be [N], got {ts.shape}")
    raw = np.asarray(ts[()])
    n = len(raw)
    if np.issubdtype(raw.dtype, np.integer):  # int64 ns: subtract in integers, exact
        t0 = int(raw[0])
        t_rel = (raw.astype(np.int64) - np.int64(t0)).astype(np.float64) / 1e9
    else:
        raw = raw.astype(np.float64)
        t0 = int(round(raw[0])) if np.isfinite(raw[0]) else 0
        t_rel = (raw - raw[0]) / 1e9

    specs = {**FIELDS, "effector/position": effector.state_effector}
    hint = (f" (task is a '{effector.name}' task; set options.effector_types if the catalogue is wrong)")
    state_cols, state_names, state_units = [], [], []
    state_values: dict[str, np.ndarray] = {}
    for key in STATE_LAYOUT:
        spec = specs[key]
        ds = _h5_dataset(h5, f"state/{key}", ref)
        if ds is None:
            raise EpisodeError(Reason.MISSING_KEY, f"{ref}: proprio_stats.h5:/state/{key} is absent or empty")
        if ds.shape[0] != n:
            raise EpisodeError(Reason.LENGTH_MISMATCH,
                               f"{ref}: proprio_stats.h5:/state/{key} has {ds.shape[0]} frames but /timestamp has {n}")
        values = _field_values(ds, f"state/{key}", spec.frame_shape, ref, hint if key.startswith("effector") else "")
        state_values[key] = values
        state_cols.append(values)
        state_names += spec.names
        state_units += spec.units

    action_specs = {**FIELDS, "effector/position": effector.action_effector}
    action_cols, action_names, action_units, commanded, sources = [], [], [], [], {}
    for key in ACTION_LAYOUT:
        spec = action_specs[key]
        same_units = key != "effector/position" or effector.same_units
        state = state_values.get(key) if same_units else None
        values, mask, source = _action_field(h5, key, spec, n, state, gap_fill, ref)
        action_cols.append(values)
        action_names += spec.names
        action_units += spec.units
        commanded.append(mask)
        sources[key] = source

    extras: dict[str, np.ndarray] = {}
    extra_names: dict[str, list[str]] = {}
    ignored: list[str] = []
    for name, (keys, names) in STATE_EXTRAS.items():
        parts = []
        for key in keys:
            ds = _h5_dataset(h5, f"state/{key}", ref)
            if ds is None:
                break
            if ds.shape[0] != n or tuple(ds.shape[1:]) != STATE_EXTRA_SHAPES[key]:
                ignored.append(f"state/{key}: shape {tuple(ds.shape)} does not fit [N={n}, "
                               f"{', '.join(map(str, STATE_EXTRA_SHAPES[key]))}]")
                break
            parts.append(np.asarray(ds[()], dtype=np.float32).reshape(n, -1))
        if len(parts) == len(keys):
            extras[name] = np.concatenate(parts, axis=1)
            extra_names[name] = list(names)

    return _Proprio(
        num_frames=n,
        t0_ns=t0,
        t_rel=t_rel,
        state=np.concatenate(state_cols, axis=1).astype(np.float32),
        state_names=state_names,
        state_units=state_units,
        action=np.concatenate(action_cols, axis=1).astype(np.float32),
        action_names=action_names,
        action_units=action_units,
        commanded=np.stack(commanded, axis=1).astype(np.uint8),
        commanded_names=[k.replace("/", "_") for k in ACTION_LAYOUT],
        action_sources=sources,
        extras=extras,
        extra_names=extra_names,
        ignored=ignored,
    )


def _action_field(h5, key: str, spec: FieldSpec, n: int, state: np.ndarray | None, gap_fill: str, ref: str):
    """One action field as ``[N, D]`` values, the per-frame "commanded" mask and a JSON note of its source.

    ``M == N`` rows: used as is. ``M < N``: scattered to the frames listed in
    ``action/<group>/index`` (or the fallback group's index when it is empty); frames
    without a command are filled by ``_fill_gaps``. Absent/empty: every frame filled.
    ``M > N``: ``length_mismatch``.
    """
    path = f"action/{key}"
    width = int(np.prod(spec.frame_shape))
    ds = _h5_dataset(h5, path, ref)
    if ds is None:
        if state is None and spec.action_gap_fill != "zero":
            raise EpisodeError(Reason.MISSING_KEY, f"{ref}: proprio_stats.h5:/{path} is absent or empty and cannot be "
                                                   f"filled from the state (different units: {spec.units[0]})")
        mask = np.zeros(n, dtype=bool)
        values = _fill_gaps(np.zeros((n, width)), mask, state, spec, gap_fill)
        return values, mask, {"status": "absent", "commanded_frames": 0}
    m = ds.shape[0]
    if m > n:
        raise EpisodeError(Reason.LENGTH_MISMATCH, f"{ref}: proprio_stats.h5:/{path} has {m} frames, more than the "
                                                   f"{n} state frames (action_len > state_len)")
    values = _field_values(ds, path, spec.frame_shape, ref)
    if m == n:
        return values, np.ones(n, dtype=bool), {"status": "full", "commanded_frames": n}
    group = key.split("/")[0]
    index_key, index = f"action/{group}/index", _h5_dataset(h5, f"action/{group}/index", ref)
    if index is None and group in INDEX_FALLBACK:
        index_key = f"action/{INDEX_FALLBACK[group]}/index"
        index = _h5_dataset(h5, index_key, ref)
    if index is None:
        raise EpisodeError(Reason.LENGTH_MISMATCH, f"{ref}: proprio_stats.h5:/{path} has {m} of {n} frames and no "
                                                   f"non-empty action/{group}/index to place them")
    idx = np.asarray(index[()])
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}: proprio_stats.h5:/{index_key} must be a 1-D integer "
                                                      f"array, got {idx.dtype} {idx.shape}")
    if len(idx) != m:
        raise EpisodeError(Reason.LENGTH_MISMATCH, f"{ref}: proprio_stats.h5:/{index_key} lists {len(idx)} frames but "
                                                   f"/{path} has {m}")
    if idx.min() < 0 or idx.max() >= n:
        raise EpisodeError(Reason.LENGTH_MISMATCH, f"{ref}: proprio_stats.h5:/{index_key} points at frames "
                                                   f"{int(idx.min())}..{int(idx.max())}, outside 0..{n - 1}")
    if np.any(np.diff(idx) <= 0):
        raise EpisodeError(Reason.CORRUPT_FILE, f"{ref}: proprio_stats.h5:/{index_key} is not strictly increasing")
    full = np.zeros((n, width))
    full[idx] = values
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    full = _fill_gaps(full, mask, state, spec, gap_fill)
    return full, mask, {"status": "indexed", "commanded_frames": int(m), "index": index_key}


def _fill_gaps(values: np.ndarray, mask: np.ndarray, state: np.ndarray | None, spec: FieldSpec,
               mode: str) -> np.ndarray:
    """Fill frames where no command was recorded (``mask`` False).

    Velocity fields (``action_gap_fill="zero"``): 0. Position fields: ``hold`` keeps the
    last commanded value and uses the state before the first command; ``state``
    uses the state at every gap. Without a state in the same units (gripper
    closedness vs. opening in mm), gaps hold the last command and frames before the
    first command take the first command.
    """
    if mask.all():
        return values
    out = values.copy()
    gaps = ~mask
    if spec.action_gap_fill == "zero":
        out[gaps] = 0.0
        return out
    if mode == "state" and state is not None:
        out[gaps] = state[gaps]
        return out
    frames = np.arange(len(mask))
    last = np.maximum.accumulate(np.where(mask, frames, -1))
    held = gaps & (last >= 0)
    out[held] = values[last[held]]
    leading = last < 0
    if leading.any():
        if state is not None:
            out[leading] = state[leading]
        else:
            out[leading] = values[np.argmax(mask)]
    return out


def _subtasks(record: dict[str, Any], n: int, ref: str) -> tuple[list[str | None] | None, list[dict[str, int]]]:
    """Per-frame sub-step text from ``label_info.action_config`` (``end_frame`` inclusive; later segments win)."""
    label_info = record.get("label_info")
    if label_info is None:
        return None, []
    if not isinstance(label_info, dict):
        raise EpisodeError(Reason.INVALID_METADATA, f"{ref}: task_info 'label_info' must be an object")
    config = label_info.get("action_config", [])
    if not isinstance(config, list):
        raise EpisodeError(Reason.INVALID_METADATA, f"{ref}: task_info 'label_info.action_config' must be a list")
    labels: list[str | None] = [None] * n
    clipped = []
    for i, seg in enumerate(config):
        where = f"{ref}: task_info label_info.action_config[{i}]"
        if not isinstance(seg, dict):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} must be an object, got {seg!r}")
        start, end, text = seg.get("start_frame"), seg.get("end_frame"), seg.get("action_text")
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end)) or start < 0 or end < start:
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} has invalid frames start={start!r} end={end!r}")
        if not isinstance(text, str):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} has no string 'action_text': {text!r}")
        if end >= n:
            clipped.append({"segment": i, "end_frame": end, "num_frames": n})
        text = text.strip()
        for frame in range(start, min(end, n - 1) + 1):
            labels[frame] = text or None
    return (labels if any(labels) else None), clipped


# --------------------------------------------------------------------------------------
# Camera parameters
# --------------------------------------------------------------------------------------

EXTRINSIC_COLUMNS = ("r00", "r01", "r02", "r10", "r11", "r12", "r20", "r21", "r22", "tx", "ty", "tz")


def _read_json(files, name: str) -> Any:
    with files.open(name) as fh:
        data = fh.read()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None


def _intrinsics(raw: Any, name: str) -> dict[str, float]:
    block = raw.get("intrinsic") if isinstance(raw, dict) else None
    if not isinstance(block, dict):
        raise ValueError(f"{name} has no 'intrinsic' object")
    out = {}
    for key, aliases in (("fx", ("fx",)), ("fy", ("fy",)), ("cx", ("ppx", "cx")), ("cy", ("ppy", "cy"))):
        value = next((block[a] for a in aliases if a in block), None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: intrinsic '{aliases[0]}' must be a finite number, got {value!r}")
        out[key] = float(value)
    return out


def _aligned_extrinsics(raw: Any, name: str) -> np.ndarray:
    if not isinstance(raw, list):
        raise ValueError(f"{name} must be a list of per-frame poses")
    rows = np.empty((len(raw), 12), dtype=np.float32)
    for i, rec in enumerate(raw):
        ext = rec.get("extrinsic") if isinstance(rec, dict) else None
        try:
            rot = np.asarray(ext["rotation_matrix"], dtype=np.float64)
            trans = np.asarray(ext["translation_vector"], dtype=np.float64)
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{name}[{i}] has no extrinsic.rotation_matrix / translation_vector") from None
        if rot.shape != (3, 3) or trans.shape != (3,) or not (np.isfinite(rot).all() and np.isfinite(trans).all()):
            raise ValueError(f"{name}[{i}] must hold a finite 3x3 rotation and 3-vector translation")
        rows[i, :9], rows[i, 9:] = rot.reshape(9), trans
    return rows


# --------------------------------------------------------------------------------------
# Video decoding (PyAV): probe at open time, decode one frame at a time while streaming
# --------------------------------------------------------------------------------------


def _probe_video(files, rel: str, camera: str, where: str) -> _Video:
    try:
        with files.open(rel) as fh, av.open(fh, mode="r") as container:
            if not container.streams.video:
                raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: file has no video stream")
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
            if frames <= 0:  # no frame count in the header: count packets (no decoding)
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            rate = stream.average_rate or stream.guessed_rate
            return _Video(camera, rel, stream.codec_context.name, int(stream.codec_context.width),
                          int(stream.codec_context.height), float(rate) if rate else None, frames, "")
    except EpisodeError:
        raise
    except _AV_ERRORS as exc:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc


def _frame_reader(files, video: _Video, t_rel: np.ndarray, lease: _Lease, where: str, threads: int = 1):
    """``open_frames`` for one camera: exactly ``len(t_rel)`` RGB frames aligned to the proprio clock.

    ``index``: video frame i is proprio frame i. ``nearest_timestamp``: each proprio
    frame takes the video frame whose presentation time (relative to the first video
    frame) is nearest to its own time since the first proprio frame. At most two
    decoded frames are held. A stream that ends before its declared frame count
    raises ``video_decode_error``.
    """
    n = len(t_rel)

    def frames() -> Iterator[np.ndarray]:
        handle = lease.open(lambda: files.open(video.rel))
        try:
            try:
                container = av.open(handle, mode="r")
            except _AV_ERRORS as exc:
                raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc
            with container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = threads
                if threads != 1:
                    stream.codec_context.thread_type = "AUTO"
                decoded = _Decoded(container, stream, video, where)
                if video.alignment == "index":
                    yield from _by_index(decoded, n, where)
                else:
                    yield from _by_nearest_time(decoded, t_rel, where)
        finally:
            lease.release(handle)

    return frames


class _Decoded:
    """Frames of one video stream in presentation order, with times in seconds and a running count."""

    def __init__(self, container, stream, video: _Video, where: str):
        self._iter = container.decode(stream)
        self.video, self.where, self.count = video, where, 0
        self._time_base = stream.time_base
        self._first_pts = None

    def next(self):
        """``(rgb array, seconds since the first frame)`` or ``None`` at the end of the stream."""
        try:
            frame = next(self._iter, None)
        except _AV_ERRORS as exc:
            raise EpisodeError(Reason.VIDEO_DECODE_ERROR,
                               f"{self.where}: decoding failed after {self.count} of {self.video.frames} frames: {exc}"
                               ) from exc
        if frame is None:
            if self.count != self.video.frames:
                raise EpisodeError(Reason.VIDEO_DECODE_ERROR,
                                   f"{self.where}: stream ended after {self.count} of its {self.video.frames} frames "
                                   f"(truncated or corrupt video)")
            return None
        self.count += 1
        if self.count > self.video.frames:
            raise EpisodeError(Reason.FRAME_COUNT_MISMATCH,
                               f"{self.where}: decodes to more frames than the {self.video.frames} its header declares")
        if frame.pts is not None and self._time_base is not None:
            if self._first_pts is None:
                self._first_pts = frame.pts
            t = float((frame.pts - self._first_pts) * self._time_base)
        else:
            t = (self.count - 1) / (self.video.fps or FPS)
        return frame.to_ndarray(format="rgb24"), t


def _by_index(decoded: _Decoded, n: int, where: str) -> Iterator[np.ndarray]:
    for _ in range(n):
        item = decoded.next()
        if item is None:  # unreachable: next() raises first, since frames == n was checked at open
            raise EpisodeError(Reason.FRAME_COUNT_MISMATCH, f"{where}: video ended after {decoded.count} of {n} frames")
        yield item[0]
    if decoded.next() is not None:
        raise EpisodeError(Reason.FRAME_COUNT_MISMATCH, f"{where}: video has more than {n} frames")


def _by_nearest_time(decoded: _Decoded, t_rel: np.ndarray, where: str) -> Iterator[np.ndarray]:
    current = decoded.next()
    if current is None:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: video has no frames")
    upcoming = decoded.next()
    for t in t_rel:
        while upcoming is not None and abs(upcoming[1] - t) <= abs(current[1] - t):
            current, upcoming = upcoming, decoded.next()
        yield current[0]
    while upcoming is not None:  # decode the rest so a truncated stream is still reported
        upcoming = decoded.next()


# --------------------------------------------------------------------------------------
# Sample data: a synthetic AgiBot World release with the source's quirks and broken episodes
# --------------------------------------------------------------------------------------

#: defect -> reason the converter must report
SAMPLE_DEFECTS: dict[str, Reason] = {
    "action_longer": Reason.LENGTH_MISMATCH,  # action/joint/position has 4 more rows than the state (tasks 352...)
    "no_proprio": Reason.MISSING_FILE,  # observations on disk, no proprio_stats.h5 anywhere
    "truncated_mp4": Reason.VIDEO_DECODE_ERROR,  # head video cut to 60% -> no moov atom (AgiBot-World issue #23)
    "not_in_task_info": Reason.MISSING_METADATA,  # episode folder exists, task_info has no record
    "video_short": Reason.FRAME_COUNT_MISMATCH,  # hand_right video 25 frames short of the proprio stream
    "corrupt_h5": Reason.CORRUPT_FILE,  # proprio_stats.h5 cut to 50%
    "stream_cut": Reason.VIDEO_DECODE_ERROR,  # faststart MP4 cut mid-stream: opens, fails while streaming
    "nan_state": Reason.NON_FINITE_VALUES,  # NaN in state/joint/position for 3 frames
}


@dataclass(frozen=True)
class SampleEpisode:
    episode: int
    defect: str | None = None
    codec: str = "h264"  # "h264" | "av1" | "mixed" (AV1 head camera, H.264 hand cameras)
    actions: str = "indexed"  # "indexed": shorter arrays + action/<group>/index | "full": N rows
    depth: bool = False
    params: str | None = None  # "nested" (parameters/camera/), "flat" (camera/) or None
    video_one_short: bool = False  # every video 1 frame short: reconciled by nearest timestamp
    clip_last_segment: bool = False  # last action_config segment ends one past the last frame


@dataclass(frozen=True)
class SampleShard:
    name: str
    episodes: tuple[SampleEpisode, ...]
    truncate_in: int | None = None  # episode whose second video the file is cut inside


@dataclass(frozen=True)
class SampleTask:
    task: int
    task_name: str
    scene: str
    steps: tuple[tuple[str, str], ...]  # (skill, action_text) for reach / grasp / place
    episodes: tuple[SampleEpisode, ...] = ()  # extracted layout
    shards: tuple[SampleShard, ...] = ()  # HF tar-shard layout
    proprio: str = "extracted"  # "extracted" | "alpha_tar" (proprio_stats.tar) | "beta_tar" (<first>-<last>.tar)
    listed_only: tuple[int, ...] = ()  # in task_info, not on disk


_STEPS_SHELF = (("Reach", "Reach for the cucumber on the shelf."), ("Pick", "Pick up the cucumber."),
                ("Place", "Place the cucumber in the shopping basket."))
SAMPLE_IMAGE_HW = {"head": (96, 128), "hand_left": (96, 128), "hand_right": (96, 128),
                   "hand_left_fisheye": (96, 120), "hand_right_fisheye": (96, 120),
                   **{s: (112, 64) for s in TACTILE_SENSORS}}

SAMPLE_TASKS: tuple[SampleTask, ...] = (
    SampleTask(
        327, "Pickup items in the supermarket",
        "The robot stands in front of a supermarket shelf with vegetables; a shopping basket is on its left.",
        _STEPS_SHELF,
        episodes=(
            SampleEpisode(648642, depth=True, params="nested"),
            SampleEpisode(648649, codec="mixed", video_one_short=True, params="flat"),
            SampleEpisode(648655, codec="av1", actions="full", clip_last_segment=True),
            SampleEpisode(648660, defect="action_longer", actions="full"),
            SampleEpisode(648671, defect="no_proprio"),
            SampleEpisode(648680, defect="truncated_mp4"),
            SampleEpisode(648690, defect="not_in_task_info"),
            SampleEpisode(648700, defect="video_short"),
            SampleEpisode(648712, defect="corrupt_h5"),
            SampleEpisode(648715, defect="nan_state", actions="full"),
        ),
        listed_only=(648699,),
    ),
    SampleTask(
        475, "Hang the towel on the rack",
        "A folded towel lies on the table in front of the robot; a towel rack stands to its right.",
        (("Reach", "Reach for the towel."), ("Grasp", "Grasp the towel with both hands."),
         ("Place", "Hang the towel on the rack.")),
        episodes=(SampleEpisode(652110, codec="av1"), SampleEpisode(652117, codec="av1", actions="full")),
        proprio="alpha_tar",
    ),
    SampleTask(
        666, "Insert the plug into the power strip",
        "A power strip and a plug lie on the desk in front of the robot.",
        (("Reach", "Reach for the plug."), ("Pick", "Pick up the plug."),
         ("Insert", "Insert the plug into the strip.")),
        episodes=(SampleEpisode(780201, actions="full"),),
    ),
    SampleTask(
        390, "Restock the beverage shelf",
        "The robot faces a beverage shelf; bottles stand in a crate on the floor beside it.",
        (("Reach", "Reach for the bottle in the crate."), ("Pick", "Pick up the bottle."),
         ("Place", "Place the bottle on the shelf.")),
        shards=(
            SampleShard("683001-683020", (SampleEpisode(683001, depth=True, params="nested"),
                                          SampleEpisode(683009, codec="av1", params="nested"),
                                          SampleEpisode(683020, defect="stream_cut"))),
            SampleShard("683101-683130", (SampleEpisode(683101), SampleEpisode(683115, codec="mixed"),
                                          SampleEpisode(683130)), truncate_in=683130),
        ),
        proprio="beta_tar",
    ),
)
SAMPLE_FRAMES = (45, 121)  # episode lengths drawn from [low, high)
SAMPLE_T0_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """Write every task of ``SAMPLE_TASKS`` under ``out_dir``; byte-identical for a given seed.

    Determinism: datasets use ``track_times=False``; tar members carry fixed owners,
    modes and mtime 0; MP4s are muxed with ``fflags=+bitexact``, x264 and SVT-AV1 run
    single-threaded. The bytes are identical for a given PyAV/FFmpeg build.
    """
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr otherwise
    out_dir.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    proprio_tar_entries: dict[str, list[tuple[str, bytes | None]]] = {"alpha_tar": [], "beta_tar": []}
    parameter_tar_entries: list[tuple[str, bytes | None]] = []
    beta_range: list[int] = []
    for task in SAMPLE_TASKS:
        records = []
        shard_files: dict[int, list[tuple[str, bytes]]] = {}
        for ep in list(task.episodes) + [e for s in task.shards for e in s.episodes]:
            rng = np.random.default_rng([seed, task.task, ep.episode])
            built = _build_sample_episode(task, ep, rng)
            if ep.defect != "not_in_task_info":
                records.append(built.record)
            if ep.defect != "no_proprio":
                if task.proprio == "extracted":
                    _write_file(out_dir / "proprio_stats" / str(task.task) / str(ep.episode) / "proprio_stats.h5",
                                built.proprio)
                else:
                    proprio_tar_entries[task.proprio] += [
                        (f"{task.task}/{ep.episode}/", None),
                        (f"{task.task}/{ep.episode}/proprio_stats.h5", built.proprio),
                    ]
                    if task.proprio == "beta_tar":
                        beta_range.append(ep.episode)
            if built.parameters:
                if task.shards:
                    prefix = f"{task.task}/{ep.episode}/parameters/camera"
                    parameter_tar_entries += [(f"{task.task}/{ep.episode}/", None), (f"{prefix}/", None)]
                    parameter_tar_entries += [(f"{prefix}/{n}", d) for n, d in built.parameters]
                else:
                    sub = "parameters/camera" if ep.params == "nested" else "camera"
                    for name, data in built.parameters:
                        _write_file(out_dir / "parameters" / str(task.task) / str(ep.episode) / sub / name, data)
            if task.shards:
                shard_files[ep.episode] = built.observations
            else:
                for rel, data in built.observations:
                    _write_file(out_dir / "observations" / str(task.task) / str(ep.episode) / rel, data)
                expected[f"{task.task}/{ep.episode}"] = SAMPLE_DEFECTS[ep.defect].value if ep.defect else None
        for shard in task.shards:
            entries: list[tuple[str, bytes | None]] = []
            for ep in shard.episodes:
                entries.append((f"{ep.episode}/", None))
                folders = set()
                for rel, data in shard_files.pop(ep.episode):
                    folder = rel.split("/")[0]
                    if folder not in folders:
                        folders.add(folder)
                        entries.append((f"{ep.episode}/{folder}/", None))
                    entries.append((f"{ep.episode}/{rel}", data))
            blob = _tar_bytes(entries)
            unit = f"observations/{task.task}/{shard.name}.tar"
            if shard.truncate_in is not None:
                blob = _cut_tar_inside(blob, f"{shard.truncate_in}/videos/hand_right_color.mp4")
                expected[unit] = Reason.CORRUPT_FILE.value
            _write_file(out_dir / unit, blob)
            for ep in shard.episodes:
                if ep.episode == shard.truncate_in:
                    break  # this one and later ones are lost with the damage (reported under the unit)
                expected[f"{task.task}/{ep.episode}"] = SAMPLE_DEFECTS[ep.defect].value if ep.defect else None
        records += [_task_record(task, eid, 100, np.random.default_rng([seed, task.task, eid]))
                    for eid in task.listed_only]
        records.sort(key=lambda r: r["episode_id"])
        _write_file(out_dir / "task_info" / f"task_{task.task}.json",
                    (json.dumps(records, indent=4, ensure_ascii=False) + "\n").encode("utf-8"))
    if proprio_tar_entries["alpha_tar"]:
        _write_file(out_dir / "proprio_stats" / "proprio_stats.tar", _tar_bytes(proprio_tar_entries["alpha_tar"]))
    if proprio_tar_entries["beta_tar"]:
        name = f"{min(beta_range)}-{max(beta_range)}.tar"
        _write_file(out_dir / "proprio_stats" / name, _tar_bytes(proprio_tar_entries["beta_tar"]))
        if parameter_tar_entries:
            _write_file(out_dir / "parameters" / name, _tar_bytes(parameter_tar_entries))
    return dict(sorted(expected.items()))


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """``episodes`` valid gripper episodes of ``frames`` frames, three ``height x width`` AV1 cameras.

    Extracted layout (task 327), the same proprio/task_info/video writers as the samples.
    Frames carry mild sensor noise (sigma 2, eight cycled patterns) so still stretches
    are not bit-identical, as with real cameras. Frames are rendered and encoded one
    at a time straight to disk, so memory stays flat at any episode length. Odd sizes
    are rounded up to even (yuv420p).
    """
    os.environ.setdefault("SVT_LOG", "1")
    h, w = height + height % 2, width + width % 2
    task = SampleTask(327, "Pickup items in the supermarket",
                      "The robot stands in front of a supermarket shelf with vegetables.", _STEPS_SHELF)
    cameras = EFFECTOR_TYPES["gripper"].cameras
    records = []
    for i in range(episodes):
        eid = 700000 + i
        rng = np.random.default_rng([seed, task.task, eid])
        motion = _sample_motion(rng, frames, "gripper")
        records.append(_task_record(task, eid, frames, rng, motion))
        noise = [rng.normal(0.0, 2.0, (h, w, 3)).astype(np.int16) for _ in range(8)]
        folder = out_dir / "observations" / str(task.task) / str(eid) / "videos"
        folder.mkdir(parents=True, exist_ok=True)
        renderers = {cam: _Renderer(cam, (h, w), "gripper") for cam in cameras}
        encoders = {cam: _VideoEncoder(str(folder / f"{cam}_color.mp4"), "av1", h, w, fast=True) for cam in cameras}
        try:
            for t in range(frames):
                for k, (cam, renderer) in enumerate(renderers.items()):
                    frame = renderer.render(motion, t).astype(np.int16) + noise[(t + 3 * k) % len(noise)]
                    encoders[cam].add(np.clip(frame, 0, 255).astype(np.uint8))
        finally:
            for encoder in encoders.values():
                encoder.close()
        _write_file(out_dir / "proprio_stats" / str(task.task) / str(eid) / "proprio_stats.h5",
                    _proprio_bytes(motion, SampleEpisode(eid), "gripper", rng))
    records.sort(key=lambda r: r["episode_id"])
    _write_file(out_dir / "task_info" / f"task_{task.task}.json",
                (json.dumps(records, indent=4, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tar_bytes(entries: list[tuple[str, bytes | None]]) -> bytes:
    """An uncompressed GNU tar with fixed owners, modes and mtime (``None`` data = directory entry)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cut_tar_inside(blob: bytes, member: str) -> bytes:
    """The tar cut in the middle of ``member``'s data (an interrupted download)."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf:
        info = tf.getmember(member)
    return blob[: info.offset_data + info.size // 2]


# -- motion ---------------------------------------------------------------------------------

_HOME = np.array([-0.2, -0.9, 0.3, -1.3, 0.1, 0.5, 0.0])
_HAND_CLOSED = np.array([1.25, 1.2, 1.15, 1.1, 0.9, 0.45])
GRIPPER_OPEN_MM, GRIPPER_CLOSED_MM = 120.0, 35.0  # opening range of the sample gripper (third-party 35..120 mm)


def _min_jerk(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    tau = np.arange(1, steps + 1) / steps
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return a + s[:, None] * (b - a)


@dataclass
class _Motion:
    n: int
    phases: np.ndarray  # frame where each phase starts: idle, reach, descend, close, hold, move, open, retreat, end
    joints: np.ndarray  # [N, 14] follower joints (state)
    leader: np.ndarray  # [N, 14] commanded joints (leads the state by 2 frames)
    close_cmd: np.ndarray  # [N, 2] commanded closedness 0..1
    close_state: np.ndarray  # [N, 2] achieved closedness (lags; stops at the object)
    head: np.ndarray  # [N, 2]
    waist: np.ndarray  # [N, 2]
    t_ns: np.ndarray  # [N] int64


def _sample_motion(rng: np.random.Generator, n: int, effector: str) -> _Motion:
    """Idle prefix, reach, descend, close, a still hold, move, open, retreat; both arms on one schedule."""
    idle = int(round(n * rng.uniform(0.10, 0.20)))
    share = rng.dirichlet([3.0, 2.0, 1.2, 1.2, 3.0, 1.2, 2.0])
    share[3] = max(share[3], 0.12)
    share /= share.sum()
    steps = np.maximum(1, np.round(share * (n - 1 - idle)).astype(int))
    steps[-1] = max(1, n - 1 - idle - int(steps[:-1].sum()))
    home = np.concatenate([_HOME, _HOME * np.array([-1, 1, -1, 1, -1, 1, -1])])
    way = [home + rng.uniform(-0.4, 0.4, 14) for _ in range(4)]
    grasp = way[1]
    head_home = np.array([0.0, 0.35])
    heads = [head_home + rng.uniform(-0.15, 0.15, 2) for _ in range(3)]
    # knots: (joints, closedness command, head) at the end of each phase
    knots = [(way[0], 0.0, heads[0]), (grasp, 0.0, heads[0]), (grasp, 1.0, heads[0]), (grasp, 1.0, heads[0]),
             (way[2], 1.0, heads[1]), (way[2], 0.0, heads[1]), (way[3], 0.0, heads[2])]
    start = np.concatenate([home, [0.0, 0.0], head_home])
    rows = [np.repeat(start[None], idle + 1, axis=0)]
    for (pose, close, head), k in zip(knots, steps):
        target = np.concatenate([pose, [close, close], head])
        rows.append(_min_jerk(rows[-1][-1], target, int(k)))
    traj = np.concatenate(rows)[:n]
    joints = traj[:, :14]
    close_cmd = np.clip(traj[:, 14:16], 0.0, 1.0)
    grip_limit = 1.0 if effector == "dexhand" else rng.uniform(0.55, 0.8)  # the object stops the fingers
    close_state = np.zeros_like(close_cmd)
    for t in range(1, n):
        close_state[t] = close_state[t - 1] + 0.35 * (np.minimum(close_cmd[t], grip_limit) - close_state[t - 1])
    leader = np.concatenate([joints[2:], np.repeat(joints[-1:], 2, axis=0)])
    waist = np.repeat(np.array([[0.35, 0.28]]), n, axis=0)
    dt = 33_333_333 + rng.integers(-400_000, 400_000, n)
    t_ns = SAMPLE_T0_NS + int(rng.integers(0, 10**13)) + np.concatenate([[0], np.cumsum(dt[1:])]).astype(np.int64)
    phases = np.concatenate([[0, idle], idle + np.cumsum(steps)])
    return _Motion(n, phases, joints, leader, close_cmd, close_state, traj[:, 16:18], waist, t_ns)


def _end_pose(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Toy forward kinematics: flange position [N,2,3] (m) and orientation [N,2,4] (quaternion xyzw)."""
    n = len(joints)
    pos = np.empty((n, 2, 3))
    quat = np.empty((n, 2, 4))
    for a, sign in enumerate((1.0, -1.0)):
        q = joints[:, 7 * a: 7 * a + 7]
        pos[:, a, 0] = 0.45 + 0.22 * np.sin(q[:, 1] + 0.9) + 0.05 * q[:, 3]
        pos[:, a, 1] = sign * 0.22 + 0.18 * np.sin(q[:, 0]) + 0.04 * q[:, 2]
        pos[:, a, 2] = 0.95 + 0.2 * np.cos(q[:, 3] + 1.3) + 0.03 * q[:, 5]
        roll, pitch, yaw = 0.5 * q[:, 4], 0.5 * q[:, 5] - 0.2, 0.6 * q[:, 6] + 0.5 * q[:, 0]
        cr, sr, cp, sp, cy, sy = (np.cos(roll / 2), np.sin(roll / 2), np.cos(pitch / 2), np.sin(pitch / 2),
                                  np.cos(yaw / 2), np.sin(yaw / 2))
        xyzw = np.stack([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
                         cr * cp * cy + sr * sp * sy], axis=1)
        quat[:, a] = xyzw / np.linalg.norm(xyzw, axis=1, keepdims=True)
    return pos, quat


def _effector_values(closedness: np.ndarray, effector: str, kind: str) -> np.ndarray:
    if effector == "dexhand":
        return np.concatenate([closedness[:, :1] * _HAND_CLOSED, closedness[:, 1:] * _HAND_CLOSED], axis=1)
    if kind == "state":
        return GRIPPER_OPEN_MM - (GRIPPER_OPEN_MM - GRIPPER_CLOSED_MM) * closedness
    return closedness


# -- proprio_stats.h5 -----------------------------------------------------------------------


def _proprio_bytes(motion: _Motion, ep: SampleEpisode, effector: str, rng: np.random.Generator) -> bytes:
    """``proprio_stats.h5`` as AgiBot writes it: float64 groups, int64 ns timestamps, empty unused fields."""
    n = motion.n
    end_pos, end_quat = _end_pose(motion.joints)
    cmd_pos, cmd_quat = _end_pose(motion.leader)
    joints = motion.joints.copy()
    if ep.defect == "nan_state":
        joints[n // 2: n // 2 + 3, 3] = np.nan
    state = {
        "effector/position": _effector_values(motion.close_state, effector, "state"),
        "end/position": end_pos, "end/orientation": end_quat,
        "head/position": motion.head, "joint/position": joints,
        "joint/current_value": 0.8 * np.sin(motion.joints) + 2.0 * np.gradient(motion.joints, axis=0),
        "waist/position": motion.waist,
    }
    action = {
        "effector/position": _effector_values(motion.close_cmd, effector, "action"),
        "end/position": cmd_pos, "end/orientation": cmd_quat,
        "head/position": motion.head, "joint/position": motion.leader,
        "robot/velocity": np.zeros((n, 2)), "waist/position": motion.waist,
    }
    index: dict[str, np.ndarray] = {g: np.arange(n) for g in ("effector", "end", "head", "joint", "robot", "waist")}
    if ep.actions == "indexed":  # teleop engaged late and released early; the gripper is commanded every 2nd frame
        first = int(motion.phases[1]) // 2 + int(rng.integers(1, 4))
        last = n - int(rng.integers(3, 8))
        index["joint"] = np.arange(first, last)
        index["effector"] = np.arange(first, last, 2)
        index["end"] = np.zeros(0, dtype=np.int64)  # lost: readers fall back to joint/index
        for group in ("joint", "end"):
            for key in [k for k in action if k.startswith(group)]:
                action[key] = action[key][index["joint"]]
        action["effector/position"] = action["effector/position"][index["effector"]]
        for group in ("head", "waist", "robot"):  # not teleoperated: written empty
            for key in [k for k in action if k.startswith(group)]:
                action[key] = np.zeros(0)
            index[group] = np.zeros(0, dtype=np.int64)
    if ep.defect == "action_longer":
        extra = np.repeat(action["joint/position"][-1:], 4, axis=0)
        action["joint/position"] = np.concatenate([action["joint/position"], extra])
    plain = {"track_times": False}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("timestamp", data=motion.t_ns.astype(np.int64), **plain)
        for key, values in sorted(state.items()):
            f.create_dataset(f"state/{key}", data=np.asarray(values, dtype=np.float64), **plain)
        for key in ("robot/position", "robot/orientation", "joint/velocity", "joint/effort", "end/velocity",
                    "end/angular", "end/wrench", "effector/force", "waist/velocity"):  # unused: empty (0,)
            f.create_dataset(f"state/{key}", data=np.zeros(0), **plain)
        for key, values in sorted(action.items()):
            f.create_dataset(f"action/{key}", data=np.asarray(values, dtype=np.float64), **plain)
        for group, idx in sorted(index.items()):
            f.create_dataset(f"action/{group}/index", data=np.asarray(idx, dtype=np.int64), **plain)
        for key in ("joint/velocity", "joint/effort", "effector/force", "end/wrench"):
            f.create_dataset(f"action/{key}", data=np.zeros(0), **plain)
    data = buf.getvalue()
    if ep.defect == "corrupt_h5":
        data = data[: len(data) // 2]
    return data


# -- task_info --------------------------------------------------------------------------------


def _task_record(task: SampleTask, episode: int, n: int, rng: np.random.Generator,
                 motion: _Motion | None = None, clip_last: bool = False) -> dict[str, Any]:
    if motion is not None:
        p = motion.phases  # idle, reach, descend, close, hold, move, open, retreat, end
        bounds = [(int(p[1]), int(p[3]) - 1), (int(p[3]), int(p[5]) - 1), (int(p[5]), int(p[7]) - 1)]
    else:
        bounds = [(5, n // 3), (n // 3 + 1, 2 * n // 3), (2 * n // 3 + 1, n - 1)]
    if clip_last:
        bounds[-1] = (bounds[-1][0], n)  # off by one: one past the last frame
    config = [{"start_frame": s, "end_frame": e, "action_text": text, "skill": skill}
              for (s, e), (skill, text) in zip(bounds, task.steps)]
    return {
        "episode_id": episode,
        "task_name": task.task_name,
        "init_scene_text": task.scene,
        "label_info": {"action_config": config, "key_frame": []},
    }


# -- camera parameters ------------------------------------------------------------------------


def _parameter_files(motion: _Motion, cameras: tuple[str, ...], hw: dict[str, tuple[int, int]],
                     with_extrinsics: bool) -> list[tuple[str, bytes]]:
    out = []
    for cam in cameras:
        h, w = hw[cam]
        intr = {"intrinsic": {"fx": round(0.9 * w, 3), "fy": round(0.9 * w, 3), "ppx": w / 2, "ppy": h / 2}}
        out.append((f"{cam}_intrinsic_params.json", (json.dumps(intr, indent=4) + "\n").encode()))
        if not with_extrinsics:
            continue
        poses = []
        for t in range(motion.n):
            yaw, pitch = motion.head[t]
            cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
            rot = [[cy * cp, -sy, cy * sp], [sy * cp, cy, sy * sp], [-sp, 0.0, cp]]
            trans = [0.05, 0.0 if cam == "head" else (0.2 if "left" in cam else -0.2), 1.35 + motion.waist[t, 1]]
            poses.append({"extrinsic": {"rotation_matrix": [[round(v, 6) for v in r] for r in rot],
                                        "translation_vector": [round(v, 6) for v in trans]}})
        out.append((f"{cam}_extrinsic_params_aligned.json", (json.dumps(poses, indent=4) + "\n").encode()))
    return out


# -- images and videos --------------------------------------------------------------------------


class _Renderer:
    """Frames of a toy scene driven by the state, so still stretches of motion give still video.

    ``head``: both flanges as discs (size follows the gripper) over a table, shifted by
    head yaw/pitch; wrist cameras: the target object against the wrist motion plus two
    finger bars (gripper) or five finger bars (dexhand) that close with the effector;
    tactile sensors: a gel pad whose contact blob grows with the grip.
    """

    def __init__(self, camera: str, hw: tuple[int, int], effector: str):
        self.camera, self.effector = camera, effector
        self.h, self.w = hw
        self.side = 0 if "left" in camera else 1
        self.kind = "tactile" if camera in TACTILE_SENSORS else ("head" if camera == "head" else "wrist")
        self._pose_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._background = self._make_background()

    def _make_background(self) -> np.ndarray:
        h, w = self.h, self.w
        rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        if self.kind == "tactile":
            img = np.full((h, w, 3), 205.0, np.float32) - rows * 25
            return np.clip(img, 0, 255).astype(np.uint8)
        tint = (sum(self.camera.encode()) % 5) * 7.0
        wall = np.array([168 + tint, 174, 186 - tint], np.float32)
        table = np.array([122, 98 + tint, 72], np.float32)
        img = np.where(rows < 0.42, wall, table + (rows - 0.42) * 45.0) * np.ones((1, w, 1), np.float32)
        img[int(h * 0.42): int(h * 0.44)] = (92.0, 82.0, 70.0)
        img[int(h * 0.46):, :: max(8, w // 10)] *= 0.92
        return np.clip(img, 0, 255).astype(np.uint8)

    def render(self, motion: _Motion, t: int) -> np.ndarray:
        img = self._background.copy()
        h, w = self.h, self.w
        grip = motion.close_state[t]
        if self.kind == "tactile":
            contact = grip[self.side]
            _disc(img, w * 0.5, h * (0.45 if self.camera.endswith("1") else 0.55), 2 + contact * w * 0.35,
                  (95, 60, 150))
            return img
        if self._pose_cache is None:
            self._pose_cache = _end_pose(motion.joints)
        pos = self._pose_cache[0][t]
        if self.kind == "head":
            yaw, pitch = motion.head[t] - np.array([0.0, 0.35])
            _disc(img, w * (0.5 - yaw * 0.8), h * (0.62 + pitch * 0.9), h * 0.07, (230, 200, 40))  # the object
            for a, colour in ((0, (215, 60, 45)), (1, (45, 90, 215))):
                cx = w * (0.5 - (pos[a, 1]) * 1.1 - yaw * 0.8)
                cy = h * (0.9 - (pos[a, 2] - 0.75) * 1.6 + pitch * 0.9)
                _disc(img, cx, cy, h * (0.05 + 0.04 * (1.0 - grip[a])), colour)
            return img
        a = self.side
        _disc(img, w * (0.5 + (pos[a, 1] - (0.22 if a == 0 else -0.22)) * 2.5),
              h * (0.4 + (pos[a, 0] - 0.5) * 2.5), h * 0.22, (230, 200, 40))
        if self.effector == "dexhand":
            for f in range(5):
                length = h * (0.35 - 0.22 * grip[a] * (1.0 - 0.1 * f))
                x0 = w * (0.18 + 0.14 * f)
                _box(img, x0, h - length, x0 + w * 0.07, h, (150, 120, 100))
        else:
            gap = w * (0.06 + 0.24 * (1.0 - grip[a]))
            for x0 in (w / 2 - gap - w * 0.07, w / 2 + gap):
                _box(img, x0, h * 0.78, x0 + w * 0.07, h, (70, 70, 70))
        return img


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), w)
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    alpha = np.clip(r - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) + 0.5, 0.0, 1.0)[..., None]
    patch = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.round(patch * (1.0 - alpha) + alpha * np.asarray(colour, np.float32)).astype(np.uint8)


def _box(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    h, w = img.shape[:2]
    xa, xb, ya, yb = max(int(x0), 0), min(int(x1), w), max(int(y0), 0), min(int(y1), h)
    if xa < xb and ya < yb:
        img[ya:yb, xa:xb] = colour


class _VideoEncoder:
    """One MP4 written with PyAV: H.264 (libx264) or AV1 (libsvtav1), 30 fps, yuv420p, frame pts = index."""

    def __init__(self, target, codec: str, height: int, width: int, *, faststart: bool = False, fast: bool = False):
        options = {"fflags": "+bitexact"}
        if faststart:
            options["movflags"] = "+faststart"
        self.container = av.open(target, mode="w", format="mp4", options=options)
        if codec == "av1":
            self.stream = self.container.add_stream("libsvtav1", rate=30)
            self.stream.options = {"crf": "38", "preset": "12" if fast else "10", "svtav1-params": "lp=1"}
        else:
            self.stream = self.container.add_stream("libx264", rate=30)
            # Samples: single-threaded, and without x264's SIMD, which reads uninitialised padding
            # at small frame sizes and made the bytes vary from run to run (seen at 112x64).
            self.stream.options = {"crf": "24", "preset": "veryfast"} if fast else {
                "crf": "24", "preset": "veryfast", "threads": "1", "x264-params": "asm=0"}
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.pts = 0

    def add(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.pts
        self.pts += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _encode(frames: list[np.ndarray], codec: str, *, faststart: bool = False) -> bytes:
    if faststart:  # the muxer re-reads its output to move the index forward: needs a real file
        with tempfile.TemporaryDirectory(prefix="agibot-sample-") as tmp:
            path = os.path.join(tmp, "video.mp4")
            encoder = _VideoEncoder(path, codec, *frames[0].shape[:2], faststart=True)
            for frame in frames:
                encoder.add(frame)
            encoder.close()
            return Path(path).read_bytes()
    buf = io.BytesIO()
    encoder = _VideoEncoder(buf, codec, *frames[0].shape[:2])
    for frame in frames:
        encoder.add(frame)
    encoder.close()
    return buf.getvalue()


def _depth_png(motion: _Motion, t: int, hw: tuple[int, int]) -> bytes:
    """A uint16 depth PNG in mm (the release's head_depth_<frame>.png): a table plane with the arms closer."""
    from PIL import Image

    h, w = hw
    rows = np.linspace(1.6, 0.7, h)[:, None] * np.ones((1, w))
    depth = rows * 1000.0
    for a in range(2):
        x = int(w * (0.3 + 0.4 * a + 0.2 * np.sin(motion.joints[t, 7 * a])))
        depth[h // 2:, max(0, x - 4): x + 4] = 550.0
    buf = io.BytesIO()
    Image.fromarray(depth.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class _BuiltEpisode:
    record: dict[str, Any]
    proprio: bytes
    observations: list[tuple[str, bytes]]  # (rel path inside the episode folder, bytes)
    parameters: list[tuple[str, bytes]]


def _build_sample_episode(task: SampleTask, ep: SampleEpisode, rng: np.random.Generator) -> _BuiltEpisode:
    effector = TASK_EFFECTORS.get(task.task, "gripper")
    spec = EFFECTOR_TYPES[effector]
    n = int(rng.integers(*SAMPLE_FRAMES))
    motion = _sample_motion(rng, n, effector)
    hw = SAMPLE_IMAGE_HW
    record = _task_record(task, ep.episode, n, rng, motion, clip_last=ep.clip_last_segment)
    proprio = _proprio_bytes(motion, ep, effector, rng)
    observations: list[tuple[str, bytes]] = []
    for cam in spec.cameras + spec.optional_cameras:
        renderer = _Renderer(cam, hw[cam], effector)
        count = n - 1 if ep.video_one_short else n
        if ep.defect == "video_short" and cam == "hand_right":
            count = n - 25
        frames = [renderer.render(motion, t) for t in range(count)]
        codec = ep.codec if ep.codec != "mixed" else ("av1" if cam == "head" else "h264")
        cut = (ep.defect == "truncated_mp4" and cam == "head") or (ep.defect == "stream_cut" and cam == "hand_left")
        data = _encode(frames, codec, faststart=ep.defect == "stream_cut" and cut)
        if cut:
            data = data[: int(len(data) * (0.6 if ep.defect == "truncated_mp4" else 0.7))]
        observations.append((camera_file(cam), data))
    if ep.depth:
        observations += [(f"depth/head_depth_{t:06d}.png", _depth_png(motion, t, hw["head"])) for t in range(n)]
    observations.sort()
    parameters = []
    if ep.params:
        cams = spec.cameras if ep.params == "nested" else ("head",)
        parameters = _parameter_files(motion, cams, hw, with_extrinsics=ep.params == "nested")
    return _BuiltEpisode(record, proprio, observations, parameters)
