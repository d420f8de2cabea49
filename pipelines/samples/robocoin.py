"""RoboCOIN sample and synthetic data: v2.1 LeRobot datasets with the quirks of the real releases.

Every annotation class RoboCOIN adds is written, and some episodes are broken on purpose;
``docs/sources/robocoin.md`` (section 6) describes the samples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.formats.lerobot import episode_ref
from converters.robocoin import ANNOTATION_DIR, ANNOTATIONS, GRIPPER_RENAMES
from pipelines.episode_store.errors import Reason
from pipelines.samples.formats.lerobot import DatasetWriter, SampleCamera, SampleEpisode, feature_entry
from pipelines.samples.toolkit import ArmSpec, SceneRenderer, arm_trajectory

#: defect -> reason the converter must report
SAMPLE_DEFECTS: dict[str, Reason] = {
    "short_video": Reason.FRAME_COUNT_MISMATCH,  # right wrist video lost its last 3 frames
    "nan_action": Reason.NON_FINITE_VALUES,  # teleop dropout: NaN in three action rows
    "missing_video": Reason.MISSING_FILE,  # the episode's mp4 was never uploaded
    "corrupt_parquet": Reason.CORRUPT_FILE,  # parquet cut in half (interrupted download)
    "unknown_task": Reason.MISSING_LANGUAGE,  # task_index 7 not in tasks.jsonl, episode tasks []
    "narrow_action": Reason.NAME_MISMATCH,  # action vectors 28 wide, info.json names 30
    "unknown_robot": Reason.MISSING_METADATA,  # robot_type null and an unknown name prefix
    "broken_info": Reason.INVALID_METADATA,  # info.json truncated: a dataset-level unit
}


@dataclass(frozen=True)
class SampleRobot:
    """A sample robot: arm specs and the builder of its (state vector, declared names)."""

    arms: tuple[ArmSpec, ...]
    build: Callable[[np.ndarray, tuple[ArmSpec, ...]], tuple[np.ndarray, list[str]]]
    cameras: tuple[tuple[str, str], ...]  # (camera name, renderer view)


def _split_arms(q: np.ndarray, arms: tuple[ArmSpec, ...]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    out, lo = [], 0
    for arm in arms:
        joints = q[:, lo: lo + arm.joints]
        lo += arm.joints
        grip = None
        if arm.gripper:
            grip = q[:, lo]
            lo += 1
        out.append((joints, grip))
    return out


def _r1_lite(q, arms):  # 6 + 6 joints, then both grippers (the real card's order)
    (lj, lg), (rj, rg) = _split_arms(q, arms)
    names = ([f"left_arm_joint_{i + 1}_rad" for i in range(6)] + [f"right_arm_joint_{i + 1}_rad" for i in range(6)]
             + ["left_gripper_open", "right_gripper_open"])
    return np.column_stack([lj, rj, lg, rg]), names


def _r1_lite_scale(q, arms):  # the other real naming variant
    state, names = _r1_lite(q, arms)
    return state, [GRIPPER_RENAMES.get(n, n) for n in names]


def _g1edu(q, arms):  # 7 + 7 arm joints, 7 + 7 hand joints named; 2 more dims info.json never names
    (lj, lg), (rj, rg) = _split_arms(q, arms)
    curl = np.linspace(0.3, 1.2, 7)
    lh, rh = lg[:, None] * curl, rg[:, None] * curl
    waist = np.column_stack([0.05 * np.sin(lj[:, 0]), 0.02 * np.cos(rj[:, 1])])
    names = ([f"left_arm_joint_{i + 1}_rad" for i in range(7)] + [f"right_arm_joint_{i + 1}_rad" for i in range(7)]
             + [f"left_hand_joint_{i + 1}_rad" for i in range(7)] + [f"right_hand_joint_{i + 1}_rad" for i in range(7)])
    return np.column_stack([lj, rj, lh, rh, waist]), names


def _cobot_magic(q, arms):  # per arm: 6 joints then its gripper
    (lj, lg), (rj, rg) = _split_arms(q, arms)
    names = ([f"left_arm_joint_{i + 1}_rad" for i in range(6)] + ["left_gripper_open_scale"]
             + [f"right_arm_joint_{i + 1}_rad" for i in range(6)] + ["right_gripper_open_scale"])
    return np.column_stack([lj, lg, rj, rg]), names


def _realman(q, arms):  # early example format: right arm first, joints + gripper + EE xyz + quat xyzw
    parts, names = [], []
    for side, (joints, grip) in zip(("right", "left"), reversed(_split_arms(q, arms))):
        xyz, rot = _fake_fk(joints, 1.0 if side == "left" else -1.0)
        quat = _quat_xyzw(rot)
        parts += [joints, grip[:, None], xyz, quat]
        names += ([f"{side}_arm_joint_{i + 1}" for i in range(7)] + [f"{side}_gripper_joint"]
                  + [f"{side}_end_effector_positions_{a}" for a in "xyz"]
                  + [f"{side}_end_effector_quat_{a}" for a in "xyzw"])
    return np.column_stack(parts), names


def _fake_fk(joints: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth stand-in for forward kinematics: EE position (m) and xyz rotation (rad)."""
    j = joints
    xyz = np.column_stack([0.35 + 0.12 * np.sin(j[:, 0]) + 0.05 * np.cos(j[:, 1]),
                           side * 0.22 + 0.10 * np.sin(j[:, 2] + j[:, 0]),
                           0.18 + 0.08 * np.cos(j[:, 1] + j[:, 3])])
    rot = np.column_stack([j[:, 3] * 0.5, j[:, 4 % j.shape[1]] * 0.5, j[:, 0] * 0.8])
    return xyz, rot


