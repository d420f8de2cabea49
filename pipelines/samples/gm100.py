"""GM-100 sample and synthetic data: LeRobot datasets of three platforms, with broken episodes.

The sample tree mixes a v3.0 layout (AgiBot G1, Galaxea R1 Pro) and a v2.1 layout (AgileX)
only to cover both reader paths; it does not claim the real release does so
(``docs/sources/gm100.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.formats.lerobot import episode_ref
from pipelines.episode_store.errors import Reason
from pipelines.samples.formats.lerobot import DatasetWriter, SampleCamera, SampleEpisode
from pipelines.samples.toolkit import ArmSpec, SceneRenderer, arm_trajectory

SAMPLE_DEFECTS: dict[str, Reason] = {
    "short_video": Reason.FRAME_COUNT_MISMATCH,  # the episode's window of the shared video lacks 4 frames
    "nan_action": Reason.NON_FINITE_VALUES,  # NaN in three action rows
    "corrupt_parquet": Reason.CORRUPT_FILE,  # v2.1 parquet cut in half
    "unknown_task": Reason.MISSING_LANGUAGE,  # task_index 9 has no row in meta/tasks.jsonl
    "missing_video": Reason.MISSING_FILE,  # a camera's mp4 was never written
    "opaque_task": Reason.MISSING_LANGUAGE,  # task "task_00043" without a task_texts entry
    "bad_names": Reason.NAME_MISMATCH,  # info.json lists 18 action names for 16 dimensions
}


@dataclass(frozen=True)
class SampleRobot:
    arms: tuple[ArmSpec, ...]
    names: tuple[str, ...]
    order: str  # "joints_then_grippers" | "per_arm"


_G1_HOME = (0.0, -0.8, 0.0, 1.5, 0.0, 0.6, 0.0)
_AGX_HOME = (0.0, 1.2, -1.1, 0.0, 0.3, 0.0)
_R1P_HOME = (0.3, 0.2, 0.0, -1.4, 0.0, 0.4, 0.0)
SAMPLE_ROBOTS: dict[str, SampleRobot] = {
    "agibot_g1": SampleRobot(
        (ArmSpec(7, _G1_HOME, 0.3, (1.0, 0.0)), ArmSpec(7, _G1_HOME, 0.3, (1.0, 0.0))),
        tuple([f"left_arm_joint_{i}" for i in range(1, 8)] + [f"right_arm_joint_{i}" for i in range(1, 8)]
              + ["left_gripper", "right_gripper"]), "joints_then_grippers"),
    "agilex_cobot_magic": SampleRobot(
        (ArmSpec(6, _AGX_HOME, 0.35, (0.07, 0.0)), ArmSpec(6, _AGX_HOME, 0.35, (0.07, 0.0))),
        tuple([f"left_joint_{i}" for i in range(6)] + ["left_gripper"]
              + [f"right_joint_{i}" for i in range(6)] + ["right_gripper"]), "per_arm"),
    "galaxea_r1_pro": SampleRobot(
        (ArmSpec(7, _R1P_HOME, 0.3, (100.0, 0.0)), ArmSpec(7, _R1P_HOME, 0.3, (100.0, 0.0))),
        tuple([f"left_arm_joint_{i}" for i in range(1, 8)] + [f"right_arm_joint_{i}" for i in range(1, 8)]
              + ["left_gripper", "right_gripper"]), "joints_then_grippers"),
}
CAMERAS = (("camera_top", "overview"), ("camera_left_wrist", "wrist:0"), ("camera_right_wrist", "wrist:1"))


@dataclass(frozen=True)
class SampleDataset:
    path: str  # <platform folder>/<task folder>
    robot: str
    version: str
    codec: str
    robot_type: str | None
    task: str
    episodes: tuple[tuple[int, str | None], ...]
    image_hw: tuple[int, int] = (64, 80)
    fps: float = 30.0
    episodes_per_file: int = 3
    row_group_size: int | None = 32


SAMPLE_DATASETS: tuple[SampleDataset, ...] = (
    SampleDataset("agibot_g1/pour_water_into_the_cup", "agibot_g1", "v3.0", "av1", "agibot_g1",
                  "pour_water_into_the_cup",
                  ((0, None), (1, None), (2, "short_video"), (3, None), (4, "nan_action"), (5, None))),
    SampleDataset("agibot_g1/task_00043", "agibot_g1", "v3.0", "av1", "agibot_g1", "task_00043",
                  ((0, "opaque_task"), (1, "opaque_task"))),
    SampleDataset("agilex/fold_the_towel_in_half", "agilex_cobot_magic", "v2.1", "h264", None,
                  "fold_the_towel_in_half",
                  ((0, None), (1, "corrupt_parquet"), (2, "unknown_task"), (3, "missing_video"), (4, None))),
    SampleDataset("galaxea_r1_pro/stack_the_paper_cups", "galaxea_r1_pro", "v3.0", "h264", None,
                  "stack_the_paper_cups", ((0, None), (1, None), (2, None)), row_group_size=None),
    SampleDataset("galaxea_r1_pro/open_the_drawer", "galaxea_r1_pro", "v3.0", "h264", None,
                  "open_the_drawer", ((0, "bad_names"), (1, "bad_names"))),
)


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """A GM-100-style tree: v3.0 AgiBot G1 / R1 Pro and v2.1 AgileX datasets (``SAMPLE_DATASETS``)."""
    expected: dict[str, str | None] = {}
    for k, spec in enumerate(SAMPLE_DATASETS):
        expected.update(write_sample_dataset(Path(out_dir), spec, seed, k, (40, 90)))
    return expected


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """One AgiBot-G1-style v3.0 dataset (3 AV1 cameras) of valid episodes."""
    spec = SampleDataset("agibot_g1/pour_water_into_the_cup", "agibot_g1", "v3.0", "av1", "agibot_g1",
                         "pour_water_into_the_cup", tuple((i, None) for i in range(episodes)),
                         image_hw=(height, width), episodes_per_file=max(1, min(episodes, 8)))
    write_sample_dataset(Path(out_dir), spec, seed, 0, (frames, frames + 1), deterministic=False)


def _assemble(q: np.ndarray, robot: SampleRobot) -> np.ndarray:
    (a, b) = robot.arms
    la, lg = q[:, : a.joints], q[:, a.joints: a.joints + 1]
    ra, rg = q[:, a.joints + 1: a.joints + 1 + b.joints], q[:, -1:]
    if robot.order == "per_arm":
        return np.column_stack([la, lg, ra, rg])
    return np.column_stack([la, ra, lg, rg])


def write_sample_dataset(
    out_dir: Path, spec: SampleDataset, seed: int, salt: int, frames_range: tuple[int, int],
    *, deterministic: bool = True,
) -> dict[str, str | None]:
    robot = SAMPLE_ROBOTS[spec.robot]
    h, w = spec.image_hw
    cameras = [SampleCamera(f"observation.images.{name}", h, w, spec.codec) for name, _ in CAMERAS]
    renderers = {f"observation.images.{name}": SceneRenderer(robot.arms, view, h, w, tint=i)
                 for i, (name, view) in enumerate(CAMERAS)}
    width = len(robot.names)
    bad = any(d == "bad_names" for _, d in spec.episodes)
    action_names = list(robot.names) + (["torso_joint_1", "torso_joint_2"] if bad else [])
    features = {
        "observation.state": {"dtype": "float32", "shape": [width], "names": list(robot.names)},
        "action": {"dtype": "float32", "shape": [len(action_names)], "names": action_names},
    }
    tasks = {0: spec.task}
    writer = DatasetWriter(
        out_dir / spec.path, version=spec.version, fps=spec.fps, robot_type=spec.robot_type, features=features,
        cameras=cameras, tasks=tasks, episodes_per_file=spec.episodes_per_file,
        row_group_size=spec.row_group_size, deterministic=deterministic,
    )
    expected: dict[str, str | None] = {}
    for index, defect in spec.episodes:
        rng = np.random.default_rng([seed, 100 + salt, index])
        n = int(rng.integers(*frames_range))
        q, _ = arm_trajectory(robot.arms, rng, n)
        state = _assemble(q, robot)
        action = np.concatenate([state[1:], state[-1:]])
        if defect == "nan_action":
            action[n // 3: n // 3 + 3, 4] = np.nan
        task_index = 9 if defect == "unknown_task" else 0
        frames = (lambda key, q=q: (renderers[key](row) for row in q))
        writer.add(SampleEpisode(
            index=index, columns={"observation.state": state, "action": action}, task_index=task_index,
            tasks=[] if defect == "unknown_task" else [spec.task], frames=frames,
            drop_video_frames={cameras[0].key: 4} if defect == "short_video" else {},
            missing_videos={cameras[1].key} if defect == "missing_video" else set(),
            corrupt_parquet=defect == "corrupt_parquet",
        ))
        expected[episode_ref(spec.path, index)] = SAMPLE_DEFECTS[defect].value if defect else None
    writer.close()
    return expected
