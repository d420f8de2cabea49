"""RoboChallenge Table30 converter: layout quirks, partial downloads, broken inputs, samples, streaming."""

from __future__ import annotations

import hashlib
import json
import math
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from converters.robochallenge import (
    EMBODIMENT_SPECS,
    ROBOTIQ_2F85_STROKE_M,
    RoboChallengeConverter,
)
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, TimestampOrigin
from pipelines.samples import robochallenge as robochallenge_samples
from pipelines.samples.robochallenge import write_video

HW = (32, 48)  # multiples of 16: libx264 output is byte-identical
T0 = 1_753_167_772.4


# -- native-layout builders (key sets as found in the release's sample episodes) ---------------------


def _ts(n: int, unit: float = 1.0) -> list[float]:
    return [(T0 + i / 30.0) / unit for i in range(n)]


def arx5_lines(n: int, later: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i, t in enumerate(_ts(n)):
        q = [0.01 * i + 0.1 * j for j in range(6)]
        row: dict[str, Any] = {"joint_positions": q, "joint_velocities": [0.3] * 6}
        if later:
            row |= {"effort": [0.5] * 7, "ee_positions": [0.3, 0.0, 0.3, 0.0, 0.2, 0.0, 0.98]}
        else:
            row |= {"end_effector_pose": [0.3, 0.0, 0.3, 0.0, 0.4, 0.0]}
        row |= {"gripper_width": 0.08 - 0.001 * i, "gripper_velocity": -0.03, "timestamp": t}
        rows.append(row)
    return rows


def ur5_lines(n: int, later: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i, t in enumerate(_ts(n)):
        row: dict[str, Any] = {"joint_positions": [0.02 * i, -1.57, -1.57, -1.57, 1.57, 0.06],
                               "ee_positions": [-0.49, 0.1, 0.43, 0.73, 0.69, 0.0, 0.0]}
        row |= {"gripper_width": 0.085} if later else {"gripper": 3 + 10 * i}
        row["timestamp"] = t
        rows.append(row)
    return rows


def franka_lines(n: int) -> list[dict[str, Any]]:
    return [
        {"joint_positions": [0.0, -0.78, 0.0, -2.75, 0.0, 1.96, 0.01 * i],
         "ee_positions": [0.3 + 0.01 * i, 0.0, 0.43, 1.0, 0.0, 0.0, 0.0],
         "gripper": [1.0 if i > 2 else 0.0, 0.0], "gripper_width": [0.085 - 0.005 * i], "timestamp": t}
        for i, t in enumerate(_ts(n))
    ]


def aloha_arm_lines(n: int, side: int, later: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i, t in enumerate(_ts(n)):
        q = [0.01 * i * (side + 1)] * 6
        if later:
            row = {"joint_positions": q, "joint_velocities": [0.0] * 7, "gripper_width": 0.05, "qpos": q,
                   "ee_positions": [0.05, 0.0, 0.2, 0.0, 0.7, 0.0, 0.7], "effort": [0.1] * 7,
                   "master_effort": [0.0] * 7, "master_qpos": q + [0.05], "timestamp": t}
        else:
            row = {"joint_positions": q, "joint_vel": [0.0] * 7, "gripper": 0.05 - 0.001 * i, "qpos": q,
                   "ee_pose_quaternion": [0.05, 0.0, 0.2, 0.0, 0.7, 0.0, 0.7],
                   "ee_pose_rpy": [0.05, 0.0, 0.2, 1.1, 1.4, 1.0], "timestamp": t}
        rows.append(row)
    return rows


VIDEOS = {
    "arx5": ("arm_realsense_rgb", "global_realsense_rgb", "right_realsense_rgb"),
    "arx5_later": ("cam_arm_rgb", "cam_global_rgb", "cam_side_rgb"),
    "ur5": ("handeye_realsense_rgb", "global_realsense_rgb"),
    "ur5_later": ("cam_arm_rgb", "cam_global_rgb"),
    "franka": ("handeye_realsense_rgb", "main_realsense_rgb", "side_realsense_rgb"),
    "aloha": ("cam_high_rgb", "cam_wrist_left_rgb", "cam_wrist_right_rgb"),
    "aloha_later": ("cam_high_rgb", "cam_left_wrist_rgb", "cam_right_wrist_rgb"),
}


def colour_frames(n: int, seed: int = 0):
    for i in range(n):
        frame = np.zeros((*HW, 3), np.uint8)
        frame[..., 0] = (40 + 7 * i + seed) % 256
        frame[: HW[0] // 2, :, 1] = 200
        yield frame


def write_states(ep: Path, lines: dict[str, list[dict[str, Any]]]) -> None:
    (ep / "states").mkdir(parents=True, exist_ok=True)
    for arm, rows in lines.items():
        name = "states.jsonl" if arm == "" else f"{arm}_states.jsonl"
        (ep / "states" / name).write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))


def make_episode(
    root: Path,
    lines: dict[str, list[dict[str, Any]]],
    videos: tuple[str, ...] | dict[str, int],
    *,
    task: str = "stack_bowls",
    episode: str = "episode_000000",
    task_info: dict[str, Any] | None | str = "default",
    episode_meta: dict[str, Any] | None | str = "default",
    task_desc: Any = None,
) -> str:
    task_dir = root / task
    ep = task_dir / "data" / episode
    ep.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(lines.values())))
    if task_info == "default":
        task_info = {"task_desc": {"task_name": task, "prompt": "stack the bowls"}, "video_info": {"fps": 30}}
    if task_info is not None:
        (task_dir / "meta").mkdir(parents=True, exist_ok=True)
        text = task_info if isinstance(task_info, str) else json.dumps(task_info, indent=4)
        (task_dir / "meta" / "task_info.json").write_text(text)
    if task_desc is not None:
        (task_dir / "task_desc.json").write_text(json.dumps(task_desc))
    if episode_meta == "default":
        episode_meta = {"episode_index": 0, "start_time": T0 - 0.03, "end_time": T0 + n / 30, "frames": n}
    if episode_meta is not None:
        (ep / "meta").mkdir(parents=True, exist_ok=True)
        text = episode_meta if isinstance(episode_meta, str) else json.dumps(episode_meta, indent=4)
        (ep / "meta" / "episode_meta.json").write_text(text)
    write_states(ep, lines)
    (ep / "videos").mkdir(exist_ok=True)
    counts = videos if isinstance(videos, dict) else {v: n for v in videos}
    for k, (stem, count) in enumerate(counts.items()):
        write_video(ep / "videos" / f"{stem}.mp4", colour_frames(count, 30 * k), HW, "yuv420p", {})
    return f"{task}/data/{episode}"


def read_all(conv: RoboChallengeConverter, ref: str):
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        frames = {name: np.stack(list(cam.open_frames())) for name, cam in ep.cameras.items()}
    return ep, frames


def reason_of(conv: RoboChallengeConverter, ref: str) -> Reason | None:
    try:
        read_all(conv, ref)
    except EpisodeError as exc:
        return exc.reason
    return None


def error_of(conv: RoboChallengeConverter, ref: str) -> EpisodeError:
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    return info.value


# -- embodiments, state/action mapping and quirks ----------------------------------------------------


def test_arx5_joint_state_and_next_state_action(tmp_path):
    ref = make_episode(tmp_path, {"": arx5_lines(12)}, VIDEOS["arx5"],
                       task_info={"robot_id": "arx5_1", "task_desc": {"prompt": "stack the bowls", "task_tag": ["t"]},
                                  "video_info": {"fps": 30, "width": 48, "height": 32}})
    ep, frames = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.source == "robochallenge" and ep.embodiment == "arx5" and ep.robot_type == "arx5"
    assert ep.state_names == [f"joint{i}" for i in range(1, 7)] + ["gripper"] == ep.action_names
    assert ep.action_kind is ActionKind.NEXT_STATE and ep.timestamp_origin is TimestampOrigin.RECORDED
    np.testing.assert_array_equal(ep.action[:-1], ep.state[1:])  # action = next frame's state
    np.testing.assert_array_equal(ep.action[-1], ep.state[-1])  # last frame holds its position
    assert ep.extras["action_padded"][:, 0].tolist() == [False] * 11 + [True]
    assert ep.state[0, -1] == pytest.approx(0.08) and ep.state[:, -1].dtype == np.float32
    assert set(frames) == {"cam_global", "cam_wrist", "cam_side"} and frames["cam_global"].shape == (12, *HW, 3)
    assert set(ep.extras) == {"action_padded", "joint_vel", "ee_pose_rpy", "gripper_vel"}
    assert ep.extra_names["ee_pose_rpy"] == ["ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw"]
    m = ep.metadata
    assert m["robot_id"] == "arx5_1" and m["embodiment_source"] == "task_info.robot_id"
    assert m["action"] == {"derived_from": "next_state", "control_space": "joint", "last_frame": "hold"}
    assert m["gripper"]["unit"] == "m" and m["gripper"]["source_key"] == "gripper_width"
    assert m["missing_cameras"] == [] and "camera_files" not in m  # provenance lives on the streams
    wrist = ep.cameras["cam_wrist"]
    assert wrist.source_name == "arm_realsense_rgb" and wrist.source_file.endswith("/videos/arm_realsense_rgb.mp4")
    assert m["task_tag"] == ["t"] and m["video_info_size"] == [32, 48] and m["flags"] == []
    json.dumps(m)


