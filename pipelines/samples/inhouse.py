"""In-house sample and synthetic data: recordings of three rigs in the in-house layout, with defects.

The layout is ``docs/inhouse_format.md``; its section 7 describes the samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from converters.inhouse import FORMAT_VERSION, METADATA_FILE
from pipelines.episode_store.errors import Reason
from pipelines.samples.toolkit import TABLETOP, ArmSpec, arm_trajectory, box, camera_tint, disc, encode_jpeg

#: defect name -> reason code the converter must report for it
SAMPLE_DEFECTS: dict[str, Reason] = {
    "truncated_action": Reason.LENGTH_MISMATCH,  # recorder stopped writing /action 5 frames early
    "corrupt_file": Reason.CORRUPT_FILE,  # valid file cut to 55% of its bytes (copy interrupted)
    "missing_qpos": Reason.MISSING_KEY,  # no /observations/qpos
    "missing_camera": Reason.MISSING_CAMERA,  # a camera from metadata.json was never written
    "nan_action": Reason.NON_FINITE_VALUES,  # teleop dropout: NaN in three action frames
    "bad_jpeg": Reason.IMAGE_DECODE_ERROR,  # one mid-episode frame holds a truncated JPEG
    "short_camera": Reason.FRAME_COUNT_MISMATCH,  # one camera dropped its last 3 frames
    "no_metadata": Reason.MISSING_METADATA,  # task folder without metadata.json
}


@dataclass(frozen=True)
class SampleArm:
    """One arm of a sample rig: joint names (gripper last), home pose and gripper range."""

    joints: tuple[str, ...]
    home: tuple[float, ...]
    gripper_open: float
    gripper_closed: float
    reach: float  # max waypoint offset from home (rad)

    @property
    def spec(self) -> ArmSpec:
        return ArmSpec(len(self.home), self.home, self.reach, (self.gripper_open, self.gripper_closed))


@dataclass(frozen=True)
class SampleTask:
    folder: str
    robot_type: str
    instruction: str
    fps: float
    arms: tuple[SampleArm, ...]
    cameras: tuple[str, ...]  # first camera sees all arms; "..._wrist" cameras follow one arm each
    layout: str  # raw | jpeg_padded | jpeg_vlen
    image_hw: tuple[int, int]
    episodes: tuple[tuple[int, str | None], ...]  # (episode number, defect or None)
    channel_order: str = "RGB"
    recorded_timestamps: bool = False
    qpos_dtype: str = "float64"
    instruction_alternatives: tuple[str, ...] = ()
    episode_instructions: tuple[tuple[int, str], ...] = ()
    write_metadata: bool = True


def _arm(prefix: str, n: int, home: tuple[float, ...], grip: tuple[float, float], reach: float) -> SampleArm:
    joints = tuple(f"{prefix}joint{i + 1}" for i in range(n)) + (f"{prefix}gripper",)
    return SampleArm(joints, home, grip[0], grip[1], reach)


_FRANKA = _arm("", 7, (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785), (0.08, 0.046), 0.45)
_UR5 = _arm("", 6, (0.0, -1.571, 1.571, -1.571, -1.571, 0.0), (0.0, 0.82), 0.5)
_ARX5 = _arm("", 6, (0.0, 0.6, 0.9, 0.0, 0.0, 0.0), (0.044, 0.012), 0.45)
_ALOHA_HOME = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0)
_ALOHA_LEFT = _arm("left_", 6, _ALOHA_HOME, (1.0, 0.25), 0.35)
_ALOHA_RIGHT = _arm("right_", 6, _ALOHA_HOME, (1.0, 0.25), 0.35)

SAMPLE_TASKS: tuple[SampleTask, ...] = (
    SampleTask(
        folder="franka_pick_cube",
        robot_type="franka",
        instruction="pick up the red cube and put it in the bowl",
        instruction_alternatives=("put the red cube into the bowl",),
        fps=15.0,
        arms=(_FRANKA,),
        cameras=("cam_front", "cam_wrist"),
        layout="jpeg_padded",
        image_hw=(72, 96),
        episodes=((0, None), (1, None), (2, None), (3, "truncated_action"), (4, None), (5, None),
                  (7, "corrupt_file"), (10, None), (11, "missing_qpos")),
    ),
    SampleTask(
        folder="aloha_transfer_cube",
        robot_type="aloha",
        instruction="transfer the cube from the left gripper to the right gripper",
        fps=50.0,
        arms=(_ALOHA_LEFT, _ALOHA_RIGHT),
        cameras=("cam_high", "cam_left_wrist", "cam_right_wrist"),
        layout="raw",
        image_hw=(48, 64),
        qpos_dtype="float32",
        episodes=((0, None), (1, None), (2, None), (3, None), (4, "missing_camera"), (5, None),
                  (6, None), (7, "nan_action")),
    ),
    SampleTask(
        folder="ur5_stack_blocks",
        robot_type="ur5",
        instruction="stack the blue block on the red block",
        fps=10.0,
        arms=(_UR5,),
        cameras=("cam_front", "cam_wrist"),
        layout="jpeg_vlen",
        image_hw=(72, 96),
        channel_order="BGR",
        recorded_timestamps=True,
        episodes=((0, None), (1, None), (2, "bad_jpeg"), (3, None), (4, None), (5, None), (6, "short_camera")),
        episode_instructions=((3, "stack the red block on the blue block"),),
    ),
    SampleTask(
        folder="arx5_fold_towel",
        robot_type="arx5",
        instruction="fold the towel in half",
        fps=20.0,
        arms=(_ARX5,),
        cameras=("cam_front", "cam_wrist"),
        layout="jpeg_vlen",
        image_hw=(72, 96),
        episodes=((0, "no_metadata"),),
        write_metadata=False,
    ),
)


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """Benchmark input: frames are rendered and encoded a block at a time, so any length fits in memory."""
    from dataclasses import replace

    task = replace(SAMPLE_TASKS[1], folder="synthetic_transfer_cube", layout="jpeg_vlen", image_hw=(height, width),
                   episodes=tuple((i, None) for i in range(episodes)))
    folder = out_dir / task.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).write_text(json.dumps(_sample_metadata(task), indent=2) + "\n", encoding="utf-8")
    plain = {"track_times": False}
    for number in range(episodes):
        rng = np.random.default_rng([seed, 99, number])
        qpos = _sample_trajectory(task, rng, frames)
        action = np.concatenate([qpos[1:], qpos[-1:]])
        with h5py.File(folder / f"episode_{number}.hdf5", "w") as f:
            f.attrs["sim"] = False
            f.attrs["compress"] = True
            f.create_dataset("observations/qpos", data=qpos, **plain)
            f.create_dataset("observations/qvel", data=np.gradient(qpos, axis=0) * task.fps, **plain)
            f.create_dataset("action", data=action, **plain)
            for cam in task.cameras:
                ds = f.create_dataset(f"observations/images/{cam}", (frames,), dtype=h5py.vlen_dtype(np.uint8), **plain)
                for lo in range(0, frames, 64):
                    block = _render_camera(task, cam, qpos[lo : lo + 64])
                    for i, frame in enumerate(block):
                        ds[lo + i] = np.frombuffer(encode_jpeg(frame, quality=90, optimize=True), dtype=np.uint8)


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """Write every task of ``SAMPLE_TASKS`` under ``out_dir``; byte-identical for a given seed."""
    expected: dict[str, str | None] = {}
    for task_index, task in enumerate(SAMPLE_TASKS):
        folder = out_dir / task.folder
        folder.mkdir(parents=True, exist_ok=True)
        if task.write_metadata:
            (folder / METADATA_FILE).write_text(json.dumps(_sample_metadata(task), indent=2) + "\n", encoding="utf-8")
        for number, defect in task.episodes:
            rng = np.random.default_rng([seed, task_index, number])
            path = folder / f"episode_{number}.hdf5"
            _write_sample_episode(path, task, rng, defect)
            expected[f"{task.folder}/{path.name}"] = SAMPLE_DEFECTS[defect].value if defect else None
    return expected


def _sample_metadata(task: SampleTask) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "instruction": task.instruction,
        "robot_type": task.robot_type,
        "fps": task.fps,
        "camera_names": list(task.cameras),
        "joint_names": [j for arm in task.arms for j in arm.joints],
    }
    if task.instruction_alternatives:
        meta["instruction_alternatives"] = list(task.instruction_alternatives)
    if task.channel_order != "RGB":
        meta["image_channel_order"] = task.channel_order
    if task.episode_instructions:
        meta["episodes"] = {f"episode_{n}.hdf5": {"instruction": text} for n, text in task.episode_instructions}
    meta["extra"] = {"synthetic": True, "rig": f"{task.robot_type}-sim-rig"}
    return meta


def _sample_trajectory(task: SampleTask, rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Joint positions ``[T, D]`` of every arm, joints then gripper (``toolkit.arm_trajectory``)."""
    return arm_trajectory([arm.spec for arm in task.arms], rng, num_frames)[0]


