"""The AgiBot World converter, on its generated sample release and on small episodes built here.

Hand-built episodes start from a valid ``proprio_stats.h5`` dict ``{key: array}`` and one
video per camera whose frame ``i`` is a flat grey of level ``10 * i`` (so a decoded
frame tells which video frame it was); each test changes the one thing it checks.
The spec is docs/sources/agibot.md.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import converters.agibot as agibot
from converters import get_converter
from converters.agibot import (
    ACTION_LAYOUT,
    ARM_JOINTS,
    END_ORIENTATION,
    AgibotConverter,
    camera_file,
)
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, TimestampOrigin
from pipelines.samples import agibot as agibot_samples

T0 = 1_735_689_600_123_456_789


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("agibot_samples")
    expected = agibot_samples.write_samples(root, seed=0)
    return root, expected


def proprio(n: int = 20, effector: str = "gripper") -> dict[str, np.ndarray]:
    """A valid proprio_stats.h5 as ``{key: array}``: every action field N rows (no index needed)."""
    t = np.arange(n)
    joints = np.stack([np.sin(t / 7 + j) for j in range(14)], axis=1)
    width = 12 if effector == "dexhand" else 2
    eff_state = 120.0 - 2.0 * t[:, None] * np.ones((1, width)) if width == 2 else 0.05 * t[:, None] * np.ones((1, 12))
    eff_action = np.clip(t / n, 0, 1)[:, None] * np.ones((1, width)) if width == 2 else eff_state + 0.01
    quat = np.zeros((n, 2, 4))
    quat[..., 3] = 1.0
    pos = np.stack([np.stack([0.5 + 0.01 * t, 0.2 + 0 * t, 1.0 + 0 * t], 1),
                    np.stack([0.5 + 0 * t, -0.2 + 0 * t, 1.0 - 0.01 * t], 1)], axis=1)
    return {
        "timestamp": T0 + np.arange(n, dtype=np.int64) * 33_333_333,
        "state/joint/position": joints,
        "state/joint/current_value": joints * 2,
        "state/effector/position": eff_state,
        "state/head/position": np.tile([0.1, 0.3], (n, 1)),
        "state/waist/position": np.tile([0.35, 0.28], (n, 1)),
        "state/end/position": pos,
        "state/end/orientation": quat,
        "state/robot/position": np.zeros(0),
        "state/robot/orientation": np.zeros(0),
        "action/joint/position": joints + 0.01,
        "action/effector/position": eff_action,
        "action/head/position": np.tile([0.1, 0.3], (n, 1)),
        "action/waist/position": np.tile([0.35, 0.28], (n, 1)),
        "action/robot/velocity": np.zeros((n, 2)),
        "action/end/position": pos + 0.001,
        "action/end/orientation": quat,
        **{f"action/{g}/index": np.arange(n) for g in ("joint", "effector", "head", "waist", "robot", "end")},
    }


def write_h5(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            value = np.asarray(value)
            f.create_dataset(key, data=value if value.dtype.kind in "iu" else value.astype(np.float64))


def grey_video(count: int, codec: str = "h264", h: int = 48, w: int = 64) -> bytes:
    return agibot_samples._encode([np.full((h, w, 3), 10 * i, np.uint8) for i in range(count)], codec)


def record(episode: int, **overrides) -> dict:
    rec = {"episode_id": episode, "task_name": "Pick up the cup", "init_scene_text": "A cup is on the table.",
           "label_info": {"action_config": [{"start_frame": 2, "end_frame": 9, "action_text": "Grasp the cup.",
                                             "skill": "Pick"},
                                            {"start_frame": 10, "end_frame": 15, "action_text": "Lift the cup.",
                                             "skill": "Lift"}], "key_frame": []}}
    rec.update(overrides)
    return {k: v for k, v in rec.items() if v is not None}


def build(root: Path, *, task: int = 327, episode: int = 1000, n: int = 20, data: dict | None = None,
          frames: dict | int | None = None, codec: str = "h264", rec: dict | None = None,
          effector: str = "gripper") -> str:
    """One extracted episode; ``frames``: video frame count (all cameras or per camera)."""
    data = proprio(n, effector) if data is None else data
    if data is not False:
        write_h5(root / "proprio_stats" / str(task) / str(episode) / "proprio_stats.h5", data)
    info = root / "task_info" / f"task_{task}.json"
    records = json.loads(info.read_text()) if info.exists() else []
    if rec is not False:
        records = [r for r in records if r["episode_id"] != episode] + [rec or record(episode)]
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(json.dumps(records))
    for cam in agibot.EFFECTOR_TYPES[effector].cameras:
        count = frames.get(cam, n) if isinstance(frames, dict) else (n if frames is None else frames)
        if count is None:
            continue
        path = root / "observations" / str(task) / str(episode) / camera_file(cam)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(grey_video(count, codec))
    return f"{task}/{episode}"


def read_all(conv: AgibotConverter, ref: str):
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        frames = {name: np.stack(list(cam.open_frames())) for name, cam in ep.cameras.items()}
        return ep, frames


def reason_of(conv: AgibotConverter, ref: str) -> EpisodeError:
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert ref in info.value.message  # errors name the episode
    return info.value


def levels(frames: np.ndarray) -> list[int]:
    """Which grey video frame each decoded frame is."""
    return [int(round(f.mean() / 10)) for f in frames]


def through_units(conv: AgibotConverter) -> dict[str, str | None]:
    """Every outcome the pipeline would report, without Beam."""
    got = {}
    for unit in conv.discover():
        try:
            for ref, opener in conv.episodes(unit):
                try:
                    with conv.read(opener) as ep:
                        for cam in ep.cameras.values():
                            for _ in cam.open_frames():
                                pass
                    got[ref] = None
                except EpisodeError as exc:
                    got[ref] = exc.reason.value
        except EpisodeError as exc:
            got[unit] = exc.reason.value
    return got


# -- identity, discovery, samples -----------------------------------------------------------


def test_registered_with_declared_schema():
    cls = get_converter("agibot")
    assert cls is AgibotConverter
    assert cls.embodiments == ("agibot_g1_dexhand", "agibot_g1_gripper", "agibot_g1_tactile")
    assert cls.control_hz == 30.0 and cls.source_version and cls.converter_version


def test_discover_both_layouts_sorted_and_relative(tmp_path):
    for rel in ["observations/327/648649", "observations/327/648642", "observations/52/7", "observations/abc/1",
                "observations/327/notes", "observations/327/648700"]:
        (tmp_path / rel).mkdir(parents=True)
    for rel in ["observations/327/683001-683020.tar", "observations/327/600-700.tar", "observations/327/x.txt",
                "observations/52/1-9.tar", "observations/327/648700/videos.tar"]:
        (tmp_path / rel).write_bytes(b"")
    assert AgibotConverter(tmp_path).discover() == [
        "observations/52/7", "observations/52/1-9.tar",
        "observations/327/648642", "observations/327/648649", "observations/327/648700",
        "observations/327/600-700.tar", "observations/327/683001-683020.tar",
    ]
    with pytest.raises(FileNotFoundError):
        AgibotConverter(tmp_path / "absent").discover()
    assert AgibotConverter(tmp_path / "observations").discover() == []


def test_samples_give_their_declared_outcomes(samples):
    root, expected = samples
    assert through_units(AgibotConverter(root)) == expected
    assert {"327/648642", "390/683001", "475/652110", "666/780201"} <= {r for r, v in expected.items() if v is None}
    assert "327/648699" not in expected  # listed in task_info only: never discovered


def test_samples_are_small(samples):
    # the same seed giving the same bytes, in another process: test_converter_conformance
    root, expected = samples
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 8 * 2**20


# -- state / action --------------------------------------------------------------------------


def test_gripper_episode_layout_units_and_conventions(samples):
    root, _ = samples
    ep, frames = read_all(AgibotConverter(root), "327/648642")
    n = ep.num_frames
    assert ep.source == "agibot" and ep.embodiment == "agibot_g1_gripper" and ep.robot_type == "agibot_g1"
    assert ep.action_kind is ActionKind.JOINT_POSITION and ep.control_hz == 30.0
    assert ep.state_names == [*ARM_JOINTS, "left_gripper_opening_mm", "right_gripper_opening_mm", "head_yaw",
                              "head_pitch", "waist_pitch", "waist_lift", *agibot.END_POSITION, *END_ORIENTATION]
    assert ep.action_names == [*ARM_JOINTS, "left_gripper_closedness", "right_gripper_closedness", "head_yaw",
                               "head_pitch", "waist_pitch", "waist_lift", "base_vel_x", "base_vel_yaw",
                               *agibot.END_POSITION, *END_ORIENTATION]
    assert ep.state.shape == (n, 34) and ep.action.shape == (n, 36) and ep.state.dtype == np.float32
    opening = ep.state[:, 14:16]
    closedness = ep.action[:, 14:16]
    assert 34.0 < opening.min() and opening.max() <= 120.0  # mm
    assert 0.0 <= closedness.min() and closedness.max() <= 1.0 and closedness.max() > 0.9
    assert ep.metadata["state_units"][14] == "mm (opening)" and ep.metadata["action_units"][14] == "0=open..1=closed"
    quat = ep.state[:, -8:].reshape(n, 2, 4)  # xyzw: w last
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-5)
    assert ep.metadata["quaternion_order"] == "xyzw" and "closedness" in ep.metadata["effector_convention"]
    assert set(frames) == {"head", "hand_left", "hand_right"}
    assert all(f.shape == (n, 96, 128, 3) for f in frames.values())
    json.dumps(ep.metadata)


def test_dexhand_and_tactile_variants(samples):
    root, _ = samples
    conv = AgibotConverter(root)
    ep, frames = read_all(conv, "475/652110")  # proprio inside Alpha-style proprio_stats/proprio_stats.tar
    assert ep.embodiment == "agibot_g1_dexhand" and ep.state.shape[1] == 44 and ep.action.shape[1] == 46
    assert ep.state_names[14:26] == list(agibot.HAND_JOINTS) and ep.action_names[14:26] == list(agibot.HAND_JOINTS)
    assert set(frames) == {"head", "hand_left_fisheye", "hand_right_fisheye"}
    assert frames["hand_left_fisheye"].shape[1:] == (96, 120, 3)
    assert ep.metadata["proprio_from"] == "proprio_stats/proprio_stats.tar:475/652110/proprio_stats.h5"
    ep, frames = read_all(conv, "666/780201")
    assert ep.embodiment == "agibot_g1_tactile" and ep.state_names[14] == "left_gripper_opening_mm"
    assert set(frames) == {"head", "hand_left", "hand_right", *agibot.TACTILE_SENSORS}
    assert frames["left_sensor_1"].shape[1:] == (112, 64, 3)


def test_indexed_actions_are_scattered_and_gaps_filled(tmp_path):
    n = 20
    data = proprio(n)
    joints_cmd = data["action/joint/position"]
    idx = np.arange(5, 15)
    data["action/joint/position"] = joints_cmd[idx]
    data["action/joint/index"] = idx
    data["action/end/position"] = data["action/end/position"][idx]
    data["action/end/orientation"] = data["action/end/orientation"][idx]
    data["action/end/index"] = np.zeros(0, np.int64)  # lost: falls back to action/joint/index
    grip_idx = np.arange(6, 14, 2)
    grip = data["action/effector/position"]
    data["action/effector/position"] = grip[grip_idx]
    data["action/effector/index"] = grip_idx
    for key in ("action/head/position", "action/robot/velocity"):
        data[key] = np.zeros(0)  # empty (0,) groups are absent
    ref = build(tmp_path, data=data)

    ep, _ = read_all(AgibotConverter(tmp_path), ref)  # default: hold
    joint = ep.action[:, :14]
    state = data["state/joint/position"].astype(np.float32)
    np.testing.assert_allclose(joint[:5], state[:5])  # before the first command: the state
    np.testing.assert_allclose(joint[5:15], joints_cmd[5:15], rtol=1e-6)
    np.testing.assert_allclose(joint[15:], np.repeat(joints_cmd[14:15], 5, axis=0), rtol=1e-6)  # held
    g = ep.action[:, 14:16]
    np.testing.assert_allclose(g[:6], np.repeat(grip[6:7], 6, axis=0), rtol=1e-6)  # first command (mm != 0..1)
    np.testing.assert_allclose(g[7], grip[6], rtol=1e-6)  # held between commands
    np.testing.assert_allclose(ep.action[:, 16:18], data["state/head/position"], rtol=1e-6)  # absent -> state
    assert np.all(ep.action[:, 20:22] == 0)  # velocity: not commanded -> 0
    np.testing.assert_allclose(ep.action[5:15, 22:25], data["action/end/position"][:, 0], rtol=1e-6)
    mask = ep.extras["action_commanded"]
    assert ep.extra_names["action_commanded"] == [k.replace("/", "_") for k in ACTION_LAYOUT]
    assert mask.dtype == np.uint8 and mask.shape == (n, 7)
    assert mask[:, 0].tolist() == [0] * 5 + [1] * 10 + [0] * 5
    assert mask[:, 1].sum() == 4 and mask[:, 2].sum() == 0 and mask[:, 3].sum() == n
    sources = ep.metadata["action_sources"]
    assert sources["end/position"] == {"status": "indexed", "commanded_frames": 10, "index": "action/joint/index"}
    assert sources["head/position"]["status"] == "absent" and sources["joint/position"]["commanded_frames"] == 10

    ep, _ = read_all(AgibotConverter(tmp_path, {"action_gap_fill": "state"}), ref)
    np.testing.assert_allclose(ep.action[15:, :14], state[15:])
    np.testing.assert_allclose(ep.action[7, 14:16], grip[6], rtol=1e-6)  # gripper still holds (units differ)


def test_optional_state_extras(tmp_path):
    data = proprio()
    data["state/robot/position"] = np.tile([1.0, 2.0, 0.0], (20, 1))
    data["state/robot/orientation"] = np.tile([0.0, 0.0, 0.0, 1.0], (20, 1))
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, data=data))
    assert ep.extras["base_pose"].shape == (20, 7) and ep.extra_names["base_pose"][-1] == "base_qw"
    np.testing.assert_allclose(ep.extras["joint_current"], data["state/joint/current_value"], rtol=1e-6)
    del data["state/joint/current_value"]
    data["state/robot/position"] = np.zeros(0)  # empty -> absent
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, episode=1001, data=data))
    assert set(ep.extras) == {"action_commanded"}
    data["state/joint/current_value"] = np.zeros((20, 7))
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, episode=1002, data=data))
    assert "joint_current" not in ep.extras and "state/joint/current_value" in ep.metadata["ignored_fields"][0]


def _set(key, value):
    def edit(data):
        data[key] = value(data) if callable(value) else value
    return edit


def _drop(key):
    def edit(data):
        del data[key]
    return edit


BROKEN_PROPRIO = {
    "action longer than state": (_set("action/joint/position", lambda d: np.zeros((24, 14))), Reason.LENGTH_MISMATCH),
    "short action, no index": (lambda d: d.update({"action/joint/position": np.zeros((10, 14)),
                                                   "action/joint/index": np.zeros(0, np.int64)}),
                               Reason.LENGTH_MISMATCH),
    "index length": (lambda d: d.update({"action/joint/position": np.zeros((10, 14)),
                                         "action/joint/index": np.arange(9)}), Reason.LENGTH_MISMATCH),
    "index out of range": (lambda d: d.update({"action/joint/position": np.zeros((10, 14)),
                                               "action/joint/index": np.arange(15, 25)}), Reason.LENGTH_MISMATCH),
    "index not increasing": (lambda d: d.update({"action/joint/position": np.zeros((10, 14)),
                                                 "action/joint/index": np.arange(10)[::-1].copy()}),
                             Reason.CORRUPT_FILE),
    "no timestamp": (_drop("timestamp"), Reason.MISSING_KEY),
    "empty timestamp": (_set("timestamp", np.zeros(0, np.int64)), Reason.EMPTY_EPISODE),
    "no joint state": (_drop("state/joint/position"), Reason.MISSING_KEY),
    "empty head state": (_set("state/head/position", np.zeros(0)), Reason.MISSING_KEY),
    "short waist state": (_set("state/waist/position", lambda d: d["state/waist/position"][:-2]),
                          Reason.LENGTH_MISMATCH),
    "end position [N,6]": (_set("state/end/position", np.zeros((20, 6))), Reason.SHAPE_MISMATCH),
    "gripper action absent": (_set("action/effector/position", np.zeros(0)), Reason.MISSING_KEY),
    "timestamps go back": (_set("timestamp", lambda d: d["timestamp"][::-1].copy()),
                           Reason.NON_MONOTONIC_TIMESTAMPS),
    "NaN action": (lambda d: d["action/waist/position"].__setitem__((4, 1), np.nan), Reason.NON_FINITE_VALUES),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PROPRIO))
def test_broken_proprio_gives_its_reason(tmp_path, case):
    edit, reason = BROKEN_PROPRIO[case]
    data = proprio()
    edit(data)
    assert reason_of(AgibotConverter(tmp_path), build(tmp_path, data=data)).reason is reason


def test_effector_width_follows_the_task_catalogue_and_option(tmp_path):
    ref = build(tmp_path, task=327, data=proprio(effector="dexhand"))  # 327 is a gripper task
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.SHAPE_MISMATCH and "effector_types" in err.message
    conv = AgibotConverter(tmp_path, {"effector_types": {"327": "dexhand"},
                                      "cameras": {"dexhand": ["head", "hand_left", "hand_right"]},
                                      "embodiments": {"dexhand": "agibot_g1_hand6"}})
    ep, frames = read_all(conv, ref)
    assert ep.embodiment == "agibot_g1_hand6" and ep.state.shape[1] == 44 and set(frames) == {"head", "hand_left",
                                                                                               "hand_right"}


# -- timestamps, language ---------------------------------------------------------------------


def test_timestamps_are_seconds_since_the_first_frame(tmp_path):
    data = proprio()
    data["timestamp"] = data["timestamp"] + np.array([0, 900, -700] * 6 + [0, 5], dtype=np.int64)
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, data=data))
    assert ep.timestamp.dtype == np.float64 and ep.timestamp[0] == 0.0
    assert ep.timestamp_origin is TimestampOrigin.RECORDED
    np.testing.assert_allclose(ep.timestamp, (data["timestamp"] - data["timestamp"][0]) / 1e9, rtol=0, atol=1e-12)
    assert ep.metadata["timestamp_start_ns"] == T0 and ep.metadata["measured_hz"] == pytest.approx(30.0, rel=1e-3)


def test_language_and_per_frame_subtasks(samples, tmp_path):
    root, _ = samples
    ep, _ = read_all(AgibotConverter(root), "327/648655")
    assert ep.instruction.startswith("Pickup items in the supermarket. The robot stands in front of")
    assert ep.instruction_alternatives == ["Pickup items in the supermarket"]
    config = ep.metadata["label_info"]["action_config"]
    assert ep.subtasks[0] is None  # idle prefix is unlabeled
    for seg in config:
        for f in range(seg["start_frame"], min(seg["end_frame"], ep.num_frames - 1) + 1):
            assert ep.subtasks[f] == seg["action_text"]
    assert ep.metadata["subtask_frames_clipped"] == [{"segment": 2, "end_frame": ep.num_frames,
                                                      "num_frames": ep.num_frames}]
    ref = build(tmp_path, rec=record(1000, label_info=None, init_scene_text=None))
    ep, _ = read_all(AgibotConverter(tmp_path, {"instruction_template": "{task_name} | {init_scene_text}"}), ref)
    assert ep.instruction == "Pick up the cup |" and ep.subtasks is None


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, Reason.MISSING_METADATA),  # no task_info/task_327.json
        ("{not json", Reason.INVALID_METADATA),
        ('{"episode_id": 1000}', Reason.INVALID_METADATA),  # not a list
        ('[{"episode_id": 1000, "task_name": "a"}, {"episode_id": 1000, "task_name": "b"}]',
         Reason.INVALID_METADATA),
        ('[{"episode_id": 999, "task_name": "a"}]', Reason.MISSING_METADATA),  # episode not listed
        ('[{"episode_id": 1000, "task_name": " ", "init_scene_text": ""}]', Reason.MISSING_LANGUAGE),
        ('[{"episode_id": 1000, "task_name": "a", "label_info": {"action_config": [{"start_frame": 5}]}}]',
         Reason.INVALID_METADATA),
    ],
)
def test_task_info_problems(tmp_path, content, reason):
    ref = build(tmp_path)
    info = tmp_path / "task_info" / "task_327.json"
    if content is None:
        info.unlink()
    else:
        info.write_text(content)
    assert reason_of(AgibotConverter(tmp_path), ref).reason is reason


# -- cameras ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_h264_and_av1_decode_by_index(tmp_path, codec):
    ep, frames = read_all(AgibotConverter(tmp_path), build(tmp_path, codec=codec))
    assert levels(frames["head"]) == list(range(20))
    assert ep.metadata["videos"]["head"]["codec"] == {"h264": "h264", "av1": "libdav1d"}[codec]
    assert ep.metadata["videos"]["head"]["alignment"] == "index" and ep.metadata["videos"]["head"]["frames"] == 20


def test_small_frame_count_difference_is_matched_by_timestamp(tmp_path):
    ref = build(tmp_path, frames={"head": 19, "hand_left": 21, "hand_right": 20})
    ep, frames = read_all(AgibotConverter(tmp_path), ref)
    assert levels(frames["head"]) == list(range(19)) + [18]  # the video lost its last frame
    assert levels(frames["hand_left"]) == list(range(20))  # one extra video frame at the end is dropped
    assert {c: v["alignment"] for c, v in ep.metadata["videos"].items()} == {
        "head": "nearest_timestamp", "hand_left": "nearest_timestamp", "hand_right": "index"}
    err = reason_of(AgibotConverter(tmp_path, {"max_frame_drift": 0}), ref)
    assert err.reason is Reason.FRAME_COUNT_MISMATCH


def test_unreconcilable_frame_count_names_both_counts(samples):
    root, _ = samples
    err = reason_of(AgibotConverter(root), "327/648700")
    assert err.reason is Reason.FRAME_COUNT_MISMATCH
    assert "'hand_right' video has 80 frames but proprio_stats has 105 frames" in err.message


def test_missing_and_undecodable_videos(tmp_path):
    refs = [build(tmp_path, episode=1000, frames={"hand_right": None}), build(tmp_path, episode=1001),
            build(tmp_path, episode=1002)]
    (tmp_path / "observations/327/1001" / camera_file("head")).write_bytes(b"\x00" * 4096)
    video = tmp_path / "observations/327/1002" / camera_file("hand_left")
    video.write_bytes(video.read_bytes()[:-200])  # the moov atom at the end is cut
    conv = AgibotConverter(tmp_path)
    err = reason_of(conv, refs[0])
    assert err.reason is Reason.MISSING_CAMERA and "videos/hand_right_color.mp4" in err.message
    assert reason_of(conv, refs[1]).reason is Reason.VIDEO_DECODE_ERROR
    err = reason_of(conv, refs[2])
    assert err.reason is Reason.VIDEO_DECODE_ERROR and "'hand_left'" in err.message


def test_stream_cut_is_found_while_streaming(samples):
    root, _ = samples
    conv = AgibotConverter(root)
    with conv.read(lambda: conv.open_episode("390/683020")) as ep:  # opening succeeds: the header is intact
        frames = ep.cameras["hand_left"].open_frames()
        first = next(frames)
        assert first.shape == (96, 128, 3)
        with pytest.raises(EpisodeError) as info:
            for _ in frames:
                pass
    assert info.value.reason is Reason.VIDEO_DECODE_ERROR and "390/683020" in info.value.message


def test_frames_stream_lazily_and_close_with_the_context(samples, monkeypatch):
    root, _ = samples
    conv = AgibotConverter(root)
    calls = []
    original = agibot._Decoded.next
    monkeypatch.setattr(agibot._Decoded, "next", lambda self: calls.append(1) or original(self))
    with conv.read(lambda: conv.open_episode("327/648642")) as ep:
        assert calls == []  # opening decodes nothing
        frames = ep.cameras["head"].open_frames()
        next(frames)
        next(frames)
        assert len(calls) == 2  # one decoded frame per yielded frame
        frames.close()
    with pytest.raises(RuntimeError):
        next(ep.cameras["head"].open_frames())


# -- tar shards and sidecar tars ----------------------------------------------------------------


def test_tar_shards_are_read_in_place(samples):
    root, _ = samples
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    conv = AgibotConverter(root)
    pairs = list(conv.episodes("observations/390/683001-683020.tar"))
    assert [ref for ref, _ in pairs] == ["390/683001", "390/683009", "390/683020"]
    with conv.read(pairs[0][1]) as ep:
        for cam in ep.cameras.values():
            assert sum(1 for _ in cam.open_frames()) == ep.num_frames
        assert ep.metadata["layout"] == "tar" and ep.metadata["unit"] == "observations/390/683001-683020.tar"
        assert ep.metadata["proprio_from"] == "proprio_stats/683001-683130.tar:390/683001/proprio_stats.h5"
        assert ep.metadata["depth_frames"] == ep.num_frames and ep.metadata["depth_converted"] is False
        assert set(ep.metadata["camera_intrinsics"]) == {"head", "hand_left", "hand_right"}
        assert ep.extras["head_extrinsic"].shape == (ep.num_frames, 12)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before  # nothing unpacked


def test_truncated_shard_yields_the_episodes_before_the_damage(samples):
    root, _ = samples
    conv = AgibotConverter(root)
    refs = []
    with pytest.raises(EpisodeError) as info:
        for ref, opener in conv.episodes("observations/390/683101-683130.tar"):
            refs.append(ref)
            with conv.read(opener) as ep:  # readable while the generator is suspended
                assert ep.num_frames > 0
    assert refs == ["390/683101", "390/683115"]
    assert info.value.reason is Reason.CORRUPT_FILE
    assert "observations/390/683101-683130.tar" in info.value.message and "390/683130" in info.value.message


def _shard(episodes: dict[str, dict[str, bytes]]) -> bytes:
    entries = []
    for eid, files in episodes.items():
        entries.append((f"{eid}/", None))
        entries += [(f"{eid}/{rel}", data) for rel, data in sorted(files.items())]
    return agibot_samples._tar_bytes(entries)


def tarfile_open(blob: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(blob), mode="r:")


@pytest.mark.parametrize("where", ["first member", "boundary", "end marker", "garbage header"])
def test_damaged_shard_variants(tmp_path, where):
    for eid in (1, 2):
        build(tmp_path, episode=eid, frames={"head": None, "hand_left": None, "hand_right": None})
    videos = {camera_file(c): grey_video(20) for c in ("head", "hand_left", "hand_right")}
    blob = _shard({"1": videos, "2": videos})
    with tarfile_open(blob) as tf:
        first_of_2 = tf.getmember("2/videos/hand_left_color.mp4")
        dir_of_2 = tf.getmember("2")
        end = max(m.offset_data + -(-m.size // 512) * 512 for m in tf.getmembers())
    if where == "first member":  # cut inside episode 2's first file: episode 1 is complete
        blob, lost = blob[: first_of_2.offset_data + 100], "327/2"
    elif where == "boundary":  # cut exactly before episode 2's directory header: no end-of-archive block
        blob, lost = blob[: dir_of_2.offset], "327/1"
    elif where == "end marker":  # all members intact, the end-of-archive blocks are gone
        blob, lost = blob[:end], "327/2"
    else:  # a header overwritten with garbage
        blob = blob[: dir_of_2.offset] + b"\x7f" * 512 + blob[dir_of_2.offset + 512:]
        lost = "327/1"
    shard = tmp_path / "observations/327/1-2.tar"
    shard.parent.mkdir(parents=True, exist_ok=True)
    shard.write_bytes(blob)
    conv = AgibotConverter(tmp_path)
    refs = []
    with pytest.raises(EpisodeError) as info:
        for ref, _ in conv.episodes("observations/327/1-2.tar"):
            refs.append(ref)
    assert info.value.reason is Reason.CORRUPT_FILE and f"{lost} was being read" in info.value.message
    assert refs == {"327/1": [], "327/2": ["327/1"]}[lost]


def test_extracted_copy_wins_over_the_shard_copy(samples, tmp_path):
    root, _ = samples
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    (copy / "observations/390/683009/videos").mkdir(parents=True)
    refs = [ref for ref, _ in AgibotConverter(copy).episodes("observations/390/683001-683020.tar")]
    assert refs == ["390/683001", "390/683020"]


@pytest.mark.parametrize("members", ["task_relative", "root_relative"])
def test_sidecar_tars_grouped_per_task_are_found_by_member_suffix(samples, tmp_path, members):
    """proprio_stats/<task>/<first>-<last>.tar, as some releases group them, next to extracted files."""
    root, _ = samples
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    flat = copy / "proprio_stats/683001-683130.tar"
    grouped = copy / "proprio_stats/390/683001-683130.tar"
    grouped.parent.mkdir()
    with tarfile.open(flat) as src, tarfile.open(grouped, "w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None
            if members == "task_relative":
                info.name = info.name.split("390/", 1)[1] if "390/" in info.name else info.name
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    flat.unlink()
    ep, _ = read_all(AgibotConverter(copy), "390/683001")
    assert ep.metadata["proprio_from"] == "proprio_stats/390/683001-683130.tar:390/683001/proprio_stats.h5"
    ep, _ = read_all(AgibotConverter(copy), "327/648642")  # an extracted one alongside
    assert ep.num_frames > 0


def test_a_directory_by_a_shard_s_name_is_reported_not_skipped(samples, tmp_path):
    root, _ = samples
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    (copy / "observations/390/700000-700010.tar").mkdir()
    conv = AgibotConverter(copy)
    assert "observations/390/700000-700010.tar" in conv.discover()
    with pytest.raises(EpisodeError) as info:
        list(conv.episodes("observations/390/700000-700010.tar"))
    assert info.value.reason is Reason.CORRUPT_FILE and "a directory" in info.value.message


def test_proprio_lookup_failures(samples, tmp_path):
    root, _ = samples
    conv = AgibotConverter(root)
    err = reason_of(conv, "327/648671")
    assert err.reason is Reason.MISSING_FILE
    assert reason_of(conv, "327/648712").reason is Reason.CORRUPT_FILE
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    tar = copy / "proprio_stats/683001-683130.tar"
    tar.write_bytes(tar.read_bytes()[:4096])  # a damaged sidecar tar that should hold the episode
    err = reason_of(AgibotConverter(copy), "390/683009")
    assert err.reason is Reason.CORRUPT_FILE and "683001-683130.tar" in err.message


# -- camera parameters, depth, options ------------------------------------------------------------


def test_camera_parameters_read_strict_ignore(samples, tmp_path):
    root, _ = samples
    ep, _ = read_all(AgibotConverter(root), "327/648642")  # parameters/327/648642/parameters/camera/
    assert set(ep.metadata["camera_intrinsics"]) == {"head", "hand_left", "hand_right"}
    assert set(ep.metadata["camera_intrinsics"]["head"]) == {"fx", "fy", "cx", "cy"}
    assert ep.extra_names["hand_left_extrinsic"][-1] == "hand_left_tz"
    assert ep.metadata["depth_frames"] == ep.num_frames
    ep, _ = read_all(AgibotConverter(root), "327/648649")  # parameters/327/648649/camera/ (no nesting)
    assert set(ep.metadata["camera_intrinsics"]) == {"head"} and "head_extrinsic" not in ep.extras
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    (copy / "parameters/327/648642/parameters/camera/head_intrinsic_params.json").write_text("{broken")
    ep, _ = read_all(AgibotConverter(copy), "327/648642")
    assert "head" not in ep.metadata["camera_intrinsics"] and "not valid JSON" in ep.metadata[
        "camera_parameter_issues"][0]
    assert reason_of(AgibotConverter(copy, {"camera_parameters": "strict"}), "327/648642").reason is \
        Reason.INVALID_METADATA
    ep, _ = read_all(AgibotConverter(copy, {"camera_parameters": "ignore"}), "327/648642")
    assert "camera_intrinsics" not in ep.metadata and set(ep.extras) == {"action_commanded", "joint_current"}


@pytest.mark.parametrize(
    "options",
    [
        {"unknown": 1},
        {"control_hz": 0},
        {"effector_types": {"327": "claw"}},
        {"embodiments": {"gripper": "Agibot G1"}},
        {"cameras": {"gripper": []}},
        {"cameras": {"arm": ["head"]}},
        {"action_gap_fill": "zero"},
        {"max_frame_drift": -1},
        {"decode_threads": 1.5},
        {"camera_parameters": "maybe"},
        {"instruction_template": "{task}"},
    ],
)
def test_invalid_options_fail_at_construction(options):
    with pytest.raises(ValueError):
        AgibotConverter("/nonexistent", options)


def test_write_synthetic_gives_valid_episodes(tmp_path):
    agibot_samples.write_synthetic(tmp_path, episodes=2, frames=40, height=47, width=64, seed=3)
    conv = AgibotConverter(tmp_path)
    assert conv.discover() == ["observations/327/700000", "observations/327/700001"]
    assert set(through_units(conv).values()) == {None}
    ep, frames = read_all(conv, "327/700001")
    assert ep.num_frames == 40 and frames["head"].shape == (40, 48, 64, 3)  # odd height rounded up
    assert ep.metadata["videos"]["head"]["codec"] == "libdav1d"


# -- rules the mutation run showed unpinned (issue 18) ----------------------------------------------


def test_a_file_that_is_not_a_tar_is_damaged_at_byte_zero(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"not a tar archive at all" * 40)
    with pytest.raises(agibot._TarDamaged) as err:
        list(agibot._iter_tar(path))
    assert err.value.offset == 0 and err.value.detail.startswith("not a readable tar archive (")


def _read_until_damaged(path: Path) -> tuple[list[str], agibot._TarDamaged]:
    """The member names ``_iter_tar`` yields before it reports the tar damaged, and that report."""
    names = []
    with pytest.raises(agibot._TarDamaged) as err:
        for info in agibot._iter_tar(path):
            names.append(info.name)
    return names, err.value


def _negative_size(blob: bytearray, header: int) -> None:
    """Write a size of -5 (base-256, which tarfile accepts) into the header at ``header``, checksum fixed."""
    blob[header + 124 : header + 136] = b"\xff" * 11 + b"\xfb"
    blob[header + 148 : header + 156] = b" " * 8
    blob[header + 148 : header + 156] = b"%06o\0 " % sum(blob[header : header + 512])


def test_a_member_ending_exactly_at_the_file_end_is_read_and_the_missing_end_marker_reported(tmp_path):
    blob = agibot_samples._tar_bytes([("a.bin", b"x" * 512)])
    with tarfile_open(blob) as tf:
        member = tf.getmember("a.bin")
    path = tmp_path / "cut.tar"
    path.write_bytes(blob[: member.offset_data + 512])  # the data intact, the end-of-archive blocks gone
    names, damage = _read_until_damaged(path)
    assert names == ["a.bin"] and "no end-of-archive block" in damage.detail


def test_a_shard_damaged_before_any_episode_says_none_was_read(tmp_path):
    shard = tmp_path / "observations/327/1-2.tar"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"\x7f" * 2048)
    with pytest.raises(EpisodeError) as err:
        list(AgibotConverter(tmp_path).episodes("observations/327/1-2.tar"))
    assert err.value.reason is Reason.CORRUPT_FILE
    assert "damaged at byte 0" in err.value.message and "no episode was read" in err.value.message


def test_an_extracted_episode_records_its_unit(tmp_path):
    ref = build(tmp_path, episode=1000)
    conv = AgibotConverter(tmp_path)
    [(got, opener)] = list(conv.episodes("observations/327/1000"))
    with conv.read(opener) as ep:
        assert got == ref and ep.metadata["unit"] == "observations/327/1000"


def test_a_tar_member_cut_short_reads_only_the_bytes_there(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(bytes(range(10)))
    with agibot._open_member(path, 5, 10) as fh:  # the member claims 10 bytes, the file holds 5
        assert fh.read() == bytes(range(5, 10))
    with agibot._open_member(path, 2, 4) as fh:
        assert fh.read() == bytes(range(2, 6))


def test_a_shard_episode_lists_only_its_members_in_a_folder():
    files = agibot._TarFiles(Path("s.tar"), {"videos/b.mp4": (0, 1), "videos/a.mp4": (1, 1), "videos_old/c.mp4": (2, 1),
                                             "tactile/d.bin": (3, 1), "videos": (4, 0)})
    assert files.listing("videos") == ["videos/a.mp4", "videos/b.mp4"]
    assert files.listing("depth") == []


def test_camera_parameter_values_must_be_finite_and_poses_complete():
    good = {"fx": 1.0, "fy": 2, "ppx": 3.0, "ppy": 4.0}
    assert agibot._intrinsics({"intrinsic": good}, "p.json") == {"fx": 1.0, "fy": 2.0, "cx": 3.0, "cy": 4.0}
    for bad in (float("nan"), float("inf"), None, True, "1"):
        with pytest.raises(ValueError, match=r"^p\.json: intrinsic 'fx' must be a finite number, got "):
            agibot._intrinsics({"intrinsic": {**good, "fx": bad}}, "p.json")
    with pytest.raises(ValueError, match=r"^e\.json\[1\] has no extrinsic\.rotation_matrix / translation_vector$"):
        pose = {"extrinsic": {"rotation_matrix": np.eye(3).tolist(), "translation_vector": [0, 0, 0]}}
        agibot._aligned_extrinsics([pose, {"extrinsic": {"rotation_matrix": np.eye(3).tolist()}}], "e.json")


def test_the_whole_stream_is_decoded_so_a_cut_after_the_needed_frames_is_reported():
    class Cut:
        """Four frames at 0.1 s steps, then the decoder reports the stream cut short."""

        def __init__(self):
            self.i = 0

        def next(self):
            self.i += 1
            if self.i > 4:
                raise EpisodeError(Reason.VIDEO_DECODE_ERROR, "cam: stream ends early")
            return np.full((2, 2, 3), self.i, np.uint8), (self.i - 1) * 0.1

    frames = agibot._by_nearest_time(Cut(), np.array([0.0, 0.1]), "cam")
    with pytest.raises(EpisodeError, match="stream ends early"):
        list(frames)


def test_a_missing_camera_lists_the_videos_and_tactile_files_present(tmp_path):
    ref = build(tmp_path, frames={"head": 20, "hand_left": 20, "hand_right": None})
    tactile = tmp_path / "observations" / ref / "tactile"
    tactile.mkdir()
    (tactile / "left.bin").write_bytes(b"x")
    with pytest.raises(EpisodeError) as err:
        read_all(AgibotConverter(tmp_path), ref)
    assert err.value.reason is Reason.MISSING_CAMERA
    assert "'tactile/left.bin'" in err.value.message and f"'{camera_file('head')}'" in err.value.message


def test_the_scene_text_and_each_video_s_file_and_rate_are_recorded(tmp_path):
    ref = build(tmp_path)
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.metadata["init_scene_text"] == "A cup is on the table."
    for cam, video in ep.metadata["videos"].items():
        assert set(video) == {"file", "codec", "height", "width", "fps", "frames", "alignment"}
        assert video["file"] == camera_file(cam) and video["fps"] > 0 and video["frames"] == 20


@pytest.mark.parametrize("ref", ["327/abc", "abc/1000", "327", "327/"])
def test_a_ref_is_two_numbers(tmp_path, ref):
    with pytest.raises(EpisodeError) as err:
        AgibotConverter(tmp_path).open_episode(ref).__enter__()
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT and err.value.message == f"{ref}: refs are '<task>/<episode>'"


def test_an_unreadable_header_after_a_good_member_is_damage_at_that_header(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("a.bin", b"x" * 10), ("b" * 120 + ".bin", b"y" * 10)):  # a long name: a pax header first
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    blob = bytearray(buf.getvalue())
    with tarfile_open(bytes(blob)) as tf:
        second = tf.getmembers()[1]
    blob[second.offset_data - 512 : second.offset_data] = b"\x7f" * 512  # the member's own header, after its pax header
    path = tmp_path / "x.tar"
    path.write_bytes(bytes(blob))
    names, damage = _read_until_damaged(path)
    assert names == ["a.bin"] and damage.offset == second.offset and damage.detail


def test_timestamp_problems_name_the_episode(tmp_path):
    """A /timestamp that is not [N] is shape_mismatch, one that is a group unsupported_layout; both name the episode."""
    data = proprio()
    data["timestamp"] = data["timestamp"].reshape(4, 5)
    ref = build(tmp_path, data=data)
    with pytest.raises(EpisodeError) as err:
        read_all(AgibotConverter(tmp_path), ref)
    assert err.value.reason is Reason.SHAPE_MISMATCH
    assert err.value.message == f"{ref}: proprio_stats.h5:/timestamp must be [N], got (4, 5)"
    path = tmp_path / "proprio_stats" / ref / "proprio_stats.h5"
    with h5py.File(path, "a") as f:
        del f["timestamp"]
        f.create_group("timestamp")
    with pytest.raises(EpisodeError) as err:
        read_all(AgibotConverter(tmp_path), ref)
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.value.message == f"{ref}: proprio_stats.h5:/timestamp is a group, expected a dataset"


def test_float_timestamps_start_at_their_rounded_first_value(tmp_path):
    data = proprio()
    data["timestamp"] = (T0 + np.arange(20) * 33_333_333).astype(np.float64)
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, data=data))
    assert ep.metadata["timestamp_start_ns"] == int(round(float(data["timestamp"][0])))
    np.testing.assert_allclose(ep.timestamp, np.arange(20) * 0.033333333, atol=1e-6)
    data["timestamp"][0] = np.nan  # a non-finite first value is refused, not a crash
    ref = build(tmp_path, episode=1001, data=data)
    with pytest.raises(EpisodeError):
        read_all(AgibotConverter(tmp_path), ref)


@pytest.mark.parametrize("segment, words", [
    ({"start_frame": 5, "end_frame": 3, "action_text": "x"}, "has invalid frames start=5 end=3"),
    ({"start_frame": -1, "end_frame": 3, "action_text": "x"}, "has invalid frames start=-1 end=3"),
    ({"start_frame": 1, "end_frame": 3, "action_text": 7}, "has no string 'action_text': 7"),
    ("Grasp the cup.", "label_info.action_config[0] must be an object, got 'Grasp the cup.'"),
])
def test_a_label_segment_needs_ordered_frames_from_zero_and_a_text(tmp_path, segment, words):
    ref = build(tmp_path, rec=record(1000, label_info={"action_config": [segment], "key_frame": []}))
    with pytest.raises(EpisodeError) as err:
        read_all(AgibotConverter(tmp_path), ref)
    assert err.value.reason is Reason.INVALID_METADATA and words in err.value.message


def test_label_segments_with_blank_texts_only_give_no_subtasks(tmp_path):
    segments = [{"start_frame": 0, "end_frame": 5, "action_text": "  "}, {"start_frame": 6, "end_frame": 9, "action_text": ""}]
    ref = build(tmp_path, rec=record(1000, label_info={"action_config": segments, "key_frame": []}))
    assert read_all(AgibotConverter(tmp_path), ref)[0].subtasks is None


def test_an_instruction_template_may_format_its_texts():
    conv = AgibotConverter("/nowhere", {"instruction_template": "{task_name:.20} ({english_task_name:>3}) {init_scene_text!s}"})
    assert conv.options.instruction_template.startswith("{task_name:.20}")


# -- rules the seed-2 mutation sample showed unpinned (issue 18) ------------------------------------


@pytest.mark.parametrize("edit, message", [
    (_set("state/waist/position", lambda d: d["state/waist/position"][:-2]),
     "proprio_stats.h5:/state/waist/position has 18 frames but /timestamp has 20"),
    (_set("state/end/position", np.zeros((20, 6))),
     "proprio_stats.h5:/state/end/position has shape (20, 6), expected [N, 2, 3]"),
])
def test_a_misfit_state_field_names_its_numbers_and_only_an_effector_suggests_the_catalogue(tmp_path, edit, message):
    """A short state field names its own and /timestamp's frame counts; a wrong shape outside the effector is
    the file's fault, so the message does not point at options.effector_types."""
    data = proprio()
    edit(data)
    ref = build(tmp_path, data=data)
    assert reason_of(AgibotConverter(tmp_path), ref).message == f"{ref}: {message}"


