"""The in-house (ALOHA/ACT HDF5) converter, exercised directly on files written here.

Fixture files are built from a dict ``{hdf5 key: array}`` so each test states the one
thing it breaks. The spec these tests hold the converter to is docs/inhouse_format.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from converters import get_converter
from converters.inhouse import InhouseConverter, TaskMetadata
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, TimestampOrigin
from pipelines.samples import inhouse as inhouse_samples
from pipelines.samples.toolkit import encode_jpeg

JOINTS = ["j1", "j2", "gripper"]
CAMERAS = ["cam_front", "cam_wrist"]
FPS = 20.0


# -- fixture builders -------------------------------------------------------------------


def smooth_frames(num_frames: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Frames with gradients and a moving square: JPEG-friendly, different every frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    for t in range(num_frames):
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 60 + 10 * seed)], axis=-1)
        x0 = 2 + t % (w - 10)
        img[6:14, x0 : x0 + 8] = (250, 250, 30)
        out[t] = img
    return out


def metadata(**overrides) -> dict:
    meta = {
        "instruction": "pick up the cube",
        "robot_type": "franka",
        "fps": FPS,
        "camera_names": list(CAMERAS),
        "joint_names": list(JOINTS),
    }
    meta.update(overrides)
    return {k: v for k, v in meta.items() if v is not None}


def datasets(num_frames: int = 12, layout: str = "raw", channel_order: str = "RGB") -> tuple[dict, dict]:
    """``{key: value}`` for one valid episode, and the RGB frames each camera should yield."""
    t = np.arange(num_frames, dtype=np.float64)
    qpos = np.stack([np.sin(t / 5), np.cos(t / 7), np.linspace(0.08, 0.04, num_frames)], axis=1)
    data: dict = {
        "/observations/qpos": qpos,
        "/observations/qvel": np.gradient(qpos, axis=0) * FPS,
        "/observations/effort": qpos * 2.0,
        "/action": np.concatenate([qpos[1:], qpos[-1:]]),
    }
    frames = {cam: smooth_frames(num_frames, seed=i) for i, cam in enumerate(CAMERAS)}
    lengths = []
    for cam, rgb in frames.items():
        stored = rgb[..., ::-1] if channel_order == "BGR" else rgb
        key = f"/observations/images/{cam}"
        if layout == "raw":
            data[key] = np.ascontiguousarray(stored)
            continue
        blobs = [encode_jpeg(np.ascontiguousarray(f), quality=95) for f in stored]
        lengths.append([len(b) for b in blobs])
        if layout == "jpeg_vlen":
            data[key] = ("vlen", blobs)
        else:
            padded = max(len(b) for b in blobs) + 7
            rows = np.zeros((num_frames, padded), dtype=np.uint8)
            for i, b in enumerate(blobs):
                rows[i, : len(b)] = np.frombuffer(b, np.uint8)
            data[key] = rows
    if layout == "jpeg_padded":
        data["/compress_len"] = np.asarray(lengths, dtype=np.float32)
    return data, frames


def write_h5(path: Path, data: dict, attrs: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in (attrs if attrs is not None else {"sim": False, "compress": False}).items():
            f.attrs[name] = value
        for key, value in data.items():
            if isinstance(value, tuple) and value[0] == "vlen":
                ds = f.create_dataset(key, (len(value[1]),), dtype=h5py.vlen_dtype(np.uint8))
                for i, blob in enumerate(value[1]):
                    ds[i] = np.frombuffer(blob, np.uint8)
            else:
                f.create_dataset(key, data=value)
    return path


def make_task(root: Path, data: dict, meta: dict | None = None, name: str = "episode_0.hdf5",
              folder: str = "task", attrs: dict | None = None) -> str:
    (root / folder).mkdir(parents=True, exist_ok=True)
    if meta is not False:
        (root / folder / "metadata.json").write_text(json.dumps(meta or metadata()))
    write_h5(root / folder / name, data, attrs)
    return f"{folder}/{name}"


def read_all(conv: InhouseConverter, ref: str):
    """Read an episode through ``Converter.read`` and consume every camera frame."""
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        frames = {name: np.stack(list(cam.open_frames())) for name, cam in ep.cameras.items()}
        return ep, frames


def reason_of(conv: InhouseConverter, ref: str) -> Reason:
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert ref in info.value.message  # errors name the episode
    return info.value.reason


# -- registry and discovery ------------------------------------------------------------


def test_registered_with_declared_schema():
    cls = get_converter("inhouse")
    assert cls is InhouseConverter
    assert cls.source_version == "aloha-hdf5-1" and cls.converter_version == "1.2.0"
    assert {"franka", "ur5", "arx5", "agibot_g1", "aloha", "sawyer"} <= set(cls.embodiments)
    assert cls.control_hz == 50.0


def test_discover_is_natural_and_relative(tmp_path):
    for rel in ["b_task/episode_10.hdf5", "b_task/episode_2.hdf5", "b_task/episode_1.hdf5",
                "a_task/episode_0.hdf5", "nested/sub/episode_3.hdf5", "no_meta/episode_0.hdf5",
                ".cache/episode_0.hdf5", "b_task/notes.hdf5", "b_task/episode_1.h5"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "b_task" / "episode_9.hdf5").mkdir()  # listed, so that it is reported (corrupt_file), not lost
    assert InhouseConverter(tmp_path).discover() == [
        "a_task/episode_0.hdf5",
        "b_task/episode_1.hdf5",
        "b_task/episode_2.hdf5",
        "b_task/episode_9.hdf5",
        "b_task/episode_10.hdf5",
        "nested/sub/episode_3.hdf5",
        "no_meta/episode_0.hdf5",
    ]


def test_discover_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        InhouseConverter(tmp_path / "absent").discover()


# -- metadata.json ---------------------------------------------------------------------


def test_metadata_defaults():
    meta = TaskMetadata.from_dict(metadata(robot_type="fr3"), "t")
    assert meta.embodiment == "franka"
    assert meta.action_names is None and meta.action_kind is ActionKind.JOINT_POSITION
    assert meta.image_channel_order == "RGB" and meta.instruction_alternatives == ()
    assert meta.for_episode("episode_0.hdf5") == ("pick up the cube", [])


def test_metadata_explicit_values_and_episode_override():
    meta = TaskMetadata.from_dict(
        metadata(
            robot_type="my_rig",
            embodiment="arx5",
            action_names=["a1", "a2", "a3"],
            action_kind="joint_velocity",
            image_channel_order="BGR",
            instruction_alternatives=["grab the cube"],
            episodes={"episode_4.hdf5": {"instruction": "pick up the red cube"}},
            extra={"operator": "kim"},
        ),
        "t",
    )
    assert meta.embodiment == "arx5" and meta.action_kind is ActionKind.JOINT_VELOCITY
    assert meta.for_episode("episode_4.hdf5") == ("pick up the red cube", ["grab the cube"])
    assert meta.for_episode("episode_5.hdf5") == ("pick up the cube", ["grab the cube"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"instruction": None},
        {"instruction": 3},
        {"fps": 0},
        {"fps": "fifty"},
        {"fps": True},
        {"camera_names": []},
        {"camera_names": ["cam_high", ".."]},  # a name that is a path: never an HDF5 lookup outside images/
        {"camera_names": ["cam_high", "../qpos"]},
        {"joint_names": ["a", "a", "b"]},
        {"robot_type": "Franka Panda"},
        {"robot_type": "spot"},  # no default embodiment
        {"embodiment": "spot"},
        {"action_kind": "torque"},
        {"image_channel_order": "rgb"},
        {"instruciton": "typo"},
        {"episodes": {"episode_1.hdf5": {"fps": 10}}},
        {"episodes": {"ep1": {"instruction": "x"}}},
    ],
)
def test_metadata_invalid(overrides):
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_dict(metadata(**overrides), "t")
    assert info.value.reason is Reason.INVALID_METADATA


def test_metadata_file_problems(tmp_path):
    data, _ = datasets()
    conv = InhouseConverter(tmp_path)
    assert reason_of(conv, make_task(tmp_path, data, meta=False)) is Reason.MISSING_METADATA
    (tmp_path / "task" / "metadata.json").write_text("{not json")
    assert reason_of(conv, "task/episode_0.hdf5") is Reason.INVALID_METADATA
    (tmp_path / "task" / "metadata.json").write_text("[1, 2]")
    assert reason_of(conv, "task/episode_0.hdf5") is Reason.INVALID_METADATA
    (tmp_path / "task" / "metadata.json").write_text(json.dumps(metadata(format_version=2)))
    assert reason_of(conv, "task/episode_0.hdf5") is Reason.UNSUPPORTED_LAYOUT


# -- layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("channel_order", ["RGB", "BGR"])
def test_raw_frames_exact(tmp_path, channel_order):
    data, frames = datasets(layout="raw", channel_order=channel_order)
    ref = make_task(tmp_path, data, metadata(image_channel_order=channel_order))
    ep, got = read_all(InhouseConverter(tmp_path), ref)
    for cam in CAMERAS:
        assert got[cam].dtype == np.uint8 and got[cam].shape == frames[cam].shape
        np.testing.assert_array_equal(got[cam], frames[cam])
    assert ep.metadata["image_layouts"] == {cam: "raw" for cam in CAMERAS}


@pytest.mark.parametrize("layout", ["jpeg_padded", "jpeg_vlen"])
@pytest.mark.parametrize("channel_order", ["RGB", "BGR"])
def test_jpeg_frames_close(tmp_path, layout, channel_order):
    data, frames = datasets(layout=layout, channel_order=channel_order)
    ref = make_task(tmp_path, data, metadata(image_channel_order=channel_order),
                    attrs={"sim": False, "compress": True})
    ep, got = read_all(InhouseConverter(tmp_path), ref)
    for cam in CAMERAS:
        assert got[cam].shape == frames[cam].shape
        assert np.abs(got[cam].astype(int) - frames[cam]).mean() < 3
    assert ep.metadata["image_layouts"] == {cam: layout for cam in CAMERAS}
    assert ep.metadata["compress"] is True


def test_padded_without_compress_len(tmp_path):
    data, frames = datasets(layout="jpeg_padded")
    del data["/compress_len"]  # the decoder stops at the JPEG end marker; zero padding is ignored
    ep, got = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data))
    assert np.abs(got["cam_front"].astype(int) - frames["cam_front"]).mean() < 3


def test_state_action_extras_and_metadata(tmp_path):
    data, _ = datasets(num_frames=15)
    meta = metadata(instruction_alternatives=["lift the cube"], extra={"operator": "kim"},
                    episodes={"episode_7.hdf5": {"instruction": "pick up the blue cube"}})
    ref = make_task(tmp_path, data, meta, name="episode_7.hdf5", attrs={"sim": True, "compress": False})
    ep, _ = read_all(InhouseConverter(tmp_path), ref)
    assert ep.source == "inhouse" and ep.source_version == "aloha-hdf5-1"
    assert ep.embodiment == "franka" and ep.robot_type == "franka" and ep.control_hz == FPS
    assert ep.state.dtype == np.float32 and ep.state_names == JOINTS
    np.testing.assert_allclose(ep.state, data["/observations/qpos"], rtol=1e-6)
    np.testing.assert_allclose(ep.action, data["/action"], rtol=1e-6)
    assert ep.action_names == JOINTS and ep.action_kind is ActionKind.JOINT_POSITION
    assert ep.instruction == "pick up the blue cube" and ep.instruction_alternatives == ["lift the cube"]
    assert set(ep.extras) == {"qvel", "effort"}
    np.testing.assert_allclose(ep.extras["qvel"], data["/observations/qvel"], rtol=1e-5)
    assert ep.extra_names == {"qvel": [f"{j}_vel" for j in JOINTS], "effort": [f"{j}_effort" for j in JOINTS]}
    assert ep.metadata == {
        "task_folder": "task",
        "episode_file": "episode_7.hdf5",
        "episode_index": 7,
        "sim": True,
        "compress": False,
        "image_layouts": {"cam_front": "raw", "cam_wrist": "raw"},
        "image_channel_order": "RGB",
        "extra": {"operator": "kim"},
    }
    json.dumps(ep.metadata)


def test_optional_streams_absent_and_unlisted_camera(tmp_path):
    data, _ = datasets()
    del data["/observations/qvel"], data["/observations/effort"]
    data["/observations/images/cam_extra"] = data["/observations/images/cam_front"]
    ep, frames = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data, attrs={}))
    assert ep.extras == {} and ep.extra_names == {}
    assert set(frames) == set(CAMERAS) and ep.metadata["unlisted_cameras"] == ["cam_extra"]
    assert ep.metadata["sim"] is None and ep.metadata["compress"] is None
    assert "success" not in ep.metadata  # no outcome attribute: none claimed


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("false", False), (np.int8(1), True)])
def test_a_recorded_outcome_becomes_metadata_success(tmp_path, value, expected):
    data, _ = datasets()
    meta = metadata(robot_type="sawyer")
    ref = make_task(tmp_path, data, meta, attrs={"sim": True, "compress": False, "success": value})
    ep, _ = read_all(InhouseConverter(tmp_path), ref)
    assert ep.metadata["success"] is expected and ep.metadata["sim"] is True
    assert ep.embodiment == "sawyer" and ep.robot_type == "sawyer"


def test_timestamps_from_fps_or_recorded(tmp_path):
    data, _ = datasets(num_frames=10)
    conv = InhouseConverter(tmp_path)
    ep, _ = read_all(conv, make_task(tmp_path, data))
    assert ep.timestamp_origin is TimestampOrigin.FROM_CONTROL_RATE
    np.testing.assert_allclose(ep.timestamp, np.arange(10) / FPS)
    recorded = 1.7e9 + np.arange(10) * 0.051
    data["/timestamp"] = recorded
    ep, _ = read_all(conv, make_task(tmp_path, data, name="episode_1.hdf5"))
    assert ep.timestamp_origin is TimestampOrigin.RECORDED and ep.timestamp.dtype == np.float64
    np.testing.assert_array_equal(ep.timestamp, recorded)


def test_action_names_and_kind_from_metadata(tmp_path):
    data, _ = datasets()
    data["/action"] = np.zeros((12, 2))
    meta = metadata(action_names=["vx", "vy"], action_kind="ee_velocity")
    ep, _ = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data, meta))
    assert ep.action_names == ["vx", "vy"] and ep.action_kind is ActionKind.EE_VELOCITY


def test_frames_stream_lazily_and_file_closes(tmp_path):
    data, _ = datasets(num_frames=30, layout="jpeg_vlen")
    blobs = data["/observations/images/cam_wrist"][1]
    blobs[25] = blobs[25][:40]  # only frame 25 is broken
    conv = InhouseConverter(tmp_path, {"frame_block": 4})
    ref = make_task(tmp_path, data)
    with conv.read(lambda: conv.open_episode(ref)) as ep:  # opening does not decode
        frames = ep.cameras["cam_wrist"].open_frames()
        for _ in range(25):
            assert next(frames).shape == (48, 64, 3)
        with pytest.raises(EpisodeError) as info:
            next(frames)
        assert info.value.reason is Reason.IMAGE_DECODE_ERROR
        assert "cam_wrist[25]" in info.value.message
    with pytest.raises(Exception):
        next(ep.cameras["cam_front"].open_frames())  # the HDF5 file is closed with the context


# -- broken inputs -------------------------------------------------------------------------


def _drop(key):
    def edit(data):
        del data[key]
    return edit


def _set(key, fn):
    def edit(data):
        data[key] = fn(data)
    return edit


BROKEN = {
    "no qpos": (_drop("/observations/qpos"), Reason.MISSING_KEY),
    "no action": (_drop("/action"), Reason.MISSING_KEY),
    "action truncated": (_set("/action", lambda d: d["/action"][:-3]), Reason.LENGTH_MISMATCH),
    "qvel truncated": (_set("/observations/qvel", lambda d: d["/observations/qvel"][:-1]), Reason.LENGTH_MISMATCH),
    "timestamp truncated": (_set("/timestamp", lambda d: np.arange(11.0)), Reason.LENGTH_MISMATCH),
    "qpos 1-D": (_set("/observations/qpos", lambda d: d["/observations/qpos"][:, 0]), Reason.SHAPE_MISMATCH),
    "qpos too wide": (_set("/observations/qpos", lambda d: np.zeros((12, 4))), Reason.NAME_MISMATCH),
    "action too wide": (_set("/action", lambda d: np.zeros((12, 5))), Reason.NAME_MISMATCH),
    "effort too narrow": (_set("/observations/effort", lambda d: np.zeros((12, 2))), Reason.NAME_MISMATCH),
    "qpos strings": (_set("/observations/qpos", lambda d: np.array([[b"x"] * 3] * 12)), Reason.UNSUPPORTED_LAYOUT),
    "camera missing": (_drop("/observations/images/cam_wrist"), Reason.MISSING_CAMERA),
    "camera short": (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"][:-2]),
                     Reason.FRAME_COUNT_MISMATCH),
    "image 3-D": (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"][..., 0]),
                  Reason.SHAPE_MISMATCH),
    "image float": (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"] / 255.0),
                    Reason.UNSUPPORTED_LAYOUT),
    "nan action": (_set("/action", lambda d: np.where(np.arange(12)[:, None] == 5, np.nan, d["/action"])),
                   Reason.NON_FINITE_VALUES),
    "empty episode": (lambda d: d.update({k: v[:0] for k, v in d.items()}), Reason.EMPTY_EPISODE),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inputs(tmp_path, case):
    edit, reason = BROKEN[case]
    data, _ = datasets(num_frames=12)
    edit(data)
    assert reason_of(InhouseConverter(tmp_path), make_task(tmp_path, data)) is reason


def test_empty_instruction_is_missing_language(tmp_path):
    data, _ = datasets()
    ref = make_task(tmp_path, data, metadata(instruction="  "))
    assert reason_of(InhouseConverter(tmp_path), ref) is Reason.MISSING_LANGUAGE


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.9])
def test_truncated_or_garbage_file_is_corrupt(tmp_path, keep):
    data, _ = datasets()
    ref = make_task(tmp_path, data)
    path = tmp_path / ref
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)] if keep else b"not an hdf5 file")
    assert reason_of(InhouseConverter(tmp_path), ref) is Reason.CORRUPT_FILE


def test_compress_len_problems(tmp_path):
    conv = InhouseConverter(tmp_path)
    data, _ = datasets(layout="jpeg_padded")
    data["/compress_len"] = data["/compress_len"][:, :-1]
    assert reason_of(conv, make_task(tmp_path, data, name="episode_0.hdf5")) is Reason.FRAME_COUNT_MISMATCH
    data, _ = datasets(layout="jpeg_padded")
    data["/compress_len"] = data["/compress_len"][:1]
    assert reason_of(conv, make_task(tmp_path, data, name="episode_1.hdf5")) is Reason.SHAPE_MISMATCH
    data, _ = datasets(layout="jpeg_padded")
    data["/compress_len"][1, 4] = 10_000  # longer than the padded row
    assert reason_of(conv, make_task(tmp_path, data, name="episode_2.hdf5")) is Reason.IMAGE_DECODE_ERROR


def test_frames_of_changing_size_are_a_shape_mismatch(tmp_path):
    data, _ = datasets(layout="jpeg_vlen")
    blobs = data["/observations/images/cam_front"][1]
    blobs[3] = encode_jpeg(np.zeros((10, 10, 3), np.uint8))
    assert reason_of(InhouseConverter(tmp_path), make_task(tmp_path, data)) is Reason.SHAPE_MISMATCH


# -- sample generator ----------------------------------------------------------------------


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples") / "inhouse"
    expected = inhouse_samples.write_samples(root, seed=0)
    return root, expected


def test_every_path_named_like_an_episode_gets_an_outcome(samples, tmp_path):
    import shutil

    root, expected = samples
    src = tmp_path / "input"
    shutil.copytree(root, src, symlinks=True)
    (src / "franka_pick_cube" / "episode_20.hdf5").symlink_to("/nonexistent/episode_20.hdf5")  # moved data
    (src / "franka_pick_cube" / "episode_21.hdf5").mkdir()
    conv = InhouseConverter(src)
    assert set(conv.discover()) == set(expected) | {"franka_pick_cube/episode_20.hdf5", "franka_pick_cube/episode_21.hdf5"}
    for ref, reason, words in (("franka_pick_cube/episode_20.hdf5", Reason.MISSING_FILE, "/nonexistent/episode_20.hdf5"),
                               ("franka_pick_cube/episode_21.hdf5", Reason.CORRUPT_FILE, "a directory")):
        with pytest.raises(EpisodeError) as info:
            with conv.open_episode(ref):
                pass
        assert info.value.reason == reason and words in info.value.message


def test_another_seed_gives_other_samples_with_the_same_outcomes(samples, tmp_path):
    root, expected = samples
    # the same seed giving the same bytes, in another process: test_converter_conformance
    other = inhouse_samples.write_samples(tmp_path / "other", seed=1)
    assert other == expected  # same episodes and outcomes, different content
    hashes, other_hashes = file_hashes(root), file_hashes(tmp_path / "other")
    assert all(hashes[k] != other_hashes[k] for k in hashes if k.endswith(".hdf5"))


def test_samples_shape(samples):
    root, expected = samples
    refs = InhouseConverter(root).discover()
    assert set(refs) == set(expected)
    franka = [r.split("/")[1] for r in refs if r.startswith("franka_pick_cube/")]
    assert franka[-3:] == ["episode_7.hdf5", "episode_10.hdf5", "episode_11.hdf5"]  # natural order
    assert not (root / "arx5_fold_towel" / "metadata.json").exists()
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 6_000_000
    good = [r for r, v in expected.items() if v is None]
    assert len(good) >= 15
    assert set(expected.values()) - {None} == {
        r.value
        for r in (Reason.LENGTH_MISMATCH, Reason.CORRUPT_FILE, Reason.MISSING_KEY, Reason.MISSING_CAMERA,
                  Reason.NON_FINITE_VALUES, Reason.IMAGE_DECODE_ERROR, Reason.FRAME_COUNT_MISMATCH,
                  Reason.MISSING_METADATA)
    }


def test_samples_read_as_declared(samples):
    root, expected = samples
    conv = InhouseConverter(root)
    embodiments = set()
    for ref in conv.discover():
        if expected[ref] is not None:
            assert reason_of(conv, ref) == expected[ref], ref
            continue
        ep, frames = read_all(conv, ref)
        embodiments.add(ep.embodiment)
        n = ep.num_frames
        assert 40 <= n <= 160
        assert all(len(f) == n for f in frames.values())
        # idle prefix: the first ~10% of frames are still, in state and in every camera
        idle = max(3, n // 10)
        assert np.all(ep.state[:idle] == ep.state[0])
        for f in frames.values():
            assert np.all(f[:idle] == f[0])
        assert np.abs(np.diff(ep.state, axis=0)).max() > 1e-3  # but the robot does move
    assert embodiments == {"franka", "aloha", "ur5"}


def test_write_synthetic_writes_valid_episodes_of_the_requested_size(tmp_path):
    from converters.inhouse import InhouseConverter

    inhouse_samples.write_synthetic(tmp_path, episodes=2, frames=70, height=40, width=56, seed=1)
    conv = InhouseConverter(tmp_path)
    refs = conv.discover()
    assert len(refs) == 2
    for ref, opener in conv.episodes(refs[0]):
        with conv.read(opener) as ep:
            assert ep.num_frames == 70 and len(ep.cameras) == 3
            frame = next(iter(ep.cameras["cam_high"].open_frames()))
            assert frame.shape == (40, 56, 3)


# -- rules at their edges (issue 18: what the mutation run showed no test pinned) ---------------


@pytest.mark.parametrize(
    "raw, reason, message",
    [
        ([1], Reason.INVALID_METADATA, "top level must be a JSON object, got list"),
        (metadata(format_version=True), Reason.UNSUPPORTED_LAYOUT, "format_version True (this converter reads 1)"),
        (metadata(format_version=2), Reason.UNSUPPORTED_LAYOUT, "format_version 2 (this converter reads 1)"),
        (metadata(instruction=None), Reason.INVALID_METADATA, "missing required key 'instruction'"),
        (metadata(joint_names=None), Reason.INVALID_METADATA, "missing required key 'joint_names'"),
        (metadata(instruction=3), Reason.INVALID_METADATA, "'instruction' must be a string, got 3"),
        (metadata(robot_type=3), Reason.INVALID_METADATA, "'robot_type' must be a lowercase slug like 'franka', got 3"),
        (metadata(robot_type="Franka"), Reason.INVALID_METADATA,
         "'robot_type' must be a lowercase slug like 'franka', got 'Franka'"),
        (metadata(robot_type="spot"), Reason.INVALID_METADATA,
         "robot_type 'spot' has no default embodiment; set 'embodiment' (one of ('agibot_g1', 'aloha', 'arx5', "
         "'franka', 'sawyer', 'ur5'))"),
        (metadata(embodiment="spot"), Reason.INVALID_METADATA,
         "embodiment 'spot' is not one of ('agibot_g1', 'aloha', 'arx5', 'franka', 'sawyer', 'ur5')"),
        (metadata(fps=float("inf")), Reason.INVALID_METADATA, "'fps' must be a number > 0, got inf"),
        (metadata(fps=-1), Reason.INVALID_METADATA, "'fps' must be a number > 0, got -1"),
        (metadata(fps=True), Reason.INVALID_METADATA, "'fps' must be a number > 0, got True"),
        (metadata(camera_names="cam"), Reason.INVALID_METADATA, "'camera_names' must be a list of strings, got 'cam'"),
        (metadata(camera_names=["a", 1]), Reason.INVALID_METADATA,
         "'camera_names' must be a list of strings, got ['a', 1]"),
        (metadata(camera_names=[]), Reason.INVALID_METADATA, "'camera_names' must not be empty"),
        (metadata(joint_names=["a", ""]), Reason.INVALID_METADATA,
         "'joint_names' must hold unique non-empty names, got ['a', '']"),
        (metadata(joint_names=["a", "a"]), Reason.INVALID_METADATA,
         "'joint_names' must hold unique non-empty names, got ['a', 'a']"),
        (metadata(camera_names=["a/b", ".", "c"]), Reason.INVALID_METADATA,
         "'camera_names' holds names that are paths, not names: ['a/b', '.']"),
        (metadata(action_names=[]), Reason.INVALID_METADATA, "'action_names' must not be empty"),
        (metadata(action_kind="torque"), Reason.INVALID_METADATA,
         "'action_kind' 'torque' is not one of ['joint_position', 'joint_velocity', 'joint_position_delta', "
         "'ee_pose', 'ee_velocity', 'ee_pose_delta', 'next_state']"),
        (metadata(image_channel_order="rgb"), Reason.INVALID_METADATA,
         "'image_channel_order' must be one of ('RGB', 'BGR'), got 'rgb'"),
        (metadata(instruction_alternatives="x"), Reason.INVALID_METADATA,
         "'instruction_alternatives' must be a list of strings, got 'x'"),
        (metadata(episodes=[]), Reason.INVALID_METADATA, "'episodes' must be an object keyed by episode file name"),
        (metadata(episodes={"ep1": {}}), Reason.INVALID_METADATA,
         "'episodes' key 'ep1' is not an episode file name like 'episode_3.hdf5'"),
        (metadata(episodes={"episode_1.hdf5": "x"}), Reason.INVALID_METADATA,
         "'episodes['episode_1.hdf5']' may only set ['instruction', 'instruction_alternatives'], got 'x'"),
        (metadata(episodes={"episode_1.hdf5": {"instruction": 1}}), Reason.INVALID_METADATA,
         "'episodes['episode_1.hdf5'].instruction' must be a string"),
        (metadata(episodes={"episode_1.hdf5": {"instruction_alternatives": [1]}}), Reason.INVALID_METADATA,
         "'episodes['episode_1.hdf5'].instruction_alternatives' must be a list of strings, got [1]"),
        (metadata(extra=[1]), Reason.INVALID_METADATA, "'extra' must be a JSON object"),
    ],
)
def test_each_metadata_rule_names_what_is_wrong(raw, reason, message):
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_dict(raw, "t")
    assert info.value.reason is reason and info.value.message == f"t: {message}"


def test_metadata_unknown_keys_list_the_allowed_ones():
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_dict(metadata(instruciton="typo", fps_hz=3), "t")
    assert info.value.message == (
        "t: unknown keys ['fps_hz', 'instruciton'] (allowed: ['action_kind', 'action_names', 'camera_names', "
        "'embodiment', 'episodes', 'extra', 'format_version', 'fps', 'image_channel_order', 'instruction', "
        "'instruction_alternatives', 'joint_names', 'robot_type']; free-form data goes in 'extra')")


def test_metadata_accepts_format_version_1_any_positive_fps_and_keeps_every_field():
    meta = TaskMetadata.from_dict(metadata(format_version=1, fps=0.5, robot_type="ur5e", extra={"a": 1},
                                           episodes={"episode_2.hdf5": {"instruction_alternatives": ["b"]}}), "t")
    assert meta.fps == 0.5 and isinstance(meta.fps, float) and meta.embodiment == "ur5" and meta.robot_type == "ur5e"
    assert meta.instruction == "pick up the cube" and meta.camera_names == tuple(CAMERAS)
    assert meta.joint_names == tuple(JOINTS) and meta.extra == {"a": 1}
    assert meta.for_episode("episode_2.hdf5") == ("pick up the cube", ["b"])  # the override's alternatives only
    assert TaskMetadata.from_dict(metadata(fps=30), "t").fps == 30.0


def test_metadata_file_messages(tmp_path):
    path = tmp_path / "metadata.json"
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_file(path, "t/episode_0.hdf5")
    assert info.value.reason is Reason.MISSING_METADATA
    assert info.value.message == f"t/episode_0.hdf5: task folder has no metadata.json ({path})"
    path.write_bytes(b'{"instruction": "\xff"}')
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_file(path, "t/episode_0.hdf5")
    assert info.value.reason is Reason.INVALID_METADATA
    assert info.value.message.startswith(f"t/episode_0.hdf5: {path} is not UTF-8: ")
    path.write_text("{")
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_file(path, "t/episode_0.hdf5")
    assert info.value.reason is Reason.INVALID_METADATA
    assert info.value.message.startswith(f"t/episode_0.hdf5: {path} is not valid JSON: ")
    path.write_text(json.dumps(metadata(fps=0)))
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_file(path, "t/episode_0.hdf5")
    assert info.value.message == f"t/episode_0.hdf5: {path}: 'fps' must be a number > 0, got 0"


def test_metadata_that_cannot_be_read_is_a_corrupt_file(tmp_path, monkeypatch):
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(metadata()))

    def refuse(self, *args, **kwargs):
        raise PermissionError("permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(EpisodeError) as info:
        TaskMetadata.from_file(path, "t/episode_0.hdf5")
    assert info.value.reason is Reason.CORRUPT_FILE
    assert info.value.message == f"t/episode_0.hdf5: cannot read {path}: permission denied"


def test_discover_lists_root_level_episodes_first_and_names_a_missing_root(tmp_path):
    for rel in ["episode_5.hdf5", "-task/episode_1.hdf5", "Apple/episode_0.hdf5", "b/episode_x.hdf5",
                "b/episode_2.hdf5"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "b" / "episode_3.hdf5").symlink_to(tmp_path / "gone.hdf5")  # a dangling link gets an outcome too
    assert InhouseConverter(tmp_path).discover() == [
        "episode_5.hdf5", "-task/episode_1.hdf5", "Apple/episode_0.hdf5", "b/episode_2.hdf5", "b/episode_3.hdf5",
        "b/episode_x.hdf5"]
    with pytest.raises(FileNotFoundError, match=r"in-house root .*absent is not a directory"):
        InhouseConverter(tmp_path / "absent").discover()


def test_an_episode_at_the_root_and_one_with_a_word_number(tmp_path):
    data, _ = datasets(num_frames=4)
    (tmp_path / "metadata.json").write_text(json.dumps(metadata()))
    write_h5(tmp_path / "episode_a.hdf5", data)
    ep, _ = read_all(InhouseConverter(tmp_path), "episode_a.hdf5")
    assert ep.metadata["task_folder"] == "" and ep.metadata["episode_file"] == "episode_a.hdf5"
    assert ep.metadata["episode_index"] is None


def _error(tmp_path, data, meta=None, attrs=None, options=None) -> EpisodeError:
    ref = make_task(tmp_path, data, meta, attrs=attrs)
    with pytest.raises(EpisodeError) as info:
        read_all(InhouseConverter(tmp_path, options), ref)
    return info.value


@pytest.mark.parametrize(
    "edit, meta, reason, message",
    [
        (_set("/observations/qpos", lambda d: np.zeros((12, 4))), None, Reason.NAME_MISMATCH,
         "task/episode_0.hdf5:/observations/qpos has 4 dimensions but metadata joint_names has 3: "
         "['j1', 'j2', 'gripper']"),
        (_set("/action", lambda d: np.zeros((12, 5))), None, Reason.NAME_MISMATCH,
         "task/episode_0.hdf5:/action has 5 dimensions but metadata joint_names (no action_names given) has 3"),
        (_set("/action", lambda d: np.zeros((12, 5))), {"action_names": ["a", "b"]}, Reason.NAME_MISMATCH,
         "task/episode_0.hdf5:/action has 5 dimensions but metadata action_names has 2"),
        (_set("/observations/qvel", lambda d: np.zeros((12, 2))), None, Reason.NAME_MISMATCH,
         "task/episode_0.hdf5:/observations/qvel has 2 dimensions but metadata joint_names has 3"),
        (_set("/action", lambda d: d["/action"][:-3]), None, Reason.LENGTH_MISMATCH,
         "task/episode_0.hdf5:/action has 9 frames but /observations/qpos has 12"),
        (_set("/observations/effort", lambda d: d["/observations/effort"][:-1]), None, Reason.LENGTH_MISMATCH,
         "task/episode_0.hdf5:/observations/effort has 11 frames but /observations/qpos has 12"),
        (_drop("/action"), None, Reason.MISSING_KEY, "task/episode_0.hdf5: missing dataset '/action'"),
        (_set("/observations/qpos", lambda d: d["/observations/qpos"][:, 0]), None, Reason.SHAPE_MISMATCH,
         "task/episode_0.hdf5:/observations/qpos must be [T, D], got shape (12,)"),
        (_set("/observations/qpos", lambda d: np.array([[b"x"] * 3] * 12)), None, Reason.UNSUPPORTED_LAYOUT,
         "task/episode_0.hdf5:/observations/qpos has non-numeric dtype |S1"),
        (_set("/timestamp", lambda d: np.zeros((12, 1))), None, Reason.SHAPE_MISMATCH,
         "task/episode_0.hdf5:/timestamp must be [T], got shape (12, 1)"),
        (_set("/timestamp", lambda d: np.array([b"t"] * 12)), None, Reason.UNSUPPORTED_LAYOUT,
         "task/episode_0.hdf5:/timestamp has non-numeric dtype |S1"),
        (_set("/timestamp", lambda d: np.arange(11.0)), None, Reason.LENGTH_MISMATCH,
         "task/episode_0.hdf5:/timestamp has 11 frames but /observations/qpos has 12"),
        (_drop("/observations/images/cam_wrist"), None, Reason.MISSING_CAMERA,
         "task/episode_0.hdf5: camera(s) ['cam_wrist'] listed in metadata.json have no dataset under "
         "/observations/images (present: ['cam_front'])"),
        (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"][:-2]), None,
         Reason.FRAME_COUNT_MISMATCH,
         "task/episode_0.hdf5:/observations/images/cam_wrist has 10 frames but /observations/qpos has 12"),
        (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"] / 255.0), None,
         Reason.UNSUPPORTED_LAYOUT, "task/episode_0.hdf5:/observations/images/cam_wrist images must be uint8, "
         "got float64"),
        (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"][..., :2]), None,
         Reason.SHAPE_MISMATCH, "task/episode_0.hdf5:/observations/images/cam_wrist raw frames must be "
         "[T, H, W, 3], got (12, 48, 64, 2)"),
        (_set("/observations/images/cam_wrist", lambda d: np.zeros((12, 0, 64, 3), np.uint8)), None,
         Reason.SHAPE_MISMATCH, "task/episode_0.hdf5:/observations/images/cam_wrist raw frames must be "
         "[T, H, W, 3], got (12, 0, 64, 3)"),
        (_set("/observations/images/cam_wrist", lambda d: np.zeros((12, 48, 0, 3), np.uint8)), None,
         Reason.SHAPE_MISMATCH, "task/episode_0.hdf5:/observations/images/cam_wrist raw frames must be "
         "[T, H, W, 3], got (12, 48, 0, 3)"),
        (_set("/observations/images/cam_wrist", lambda d: d["/observations/images/cam_wrist"][..., 0]), None,
         Reason.SHAPE_MISMATCH, "task/episode_0.hdf5:/observations/images/cam_wrist must be [T,H,W,3] raw, [T,L] "
         "padded JPEG or vlen [T] JPEG, got shape (12, 48, 64)"),
    ],
)
def test_episode_errors_name_the_dataset_and_the_numbers(tmp_path, edit, meta, reason, message):
    data, _ = datasets(num_frames=12)
    if "timestamp" in message and "/timestamp" not in data:
        data["/timestamp"] = np.arange(12.0)
    edit(data)
    err = _error(tmp_path, data, metadata(**(meta or {})))
    assert err.reason is reason and err.message == message


def test_hdf5_objects_of_the_wrong_kind_are_unsupported_layouts(tmp_path):
    data, _ = datasets(num_frames=6)
    data["/observations/qvel/x"] = data.pop("/observations/qvel")  # a group where a dataset should be
    err = _error(tmp_path / "a", data)
    assert err.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.message == "task/episode_0.hdf5:/observations/qvel is a Group, expected a dataset"
    data, _ = datasets(num_frames=6)
    data["/observations/images/cam_wrist/x"] = data.pop("/observations/images/cam_wrist")
    err = _error(tmp_path / "b", data)
    assert err.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.message == "task/episode_0.hdf5:/observations/images/cam_wrist is not a dataset"
    data, _ = datasets(num_frames=6)
    data = {k: v for k, v in data.items() if not k.startswith("/observations/images")}
    data["/observations/images"] = np.zeros(3)
    err = _error(tmp_path / "c", data)
    assert err.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.message == "task/episode_0.hdf5:/observations/images is not a group"


def test_variable_length_images_must_be_vlen_uint8_of_one_dimension(tmp_path):
    data, _ = datasets(num_frames=4, layout="jpeg_vlen")
    ref = make_task(tmp_path, {k: v for k, v in data.items() if "cam_wrist" not in k})
    with h5py.File(tmp_path / ref, "a") as f:
        ds = f.create_dataset("/observations/images/cam_wrist", (4,), dtype=h5py.vlen_dtype(np.int16))
        for i in range(4):
            ds[i] = np.zeros(3, np.int16)
    err = reason_of(InhouseConverter(tmp_path), ref)
    assert err is Reason.UNSUPPORTED_LAYOUT
    with pytest.raises(EpisodeError) as info:
        read_all(InhouseConverter(tmp_path), ref)
    assert info.value.message == ("task/episode_0.hdf5:/observations/images/cam_wrist variable-length images must "
                                  "be vlen uint8 [T], got vlen int16 shape (4,)")
    with h5py.File(tmp_path / ref, "a") as f:
        del f["/observations/images/cam_wrist"]
        f.create_dataset("/observations/images/cam_wrist", (4, 1), dtype=h5py.vlen_dtype(np.uint8))
    with pytest.raises(EpisodeError) as info:
        read_all(InhouseConverter(tmp_path), ref)
    assert info.value.reason is Reason.UNSUPPORTED_LAYOUT and "got vlen uint8 shape (4, 1)" in info.value.message


def test_boolean_streams_are_numeric(tmp_path):
    data, _ = datasets(num_frames=5)
    data["/observations/effort"] = np.ones((5, 3), dtype=bool)
    ep, _ = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data))
    assert ep.extras["effort"].dtype == np.float32 and ep.extras["effort"].tolist() == [[1.0] * 3] * 5


@pytest.mark.parametrize(
    "value, expected",
    [(b"TRUE", True), (" 1 ", True), ("0", False), (b"False", False), ("yes", None), (0.0, None),
     (np.bool_(True), True), (2, True), (0, False), (b"\xfftrue", None)],  # undecodable bytes: no answer
)
def test_root_attributes_read_as_booleans(value, expected):
    from converters.inhouse import _attr_bool

    assert _attr_bool(value) is expected


@pytest.mark.parametrize("block", [1, 5, 12, 50])
def test_any_frame_block_yields_every_frame_once(tmp_path, block):
    data, frames = datasets(num_frames=12)
    ep, got = read_all(InhouseConverter(tmp_path, {"frame_block": block}), make_task(tmp_path, data))
    np.testing.assert_array_equal(got["cam_front"], frames["cam_front"])


def test_compress_len_bounds_and_values(tmp_path):
    conv = InhouseConverter(tmp_path)
    data, frames = datasets(num_frames=6, layout="jpeg_padded")
    width = data["/observations/images/cam_front"].shape[1]
    data["/observations/images/cam_front"][2, -1] = 0xD9  # a length of the whole row is allowed
    data["/compress_len"][0, 2] = width
    ep, got = read_all(conv, make_task(tmp_path, data, name="episode_0.hdf5"))
    assert got["cam_front"].shape == frames["cam_front"].shape
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len"][1, 3] = 0
    ref = make_task(tmp_path, data, name="episode_1.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.reason is Reason.IMAGE_DECODE_ERROR
    assert info.value.message == (f"{ref}:/observations/images/cam_wrist[3]: /compress_len says 0 bytes but the "
                                  f"padded row holds {data['/observations/images/cam_wrist'].shape[1]}")
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len"][1, 3] = 1  # one byte is a length in range: the decoder, not the length check, refuses it
    ref = make_task(tmp_path, data, name="episode_5.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.reason is Reason.IMAGE_DECODE_ERROR and "compress_len" not in info.value.message
    assert info.value.message.startswith(f"cannot decode image {ref}:/observations/images/cam_wrist[3] (1 bytes)")
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len"] = np.array([[b"x"] * 6] * 2)
    ref = make_task(tmp_path, data, name="episode_6.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert info.value.message == f"{ref}:/compress_len has non-numeric dtype |S1"
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len/x"] = data.pop("/compress_len")
    ref = make_task(tmp_path, data, name="episode_7.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert info.value.message == f"{ref}:/compress_len is a Group, expected a dataset"
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len"][0, 0] = np.nan
    ref = make_task(tmp_path, data, name="episode_2.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.reason is Reason.CORRUPT_FILE
    assert info.value.message == f"{ref}:/compress_len holds non-finite lengths"
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len"] = data["/compress_len"][0]
    ref = make_task(tmp_path, data, name="episode_3.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.reason is Reason.SHAPE_MISMATCH
    assert info.value.message == f"{ref}:/compress_len must be [num_cameras=2, T], got shape (6,)"
    data, _ = datasets(num_frames=6, layout="jpeg_padded")
    data["/compress_len"] = data["/compress_len"][:, :-1]
    ref = make_task(tmp_path, data, name="episode_4.hdf5")
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert info.value.message == f"{ref}:/compress_len lists 5 frames per camera but /observations/qpos has 6"


def test_raw_frames_one_pixel_high_or_wide_are_frames(tmp_path):
    data, _ = datasets(num_frames=3)
    data["/observations/images/cam_front"] = np.full((3, 1, 5, 3), 7, np.uint8)
    data["/observations/images/cam_wrist"] = np.full((3, 5, 1, 3), 9, np.uint8)
    ep, frames = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data))
    assert frames["cam_front"].shape == (3, 1, 5, 3) and frames["cam_wrist"].shape == (3, 5, 1, 3)


class _FlakyRows:
    """A stand-in for an HDF5 image dataset whose block reads fail or come back short."""

    def __init__(self, n: int, fail: Exception | None = None, short: bool = False):
        self.shape, self.fail, self.short = (n, 2, 2, 3), fail, short

    def __getitem__(self, index: slice) -> np.ndarray:
        if self.fail is not None and index.start >= 4:
            raise self.fail
        rows = np.zeros((index.stop - index.start, 2, 2, 3), np.uint8)
        return rows[:-1] if self.short and index.start >= 4 else rows


def test_a_failing_or_short_block_read_is_named_by_its_frames():
    from converters.inhouse import _frame_reader

    frames = _frame_reader(_FlakyRows(10, fail=OSError("bad chunk")), "raw", None, "RGB", "t:cam", 4)()
    assert sum(1 for _ in zip(range(4), frames)) == 4
    with pytest.raises(EpisodeError) as info:
        next(frames)
    assert info.value.reason is Reason.CORRUPT_FILE and info.value.message == "t:cam: cannot read frames 4:8: bad chunk"
    frames = _frame_reader(_FlakyRows(10, short=True), "raw", None, "RGB", "t:cam", 4)()
    with pytest.raises(EpisodeError) as info:
        list(frames)
    assert info.value.reason is Reason.FRAME_COUNT_MISMATCH
    assert info.value.message == "t:cam: read 3 frames at 4, expected 4"


def test_an_episode_without_an_images_group_misses_every_listed_camera(tmp_path):
    data, _ = datasets(num_frames=4)
    data = {k: v for k, v in data.items() if not k.startswith("/observations/images")}
    ref = make_task(tmp_path, data)
    with pytest.raises(EpisodeError) as info:
        read_all(InhouseConverter(tmp_path), ref)
    assert info.value.reason is Reason.MISSING_CAMERA
    assert info.value.message == (f"{ref}: camera(s) ['cam_front', 'cam_wrist'] listed in metadata.json have no "
                                  "dataset under /observations/images (present: [])")


def test_camera_streams_carry_their_name_source_and_are_thread_safe(tmp_path):
    data, _ = datasets(num_frames=4)
    ref = make_task(tmp_path, data)
    ep, _ = read_all(InhouseConverter(tmp_path), ref)
    assert {name: (cam.name, cam.thread_safe, cam.num_frames, cam.source_file) for name, cam in ep.cameras.items()} == {
        cam: (cam, True, 4, f"{ref}:/observations/images/{cam}") for cam in CAMERAS}


def test_a_timestamp_group_is_an_unsupported_layout(tmp_path):
    data, _ = datasets(num_frames=4)
    data["/timestamp/t"] = np.arange(4.0)
    ref = make_task(tmp_path, data)
    with pytest.raises(EpisodeError) as info:
        read_all(InhouseConverter(tmp_path), ref)
    assert info.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert info.value.message == f"{ref}:/timestamp is a Group, expected a dataset"


def test_recorded_timestamps_of_any_numeric_type_become_float64(tmp_path):
    data, _ = datasets(num_frames=4)
    data["/timestamp"] = (np.arange(4) * 0.05).astype(np.float32)
    ep, _ = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data))
    assert ep.timestamp.dtype == np.float64 and ep.timestamp_origin is TimestampOrigin.RECORDED
    np.testing.assert_array_equal(ep.timestamp, (np.arange(4) * 0.05).astype(np.float32).astype(np.float64))


def test_each_optional_stream_is_read_on_its_own(tmp_path):
    data, _ = datasets(num_frames=4)
    del data["/observations/qvel"]  # effort without qvel
    ep, _ = read_all(InhouseConverter(tmp_path), make_task(tmp_path, data))
    assert set(ep.extras) == {"effort"} and ep.extra_names == {"effort": [f"{j}_effort" for j in JOINTS]}
    data, _ = datasets(num_frames=4)
    data["/observations/qvel"] = data["/observations/qvel"][:, 0]
    ref = make_task(tmp_path / "b", data)
    with pytest.raises(EpisodeError) as info:
        read_all(InhouseConverter(tmp_path / "b"), ref)
    assert info.value.reason is Reason.SHAPE_MISMATCH
    assert info.value.message == f"{ref}:/observations/qvel must be [T, D], got shape (4,)"
