"""RoboChallenge Table30 sample and synthetic data: the native layout written with json and PyAV.

The samples carry the quirks of the real release and the partial downloads users run into,
as deliberate defects (``docs/sources/robochallenge.md``, section 12). H.264 goes through
libx264, as the release's FFmpeg-written MP4s did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.robochallenge import (
    DATA_DIR,
    EMBODIMENT_SPECS,
    EPISODE_META,
    STATE_FILES,
    TASK_DESC,
    TASK_INFO,
    TIMESTAMP_KEY,
    VIDEO_SUFFIX,
    VIDEOS_DIR,
)
from pipelines.episode_store.errors import Reason
from pipelines.samples.toolkit import Backdrop, box, camera_tint, disc, min_jerk, write_mp4

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
            rows.append(min_jerk(rows[-1][-1], np.append(pose, closed), int(k), factored=True))
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
    write_mp4(path, frames, "libx264", fps, *hw, pix_fmt=pix_fmt,
              options={"preset": "veryfast", "crf": "28", "threads": str(threads), **options})


#: the table and wall behind the toy arms
BACKDROP = Backdrop(wall=(165, 172, 182), table=(118, 96, 72), horizon=0.38, slope=50.0, edge=(88, 78, 66),
                    edge_end=None, seam_top=0.45, seam_spacing=(6, 10), seam_shade=0.88, tint_levels=5, tint_step=8.0)
_BACKGROUNDS: dict[tuple[str, int, int], np.ndarray] = {}


def _background(camera: str, h: int, w: int) -> np.ndarray:
    key = (camera, h, w)
    if key not in _BACKGROUNDS:
        _BACKGROUNDS[key] = np.clip(BACKDROP.render(h, w, camera_tint(camera)), 0, 255).astype(np.uint8)
    return _BACKGROUNDS[key]


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
            disc(img, w * (centre + 0.22 * u[0]), h * (0.62 + 0.2 * u[1]), h * (0.14 - 0.05 * closed), colours[a % 2],
                 centred=True)
        elif view == "side":
            disc(img, w * (centre + 0.22 * u[1]), h * (0.55 - 0.25 * u[2]), h * (0.12 - 0.04 * closed), colours[a % 2],
                 centred=True)
        elif int(view.split(":")[1]) == a:
            disc(img, w * (0.5 - 0.3 * u[0]), h * (0.45 - 0.3 * u[1]), h * 0.2, (228, 198, 42), centred=True)
            gap = w * (0.06 + 0.2 * (1.0 - closed))
            bar = max(2, int(w * 0.06))
            for x0 in (int(w / 2 - gap) - bar, int(w / 2 + gap)):
                box(img, x0, h * 0.78, x0 + bar, h, (66, 66, 70), snap=int)
    return img