def test_every_field_has_one_unit_per_dimension():
    """A unit is repeated once per named dimension, so state_units/action_units line up with the names."""
    assert agibot._units("m", 3) == ("m", "m", "m")
    specs = [*agibot.FIELDS.values(), *(s for e in agibot.EFFECTOR_TYPES.values()
                                        for s in (e.state_effector, e.action_effector))]
    assert all(len(s.units) == len(s.names) == int(np.prod(s.frame_shape)) for s in specs)


def test_a_non_string_task_text_is_invalid_metadata_naming_the_key(tmp_path):
    ref = build(tmp_path, rec=record(1000, task_name=5))
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.INVALID_METADATA
    assert err.message == f"{ref}: task_info 'task_name' must be a string, got 5"


def test_task_info_that_is_not_a_list_says_what_it_holds(tmp_path):
    ref = build(tmp_path)
    (tmp_path / "task_info" / "task_327.json").write_text('{"episode_id": 1000}')
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.message == f"{ref}: task_info/task_327.json must hold a JSON list of episode records, got dict"


def test_a_unit_that_is_neither_an_episode_folder_nor_a_shard_is_unsupported(tmp_path):
    with pytest.raises(EpisodeError) as err:
        list(AgibotConverter(tmp_path).episodes("observations/327/notes"))
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.value.message == ("observations/327/notes: not an observations/<task>/<episode> folder or "
                                 "observations/<task>/<shard>.tar")


