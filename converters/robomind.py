"""RoboMIND v1 (x-humanoid-robomind/RoboMIND): one HDF5 file per episode, many embodiments.

The layout and every decision below are documented in ``docs/sources/robomind.md``.
Native layout::

    <root>/[benchmark1_*_release|benchmark1_*_compressed/]h5_<embodiment>/<task>/success_episodes/
           [train|val/]<episode>/data/trajectory.hdf5        # one episode
    <root>/[static/]RoboMIND_v1_2_instr.csv                 # task -> instruction
    <root>/[static/]language_description_annotation_json/h5_<embodiment>.json   # per-episode steps

Inside ``trajectory.hdf5``: ``puppet/<key>`` (follower, the state) and ``master/<key>``
(leader, the action) float64 arrays, ``observations/rgb_images/<camera>`` one encoded
JPEG per frame (vlen uint8; a raw HxWx3 buffer when encoding was skipped), depth in
``observations/depth_images/<camera>`` and root attributes ``compress``/``sim``.

What differs between embodiments (cameras, keys, dimension names, colour order, frame
rate) lives in :data:`EMBODIMENTS`, one :class:`EmbodimentSpec` per ``h5_<embodiment>``
folder. The reading code has no per-embodiment branches.

``pipelines/samples/robomind.py`` writes data in this layout with h5py (the library the
release was written with) for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import h5py
import numpy as np

from converters import register
from converters.base import Converter, Rule, SourceCard, episode_file, option
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import (
    ActionKind,
    CameraStream,
    Episode,
    TimestampOrigin,
)

# --------------------------------------------------------------------------------------
# Declarative per-embodiment tables
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One ``puppet/<key>`` or ``master/<key>`` dataset ``[T, len(names)]`` and its column names."""

    key: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class CameraSpec:
    """An RGB camera under ``observations/rgb_images/<name>`` and the native (H, W) sizes seen in the release.

    The sizes are what a raw (non-JPEG) frame buffer is matched against; they do not
    restrict JPEG frames (``camera_top`` changes resolution between episodes of a task).
    """

    name: str
    shapes: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class EmbodimentSpec:
    folder: str  # h5_<embodiment>
    embodiment: str  # embodiment id in the store
    robot_type: str
    cameras: tuple[CameraSpec, ...]  # the first one is the overview camera
    state: tuple[Part, ...]  # puppet/<key>, concatenated in this order
    action: tuple[Part, ...]  # master/<key>, concatenated in this order
    extras: tuple[tuple[str, tuple[Part, ...]], ...]  # extra name -> puppet parts, optional in the file
    gripper: tuple[str, ...]  # state/action dims that are grippers / hand closures (native units)
    ee_representation: str  # what puppet end_effector holds (documentation, metadata)
    #: channel order of the array cv2.imdecode returns for this embodiment's JPEGs, which is also
    #: the order of its raw HxWx3 buffers. "BGR" = recorded with OpenCV's convention: a standard
    #: decoder (PIL) shows true colours. "RGB" = an RGB array went through cv2.imencode: a
    #: standard decoder shows red and blue swapped, so the converter swaps them back.
    opencv_order: str
    default_fps: float
    annotation_files: tuple[str, ...]  # names tried in language_description_annotation_json/


