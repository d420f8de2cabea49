"""DROID sample and synthetic data: a synthetic Franka doing pick-and-place, in both DROID layouts.

``write_samples`` writes the RLDS release (TFDS/TensorFlow, as the release was written; two shards,
one truncated) and raw trajectory folders (h5py and PyAV), including deliberately broken
episodes; ``write_synthetic`` writes valid RLDS episodes at any size. The layouts are specified
in ``docs/sources/droid.md`` (section 9 describes the samples).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

from converters.droid import (
    CAMERAS,
    CONTROL_HZ,
    LANGUAGE_KEYS,
    RAW_MP4_DIR,
    RAW_TRAJECTORY,
    load_tensorflow,
    load_tfds,
)
from pipelines.episode_store.errors import Reason
from pipelines.samples import toolkit
from pipelines.samples.toolkit import (
    Backdrop,
    box,
    camera_tint,
    disc,
    min_jerk,
    segment,
)

#: DROID's reset pose (RobotEnv.reset_joints)
HOME = np.array([0.0, -np.pi / 5, 0.0, -4 * np.pi / 5, 0.0, 3 * np.pi / 5, 0.0])
#: synthetic scaling of DROID's normalized velocity commands (per-step delta at command 1.0)
MAX_JOINT_DELTA, MAX_LIN_DELTA, MAX_ROT_DELTA, MAX_GRIPPER_DELTA = 0.2, 0.075, 0.15, 0.25
SAMPLE_IMAGE_HW = (72, 128)  # DROID's RLDS frames are 180x320 (same 9:16 aspect)
RAW_SAMPLE_IMAGE_HW = (72, 128)  # stands in for HD720 (1280x720)
RAW_SAMPLES_DIR = "droid_raw"
ANNOTATIONS_NAME = "aggregated-annotations-030724.json"
SAMPLE_VERSION = "1.0.1"
SAMPLE_BUILDER = "droid_101"

TASKS = (
    ("put the marker in the cup", "move the marker into the cup", "place the pen inside the mug"),
    ("pick up the red block and place it on the plate", "put the red cube on the plate",
     "move the block onto the dish"),
    ("put the spoon in the bowl", "place the spoon into the bowl", "drop the spoon in the bowl"),
    ("move the sponge to the left side of the sink", "slide the sponge left", "push the sponge to the left"),
)


@dataclass(frozen=True)
class SampleEpisode:
    lab: str
    outcome: str  # success | failure
    when: str  # "%Y-%m-%d %H:%M:%S"
    task: int
    language: tuple[bool, bool, bool] = (True, True, True)  # which instruction slots are filled
    defect: str | None = None


#: defect -> reason the converter must report (``None``: the episode is lost with its shard's tail)
SAMPLE_DEFECTS: dict[str, Reason | None] = {
    "no_language": Reason.MISSING_LANGUAGE,  # RLDS: all three instructions empty
    "nan_action": Reason.NON_FINITE_VALUES,  # teleop glitch: NaN in commanded joint positions
    "bad_jpeg": Reason.IMAGE_DECODE_ERROR,  # one wrist frame is a truncated JPEG
    "lost": None,  # after the point where the shard copy was cut
    "no_metadata": Reason.MISSING_METADATA,  # raw: no metadata_<uuid>.json ("not a valid episode")
    "truncated_mp4": Reason.VIDEO_DECODE_ERROR,  # raw: exterior MP4 cut in half (no moov atom)
    "short_mp4": Reason.FRAME_COUNT_MISMATCH,  # raw: wrist MP4 lost its last frames
    "unannotated": Reason.MISSING_LANGUAGE,  # raw: uuid absent from the annotations file
    "corrupt_h5": Reason.CORRUPT_FILE,  # raw: trajectory.h5 cut to 60 %
}

#: two shards; the second is cut inside its record ``TRUNCATE_AT`` (records before it survive)
RLDS_SAMPLE_SHARDS: tuple[tuple[SampleEpisode, ...], ...] = (
    (
        SampleEpisode("RAIL", "success", "2023-04-17 14:48:05", 0),
        SampleEpisode("RAIL", "failure", "2023-04-17 15:02:41", 1),
        SampleEpisode("IRIS", "success", "2023-05-02 10:11:09", 2, language=(False, True, False)),
        SampleEpisode("IRIS", "success", "2023-05-02 10:20:55", 3, language=(False, False, False),
                      defect="no_language"),
    ),
    (
        SampleEpisode("AUTOLab", "success", "2023-07-07 09:42:23", 1),
        SampleEpisode("AUTOLab", "success", "2023-07-07 09:55:10", 0, defect="nan_action"),
        SampleEpisode("ILIAD", "failure", "2023-08-21 16:30:00", 2, defect="bad_jpeg"),
        SampleEpisode("ILIAD", "success", "2023-08-21 16:41:37", 3, defect="lost"),
        SampleEpisode("ILIAD", "success", "2023-08-21 16:52:02", 0, defect="lost"),
    ),
)
TRUNCATE_SHARD, TRUNCATE_AT = 1, 3

RAW_SAMPLES: tuple[SampleEpisode, ...] = (
    SampleEpisode("RAIL", "success", "2023-06-05 21:44:09", 0),
    SampleEpisode("RAIL", "failure", "2023-06-05 22:01:30", 2, language=(True, False, False)),
    SampleEpisode("GuptaLab", "success", "2023-09-12 11:03:51", 1, language=(True, True, False)),
    SampleEpisode("GuptaLab", "success", "2023-09-12 11:15:00", 3, defect="no_metadata"),
    SampleEpisode("GuptaLab", "success", "2023-09-12 11:27:45", 0, defect="truncated_mp4"),
    SampleEpisode("PennPAL", "success", "2023-10-30 08:05:12", 1, defect="short_mp4"),
    SampleEpisode("PennPAL", "failure", "2023-10-30 08:19:40", 2, defect="unannotated"),
    SampleEpisode("PennPAL", "success", "2023-10-30 08:33:03", 3, defect="corrupt_h5"),
)


def _folder_name(when: datetime) -> str:
    """DROID's trajectory folder name, e.g. ``Mon_Apr_17_14:48:05_2023`` (day padded with '_')."""
    day = f"_{when.day}" if when.day < 10 else str(when.day)
    return f"{when:%a}_{when:%b}_{day}_{when:%H:%M:%S}_{when.year}"