def test_a_ref_found_nowhere_is_a_missing_file(tmp_path):
    """Neither an extracted folder nor a member of one of its task's shards: missing_file, naming the ref."""
    build(tmp_path, episode=1000)
    with pytest.raises(EpisodeError) as err:
        AgibotConverter(tmp_path).open_episode("327/1001")
    assert err.value.reason is Reason.MISSING_FILE
    assert err.value.message == "327/1001: no observations folder or shard member found"


def test_camera_parameter_problems_name_their_file(tmp_path):
    """An unusable intrinsics or extrinsics file is an issue that names the file (in 'read' mode, not an error)."""
    ref = build(tmp_path)
    camera = tmp_path / "parameters" / ref / "camera"
    camera.mkdir(parents=True)
    (camera / "head_intrinsic_params.json").write_text('{"intrinsic": {"fx": 1, "fy": 1, "ppx": 1}}')
    (camera / "hand_left_extrinsic_params_aligned.json").write_text('{"extrinsic": {}}')
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.metadata["camera_parameter_issues"] == [
        "head_intrinsic_params.json: intrinsic 'ppy' must be a finite number, got None",
        "hand_left_extrinsic_params_aligned.json must be a list of per-frame poses"]


def test_optional_cameras_are_included_only_when_present(tmp_path):
    """A tactile task reads its visuo-tactile sensor videos when they are there, and converts without them."""
    ref = build(tmp_path, task=666, effector="tactile")
    ep, frames = read_all(AgibotConverter(tmp_path), ref)
    assert ep.embodiment == "agibot_g1_tactile" and set(frames) == {"head", "hand_left", "hand_right"}
    sensor = tmp_path / "observations" / ref / camera_file("left_sensor_1")
    sensor.parent.mkdir()
    sensor.write_bytes(grey_video(20))
    _, frames = read_all(AgibotConverter(tmp_path), ref)
    assert set(frames) == {"head", "hand_left", "hand_right", "left_sensor_1"}