def test_ur5_robotiq_gripper_is_converted_to_metres(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(10)}, VIDEOS["ur5"])
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.embodiment == "ur5"
    raw = np.array([3 + 10 * i for i in range(10)], dtype=np.float64)
    np.testing.assert_allclose(ep.state[:, -1], ROBOTIQ_2F85_STROKE_M * (255 - raw) / 255, rtol=1e-6)
    np.testing.assert_array_equal(ep.extras["gripper_raw"][:, 0], raw)  # lossless copy of the register
    assert ep.metadata["gripper"]["source_unit"] == "robotiq_2f85_0_255"
    assert ep.extra_names["ee_pose_quat"] == ["ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw"]


def test_franka_ee_pose_state_episode_idx_and_ffffff_folder(tmp_path):
    meta = {"episode_idx": 80, "start_time": T0, "end_time": T0 + 1, "frames": 9}
    ref = make_episode(tmp_path, {"": franka_lines(9)}, VIDEOS["franka"], task="press_three_buttons",
                       episode="episode_FFFFFF", episode_meta=meta)
    make_episode(tmp_path, {"": franka_lines(9)}, VIDEOS["franka"], task="press_three_buttons",
                 episode="episode_000081", episode_meta=meta | {"episode_idx": 81})
    conv = RoboChallengeConverter(tmp_path)
    assert conv.discover() == ["press_three_buttons/data/episode_000081", ref]  # non-numeric suffix last
    ep, frames = read_all(conv, ref)
    assert ep.embodiment == "franka"
    assert ep.state_names == ["ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw", "gripper"]
    np.testing.assert_allclose(ep.state[:, 0], [0.3 + 0.01 * i for i in range(9)], rtol=1e-6)
    np.testing.assert_allclose(ep.state[:, -1], [0.085 - 0.005 * i for i in range(9)], rtol=1e-6)  # [w] list
    np.testing.assert_array_equal(ep.action[:-1], ep.state[1:])
    assert ep.metadata["action"]["control_space"] == "ee_pose"
    assert ep.metadata["episode_index"] == 80 and ep.metadata["episode_index_key"] == "episode_idx"
    assert ep.metadata["episode_dir"] == "episode_FFFFFF"
    assert ep.extras["joint_positions"].shape == (9, 7) and ep.extras["gripper_raw"].shape == (9, 2)
    assert set(frames) == {"cam_main", "cam_wrist", "cam_side"}


def test_aloha_arms_zipped_by_line_with_left_timestamps(tmp_path):
    left, right = aloha_arm_lines(10, 0), aloha_arm_lines(10, 1)
    for i, row in enumerate(right):
        row["timestamp"] += 0.0012 * (-1) ** i  # the arms' clocks differ slightly
    ref = make_episode(tmp_path, {"left": left, "right": right}, VIDEOS["aloha"],
                       task_info={"robot_id": "aloha_1", "task_desc": {"prompt": "fold the cloth"}})
    ep, frames = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.embodiment == "aloha" and len(ep.state_names) == 14
    assert ep.state_names[:7] == [f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
    assert ep.state_names[7:] == [f"right_joint{i}" for i in range(1, 7)] + ["right_gripper"]
    np.testing.assert_allclose(ep.state[:, 7], [0.02 * i for i in range(10)], rtol=1e-6)
    np.testing.assert_array_equal(ep.timestamp, [r["timestamp"] for r in left])
    assert ep.metadata["arm_timestamp_max_skew_s"] == pytest.approx(0.0012, rel=1e-3)
    assert ep.extra_names["qpos"][0] == "left_qpos1" and ep.extras["joint_vel"].shape == (10, 14)
    assert set(frames) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}


@pytest.mark.parametrize(
    "embodiment, lines, videos",
    [
        ("arx5", lambda n: {"": arx5_lines(n, later=True)}, "arx5_later"),
        ("ur5", lambda n: {"": ur5_lines(n, later=True)}, "ur5_later"),
        ("aloha", lambda n: {"left": aloha_arm_lines(n, 0, True), "right": aloha_arm_lines(n, 1, True)}, "aloha_later"),
    ],
)
def test_later_release_key_and_camera_names(tmp_path, embodiment, lines, videos):
    ref = make_episode(tmp_path, lines(8), VIDEOS[videos], task_info=None,
                       episode_meta={"start_time": T0, "end_time": T0 + 1, "frames": 8,
                                     "robot_id": f"rc_{embodiment}_5",
                                     "features": {"cam_global": {"intrinsics": [], "extrinsics": {}}}})
    ep, frames = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.embodiment == embodiment and ep.state_names == EMBODIMENT_SPECS[embodiment].state_names()
    assert ep.metadata["embodiment_source"] == "episode_meta.robot_id" and ep.metadata["episode_index"] is None
    assert ep.metadata["camera_features"] == {"cam_global": {"intrinsics": [], "extrinsics": {}}}
    assert len(frames) == len(VIDEOS[videos]) and ep.metadata["gripper"]["source_key"] == "gripper_width"
    if embodiment == "aloha":
        assert "leader_qpos" in ep.extras and ep.extras["leader_qpos"].shape == (8, 14)


@pytest.mark.parametrize(
    "lines, expected",
    [
        (lambda: {"": arx5_lines(6)}, "arx5"),
        (lambda: {"": arx5_lines(6, later=True)}, "arx5"),
        (lambda: {"": ur5_lines(6)}, "ur5"),
        (lambda: {"": ur5_lines(6, later=True)}, "ur5"),
        (lambda: {"": franka_lines(6)}, "franka"),
        (lambda: {"left": aloha_arm_lines(6, 0), "right": aloha_arm_lines(6, 1)}, "aloha"),
    ],
)
def test_embodiment_inferred_from_state_keys_without_task_info(tmp_path, lines, expected):
    videos = {"arx5": VIDEOS["arx5"], "ur5": VIDEOS["ur5"], "franka": VIDEOS["franka"], "aloha": VIDEOS["aloha"]}
    ref = make_episode(tmp_path, lines(), videos[expected], task_info=None)
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.embodiment == expected and ep.metadata["embodiment_source"] == "state_keys"
    assert {"task_info_missing", "embodiment_inferred"} <= set(ep.metadata["flags"])


def test_robot_id_tokens(tmp_path):
    conv = RoboChallengeConverter(tmp_path)
    info = lambda rid: {"robot_id": rid, "task_desc": {"prompt": "p"}}  # noqa: E731
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task="a", task_info=info("robot_7"))
    ep, _ = read_all(conv, ref)  # unrecognised id: inferred from keys, id kept
    assert ep.embodiment == "ur5" and ep.metadata["robot_id"] == "robot_7"
    assert "embodiment_inferred" in ep.metadata["flags"]
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task="b", task_info=info("rc_w1_2"))
    assert reason_of(conv, ref) is Reason.UNSUPPORTED_LAYOUT  # DOS-W1 (Table30 v2) is not mapped
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task="c", task_info=info("franka_2"))
    err = error_of(conv, ref)  # the id wins over the keys: a Franka line has gripper_width
    assert err.reason is Reason.MISSING_KEY and "gripper_width" in err.message
    ref = make_episode(tmp_path, {"": franka_lines(5)}, VIDEOS["franka"], task="d", task_info=info("aloha_1"))
    assert reason_of(conv, ref) is Reason.MISSING_FILE  # ALOHA needs left/right state files