def _sample_path(ep: SampleEpisode) -> str:
    when = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S")
    return f"{ep.lab}/{ep.outcome}/{when:%Y-%m-%d}/{_folder_name(when)}"


def _instructions(ep: SampleEpisode) -> list[str]:
    return [text if filled else "" for text, filled in zip(TASKS[ep.task], ep.language)]


# -- kinematics -------------------------------------------------------------------------

#: Franka Panda modified-DH parameters (a, d, alpha) for joints 1..7 and the flange
_PANDA_DH = (
    (0.0, 0.333, 0.0), (0.0, 0.0, -np.pi / 2), (0.0, 0.316, np.pi / 2), (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2), (0.0, 0.0, np.pi / 2), (0.088, 0.0, np.pi / 2), (0.0, 0.107, 0.0),
)
_TCP_OFFSET = 0.1034  # flange to fingertip centre along the tool z axis


def panda_fk(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tool-centre position [T,3] and rotation [T,3,3] in the robot base frame."""
    q = np.atleast_2d(q)
    n = len(q)
    transform = np.tile(np.eye(4), (n, 1, 1))
    for j, (a, d, alpha) in enumerate(_PANDA_DH):
        theta = q[:, j] if j < 7 else np.zeros(n)
        ca, sa = np.cos(alpha), np.sin(alpha)
        ct, st = np.cos(theta), np.sin(theta)
        link = np.zeros((n, 4, 4))
        link[:, 0, 0], link[:, 0, 1], link[:, 0, 3] = ct, -st, a
        link[:, 1, 0], link[:, 1, 1], link[:, 1, 2], link[:, 1, 3] = st * ca, ct * ca, -sa, -sa * d
        link[:, 2, 0], link[:, 2, 1], link[:, 2, 2], link[:, 2, 3] = st * sa, ct * sa, ca, ca * d
        link[:, 3, 3] = 1.0
        transform = transform @ link
    rot = transform[:, :3, :3]
    pos = transform[:, :3, 3] + _TCP_OFFSET * rot[:, :, 2]
    return pos, rot


def euler_xyz(rot: np.ndarray) -> np.ndarray:
    """Extrinsic x-y-z Euler angles (scipy ``as_euler("xyz")``, DROID's convention) of [T,3,3]."""
    roll = np.arctan2(rot[:, 2, 1], rot[:, 2, 2])
    pitch = np.arctan2(-rot[:, 2, 0], np.hypot(rot[:, 2, 1], rot[:, 2, 2]))
    yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    return np.stack([roll, pitch, yaw], axis=1)


@dataclass
class Trajectory:
    """One synthetic pick-and-place, every DROID stream derived from the joint path."""

    joints: np.ndarray  # [T,7]
    gripper: np.ndarray  # [T] measured, 0 open .. 1 closed
    gripper_cmd: np.ndarray  # [T] commanded
    ee: np.ndarray  # [T,6] xyz + euler xyz
    rot: np.ndarray  # [T,3,3]
    obj: np.ndarray  # [T,3] object position (follows the tool while grasped)
    success: bool

    @property
    def num_frames(self) -> int:
        return len(self.joints)

    def action_dict(self) -> dict[str, np.ndarray]:
        """The commanded streams, as DROID's controller derives them (velocities normalized to [-1, 1])."""
        nxt = np.concatenate([self.joints[1:], self.joints[-1:]])
        ee_next = np.concatenate([self.ee[1:], self.ee[-1:]])
        twist = ee_next - self.ee
        twist[:, 3:] = (twist[:, 3:] + np.pi) % (2 * np.pi) - np.pi
        scale = np.array([MAX_LIN_DELTA] * 3 + [MAX_ROT_DELTA] * 3)
        return {
            "joint_position": nxt,
            "joint_velocity": np.clip((nxt - self.joints) / MAX_JOINT_DELTA, -1, 1),
            "cartesian_position": ee_next,
            "cartesian_velocity": np.clip(twist / scale, -1, 1),
            "gripper_position": self.gripper_cmd[:, None],
            "gripper_velocity": np.clip((self.gripper_cmd - self.gripper) / MAX_GRIPPER_DELTA, -1, 1)[:, None],
        }


def sample_trajectory(rng: np.random.Generator, num_frames: int, success: bool = True) -> Trajectory:
    """Idle start, reach, descend, grasp, a still hold, transport, release, retreat, idle end.

    A failure lets the object slip out during transport: the fingers close fully on nothing
    and the object drops to the table.
    """
    idle = int(round(num_frames * rng.uniform(0.10, 0.18)))
    tail = int(round(num_frames * rng.uniform(0.05, 0.10)))
    phases = rng.dirichlet([3.0, 1.5, 1.0, 1.0, 3.0, 1.0, 2.0])  # reach, descend, close, hold, move, open, retreat
    phases[3] = max(phases[3], 0.12)  # the hold is a real static stretch
    phases /= phases.sum()
    moving = num_frames - 1 - idle - tail
    steps = np.maximum(2, np.round(phases * moving).astype(int))
    steps[-1] = max(2, moving - int(steps[:-1].sum()))
    spread = np.array([1.0, 0.5, 1.0, 0.4, 1.0, 0.4, 1.0])
    above = HOME + rng.uniform(-0.35, 0.35, 7) * spread
    grasp = above + np.array([0.0, 0.3, 0.0, 0.2, 0.0, -0.1, 0.0])  # lower the tool
    place = HOME + rng.uniform(-0.35, 0.35, 7) * spread
    retreat = HOME + rng.uniform(-0.08, 0.08, 7)
    closed = rng.uniform(0.72, 0.85)  # the fingers stop on the object before 1.0
    carry = closed if success else 1.0
    knots = [  # (joints, measured gripper, commanded gripper) at the end of each phase
        (above, 0.0, 0.0), (grasp, 0.0, 0.0), (grasp, closed, 1.0), (grasp, closed, 1.0),
        (place, carry, 1.0), (place, 0.0, 0.0), (retreat, 0.0, 0.0),
    ]
    rows = [np.repeat(np.append(HOME, [0.0, 0.0])[None], idle + 1, axis=0)]
    for (q, g, cmd), n in zip(knots, steps):
        segment = min_jerk(rows[-1][-1], np.append(q, [g, cmd]), int(n))
        segment[:, 8] = cmd  # commands switch at once, the measured gripper follows smoothly
        rows.append(segment)
    rows.append(np.repeat(rows[-1][-1:], tail, axis=0))
    path = np.concatenate(rows)[:num_frames]
    joints, gripper, gripper_cmd = path[:, :7], np.clip(path[:, 7], 0.0, 1.0), path[:, 8]
    pos, rot = panda_fk(joints)
    ee = np.concatenate([pos, euler_xyz(rot)], axis=1)

    ends = idle + np.cumsum(steps)  # frame index at the end of each phase
    grasped, released = int(ends[2]), int(ends[4]) if success else int(ends[3] + steps[4] // 3)
    grasped, released = min(grasped, num_frames - 1), min(released, num_frames - 1)
    below = np.array([0.0, 0.0, 0.02])
    obj = np.repeat((pos[int(ends[1])] - below)[None], num_frames, axis=0)
    obj[grasped:released] = pos[grasped:released] - below
    dropped = pos[released] - below
    dropped[2] = obj[0, 2]  # back on the table
    obj[released:] = dropped
    return Trajectory(joints, gripper, gripper_cmd, ee, rot, obj, success)


# -- rendering --------------------------------------------------------------------------

#: exterior cameras: (position, look-at) in the robot base frame, left and right of the table
_EXTERIOR_VIEWS = {
    "exterior_image_1_left": (np.array([0.35, 0.7, 0.5]), np.array([0.4, 0.0, 0.4])),
    "exterior_image_2_left": (np.array([0.2, -0.65, 0.55]), np.array([0.42, 0.0, 0.4])),
}


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])  # rows: camera x (right), y (down), z (forward)


def render_camera(camera: str, traj: Trajectory, t: int, hw: tuple[int, int]) -> np.ndarray:
    """One RGB frame of a toy scene driven by the state: same state, same pixels."""
    h, w = hw
    img = _background(h, w, camera).copy()
    focal = 0.9 * w
    grip_open = 1.0 - traj.gripper[t]

    def project(points: np.ndarray, eye: np.ndarray, rows: np.ndarray):
        cam = (points - eye) @ rows.T
        z = np.maximum(cam[..., 2], 1e-3)
        return w / 2 + focal * cam[..., 0] / z, h / 2 + focal * cam[..., 1] / z, z

    if camera in _EXTERIOR_VIEWS:
        eye, target = _EXTERIOR_VIEWS[camera]
        rows = _look_at(eye, target)
        tool, obj = traj.ee[t, :3], traj.obj[t]
        base_u, base_v, _ = project(np.array([0.0, 0.0, 0.35]), eye, rows)
        tool_u, tool_v, tool_z = project(tool, eye, rows)
        obj_u, obj_v, obj_z = project(obj, eye, rows)
        segment(img, base_u, base_v, tool_u, tool_v, 0.035 * focal / tool_z, (235, 235, 230), stepwise=True)
        disc(img, obj_u, obj_v, 0.03 * focal / obj_z, (200, 40, 40), stepwise=True)
        side = traj.rot[t, :, 1] * (0.01 + 0.04 * grip_open)
        for sign in (-1, 1):
            fu, fv, fz = project(tool + sign * side, eye, rows)
            disc(img, fu, fv, 0.012 * focal / fz, (60, 60, 60), stepwise=True)
    else:  # wrist camera: looks along the tool axis, fingers at the bottom of the image
        rows = traj.rot[t].T  # base -> tool frame
        eye = traj.ee[t, :3] - 0.15 * traj.rot[t, :, 2]
        obj_u, obj_v, obj_z = project(traj.obj[t], eye, rows)
        if obj_z > 0.05:
            disc(img, obj_u, obj_v, min(0.02 * focal / obj_z, w), (200, 40, 40), stepwise=True)
        gap = w * (0.06 + 0.2 * grip_open)
        for x0 in (w / 2 - gap - w * 0.08, w / 2 + gap):
            box(img, x0, h * 0.78, x0 + w * 0.08, h, (70, 70, 70))
    return np.clip(img, 0, 255).astype(np.uint8)


#: the table and wall behind the toy robot
BACKDROP = Backdrop(wall=(180, 182, 190), table=(135, 110, 80), horizon=0.3, slope=50.0, edge=(95, 85, 75),
                    edge_end=0.32, seam_top=0.35, seam_spacing=(8, 10), seam_shade=0.92, tint_levels=5, tint_step=8.0)


@functools.lru_cache(maxsize=16)
def _background(h: int, w: int, camera: str) -> np.ndarray:
    img = BACKDROP.render(h, w, camera_tint(camera))
    img.flags.writeable = False
    return img


# -- RLDS writer ------------------------------------------------------------------------


def droid_features(image_hw: tuple[int, int], *, release: str = SAMPLE_VERSION):
    """DROID's TFDS FeaturesDict (official schema; 1.0.1 adds the episode-metadata fields)."""
    load_tensorflow()  # its image encoder is TensorFlow's: import it with logging and devices set up
    tfds = load_tfds()
    f = tfds.features

    def image(doc):
        return f.Image(shape=(*image_hw, 3), dtype=np.uint8, encoding_format="jpeg", doc=doc)

    def vec(n, doc):
        return f.Tensor(shape=(n,), dtype=np.float64, doc=doc)

    metadata = {
        "file_path": f.Text(doc="Path to the original data file."),
        "recording_folderpath": f.Text(doc="Path to the folder of recordings."),
    }
    if release != "1.0.0":
        metadata.update({
            "building": f.Text(doc="Building name."),
            "collector_id": f.Text(doc="Data collector id."),
            "date": f.Text(doc="Collection date."),
            "scene_id": f.Scalar(dtype=np.int64, doc="Scene id."),
            "task_category": f.Text(doc="Task category."),
            "extrinsics_wrist_cam": vec(6, "Wrist camera extrinsics: xyz + euler xyz."),
            "extrinsics_exterior_cam_1": vec(6, "Exterior camera 1 extrinsics: xyz + euler xyz."),
            "extrinsics_exterior_cam_2": vec(6, "Exterior camera 2 extrinsics: xyz + euler xyz."),
        })
    return f.FeaturesDict({
        "steps": f.Dataset({
            "is_first": f.Scalar(dtype=np.bool_, doc="True on first step of the episode."),
            "is_last": f.Scalar(dtype=np.bool_, doc="True on last step of the episode."),
            "is_terminal": f.Scalar(dtype=np.bool_, doc="True on last step of the episode if it is a terminal step."),
            "language_instruction": f.Text(doc="Language instruction."),
            "language_instruction_2": f.Text(doc="Alternative language instruction."),
            "language_instruction_3": f.Text(doc="Alternative language instruction."),
            "observation": f.FeaturesDict({
                "gripper_position": vec(1, "Gripper position state."),
                "cartesian_position": vec(6, "Robot Cartesian state."),
                "joint_position": vec(7, "Joint position state."),
                "wrist_image_left": image("Wrist camera RGB left viewpoint."),
                "exterior_image_1_left": image("Exterior camera 1 left viewpoint."),
                "exterior_image_2_left": image("Exterior camera 2 left viewpoint."),
            }),
            "action_dict": f.FeaturesDict({
                "gripper_position": vec(1, "Commanded gripper position."),
                "gripper_velocity": vec(1, "Commanded gripper velocity."),
                "cartesian_position": vec(6, "Commanded Cartesian position."),
                "cartesian_velocity": vec(6, "Commanded Cartesian velocity."),
                "joint_position": vec(7, "Commanded joint position."),
                "joint_velocity": vec(7, "Commanded joint velocity."),
            }),
            "discount": f.Scalar(dtype=np.float32, doc="Discount if provided, default to 1."),
            "reward": f.Scalar(dtype=np.float32, doc="Reward if provided, 1 on final step for demos."),
            "action": vec(7, "Robot action, consists of [6x joint velocities, 1x gripper position]."),
        }),
        "episode_metadata": f.FeaturesDict(metadata),
    })


def _extrinsics(rng: np.random.Generator) -> dict[str, list[float]]:
    out = {}
    for key, (eye, target) in zip(("ext1", "ext2"), _EXTERIOR_VIEWS.values()):
        rows = _look_at(eye, target)
        out[key] = [*eye.tolist(), *euler_xyz(rows.T[None])[0].tolist()]
    out["wrist"] = [0.0, -0.06, 0.04 + float(rng.uniform(0, 0.01)), 0.0, 0.0, -np.pi / 2]
    return out


def rlds_episode(features, ep: SampleEpisode, traj: Trajectory, rng, *, file_root: str, release: str) -> dict:
    """One episode as TFDS's ``serialize_example`` takes it; frames go in as JPEG bytes that the
    features' own encoder produced (same bytes as passing arrays, without holding decoded frames)."""
    n = traj.num_frames
    observation = features["steps"].feature["observation"]
    images = {}
    for cam in CAMERAS:
        key = cam.rlds.split("/", 1)[1]
        hw = observation[key].shape[:2]
        images[key] = [observation[key].encode_example(render_camera(cam.name, traj, t, hw)) for t in range(n)]
    if ep.defect == "bad_jpeg":
        blob = images["wrist_image_left"][n // 2]
        images["wrist_image_left"][n // 2] = blob[: len(blob) // 2]
    actions = traj.action_dict()
    if ep.defect == "nan_action":
        actions["joint_position"][n // 2: n // 2 + 3, 3] = np.nan
    texts = _instructions(ep)
    path = f"{file_root}/{_sample_path(ep)}"
    steps = {
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
        "is_terminal": np.arange(n) == n - 1,
        "language_instruction": [texts[0]] * n,
        "language_instruction_2": [texts[1]] * n,
        "language_instruction_3": [texts[2]] * n,
        "observation": {
            "gripper_position": traj.gripper[:, None],
            "cartesian_position": traj.ee,
            "joint_position": traj.joints,
            **images,
        },
        "action_dict": actions,
        "discount": np.ones(n, np.float32),
        "reward": ((np.arange(n) == n - 1) & traj.success).astype(np.float32),
        "action": np.concatenate([actions["cartesian_velocity"], actions["gripper_position"]], axis=1),
    }
    metadata = {"file_path": f"{path}/trajectory.h5", "recording_folderpath": f"{path}/recordings/MP4"}
    if release != "1.0.0":
        when = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S")
        ext = _extrinsics(rng)
        metadata.update({
            "building": f"{ep.lab}-building-{ep.task % 2}",
            "collector_id": f"{int(rng.integers(0, 2**32)):08x}",
            "date": f"{when:%Y-%m-%d}",
            "scene_id": int(rng.integers(1, 10_000)),
            "task_category": ("Move object into or out of container", "Move object")[ep.task % 2],
            "extrinsics_wrist_cam": np.array(ext["wrist"]),
            "extrinsics_exterior_cam_1": np.array(ext["ext1"]),
            "extrinsics_exterior_cam_2": np.array(ext["ext2"]),
        })
    return {"steps": steps, "episode_metadata": metadata}


def write_rlds(
    version_dir: Path,
    shards: list[list[dict]],
    *,
    features,
    builder: str = SAMPLE_BUILDER,
    split: str = "train",
) -> list[Path]:
    """Serialize episodes with TFDS, write TFRecord shards with TensorFlow, and let TFDS write
    ``dataset_info.json`` / ``features.json``.

    ``tf.train.Example`` maps are re-serialized with sorted keys (``deterministic=True``):
    protobuf's map order is otherwise random per process, the only thing that kept two
    runs from being byte-identical. Readers are order-agnostic.
    """
    tf, tfds = load_tensorflow(), load_tfds()
    version_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, episodes in enumerate(shards):
        path = version_dir / f"{builder}-{split}.tfrecord-{index:05d}-of-{len(shards):05d}"
        with tf.io.TFRecordWriter(os.fspath(path)) as writer:
            for i in range(len(episodes)):
                episode = episodes[i]() if callable(episodes[i]) else episodes[i]
                example = tf.train.Example.FromString(features.serialize_example(episode))
                del episode  # keep at most two copies of a long episode alive
                writer.write(example.SerializeToString(deterministic=True))
                del example
        paths.append(path)
    split_info = tfds.core.SplitInfo(
        name=split,
        shard_lengths=[len(s) for s in shards],
        num_bytes=sum(p.stat().st_size for p in paths),
        filename_template=None,
    )
    tfds.folder_dataset.write_metadata(
        data_dir=version_dir,
        features=features,
        split_infos=[split_info],
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        check_data=False,
        description="Synthetic DROID-layout sample (a1pipe); not real robot data.",
        homepage="https://droid-dataset.github.io/",
    )
    return paths


# -- raw writer -------------------------------------------------------------------------


def write_mp4(path: Path, frames, size_hw: tuple[int, int], fps: float = CONTROL_HZ) -> None:
    """MPEG-4 Part 2 (``mp4v``, the codec DROID's svo2mp4 writes through OpenCV/FFmpeg), bit-exact."""
    # fixed quantiser (ffmpeg -q:v 4): global_quality is in lambda units (FF_QP2LAMBDA = 118)
    toolkit.write_mp4(path, frames, "mpeg4", fps, *size_hw, options={"flags": "+qscale", "global_quality": "472"},
                      container_options={"fflags": "+bitexact"}, threads=1, bitexact=True)


def _write_trajectory_h5(path: Path, traj: Trajectory, ep: SampleEpisode, serials: dict[str, str], rng, t0_ms: int):
    """``trajectory.h5`` as DROID's TrajectoryWriter lays it out: resizable [T, ...] datasets per key."""
    n = traj.num_frames
    actions = traj.action_dict()
    ext = _extrinsics(rng)
    step_ms = t0_ms + np.round(np.arange(n) * 1000 / CONTROL_HZ + rng.uniform(-3, 3, n)).astype(np.int64)
    data: dict[str, np.ndarray] = {
        **{f"action/{k}": (v[:, 0] if v.shape[1] == 1 else v) for k, v in actions.items()},
        "action/target_cartesian_position": actions["cartesian_position"],
        "action/target_gripper_position": actions["gripper_position"][:, 0],
        "observation/robot_state/cartesian_position": traj.ee,
        "observation/robot_state/gripper_position": traj.gripper,
        "observation/robot_state/joint_positions": traj.joints,
        "observation/robot_state/joint_velocities": np.gradient(traj.joints, axis=0) * CONTROL_HZ,
        "observation/robot_state/joint_torques_computed": 5.0 * np.sin(traj.joints),
        "observation/robot_state/motor_torques_measured": 5.0 * np.sin(traj.joints) + rng.normal(0, 0.05, (n, 7)),
        "observation/robot_state/prev_controller_latency_ms": rng.uniform(0.5, 2.0, n),
        "observation/robot_state/prev_command_successful": np.ones(n, bool),
        "observation/controller_info/controller_on": np.ones(n, bool),
        "observation/controller_info/movement_enabled": np.arange(n) > 2,
        "observation/controller_info/success": (np.arange(n) == n - 1) & traj.success,
        "observation/controller_info/failure": (np.arange(n) == n - 1) & ~traj.success,
        "observation/timestamp/skip_action": np.zeros(n, bool),
        "observation/timestamp/control/control_start": step_ms - 2,
        "observation/timestamp/control/policy_start": step_ms + 1,
        "observation/timestamp/control/sleep_start": step_ms + 30,
        "observation/timestamp/control/step_start": step_ms,
        "observation/timestamp/control/step_end": step_ms + 66,
        "observation/timestamp/robot_state/read_start": step_ms + 3,
        "observation/timestamp/robot_state/read_end": step_ms + 4,
        "observation/timestamp/robot_state/robot_timestamp_seconds": (step_ms + 3) // 1000,
        "observation/timestamp/robot_state/robot_timestamp_nanos": ((step_ms + 3) % 1000) * 1_000_000,
    }
    for role, serial in serials.items():
        data[f"observation/camera_type/{serial}"] = np.full(n, 0 if role == "wrist" else 1, np.int64)
        for eye in ("left", "right"):
            data[f"observation/camera_extrinsics/{serial}_{eye}"] = np.repeat(np.array(ext[role])[None], n, axis=0)
        for clock, offset in (("estimated_capture", 5), ("frame_received", 12), ("read_start", 10), ("read_end", 14)):
            data[f"observation/timestamp/cameras/{serial}_{clock}"] = step_ms + offset
    with h5py.File(path, "w") as f:
        for key in sorted(data):
            value = np.asarray(data[key])
            f.create_dataset(key, data=value, maxshape=(None, *value.shape[1:]), track_times=False)
        f.attrs["building"] = f"{ep.lab}-building"
        f.attrs["scene_id"] = int(rng.integers(1, 10_000))
        f.attrs["user"] = "Synthetic Collector"
        f.attrs["current_task"] = TASKS[ep.task][0]
        f.attrs["success"] = traj.success
        f.attrs["failure"] = not traj.success
        f.attrs["robot_serial_number"] = f"{ep.lab.lower()}-panda-1"
        f.attrs["time"] = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S").strftime("%a_%b_%d_%H:%M:%S_%Y")
        f.attrs["version_number"] = "1.3"
        f.attrs["timesteps"] = n


def _write_raw_episode(base: Path, ep: SampleEpisode, seed: int, index: int) -> tuple[str, str]:
    """One raw trajectory folder; returns (folder relative to ``base``, uuid)."""
    rng = np.random.default_rng([seed, 2, index])
    rel = _sample_path(ep)
    folder = base / rel
    folder.mkdir(parents=True, exist_ok=True)
    traj = sample_trajectory(rng, int(rng.integers(45, 76)), success=ep.outcome == "success")
    serials = {role: str(int(rng.integers(10_000_000, 40_000_000))) for role in ("ext1", "ext2", "wrist")}
    serials["ext1"], serials["ext2"] = sorted([serials["ext1"], serials["ext2"]])  # ext1/ext2 by sorted serial
    when = datetime.strptime(ep.when, "%Y-%m-%d %H:%M:%S")
    t0_ms = int((when - datetime(1970, 1, 1)).total_seconds() * 1000)
    _write_trajectory_h5(folder / RAW_TRAJECTORY, traj, ep, serials, rng, t0_ms)
    for cam in CAMERAS:
        serial = serials[cam.raw_role]
        n = traj.num_frames - (4 if ep.defect == "short_mp4" and cam.raw_role == "wrist" else 0)
        video = folder / RAW_MP4_DIR / f"{serial}.mp4"
        write_mp4(video, (render_camera(cam.name, traj, t, RAW_SAMPLE_IMAGE_HW) for t in range(n)),
                  RAW_SAMPLE_IMAGE_HW)
        if ep.defect == "truncated_mp4" and cam.raw_role == "ext2":
            video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    user_id = f"{int(rng.integers(0, 2**32)):08x}"
    uuid = f"{ep.lab}+{user_id}+{when:%Y-%m-%d-%Hh-%Mm-%Ss}"
    if ep.defect != "no_metadata":
        ext = _extrinsics(np.random.default_rng([seed, 3, index]))
        mp4_dir = f"{ep.outcome}/{when:%Y-%m-%d}/{_folder_name(when)}/{RAW_MP4_DIR}"
        record = {
            "uuid": uuid, "lab": ep.lab, "user": "Synthetic Collector", "user_id": user_id,
            "date": f"{when:%Y-%m-%d}", "timestamp": f"{when:%Y-%m-%d-%Hh-%Mm-%Ss}",
            "hdf5_path": f"{ep.outcome}/{when:%Y-%m-%d}/{_folder_name(when)}/{RAW_TRAJECTORY}",
            "building": f"{ep.lab}-building", "scene_id": int(rng.integers(1, 10_000)),
            "success": ep.outcome == "success", "robot_serial": f"{ep.lab.lower()}-panda-1", "droid_version": "1.3",
            "current_task": TASKS[ep.task][0], "trajectory_length": traj.num_frames,
            **{f"{role}_cam_serial": serials[role] for role in ("wrist", "ext1", "ext2")},
            **{f"{role}_cam_extrinsics": ext[role] for role in ("wrist", "ext1", "ext2")},
            **{f"{role}_mp4_path": f"{mp4_dir}/{serials[role]}.mp4" for role in ("wrist", "ext1", "ext2")},
            **{f"{role}_svo_path": f"{mp4_dir[:-3]}SVO/{serials[role]}.svo" for role in ("wrist", "ext1", "ext2")},
            "left_mp4_path": f"{mp4_dir}/{serials['ext1']}.mp4", "right_mp4_path": f"{mp4_dir}/{serials['ext2']}.mp4",
        }
        (folder / f"metadata_{uuid}.json").write_text(json.dumps(record), encoding="utf-8")
    if ep.defect == "corrupt_h5":
        h5_path = folder / RAW_TRAJECTORY
        h5_path.write_bytes(h5_path.read_bytes()[: h5_path.stat().st_size * 6 // 10])
    return rel, uuid


# -- entry points -----------------------------------------------------------------------


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, str | None]:
    """``out_dir/1.0.1/`` (RLDS) and ``out_dir/droid_raw/`` (raw); returns ref -> expected reason."""
    expected: dict[str, str | None] = {}
    version_dir = out_dir / SAMPLE_VERSION
    features = droid_features(SAMPLE_IMAGE_HW)
    shards: list[list] = []
    for s, episodes in enumerate(RLDS_SAMPLE_SHARDS):
        shard = []
        for e, ep in enumerate(episodes):
            rng = np.random.default_rng([seed, 1, s, e])
            traj = sample_trajectory(rng, int(rng.integers(40, 71)), success=ep.outcome == "success")
            root = ("gs://xembodiment_data/r2d2/r2d2-data-full", "/nfs/data/r2d2-data-full")[e % 2]
            shard.append(rlds_episode(features, ep, traj, rng, file_root=root, release=SAMPLE_VERSION))
            reason = SAMPLE_DEFECTS[ep.defect] if ep.defect else None
            if ep.defect != "lost":
                expected[f"{SAMPLE_VERSION}/{_sample_path(ep)}"] = reason.value if reason else None
        shards.append(shard)
    paths = write_rlds(version_dir, shards, features=features)
    _truncate_shard(paths[TRUNCATE_SHARD], TRUNCATE_AT)
    expected[paths[TRUNCATE_SHARD].relative_to(out_dir).as_posix()] = Reason.CORRUPT_FILE.value

    base = out_dir / RAW_SAMPLES_DIR
    annotations = {}
    for index, ep in enumerate(RAW_SAMPLES):
        rel, uuid = _write_raw_episode(base, ep, seed, index)
        if ep.defect != "unannotated":
            texts = _instructions(ep)
            annotations[uuid] = {key: text for (_, key), text in zip(LANGUAGE_KEYS, texts) if text}
        reason = SAMPLE_DEFECTS[ep.defect] if ep.defect else None
        expected[f"{RAW_SAMPLES_DIR}/{rel}"] = reason.value if reason else None
    (base / ANNOTATIONS_NAME).write_text(json.dumps(annotations, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return expected


def _truncate_shard(path: Path, record: int) -> None:
    """Cut a TFRecord file in the middle of record ``record`` (records before it stay intact)."""
    data = path.read_bytes()
    offset = 0
    for _ in range(record):
        length = int.from_bytes(data[offset: offset + 8], "little")
        offset += 8 + 4 + length + 4
    length = int.from_bytes(data[offset: offset + 8], "little")
    path.write_bytes(data[: offset + 12 + length // 2])


def write_synthetic(out_dir: Path, *, episodes: int, frames: int, height: int, width: int, seed: int = 0) -> None:
    """``episodes`` valid RLDS episodes of ``frames`` steps at ``height x width``, one shard per episode
    (up to 64 shards, then several episodes per shard). Episodes are built one at a time."""
    features = droid_features((height, width))
    num_shards = max(1, min(episodes, 64))
    per_shard = [len(range(s, episodes, num_shards)) for s in range(num_shards)]
    start = datetime(2024, 1, 1, 9, 0, 0)

    def make(index: int):
        def build():
            rng = np.random.default_rng([seed, 9, index])
            when = start + timedelta(minutes=7 * index)
            ep = SampleEpisode(("RAIL", "AUTOLab", "IRIS", "ILIAD")[index % 4], "success",
                               when.strftime("%Y-%m-%d %H:%M:%S"), index % len(TASKS))
            traj = sample_trajectory(rng, frames)
            return rlds_episode(features, ep, traj, rng, file_root="/synthetic/r2d2-data-full", release=SAMPLE_VERSION)
        return build

    shards, index = [], 0
    for count in per_shard:
        shards.append([make(index + i) for i in range(count)])
        index += count
    write_rlds(Path(out_dir) / SAMPLE_VERSION, shards, features=features)