def test_leaving_the_episode_closes_a_camera_file_still_being_read(tmp_path, monkeypatch):
    """A frame stream abandoned half-way does not keep its video file open past the episode's context."""
    ref = build(tmp_path)
    opened = []
    original = agibot._FolderFiles.open
    monkeypatch.setattr(agibot._FolderFiles, "open", lambda self, rel: opened.append(original(self, rel)) or opened[-1])
    conv = AgibotConverter(tmp_path)
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        opened.clear()  # the probes at open time closed theirs
        frames = ep.cameras["head"].open_frames()
        next(frames)
        assert len(opened) == 1 and not opened[0].closed
    assert opened[0].closed
    frames.close()


@pytest.mark.parametrize("threads", [None, 0, 3])
def test_the_decode_threads_option_reaches_the_decoder(tmp_path, monkeypatch, threads):
    """options.decode_threads (default 1: no decoder threads; 0: FFmpeg decides) is what each camera decodes with."""
    ref = build(tmp_path)
    seen = []
    original = agibot.decode_frames
    monkeypatch.setattr(agibot, "decode_frames", lambda *a, **kw: seen.append(kw["threads"]) or original(*a, **kw))
    conv = AgibotConverter(tmp_path, None if threads is None else {"decode_threads": threads})
    read_all(conv, ref)
    assert seen == [1 if threads is None else threads] * 3


