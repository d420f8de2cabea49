"""GM-100 (Great March 100): LeRobot-style datasets per robot platform, with slug task names.

A profile on the shared LeRobot reader (``converters/formats/lerobot.py``). What is public
about the release is thin; ``docs/sources/gm100.md`` separates what was verified from what is
assumed. The converter reads any LeRobot v2.x / v3.0 dataset under the root and adds:

* the platform, hence the embodiment id, from the dataset's path (a folder named after the
  platform, e.g. ``<root>/agibot_g1/<task>/``), else from ``info.json`` ``robot_type``, else
  option ``platform``; unknown -> ``missing_metadata``;
* the instruction from the task string, which GM-100 stores as a slug: a ``task_texts``
  table (option, or a JSON file named by option ``task_texts_file``) wins; a word slug such
  as ``pour_water_into_the_cup`` becomes "pour water into the cup"; an opaque id such as
  ``task_00043`` without a table entry is ``missing_language``.

The sample tree mixes a v3.0 layout (AgiBot G1, Galaxea R1 Pro) and a v2.1 layout (AgileX)
only to cover both reader paths; it does not claim the real release does so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from converters import register
from converters.base import Rule, SourceCard, check_value
from converters.formats.lerobot import (
    ArmSpec,
    DatasetWriter,
    FeatureMap,
    LeRobotConverter,
    LeRobotDataset,
    RawEpisode,
    ReaderOptions,
    SampleCamera,
    SampleEpisode,
    SceneRenderer,
    arm_trajectory,
    episode_ref,
    episode_tasks,
)
from pipelines.episode_store.errors import EpisodeError, Reason


@dataclass(frozen=True)
class Platform:
    """One GM-100 robot platform."""

    embodiment: str
    robot: str  # robot model, used as Episode.robot_type when info.json robot_type is null
    #: path components (lower-cased, '-' and ' ' read as '_') that name this platform
    folder_names: tuple[str, ...]
    #: info.json robot_type values (same normalisation) that name this platform
    robot_types: tuple[str, ...]


#: the three platforms LingBot-VLA reports GM-100 results on (see docs/sources/gm100.md)
PLATFORMS: tuple[Platform, ...] = (
    Platform("agibot_g1", "AgiBot G1", ("agibot_g1", "agibotg1", "agibot", "g1"),
             ("agibot_g1", "agibotg1", "agibot_a2d", "a2d", "agibot")),
    Platform("agilex_cobot_magic", "AgileX Cobot Magic", ("agilex", "agilex_cobot_magic", "cobot_magic", "aloha_agilex"),
             ("agilex", "agilex_cobot_magic", "cobot_magic", "aloha_agilex", "piper")),
    Platform("galaxea_r1_pro", "Galaxea R1 Pro", ("galaxea_r1_pro", "r1_pro", "r1pro", "galaxea"),
             ("galaxea_r1_pro", "r1_pro", "r1pro", "galaxea")),
)
EMBODIMENTS = tuple(sorted(p.embodiment for p in PLATFORMS))

#: an opaque task id: "task_00043", "task-7", "00043"
OPAQUE_TASK_RE = re.compile(r"^(?:task)?[\s_\-]*\d+$", re.IGNORECASE)
#: a word slug: words joined by '_' or '-', no spaces ("pour_water_into_the_cup")
WORD_SLUG_RE = re.compile(r"^[A-Za-z0-9]+(?:[_\-]+[A-Za-z0-9]+)+$")

FEATURES = FeatureMap(
    state_keys=("observation.state",),
    action_keys=("action",),
    camera_prefixes=("observation.images.", "observation.image."),
)


def _norm(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def task_instruction(task: str, table: dict[str, str], ref: str) -> tuple[str, str]:
    """``(instruction, rule)`` for a GM-100 task string (rule: task_texts | slug_words | text)."""
    key = task.strip()
    if key in table:
        return table[key], "task_texts"
    if not key:
        raise EpisodeError(Reason.MISSING_LANGUAGE, f"{ref}: empty task string")
    if OPAQUE_TASK_RE.match(key):
        raise EpisodeError(
            Reason.MISSING_LANGUAGE,
            f"{ref}: task {key!r} is an opaque id with no entry in the task_texts table (option task_texts / "
            f"task_texts_file)",
        )
    if WORD_SLUG_RE.match(key):
        return re.sub(r"[_\-]+", " ", key).lower(), "slug_words"
    return key, "text"


#: ``{task string: instruction}``, from option ``task_texts`` or the file ``task_texts_file`` names
TaskTexts = dict[str, Annotated[str, Rule(nonempty=True)]]


@dataclass(frozen=True)
class GM100Options(ReaderOptions):
    """``sources.gm100.options`` in params.yaml: the reader options and these (docs/sources/gm100.md §5)."""

    #: force one platform (an embodiment id or folder name); None: from each dataset's path or robot_type
    platform: str | None = None
    #: ``{task string: instruction}``; wins over ``task_texts_file``
    task_texts: TaskTexts | None = None
    #: a JSON object of the same shape; relative paths are relative to the root
    task_texts_file: str | None = None


@register
class GM100Converter(LeRobotConverter):
    """GM-100 trajectories, one LeRobot dataset per platform (and task) under the root.

    Options: :class:`GM100Options`.
    """

    name = "gm100"
    source_version = "gm100-lerobot"
    converter_version = "1.1.0"
    embodiments = EMBODIMENTS
    control_hz = 30.0  # assumed nominal; every dataset's info.json fps is used per episode
    card = SourceCard.load("gm100")  # converters/cards/gm100.yaml
    feature_map = FEATURES
    options_type = GM100Options

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        self.task_texts = self._load_task_texts()
        forced = self.options.platform
        self.forced_platform = None
        if forced is not None:
            self.forced_platform = self._platform_by_name(forced)
            if self.forced_platform is None:
                raise ValueError(f"{self.name}: option platform {forced!r} is not one of "
                                 f"{[p.embodiment for p in PLATFORMS]}")

    def _load_task_texts(self) -> dict[str, str]:
        table: dict[str, str] = {}
        file_opt = self.options.task_texts_file
        if file_opt:
            path = Path(file_opt)
            path = path if path.is_absolute() else self.root / path
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"option task_texts_file: cannot read {path}: {exc}") from exc
            table.update(check_value(TaskTexts, data, f"{self.name}: task_texts_file {path}"))
        table.update(self.options.task_texts or {})
        return {k.strip(): v.strip() for k, v in table.items()}

    @staticmethod
    def _platform_by_name(name: str) -> Platform | None:
        key = _norm(name)
        for p in PLATFORMS:
            if key == p.embodiment or key in p.folder_names:
                return p
        return None

    def platform_for(self, ds: LeRobotDataset, ref: str) -> tuple[Platform, str]:
        if self.forced_platform is not None:
            return self.forced_platform, "option"
        for part in Path(ds.rel).parts:
            for p in PLATFORMS:
                if _norm(part) in p.folder_names or _norm(part) == p.embodiment:
                    return p, "path"
        if ds.robot_type:
            for p in PLATFORMS:
                if _norm(ds.robot_type) in p.robot_types:
                    return p, "robot_type"
        raise EpisodeError(
            Reason.MISSING_METADATA,
            f"{ref}: no GM-100 platform in the dataset path {ds.rel!r} or robot_type {ds.robot_type!r}; "
            f"put the dataset under a platform folder or set option 'platform'",
        )

    def embodiment_for(self, ds: LeRobotDataset, ref: str) -> tuple[str, str]:
        platform, _ = self.platform_for(ds, ref)
        return platform.embodiment, ds.robot_type or platform.robot

    def language_for(self, ds: LeRobotDataset, raw: RawEpisode):
        texts, info = episode_tasks(raw)
        instruction, rule = task_instruction(texts[0], self.task_texts, raw.ref)
        platform, how = self.platform_for(ds, raw.ref)
        meta: dict[str, Any] = {
            "tasks": texts,
            "gm100": {"platform": platform.embodiment, "platform_from": how, "task": texts[0],
                      "instruction_rule": rule},
        }
        if info:
            meta["task_info"] = info
        return instruction, [], None, meta

    # -- samples -------------------------------------------------------------------------

    @classmethod
    def write_samples(cls, out_dir: Path, seed: int = 0) -> dict[str, str | None]:
        """A GM-100-style tree: v3.0 AgiBot G1 / R1 Pro and v2.1 AgileX datasets (``SAMPLE_DATASETS``)."""
        expected: dict[str, str | None] = {}
        for k, spec in enumerate(SAMPLE_DATASETS):
            expected.update(write_sample_dataset(Path(out_dir), spec, seed, k, (40, 90)))
        return expected

    @classmethod
    def write_synthetic(
        cls, out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0
    ) -> None:
        """One AgiBot-G1-style v3.0 dataset (3 AV1 cameras) of valid episodes."""
        spec = SampleDataset("agibot_g1/pour_water_into_the_cup", "agibot_g1", "v3.0", "av1", "agibot_g1",
                             "pour_water_into_the_cup", tuple((i, None) for i in range(episodes)),
                             image_hw=(height, width), episodes_per_file=max(1, min(episodes, 8)))
        write_sample_dataset(Path(out_dir), spec, seed, 0, (frames, frames + 1), deterministic=False)


# --------------------------------------------------------------------------------------
# Sample data
# --------------------------------------------------------------------------------------

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