def _write_sample_episode(path: Path, task: SampleTask, rng: np.random.Generator, defect: str | None) -> None:
    num_frames = int(rng.integers(40, 121))
    qpos = _sample_trajectory(task, rng, num_frames)
    action = np.concatenate([qpos[1:], qpos[-1:]])  # leader arm leads the follower by one step
    qvel = np.gradient(qpos, axis=0) * task.fps
    effort = 2.0 * np.sin(qpos) + 0.3 * qvel + rng.normal(0.0, 0.01, qpos.shape)
    if defect == "truncated_action":
        action = action[:-5]
    if defect == "nan_action":
        frame = num_frames // 2
        action[frame : frame + 3, 2] = np.nan
    frames = {cam: _render_camera(task, cam, qpos) for cam in task.cameras}
    if defect == "missing_camera":
        del frames[task.cameras[-1]]
    if defect == "short_camera":
        frames[task.cameras[-1]] = frames[task.cameras[-1]][:-3]

    plain = {"track_times": False}
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = False
        f.attrs["compress"] = task.layout != "raw"
        obs = f.create_group("observations")
        if defect != "missing_qpos":
            obs.create_dataset("qpos", data=qpos.astype(task.qpos_dtype), **plain)
        obs.create_dataset("qvel", data=qvel.astype(task.qpos_dtype), **plain)
        obs.create_dataset("effort", data=effort.astype(task.qpos_dtype), **plain)
        f.create_dataset("action", data=action.astype(task.qpos_dtype), **plain)
        if task.recorded_timestamps:
            t0 = 1.7e9 + float(rng.integers(0, 10**7))
            jitter = rng.uniform(-0.1, 0.1, num_frames) / task.fps
            f.create_dataset("timestamp", data=t0 + np.arange(num_frames) / task.fps + jitter, **plain)
        stored = {cam: _stored_frames(frames[cam], task.channel_order) for cam in frames}
        _write_sample_images(f, task, stored, num_frames, defect)
    if defect == "corrupt_file":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 55 // 100])