def test_a_parameters_tar_grouped_per_task_gives_only_the_camera_files(tmp_path):
    """parameters/<task>/<first>-<last>.tar with members relative to the task: files under camera/ are the
    camera parameters, in whatever subfolder; other members of the episode are not."""
    ref = build(tmp_path)
    intrinsic = json.dumps({"intrinsic": {"fx": 50.0, "fy": 50.0, "ppx": 32.0, "ppy": 24.0}}).encode()
    tar = tmp_path / "parameters/327/1000-1000.tar"
    tar.parent.mkdir(parents=True)
    tar.write_bytes(agibot_samples._tar_bytes([
        ("1000/", None), ("1000/notes.txt", b"x"),
        ("1000/parameters/camera/head_intrinsic_params.json", intrinsic),
        ("1000/parameters/lidar/hand_left_intrinsic_params.json", intrinsic),
    ]))
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.metadata["camera_parameters_from"] == "parameters/327/1000-1000.tar:327/1000"
    assert ep.metadata["camera_intrinsics"] == {"head": {"fx": 50.0, "fy": 50.0, "cx": 32.0, "cy": 24.0}}


def test_an_episode_absent_from_a_proprio_tar_does_not_get_another_episode_s_file(tmp_path):
    """Alpha's unranged proprio_stats/*.tar holds episode 1000 of the task: 1000 reads from it, 1001 (in no tar,
    not extracted) is missing_file rather than given 1000's proprio_stats.h5."""
    build(tmp_path, episode=1000)
    build(tmp_path, episode=1001)
    extracted = tmp_path / "proprio_stats/327"
    blob = (extracted / "1000/proprio_stats.h5").read_bytes()
    shutil.rmtree(extracted)
    (tmp_path / "proprio_stats/proprio_stats.tar").write_bytes(
        agibot_samples._tar_bytes([("327/1000/proprio_stats.h5", blob)]))
    conv = AgibotConverter(tmp_path)
    assert read_all(conv, "327/1000")[0].metadata["proprio_from"] == \
        "proprio_stats/proprio_stats.tar:327/1000/proprio_stats.h5"
    assert reason_of(conv, "327/1001").reason is Reason.MISSING_FILE