def test_unknown_key_signature_is_unsupported(tmp_path):
    lines = [{"joint_positions": [0.0] * 5, "gripper": 0.0, "timestamp": t} for t in _ts(4)]
    ref = make_episode(tmp_path, {"": lines}, VIDEOS["ur5"], task_info=None)
    assert reason_of(RoboChallengeConverter(tmp_path), ref) is Reason.UNSUPPORTED_LAYOUT


@pytest.mark.parametrize("unit,name", [(1e-3, "ms"), (1e-6, "us")])
def test_timestamps_in_milliseconds_or_microseconds_are_detected(tmp_path, unit, name):
    lines = ur5_lines(6)
    for row, t in zip(lines, _ts(6, unit=unit)):
        row["timestamp"] = t
    ref = make_episode(tmp_path, {"": lines}, VIDEOS["ur5"])
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    np.testing.assert_allclose(ep.timestamp, _ts(6), rtol=0, atol=1e-6)
    assert ep.metadata["timestamp"]["unit_detected"] == name and "timestamps_rescaled" in ep.metadata["flags"]
    ep, _ = read_all(RoboChallengeConverter(tmp_path, {"timestamp_unit": "s"}), ref)  # forced: taken as is
    assert ep.timestamp[0] == pytest.approx(T0 / unit)


# -- language ----------------------------------------------------------------------------------------


def test_language_sources_in_order(tmp_path):
    conv = RoboChallengeConverter(tmp_path)
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="sort_books",
                       task_desc={"task_name": "sort_books", "prompt": "from task_desc"})
    assert read_all(conv, ref)[0].instruction == "stack the bowls"  # task_info prompt first
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="set_the_plates", task_info=None,
                       task_desc={"task_name": "set_the_plates", "prompt": "put the plates on the mats"})
    ep, _ = read_all(conv, ref)
    assert ep.instruction == "put the plates on the mats" and ep.metadata["language_source"] == "task_desc"
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="scan_QR_code", task_info=None)
    ep, _ = read_all(conv, ref)
    assert ep.instruction == "scan QR code" and "language_from_folder_name" in ep.metadata["flags"]
    assert reason_of(RoboChallengeConverter(tmp_path, {"language_fallback": "none"}), ref) is Reason.MISSING_LANGUAGE


# -- partial downloads --------------------------------------------------------------------------------


def test_missing_secondary_video_converts_and_is_flagged(tmp_path):
    ref = make_episode(tmp_path, {"": arx5_lines(6)}, VIDEOS["arx5"][:2])  # right_realsense_rgb absent
    ep, frames = read_all(RoboChallengeConverter(tmp_path), ref)
    assert set(frames) == {"cam_global", "cam_wrist"}
    assert ep.metadata["missing_cameras"] == ["cam_side"] and "missing_cameras" in ep.metadata["flags"]
    assert reason_of(RoboChallengeConverter(tmp_path, {"required_cameras": "all"}), ref) is Reason.MISSING_CAMERA


def test_missing_primary_or_all_videos(tmp_path):
    conv = RoboChallengeConverter(tmp_path)
    ref = make_episode(tmp_path, {"": arx5_lines(6)}, ("arm_realsense_rgb",), task="a")
    err = error_of(conv, ref)
    assert err.reason is Reason.MISSING_CAMERA and "cam_global" in err.message and "global_realsense_rgb" in err.message
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"required_cameras": "any"}), ref)
    assert set(frames) == {"cam_wrist"}
    ref = make_episode(tmp_path, {"": arx5_lines(6)}, (), task="b")
    assert reason_of(RoboChallengeConverter(tmp_path, {"required_cameras": "any"}), ref) is Reason.MISSING_CAMERA


def test_stray_download_files_are_ignored_and_unknown_videos_listed(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"] + ("depth_realsense",))
    (tmp_path / ref / "videos" / "global_realsense_rgb.mp4.9F9FaDFb").write_bytes(b"partial")
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.metadata["unlisted_videos"] == ["depth_realsense.mp4"] and ep.metadata["missing_cameras"] == []


def test_missing_states_and_metadata(tmp_path):
    conv = RoboChallengeConverter(tmp_path)
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task="a")
    (tmp_path / ref / "states" / "states.jsonl").unlink()
    assert reason_of(conv, ref) is Reason.MISSING_FILE
    ref = make_episode(tmp_path, {"left": aloha_arm_lines(5, 0)}, VIDEOS["aloha"], task="b")
    err = error_of(conv, ref)
    assert err.reason is Reason.MISSING_FILE and "right_states.jsonl" in err.message
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task="c", episode_meta=None, task_info=None)
    ep, _ = read_all(conv, ref)
    assert {"episode_meta_missing", "task_info_missing"} <= set(ep.metadata["flags"])
    assert ep.metadata["frames_declared"] is None and ep.metadata["fps_source"] == "default" and ep.control_hz == 30.0
    assert reason_of(conv, "d/data/episode_000009") is Reason.MISSING_FILE  # vanished after discovery


# -- broken inputs ------------------------------------------------------------------------------------


def _lines_edit(fn):
    def edit(ep: Path):
        path = ep / "states" / "states.jsonl"
        rows = path.read_text().splitlines()
        path.write_text("\n".join(fn(rows)) + "\n")
    return edit


def _set_line(i, **values):
    def fn(rows):
        row = json.loads(rows[i])
        for k, v in values.items():
            if v is KeyError:
                del row[k]
            else:
                row[k] = v
        rows[i] = json.dumps(row)
        return rows
    return _lines_edit(fn)


def _write(rel, data):
    def edit(ep: Path):
        (ep / rel).write_bytes(data(ep / rel) if callable(data) else data)
    return edit


BROKEN = {
    "malformed line": (_lines_edit(lambda r: r[:3] + [r[3][:40]] + r[4:]), Reason.CORRUPT_FILE, "line 4"),
    "blank line mid-file": (_lines_edit(lambda r: r[:3] + [""] + r[3:]), Reason.CORRUPT_FILE, "line 4"),
    "line not an object": (_lines_edit(lambda r: r[:2] + ["[1, 2]"] + r[3:]), Reason.CORRUPT_FILE, "line 3"),
    "no timestamp": (_set_line(5, timestamp=KeyError), Reason.MISSING_KEY, "line 6 has no 'timestamp'"),
    "no joints": (_set_line(2, joint_positions=KeyError), Reason.MISSING_KEY, "line 3"),
    "short joint vector": (_set_line(4, joint_positions=[0.0] * 5), Reason.SHAPE_MISMATCH, "line 5"),
    "string value": (_set_line(1, gripper="open"), Reason.CORRUPT_FILE, "line 2"),
    "null value": (_set_line(3, joint_positions=[0.0, None, 0.0, 0.0, 0.0, 0.0]), Reason.NON_FINITE_VALUES,
                   "frame 3 dimension 'joint2'"),
    "nan value": (_set_line(6, gripper=math.nan), Reason.NON_FINITE_VALUES, "'gripper'"),
    "timestamps go back": (_set_line(6, timestamp=T0), Reason.NON_MONOTONIC_TIMESTAMPS, "frame 6"),
    "states lost lines": (_lines_edit(lambda r: r[:-3]), Reason.LENGTH_MISMATCH, "frames=10"),
    "empty states": (_write("states/states.jsonl", b""), Reason.EMPTY_EPISODE, "states.jsonl"),
    "task_info not json": (_write("../../meta/task_info.json", b'{"robot_id": "ur5_'), Reason.INVALID_METADATA,
                           "meta/task_info.json"),
    "task_info bad fps": (_write("../../meta/task_info.json", b'{"video_info": {"fps": 0}}'), Reason.INVALID_METADATA,
                          "video_info.fps"),
    "episode_meta not json": (_write("meta/episode_meta.json", b"{"), Reason.INVALID_METADATA, "episode_meta"),
    "episode_meta bad frames": (_write("meta/episode_meta.json", b'{"frames": "ten"}'), Reason.INVALID_METADATA,
                                "'frames'"),
    "video truncated": (_write("videos/global_realsense_rgb.mp4", lambda p: p.read_bytes()[: p.stat().st_size // 2]),
                        Reason.VIDEO_DECODE_ERROR, "global_realsense_rgb.mp4 (camera 'cam_global')"),
    "video empty": (_write("videos/handeye_realsense_rgb.mp4", b""), Reason.VIDEO_DECODE_ERROR, "cam_wrist"),
    "video not mp4": (_write("videos/handeye_realsense_rgb.mp4", b"<html>rate limited</html>"),
                      Reason.VIDEO_DECODE_ERROR, "cannot open video"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inputs(tmp_path, case):
    edit, reason, text = BROKEN[case]
    ref = make_episode(tmp_path, {"": ur5_lines(10)}, VIDEOS["ur5"])
    edit(tmp_path / ref)
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is reason, err
    assert text in err.message and ref in err.message


def test_video_frame_count_mismatch_and_tolerance(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(10)}, {"handeye_realsense_rgb": 7, "global_realsense_rgb": 10},
                       task="a")
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.FRAME_COUNT_MISMATCH and "7 frames" in err.message and "10 lines" in err.message
    ref = make_episode(tmp_path, {"": ur5_lines(10)}, {"handeye_realsense_rgb": 12, "global_realsense_rgb": 10},
                       task="b")
    assert reason_of(RoboChallengeConverter(tmp_path), ref) is Reason.FRAME_COUNT_MISMATCH
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"frame_count_tolerance": 2}), ref)
    assert frames["cam_wrist"].shape[0] == 10 and ep.metadata["video_frames_trimmed"] == {"cam_wrist": 2}