def _names(prefix: str, stem: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{stem}_{i}" for i in range(1, n + 1))


_XYZRPY = ("x", "y", "z", "roll", "pitch", "yaw")
_FRANKA_Q = _names("", "joint", 7) + ("gripper",)
_UR_Q = _names("", "joint", 6) + ("gripper",)
_AGX_Q = {s: _names(f"{s}_", "joint", 6) + (f"{s}_gripper",) for s in ("left", "right")}
_FR3_Q = tuple(f"{s}_{n}" for s in ("left", "right") for n in _FRANKA_Q)
_TK_ARMS = _names("left_", "arm_joint", 7) + _names("right_", "arm_joint", 7)
_TK_FINGERS = ("little_finger", "ring_finger", "middle_finger", "index_finger", "thumb_bend", "thumb_rotation")
_TK_HANDS = tuple(f"{s}_{f}" for s in ("left", "right") for f in _TK_FINGERS)
_TK_GELLO = tuple(n for s in ("left", "right") for n in _names(f"{s}_", "arm_joint", 7) + (f"{s}_hand_closure",))
#: the two frame-size classes of the release, (height, width)
HD_SIZE, SD_SIZE = (720, 1280), (480, 640)
ANNOTATION_DIR = "language_description_annotation_json"


def _single_arm(folder, embodiment, robot_type, cameras, joints, *, opencv_order):
    return EmbodimentSpec(
        folder=folder,
        embodiment=embodiment,
        robot_type=robot_type,
        cameras=cameras,
        state=(Part("joint_position", joints),),
        action=(Part("joint_position", joints),),
        extras=(("ee_pose", (Part("end_effector", tuple(f"ee_{a}" for a in _XYZRPY)),)),),
        gripper=("gripper",),
        ee_representation="xyz (m) + roll/pitch/yaw (rad) of the flange",
        opencv_order=opencv_order,
        default_fps=30.0,
        annotation_files=(f"{folder}.json",),
    )


#: every real-robot embodiment folder of the release -> how to read it
EMBODIMENTS: dict[str, EmbodimentSpec] = {
    spec.folder: spec
    for spec in (
        _single_arm(
            "h5_franka_1rgb", "franka_1rgb", "franka_emika_panda",
            (CameraSpec("camera_top", (HD_SIZE, SD_SIZE)),), _FRANKA_Q, opencv_order="BGR",
        ),
        _single_arm(
            "h5_franka_3rgb", "franka_3rgb", "franka_emika_panda",
            (
                CameraSpec("camera_top", (HD_SIZE, SD_SIZE)),
                CameraSpec("camera_left", (SD_SIZE,)),
                CameraSpec("camera_right", (SD_SIZE,)),
            ),
            _FRANKA_Q, opencv_order="BGR",
        ),
        _single_arm(
            "h5_ur_1rgb", "ur_1rgb", "ur5e", (CameraSpec("camera_top", (SD_SIZE, HD_SIZE)),), _UR_Q,
            opencv_order="BGR",  # puppet end_effector is known to be stuck here: flagged per episode
        ),
        EmbodimentSpec(
            folder="h5_franka_fr3_dual",
            embodiment="franka_fr3_dual",
            robot_type="franka_fr3_dual_arm",
            cameras=(
                CameraSpec("camera_front", (HD_SIZE,)),
                CameraSpec("camera_top", (HD_SIZE, SD_SIZE)),
                CameraSpec("camera_left", (SD_SIZE,)),
                CameraSpec("camera_right", (SD_SIZE,)),
            ),
            state=(Part("joint_position", _FR3_Q),),
            action=(Part("joint_position", _FR3_Q),),
            extras=(
                ("ee_pose", (Part("end_effector", tuple(f"{s}_ee_{a}" for s in ("left", "right") for a in _XYZRPY)),)),
            ),
            gripper=("left_gripper", "right_gripper"),
            ee_representation="left then right flange: xyz (m) + roll/pitch/yaw (rad)",
            opencv_order="BGR",
            default_fps=30.0,
            annotation_files=("h5_franka_fr3_dual.json",),
        ),
        EmbodimentSpec(
            folder="h5_agilex_3rgb",
            embodiment="agilex_3rgb",
            robot_type="agilex_cobot_magic_v2",
            cameras=(
                CameraSpec("camera_front", (SD_SIZE,)),
                CameraSpec("camera_left_wrist", (SD_SIZE,)),
                CameraSpec("camera_right_wrist", (SD_SIZE,)),
            ),
            state=(Part("joint_position_left", _AGX_Q["left"]), Part("joint_position_right", _AGX_Q["right"])),
            action=(Part("joint_position_left", _AGX_Q["left"]), Part("joint_position_right", _AGX_Q["right"])),
            extras=tuple(
                (extra, tuple(Part(f"{key}_{s}", tuple(f"{n}_{suffix}" for n in _AGX_Q[s])) for s in ("left", "right")))
                for extra, key, suffix in (
                    ("joint_velocity", "joint_velocity", "vel"),
                    ("joint_effort", "joint_effort", "effort"),
                )
            )
            + (("ee_pose", tuple(Part(f"end_effector_{s}", _names(f"{s}_", "ee", 7)) for s in ("left", "right"))),),
            gripper=("left_gripper", "right_gripper"),
            ee_representation="7 values per arm, ambiguous (see docs): xyz + quaternion, or xyz + rpy + gripper",
            opencv_order="RGB",
            default_fps=30.0,
            annotation_files=("h5_agilex_3rgb.json",),
        ),
        EmbodimentSpec(
            folder="h5_tienkung_xsens_1rgb",
            embodiment="tienkung_xsens_1rgb",
            robot_type="tienkung",
            cameras=(CameraSpec("camera_top", (SD_SIZE,)),),
            # end_effector holds the 6+6 dexterous-hand joints, not a pose: part of the joint vector
            state=(Part("joint_position", _TK_ARMS), Part("end_effector", _TK_HANDS)),
            action=(Part("joint_position", _TK_ARMS), Part("end_effector", _TK_HANDS)),
            extras=(),
            gripper=_TK_HANDS,
            ee_representation="end_effector = 6 + 6 dexterous-hand joint positions (state/action dims, not a pose)",
            opencv_order="RGB",
            default_fps=30.0,
            annotation_files=("h5_tienkung_xsens_1rgb.json", "h5_tienkung_xsens.json"),
        ),
        EmbodimentSpec(
            folder="h5_tienkung_gello_1rgb",
            embodiment="tienkung_gello_1rgb",
            robot_type="tienkung",
            cameras=(CameraSpec("camera_top", (SD_SIZE,)),),
            state=(Part("joint_position", _TK_GELLO),),
            action=(Part("joint_position", _TK_GELLO),),
            extras=(),
            gripper=("left_hand_closure", "right_hand_closure"),
            ee_representation="none (hand closure is joint_position dims 8 and 16)",
            opencv_order="RGB",
            default_fps=30.0,
            annotation_files=("h5_tienkung_gello_1rgb.json",),
        ),
        EmbodimentSpec(
            folder="h5_tienkung_prod1_gello_1rgb",
            embodiment="tienkung_prod1_gello_1rgb",
            robot_type="tienkung_prod1",
            cameras=(CameraSpec("camera_top", (HD_SIZE, SD_SIZE)),),
            state=(Part("joint_position", _TK_GELLO),),
            action=(Part("joint_position", _TK_GELLO),),
            extras=(),
            gripper=("left_hand_closure", "right_hand_closure"),
            ee_representation="none (hand closure is joint_position dims 8 and 16)",
            opencv_order="RGB",
            default_fps=30.0,
            annotation_files=("h5_tienkung_prod1_gello_1rgb.json",),
        ),
    )
}

#: simulation folders of the release: a different file layout, quarantined as unsupported_layout
SIM_FOLDERS: dict[str, str] = {
    folder: (
        "simulation layout (joint streams under franka/ or tiangong/, no puppet/master leader-follower pair, "
        "camera streams recorded at a different rate than the joint streams): needs resampling and an action "
        "definition, not supported"
    )
    for folder in ("h5_simulation", "h5_sim_franka_3rgb", "h5_sim_tienkung_1rgb")
}

EPISODE_FILE = "trajectory.hdf5"
SUCCESS_DIR = "success_episodes"
SPLITS = ("train", "val")
INSTRUCTION_CSV = "RoboMIND_v1_2_instr.csv"
PUPPET, MASTER, RGB, DEPTH = "puppet", "master", "observations/rgb_images", "observations/depth_images"
LANGUAGE_RAW = "language_raw"  # optional per-file instruction some copies carry
DEFAULT_FRAME_BLOCK = 8
DEFAULT_STUCK_TOLERANCE = 1e-3  # RoboMIND-dataset-utils' quality check threshold
_H5_READ_ERRORS = (OSError, RuntimeError, KeyError)  # h5py raises KeyError for unreadable object headers
_JPEG_MAGIC, _PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_NONE_TEXT = re.compile(r"^\[*\s*none\s*\]*$", re.IGNORECASE)
_FRAME_NUMBER = re.compile(r"(\d+)(?:\.[A-Za-z0-9]+)?$")


# --------------------------------------------------------------------------------------
# Episode refs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeRef:
    """What a ``.../h5_<emb>/<task>/success_episodes/[split/]<episode>/data/trajectory.hdf5`` path says."""

    benchmark: str  # release wrapper folder(s), "" when the root holds h5_* directly
    folder: str
    task: str
    split: str  # train | val | unsplit
    episode: str

    @classmethod
    def parse(cls, ref: str) -> EpisodeRef:
        parts = PurePosixPath(ref).parts
        folders = [i for i, p in enumerate(parts) if p.startswith("h5_")]
        if not folders:
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}: not under an h5_<embodiment> folder")
        i = folders[-1]
        if parts[-2:] != ("data", EPISODE_FILE) or len(parts) < i + 6 or parts[i + 2] != SUCCESS_DIR:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT,
                f"{ref}: expected h5_<embodiment>/<task>/{SUCCESS_DIR}/[train|val/]<episode>/data/{EPISODE_FILE}",
            )
        rest = parts[i + 3 : -2]
        if len(rest) == 2 and rest[0] in SPLITS:
            split, episode = rest
        elif len(rest) == 1:
            split, episode = "unsplit", rest[0]
        else:
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{ref}: unexpected folders {list(rest)} below {SUCCESS_DIR}")
        return cls("/".join(parts[:i]), parts[i], parts[i + 1], split, episode)


