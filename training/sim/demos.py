"""Scripted-expert demonstrations of Meta-World tasks, written as in-house recordings.

The demonstrations enter the pipeline the way a new robot's recordings would: in a native
layout an existing converter reads (the in-house ALOHA/ACT HDF5 layout,
``docs/inhouse_format.md``), then conversion, curation and a manifest through the usual
stages. One task folder per task::

    <out>/metaworld_<task>/metadata.json        # instruction, robot sawyer, cameras, names, 80 Hz
    <out>/metaworld_<task>/episode_<seed>.hdf5  # qpos = hand xyz + gripper opening, action, JPEG frames

Every file is root-attributed ``sim = True`` and ``success`` (whether the expert solved the
task within ``max_steps``); failed attempts are recorded, not hidden, and curation removes
them (``sources.<name>.curation.failed_episodes``). Frame t holds the observation before
action t, and the action is the one executed (clipped to [-1, 1]). Files are written to a
temporary name and renamed, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.episode_store.schema import ActionKind
from training.io import publishing, write_json
from training.sim.metaworld import (
    ACTION_NAMES,
    CONTROL_HZ,
    PROPRIO_NAMES,
    MetaWorldTask,
    SimError,
)

ROBOT_TYPE = "sawyer"


@dataclass(frozen=True)
class DemoConfig:
    out: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    image_size: int = 224
    max_steps: int = 200
    jpeg_quality: int = 95
    #: standard deviation of Gaussian noise added to the hand motion the robot executes (not to the
    #: recorded action, which stays the expert's action for the state it saw): DART-style demonstrations
    #: that visit states just off the expert's path and show how it gets back (0: the expert as is)
    action_noise: float = 0.0
    #: the share of each task's demonstrations recorded with ``action_noise``, spread evenly over its
    #: seeds (0.5: every second one); the others are the plain expert, whose exact paths stay in the data
    noise_share: float = 1.0
    #: per-task ``action_noise`` in place of the common one ({task: std}; a task not named keeps
    #: ``action_noise``): recovery data where the expert's path needs it (a task whose policy stalls
    #: off that path), the expert's exact paths where precision matters (docs/evaluation.md)
    task_noise: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.action_noise < math.inf:  # NaN fails every comparison: a NaN std would record NaN moves
            raise SimError(f"action_noise must be a finite number >= 0, got {self.action_noise}")
        if not 0.0 <= self.noise_share <= 1.0:
            raise SimError(f"noise_share must be in [0, 1], got {self.noise_share}")
        stray = sorted(set(self.task_noise) - set(self.tasks))
        if stray:  # a misspelt task would otherwise record every demonstration plain, silently
            raise SimError(f"task_noise names tasks not recorded: {stray} (tasks: {list(self.tasks)})")
        bad = {t: v for t, v in self.task_noise.items() if not 0 <= v < math.inf}
        if bad:
            raise SimError(f"task_noise must be finite numbers >= 0, got {bad}")

    def noise_for(self, index: int, task: str | None = None) -> float:
        """The action noise of ``task``'s ``index``-th demonstration: noisy where the running count
        floor((index + 1) * noise_share) steps up, so any first n demonstrations hold their share."""
        share = Fraction(self.noise_share).limit_denominator(10_000)
        noisy = (index + 1) * share // 1 > index * share // 1
        noise = self.task_noise.get(task, self.action_noise)  # no task (None) is never a key: the common std
        return noise if noisy else 0.0


def task_folder(task: str) -> str:
    return "metaworld_" + task.removesuffix("-v3").replace("-", "_")


def _metadata(task: MetaWorldTask) -> dict[str, Any]:
    import metaworld

    return {
        "format_version": 1,
        "instruction": task.instruction,
        "robot_type": ROBOT_TYPE,
        "embodiment": ROBOT_TYPE,
        "fps": CONTROL_HZ,
        "camera_names": list(task.cameras),
        "joint_names": list(PROPRIO_NAMES),
        "action_names": list(ACTION_NAMES),
        "action_kind": ActionKind.EE_POSE_DELTA.value,
        "extra": {
            "simulator": f"metaworld {getattr(metaworld, '__version__', 'unknown')}",
            "task": task.task,
            "units": "hand position in m; gripper opening 0 (closed) .. 1 (open); action: hand motion in "
                     "1/100 m per step and gripper effort (-1 open .. 1 close)",
            "cameras": "corner2 turned 180 degrees (MuJoCo renders it upside down); gripperPOV is the wrist",
        },
    }


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def record_episode(task: MetaWorldTask, seed: int, path: Path, quality: int,
                   action_noise: float = 0.0) -> dict[str, Any]:
    """Run the expert from ``seed`` and write the episode file atomically; returns its summary.

    With ``action_noise`` the robot executes the expert's hand motion plus N(0, action_noise^2) per
    axis (the gripper effort as the expert gives it), from a generator seeded by ``seed``, while the
    file records the expert's own action for every state: the labels a policy should learn, on
    states a little off the expert's path (Laskey et al. 2017, DART). A policy that drifts
    off that path in closed loop then has demonstrations of getting back to it."""
    import h5py

    if not 0 <= action_noise < math.inf:
        raise SimError(f"action_noise must be a finite number >= 0, got {action_noise}")
    rng = np.random.default_rng((int(seed), 0x4441_5254))  # the episode's own noise: the same on every run
    observation = task.reset(seed)
    proprio, actions, frames = [], [], {c: [] for c in task.cameras}
    success = False
    while not success and task.steps < task.max_steps:
        action = np.clip(task.expert_action(), -1.0, 1.0)
        proprio.append(observation.proprio)
        actions.append(action)
        for c in task.cameras:
            frames[c].append(_jpeg(observation.images[c], quality))
        executed = action
        if action_noise > 0:
            executed = action.copy()
            executed[:3] += rng.normal(0.0, action_noise, 3).astype(np.float32)
        observation, success = task.step(executed)
    with publishing(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["sim"] = True
        f.attrs["compress"] = True
        f.attrs["success"] = bool(success)
        f.attrs["seed"] = int(seed)
        if action_noise > 0:  # files of the plain expert stay as they were
            f.attrs["action_noise"] = float(action_noise)
        f.create_dataset("/observations/qpos", data=np.asarray(proprio, dtype=np.float32))
        f.create_dataset("/action", data=np.asarray(actions, dtype=np.float32))
        jpeg = h5py.vlen_dtype(np.dtype("uint8"))
        for c in task.cameras:
            ds = f.create_dataset(f"/observations/images/{c}", shape=(len(frames[c]),), dtype=jpeg)
            for i, data in enumerate(frames[c]):
                ds[i] = data
    return {"task": task.task, "seed": int(seed), "success": bool(success), "frames": len(actions)}


def record(config: DemoConfig) -> dict[str, Any]:
    """Record every (task, seed) not yet on disk; returns and writes ``<out>/demos.json``."""
    out = Path(config.out)
    episodes = []
    for name in config.tasks:
        folder = out / task_folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        with MetaWorldTask(name, image_size=config.image_size, max_steps=config.max_steps) as task:
            write_json(folder / "metadata.json", _metadata(task))
            for index, seed in enumerate(config.seeds):
                path = folder / f"episode_{seed}.hdf5"
                noise = config.noise_for(index, name)
                if path.is_file():  # recorded by an interrupted or earlier run: kept if made the same way
                    summary = _summary(path, name, seed)
                    if summary.pop("action_noise") == noise:
                        episodes.append(summary)
                        continue
                episodes.append(record_episode(task, seed, path, config.jpeg_quality, noise))
    summary = {
        "config": {**config.__dict__, "tasks": list(config.tasks), "seeds": list(config.seeds),
                   "task_noise": dict(config.task_noise)},
        "episodes": episodes,
        "success": {t: float(np.mean([e["success"] for e in episodes if e["task"] == t])) for t in config.tasks},
    }
    write_json(out / "demos.json", summary)
    return summary


def _summary(path: Path, task: str, seed: int) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        return {"task": task, "seed": seed, "success": bool(f.attrs["success"]),
                "frames": int(f["/action"].shape[0]), "action_noise": float(f.attrs.get("action_noise", 0.0))}


def config_from_params(params: dict[str, Any]) -> DemoConfig:
    sim = params.get("sim") or {}
    demos = sim.get("demos") or {}
    known = {"out", "per_task", "seed_start", "image_size", "max_steps", "jpeg_quality", "action_noise",
             "noise_share", "task_noise"}
    unknown = set(demos) - known
    if unknown:
        raise SimError(f"sim.demos: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    tasks = tuple(sim.get("tasks") or ())
    if not tasks:
        raise SimError("sim.tasks is empty: name at least one Meta-World task")
    start, count = int(demos.get("seed_start", 0)), int(demos.get("per_task", 10))
    return DemoConfig(out=str(demos.get("out", "data/sim/metaworld")), tasks=tasks,
                      seeds=tuple(range(start, start + count)), image_size=int(demos.get("image_size", 224)),
                      max_steps=int(demos.get("max_steps", sim.get("max_steps", 200))),
                      jpeg_quality=int(demos.get("jpeg_quality", 95)),
                      action_noise=float(demos.get("action_noise", 0.0)),
                      noise_share=float(demos.get("noise_share", 1.0)),
                      task_noise={str(t): float(v) for t, v in (demos.get("task_noise") or {}).items()})


def main(argv: Sequence[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description="record Meta-World scripted-expert demonstrations "
                                                 "in the in-house HDF5 layout (params.yaml sim section)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", help="output directory (default: sim.demos.out)")
    args = parser.parse_args(argv)
    config = config_from_params(yaml.safe_load(Path(args.params).read_text()) or {})
    if args.out:
        config = replace(config, out=args.out)
    summary = record(config)
    for task, rate in summary["success"].items():
        print(f"{task}: {len(config.seeds)} demonstrations, expert success {rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