def test_arm_streams_of_different_length(tmp_path):
    ref = make_episode(tmp_path, {"left": aloha_arm_lines(9, 0), "right": aloha_arm_lines(7, 1)}, VIDEOS["aloha"],
                       episode_meta=None)
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.LENGTH_MISMATCH and err.message == (
        f"{ref}: arm streams differ in length: states/left_states.jsonl has 9 lines, "
        "states/right_states.jsonl has 7 lines")


def test_options_are_validated(tmp_path):
    for bad in ({"required_camera": "all"}, {"required_cameras": "some"}, {"last_frame": "repeat"},
                {"frame_count_tolerance": -1}, {"decode_threads": 0}, {"timestamp_unit": "ns"}):
        with pytest.raises(ValueError):
            RoboChallengeConverter(tmp_path, bad)


def test_last_frame_drop(tmp_path):
    ref = make_episode(tmp_path, {"": arx5_lines(8)}, VIDEOS["arx5"])
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"last_frame": "drop"}), ref)
    assert ep.num_frames == 7 and all(f.shape[0] == 7 for f in frames.values())
    full, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    np.testing.assert_array_equal(ep.action, full.state[1:8])
    assert not ep.extras["action_padded"].any() and ep.metadata["action"]["last_frame"] == "drop"


# -- streaming ------------------------------------------------------------------------------------------


def test_frames_stream_lazily_and_stop_with_the_context(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(60)}, VIDEOS["ur5"])
    path = tmp_path / ref / "videos" / "global_realsense_rgb.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as c:  # index first, then cut
        s = c.add_stream("libx264", rate=30, options={"threads": "1"})
        s.height, s.width, s.pix_fmt = *HW, "yuv420p"
        noise = np.clip(np.random.default_rng(0).normal(128, 60, (60, *HW, 3)), 0, 255).astype(np.uint8)
        for i, img in enumerate(noise):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 7 // 10])
    conv = RoboChallengeConverter(tmp_path)
    with conv.read(lambda: conv.open_episode(ref)) as ep:  # opening reads headers only: no error yet
        frames = ep.cameras["cam_global"].open_frames()
        got = 0
        with pytest.raises(EpisodeError) as info:
            for frame in frames:
                assert frame.shape == (*HW, 3) and frame.dtype == np.uint8
                got += 1
        assert 10 < got < 60  # the first frames came out before the damage was reached
        assert info.value.reason is Reason.VIDEO_DECODE_ERROR and str(got) in info.value.message
        wrist = ep.cameras["cam_wrist"]
    closed = r"handeye_realsense_rgb.mp4 \(camera 'cam_wrist'\): episode context is closed"
    with pytest.raises(RuntimeError, match=closed):
        next(wrist.open_frames())  # the episode context is closed


def test_memory_stays_flat_while_streaming(tmp_path):
    robochallenge_samples.write_synthetic(tmp_path, episodes=1, frames=300, height=96, width=128)
    conv = RoboChallengeConverter(tmp_path)
    (ref,) = conv.discover()
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        assert ep.num_frames == 300 and len(ep.cameras) == 3
        tracemalloc.start()
        n = 0
        for cam in ep.cameras.values():
            for frame in cam.open_frames():
                n += 1
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    all_frames = 3 * 300 * 96 * 128 * 3
    assert n == 900 and peak < all_frames / 10, (peak, all_frames)


# -- sample and synthetic generators -------------------------------------------------------------------


def file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples") / "robochallenge"
    start = time.perf_counter()
    expected = robochallenge_samples.write_samples(root, seed=0)
    return root, expected, time.perf_counter() - start


def test_another_seed_gives_other_samples_with_the_same_outcomes(samples, tmp_path):
    root, expected, _ = samples
    # the same seed giving the same bytes, in another process: test_converter_conformance
    assert robochallenge_samples.write_samples(tmp_path / "other", seed=1) == expected
    a, b = file_hashes(root), file_hashes(tmp_path / "other")
    assert all(a[k] != b[k] for k in a if k.endswith(".jsonl"))


def test_samples_are_small_and_cover_the_cases(samples):
    root, expected, seconds = samples
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 8_000_000
    assert set(RoboChallengeConverter(root).discover()) == set(expected)
    assert sum(v is None for v in expected.values()) >= 12
    assert set(expected.values()) - {None} == {
        r.value for r in (Reason.CORRUPT_FILE, Reason.MISSING_FILE, Reason.VIDEO_DECODE_ERROR, Reason.LENGTH_MISMATCH,
                          Reason.FRAME_COUNT_MISMATCH, Reason.MISSING_CAMERA, Reason.NON_FINITE_VALUES,
                          Reason.MISSING_KEY, Reason.INVALID_METADATA)
    }
    quirks = root / "press_three_buttons" / "data" / "episode_FFFFFF"
    assert json.loads((quirks / "meta" / "episode_meta.json").read_text())["episode_idx"] == 80
    with av.open(str(quirks / "videos" / "main_realsense_rgb.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"  # as the release's Franka videos
    ur5 = json.loads((root / "shred_scrap_paper/data/episode_000000/states/states.jsonl").read_text().splitlines()[0])
    assert isinstance(ur5["gripper"], int) and 0 <= ur5["gripper"] <= 255
    assert not (root / "pour_fries_into_plate" / "meta" / "task_info.json").exists()
    assert (root / "wipe_the_table/data/episode_000001/videos/cam_global_rgb.mp4.9F9FaDFb").exists()


def test_samples_read_as_declared(samples):
    root, expected, _ = samples
    conv = RoboChallengeConverter(root)
    embodiments, flags = set(), set()
    for ref in conv.discover():
        if expected[ref] is not None:
            assert reason_of(conv, ref) == expected[ref], ref
            continue
        ep, frames = read_all(conv, ref)
        embodiments.add(ep.embodiment)
        flags |= set(ep.metadata["flags"])
        n = ep.num_frames
        assert 45 <= n <= 90 and all(len(f) == n for f in frames.values())
        idle = max(3, n // 10)  # still prefix: state and pictures do not change
        assert np.all(ep.state[:idle] == ep.state[0])
        for f in frames.values():
            assert np.abs(f[1:idle].astype(int) - f[:1]).mean() < 2.0
            assert np.abs(f[-1].astype(int) - f[0]).mean() > 0.5  # the scene is drawn from the moving state
        assert np.abs(np.diff(ep.state, axis=0)).max() > 1e-3
        assert np.all(np.diff(ep.timestamp) > 0) and ep.timestamp[0] > 1.7e9
    assert embodiments == {"arx5", "ur5", "franka", "aloha"}
    assert {"missing_cameras", "episode_meta_missing", "task_info_missing", "embodiment_inferred",
            "language_from_folder_name"} <= flags


def test_write_synthetic_sizes(tmp_path):
    robochallenge_samples.write_synthetic(tmp_path, episodes=4, frames=20, height=48, width=64, seed=3)
    conv = RoboChallengeConverter(tmp_path)
    refs = conv.discover()
    assert len(refs) == 4
    seen = set()
    for ref in refs:
        ep, frames = read_all(conv, ref)
        seen.add(ep.embodiment)
        assert ep.num_frames == 20 and len(frames) == 3
        assert all(f.shape == (20, 48, 64, 3) for f in frames.values())
    assert seen == {"arx5", "aloha", "franka"}


# -- parsing rules at their edges ------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [15, 29.97, 60])
def test_a_task_s_declared_frame_rate_is_the_episode_s_control_rate(tmp_path, fps):
    info = {"task_desc": {"task_name": "stack_bowls", "prompt": "stack the bowls"}, "video_info": {"fps": fps}}
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task_info=info)
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.control_hz == float(fps) and ep.metadata["fps_source"] == "task_info.video_info.fps"


@pytest.mark.parametrize("magnitude,unit", [(1e11 - 1, "s"), (1e11, "ms"), (1e14 - 1, "ms"), (1e14, "us")])
def test_the_timestamp_unit_changes_exactly_at_its_magnitude_bounds(magnitude, unit):
    from converters.robochallenge import _timestamp_unit

    assert _timestamp_unit(np.array([magnitude, np.nan])) == unit
    assert _timestamp_unit(np.array([-magnitude])) == unit  # by size, whatever the sign


@pytest.mark.parametrize("prompt", ["", "   ", "\t\n"])
def test_a_blank_prompt_falls_back_to_the_next_language_source(tmp_path, prompt):
    info = {"task_desc": {"task_name": "sort_books", "prompt": prompt}, "video_info": {"fps": 30}}
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="sort_books", task_info=info,
                       task_desc={"prompt": "  put the books on the shelf "})
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.instruction == "put the books on the shelf" and ep.metadata["language_source"] == "task_desc"
    (tmp_path / "sort_books" / "task_desc.json").write_text(json.dumps({"prompt": prompt}))
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)  # blank there too: the folder's name
    assert ep.instruction == "sort books" and "language_from_folder_name" in ep.metadata["flags"]


