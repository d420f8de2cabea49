"""The RoboMIND converter on files written here in the release's layout (docs/sources/robomind.md).

Valid episodes come from the module's own native writer (the one ``write_samples`` uses);
each test then breaks or replaces the one thing it is about with h5py.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import converters.robomind as rm
from converters import get_converter
from converters.robomind import EMBODIMENTS, EpisodeRef, RoboMindConverter, decode_frame
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, TimestampOrigin
from pipelines.samples import robomind as robomind_samples
from pipelines.samples.robomind import SampleEpisode

TASK = "pick_up_the_cube"
INSTRUCTION = "Pick up the cube."
VLEN = h5py.vlen_dtype(np.dtype("uint8"))


# -- fixture builders -------------------------------------------------------------------------


def make(root: Path, folder: str = "h5_franka_3rgb", *, task: str = TASK, split: str = "train",
         episode: str = "1017_163121", wrapper: str = "benchmark1_0_release", frames: int = 12,
         hw: tuple[int, int] = (24, 32), seed: int = 0, quirks: tuple[str, ...] = (), csv: bool = True) -> str:
    """One valid ``trajectory.hdf5`` (+ the instruction CSV); returns its ref."""
    spec = EMBODIMENTS[folder]
    sample = SampleEpisode(wrapper, folder, task, split, episode, None, quirks)
    path = root / sample.ref
    path.parent.mkdir(parents=True, exist_ok=True)
    robomind_samples._write_episode(path, spec, np.random.default_rng(seed), frames, {c.name: hw for c in spec.cameras},
                                    sample)
    if csv and not (root / rm.INSTRUCTION_CSV).exists():
        write_csv(root, [(TASK, INSTRUCTION)])
    return sample.ref


def write_csv(root: Path, rows, name: str = rm.INSTRUCTION_CSV) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    robomind_samples._write_instruction_csv(path, rows)
    return path


def edit(root: Path, ref: str, fn) -> None:
    with h5py.File(root / ref, "a") as f:
        fn(f)


def jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def set_frames(root: Path, ref: str, camera: str, blobs) -> None:
    def replace(f):
        key = f"{rm.RGB}/{camera}"
        del f[key]
        ds = f.create_dataset(key, (len(blobs),), dtype=VLEN)
        for i, blob in enumerate(blobs):
            ds[i] = np.frombuffer(bytes(blob), np.uint8) if not isinstance(blob, np.ndarray) else blob.reshape(-1)
    edit(root, ref, replace)


def scene(frames: int, h: int = 24, w: int = 32) -> np.ndarray:
    """Frames with a saturated red square on grey: a red/blue swap is impossible to miss."""
    out = np.full((frames, h, w, 3), 128, np.uint8)
    for t in range(frames):
        x = 2 + t % (w - 10)
        out[t, 6:14, x : x + 8] = (230, 20, 20)
    return out


def read_all(conv: RoboMindConverter, ref: str):
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        frames = {name: np.stack(list(cam.open_frames())) for name, cam in ep.cameras.items()}
        return ep, frames


def reason_of(conv: RoboMindConverter, ref: str) -> Reason:
    with pytest.raises(EpisodeError) as info:
        read_all(conv, ref)
    assert ref in info.value.message  # errors name the episode
    return info.value.reason


# -- registry, tables, discovery -----------------------------------------------------------------


def test_registered_with_declared_schema():
    cls = get_converter("robomind")
    assert cls is RoboMindConverter
    assert cls.source_version == "robomind-v1.2" and cls.converter_version == "1.1.0"
    assert set(cls.embodiments) == {
        "franka_1rgb", "franka_3rgb", "franka_fr3_dual", "ur_1rgb", "agilex_3rgb",
        "tienkung_xsens_1rgb", "tienkung_gello_1rgb", "tienkung_prod1_gello_1rgb",
    }
    assert cls.control_hz == 30.0


@pytest.mark.parametrize("folder", sorted(EMBODIMENTS))
def test_table_rows_are_consistent(folder):
    spec = EMBODIMENTS[folder]
    assert spec.folder == folder == f"h5_{spec.embodiment}"
    state = [n for p in spec.state for n in p.names]
    action = [n for p in spec.action for n in p.names]
    assert len(set(state)) == len(state) and len(set(action)) == len(action)
    assert set(spec.gripper) <= set(state)
    for _, parts in spec.extras:
        names = [n for p in parts for n in p.names]
        assert len(set(names)) == len(names)
    assert spec.opencv_order == ("BGR" if spec.embodiment.startswith(("franka", "ur")) else "RGB")
    assert spec.default_fps == 30.0 and spec.cameras
    assert not set(rm.SIM_FOLDERS) & set(EMBODIMENTS)


def test_discover_finds_every_layout_and_ignores_the_rest(tmp_path):
    rels = [
        "benchmark1_0_release/h5_franka_3rgb/t1/success_episodes/train/e1/data/trajectory.hdf5",
        "benchmark1_0_release/h5_franka_3rgb/t1/success_episodes/val/e2/data/trajectory.hdf5",
        "benchmark1_1_compressed/h5_agilex_3rgb/t2/success_episodes/train/e3/data/trajectory.hdf5",
        "h5_ur_1rgb/t3/success_episodes/e4/data/trajectory.hdf5",  # no wrapper, unsplit
        "benchmark1_2_release/h5_sim_franka_3rgb/t4/success_episodes/train/e5/data/trajectory.hdf5",
        "h5_franka_1rgb/t5/e6/data/trajectory.hdf5",  # off-layout: listed, quarantined when read
    ]
    ignored = [
        ".cache/h5_ur_1rgb/t/success_episodes/e/data/trajectory.hdf5",  # hidden folder
        "benchmark1_0_release/h5_ur_1rgb/t/success_episodes/e/data/other.hdf5",
        "misc/t/success_episodes/e/data/trajectory.hdf5",  # not below an h5_* folder
    ]
    for rel in rels + ignored:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert RoboMindConverter(tmp_path).discover() == sorted(rels)
    with pytest.raises(FileNotFoundError):
        RoboMindConverter(tmp_path / "absent").discover()


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("benchmark1_0_release/h5_franka_3rgb/t/success_episodes/train/1017_163121/data/trajectory.hdf5",
         ("benchmark1_0_release", "h5_franka_3rgb", "t", "train", "1017_163121")),
        ("h5_ur_1rgb/t/success_episodes/1022_150342/data/trajectory.hdf5",
         ("", "h5_ur_1rgb", "t", "unsplit", "1022_150342")),
        ("a/b/h5_agilex_3rgb/t/success_episodes/val/2024_09_29-16_43_28-1.00/data/trajectory.hdf5",
         ("a/b", "h5_agilex_3rgb", "t", "val", "2024_09_29-16_43_28-1.00")),
    ],
)
def test_ref_parsing(ref, expected):
    got = EpisodeRef.parse(ref)
    assert (got.benchmark, got.folder, got.task, got.split, got.episode) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "x/t/success_episodes/train/e/data/trajectory.hdf5",  # no h5_ folder
        "h5_ur_1rgb/t/failure_episodes/e/data/trajectory.hdf5",
        "h5_ur_1rgb/t/success_episodes/train/extra/e/data/trajectory.hdf5",
        "h5_ur_1rgb/t/success_episodes/e/trajectory.hdf5",
    ],
)
def test_ref_off_layout_is_unsupported(ref):
    with pytest.raises(EpisodeError) as info:
        EpisodeRef.parse(ref)
    assert info.value.reason is Reason.UNSUPPORTED_LAYOUT


# -- every embodiment in the table --------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(EMBODIMENTS))
def test_every_embodiment_converts(tmp_path, folder):
    spec = EMBODIMENTS[folder]
    ref = make(tmp_path, folder, frames=10)
    ep, frames = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.source == "robomind" and ep.embodiment == spec.embodiment and ep.robot_type == spec.robot_type
    assert ep.state_names == [n for p in spec.state for n in p.names]
    assert ep.action_names == [n for p in spec.action for n in p.names]
    assert ep.state.shape == (10, len(ep.state_names)) and ep.state.dtype == np.float32
    assert ep.action_kind is ActionKind.JOINT_POSITION
    assert list(frames) == [c.name for c in spec.cameras]
    assert all(f.shape == (10, 24, 32, 3) and f.dtype == np.uint8 for f in frames.values())
    assert set(ep.extras) == {name for name, _ in spec.extras}
    for name, parts in spec.extras:
        assert ep.extra_names[name] == [n for p in parts for n in p.names]
        assert ep.extras[name].shape == (10, len(ep.extra_names[name]))
    assert ep.control_hz == 30.0 and ep.timestamp_origin is TimestampOrigin.FROM_CONTROL_RATE
    np.testing.assert_allclose(ep.timestamp, np.arange(10) / 30.0)
    assert ep.instruction == INSTRUCTION
    meta = ep.metadata
    assert (meta["benchmark"], meta["task"], meta["split"], meta["episode"]) == (
        "benchmark1_0_release", TASK, "train", "1017_163121")
    assert meta["compress"] is True and meta["sim"] is False and meta["fps_source"] == "default"
    assert meta["image_layouts"] == {c.name: "jpeg_vlen" for c in spec.cameras}
    assert meta["opencv_channel_order"] == spec.opencv_order
    json.dumps(meta)


def test_state_is_puppet_and_action_is_master(tmp_path):
    conv = RoboMindConverter(tmp_path)
    ref = make(tmp_path, "h5_agilex_3rgb", episode="a")
    ep, _ = read_all(conv, ref)
    with h5py.File(tmp_path / ref) as f:
        state = np.concatenate([f["puppet/joint_position_left"][()], f["puppet/joint_position_right"][()]], 1)
        action = np.concatenate([f["master/joint_position_left"][()], f["master/joint_position_right"][()]], 1)
        velocity = np.concatenate([f["puppet/joint_velocity_left"][()], f["puppet/joint_velocity_right"][()]], 1)
    np.testing.assert_allclose(ep.state, state, rtol=1e-6)
    np.testing.assert_allclose(ep.action, action, rtol=1e-6)
    np.testing.assert_allclose(ep.extras["joint_velocity"], velocity, rtol=1e-5)
    # Tien Kung xsens: end_effector holds hand joints, so it is part of state and action
    ref = make(tmp_path, "h5_tienkung_xsens_1rgb", episode="b")
    ep, _ = read_all(conv, ref)
    with h5py.File(tmp_path / ref) as f:
        hands = f["master/end_effector"][()]
    assert ep.action.shape[1] == 14 + 12 and ep.action_names[14] == "left_little_finger"
    np.testing.assert_allclose(ep.action[:, 14:], hands, rtol=1e-6)


# -- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["h5_franka_3rgb", "h5_ur_1rgb", "h5_agilex_3rgb", "h5_tienkung_gello_1rgb"])
def test_channel_order_per_embodiment(tmp_path, folder):
    """What cv2.imencode makes of the array the recorder held: a standard JPEG for the BGR
    convention (franka, ur, fr3), a red/blue-swapped one for RGB arrays (agilex, tienkung)."""
    spec = EMBODIMENTS[folder]
    ref = make(tmp_path, folder)
    truth = scene(12)
    swapped = spec.opencv_order == "RGB"
    cam = spec.cameras[0].name
    set_frames(tmp_path, ref, cam, [jpeg(f[..., ::-1] if swapped else f) for f in truth])
    _, frames = read_all(RoboMindConverter(tmp_path), ref)
    assert np.abs(frames[cam].astype(int) - truth).mean() < 3
    assert frames[cam][0, 10, 5][0] > 200 and frames[cam][0, 10, 5][2] < 60  # red stays red
    # raw buffers carry cv2's array order (BGR for franka/ur)
    raw = [np.ascontiguousarray(f[..., ::-1] if spec.opencv_order == "BGR" else f) for f in truth]
    set_frames(tmp_path, ref, cam, raw[:1] + [jpeg(f[..., ::-1] if swapped else f) for f in truth[1:]])
    conv = RoboMindConverter(tmp_path, {"raw_frame_shapes": [[24, 32]]})
    _, frames = read_all(conv, ref)
    np.testing.assert_array_equal(frames[cam][0], truth[0])


def test_raw_fallback_release_sizes(tmp_path):
    """A buffer that is no image but exactly 720x1280x3 or 480x640x3 bytes is a raw frame."""
    ref = make(tmp_path, "h5_franka_3rgb")
    big = np.zeros((720, 1280, 3), np.uint8)
    big[100:200, 300:400] = (0, 0, 255)  # BGR red
    small = np.zeros((480, 640, 3), np.uint8)
    small[:, :, 1] = 90
    set_frames(tmp_path, ref, "camera_top", [big] * 12)
    set_frames(tmp_path, ref, "camera_left", [small] * 12)
    ep, frames = read_all(RoboMindConverter(tmp_path, {"frame_block": 5}), ref)
    assert frames["camera_top"].shape == (12, 720, 1280, 3)
    np.testing.assert_array_equal(frames["camera_top"][3, 150, 350], (255, 0, 0))
    assert frames["camera_left"].shape == (12, 480, 640, 3) and frames["camera_left"][0, 0, 0, 1] == 90


def test_raw_fallback_inside_a_jpeg_stream(tmp_path):
    """Raw frames between JPEG frames take the size the stream already has (sample quirk)."""
    ref = make(tmp_path, "h5_franka_3rgb")
    truth = scene(12)
    blobs = [jpeg(f) for f in truth]
    blobs[5] = np.ascontiguousarray(truth[5][..., ::-1])  # raw BGR, 24x32x3 bytes
    set_frames(tmp_path, ref, "camera_left", blobs)
    _, frames = read_all(RoboMindConverter(tmp_path), ref)
    np.testing.assert_array_equal(frames["camera_left"][5], truth[5])


def test_raw_fallback_first_frame_of_unknown_size_fails(tmp_path):
    ref = make(tmp_path, "h5_franka_3rgb")
    set_frames(tmp_path, ref, "camera_left", [np.zeros(24 * 32 * 3, np.uint8)] * 12)
    assert reason_of(RoboMindConverter(tmp_path), ref) is Reason.IMAGE_DECODE_ERROR


def test_decode_frame_png_and_errors():
    rgb = scene(1)[0]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    png = np.frombuffer(buf.getvalue(), np.uint8)
    np.testing.assert_array_equal(decode_frame(png, "BGR", (), "x"), rgb)
    np.testing.assert_array_equal(decode_frame(png, "RGB", (), "x"), rgb[..., ::-1])
    with pytest.raises(EpisodeError) as info:
        decode_frame(np.frombuffer(jpeg(rgb)[:200], np.uint8), "BGR", ((480, 640),), "cam[3]")
    assert info.value.reason is Reason.IMAGE_DECODE_ERROR and "cam[3]" in info.value.message
    with pytest.raises(EpisodeError):
        decode_frame(np.zeros(0, np.uint8), "BGR", ((480, 640),), "cam[0]")


def test_uncompressed_raw_array_layout(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb")
    truth = scene(12)

    def raw_dataset(f):
        del f[f"{rm.RGB}/camera_top"]
        f.create_dataset(f"{rm.RGB}/camera_top", data=truth[..., ::-1])  # cv2 order for UR
        f.attrs["compress"] = False
    edit(tmp_path, ref, raw_dataset)
    ep, frames = read_all(RoboMindConverter(tmp_path), ref)
    np.testing.assert_array_equal(frames["camera_top"], truth)
    assert ep.metadata["image_layouts"] == {"camera_top": "raw_array"} and ep.metadata["compress"] is False


def test_resolution_may_change_between_episodes_not_within(tmp_path):
    conv = RoboMindConverter(tmp_path)
    a = make(tmp_path, "h5_franka_1rgb", episode="a", hw=(36, 64))
    b = make(tmp_path, "h5_franka_1rgb", episode="b", hw=(24, 32))
    assert read_all(conv, a)[1]["camera_top"].shape[1:3] == (36, 64)
    assert read_all(conv, b)[1]["camera_top"].shape[1:3] == (24, 32)
    truth = scene(12)
    blobs = [jpeg(f) for f in truth]
    blobs[7] = jpeg(scene(1, 36, 64)[0])
    set_frames(tmp_path, b, "camera_top", blobs)
    assert reason_of(conv, b) is Reason.SHAPE_MISMATCH


def test_unlisted_and_depth_cameras_are_recorded(tmp_path):
    ref = make(tmp_path, "h5_franka_1rgb", quirks=("depth",))

    def extra_cams(f):  # the release's franka_1rgb files also carry camera_left/right
        f.create_dataset(f"{rm.RGB}/camera_left", (12,), dtype=VLEN)
    edit(tmp_path, ref, extra_cams)
    ep, frames = read_all(RoboMindConverter(tmp_path), ref)
    assert list(frames) == ["camera_top"]
    assert ep.metadata["unlisted_cameras"] == ["camera_left"] and ep.metadata["depth_cameras"] == ["camera_top"]


def test_frames_stream_lazily_and_file_closes(tmp_path):
    ref = make(tmp_path, "h5_agilex_3rgb", frames=30)
    truth = scene(30)
    blobs = [jpeg(f[..., ::-1]) for f in truth]
    blobs[25] = blobs[25][:150]  # only frame 25 is broken
    set_frames(tmp_path, ref, "camera_right_wrist", blobs)
    conv = RoboMindConverter(tmp_path, {"frame_block": 4})
    with conv.read(lambda: conv.open_episode(ref)) as ep:  # opening decodes nothing
        stream = ep.cameras["camera_right_wrist"]
        assert stream.num_frames == 30 and stream.thread_safe
        frames = stream.open_frames()
        for _ in range(25):
            assert next(frames).shape == (24, 32, 3)
        with pytest.raises(EpisodeError) as info:
            next(frames)
        assert info.value.reason is Reason.IMAGE_DECODE_ERROR and "camera_right_wrist[25]" in info.value.message
    with pytest.raises(Exception):
        next(ep.cameras["camera_front"].open_frames())  # the HDF5 file closed with the context


# -- options -----------------------------------------------------------------------------------------


def test_fps_option_scalar_and_per_embodiment(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb", frames=10)
    ep, _ = read_all(RoboMindConverter(tmp_path, {"fps": 10}), ref)
    assert ep.control_hz == 10.0 and ep.metadata["fps_source"] == "option"
    np.testing.assert_allclose(ep.timestamp, np.arange(10) / 10.0)
    ep, _ = read_all(RoboMindConverter(tmp_path, {"fps": {"ur_1rgb": 15, "franka_3rgb": 10}}), ref)
    assert ep.control_hz == 15.0 and ep.metadata["fps_source"] == "option"
    ep, _ = read_all(RoboMindConverter(tmp_path, {"fps": {"franka_3rgb": 10}}), ref)
    assert ep.control_hz == 30.0 and ep.metadata["fps_source"] == "default"


@pytest.mark.parametrize(
    "options",
    [{"fps": 0}, {"fps": "30"}, {"fps": {"h5_ur_1rgb": 10}}, {"fps": True}, {"subtask_alignment": "x"},
     {"frame_block": 0}, {"raw_frame_shapes": [[480]]}, {"stuck_ee_tolerance": -1}, {"fsp": 30}],
)
def test_invalid_options_fail_at_construction(tmp_path, options):
    with pytest.raises(ValueError):
        RoboMindConverter(tmp_path, options)


# -- language -------------------------------------------------------------------------------------


def test_instruction_table_duplicates_alternatives_and_bom(tmp_path):
    (tmp_path / rm.INSTRUCTION_CSV).write_text(
        "\ufeff,task,instruction\n0,pick_up_the_cube,Pick up the cube.\n1,pick_up_the_cube,Pick up the cube.\n"
        "2,pick_up_the_cube,  Lift   the cube. \n3,other,Other.\n", encoding="utf-8")
    ep, _ = read_all(RoboMindConverter(tmp_path), make(tmp_path, "h5_ur_1rgb"))
    assert ep.instruction == "Pick up the cube." and ep.instruction_alternatives == ["Lift the cube."]
    assert ep.metadata["instruction_source"] == "instruction_csv"


def test_unknown_or_empty_task_instruction_is_missing_language(tmp_path):
    write_csv(tmp_path, [("5_eggoven_2", ""), ("something_else", "Do it.")])
    conv = RoboMindConverter(tmp_path)
    assert reason_of(conv, make(tmp_path, "h5_agilex_3rgb", task="5_eggoven_2")) is Reason.MISSING_LANGUAGE
    assert reason_of(conv, make(tmp_path, "h5_agilex_3rgb", task="not_listed")) is Reason.MISSING_LANGUAGE


def test_instruction_table_location_and_problems(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb", csv=False)
    assert reason_of(RoboMindConverter(tmp_path), ref) is Reason.MISSING_METADATA
    write_csv(tmp_path, [(TASK, "From static.")], name=f"static/{rm.INSTRUCTION_CSV}")
    assert read_all(RoboMindConverter(tmp_path), ref)[0].instruction == "From static."
    write_csv(tmp_path, [(TASK, "From option.")], name="meta/instr.csv")
    from_option = RoboMindConverter(tmp_path, {"instruction_csv": "meta/instr.csv"})
    assert read_all(from_option, ref)[0].instruction == "From option."
    absent = RoboMindConverter(tmp_path, {"instruction_csv": "meta/absent.csv"})
    assert reason_of(absent, ref) is Reason.MISSING_METADATA
    (tmp_path / "meta" / "bad.csv").write_text("idx,name,text\n0,a,b\n")
    assert reason_of(RoboMindConverter(tmp_path, {"instruction_csv": "meta/bad.csv"}), ref) is Reason.INVALID_METADATA


def test_language_raw_in_the_file_is_a_fallback(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb", csv=False)
    edit(tmp_path, ref, lambda f: f.create_dataset("language_raw", data=[b"Pick up the cube, from the file."]))
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)  # no CSV at all
    assert ep.instruction == "Pick up the cube, from the file."
    assert ep.metadata["instruction_source"] == "hdf5_language_raw"
    write_csv(tmp_path, [(TASK, INSTRUCTION)])
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.instruction == INSTRUCTION and ep.instruction_alternatives == ["Pick up the cube, from the file."]
    (tmp_path / rm.INSTRUCTION_CSV).write_text("a,b\n1,2\n")  # a malformed table is not bypassed
    assert reason_of(RoboMindConverter(tmp_path), ref) is Reason.INVALID_METADATA
    (tmp_path / rm.INSTRUCTION_CSV).unlink()
    conv = RoboMindConverter(tmp_path, {"language_raw_fallback": False})
    assert reason_of(conv, ref) is Reason.MISSING_METADATA


def write_annotation(root: Path, name: str, records) -> None:
    folder = root / rm.ANNOTATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(records))


def record(ref: str, steps, summary="placing the cube") -> dict:
    parsed = EpisodeRef.parse(ref)
    split = "" if parsed.split == "unsplit" else f"/{parsed.split}"
    return {"id": f"{parsed.folder}/{parsed.task}/success_episodes{split}/{parsed.episode}/data",
            "response": {"task_summary": summary, "steps": steps}}


def step(text, start, end, cam="camera_top"):
    return {"step_description": text, "start_frame": f"{cam}_{start:04d}.jpg", "end_frame": f"{cam}_{end:04d}.jpg"}


def test_annotation_steps_map_to_frames(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb", split="unsplit", frames=12)
    steps = [step("move towards the cube", 0, 4), step("[none]", 4, 4), step("grab the cube", 6, 9),
             step("lift  it", 9, 30), step("never", 40, 45)]
    write_annotation(tmp_path, "h5_ur_1rgb.json", [record(ref, steps), {"id": "junk"}, 3])
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.subtasks == ["move towards the cube"] * 5 + [None] + ["grab the cube"] * 3 + ["lift it"] * 3
    meta = ep.metadata["annotation"]
    assert meta["alignment"] == "frames" and meta["steps_out_of_range"] == 1
    assert meta["task_summary"] == "placing the cube" and len(meta["steps"]) == 5
    assert meta["steps"][2] == {"text": "grab the cube", "start_frame": 6, "end_frame": 9}
    assert "placing the cube" not in ep.instruction_alternatives  # the summary stays metadata
    ep, _ = read_all(RoboMindConverter(tmp_path, {"subtask_alignment": "metadata"}), ref)
    assert ep.subtasks is None and ep.metadata["annotation"]["alignment"] == "metadata_only"


def test_annotation_matching_split_alias_and_frameless_steps(tmp_path):
    train = make(tmp_path, "h5_tienkung_xsens_1rgb", split="train", episode="e1")
    val = make(tmp_path, "h5_tienkung_xsens_1rgb", split="val", episode="e1")
    write_annotation(tmp_path, "h5_tienkung_xsens.json", [  # the release's short file name
        record(train, [step("reach", 0, 11)]),
        record(val, ["reach", "grasp"]),  # no frame ranges: kept as metadata only
    ])
    conv = RoboMindConverter(tmp_path)
    assert read_all(conv, train)[0].subtasks == ["reach"] * 12
    ep, _ = read_all(conv, val)
    assert ep.subtasks is None and ep.metadata["annotation"]["alignment"] == "metadata_only"
    assert [s["text"] for s in ep.metadata["annotation"]["steps"]] == ["reach", "grasp"]
    other = make(tmp_path, "h5_tienkung_xsens_1rgb", split="train", episode="e2")
    assert read_all(conv, other)[0].subtasks is None and "annotation" not in read_all(conv, other)[0].metadata


@pytest.mark.parametrize("content", ["{not json", json.dumps({"id": "x"})])
def test_broken_annotation_file_is_invalid_metadata(tmp_path, content):
    ref = make(tmp_path, "h5_ur_1rgb")
    (tmp_path / rm.ANNOTATION_DIR).mkdir()
    (tmp_path / rm.ANNOTATION_DIR / "h5_ur_1rgb.json").write_text(content)
    conv = RoboMindConverter(tmp_path)
    assert reason_of(conv, ref) is Reason.INVALID_METADATA
    assert reason_of(conv, make(tmp_path, "h5_ur_1rgb", episode="other")) is Reason.INVALID_METADATA  # cached


# -- stuck end-effector -------------------------------------------------------------------------


def test_stuck_end_effector_is_flagged(tmp_path):
    conv = RoboMindConverter(tmp_path)
    stuck, _ = read_all(conv, make(tmp_path, "h5_ur_1rgb", episode="a", quirks=("stuck_ee",)))
    moving, _ = read_all(conv, make(tmp_path, "h5_ur_1rgb", episode="b"))
    assert stuck.metadata["ee_pose_stuck"] is True and moving.metadata["ee_pose_stuck"] is False
    assert "ee_pose" in stuck.extras  # kept: the flag tells consumers not to trust it


def test_missing_extra_stream_is_recorded_not_fatal(tmp_path):
    ref = make(tmp_path, "h5_agilex_3rgb")
    edit(tmp_path, ref, lambda f: f.__delitem__("puppet/joint_effort_right"))
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert "joint_effort" not in ep.extras and ep.metadata["missing_extras"] == ["joint_effort"]


# -- broken inputs ---------------------------------------------------------------------------------


def _delete(key):
    return lambda f: f.__delitem__(key)


def _replace(key, fn):
    def run(f):
        data = f[key][()]
        del f[key]
        f.create_dataset(key, data=fn(data))
    return run


def _nan(f):
    data = f["master/joint_position"][()]
    data[5:7, 2] = np.nan
    f["master/joint_position"][...] = data


def _empty(f):
    for group in ("puppet", "master"):
        _replace(f"{group}/joint_position", lambda d: d[:0])(f)
        _replace(f"{group}/end_effector", lambda d: d[:0])(f) if f"{group}/end_effector" in f else None
    for cam in list(f[rm.RGB]):
        del f[f"{rm.RGB}/{cam}"]
        f.create_dataset(f"{rm.RGB}/{cam}", (0,), dtype=VLEN)


def _sim(f):
    f.move("puppet", "franka")


BROKEN = {
    "no master key": (_delete("master/joint_position"), Reason.MISSING_KEY),
    "no puppet key": (_delete("puppet/joint_position"), Reason.MISSING_KEY),
    "key is a group": (lambda f: (f.__delitem__("master/joint_position"), f.create_group("master/joint_position")),
                       Reason.UNSUPPORTED_LAYOUT),
    "string dtype": (_replace("master/joint_position", lambda d: d.astype("S8")), Reason.UNSUPPORTED_LAYOUT),
    "wrong width": (_replace("master/joint_position", lambda d: d[:, :6]), Reason.SHAPE_MISMATCH),
    "1-D state": (_replace("puppet/joint_position", lambda d: d[:, 0]), Reason.SHAPE_MISMATCH),
    "short action": (_replace("master/joint_position", lambda d: d[:-3]), Reason.LENGTH_MISMATCH),
    "short ee extra": (_replace("puppet/end_effector", lambda d: d[:-2]), Reason.LENGTH_MISMATCH),
    "camera missing": (_delete(f"{rm.RGB}/camera_top"), Reason.MISSING_CAMERA),
    "no rgb group": (_delete(rm.RGB), Reason.MISSING_CAMERA),
    "camera short": (_replace(f"{rm.RGB}/camera_top", lambda d: d[:-2]), Reason.FRAME_COUNT_MISMATCH),
    "float images": (lambda f: (f.__delitem__(f"{rm.RGB}/camera_top"),
                                f.create_dataset(f"{rm.RGB}/camera_top", data=np.zeros((12, 4, 4, 3)))),
                     Reason.UNSUPPORTED_LAYOUT),
    "NaN action": (_nan, Reason.NON_FINITE_VALUES),
    "zero frames": (_empty, Reason.EMPTY_EPISODE),
    "sim layout in a real folder": (_sim, Reason.UNSUPPORTED_LAYOUT),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_reason(tmp_path, case):
    fn, reason = BROKEN[case]
    ref = make(tmp_path, "h5_ur_1rgb")
    edit(tmp_path, ref, fn)
    assert reason_of(RoboMindConverter(tmp_path), ref) is reason


def test_agilex_arm_length_mismatch(tmp_path):
    ref = make(tmp_path, "h5_agilex_3rgb")
    edit(tmp_path, ref, _replace("puppet/joint_position_right", lambda d: d[:-1]))
    assert reason_of(RoboMindConverter(tmp_path), ref) is Reason.LENGTH_MISMATCH


@pytest.mark.parametrize("damage", ["truncate", "zero_header", "garbage"])
def test_corrupt_files(tmp_path, damage):
    ref = make(tmp_path, "h5_franka_3rgb")
    path = tmp_path / ref
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) * 55 // 100])
    elif damage == "zero_header":
        path.write_bytes(bytes(4096) + data[4096:])
    else:
        path.write_bytes(b"not an hdf5 file at all")
    assert reason_of(RoboMindConverter(tmp_path), ref) is Reason.CORRUPT_FILE


def test_missing_file_and_unsupported_folders(tmp_path):
    conv = RoboMindConverter(tmp_path)
    ref = make(tmp_path, "h5_ur_1rgb")
    (tmp_path / ref).unlink()
    assert reason_of(conv, ref) is Reason.MISSING_FILE
    for folder in ("h5_sim_franka_3rgb", "h5_simulation", "h5_songling_3rgb"):
        ref = f"{folder}/t/success_episodes/train/e/data/trajectory.hdf5"
        assert reason_of(conv, ref) is Reason.UNSUPPORTED_LAYOUT


# -- samples and synthetic data -------------------------------------------------------------------


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_samples_are_small_and_seeded(tmp_path):
    # the same seed giving the same bytes, in another process: test_converter_conformance
    first = robomind_samples.write_samples(tmp_path / "a", seed=3)
    assert robomind_samples.write_samples(tmp_path / "c", seed=4) == first
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")
    assert sum(p.stat().st_size for p in (tmp_path / "a").rglob("*") if p.is_file()) < 8_000_000


def test_samples_convert_to_their_declared_outcomes(tmp_path):
    expected = robomind_samples.write_samples(tmp_path, seed=1)
    conv = RoboMindConverter(tmp_path)
    assert conv.discover() == sorted(expected)
    assert {v for v in expected.values()} >= {None, "corrupt_file", "missing_key", "frame_count_mismatch",
                                              "missing_language", "image_decode_error", "unsupported_layout"}
    embodiments, got = set(), {}
    for ref in conv.discover():
        try:
            ep, frames = read_all(conv, ref)
            got[ref] = None
            embodiments.add(ep.embodiment)
        except EpisodeError as exc:
            got[ref] = exc.reason.value
    assert got == expected
    assert embodiments == {"franka_3rgb", "agilex_3rgb", "ur_1rgb", "tienkung_xsens_1rgb"}


def test_a_directory_under_the_episode_file_name_is_reported_not_skipped(tmp_path):
    expected = robomind_samples.write_samples(tmp_path, seed=1)
    good = next(ref for ref, reason in sorted(expected.items()) if reason is None)
    odd = Path(good).parent.parent.parent / "1017_999999" / "data" / "trajectory.hdf5"
    (tmp_path / odd).mkdir(parents=True)
    conv = RoboMindConverter(tmp_path)
    assert odd.as_posix() in conv.discover()
    with pytest.raises(EpisodeError) as info:
        read_all(conv, odd.as_posix())
    assert info.value.reason == Reason.CORRUPT_FILE and "a directory" in info.value.message
    read_all(conv, good)  # its neighbours still read


def test_sample_quirks_are_present(tmp_path):
    expected = robomind_samples.write_samples(tmp_path, seed=0)
    conv = RoboMindConverter(tmp_path)
    refs = {ref.split("/")[-3]: ref for ref in expected}
    # camera_top with raw (non-JPEG) frames in the middle still converts, colours intact
    with h5py.File(tmp_path / refs["1017_170233"]) as f:
        stored = f[f"{rm.RGB}/camera_top"][()]
    raw = [i for i, blob in enumerate(stored) if blob[:3].tobytes() != rm._JPEG_MAGIC]
    assert len(raw) == 3 and all(stored[i].size == 72 * 128 * 3 for i in raw)
    ep, frames = read_all(conv, refs["1017_170233"])
    jpeg_neighbour = frames["camera_top"][raw[0] - 1].astype(int)
    assert np.abs(frames["camera_top"][raw[0]].astype(int) - jpeg_neighbour).mean() < 12  # same scene, same order
    # camera_top resolution differs between episodes of one task
    assert read_all(conv, refs["1017_163348"])[1]["camera_top"].shape[1:3] == (60, 80)
    assert frames["camera_top"].shape[1:3] == (72, 128)
    # unsplit UR episodes: stuck end-effector, depth, sub-task labels from the annotation file
    ep, _ = read_all(conv, refs["1022_150342"])
    assert ep.metadata["split"] == "unsplit" and ep.metadata["ee_pose_stuck"] is True
    assert ep.metadata["depth_cameras"] == ["camera_top"] and ep.subtasks is not None
    assert ep.subtasks[0] is None and ep.subtasks[-1] == "retreat"  # idle prefix has no label
    # agilex: "[none]" steps dropped, the CSV's second phrasing for the UR task kept as alternative
    agx = next(r for r in expected if "h5_agilex_3rgb/15_steamegg_2" in r and expected[r] is None)
    ep, _ = read_all(conv, agx)
    assert "[none]" not in set(ep.subtasks) and any(s and s.startswith("[both]") for s in ep.subtasks)
    alternatives = read_all(conv, refs["1022_150519"])[0].instruction_alternatives
    assert alternatives == ["Pick up the plastic bottle from the table."]
    # the Tien Kung annotation comes from the release's short file name h5_tienkung_xsens.json
    assert (tmp_path / rm.ANNOTATION_DIR / "h5_tienkung_xsens.json").is_file()
    assert read_all(conv, refs["2024-10-23-15-50-29"])[0].subtasks is not None
    # trajectories: an idle prefix and a still hold (identical consecutive states)
    still = np.all(np.abs(np.diff(ep.state, axis=0)) < 1e-9, axis=1)
    assert still[:3].all() and still.sum() >= 8


def test_write_synthetic(tmp_path):
    robomind_samples.write_synthetic(tmp_path, episodes=2, frames=20, height=48, width=64, seed=1)
    conv = RoboMindConverter(tmp_path)
    refs = conv.discover()
    assert len(refs) == 2
    for ref in refs:
        ep, frames = read_all(conv, ref)
        assert ep.embodiment == "agilex_3rgb" and ep.num_frames == 20
        assert set(frames) == {"camera_front", "camera_left_wrist", "camera_right_wrist"}
        assert all(f.shape == (20, 48, 64, 3) for f in frames.values())
    other = tmp_path / "ur"
    robomind_samples.write_synthetic(other, episodes=1, frames=8, height=30, width=40, embodiment="ur_1rgb")
    ep, frames = read_all(RoboMindConverter(other), RoboMindConverter(other).discover()[0])
    assert ep.embodiment == "ur_1rgb" and frames["camera_top"].shape == (8, 30, 40, 3)
    with pytest.raises(ValueError):
        robomind_samples.write_synthetic(tmp_path, episodes=1, frames=8, height=8, width=8, embodiment="spot")


# -- rules the mutation run showed unpinned (issue 18) ----------------------------------------------


def test_dimension_names_are_numbered_from_one():
    assert rm._names("left_", "joint", 3) == ("left_joint_1", "left_joint_2", "left_joint_3")
    assert rm._names("", "ee", 1) == ("ee_1",)


def test_a_single_arm_row_reads_the_joint_vector_and_the_flange_pose():
    """``_single_arm``: state and action are ``joint_position`` (puppet / master), the ``ee_pose`` extra is puppet
    ``end_effector`` (x y z roll pitch yaw), the gripper dimension is ``gripper``, 30 fps unless an option says
    otherwise, annotations in ``<folder>.json``; folder, ids, cameras and channel order as given."""
    cams = (rm.CameraSpec("camera_top", (rm.SD_SIZE,)),)
    joints = ("joint_1", "gripper")
    spec = rm._single_arm("h5_arm", "arm_1rgb", "arm_robot", cams, joints, opencv_order="RGB")
    assert spec == rm.EmbodimentSpec(
        folder="h5_arm", embodiment="arm_1rgb", robot_type="arm_robot", cameras=cams,
        state=(rm.Part("joint_position", joints),), action=(rm.Part("joint_position", joints),),
        extras=(("ee_pose", (rm.Part("end_effector", ("ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw")),)),),
        gripper=("gripper",), ee_representation="xyz (m) + roll/pitch/yaw (rad) of the flange", opencv_order="RGB",
        default_fps=30.0, annotation_files=("h5_arm.json",))
    assert EMBODIMENTS["h5_ur_1rgb"] == rm._single_arm(
        "h5_ur_1rgb", "ur_1rgb", "ur5e", EMBODIMENTS["h5_ur_1rgb"].cameras, rm._UR_Q, opencv_order="BGR")


@pytest.mark.parametrize("value, want", [
    (True, True), (np.bool_(False), False), (1, True), (np.int8(0), False), ("True", True), (" false ", False),
    ("1", True), ("0", False), (b"TRUE", True), (b"0", False), (b"\xff\xfe", None), ("maybe", None), (2.5, None),
    (None, None),
])
def test_a_boolean_file_attribute_is_read_from_its_usual_spellings(value, want):
    assert rm._attr_bool(value) is want


def test_an_unreadable_frame_block_is_corrupt_file_naming_the_frames():
    class Unreadable:
        shape = (10,)

        def __getitem__(self, index):
            raise OSError("bad chunk")

    frames = rm._frame_reader(Unreadable(), "jpeg_vlen", "BGR", (), "ep:camera_top", 4)
    with pytest.raises(EpisodeError) as err:
        next(frames())
    assert err.value.reason is Reason.CORRUPT_FILE and err.value.message == "ep:camera_top: cannot read frames 0:4: bad chunk"


def test_raw_array_frames_are_reversed_only_for_bgr_embodiments():
    data = scene(3)
    np.testing.assert_array_equal(np.stack(list(rm._frame_reader(data, "raw_array", "RGB", (), "w", 2)())), data)
    np.testing.assert_array_equal(np.stack(list(rm._frame_reader(data, "raw_array", "BGR", (), "w", 2)())),
                                  data[..., ::-1])


def test_a_grayscale_image_decodes_to_three_equal_channels():
    gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    buf = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buf, format="PNG")
    for order in ("BGR", "RGB"):
        frame = decode_frame(np.frombuffer(buf.getvalue(), np.uint8), order, (), "x")
        assert frame.shape == (24, 32, 3) and all((frame[..., c] == gray).all() for c in range(3))


def test_an_undecodable_image_names_why_and_the_raw_sizes_tried():
    blob = np.frombuffer(jpeg(scene(1)[0])[:200], np.uint8)
    with pytest.raises(EpisodeError) as err:
        decode_frame(blob, "BGR", ((480, 640),), "cam[3]")
    assert err.value.message.startswith("cam[3]: 200 bytes, not decodable as an image: ")
    assert err.value.message.endswith("; size matches no raw frame size ['480x640x3=921600']")
    with pytest.raises(EpisodeError) as err:
        decode_frame(np.zeros(5, np.uint8), "BGR", (), "cam[0]")
    assert err.value.message == "cam[0]: 5 bytes, no JPEG/PNG signature (starts with 00000000); size matches no raw frame size []"


def test_annotation_file_rules(tmp_path):
    """A file that is not a JSON list is invalid_metadata naming it; an id's split is the folder after
    success_episodes when an episode follows (with or without /data); a step text that is not a string is ''."""
    path = tmp_path / "h5_ur_1rgb.json"
    path.write_text(json.dumps({"id": "x"}))
    with pytest.raises(EpisodeError) as err:
        rm._load_annotations(path)
    assert err.value.reason is Reason.INVALID_METADATA
    assert err.value.message == f"annotation file {path} must hold a JSON list, got dict"
    path.write_text(json.dumps([
        {"id": "h5_ur_1rgb/t/success_episodes/train/e1", "response": {"steps": [
            {"step_description": 5, "start_frame": 0, "end_frame": 2}]}},
        {"id": "h5_ur_1rgb/t/success_episodes/val/e2/data", "response": {"steps": ["reach"]}},
        {"id": "h5_ur_1rgb/t/success_episodes/e3", "response": {}},
    ]))
    index = rm._load_annotations(path)
    assert set(index) == {("t", "train", "e1"), ("t", "val", "e2"), ("t", "unsplit", "e3")}
    assert index[("t", "train", "e1")].steps == [{"text": "", "start_frame": 0, "end_frame": 2}]


def test_language_raw_holding_several_strings_gives_the_first(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb", csv=False)
    edit(tmp_path, ref, lambda f: f.create_dataset("language_raw", data=[b"The first.", b"The second."]))
    assert read_all(RoboMindConverter(tmp_path), ref)[0].instruction == "The first."


def test_language_raw_serves_a_task_the_table_lacks_and_an_absent_task_is_named(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb", task="not_listed")
    with pytest.raises(EpisodeError) as err:
        read_all(RoboMindConverter(tmp_path), ref)
    assert err.value.reason is Reason.MISSING_LANGUAGE
    assert err.value.message == (f"{ref}: task 'not_listed' is not in {rm.INSTRUCTION_CSV} and the file has no "
                                 "language_raw")
    edit(tmp_path, ref, lambda f: f.create_dataset("language_raw", data=[b"From the file."]))
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.instruction == "From the file." and ep.metadata["instruction_source"] == "hdf5_language_raw"


def test_instruction_table_read_problems(tmp_path):
    """An unreadable table is corrupt_file, one not UTF-8 invalid_metadata, one lacking either column too; an
    instruction_csv option naming no file is missing_metadata naming it."""
    with pytest.raises(EpisodeError) as err:
        rm.InstructionTable.load(tmp_path)  # a folder
    assert err.value.reason is Reason.CORRUPT_FILE and err.value.message.startswith(f"cannot read {tmp_path}: ")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"task,instruction\nt,\xff\xfe\n")
    with pytest.raises(EpisodeError) as err:
        rm.InstructionTable.load(bad)
    assert err.value.reason is Reason.INVALID_METADATA and err.value.message.startswith(f"{bad} is not UTF-8: ")
    for header in ("task,text", "name,instruction"):
        bad.write_text(f"{header}\nt,x\n")
        with pytest.raises(EpisodeError) as err:
            rm.InstructionTable.load(bad)
        assert err.value.reason is Reason.INVALID_METADATA and "needs 'task' and 'instruction' columns" in err.value.message
    ref = make(tmp_path / "root", "h5_ur_1rgb")
    with pytest.raises(EpisodeError) as err:
        read_all(RoboMindConverter(tmp_path / "root", {"instruction_csv": "meta/absent.csv"}), ref)
    assert err.value.message == (f"{ref}: instruction table {tmp_path / 'root' / 'meta' / 'absent.csv'} "
                                 "(option instruction_csv) not found")


def test_the_gripper_dimensions_are_recorded(tmp_path):
    ep, _ = read_all(RoboMindConverter(tmp_path), make(tmp_path, "h5_agilex_3rgb"))
    assert ep.metadata["gripper_dims"] == ["left_gripper", "right_gripper"]


@pytest.mark.parametrize("group", ["franka", "tiangong"])
def test_a_simulation_file_without_puppet_is_unsupported_layout(tmp_path, group):
    ref = make(tmp_path, "h5_ur_1rgb")

    def to_sim(f):
        del f["puppet"]
        f.create_group(group).create_dataset("joint", data=np.zeros((12, 7)))
    edit(tmp_path, ref, to_sim)
    with pytest.raises(EpisodeError) as err:
        read_all(RoboMindConverter(tmp_path), ref)
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT and "simulation layout" in err.value.message


def test_a_camera_that_is_a_group_is_unsupported_layout(tmp_path):
    ref = make(tmp_path, "h5_ur_1rgb")

    def to_group(f):
        del f[f"{rm.RGB}/camera_top"]
        f.create_group(f"{rm.RGB}/camera_top")
    edit(tmp_path, ref, to_group)
    with pytest.raises(EpisodeError) as err:
        read_all(RoboMindConverter(tmp_path), ref)
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.value.message == f"{ref}:{rm.RGB}/camera_top is a group, expected a dataset"


@pytest.mark.parametrize("ref, message", [
    ("x/t/success_episodes/e/data/trajectory.hdf5", "not under an h5_<embodiment> folder"),
    ("h5_ur_1rgb/t/success_episodes/e/frames/trajectory.hdf5",
     "expected h5_<embodiment>/<task>/success_episodes/[train|val/]<episode>/data/trajectory.hdf5"),
])
def test_an_episode_path_off_the_layout_says_what_was_expected(ref, message):
    with pytest.raises(EpisodeError) as err:
        EpisodeRef.parse(ref)
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT and err.value.message == f"{ref}: {message}"


def test_annotation_steps_out_of_range_are_counted_and_one_frame_steps_kept(tmp_path):
    """A step starting before frame 0, after the last frame or after its own end is out of range (counted, no
    frames labelled); a step of one frame labels that frame; no labelled frame at all: metadata only."""
    ref = make(tmp_path, "h5_ur_1rgb", split="unsplit", frames=12)
    steps = [{"step_description": "before", "start_frame": -2, "end_frame": 1}, step("reversed", 6, 2),
             step("past", 20, 25), step("one", 3, 3), step("two", 7, 8)]
    write_annotation(tmp_path, "h5_ur_1rgb.json", [record(ref, steps)])
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.subtasks == [None] * 3 + ["one"] + [None] * 3 + ["two"] * 2 + [None] * 3
    assert ep.metadata["annotation"]["steps_out_of_range"] == 3 and ep.metadata["annotation"]["alignment"] == "frames"
    write_annotation(tmp_path, "h5_ur_1rgb.json", [record(ref, steps[:3])])
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.subtasks is None and ep.metadata["annotation"]["alignment"] == "metadata_only"
    assert ep.metadata["annotation"]["steps_out_of_range"] == 3


def test_an_encoded_camera_must_be_a_one_dimensional_vlen_uint8_dataset(tmp_path):
    """Encoded frames are one vlen uint8 blob per frame, ``[T]``: vlen of another type, or vlen uint8 with a
    second axis, is unsupported_layout naming the dataset, its base type and its shape."""
    key = f"{rm.RGB}/camera_top"
    for dtype, shape, got in [(h5py.vlen_dtype(np.dtype("float32")), (12,), "vlen float32 shape (12,)"),
                              (VLEN, (12, 1), "vlen uint8 shape (12, 1)")]:
        ref = make(tmp_path, "h5_ur_1rgb", episode=f"e{len(shape)}")

        def replace(f, dtype=dtype, shape=shape):
            del f[key]
            f.create_dataset(key, shape, dtype=dtype)
        edit(tmp_path, ref, replace)
        with pytest.raises(EpisodeError) as err:
            read_all(RoboMindConverter(tmp_path), ref)
        assert err.value.reason is Reason.UNSUPPORTED_LAYOUT
        assert err.value.message == f"{ref}:{key} must be vlen uint8 [T], got {got}"


def test_an_annotation_id_is_keyed_by_the_folder_before_success_episodes(tmp_path):
    """The task is the folder just before ``success_episodes``, even as the id's first folder; an id with no task
    before it or no episode after it is skipped, and the entries after it are still read."""
    path = tmp_path / "h5_ur_1rgb.json"
    path.write_text(json.dumps([
        {"id": "success_episodes/train/e0"},  # no task
        {"id": "h5_ur_1rgb/t/success_episodes/"},  # no episode
        {"id": "t/success_episodes/train/e1", "response": {"task_summary": "  lift  "}},
        {"id": "/t/success_episodes/e2/"},
    ]))
    index = rm._load_annotations(path)
    assert set(index) == {("t", "train", "e1"), ("t", "unsplit", "e2")}
    assert index[("t", "train", "e1")].task_summary == "lift" and index[("t", "unsplit", "e2")].task_summary is None


def test_an_unreadable_annotation_file_is_corrupt_file_naming_it(tmp_path):
    with pytest.raises(EpisodeError) as err:
        rm._load_annotations(tmp_path)  # a folder
    assert err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message.startswith(f"cannot read annotation file {tmp_path}: ")


def test_a_language_raw_that_holds_no_text_is_ignored(tmp_path):
    """A numeric ``language_raw`` dataset is no instruction: the table's instruction stands alone, and without a
    table the episode lacks metadata like one with no ``language_raw`` at all."""
    ref = make(tmp_path, "h5_ur_1rgb")
    edit(tmp_path, ref, lambda f: f.create_dataset("language_raw", data=[7]))
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.instruction == INSTRUCTION and ep.instruction_alternatives == []
    (tmp_path / rm.INSTRUCTION_CSV).unlink()
    assert reason_of(RoboMindConverter(tmp_path), ref) is Reason.MISSING_METADATA


def test_a_length_mismatch_names_what_the_stream_is_measured_against(tmp_path):
    """Within the state, each puppet part is measured against the first one; the action (and every extra) is
    measured against the puppet state."""
    conv = RoboMindConverter(tmp_path)
    ref = make(tmp_path, "h5_agilex_3rgb", episode="a")
    edit(tmp_path, ref, _replace("puppet/joint_position_right", lambda d: d[:-1]))
    with pytest.raises(EpisodeError) as err:
        read_all(conv, ref)
    assert err.value.message == f"{ref}:puppet/joint_position_right has 11 frames but puppet/joint_position_left has 12"
    ref = make(tmp_path, "h5_ur_1rgb", episode="b")
    edit(tmp_path, ref, _replace("master/joint_position", lambda d: d[:-3]))
    with pytest.raises(EpisodeError) as err:
        read_all(conv, ref)
    assert err.value.reason is Reason.LENGTH_MISMATCH
    assert err.value.message == f"{ref}:master/joint_position has 9 frames but the puppet state has 12"


def test_an_empty_frame_buffer_says_it_starts_with_nothing():
    with pytest.raises(EpisodeError) as err:
        decode_frame(np.zeros(0, np.uint8), "BGR", (), "cam[0]")
    assert err.value.message == "cam[0]: 0 bytes, no JPEG/PNG signature (starts with nothing); size matches no raw frame size []"


def test_instruction_table_empty_file_and_short_rows(tmp_path):
    """An empty table is invalid_metadata naming it; a row too short to hold the instruction column is skipped."""
    path = tmp_path / "instr.csv"
    path.write_text("")
    with pytest.raises(EpisodeError) as err:
        rm.InstructionTable.load(path)
    assert err.value.reason is Reason.INVALID_METADATA and err.value.message == f"{path} is empty"
    path.write_text("task,instruction\nshort_row\nt,Do it.\n")
    table = rm.InstructionTable.load(path)
    assert table.instructions == {"t": ["Do it."]} and table.empty == set()


def test_each_camera_names_the_dataset_it_is_read_from(tmp_path):
    ref = make(tmp_path, "h5_franka_3rgb")
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert {name: cam.source_file for name, cam in ep.cameras.items()} == {
        name: f"{ref}:{rm.RGB}/{name}" for name in ("camera_top", "camera_left", "camera_right")}


def test_steps_align_to_frames_only_when_every_step_has_both_ends(tmp_path):
    """One step with a start but no end frame makes the whole annotation metadata only."""
    ref = make(tmp_path, "h5_ur_1rgb", split="unsplit", frames=12)
    steps = [step("reach", 0, 4), {"step_description": "grasp", "start_frame": "camera_top_0005.jpg"}]
    write_annotation(tmp_path, "h5_ur_1rgb.json", [record(ref, steps)])
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.subtasks is None and ep.metadata["annotation"]["alignment"] == "metadata_only"
    assert ep.metadata["annotation"]["steps"][1] == {"text": "grasp", "start_frame": 5, "end_frame": None}


def test_discover_on_an_absent_root_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        RoboMindConverter(tmp_path / "absent").discover()
    assert str(err.value) == f"RoboMIND root {tmp_path / 'absent'} is not a directory"


# -- behaviour pinned from the seed-3 mutation sample (issue 18) --------------------------------------------------


def test_a_frameless_step_is_recorded_with_both_frame_ends_empty(tmp_path):
    """A step given as plain text has no frames: its record says so for both ends, like a step with frames."""
    ref = make(tmp_path, "h5_ur_1rgb", split="unsplit")
    write_annotation(tmp_path, "h5_ur_1rgb.json", [record(ref, ["reach"])])
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.metadata["annotation"]["steps"] == [{"text": "reach", "start_frame": None, "end_frame": None}]


def test_a_language_raw_with_bytes_that_are_not_utf8_is_read_with_them_replaced(tmp_path):
    """A damaged byte in the file's instruction does not lose the rest of it (or the episode): it becomes U+FFFD."""
    ref = make(tmp_path, "h5_ur_1rgb")
    (tmp_path / rm.INSTRUCTION_CSV).unlink()
    edit(tmp_path, ref, lambda f: f.create_dataset("language_raw", data=[b"Pick \xff up."]))
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.instruction == "Pick \ufffd up." and ep.metadata["instruction_source"] == "hdf5_language_raw"


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_a_state_stored_in_any_numeric_dtype_is_read_as_float32(tmp_path, dtype):
    """Any numeric dtype is a valid stream (only non-numeric data is unsupported_layout); values come out float32."""
    ref = make(tmp_path, "h5_ur_1rgb")
    stored = {}

    def retype(f):
        values = np.round(f["puppet/joint_position"][()]).astype(dtype)
        del f["puppet/joint_position"]
        f.create_dataset("puppet/joint_position", data=values)
        stored["v"] = values
    edit(tmp_path, ref, retype)
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.state.dtype == np.float32
    np.testing.assert_array_equal(ep.state, stored["v"].astype(np.float32))


