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

``write_samples`` / ``write_synthetic`` write data in this layout with h5py (the library
the release was written with) for tests and benchmarks.
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
from dataclasses import dataclass, field
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
_HD, _SD = (720, 1280), (480, 640)
_ANNOTATION_DIR = "language_description_annotation_json"


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
            (CameraSpec("camera_top", (_HD, _SD)),), _FRANKA_Q, opencv_order="BGR",
        ),
        _single_arm(
            "h5_franka_3rgb", "franka_3rgb", "franka_emika_panda",
            (
                CameraSpec("camera_top", (_HD, _SD)),
                CameraSpec("camera_left", (_SD,)),
                CameraSpec("camera_right", (_SD,)),
            ),
            _FRANKA_Q, opencv_order="BGR",
        ),
        _single_arm(
            "h5_ur_1rgb", "ur_1rgb", "ur5e", (CameraSpec("camera_top", (_SD, _HD)),), _UR_Q,
            opencv_order="BGR",  # puppet end_effector is known to be stuck here: flagged per episode
        ),
        EmbodimentSpec(
            folder="h5_franka_fr3_dual",
            embodiment="franka_fr3_dual",
            robot_type="franka_fr3_dual_arm",
            cameras=(
                CameraSpec("camera_front", (_HD,)),
                CameraSpec("camera_top", (_HD, _SD)),
                CameraSpec("camera_left", (_SD,)),
                CameraSpec("camera_right", (_SD,)),
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
                CameraSpec("camera_front", (_SD,)),
                CameraSpec("camera_left_wrist", (_SD,)),
                CameraSpec("camera_right_wrist", (_SD,)),
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
            cameras=(CameraSpec("camera_top", (_SD,)),),
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
            cameras=(CameraSpec("camera_top", (_SD,)),),
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
            cameras=(CameraSpec("camera_top", (_HD, _SD)),),
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
            dirs = [self.root / _ANNOTATION_DIR, self.root / "static" / _ANNOTATION_DIR]
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

    # -- samples --------------------------------------------------------------------

    @classmethod
    def write_samples(cls, out_dir: Path, seed: int = 0) -> dict[str, str | None]:
        """Small native-layout sample set with deliberate defects (see ``SAMPLE_EPISODES``)."""
        return write_samples(Path(out_dir), seed)

    @classmethod
    def write_synthetic(
        cls,
        out_dir: Path,
        *,
        episodes: int,
        frames: int,
        height: int,
        width: int,
        seed: int = 0,
        embodiment: str = "agilex_3rgb",
    ) -> None:
        """Valid ``embodiment`` episodes (default: 3 cameras) at ``height x width``, for benchmarks."""
        write_synthetic(Path(out_dir), episodes=episodes, frames=frames, height=height, width=width, seed=seed,
                        embodiment=embodiment)


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


# --------------------------------------------------------------------------------------
# Sample and synthetic data in the native layout (h5py, as the release)
# --------------------------------------------------------------------------------------

#: defect -> reason the converter must report
SAMPLE_DEFECTS: dict[str, Reason] = {
    "truncated_file": Reason.CORRUPT_FILE,  # copy interrupted: file cut to 55 % of its bytes
    "zeroed_header": Reason.CORRUPT_FILE,  # first 4 KiB overwritten with zeros (superblock gone)
    "missing_master_key": Reason.MISSING_KEY,  # master/joint_position_right never written
    "short_camera": Reason.FRAME_COUNT_MISMATCH,  # one camera stopped 4 frames before the joints
    "bad_jpeg": Reason.IMAGE_DECODE_ERROR,  # one mid-episode JPEG cut short (seen only while streaming)
    "task_not_in_csv": Reason.MISSING_LANGUAGE,  # task folder without a row in the instruction table
    "empty_instruction": Reason.MISSING_LANGUAGE,  # row present, instruction empty (e.g. 5_eggoven_2)
    "sim_layout": Reason.UNSUPPORTED_LAYOUT,  # h5_sim_* folder: simulation layout
}

#: quirks of valid sample episodes (documentation; each has a test)
SAMPLE_QUIRKS = {
    "raw_top_frames": "camera_top stores 3 mid-episode frames as raw BGR HxWx3 buffers instead of JPEG",
    "small_top": "camera_top at the 480x640 aspect/size class while other episodes of the task use 720x1280",
    "stuck_ee": "puppet/end_effector constant over the episode (UR)",
    "depth": "observations/depth_images/<cam> 16-bit PNG per frame",
}


@dataclass(frozen=True)
class SampleEpisode:
    wrapper: str  # "" = directly under the root
    folder: str
    task: str
    split: str  # train | val | unsplit
    episode: str
    defect: str | None = None
    quirks: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        parts = [self.wrapper, self.folder, self.task, SUCCESS_DIR]
        parts += [] if self.split == "unsplit" else [self.split]
        return "/".join([p for p in parts if p] + [self.episode, "data", EPISODE_FILE])


_F3, _AGX, _UR, _TKX = "h5_franka_3rgb", "h5_agilex_3rgb", "h5_ur_1rgb", "h5_tienkung_xsens_1rgb"
_APPLES, _STEAMEGG, _BOTTLE = "apples_placed_on_a_ceramic_plate", "15_steamegg_2", "pick_up_plastic_bottle"
_TK_TASK = "push_break_pick_shelf_insert_machine_press_switch_place_plate"


def _agx_id(n: int) -> str:
    return f"2024_09_29-16_{40 + n:02d}_{(17 * n) % 60:02d}-1728758770{75933056 + 1033 * n}.00"


SAMPLE_EPISODES: tuple[SampleEpisode, ...] = (
    SampleEpisode("benchmark1_0_release", _F3, _APPLES, "train", "1017_163121"),
    SampleEpisode("benchmark1_0_release", _F3, _APPLES, "train", "1017_163348", quirks=("small_top",)),
    SampleEpisode("benchmark1_0_release", _F3, _APPLES, "train", "1017_163612", "truncated_file"),
    SampleEpisode("benchmark1_0_release", _F3, _APPLES, "train", "1017_164030", "bad_jpeg"),
    SampleEpisode("benchmark1_0_release", _F3, _APPLES, "val", "1017_170102"),
    SampleEpisode("benchmark1_0_release", _F3, _APPLES, "val", "1017_170233", quirks=("raw_top_frames",)),
    SampleEpisode("benchmark1_0_release", _F3, "241012_upright_blue_cup", "train", "1012_203904", "task_not_in_csv"),
    SampleEpisode("benchmark1_1_compressed", _AGX, _STEAMEGG, "train", _agx_id(0)),
    SampleEpisode("benchmark1_1_compressed", _AGX, _STEAMEGG, "train", _agx_id(1)),
    SampleEpisode("benchmark1_1_compressed", _AGX, _STEAMEGG, "train", _agx_id(2), "missing_master_key"),
    SampleEpisode("benchmark1_1_compressed", _AGX, _STEAMEGG, "val", _agx_id(3)),
    SampleEpisode("benchmark1_1_compressed", _AGX, _STEAMEGG, "val", _agx_id(4), "short_camera"),
    SampleEpisode("benchmark1_1_compressed", _AGX, "5_eggoven_2", "train", _agx_id(5), "empty_instruction"),
    SampleEpisode("", _UR, _BOTTLE, "unsplit", "1022_150342", quirks=("stuck_ee", "depth")),
    SampleEpisode("", _UR, _BOTTLE, "unsplit", "1022_150519", quirks=("stuck_ee", "depth")),
    SampleEpisode("", _UR, _BOTTLE, "unsplit", "1022_150705", "zeroed_header"),
    SampleEpisode("benchmark1_1_release", _TKX, _TK_TASK, "train", "2024-10-23-15-50-29"),
    SampleEpisode(
        "benchmark1_2_release", "h5_sim_franka_3rgb", "408-place_upright_mug_on_the_left_middle", "train",
        "2024_10_21-17_58_12", "sim_layout",
    ),
)

#: RoboMIND_v1_2_instr.csv rows (task, instruction): duplicates, a second phrasing, an empty
#: instruction and tasks without data on disk, as in the release
SAMPLE_INSTRUCTIONS: tuple[tuple[str, str], ...] = (
    ("bread_on_table", "Pick bread on table."),
    (_APPLES, "Place the apples on the ceramic plate."),
    (_APPLES, "Place the apples on the ceramic plate."),
    (_STEAMEGG, "Open the steamer, put the egg into it and close the lid."),
    ("5_eggoven_2", ""),
    (_BOTTLE, "Pick up the plastic bottle."),
    (_BOTTLE, "Pick up the plastic bottle from the table."),
    (_TK_TASK, "Push the brake, pick from the shelf, insert into the machine, press the switch, place the plate."),
    ("408-place_upright_mug_on_the_left_middle", "Place the upright mug on the left middle."),
    ("42_putkiwifruite", "Put the wifruite into the basket."),
)

#: sample rig per embodiment folder: gripper/hand (open, closed) values and waypoint reach (rad)
_SAMPLE_RIG: dict[str, tuple[tuple[float, float], float]] = {
    "h5_franka_1rgb": ((0.08, 0.045), 0.45),
    "h5_franka_3rgb": ((0.08, 0.045), 0.45),
    "h5_franka_fr3_dual": ((0.08, 0.04), 0.4),
    "h5_ur_1rgb": ((0.0, 0.8), 0.5),
    "h5_agilex_3rgb": ((0.07, 0.015), 0.4),
    "h5_tienkung_xsens_1rgb": ((0.0, 1.2), 0.35),
    "h5_tienkung_gello_1rgb": ((0.0, 1.0), 0.35),
    "h5_tienkung_prod1_gello_1rgb": ((0.0, 1.0), 0.35),
}

#: native size class -> sample size (same aspect ratio, about 1/10 of the pixels per side)
_SAMPLE_HW = {_HD: (72, 128), _SD: (60, 80)}
_PHASES = (
    "reach for the object", "grasp the object", "hold it still", "move it to the target", "release it", "retreat",
)


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """Write ``SAMPLE_EPISODES`` plus the instruction CSV and annotation JSONs; byte-identical per seed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    annotations: dict[str, list[dict[str, Any]]] = {}
    for index, sample in enumerate(SAMPLE_EPISODES):
        rng = np.random.default_rng([seed, index])
        path = out_dir / sample.ref
        path.parent.mkdir(parents=True, exist_ok=True)
        if sample.defect == "sim_layout":
            _write_sim_episode(path, rng)
        else:
            spec = EMBODIMENTS[sample.folder]
            num_frames = int(rng.integers(36, 76))
            hw = {
                c.name: _SAMPLE_HW[_SD if (c.name == "camera_top" and "small_top" in sample.quirks) else c.shapes[0]]
                for c in spec.cameras
            }
            boundaries = _write_episode(path, spec, rng, num_frames, hw, sample)
            if sample.defect is None or sample.defect in ("bad_jpeg", "short_camera"):
                annotations.setdefault(sample.folder, []).append(_annotation_record(sample, spec, boundaries, rng))
        if sample.defect == "truncated_file":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 55 // 100])
        elif sample.defect == "zeroed_header":
            data = bytearray(path.read_bytes())
            data[:4096] = bytes(4096)
            path.write_bytes(bytes(data))
        expected[sample.ref] = SAMPLE_DEFECTS[sample.defect].value if sample.defect else None
    _write_instruction_csv(out_dir / INSTRUCTION_CSV, SAMPLE_INSTRUCTIONS)
    folder = out_dir / _ANNOTATION_DIR
    folder.mkdir(exist_ok=True)
    for emb_folder, records in sorted(annotations.items()):
        # an entry for an episode that is not on disk, as the release's files have
        records.append({"id": f"{emb_folder}/some_other_task/{SUCCESS_DIR}/train/0000_000000/data",
                        "response": {"task_summary": "unrelated", "steps": []}})
        name = EMBODIMENTS[emb_folder].annotation_files[-1]  # tienkung_xsens: the release's short name
        (folder / name).write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return expected


def write_synthetic(
    out_dir: Path,
    *,
    episodes: int,
    frames: int,
    height: int,
    width: int,
    seed: int = 0,
    embodiment: str = "agilex_3rgb",
) -> None:
    """``episodes`` valid episodes of ``frames`` frames, every camera ``height x width``, frames streamed to disk."""
    spec = next((s for s in EMBODIMENTS.values() if s.embodiment == embodiment), None)
    if spec is None:
        raise ValueError(f"unknown embodiment {embodiment!r}; known: {[s.embodiment for s in EMBODIMENTS.values()]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    task = "synthetic_pick_and_place"
    for i in range(episodes):
        sample = SampleEpisode("benchmark1_1_release", spec.folder, task, "train", f"synthetic_{i:05d}")
        path = out_dir / sample.ref
        path.parent.mkdir(parents=True, exist_ok=True)
        hw = {c.name: (height, width) for c in spec.cameras}
        _write_episode(path, spec, np.random.default_rng([seed, i]), frames, hw, sample, quality=85)
    _write_instruction_csv(out_dir / INSTRUCTION_CSV, ((task, "Pick up the object and place it on the target."),))


def _write_instruction_csv(path: Path, rows) -> None:
    """The release's CSV was written by pandas: an unnamed index column first, then task, instruction."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["", "task", "instruction"])
    for i, (task, text) in enumerate(rows):
        writer.writerow([i, task, text])
    path.write_text(buf.getvalue(), encoding="utf-8")


def _annotation_record(sample: SampleEpisode, spec: EmbodimentSpec, boundaries: list[int], rng) -> dict[str, Any]:
    """An annotation entry whose steps follow the trajectory's phases (frame names as in the release)."""
    cam = spec.cameras[0].name
    split = "" if sample.split == "unsplit" else f"/{sample.split}"
    steps = []
    arm_tag = "[both] " if sample.folder == _AGX else ""
    for k, text in enumerate(_PHASES):
        start, end = boundaries[k], boundaries[k + 1]
        steps.append({"step_description": f"{arm_tag}{text}", "start_frame": f"{cam}_{start:04d}.jpg",
                      "end_frame": f"{cam}_{end:04d}.jpg"})
    if sample.folder == _AGX:  # quirks seen in the release: a "[none]" step and a step past the last frame
        steps.insert(2, {"step_description": "[none]", "start_frame": steps[1]["end_frame"],
                         "end_frame": steps[1]["end_frame"]})
        steps[-1]["end_frame"] = f"{cam}_{boundaries[-1] + int(rng.integers(3, 9)):04d}.jpg"
    return {
        "id": f"{sample.folder}/{sample.task}/{SUCCESS_DIR}{split}/{sample.episode}/data",
        "response": {"task_summary": f"{_PHASES[0]} and {_PHASES[3]}", "steps": steps},
    }


def _min_jerk(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    tau = np.arange(1, steps + 1) / steps
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return a + s[:, None] * (b - a)


def _sample_state(spec: EmbodimentSpec, rng, num_frames: int) -> tuple[np.ndarray, list[int]]:
    """Puppet state ``[T, D]``: idle prefix, reach, grasp, still hold, move, release, retreat.

    All columns share one knot schedule, so the still stretches are still everywhere.
    Returns the state and the phase boundaries (frame indices) used for the annotation.
    """
    names = [n for part in spec.state for n in part.names]
    grip = np.array([n in spec.gripper for n in names])
    (g_open, g_closed), reach = _SAMPLE_RIG[spec.folder]
    home = np.where(grip, g_open, 0.6 * np.sin(np.arange(len(names)) * 1.7 + 0.3))
    idle = int(round(num_frames * rng.uniform(0.10, 0.18)))
    phases = rng.dirichlet([3.0, 1.5, 1.2, 3.0, 1.2, 2.0])
    phases[2] = max(phases[2], 0.12)  # the hold is at least ~12 % of the motion
    phases /= phases.sum()
    steps = np.maximum(1, np.round(phases * (num_frames - 1 - idle)).astype(int))
    steps[-1] = max(1, num_frames - 1 - idle - int(steps[:-1].sum()))
    way = [home + np.where(grip, 0.0, rng.uniform(-reach, reach, len(names))) for _ in range(3)]
    closed = np.where(grip, g_closed, 0.0)
    knots = [way[0], np.where(grip, closed, way[0]), np.where(grip, closed, way[0]),
             np.where(grip, closed, way[1]), way[1], way[2]]
    rows = [np.repeat(home[None], idle + 1, axis=0)]
    boundaries = [idle]
    for target, n in zip(knots, steps):
        rows.append(_min_jerk(rows[-1][-1], target, int(n)))
        boundaries.append(min(boundaries[-1] + int(n), num_frames - 1))
    return np.concatenate(rows)[:num_frames], boundaries


def _toy_fk(q: np.ndarray, n: int) -> np.ndarray:
    """A smooth stand-in for forward kinematics: ``[T, n]`` from the first joints."""
    cols = [0.45 + 0.25 * np.cos(q[:, 0]) * np.cos(q[:, 1]), 0.25 * np.sin(q[:, 0]), 0.35 + 0.2 * np.sin(q[:, 1]),
            np.pi + 0.3 * q[:, 2], 0.2 * q[:, 3], q[:, 0] - q[:, 4] if q.shape[1] > 4 else q[:, 0]]
    if n == 7:  # xyz + 4 more (the agilex ambiguity: treat as a unit quaternion here)
        half = 0.5 * (q[:, 0] + q[:, 2])
        cols = cols[:3] + [np.zeros_like(half), np.zeros_like(half), np.sin(half), np.cos(half)]
    return np.stack(cols[:n], axis=1)


#: folders whose master group carries the same extra streams as the puppet (agilex writes all 8 keys)
_SAMPLE_MASTER_EXTRAS = {"h5_agilex_3rgb"}


def _sample_arrays(spec: EmbodimentSpec, rng, num_frames: int, quirks=()) -> tuple[dict[str, np.ndarray], list[int]]:
    """Every puppet/master dataset of ``spec`` as float64 (the release's dtype)."""
    fps = spec.default_fps
    state, boundaries = _sample_state(spec, rng, num_frames)
    lead = np.concatenate([state[2:], state[-1:], state[-1:]])[:num_frames]  # the leader arm is ~2 frames ahead
    action = lead + rng.normal(0.0, 2e-4, state.shape)
    out: dict[str, np.ndarray] = {}
    for group, values in ((PUPPET, state), (MASTER, action)):
        col = 0
        for part in spec.state:
            out[f"{group}/{part.key}"] = values[:, col : col + len(part.names)].astype(np.float64)
            col += len(part.names)
        if group == MASTER and spec.folder not in _SAMPLE_MASTER_EXTRAS:
            continue
        for extra, parts in spec.extras:
            for part in parts:
                side = part.key.rsplit("_", 1)[-1]
                q = out[f"{group}/joint_position_{side}"] if side in ("left", "right") else values
                if extra == "ee_pose":
                    n_arms = len(part.names) // 6 if len(part.names) % 6 == 0 else 1
                    per, width = len(part.names) // n_arms, q.shape[1] // n_arms
                    value = np.concatenate([_toy_fk(q[:, a * width : (a + 1) * width], per) for a in range(n_arms)], 1)
                    if "stuck_ee" in quirks:
                        value = np.repeat(value[:1], num_frames, axis=0) + rng.normal(0.0, 1e-5, value.shape)
                elif extra == "joint_velocity":
                    value = np.gradient(q, axis=0) * fps
                else:  # joint_effort
                    value = 2.0 * np.sin(q) + 0.3 * np.gradient(q, axis=0) * fps + rng.normal(0.0, 0.01, q.shape)
                out[f"{group}/{part.key}"] = value.astype(np.float64)
    return out, boundaries


def _write_episode(
    path: Path, spec: EmbodimentSpec, rng, num_frames: int, hw: dict[str, tuple[int, int]], sample: SampleEpisode,
    quality: int = 70,
) -> list[int]:
    """One ``trajectory.hdf5`` as the release lays it out; frames are rendered, encoded and written one by one."""
    arrays, boundaries = _sample_arrays(spec, rng, num_frames, sample.quirks)
    state = np.concatenate([arrays[f"{PUPPET}/{p.key}"] for p in spec.state], axis=1)
    if sample.defect == "missing_master_key":
        del arrays[f"{MASTER}/{spec.action[-1].key}"]
    plain = {"track_times": False}
    vlen = h5py.vlen_dtype(np.dtype("uint8"))
    with h5py.File(path, "w") as f:
        f.attrs["compress"] = True
        f.attrs["sim"] = False
        for key in sorted(arrays):
            f.create_dataset(key, data=arrays[key], **plain)
        renderer = _Renderer(spec, state)
        for index, cam in enumerate(spec.cameras):
            n = num_frames - 4 if (sample.defect == "short_camera" and index == len(spec.cameras) - 1) else num_frames
            ds = f.create_dataset(f"{RGB}/{cam.name}", (n,), dtype=vlen, **plain)
            raw_frames = range(num_frames // 2, num_frames // 2 + 3) if (
                "raw_top_frames" in sample.quirks and cam.name == "camera_top") else range(0)
            bad = num_frames // 2 if (sample.defect == "bad_jpeg" and index == 1) else -1
            for t in range(n):
                rgb = renderer.frame(cam.name, index, t, hw[cam.name])
                stored = rgb[..., ::-1] if spec.opencv_order == "BGR" else rgb  # the array cv2 held
                if t in raw_frames:
                    blob = np.ascontiguousarray(stored).reshape(-1)
                else:
                    # cv2.imencode treats its input as BGR; PIL given the equivalent RGB view writes the same JPEG
                    blob = np.frombuffer(_encode_jpeg(np.ascontiguousarray(stored[..., ::-1]), quality), np.uint8)
                if t == bad:
                    blob = blob[: len(blob) * 6 // 10]
                ds[t] = blob
            if "depth" in sample.quirks:
                dd = f.create_dataset(f"{DEPTH}/{cam.name}", (n,), dtype=vlen, **plain)
                for t in range(n):
                    dd[t] = np.frombuffer(_encode_depth_png(renderer.depth(t, hw[cam.name])), np.uint8)
    return boundaries


def _write_sim_episode(path: Path, rng) -> None:
    """The simulation layout (franka/*, fewer images than joint samples, sim_time_seq)."""
    n_joint, n_img = 48, 12
    q = np.cumsum(rng.normal(0.0, 0.02, (n_joint, 8)), axis=0)
    plain = {"track_times": False}
    with h5py.File(path, "w") as f:
        f.attrs["compress"] = False
        f.attrs["sim"] = True
        for key in ("joint_position", "joint_velocity", "joint_effort"):
            f.create_dataset(f"franka/{key}", data=q if key == "joint_position" else np.gradient(q, axis=0), **plain)
        f.create_dataset("franka/end_effector", data=_toy_fk(q, 7), **plain)
        f.create_dataset("sim_time_seq", data=np.arange(n_joint - 3) / 60.0, **plain)
        ds = f.create_dataset(f"{RGB}/camera_front_external", (n_img,), dtype=h5py.vlen_dtype(np.uint8), **plain)
        for t in range(n_img):
            img = np.full((24, 32, 3), 40 + 10 * t, np.uint8)
            ds[t] = np.frombuffer(_encode_jpeg(img, 70), np.uint8)


def _encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _encode_depth_png(depth: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(depth.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class _Renderer:
    """Toy scene driven by the joint state: same state -> same pixels, so still stretches give still frames.

    The overview camera (the spec's first) shows one disc per arm moving with the arm's first
    two joints and growing with its gripper opening; every other camera follows one arm
    (left/right by name) and shows a target disc moving against the wrist joints and two
    finger bars whose gap follows the gripper.
    """

    spec: EmbodimentSpec
    state: np.ndarray
    _backgrounds: dict = field(default_factory=dict)

    def __post_init__(self):
        names = [n for part in self.spec.state for n in part.names]
        (self.g_open, self.g_closed), _ = _SAMPLE_RIG[self.spec.folder]
        self.home = self.state[0]
        arms: dict[str, tuple[list[int], int | None]] = {}
        for i, name in enumerate(names):
            side = name.split("_", 1)[0] if name.startswith(("left_", "right_")) else ""
            joints, grip = arms.setdefault(side, ([], None))
            if name in self.spec.gripper:
                arms[side] = (joints, grip if grip is not None else i)
            else:
                joints.append(i)
        self.arms = arms

    def _background(self, cam: str, hw: tuple[int, int]) -> np.ndarray:
        key = (cam, hw)
        if key not in self._backgrounds:
            h, w = hw
            tint = (sum(cam.encode()) % 7) * 6.0
            rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
            wall = np.array([170 + tint, 175, 185 - tint], np.float32)
            table = np.array([125, 95 + tint, 70], np.float32)
            img = np.where(rows < 0.35, wall, table + (rows - 0.35) * 40.0) * np.ones((1, w, 1), np.float32)
            img[int(h * 0.35) : int(h * 0.37)] = (90.0, 80.0, 70.0)
            img[int(h * 0.4) :, :: max(6, w // 10)] *= 0.9
            self._backgrounds[key] = np.clip(img, 0, 255).astype(np.uint8)
        return self._backgrounds[key]

    def _grip(self, q: np.ndarray, side: str) -> float:
        grip = self.arms[side][1]
        if grip is None or self.g_open == self.g_closed:
            return 1.0
        return float(np.clip((q[grip] - self.g_closed) / (self.g_open - self.g_closed), 0.0, 1.0))

    def frame(self, cam: str, index: int, t: int, hw: tuple[int, int]) -> np.ndarray:
        h, w = hw
        q = self.state[t]
        dq = q - self.home
        img = self._background(cam, hw).copy()
        sides = list(self.arms)
        if index == 0:
            colours = ((220, 60, 40), (40, 90, 220))
            for a, side in enumerate(sides):
                j = self.arms[side][0]
                cx = w * (0.5 + (a - (len(sides) - 1) / 2) * 0.4) + dq[j[0]] * w * 0.45
                cy = h * 0.62 + dq[j[1]] * h * 0.45
                _disc(img, cx, cy, h * (0.08 + 0.06 * self._grip(q, side)), colours[a % 2])
        else:
            side = next((s for s in sides if s and s in cam), sides[0])
            j = self.arms[side][0]
            cx = w * 0.5 - dq[j[min(3, len(j) - 1)]] * w * 0.8 - dq[j[0]] * w * 0.4
            cy = h * 0.45 - dq[j[1]] * h * 0.6 - dq[j[2]] * h * 0.3
            _disc(img, cx, cy, h * 0.2, (230, 200, 40))
            gap = w * (0.08 + 0.22 * self._grip(q, side))
            for x0 in (w / 2 - gap - w * 0.06, w / 2 + gap):
                x0, x1 = int(max(0, x0)), int(min(w, x0 + w * 0.06))
                img[int(h * 0.8) :, x0:x1] = (70, 70, 70)
        return img

    def depth(self, t: int, hw: tuple[int, int]) -> np.ndarray:
        h, w = hw
        dq = self.state[t] - self.home
        rows = np.linspace(600.0, 1400.0, h, dtype=np.float32)[:, None]
        depth = np.repeat(rows, w, axis=1)
        cx, cy = w * (0.5 + dq[0] * 0.45), h * (0.62 + dq[1] * 0.45)
        yy, xx = np.mgrid[0:h, 0:w]
        depth[np.hypot(xx - cx, yy - cy) < h * 0.12] = 450.0
        return depth


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour) -> None:
    """Anti-aliased disc, drawn only inside its bounding box (cheap at any image size)."""
    h, w = img.shape[:2]
    y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
    x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    alpha = np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0.0, 1.0)[..., None]
    patch = img[y0:y1, x0:x1].astype(np.float32) * (1.0 - alpha) + alpha * np.asarray(colour, np.float32)
    img[y0:y1, x0:x1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