def test_a_vector_one_value_too_long_or_short_is_a_shape_mismatch_naming_the_line(tmp_path):
    for extra, words in ((1, "has 7 values, expected 6"), (-1, "has 5 values, expected 6")):
        lines, key = arx5_lines(5), "joint_positions"
        lines[2][key] = lines[2][key] + [0.0] if extra > 0 else lines[2][key][:-1]
        ref = make_episode(tmp_path / str(extra), {"": lines}, VIDEOS["arx5"])
        err = error_of(RoboChallengeConverter(tmp_path / str(extra)), ref)
        assert err.reason is Reason.SHAPE_MISMATCH and f"line 3 '{key}' {words}" in err.message


def test_unpadded_episode_folders_are_listed_in_numeric_order(tmp_path):
    for name in ("episode_10", "episode_9", "episode_100", "episode_2"):
        make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], episode=name)
    assert RoboChallengeConverter(tmp_path).discover() == [
        f"stack_bowls/data/episode_{i}" for i in (2, 9, 10, 100)]


def test_state_and_extra_names_join_prefix_item_and_suffix():
    from converters.robochallenge import _names

    assert _names("joint", range(1, 3)) == ("joint1", "joint2")  # no suffix by default
    assert _names("joint", range(1, 3), "_vel") == ("joint1_vel", "joint2_vel")
    assert _names("ee_", ("x", "qw")) == ("ee_x", "ee_qw")


@pytest.mark.parametrize(
    "task_desc, prompt",
    [
        ("  wipe the table ", "wipe the table"),  # a bare string
        ({"task_desc": {"prompt": "nested prompt"}}, "nested prompt"),  # the task_info-like nesting
        ({"description": "from description"}, "from description"),
        ({"instruction": "from instruction"}, "from instruction"),
        ({"prompt": "first", "description": "second", "instruction": "third"}, "first"),
        ({"description": "second", "instruction": "third"}, "second"),
    ],
)
def test_task_desc_json_prompt_forms(tmp_path, task_desc, prompt):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="wipe", task_info=None, task_desc=task_desc)
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.instruction == prompt and ep.metadata["language_source"] == "task_desc"


def test_task_desc_json_of_another_type_is_invalid_metadata(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="wipe", task_info=None,
                       task_desc=["wipe the table"])
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.INVALID_METADATA
    assert err.message == f"{ref}: task_desc.json must be a string or an object, got list"


@pytest.mark.parametrize(
    "raw, words",
    [
        ([], "must be a JSON object, got list"),
        ({"robot_id": 5}, "'robot_id' must be a string, got 5"),
        ({"task_desc": "stack"}, "'task_desc' must be an object, got 'stack'"),
        ({"task_desc": {"prompt": 3}}, "'task_desc.prompt' must be a string, got 3"),
        ({"task_desc": {"task_name": ["a"]}}, "'task_desc.task_name' must be a string, got ['a']"),
        ({"video_info": [30]}, "'video_info' must be an object, got [30]"),
        ({"video_info": {"fps": "30"}}, "'video_info.fps' must be a number > 0, got '30'"),
        ({"video_info": {"fps": True}}, "'video_info.fps' must be a number > 0, got True"),
        ({"video_info": {"fps": math.inf}}, "'video_info.fps' must be a number > 0, got inf"),
        ({"video_info": {"fps": -30}}, "'video_info.fps' must be a number > 0, got -30"),
        ({"video_info": {"fps": 0}}, "'video_info.fps' must be a number > 0, got 0"),
    ],
)
def test_task_info_fields_of_the_wrong_type_are_invalid_metadata(raw, words):
    from converters.robochallenge import TaskInfo

    with pytest.raises(EpisodeError) as info:
        TaskInfo.from_dict(raw, "t/data/episode_1")
    assert info.value.reason is Reason.INVALID_METADATA
    assert info.value.message == f"t/data/episode_1: meta/task_info.json {words}"


def test_task_info_keeps_its_fields_and_leaves_absent_ones_none():
    from converters.robochallenge import TaskInfo

    info = TaskInfo.from_dict({"robot_id": "ur5_2", "task_desc": {"prompt": "p", "task_name": "n", "task_tag": ["a"]},
                               "video_info": {"fps": 15, "height": 480.0, "width": 640}}, "w")
    assert (info.robot_id, info.prompt, info.task_name, info.task_tag) == ("ur5_2", "p", "n", ["a"])
    assert info.fps == 15.0 and isinstance(info.fps, float) and info.video_size == (480, 640)
    assert all(isinstance(v, int) for v in info.video_size)
    info = TaskInfo.from_dict({"task_desc": {"task_tag": "a"}, "video_info": {"height": 480, "width": "640"}}, "w")
    assert info.robot_id is info.prompt is info.task_name is info.fps is info.video_size is info.task_tag is None
    assert TaskInfo.from_dict({"video_info": {"height": 480}}, "w").video_size is None  # both sides or none
    assert TaskInfo.from_dict({"video_info": {"fps": 0.5}}, "w").fps == 0.5  # any positive rate


@pytest.mark.parametrize(
    "raw, words",
    [
        ("{}", "must be a JSON object, got str"),
        ({"episode_index": "3"}, "'episode_index' must be an integer, got '3'"),
        ({"episode_index": True}, "'episode_index' must be an integer, got True"),
        ({"episode_idx": 2.0}, "'episode_idx' must be an integer, got 2.0"),
        ({"frames": -1}, "'frames' must be an integer >= 0, got -1"),
        ({"frames": False}, "'frames' must be an integer >= 0, got False"),
        ({"frames": 3.0}, "'frames' must be an integer >= 0, got 3.0"),
        ({"start_time": "now"}, "'start_time' must be a number, got 'now'"),
        ({"end_time": [1]}, "'end_time' must be a number, got [1]"),
        ({"robot_id": 7}, "'robot_id' must be a string, got 7"),
    ],
)
def test_episode_meta_fields_of_the_wrong_type_are_invalid_metadata(raw, words):
    from converters.robochallenge import EpisodeMeta

    with pytest.raises(EpisodeError) as info:
        EpisodeMeta.from_dict(raw, "t/data/episode_1")
    assert info.value.reason is Reason.INVALID_METADATA
    assert info.value.message == f"t/data/episode_1: meta/episode_meta.json {words}"


