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

``pipelines/samples/agibot.py`` writes a small synthetic release in this layout (h5py, PyAV
with H.264 and AV1, tarfile) with the source's quirks and deliberately broken episodes, and
valid episodes of any size for benchmarks.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import tarfile
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
from converters.formats.video import decode_frames, probe_video
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import CameraStream, Episode
from pipelines.episode_store.schema import ActionKind, TimestampOrigin

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
    header, a member with a negative size or whose data runs past the end of the file, or a missing
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
                if info.isfile() and info.size < 0:  # a base-256 size field can be negative; tarfile accepts it
                    raise _TarDamaged(path, info.offset, f"member {info.name} has a negative size ({info.size})", info)
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
# Video decoding (converters/formats/video.py): probe at open time, align to the proprio clock while streaming
# --------------------------------------------------------------------------------------


def _probe_video(files, rel: str, camera: str, where: str) -> _Video:
    try:
        with files.open(rel) as fh:
            info = probe_video(fh, where)
    except (OSError, EOFError) as exc:  # the file, or the tar member, cannot be read
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc
    return _Video(camera, rel, info.codec, info.width, info.height, info.fps, info.frames, "")


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
        decoded = decode_frames(handle, where, expected=video.frames, threads=threads)
        try:
            if video.alignment == "index":
                yield from _by_index(_Decoded(decoded, video), n, where)
            else:
                yield from _by_nearest_time(_Decoded(decoded, video), t_rel, where)
        finally:
            decoded.close()
            lease.release(handle)

    return frames


class _Decoded:
    """Frames of one video stream in presentation order, with times in seconds and a running count."""

    def __init__(self, frames: Iterator[av.VideoFrame], video: _Video):
        self._frames, self.video, self.count = frames, video, 0
        self._first_pts = None

    def next(self):
        """``(rgb array, seconds since the first frame)`` or ``None`` at the end of the stream."""
        frame = next(self._frames, None)
        if frame is None:
            return None
        self.count += 1
        if frame.pts is not None and frame.time_base is not None:
            if self._first_pts is None:
                self._first_pts = frame.pts
            t = float((frame.pts - self._first_pts) * frame.time_base)
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