def test_task_info_is_read_as_utf8_whatever_the_locale(tmp_path):
    """task_info texts are Chinese in the release: they are decoded as UTF-8 even where the locale is ASCII."""
    import locale

    ref = build(tmp_path)
    (tmp_path / "task_info/task_327.json").write_text(
        json.dumps([record(1000, task_name="拿起杯子", init_scene_text=None)], ensure_ascii=False), encoding="utf-8")
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        ep, _ = read_all(AgibotConverter(tmp_path), ref)
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert ep.instruction == "拿起杯子"


def test_a_proprio_tar_member_with_a_negative_size_is_damage_not_a_crash(tmp_path):
    """A header whose base-256 size field is negative (tarfile accepts it, and h5py then failed with a
    ValueError) is where the tar is damaged: corrupt_file for the episode, like any other damaged sidecar tar."""
    ref = build(tmp_path)
    h5 = tmp_path / "proprio_stats" / ref / "proprio_stats.h5"
    blob = bytearray(agibot_samples._tar_bytes([(f"{ref}/proprio_stats.h5", h5.read_bytes())]))
    shutil.rmtree(tmp_path / "proprio_stats/327")
    _negative_size(blob, 0)
    (tmp_path / "proprio_stats/proprio_stats.tar").write_bytes(bytes(blob))
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.CORRUPT_FILE
    assert f"member {ref}/proprio_stats.h5 has a negative size (-5)" in err.message