def test_episode_meta_keeps_its_fields_and_the_first_index_key_wins():
    from converters.robochallenge import EpisodeMeta

    meta = EpisodeMeta.from_dict({"episode_index": 4, "episode_idx": 9, "frames": 0, "start_time": 1,
                                  "end_time": 2.5, "robot_id": "aloha_3", "features": {"cam": {}}}, "w")
    assert (meta.index, meta.index_key, meta.frames) == (4, "episode_index", 0)
    assert meta.start_time == 1.0 and isinstance(meta.start_time, float) and meta.end_time == 2.5
    assert meta.robot_id == "aloha_3" and meta.features == {"cam": {}}
    meta = EpisodeMeta.from_dict({"episode_idx": 9, "features": ["cam"]}, "w")
    assert (meta.index, meta.index_key, meta.features) == (9, "episode_idx", None)
    meta = EpisodeMeta.from_dict({}, "w")
    assert meta.index is meta.index_key is meta.frames is meta.start_time is meta.end_time is meta.robot_id is None


def test_discovery_skips_hidden_folders_and_needs_an_existing_root(tmp_path):
    make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], task="wipe")
    make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], task=".trash/wipe")  # a hidden task folder
    make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], task="wipe", episode=".episode_000001")
    (tmp_path / "wipe/data/episode_000000/data/episode_000002").mkdir(parents=True)  # inside an episode: not searched
    assert RoboChallengeConverter(tmp_path).discover() == ["wipe/data/episode_000000"]
    with pytest.raises(FileNotFoundError, match="robochallenge root .*absent is not a directory"):
        RoboChallengeConverter(tmp_path / "absent").discover()


def test_a_data_folder_at_the_root_and_a_dangling_episode_link_are_episodes(tmp_path):
    root = tmp_path / "task"
    make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], task="task")
    (root / "data" / "episode_000005").symlink_to(tmp_path / "gone")  # the download it pointed at is gone
    (root / "data" / "episode_000009.tar").write_text("a file, not an episode folder")
    (root / "data" / "notes").symlink_to(tmp_path / "gone")  # a dangling link not named like an episode
    conv = RoboChallengeConverter(root)
    assert conv.discover() == ["data/episode_000000", "data/episode_000005"]
    ep, _ = read_all(conv, "data/episode_000000")
    assert ep.metadata["task"] == "task" and ep.metadata["task_folder"] == ""
    assert reason_of(conv, "data/episode_000005") is Reason.MISSING_FILE
    nested = RoboChallengeConverter(tmp_path)
    ep, _ = read_all(nested, "task/data/episode_000000")
    assert ep.metadata["task_folder"] == "task" and ep.metadata["episode_dir"] == "episode_000000"


def test_state_values_scalar_null_and_bool_rules():
    from converters.robochallenge import _values

    assert _values({"g": 0.5}, "g", 1, "w", 1) == [0.5]  # a scalar is one value
    assert _values({"g": [1, 2]}, "g", 2, "w", 1) == [1.0, 2.0]
    assert isinstance(_values({"g": 1}, "g", 1, "w", 1)[0], float)
    assert math.isnan(_values({"g": [None, 1.0]}, "g", 2, "w", 1)[0])  # JSON null is NaN
    with pytest.raises(EpisodeError) as info:
        _values({"g": [1.0, True]}, "g", 2, "s.jsonl", 4)  # a bool is not a number
    assert info.value.reason is Reason.CORRUPT_FILE
    assert info.value.message == "s.jsonl: line 4 'g' holds bool True, not a number"
    with pytest.raises(EpisodeError) as info:
        _values({"h": 1.0}, "g", 1, "s.jsonl", 2)
    assert info.value.reason is Reason.MISSING_KEY and info.value.message == "s.jsonl: line 2 has no 'g'"


def test_json_lines_allow_trailing_blank_lines_only(tmp_path):
    from converters.robochallenge import _first_line, _iter_jsonl

    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n\n  \n')
    assert list(_iter_jsonl(path, "w")) == [(1, {"a": 1}), (2, {"a": 2})]
    path.write_text('{"a": 1}\n\n\n{"a": 2}\n')
    with pytest.raises(EpisodeError) as info:
        list(_iter_jsonl(path, "w"))
    assert info.value.reason is Reason.CORRUPT_FILE and info.value.message == "w: line 2 is blank but data follows"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff\xfe"}\n')
    with pytest.raises(EpisodeError) as info:
        list(_iter_jsonl(path, "w"))
    assert info.value.reason is Reason.CORRUPT_FILE and info.value.message.startswith(
        "w: line 2 is not valid JSON ('utf-8' codec can't decode byte 0xff in position 7: invalid start byte): ")
    assert info.value.message.endswith("""'{"a": "\ufffd\ufffd"}'...""")  # the snippet: undecodable bytes replaced
    path.write_text('{"k": "' + "x" * 70 + '" "y"}\n')
    with pytest.raises(EpisodeError) as info:
        list(_iter_jsonl(path, "w"))
    assert info.value.message.endswith(repr('{"k": "' + "x" * 53) + "...")  # the line's first 60 bytes
    path.write_text('{"a" 1}\n')
    with pytest.raises(EpisodeError) as info:
        list(_iter_jsonl(path, "w"))
    assert "line 1 is not valid JSON (Expecting ':' delimiter at column 6)" in info.value.message
    assert info.value.message.endswith("""'{"a" 1}'...""")
    path.write_text("\n\n")
    assert _first_line(path, "w") is None
    with pytest.raises(EpisodeError) as info:
        list(_iter_jsonl(tmp_path / "absent.jsonl", "w"))
    assert info.value.reason is Reason.CORRUPT_FILE and info.value.message.startswith("w: cannot open: ")


def test_metadata_json_that_is_not_utf8_or_not_readable(tmp_path):
    from converters.robochallenge import _read_json

    path = tmp_path / "task_info.json"
    path.write_bytes(b'{"robot_id": "\xff"}')
    with pytest.raises(EpisodeError) as info:
        _read_json(path, "meta/task_info.json", "ref")
    assert info.value.reason is Reason.INVALID_METADATA
    assert info.value.message.startswith("ref: meta/task_info.json is not UTF-8: ")
    with pytest.raises(EpisodeError) as info:
        _read_json(tmp_path, "meta/task_info.json", "ref")  # a folder: reading fails
    assert info.value.reason is Reason.CORRUPT_FILE
    assert info.value.message.startswith("ref: cannot read meta/task_info.json: ")
    path.write_text("[1,")
    with pytest.raises(EpisodeError) as info:
        _read_json(path, "meta/task_info.json", "ref")
    assert info.value.reason is Reason.INVALID_METADATA
    assert info.value.message.startswith("ref: meta/task_info.json is not valid JSON: ")
    path.write_text('{"a": [1]}')
    assert _read_json(path, "meta/task_info.json", "ref") == {"a": [1]}


def test_timestamps_with_no_finite_value_are_taken_as_seconds():
    from converters.robochallenge import _timestamp_unit

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no median of an empty array (numpy warns)
        assert _timestamp_unit(np.array([np.nan, np.inf])) == "s"
    assert _timestamp_unit(np.array([1e15, 1e15, 1.0])) == "us"  # by the median, not the smallest


@pytest.mark.parametrize("robot_id, embodiment", [("UR5e-07", "ur5"), ("Franka_FR3", "franka"), ("rc.aloha.2", "aloha"),
                                                  ("arx5_ur5", None), ("ur", None), ("", None)])
def test_robot_id_tokens_are_case_insensitive_words_naming_one_robot(robot_id, embodiment):
    from converters.robochallenge import _spec_from_robot_id

    spec = _spec_from_robot_id(robot_id, "w")
    assert (spec.embodiment if spec else None) == embodiment