# --------------------------------------------------------------------------------------
# Language sources
# --------------------------------------------------------------------------------------


@dataclass
class InstructionTable:
    """``RoboMIND_v1_2_instr.csv``: task folder name -> distinct instructions, in file order."""

    path: Path
    instructions: dict[str, list[str]]
    empty: set[str]  # tasks that have rows, all with an empty instruction

    @classmethod
    def load(cls, path: Path) -> InstructionTable:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise EpisodeError(Reason.INVALID_METADATA, f"{path} is not UTF-8: {exc}") from exc
        except OSError as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"cannot read {path}: {exc}") from exc
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            raise EpisodeError(Reason.INVALID_METADATA, f"{path} is empty")
        header = [h.strip().lower() for h in rows[0]]
        if "task" not in header or "instruction" not in header:
            raise EpisodeError(
                Reason.INVALID_METADATA, f"{path} needs 'task' and 'instruction' columns, header is {rows[0]}"
            )
        t, s = header.index("task"), header.index("instruction")
        instructions: dict[str, list[str]] = {}
        seen: set[str] = set()
        for row in rows[1:]:
            if len(row) <= max(t, s):
                continue
            task, text = row[t].strip(), " ".join(row[s].split())
            if not task:
                continue
            seen.add(task)
            if text and text not in instructions.setdefault(task, []):
                instructions[task].append(text)
        instructions = {k: v for k, v in instructions.items() if v}
        return cls(path, instructions, seen - set(instructions))