# -- rules the seed-3 mutation sample showed unpinned (issue 18) ------------------------------------


def test_a_full_action_field_is_recorded_as_full(tmp_path):
    """An action field with one command per frame is used as is, and action_sources says so."""
    ref = build(tmp_path)
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.metadata["action_sources"]["head/position"] == {"status": "full", "commanded_frames": 20}


def test_a_command_on_frame_0_is_held_and_velocity_gaps_are_zero(tmp_path):
    """'hold' keeps a command recorded on the very first frame until the next one (the state fills only frames
    before the first command, and there are none); a velocity is never held: frames without one are 0."""
    data = proprio()
    cmd = data["action/joint/position"]
    data["action/joint/position"], data["action/joint/index"] = cmd[[0, 10]], np.array([0, 10])
    velocity = np.array([[0.5, 0.1], [0.4, -0.2]])
    data["action/robot/velocity"], data["action/robot/index"] = velocity, np.array([3, 7])
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, data=data))
    np.testing.assert_allclose(ep.action[:10, :14], np.repeat(cmd[:1], 10, axis=0), rtol=1e-6)
    np.testing.assert_allclose(ep.action[10:, :14], np.repeat(cmd[10:11], 10, axis=0), rtol=1e-6)
    expected = np.zeros((20, 2))
    expected[[3, 7]] = velocity
    np.testing.assert_allclose(ep.action[:, 20:22], expected, rtol=1e-6)


def test_a_misfit_action_field_names_its_shape_without_a_catalogue_hint(tmp_path):
    """An action field of the wrong per-frame shape is shape_mismatch naming the file's shape and the expected
    one, and nothing else."""
    data = proprio()
    data["action/end/position"] = np.zeros((20, 6))
    ref = build(tmp_path, data=data)
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.SHAPE_MISMATCH
    assert err.message == f"{ref}: proprio_stats.h5:/action/end/position has shape (20, 6), expected [N, 2, 3]"


def test_a_state_field_that_is_a_group_names_the_episode(tmp_path):
    ref = build(tmp_path)
    with h5py.File(tmp_path / "proprio_stats" / ref / "proprio_stats.h5", "a") as f:
        del f["state/head/position"]
        f.create_group("state/head/position")
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.message == f"{ref}: proprio_stats.h5:/state/head/position is a group, expected a dataset"