def test_episode_metadata_records_every_source_field(tmp_path):
    info = {"robot_id": "ur5_3", "task_desc": {"task_name": "Stack bowls", "prompt": "stack"},
            "video_info": {"fps": 30}}
    meta = {"episode_index": 0, "start_time": 10.5, "end_time": 12, "frames": 5}
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task_info=info, episode_meta=meta)
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.metadata == {
        "task": "stack_bowls", "task_folder": "stack_bowls", "episode_dir": "episode_000000",
        "episode_index": 0, "episode_index_key": "episode_index", "robot_id": "ur5_3",
        "embodiment_source": "task_info.robot_id", "language_source": "task_info", "task_name": "Stack bowls",
        "fps_source": "task_info.video_info.fps", "start_time": 10.5, "end_time": 12.0, "frames_declared": 5,
        "state_keys": {"state": ["joint_positions"], "gripper": "gripper",
                       "extras": {"ee_pose_quat": "ee_positions", "gripper_raw": "gripper"}},
        "gripper": {"unit": "m", "convention": "finger opening width in metres, 0 = closed", "source_key": "gripper",
                    "source_unit": "robotiq_2f85_0_255",
                    "conversion": "Robotiq 2F-85 position register, 0 = open .. 255 = closed; converted linearly: "
                                  "width_m = 0.085 * (255 - value) / 255"},
        "action": {"derived_from": "next_state", "control_space": "joint", "last_frame": "hold"},
        "timestamp": {"source": "states/states.jsonl:timestamp", "unit_detected": "s"},
        "missing_cameras": [], "flags": [],
    }
    assert ep.instruction == "stack" and ep.control_hz == 30.0 and ep.num_frames == 5
    assert ep.state.dtype == ep.action.dtype == np.float32 and ep.timestamp.dtype == np.float64
    padded = ep.extras["action_padded"]
    assert padded.dtype == bool and padded.shape == (5, 1) and padded[:, 0].tolist() == [False] * 4 + [True]
    assert ep.extra_names["action_padded"] == ["action_padded"]


def test_the_root_s_own_episodes_are_listed_before_every_task_s(tmp_path):
    make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], task=".", episode="episode_9")
    for task in ("-pick", "Apple", "b_task"):  # '-' and capitals sort before '.' and 'X'
        make_episode(tmp_path, {"": ur5_lines(3)}, VIDEOS["ur5"], task=task, episode="episode_1")
    assert RoboChallengeConverter(tmp_path).discover() == [
        "data/episode_9", "-pick/data/episode_1", "Apple/data/episode_1", "b_task/data/episode_1"]


def test_the_first_robot_id_found_is_reported_when_a_later_one_names_the_robot(tmp_path):
    meta = {"start_time": T0, "end_time": T0 + 1, "frames": 5, "robot_id": "franka_2"}
    ref = make_episode(tmp_path, {"": franka_lines(5)}, VIDEOS["franka"],
                       task_info={"robot_id": "robot_7", "task_desc": {"prompt": "p"}}, episode_meta=meta)
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.embodiment == "franka" and ep.metadata["embodiment_source"] == "episode_meta.robot_id"
    assert ep.metadata["robot_id"] == "robot_7" and "embodiment_inferred" not in ep.metadata["flags"]


def test_state_keys_matching_no_robot_name_the_keys_in_the_error(tmp_path):
    lines = [{"joint_positions": [0.0] * 5, "gripper": 0.0, "timestamp": t} for t in _ts(4)]
    ref = make_episode(tmp_path, {"": lines}, VIDEOS["ur5"], task_info=None, episode_meta=None)
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.message == (f"{ref}: no robot_id names the robot (robot_id=None) and the single-arm state keys "
                           "['gripper', 'joint_positions', 'timestamp'] match no known embodiment")


@pytest.mark.parametrize(
    "edit",
    [
        lambda row: row.update(joint_positions=0.0),  # not a list
        lambda row: row.update(joint_positions=[0.0] * 8),  # no robot has 8 joints
    ],
)
def test_a_signature_needs_a_joint_list_of_its_length_on_every_arm(tmp_path, edit):
    left, right = aloha_arm_lines(4, 0), aloha_arm_lines(4, 1)
    edit(right[0])  # the second arm's first line breaks the signature
    ref = make_episode(tmp_path, {"left": left, "right": right}, VIDEOS["aloha"], task_info=None)
    assert reason_of(RoboChallengeConverter(tmp_path), ref) is Reason.UNSUPPORTED_LAYOUT
    lines = arx5_lines(4)
    edit(lines[0])
    ref = make_episode(tmp_path / "single", {"": lines}, VIDEOS["arx5"], task_info=None)
    assert reason_of(RoboChallengeConverter(tmp_path / "single"), ref) is Reason.UNSUPPORTED_LAYOUT


def test_a_robot_recording_the_other_arm_layout_names_the_files_it_needs(tmp_path):
    ref = make_episode(tmp_path, {"": franka_lines(5)}, VIDEOS["franka"],
                       task_info={"robot_id": "aloha_1", "task_desc": {"prompt": "p"}})
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.MISSING_FILE
    assert err.message == (f"{ref}: aloha (from task_info.robot_id 'aloha_1') records states/left_states.jsonl "
                           "and states/right_states.jsonl: not found")


def test_camera_errors_name_the_expected_files_the_rule_and_the_videos_present(tmp_path):
    ref = make_episode(tmp_path, {"": arx5_lines(4)}, ("arm_realsense_rgb", "extra_rgb"), task="a")
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.MISSING_CAMERA
    assert err.message == (f"{ref}: required camera(s) missing: cam_global (videos/global_realsense_rgb.mp4 or "
                           "videos/cam_global_rgb.mp4) [required_cameras=primary; videos present: "
                           "['arm_realsense_rgb.mp4', 'extra_rgb.mp4']]")
    err = error_of(RoboChallengeConverter(tmp_path, {"required_cameras": "all"}), ref)
    assert err.message.startswith(f"{ref}: required camera(s) missing: cam_global (") and "; cam_side (" in err.message
    assert "[required_cameras=all;" in err.message
    ref = make_episode(tmp_path, {"": arx5_lines(4)}, ("extra_rgb",), task="b")
    err = error_of(RoboChallengeConverter(tmp_path, {"required_cameras": "any"}), ref)
    assert err.message.startswith(f"{ref}: no camera video: cam_global (videos/global_realsense_rgb.mp4 or ")
    assert "cam_wrist (videos/arm_realsense_rgb.mp4 or videos/cam_arm_rgb.mp4); cam_side (" in err.message


def test_video_frame_count_errors_and_trimming(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(6)}, {"handeye_realsense_rgb": 9, "global_realsense_rgb": 6})
    where = f"{ref}/videos/handeye_realsense_rgb.mp4 (camera 'cam_wrist')"
    err = error_of(RoboChallengeConverter(tmp_path, {"frame_count_tolerance": 2}), ref)
    assert err.reason is Reason.FRAME_COUNT_MISMATCH
    assert err.message == f"{where}: video has 9 frames but the states have 6 lines (frame_count_tolerance=2)"
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"frame_count_tolerance": 3}), ref)  # exactly at the limit
    assert frames["cam_wrist"].shape[0] == 6 and ep.metadata["video_frames_trimmed"] == {"cam_wrist": 3}
    assert "video_frames_trimmed" in ep.metadata["flags"]
    ref = make_episode(tmp_path, {"": ur5_lines(6)}, {"handeye_realsense_rgb": 5, "global_realsense_rgb": 6}, task="b")
    err = error_of(RoboChallengeConverter(tmp_path, {"frame_count_tolerance": 3}), ref)  # too few: never tolerated
    assert err.message.endswith("video has 5 frames but the states have 6 lines")
    ok = make_episode(tmp_path, {"": ur5_lines(6)}, VIDEOS["ur5"], task="c")
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ok)
    assert "video_frames_trimmed" not in ep.metadata and "video_frames_trimmed" not in ep.metadata["flags"]
    assert "unlisted_videos" not in ep.metadata


def test_last_frame_drop_keeps_a_single_frame_episode_and_cuts_every_stream(tmp_path):
    ref = make_episode(tmp_path, {"": arx5_lines(1)}, VIDEOS["arx5"])
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"last_frame": "drop"}), ref)
    assert ep.num_frames == 1 and all(f.shape[0] == 1 for f in frames.values())
    assert ep.extras["action_padded"][:, 0].tolist() == [True]  # its action holds the only state
    ref = make_episode(tmp_path, {"": arx5_lines(2)}, VIDEOS["arx5"], task="two")
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"last_frame": "drop"}), ref)
    assert ep.num_frames == 1 and not ep.extras["action_padded"].any()  # two frames: one kept
    ref = make_episode(tmp_path, {"": arx5_lines(5)}, VIDEOS["arx5"], task="b")
    ep, frames = read_all(RoboChallengeConverter(tmp_path, {"last_frame": "drop"}), ref)
    assert len(ep.timestamp) == 4 and all(len(v) == 4 for v in ep.extras.values())
    np.testing.assert_array_equal(ep.timestamp, _ts(5)[:4])
    assert ep.extras["joint_vel"].shape == (4, 6) and ep.extras["action_padded"].dtype == bool
    assert ep.extras["action_padded"].shape == (4, 1)


