"""AgiBot World sample and synthetic data: a synthetic release with the source's quirks and broken episodes.

``write_samples`` writes the layout ``converters/agibot.py`` reads (h5py, PyAV with H.264 and
AV1, tarfile): extracted episodes, HF tar shards, proprio and camera-parameter sidecars; the
release and its quirks are described in ``docs/sources/agibot.md``. ``write_synthetic`` writes
valid episodes of any size for the benchmarks.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from converters.agibot import (
    EFFECTOR_TYPES,
    TACTILE_SENSORS,
    TASK_EFFECTORS,
    camera_file,
)
from pipelines.episode_store.errors import Reason
from pipelines.samples.toolkit import (
    Backdrop,
    Mp4Writer,
    box,
    camera_tint,
    disc,
    encode_png,
    min_jerk,
)

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
        encoders = {cam: _video_writer(str(folder / f"{cam}_color.mp4"), "av1", h, w, fast=True) for cam in cameras}
        try:
            for t in range(frames):
                for k, (cam, renderer) in enumerate(renderers.items()):
                    frame = renderer.render(motion, t).astype(np.int16) + noise[(t + 3 * k) % len(noise)]
                    encoders[cam].write(np.clip(frame, 0, 255).astype(np.uint8))
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
        rows.append(min_jerk(rows[-1][-1], target, int(k)))
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

#: the shelf-side wall and table the head and wrist cameras see
BACKDROP = Backdrop(wall=(168, 174, 186), table=(122, 98, 72), horizon=0.42, slope=45.0, edge=(92, 82, 70),
                    edge_end=0.44, seam_top=0.46, seam_spacing=(8, 10), seam_shade=0.92, tint_levels=5, tint_step=7.0)


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
        if self.kind == "tactile":
            rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
            img = np.full((h, w, 3), 205.0, np.float32) - rows * 25
            return np.clip(img, 0, 255).astype(np.uint8)
        return np.clip(BACKDROP.render(h, w, camera_tint(self.camera)), 0, 255).astype(np.uint8)

    def render(self, motion: _Motion, t: int) -> np.ndarray:
        img = self._background.copy()
        h, w = self.h, self.w
        grip = motion.close_state[t]
        if self.kind == "tactile":
            contact = grip[self.side]
            disc(img, w * 0.5, h * (0.45 if self.camera.endswith("1") else 0.55), 2 + contact * w * 0.35,
                 (95, 60, 150), precision=np.float64)
            return img
        if self._pose_cache is None:
            self._pose_cache = _end_pose(motion.joints)
        pos = self._pose_cache[0][t]
        if self.kind == "head":
            yaw, pitch = motion.head[t] - np.array([0.0, 0.35])
            disc(img, w * (0.5 - yaw * 0.8), h * (0.62 + pitch * 0.9), h * 0.07, (230, 200, 40),  # the object
                 precision=np.float64)
            for a, colour in ((0, (215, 60, 45)), (1, (45, 90, 215))):
                cx = w * (0.5 - (pos[a, 1]) * 1.1 - yaw * 0.8)
                cy = h * (0.9 - (pos[a, 2] - 0.75) * 1.6 + pitch * 0.9)
                disc(img, cx, cy, h * (0.05 + 0.04 * (1.0 - grip[a])), colour, precision=np.float64)
            return img
        a = self.side
        disc(img, w * (0.5 + (pos[a, 1] - (0.22 if a == 0 else -0.22)) * 2.5),
             h * (0.4 + (pos[a, 0] - 0.5) * 2.5), h * 0.22, (230, 200, 40), precision=np.float64)
        if self.effector == "dexhand":
            for f in range(5):
                length = h * (0.35 - 0.22 * grip[a] * (1.0 - 0.1 * f))
                x0 = w * (0.18 + 0.14 * f)
                box(img, x0, h - length, x0 + w * 0.07, h, (150, 120, 100), snap=int)
        else:
            gap = w * (0.06 + 0.24 * (1.0 - grip[a]))
            for x0 in (w / 2 - gap - w * 0.07, w / 2 + gap):
                box(img, x0, h * 0.78, x0 + w * 0.07, h, (70, 70, 70), snap=int)
        return img


def _video_writer(target, codec: str, height: int, width: int, *, faststart: bool = False,
                  fast: bool = False) -> Mp4Writer:
    """An MP4 as the release's: H.264 (libx264) or AV1 (libsvtav1), 30 fps, yuv420p."""
    container = {"fflags": "+bitexact"}
    if faststart:
        container["movflags"] = "+faststart"
    if codec == "av1":
        return Mp4Writer(target, "libsvtav1", 30, height, width, container_options=container,
                         options={"crf": "38", "preset": "12" if fast else "10", "svtav1-params": "lp=1"})
    # Samples: single-threaded, and without x264's SIMD, which reads uninitialised padding
    # at small frame sizes and made the bytes vary from run to run (seen at 112x64).
    options = {"crf": "24", "preset": "veryfast"} if fast else {
        "crf": "24", "preset": "veryfast", "threads": "1", "x264-params": "asm=0"}
    return Mp4Writer(target, "libx264", 30, height, width, options=options, container_options=container)


def _encode(frames: list[np.ndarray], codec: str, *, faststart: bool = False) -> bytes:
    if faststart:  # the muxer re-reads its output to move the index forward: needs a real file
        with tempfile.TemporaryDirectory(prefix="agibot-sample-") as tmp:
            path = os.path.join(tmp, "video.mp4")
            with _video_writer(path, codec, *frames[0].shape[:2], faststart=True) as writer:
                for frame in frames:
                    writer.write(frame)
            return Path(path).read_bytes()
    buf = io.BytesIO()
    with _video_writer(buf, codec, *frames[0].shape[:2]) as writer:
        for frame in frames:
            writer.write(frame)
    return buf.getvalue()


def _depth_png(motion: _Motion, t: int, hw: tuple[int, int]) -> bytes:
    """A uint16 depth PNG in mm (the release's head_depth_<frame>.png): a table plane with the arms closer."""
    h, w = hw
    rows = np.linspace(1.6, 0.7, h)[:, None] * np.ones((1, w))
    depth = rows * 1000.0
    for a in range(2):
        x = int(w * (0.3 + 0.4 * a + 0.2 * np.sin(motion.joints[t, 7 * a])))
        depth[h // 2:, max(0, x - 4): x + 4] = 550.0
    return encode_png(depth.astype(np.uint16))


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