def test_state_extras_and_camera_poses_are_float32(tmp_path):
    """joint_current and <cam>_extrinsic are float32 [N, D] (docs/sources/agibot.md), whatever the file's dtype;
    a pose matrix with a null in it is a camera parameter issue, not a crash."""
    ref = build(tmp_path)
    camera = tmp_path / "parameters" / ref / "camera"
    camera.mkdir(parents=True)
    pose = {"extrinsic": {"rotation_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "translation_vector": [1, 2, 3]}}
    (camera / "head_extrinsic_params_aligned.json").write_text(json.dumps([pose] * 20))
    bad = {"extrinsic": {"rotation_matrix": [[1, 0, 0], [0, None, 0], [0, 0, 1]], "translation_vector": [1, 2, 3]}}
    (camera / "hand_left_extrinsic_params_aligned.json").write_text(json.dumps([pose, bad]))
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.extras["joint_current"].dtype == np.float32
    poses = ep.extras["head_extrinsic"]
    assert poses.dtype == np.float32 and poses.shape == (20, 12)
    assert poses[0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3]
    assert ep.metadata["camera_parameter_issues"] == [
        "hand_left_extrinsic_params_aligned.json[1] must hold a finite 3x3 rotation and 3-vector translation"]


def test_a_video_that_decodes_no_frame_says_so():
    class Empty:
        def next(self):
            return None

    with pytest.raises(EpisodeError) as err:
        list(agibot._by_nearest_time(Empty(), np.array([0.0, 0.1]), "cam"))
    assert err.value.reason is Reason.VIDEO_DECODE_ERROR and err.value.message == "cam: video has no frames"


def test_frames_without_a_full_presentation_time_are_timed_by_count():
    """A frame needs both pts and time_base to be timed by them; otherwise its time is its count at the rate."""
    from fractions import Fraction

    class Frame:
        def __init__(self, pts, time_base):
            self.pts, self.time_base = pts, time_base

        def to_ndarray(self, format):
            return np.zeros((2, 2, 3), np.uint8)

    video = agibot._Video("head", "videos/head_color.mp4", "h264", 2, 2, 25.0, 3, "index")
    for frames in ([Frame(None, Fraction(1, 90000))] * 3, [Frame(i * 3600, None) for i in range(3)]):
        decoded = agibot._Decoded(iter(frames), video)
        assert [decoded.next()[1] for _ in range(3)] == [0.0, 0.04, 0.08]
    decoded = agibot._Decoded(iter([Frame(i * 3600 + 100, Fraction(1, 90000)) for i in range(2)]), video)
    assert [decoded.next()[1] for _ in range(2)] == [0.0, 0.04]


def test_a_one_byte_tar_member_is_read():
    """The last byte of a member is data like any other (a member of one byte reads as that byte)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.bin"
        path.write_bytes(bytes(range(10)))
        with agibot._open_member(path, 7, 1) as fh:
            assert fh.read() == b"\x07"


def test_a_negative_member_size_is_damage_at_that_member_s_header(tmp_path):
    blob = bytearray(agibot_samples._tar_bytes([("a.bin", b"x" * 10), ("b.bin", b"y" * 10)]))
    header = 1024  # a.bin's header and its one data block come first
    assert blob[header : header + 5] == b"b.bin"
    _negative_size(blob, header)
    path = tmp_path / "x.tar"
    path.write_bytes(bytes(blob))
    names, damage = _read_until_damaged(path)
    assert names == ["a.bin"] and damage.offset == header and damage.member.name == "b.bin"
    assert damage.detail == "member b.bin has a negative size (-5)"


def test_a_member_running_past_the_end_says_both_sizes(tmp_path):
    blob = agibot_samples._tar_bytes([("a.bin", b"x" * 1000)])
    path = tmp_path / "cut.tar"
    path.write_bytes(blob[:612])
    with pytest.raises(agibot._TarDamaged) as err:
        list(agibot._iter_tar(path))
    assert err.value.offset == 512 and err.value.member.name == "a.bin"
    assert err.value.detail == "member a.bin (1000 bytes) runs past the end of the file (612 bytes)"


def test_shard_members_named_with_a_leading_dot_slash_keep_their_episode_id(tmp_path):
    """A shard packed as './<episode>/videos/...' gives the same episode as one packed without './'."""
    build(tmp_path, episode=1000, frames={"head": None, "hand_left": None, "hand_right": None})
    shard = tmp_path / "observations/327/1000-1000.tar"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(agibot_samples._tar_bytes(
        [("./1000/", None)] + [(f"./1000/{camera_file(c)}", grey_video(20)) for c in ("head", "hand_left", "hand_right")]))
    conv = AgibotConverter(tmp_path)
    [(ref, opener)] = list(conv.episodes("observations/327/1000-1000.tar"))
    assert ref == "327/1000"
    with conv.read(opener) as ep:
        assert ep.cameras["head"].source_file == "observations/327/1000-1000.tar:videos/head_color.mp4"


def test_an_episode_split_across_a_shard_is_reported_after_its_runs(tmp_path):
    """Members of one episode that come back after another episode's are unsupported_layout for the unit,
    raised once every run has been yielded."""
    shard = tmp_path / "observations/327/1-2.tar"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(agibot_samples._tar_bytes([("1/videos/head_color.mp4", b"a"), ("2/videos/head_color.mp4", b"b"),
                                                 ("1/videos/hand_left_color.mp4", b"c")]))
    refs = []
    with pytest.raises(EpisodeError) as err:
        for ref, _ in AgibotConverter(tmp_path).episodes("observations/327/1-2.tar"):
            refs.append(ref)
    assert refs[:2] == ["327/1", "327/2"] and err.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert "members of episode(s) ['1'] are not contiguous" in err.value.message


@pytest.mark.parametrize("unit", ["elsewhere/327/1000", "observations/abc/1000", "observations/327/1000/videos"])
def test_only_units_under_observations_task_are_work_units(tmp_path, unit):
    build(tmp_path)
    with pytest.raises(EpisodeError) as err:
        list(AgibotConverter(tmp_path).episodes(unit))
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT


def test_an_episode_opened_by_ref_records_its_folder_as_unit(tmp_path):
    ref = build(tmp_path)
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.metadata["unit"] == "observations/327/1000" and ep.metadata["layout"] == "extracted"


def test_label_info_without_action_config_gives_no_subtasks(tmp_path):
    """label_info with key frames only (no action_config) is valid: the episode converts without subtasks."""
    ref = build(tmp_path, rec=record(1000, label_info={"key_frame": []}))
    ep, _ = read_all(AgibotConverter(tmp_path), ref)
    assert ep.subtasks is None and ep.metadata["label_info"] == {"key_frame": []}


def test_an_unreadable_task_info_is_corrupt_file_naming_it(tmp_path, monkeypatch):
    ref = build(tmp_path)
    original = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "task_327.json":
            raise OSError("Input/output error")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.CORRUPT_FILE
    assert err.message == f"{ref}: cannot read task_info/task_327.json: Input/output error"


@pytest.mark.parametrize("eid", ['"x"', "true", "1.5", "null"])
def test_a_record_without_an_integer_episode_id_is_invalid_metadata(tmp_path, eid):
    ref = build(tmp_path)
    (tmp_path / "task_info/task_327.json").write_text(f'[{{"episode_id": 1000, "task_name": "a"}}, '
                                                      f'{{"episode_id": {eid}}}]')
    err = reason_of(AgibotConverter(tmp_path), ref)
    assert err.reason is Reason.INVALID_METADATA
    assert err.message == f"{ref}: task_info/task_327.json[1] has no integer 'episode_id': {json.loads(eid)!r}"


def test_measured_hz_is_rounded_to_three_decimals(tmp_path):
    data = proprio()
    data["timestamp"] = T0 + np.arange(20, dtype=np.int64) * 30_000_000  # 33.33... Hz
    ep, _ = read_all(AgibotConverter(tmp_path), build(tmp_path, data=data))
    assert ep.metadata["measured_hz"] == 33.333