def test_dual_arm_timestamps_come_from_the_left_arm_and_their_skew_is_in_seconds(tmp_path):
    left, right = aloha_arm_lines(5, 0), aloha_arm_lines(5, 1)
    for row in left + right:
        row["timestamp"] *= 1e3  # milliseconds
    right[2]["timestamp"] += 4.0  # 4 ms late
    ref = make_episode(tmp_path, {"left": left, "right": right}, VIDEOS["aloha"])
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.metadata["timestamp"] == {"source": "states/left_states.jsonl:timestamp", "unit_detected": "ms"}
    assert ep.metadata["arm_timestamp_max_skew_s"] == pytest.approx(0.004, rel=1e-3)
    single = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="b")
    assert "arm_timestamp_max_skew_s" not in read_all(RoboChallengeConverter(tmp_path), single)[0].metadata


def test_missing_state_files_and_keys_are_named(tmp_path):
    conv = RoboChallengeConverter(tmp_path)
    ur5_info = {"robot_id": "ur5_1", "task_desc": {"prompt": "p"}}
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="a")
    (tmp_path / ref / "states" / "states.jsonl").unlink()
    assert error_of(conv, ref).message == (f"{ref}: no state file (states/states.jsonl, or states/left_states.jsonl "
                                           "+ states/right_states.jsonl)")
    ref = make_episode(tmp_path, {"right": aloha_arm_lines(4, 1)}, VIDEOS["aloha"], task="b")
    err = error_of(conv, ref)
    assert err.message == f"{ref}: states/left_states.jsonl is missing (the other arm's file exists)"
    lines = ur5_lines(4)
    del lines[0]["joint_positions"]
    ref = make_episode(tmp_path, {"": lines}, VIDEOS["ur5"], task="c", task_info=ur5_info)
    err = error_of(conv, ref)
    assert err.reason is Reason.MISSING_KEY
    assert err.message == f"{ref}/states/states.jsonl: line 1 has none of ['joint_positions']"
    lines = ur5_lines(4)
    for row in lines:
        del row["gripper"]
    ref = make_episode(tmp_path, {"": lines}, VIDEOS["ur5"], task="d", task_info=ur5_info)
    err = error_of(conv, ref)
    assert err.reason is Reason.MISSING_KEY
    assert err.message == f"{ref}/states/states.jsonl: line 1 has no gripper key (one of ['gripper', 'gripper_width'])"
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="e")
    (tmp_path / ref / "states" / "states.jsonl").write_text("\n")
    err = error_of(conv, ref)
    assert err.reason is Reason.EMPTY_EPISODE and err.message == f"{ref}/states/states.jsonl: the file has no lines"


def test_an_extra_is_kept_only_when_every_arm_records_it(tmp_path):
    left, right = aloha_arm_lines(4, 0), aloha_arm_lines(4, 1)
    for row in right:
        del row["ee_pose_rpy"]
    ref = make_episode(tmp_path, {"left": left, "right": right}, VIDEOS["aloha"])
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert "ee_pose_rpy" not in ep.extras and "ee_pose_quat" in ep.extras
    assert ep.metadata["state_keys"]["extras"] == {"joint_vel": "joint_vel", "qpos": "qpos",
                                                   "ee_pose_quat": "ee_pose_quaternion"}
    assert ep.extra_names["joint_vel"][:2] == ["left_joint1_vel", "left_joint2_vel"]
    assert ep.extra_names["joint_vel"][7:9] == ["right_joint1_vel", "right_joint2_vel"]
    assert ep.extras["qpos"].dtype == np.float32


def test_language_from_the_folder_name_or_none_is_recorded_and_named(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task="_scan_QR_", task_info=None)
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert ep.instruction == "scan QR" and ep.metadata["language_source"] == "folder_name"
    err = error_of(RoboChallengeConverter(tmp_path, {"language_fallback": "none"}), ref)
    assert err.reason is Reason.MISSING_LANGUAGE
    assert err.message == f"{ref}: no prompt in meta/task_info.json or task_desc.json (language_fallback=none)"
    (tmp_path / "_scan_QR_" / "task_desc.json").write_text("{")
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.INVALID_METADATA and err.message.startswith(f"{ref}: task_desc.json is not valid JSON")


def test_each_camera_decodes_with_its_declared_frame_count_and_the_decode_threads_option(tmp_path, monkeypatch):
    import converters.robochallenge as rc

    calls = []
    real = rc.decode_frames

    def spy(path, where, **kwargs):
        calls.append((Path(path).name, where, kwargs))
        return real(path, where, **kwargs)

    monkeypatch.setattr(rc, "decode_frames", spy)
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, {"handeye_realsense_rgb": 6, "global_realsense_rgb": 5})
    read_all(RoboChallengeConverter(tmp_path, {"decode_threads": 3, "frame_count_tolerance": 1}), ref)
    assert sorted(calls) == [
        ("global_realsense_rgb.mp4", f"{ref}/videos/global_realsense_rgb.mp4 (camera 'cam_global')",
         {"expected": 5, "threads": 3}),
        ("handeye_realsense_rgb.mp4", f"{ref}/videos/handeye_realsense_rgb.mp4 (camera 'cam_wrist')",
         {"expected": 6, "threads": 3}),  # the file's own count: the extra frame is decoded, then cut
    ]


def test_an_episode_without_a_videos_folder_has_no_camera(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, ())
    (tmp_path / ref / "videos").rmdir()
    err = error_of(RoboChallengeConverter(tmp_path, {"required_cameras": "any"}), ref)
    assert err.reason is Reason.MISSING_CAMERA and err.message.startswith(f"{ref}: no camera video: ")
    assert err.message.endswith("[required_cameras=any; videos present: []]")


def test_one_extra_video_frame_without_tolerance_names_the_tolerance(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, {"handeye_realsense_rgb": 5, "global_realsense_rgb": 4})
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.message.endswith("video has 5 frames but the states have 4 lines (frame_count_tolerance=0)")


def test_camera_streams_carry_their_unified_name_and_are_thread_safe(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"])
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)
    assert {name: (cam.name, cam.thread_safe, cam.num_frames) for name, cam in ep.cameras.items()} == {
        "cam_global": ("cam_global", True, 4), "cam_wrist": ("cam_wrist", True, 4)}
    assert ep.cameras["cam_global"].source_name == "global_realsense_rgb"
    assert ep.cameras["cam_global"].source_file == f"{ref}/videos/global_realsense_rgb.mp4"


def test_declared_frames_must_match_the_first_arm_s_lines(tmp_path):
    meta = {"frames": 6}
    ref = make_episode(tmp_path, {"left": aloha_arm_lines(5, 0), "right": aloha_arm_lines(5, 1)}, VIDEOS["aloha"],
                       episode_meta=meta)
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.LENGTH_MISMATCH
    assert err.message == f"{ref}: meta/episode_meta.json says frames=6 but states/left_states.jsonl has 5 lines"
    ref = make_episode(tmp_path, {"": ur5_lines(5)}, VIDEOS["ur5"], task="b", episode_meta={"episode_index": 3})
    ep, _ = read_all(RoboChallengeConverter(tmp_path), ref)  # no declared count: nothing to check
    assert ep.num_frames == 5 and ep.metadata["frames_declared"] is None and ep.metadata["episode_index"] == 3


def test_a_robot_id_naming_an_unmapped_robot_is_unsupported_and_named(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"], task_info={"robot_id": "DOS-W1_2"})
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.message == (f"{ref}: robot_id 'DOS-W1_2' is a robot this converter does not map "
                           "(supported: ('aloha', 'arx5', 'franka', 'ur5'))")


def test_a_malformed_first_state_line_names_the_file(tmp_path):
    ref = make_episode(tmp_path, {"": ur5_lines(4)}, VIDEOS["ur5"])
    path = tmp_path / ref / "states" / "states.jsonl"
    path.write_text("{oops\n" + path.read_text())
    err = error_of(RoboChallengeConverter(tmp_path), ref)
    assert err.reason is Reason.CORRUPT_FILE
    assert err.message.startswith(f"{ref}/states/states.jsonl: line 1 is not valid JSON (")