@dataclass
class Annotation:
    task_summary: str | None
    steps: list[dict[str, Any]]  # {"text", "start_frame", "end_frame"} (frames: int or None)


def _load_annotations(path: Path) -> dict[tuple[str, str, str], Annotation]:
    """One ``h5_<emb>.json`` -> {(task, split, episode): Annotation}; unparsable entries are skipped."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"annotation file {path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"cannot read annotation file {path}: {exc}") from exc
    if not isinstance(raw, list):
        raise EpisodeError(
            Reason.INVALID_METADATA, f"annotation file {path} must hold a JSON list, got {type(raw).__name__}"
        )
    index: dict[tuple[str, str, str], Annotation] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        parts = [p for p in item["id"].split("/") if p]
        if SUCCESS_DIR not in parts:
            continue
        i = parts.index(SUCCESS_DIR)
        after = parts[i + 1 :]
        if i < 1 or not after:
            continue
        if after[0] in SPLITS and len(after) >= 2:
            key = (parts[i - 1], after[0], after[1])
        else:
            key = (parts[i - 1], "unsplit", after[0])
        response = item.get("response") if isinstance(item.get("response"), dict) else {}
        summary = response.get("task_summary")
        steps = []
        for step in response.get("steps") or []:
            if isinstance(step, str):
                steps.append({"text": step, "start_frame": None, "end_frame": None})
            elif isinstance(step, dict):
                text = step.get("step_description")
                steps.append(
                    {
                        "text": text if isinstance(text, str) else "",
                        "start_frame": _frame_number(step.get("start_frame")),
                        "end_frame": _frame_number(step.get("end_frame")),
                    }
                )
        index[key] = Annotation(summary.strip() if isinstance(summary, str) and summary.strip() else None, steps)
    return index


def _frame_number(value: Any) -> int | None:
    """``"camera_top_0023.jpg"`` / ``23`` / ``"23"`` -> 23; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _FRAME_NUMBER.search(value.strip())
        return int(m.group(1)) if m else None
    return None


def _clean_text(text: str) -> str | None:
    text = " ".join(text.split())
    return None if not text or _NONE_TEXT.match(text) else text


# --------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------


Hz = Annotated[float, Rule(gt=0, lt=math.inf)]
EmbodimentId = Annotated[str, Rule(choices=tuple(spec.embodiment for spec in EMBODIMENTS.values()))]