def _write_sample_images(
    f: h5py.File, task: SampleTask, stored: dict[str, np.ndarray], num_frames: int, defect: str | None
) -> None:
    plain = {"track_times": False}
    images = f.create_group("observations/images")
    if task.layout == "raw":  # ALOHA's uncompressed layout, one chunk per frame (gzip keeps samples small)
        gzip = {"compression": "gzip", "compression_opts": 9}
        for cam, data in stored.items():
            images.create_dataset(cam, data=data, chunks=(1, *data.shape[1:]), **gzip, **plain)
        return
    encoded = {cam: [encode_jpeg(frame, quality=75, optimize=True) for frame in data] for cam, data in stored.items()}
    if defect == "bad_jpeg":
        cam, i = task.cameras[-1], num_frames // 2
        encoded[cam][i] = encoded[cam][i][: len(encoded[cam][i]) * 6 // 10]
    if task.layout == "jpeg_vlen":
        for cam, blobs in encoded.items():
            ds = images.create_dataset(cam, (len(blobs),), dtype=h5py.vlen_dtype(np.uint8), **plain)
            for i, blob in enumerate(blobs):
                ds[i] = np.frombuffer(blob, dtype=np.uint8)
        return
    # ALOHA's compressed layout: every frame padded to the longest encoding, true lengths in
    # /compress_len [num_cameras, T] (float32, as the recorder writes it), rows in camera_names order
    padded = max(len(b) for blobs in encoded.values() for b in blobs)
    lengths = np.zeros((len(task.cameras), num_frames), dtype=np.float32)
    for cam, blobs in encoded.items():
        rows = np.zeros((len(blobs), padded), dtype=np.uint8)
        for i, blob in enumerate(blobs):
            rows[i, : len(blob)] = np.frombuffer(blob, dtype=np.uint8)
            lengths[task.cameras.index(cam), i] = len(blob)
        images.create_dataset(cam, data=rows, chunks=(1, padded), **plain)
    f.create_dataset("compress_len", data=lengths, **plain)


def _stored_frames(frames: np.ndarray, channel_order: str) -> np.ndarray:
    return np.ascontiguousarray(frames[..., ::-1]) if channel_order == "BGR" else frames


def _render_camera(task: SampleTask, camera: str, qpos: np.ndarray) -> np.ndarray:
    """RGB frames ``[T,H,W,3]`` of a toy scene driven by the joint state.

    The overview camera (the first) shows one disc per arm whose position follows
    the arm's first two joints and whose size follows the gripper; a wrist camera
    shows the target object moving against the arm's wrist joints and two finger
    bars whose gap follows the gripper. Same state -> same pixels, so still
    stretches of the trajectory give identical frames.
    """
    h, w = task.image_hw
    background = TABLETOP.render(h, w, camera_tint(camera))
    offsets = np.cumsum([0] + [len(arm.joints) for arm in task.arms])
    colours = ((220, 60, 40), (40, 90, 220))
    out = np.empty((len(qpos), h, w, 3), dtype=np.uint8)
    wrist_arm = None
    if camera.endswith("wrist"):
        wrist_arm = 1 if (camera.startswith("cam_right") and len(task.arms) > 1) else 0
    for t, q in enumerate(qpos):
        img = background.copy()
        for a, arm in enumerate(task.arms):
            if wrist_arm is not None and a != wrist_arm:
                continue
            j = q[offsets[a] : offsets[a + 1]] - np.append(arm.home, arm.gripper_open)
            grip = (q[offsets[a + 1] - 1] - arm.gripper_closed) / (arm.gripper_open - arm.gripper_closed)
            if wrist_arm is None:
                cx = w * (0.5 + (a - (len(task.arms) - 1) / 2) * 0.4) + j[0] * w * 0.5
                cy = h * 0.6 + j[1] * h * 0.5
                disc(img, cx, cy, h * (0.08 + 0.05 * grip), colours[a % 2], stepwise=True)
            else:
                cx = w * 0.5 - j[3] * w * 0.8 - j[0] * w * 0.4
                cy = h * 0.45 - j[1] * h * 0.6 - j[2] * h * 0.3
                disc(img, cx, cy, h * 0.2, (230, 200, 40), stepwise=True)
                gap = w * (0.08 + 0.22 * grip)
                for x0 in (w / 2 - gap - w * 0.06, w / 2 + gap):
                    # the bars start at the first pixel row at or below float32(h * 0.8): the samples were
                    # drawn by comparing float32 pixel rows with it
                    box(img, x0, np.float32(h * 0.8), x0 + w * 0.06, h, (70, 70, 70))
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out