def test_an_instruction_table_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Spreadsheet programs save CSV as UTF-8 with a BOM: the header's first column is still 'task'."""
    path = tmp_path / "instr.csv"
    path.write_bytes("task,instruction\nt,Do it.\n".encode("utf-8-sig"))
    assert rm.InstructionTable.load(path).instructions == {"t": ["Do it."]}


def test_a_one_frame_episode_has_no_stuck_end_effector(tmp_path):
    """An end-effector can only be called stuck over more than one frame: one frame spans nothing."""
    ep, _ = read_all(RoboMindConverter(tmp_path), make(tmp_path, "h5_ur_1rgb", frames=1))
    assert ep.num_frames == 1 and ep.metadata["ee_pose_stuck"] is False


def test_a_missing_extra_does_not_stop_the_extras_after_it(tmp_path):
    """Each extra is read or recorded as missing on its own: without joint velocities, efforts and poses still come."""
    ref = make(tmp_path, "h5_agilex_3rgb")
    edit(tmp_path, ref, lambda f: f.__delitem__("puppet/joint_velocity_left"))
    ep, _ = read_all(RoboMindConverter(tmp_path), ref)
    assert ep.metadata["missing_extras"] == ["joint_velocity"]
    assert set(ep.extras) == {"joint_effort", "ee_pose"}


def test_episode_metadata_names_the_embodiment_folder(tmp_path):
    ep, _ = read_all(RoboMindConverter(tmp_path), make(tmp_path, "h5_ur_1rgb"))
    assert ep.metadata["embodiment_folder"] == "h5_ur_1rgb"


def test_an_annotation_dir_option_is_where_annotations_are_read(tmp_path):
    """``annotation_dir`` (relative to the root) replaces the release's annotation folders."""
    ref = make(tmp_path, "h5_ur_1rgb", split="unsplit")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "h5_ur_1rgb.json").write_text(json.dumps([record(ref, [step("reach", 0, 11)])]))
    assert read_all(RoboMindConverter(tmp_path, {"annotation_dir": "mine"}), ref)[0].subtasks == ["reach"] * 12
    assert read_all(RoboMindConverter(tmp_path), ref)[0].subtasks is None