@dataclass(frozen=True)
class RoboMindOptions:
    """``sources.robomind.options`` in params.yaml (docs/sources/robomind.md §8)."""

    #: one rate for every embodiment, or {embodiment id: Hz} for some; None: each embodiment's default
    fps: Hz | dict[EmbodimentId, Hz] | None = None
    instruction_csv: str | None = None
    annotation_dir: str | None = None
    subtask_alignment: Literal["frames", "metadata"] = "frames"
    language_raw_fallback: bool = True
    frame_block: int = option(DEFAULT_FRAME_BLOCK, ge=1)
    #: extra [height, width] sizes of raw (non-JPEG) frame buffers; null: none
    raw_frame_shapes: tuple[tuple[Annotated[int, Rule(gt=0)], Annotated[int, Rule(gt=0)]], ...] | None = None
    stuck_ee_tolerance: float = option(DEFAULT_STUCK_TOLERANCE, ge=0)

    def fps_for(self, embodiment: str) -> float | None:
        """The rate option ``fps`` sets for ``embodiment``; None where it leaves the embodiment's default."""
        return self.fps.get(embodiment) if isinstance(self.fps, dict) else self.fps


@register
class RoboMindConverter(Converter):
    """RoboMIND v1.x real-robot episodes (``h5_<embodiment>/.../trajectory.hdf5``)."""

    name = "robomind"
    source_version = "robomind-v1.2"
    converter_version = "1.1.0"
    embodiments = tuple(spec.embodiment for spec in EMBODIMENTS.values())
    control_hz = 30.0  # not stored in the files; per-embodiment option `fps` (see docs)
    card = SourceCard.load("robomind")  # converters/cards/robomind.yaml
    options_type = RoboMindOptions

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        self._instructions: InstructionTable | EpisodeError | None = None  # loaded on first use
        self._annotations: dict[str, dict[tuple[str, str, str], Annotation] | EpisodeError | None] = {}

    # -- discovery ------------------------------------------------------------------

    def discover(self) -> list[str]:
        """Every ``trajectory.hdf5`` below an ``h5_*`` folder, as sorted root-relative POSIX paths.

        Files whose path does not follow the release layout (including simulation and
        unknown embodiment folders) are listed too and quarantined when read, so the
        report shows them. Folders starting with ``.`` are skipped.
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"RoboMIND root {self.root} is not a directory")
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if EPISODE_FILE not in filenames and EPISODE_FILE not in dirnames:  # a directory by that name too
                continue
            rel = Path(dirpath, EPISODE_FILE).relative_to(self.root).as_posix()
            if any(p.startswith("h5_") for p in rel.split("/")[:-1]):
                found.append(rel)
        return sorted(found)

    # -- language sources (loaded once per converter instance) ----------------------

    def _resolve(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.root / path

    def instruction_table(self, where: str) -> InstructionTable:
        if self._instructions is None:
            try:
                self._instructions = InstructionTable.load(self._find_instruction_csv())
            except EpisodeError as exc:
                self._instructions = exc
        if isinstance(self._instructions, EpisodeError):
            raise EpisodeError(self._instructions.reason, f"{where}: {self._instructions.message}")
        return self._instructions

    def _find_instruction_csv(self) -> Path:
        if self.options.instruction_csv:
            path = self._resolve(self.options.instruction_csv)
            if not path.is_file():
                raise EpisodeError(
                    Reason.MISSING_METADATA, f"instruction table {path} (option instruction_csv) not found"
                )
            return path
        for path in (self.root / INSTRUCTION_CSV, self.root / "static" / INSTRUCTION_CSV):
            if path.is_file():
                return path
        raise EpisodeError(
            Reason.MISSING_METADATA,
            f"no {INSTRUCTION_CSV} at the root or root/static/ (set option instruction_csv)",
        )

    def annotations(self, spec: EmbodimentSpec, where: str) -> dict[tuple[str, str, str], Annotation] | None:
        if spec.folder not in self._annotations:
            try:
                self._annotations[spec.folder] = self._load_annotation_file(spec)
            except EpisodeError as exc:
                self._annotations[spec.folder] = exc
        value = self._annotations[spec.folder]
        if isinstance(value, EpisodeError):
            raise EpisodeError(value.reason, f"{where}: {value.message}")
        return value

    def _load_annotation_file(self, spec: EmbodimentSpec):
        if self.options.annotation_dir:
            dirs = [self._resolve(self.options.annotation_dir)]
        else:
            dirs = [self.root / ANNOTATION_DIR, self.root / "static" / ANNOTATION_DIR]
        for folder in dirs:
            for name in spec.annotation_files:
                if (folder / name).is_file():
                    return _load_annotations(folder / name)
        return None

    # -- reading --------------------------------------------------------------------

    @contextlib.contextmanager
    def open_episode(self, source_episode: str) -> Iterator[Episode]:
        ref = EpisodeRef.parse(source_episode)
        spec = EMBODIMENTS.get(ref.folder)
        if spec is None:
            why = SIM_FOLDERS.get(ref.folder, f"unknown embodiment folder (known: {sorted(EMBODIMENTS)})")
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{source_episode}: {ref.folder}: {why}")
        path = episode_file(self.root, source_episode)
        try:
            h5 = h5py.File(path, "r")
        except _H5_READ_ERRORS as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"{source_episode}: cannot open HDF5 file: {exc}") from exc
        with h5:
            try:
                episode = self._build(h5, source_episode, ref, spec)
            except _H5_READ_ERRORS as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{source_episode}: unreadable HDF5 content: {exc}") from exc
            yield episode

    def _build(self, h5: h5py.File, where: str, ref: EpisodeRef, spec: EmbodimentSpec) -> Episode:
        """Checks run in this order (the first failure wins): layout, state, action, extras,
        camera datasets, language, annotation; ``check_episode`` then checks the record and
        frame decoding errors surface only while the writer streams the cameras."""
        if PUPPET not in h5 and any(g in h5 for g in ("franka", "tiangong")):
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}: {SIM_FOLDERS['h5_simulation']}")
        state, state_names = _read_parts(h5, PUPPET, spec.state, where, None)
        num_frames = len(state)
        action, action_names = _read_parts(h5, MASTER, spec.action, where, num_frames)
        extras, extra_names, missing_extras = {}, {}, []
        for extra, parts in spec.extras:
            if not all(f"{PUPPET}/{p.key}" in h5 for p in parts):
                missing_extras.append(extra)
                continue
            extras[extra], names = _read_parts(h5, PUPPET, parts, where, num_frames)
            extra_names[extra] = names

        given_fps = self.options.fps_for(spec.embodiment)
        fps = spec.default_fps if given_fps is None else given_fps
        cameras, layouts, unlisted = self._cameras(h5, where, spec, num_frames)
        instruction, alternatives, language_meta = self._language(h5, where, ref)
        subtasks, annotation_meta = self._subtasks(where, ref, spec, num_frames)
        metadata: dict[str, Any] = {
            "benchmark": ref.benchmark,
            "embodiment_folder": ref.folder,
            "task": ref.task,
            "split": ref.split,
            "episode": ref.episode,
            "sim": _attr_bool(h5.attrs.get("sim")),
            "compress": _attr_bool(h5.attrs.get("compress")),
            "fps_source": "default" if given_fps is None else "option",
            "opencv_channel_order": spec.opencv_order,
            "image_layouts": layouts,
            "ee_representation": spec.ee_representation,
            "gripper_dims": list(spec.gripper),
            **language_meta,
        }
        if "ee_pose" in extras:
            ee = extras["ee_pose"]
            span = float(np.max(np.ptp(ee, axis=0))) if num_frames > 1 else 0.0
            metadata["ee_pose_stuck"] = bool(num_frames > 1 and span < self.options.stuck_ee_tolerance)
        if missing_extras:
            metadata["missing_extras"] = missing_extras
        if unlisted:
            metadata["unlisted_cameras"] = unlisted
        depth = h5.get(DEPTH)
        if isinstance(depth, h5py.Group):
            metadata["depth_cameras"] = sorted(depth.keys())
        if annotation_meta is not None:
            metadata["annotation"] = annotation_meta
        return Episode(
            source_episode=where,
            embodiment=spec.embodiment,
            robot_type=spec.robot_type,
            control_hz=fps,
            timestamp=np.arange(num_frames, dtype=np.float64) / fps,
            timestamp_origin=TimestampOrigin.FROM_CONTROL_RATE,
            state=state,
            state_names=state_names,
            action=action,
            action_names=action_names,
            action_kind=ActionKind.JOINT_POSITION,
            instruction=instruction,
            instruction_alternatives=alternatives,
            subtasks=subtasks,
            cameras=cameras,
            extras=extras,
            extra_names=extra_names,
            metadata=metadata,
        )

    def _cameras(
        self, h5: h5py.File, where: str, spec: EmbodimentSpec, num_frames: int
    ) -> tuple[dict[str, CameraStream], dict[str, str], list[str]]:
        group = h5.get(RGB)
        present = sorted(group.keys()) if isinstance(group, h5py.Group) else []
        missing = [c.name for c in spec.cameras if c.name not in present]
        if missing:
            raise EpisodeError(
                Reason.MISSING_CAMERA, f"{where}: camera(s) {missing} have no dataset under {RGB} (present: {present})"
            )
        cameras, layouts = {}, {}
        for cam in spec.cameras:
            key = f"{RGB}/{cam.name}"
            ds = group[cam.name]
            if not isinstance(ds, h5py.Dataset):
                raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}:{key} is a group, expected a dataset")
            layout = _image_layout(ds, key, where)
            if ds.shape[0] != num_frames:
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH,
                    f"{where}:{key} has {ds.shape[0]} frames but {PUPPET}/{spec.state[0].key} has {num_frames}",
                )
            shapes = cam.shapes + tuple(s for s in self.options.raw_frame_shapes or () if s not in cam.shapes)
            cameras[cam.name] = CameraStream(
                name=cam.name,
                num_frames=num_frames,
                open_frames=_frame_reader(
                    ds, layout, spec.opencv_order, shapes, f"{where}:{key}", self.options.frame_block
                ),
                thread_safe=True,  # h5py serialises access to the shared file with its own lock
                source_file=f"{where}:{key}",
            )
            layouts[cam.name] = layout
        unlisted = [c for c in present if c not in layouts]
        return cameras, layouts, unlisted

    def _language(self, h5: h5py.File, where: str, ref: EpisodeRef) -> tuple[str, list[str], dict[str, Any]]:
        language_raw = _read_language_raw(h5) if self.options.language_raw_fallback else None
        try:
            table = self.instruction_table(where)
        except EpisodeError as exc:  # only an absent table falls back; a malformed one stays visible
            if language_raw is None or exc.reason is not Reason.MISSING_METADATA:
                raise
            return language_raw, [], {"instruction_source": "hdf5_language_raw"}
        found = table.instructions.get(ref.task)
        if found:
            alternatives = found[1:] + ([language_raw] if language_raw and language_raw not in found else [])
            return found[0], alternatives, {"instruction_source": "instruction_csv"}
        if language_raw is not None:
            return language_raw, [], {"instruction_source": "hdf5_language_raw"}
        if ref.task in table.empty:
            problem = f"task '{ref.task}' has only empty instructions in {table.path.name}"
        else:
            problem = f"task '{ref.task}' is not in {table.path.name}"
        raise EpisodeError(Reason.MISSING_LANGUAGE, f"{where}: {problem} and the file has no {LANGUAGE_RAW}")

    def _subtasks(
        self, where: str, ref: EpisodeRef, spec: EmbodimentSpec, num_frames: int
    ) -> tuple[list[str | None] | None, dict[str, Any] | None]:
        index = self.annotations(spec, where)
        annotation = index.get((ref.task, ref.split, ref.episode)) if index else None
        if annotation is None:
            return None, None
        meta: dict[str, Any] = {"task_summary": annotation.task_summary, "steps": annotation.steps}
        framed = annotation.steps and all(
            s["start_frame"] is not None and s["end_frame"] is not None for s in annotation.steps
        )
        if self.options.subtask_alignment != "frames" or not framed or num_frames == 0:
            meta["alignment"] = "metadata_only"
            return None, meta
        labels: list[str | None] = [None] * num_frames
        out_of_range = 0
        for step in annotation.steps:  # later steps win on shared boundary frames
            text = _clean_text(step["text"])
            start, end = step["start_frame"], min(step["end_frame"], num_frames - 1)
            if text is None:
                continue
            if start > end or start >= num_frames or start < 0:
                out_of_range += 1
                continue
            labels[start : end + 1] = [text] * (end + 1 - start)
        meta["alignment"] = "frames"
        if out_of_range:
            meta["steps_out_of_range"] = out_of_range
        if all(label is None for label in labels):
            meta["alignment"] = "metadata_only"
            return None, meta
        return labels, meta


# --------------------------------------------------------------------------------------
# HDF5 helpers
# --------------------------------------------------------------------------------------


def _read_parts(
    h5: h5py.File, group: str, parts: tuple[Part, ...], where: str, num_frames: int | None
) -> tuple[np.ndarray, list[str]]:
    """Concatenate ``group/<part.key>`` datasets column-wise as float32, checking width and length."""
    columns, names = [], []
    for part in parts:
        key = f"{group}/{part.key}"
        ds = h5.get(key)
        if ds is None:
            raise EpisodeError(Reason.MISSING_KEY, f"{where}: missing dataset '{key}'")
        if not isinstance(ds, h5py.Dataset):
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}:{key} is a group, expected a dataset")
        if not np.issubdtype(ds.dtype, np.number):
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}:{key} has non-numeric dtype {ds.dtype}")
        if ds.ndim != 2 or ds.shape[1] != len(part.names):
            raise EpisodeError(
                Reason.SHAPE_MISMATCH, f"{where}:{key} must be [T, {len(part.names)}], got shape {ds.shape}"
            )
        expected = num_frames if num_frames is not None else (len(columns[0]) if columns else None)
        if expected is not None and ds.shape[0] != expected:
            reference = f"{PUPPET}/{parts[0].key}" if num_frames is None else "the puppet state"
            raise EpisodeError(
                Reason.LENGTH_MISMATCH, f"{where}:{key} has {ds.shape[0]} frames but {reference} has {expected}"
            )
        columns.append(np.asarray(ds[()], dtype=np.float32))
        names.extend(part.names)
    return (np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]), names


def _image_layout(ds: h5py.Dataset, key: str, where: str) -> str:
    base = h5py.check_vlen_dtype(ds.dtype)
    if base is not None:
        if np.dtype(base) != np.uint8 or ds.ndim != 1:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT, f"{where}:{key} must be vlen uint8 [T], got vlen {base} shape {ds.shape}"
            )
        return "jpeg_vlen"
    if ds.dtype == np.uint8 and ds.ndim == 4 and ds.shape[3] == 3:
        return "raw_array"
    raise EpisodeError(
        Reason.UNSUPPORTED_LAYOUT,
        f"{where}:{key} must be vlen uint8 [T] (encoded frames) or uint8 [T,H,W,3], got {ds.dtype} {ds.shape}",
    )


def _read_language_raw(h5: h5py.File) -> str | None:
    ds = h5.get(LANGUAGE_RAW)
    if not isinstance(ds, h5py.Dataset) or ds.size == 0:
        return None
    value = ds[()]
    value = value.reshape(-1)[0] if isinstance(value, np.ndarray) else value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _clean_text(value) if isinstance(value, str) else None


def _attr_bool(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return bool(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


def _frame_reader(ds: h5py.Dataset, layout: str, opencv_order: str, shapes, where: str, block: int):
    """``open_frames`` for one camera: reads ``block`` frames at a time from the open file and decodes one by one."""
    num_frames = ds.shape[0]

    def frames() -> Iterator[np.ndarray]:
        shape: tuple[int, ...] | None = None
        for start in range(0, num_frames, block):
            stop = min(start + block, num_frames)
            try:
                rows = ds[start:stop]
            except _H5_READ_ERRORS as exc:
                raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read frames {start}:{stop}: {exc}") from exc
            for offset, row in enumerate(rows):
                i = start + offset
                if layout == "raw_array":
                    frame = np.ascontiguousarray(row[..., ::-1]) if opencv_order == "BGR" else row
                else:
                    candidates = ((shape[0], shape[1]),) + shapes if shape is not None else shapes
                    frame = decode_frame(row, opencv_order, candidates, f"{where}[{i}]")
                if shape is None:
                    shape = frame.shape
                elif frame.shape != shape:
                    raise EpisodeError(
                        Reason.SHAPE_MISMATCH, f"{where}[{i}]: frame is {frame.shape}, earlier frames are {shape}"
                    )
                yield frame

    return frames


def decode_frame(row: Any, opencv_order: str, raw_shapes, where: str) -> np.ndarray:
    """One stored frame -> HxWx3 uint8 RGB.

    JPEG/PNG bytes are decoded with PIL (a standard decoder); when that fails, a buffer of
    exactly H*W*3 bytes for a known (H, W) is taken as a raw frame, as RoboMIND's own
    readers do. ``opencv_order`` is the order cv2.imdecode would give (= raw buffer order).
    """
    from PIL import Image, UnidentifiedImageError

    data = np.asarray(row, dtype=np.uint8).reshape(-1)
    head = data[:8].tobytes()
    if head[:3] == _JPEG_MAGIC or head == _PNG_MAGIC:
        try:
            with Image.open(io.BytesIO(data.tobytes()), formats=["JPEG", "PNG"]) as im:
                rgb = np.asarray(im.convert("RGB"))
            # PIL delivers the file's own colour order, i.e. cv2's output reversed
            return np.ascontiguousarray(rgb[..., ::-1]) if opencv_order == "RGB" else rgb
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            problem = f"not decodable as an image: {exc}"
    else:
        problem = f"no JPEG/PNG signature (starts with {head[:4].hex() or 'nothing'})"
    for h, w in raw_shapes:
        if h * w * 3 == data.size:
            frame = data.reshape(h, w, 3)
            return np.ascontiguousarray(frame[..., ::-1]) if opencv_order == "BGR" else frame
    sizes = [f"{h}x{w}x3={h * w * 3}" for h, w in raw_shapes]
    raise EpisodeError(
        Reason.IMAGE_DECODE_ERROR,
        f"{where}: {data.size} bytes, {problem}; size matches no raw frame size {sizes}",
    )
