"""RoboMIND sample and synthetic data in the native layout, written with h5py as the release was.

The samples cover several embodiments, the release's quirks and deliberate defects
(``docs/sources/robomind.md``, section 10).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from converters.robomind import (
    ANNOTATION_DIR,
    DEPTH,
    EMBODIMENTS,
    EPISODE_FILE,
    HD_SIZE,
    INSTRUCTION_CSV,
    MASTER,
    PUPPET,
    RGB,
    SD_SIZE,
    SUCCESS_DIR,
    EmbodimentSpec,
)
from pipelines.episode_store.errors import Reason
from pipelines.samples.toolkit import Backdrop, box, camera_tint, disc, encode_jpeg, encode_png, min_jerk

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
_SAMPLE_HW = {HD_SIZE: (72, 128), SD_SIZE: (60, 80)}
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
            small_top = "small_top" in sample.quirks
            hw = {c.name: _SAMPLE_HW[SD_SIZE if (c.name == "camera_top" and small_top) else c.shapes[0]]
                  for c in spec.cameras}
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
    folder = out_dir / ANNOTATION_DIR
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
        rows.append(min_jerk(rows[-1][-1], target, int(n)))
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
                    blob = np.frombuffer(encode_jpeg(np.ascontiguousarray(stored[..., ::-1]), quality), np.uint8)
                if t == bad:
                    blob = blob[: len(blob) * 6 // 10]
                ds[t] = blob
            if "depth" in sample.quirks:
                dd = f.create_dataset(f"{DEPTH}/{cam.name}", (n,), dtype=vlen, **plain)
                for t in range(n):
                    dd[t] = np.frombuffer(encode_png(renderer.depth(t, hw[cam.name]).astype(np.uint16)), np.uint8)
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
            ds[t] = np.frombuffer(encode_jpeg(img, 70), np.uint8)


#: the table and wall behind the toy arms
BACKDROP = Backdrop(wall=(170, 175, 185), table=(125, 95, 70), horizon=0.35, slope=40.0, edge=(90, 80, 70),
                    edge_end=0.37, seam_top=0.4, seam_spacing=(6, 10), seam_shade=0.9, tint_levels=7, tint_step=6.0)


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
            self._backgrounds[key] = np.clip(BACKDROP.render(*hw, camera_tint(cam)), 0, 255).astype(np.uint8)
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
                disc(img, cx, cy, h * (0.08 + 0.06 * self._grip(q, side)), colours[a % 2])
        else:
            side = next((s for s in sides if s and s in cam), sides[0])
            j = self.arms[side][0]
            cx = w * 0.5 - dq[j[min(3, len(j) - 1)]] * w * 0.8 - dq[j[0]] * w * 0.4
            cy = h * 0.45 - dq[j[1]] * h * 0.6 - dq[j[2]] * h * 0.3
            disc(img, cx, cy, h * 0.2, (230, 200, 40))
            gap = w * (0.08 + 0.22 * self._grip(q, side))
            for x0 in (w / 2 - gap - w * 0.06, w / 2 + gap):
                box(img, x0, h * 0.8, x0 + w * 0.06, h, (70, 70, 70), snap=int)
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