def _quat_xyzw(rot: np.ndarray) -> np.ndarray:
    r, p, y = (rot[:, i] / 2 for i in range(3))
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.column_stack([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                            cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


_R1_HOME = (0.0, 0.9, -1.4, 0.0, 0.5, 0.0)
_R1_ARMS = (ArmSpec(6, _R1_HOME, 0.35, (1.0, 0.0)), ArmSpec(6, _R1_HOME, 0.35, (1.0, 0.0)))
_R1_CAMS = (("cam_head_left_rgb", "overview"), ("cam_left_wrist_rgb", "wrist:0"), ("cam_right_wrist_rgb", "wrist:1"))
_G1_HOME = (0.2, 0.3, 0.0, 1.1, 0.0, 0.0, 0.0)
_G1_ARMS = (ArmSpec(7, _G1_HOME, 0.3, (0.0, 1.0)), ArmSpec(7, _G1_HOME, 0.3, (0.0, 1.0)))
_AGX_HOME = (0.0, 1.2, -1.1, 0.0, 0.3, 0.0)
_AGX_ARMS = (ArmSpec(6, _AGX_HOME, 0.35, (1.0, 0.0)), ArmSpec(6, _AGX_HOME, 0.35, (1.0, 0.0)))
_RM_HOME = (0.0, -0.6, 0.0, 1.4, 0.0, 0.7, 0.0)
_RM_ARMS = (ArmSpec(7, _RM_HOME, 0.3, (1.0, 0.0)), ArmSpec(7, _RM_HOME, 0.3, (1.0, 0.0)))
_THREE_CAMS = (("cam_high", "overview"), ("cam_left_wrist", "wrist:0"), ("cam_right_wrist", "wrist:1"))

SAMPLE_ROBOTS: dict[str, SampleRobot] = {
    "r1_lite": SampleRobot(_R1_ARMS, _r1_lite, _R1_CAMS),
    "r1_lite_scale": SampleRobot(_R1_ARMS, _r1_lite_scale, _R1_CAMS),
    "g1edu": SampleRobot(_G1_ARMS, _g1edu, (("ego_view", "overview"),)),
    "cobot_magic": SampleRobot(_AGX_ARMS, _cobot_magic, _THREE_CAMS),
    "realman": SampleRobot(_RM_ARMS, _realman, _THREE_CAMS),
    "mystery": SampleRobot((ArmSpec(6, _AGX_HOME, 0.35, (1.0, 0.0)),),
                           lambda q, arms: (q, [f"joint_{i + 1}" for i in range(6)] + ["gripper"]),
                           (("cam_front", "overview"),)),
}


@dataclass(frozen=True)
class SampleDataset:
    folder: str
    robot: str  # key of SAMPLE_ROBOTS
    robot_type: str | None
    task: str
    fps: float
    codec: str  # av1 | h264
    episodes: tuple[tuple[int, str | None], ...]
    annotations: tuple[str, ...] = ()  # kinds of ANNOTATIONS written
    objects: tuple[str, str] = ("cube", "bowl")
    scene: str = ""
    image_hw: tuple[int, int] = (64, 80)
    chunks_size: int = 1000
    timestamp_dtype: str = "float32"
    early_format: bool = False  # "states"/"actions" keys with "name" lists, next.done column
    list_columns: str = "fixed"
    info_overrides: tuple[tuple[str, Any], ...] = ()


_ALL = tuple(ANNOTATIONS)
SAMPLE_DATASETS: tuple[SampleDataset, ...] = (
    SampleDataset(
        "R1_Lite_open_the_microwave", "r1_lite", None, "open the microwave door with the left gripper", 30.0, "av1",
        ((0, None), (1, None), (2, "short_video"), (3, None), (4, "nan_action"), (5, None)),
        annotations=_ALL, objects=("microwave handle", "microwave"),
        scene="A kitchen counter with a white microwave oven.", chunks_size=4,
    ),
    SampleDataset(
        "Galaxea_R1_Lite_wipe_the_table", "r1_lite_scale", None, "wipe the table with the sponge", 30.0, "h264",
        ((0, None), (1, None), (2, None)), annotations=("subtask", "scene"), objects=("sponge", "table"),
        scene="An office desk with a yellow sponge.",
    ),
    SampleDataset(
        "G1edu-u3_place_plastic_bowl", "g1edu", None, "place the plastic bowl on the plate", 30.0, "h264",
        ((0, None), (1, "missing_video"), (2, None), (3, None)), annotations=("subtask", "scene"),
        objects=("plastic bowl", "plate"), scene="A dining table with a plate.", timestamp_dtype="float64",
        chunks_size=39, list_columns="list",
        info_overrides=(("splits", {"train": "0:3"}), ("discarded_episode_indices", [])),
    ),
    SampleDataset(
        "Cobot_Magic_move_the_bread", "cobot_magic", None, "move the bread into the basket", 25.0, "h264",
        ((0, None), (1, "corrupt_parquet"), (2, "unknown_task"), (3, None)), annotations=_ALL,
        objects=("bread", "basket"), scene="A bakery shelf with a wicker basket.",
    ),
    SampleDataset(
        "Realman_build_blocks", "realman", "realman", "build a tower with the blocks", 25.0, "h264",
        ((0, None), (1, "narrow_action"), (2, None)), objects=("block", "tower"), early_format=True,
        list_columns="list",
    ),
    SampleDataset(
        "Mystery_bot_pick_the_cup", "mystery", None, "pick up the cup", 30.0, "h264", ((0, "unknown_robot"),),
    ),
    SampleDataset(
        "Realman_stack_basket", "realman", "realman", "stack the baskets", 25.0, "h264", ((0, "broken_info"),),
        early_format=True,
    ),
)

SUBTASK_PHASES = ("reach for the {a}", "reach for the {a}", "grasp the {a}", "grasp the {a}",
                  "move the {a} to the {b}", "release the {a}", "End")
EEF_DIRECTIONS = ("still", "forward", "backward", "left", "right", "up", "down")
EEF_VELOCITIES = ("still", "slow", "medium", "fast")
EEF_ACC = ("constant", "accelerating", "decelerating")
GRIPPER_MODES = ("open", "closed")
GRIPPER_ACTIVITIES = ("holding", "opening", "closing")


def write_samples(out_dir: Path, seed: int = 0, *, frames_range: tuple[int, int] = (40, 90)) -> dict[str, str | None]:
    expected: dict[str, str | None] = {}
    for k, spec in enumerate(SAMPLE_DATASETS):
        expected.update(write_sample_dataset(Path(out_dir) / spec.folder, spec, seed, k, frames_range))
    return expected


def write_sample_dataset(
    root: Path, spec: SampleDataset, seed: int, salt: int, frames_range: tuple[int, int],
    *, deterministic: bool = True,
) -> dict[str, str | None]:
    robot = SAMPLE_ROBOTS[spec.robot]
    h, w = spec.image_hw
    cameras = [SampleCamera(f"observation.images.{name}", h, w, spec.codec) for name, _ in robot.cameras]
    renderers = {f"observation.images.{name}": SceneRenderer(robot.arms, view, h, w, tint=i)
                 for i, (name, view) in enumerate(robot.cameras)}
    probe_q, _ = arm_trajectory(robot.arms, np.random.default_rng(0), 8)
    width = robot.build(probe_q, robot.arms)[0].shape[1]
    names = robot.build(probe_q, robot.arms)[1]
    state_key, action_key = ("states", "actions") if spec.early_format else ("observation.state", "action")
    names_key = "name" if spec.early_format else "names"
    features: dict[str, Any] = {
        state_key: {"dtype": "float32", "shape": [width], names_key: names},
        action_key: {"dtype": "float32", "shape": [width], names_key: names},
    }
    if spec.early_format:
        features["next.done"] = feature_entry("bool", [1], None)
    ann = set(spec.annotations)
    a, b = spec.objects
    subtasks = list(dict.fromkeys(s.format(a=a, b=b) for s in SUBTASK_PHASES)) + ["null"]
    if "subtask" in ann:
        features["subtask_annotation"] = {"names": None, "dtype": "int32", "shape": [5]}
    if "scene" in ann:
        features["scene_annotation"] = {"names": None, "dtype": "int32", "shape": [1]}
    sides = ("left", "right")
    ori = "ori" if spec.robot == "g1edu" else "rot"  # G1edu's real info.json says eef_ori_*
    if "eef_direction" in ann or spec.robot == "g1edu":
        pose_names = [f"{s}_eef_{k}_{a_}" for s in sides for k in ("pos", ori) for a_ in "xyz"]
        for which in ("state", "action"):
            features[f"eef_sim_pose_{which}"] = {"names": pose_names, "dtype": "float32", "shape": [12]}
    for kind in ("eef_direction", "eef_velocity", "eef_acc_mag"):
        if kind in ann:
            for which in ("state", "action"):
                features[f"{kind}_{which}"] = {"names": [f"{s}_{kind}" for s in sides], "dtype": "int32", "shape": [2]}
    if "gripper_mode" in ann:
        for which in ("state", "action"):
            features[f"gripper_open_scale_{which}"] = {"names": [f"{s}_gripper_open_scale" for s in sides],
                                                       "dtype": "float32", "shape": [2]}
            for kind in ("gripper_mode", "gripper_activity"):
                features[f"{kind}_{which}"] = {"names": [f"{s}_{kind}" for s in sides], "dtype": "int32", "shape": [2]}
    tasks = {0: spec.task}
    overrides = dict(spec.info_overrides)
    writer = DatasetWriter(
        root, version="v2.1", fps=spec.fps, robot_type=spec.robot_type, features=features, cameras=cameras,
        tasks=tasks, chunks_size=spec.chunks_size, info_overrides=overrides, list_columns=spec.list_columns,
        timestamp_dtype=spec.timestamp_dtype, deterministic=deterministic,
    )
    expected: dict[str, str | None] = {}
    for index, defect in spec.episodes:
        rng = np.random.default_rng([seed, salt, index])
        n = int(rng.integers(*frames_range))
        q, phase = arm_trajectory(robot.arms, rng, n)
        state, _ = robot.build(q, robot.arms)
        action = np.concatenate([state[1:], state[-1:]])  # the leader leads the follower by one frame
        if defect == "nan_action":
            action[n // 2: n // 2 + 3, 1] = np.nan
        if defect == "narrow_action":
            action = action[:, :28]
        columns: dict[str, np.ndarray] = {state_key: state, action_key: action}
        if spec.early_format:
            done = np.zeros(n, dtype=bool)
            done[-1] = True
            columns["next.done"] = done
        columns.update(_annotation_columns(spec, robot, q, phase, features, len(subtasks) - 1))
        ts = None
        if spec.timestamp_dtype == "float64":  # recorded clock: nominal period plus sub-millisecond jitter
            ts = np.arange(n) / spec.fps + np.concatenate([[0.0], rng.uniform(-2e-4, 2e-4, n - 1)])
        task_index = 7 if defect == "unknown_task" else 0
        ep_tasks = [] if defect == "unknown_task" else [spec.task]
        frames = (lambda key, q=q: (renderers[key](row) for row in q))
        cam_right = cameras[-1].key
        writer.add(SampleEpisode(
            index=index, columns=columns, task_index=task_index, tasks=ep_tasks, frames=frames, timestamp=ts,
            drop_video_frames={cam_right: 3} if defect == "short_video" else {},
            missing_videos={cam_right} if defect == "missing_video" else set(),
            corrupt_parquet=defect == "corrupt_parquet",
        ))
        expected[episode_ref(root.name, index)] = SAMPLE_DEFECTS[defect].value if defect else None
    writer.close()
    _write_annotation_tables(root, spec, subtasks)
    if any(d == "broken_info" for _, d in spec.episodes):
        info = root / "meta" / "info.json"
        info.write_bytes(info.read_bytes()[:200])
        expected = {root.name: SAMPLE_DEFECTS["broken_info"].value}
    return expected


def _annotation_columns(
    spec: SampleDataset, robot: SampleRobot, q: np.ndarray, phase: np.ndarray, features: dict[str, Any],
    null_index: int,
) -> dict[str, np.ndarray]:
    n = len(q)
    cols: dict[str, np.ndarray] = {}
    arms = _split_arms(q, robot.arms)
    if "subtask_annotation" in features:
        sub = np.full((n, 5), null_index, dtype=np.int32)
        labels = list(dict.fromkeys(SUBTASK_PHASES))
        for t in range(n):
            if phase[t] < 0:
                continue
            cur = labels.index(SUBTASK_PHASES[phase[t]])
            if t > 0 and phase[t - 1] >= 0 and phase[t - 1] != phase[t]:
                prev = labels.index(SUBTASK_PHASES[phase[t - 1]])
                if prev != cur:  # a transition frame: the slot before holds the padding, then both
                    sub[t, 1:3] = (prev, cur)
                    continue
            sub[t, 0] = cur
        cols["subtask_annotation"] = sub
    if "scene_annotation" in features:
        cols["scene_annotation"] = np.zeros((n, 1), dtype=np.int32)
    if "eef_sim_pose_state" in features:
        poses = []
        for side, (joints, _) in zip((1.0, -1.0), arms):
            xyz, rot = _fake_fk(joints, side)
            poses += [xyz, rot]
        pose = np.column_stack(poses)
        cols["eef_sim_pose_state"] = pose
        cols["eef_sim_pose_action"] = np.concatenate([pose[1:], pose[-1:]])
    speed = np.stack([np.linalg.norm(np.gradient(j, axis=0), axis=1) for j, _ in arms], axis=1) * spec.fps
    accel = np.gradient(speed, axis=0) * spec.fps
    if "eef_direction_state" in features:
        d = np.stack([np.gradient(j[:, 0]) for j, _ in arms], axis=1)
        direction = np.where(np.abs(d) < 1e-3, 0, np.where(d > 0, 1, 2)).astype(np.int32)
        cols["eef_direction_state"] = direction
        cols["eef_direction_action"] = np.concatenate([direction[1:], direction[-1:]])
    if "eef_velocity_state" in features:
        vel = np.digitize(speed, [0.02, 0.3, 0.8]).astype(np.int32)
        cols["eef_velocity_state"] = vel
        cols["eef_velocity_action"] = np.concatenate([vel[1:], vel[-1:]])
    if "eef_acc_mag_state" in features:
        acc = np.where(np.abs(accel) < 0.5, 0, np.where(accel > 0, 1, 2)).astype(np.int32)
        cols["eef_acc_mag_state"] = acc
        cols["eef_acc_mag_action"] = np.concatenate([acc[1:], acc[-1:]])
    if "gripper_open_scale_state" in features:
        grip = np.stack([g for _, g in arms], axis=1)
        mode = (grip < 0.5).astype(np.int32)
        dg = np.gradient(grip, axis=0)
        activity = np.where(np.abs(dg) < 1e-3, 0, np.where(dg > 0, 1, 2)).astype(np.int32)
        for which, shift in (("state", 0), ("action", 1)):
            def lead(x):
                return np.concatenate([x[shift:], x[-1:].repeat(shift, axis=0)]) if shift else x
            cols[f"gripper_open_scale_{which}"] = lead(grip)
            cols[f"gripper_mode_{which}"] = lead(mode)
            cols[f"gripper_activity_{which}"] = lead(activity)
    return cols


def _write_annotation_tables(root: Path, spec: SampleDataset, subtasks: list[str]) -> None:
    ann = set(spec.annotations)
    if not ann:
        return
    folder = root / ANNOTATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "subtask": subtasks,
        "scene": [spec.scene],
        "eef_direction": EEF_DIRECTIONS,
        "eef_velocity": EEF_VELOCITIES,
        "eef_acc_mag": EEF_ACC,
        "gripper_mode": GRIPPER_MODES,
        "gripper_activity": GRIPPER_ACTIVITIES,
    }
    for kind in ANNOTATIONS:
        if kind in ann:
            rows = [{f"{kind}_index": i, kind: text} for i, text in enumerate(tables[kind])]
            (folder / ANNOTATIONS[kind][0]).write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
            )


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """One R1-Lite-style dataset (AV1, 3 cameras, every annotation) of valid episodes only."""
    spec = SampleDataset(
        "R1_Lite_synthetic_benchmark", "r1_lite", None, "open the microwave door with the left gripper", 30.0,
        "av1", tuple((i, None) for i in range(episodes)), annotations=_ALL, objects=("handle", "microwave"),
        scene="A kitchen counter with a white microwave oven.", image_hw=(height, width),
    )
    write_sample_dataset(Path(out_dir) / spec.folder, spec, seed, 0, (frames, frames + 1), deterministic=False)


