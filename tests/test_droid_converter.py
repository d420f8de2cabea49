"""The DROID converter (RLDS/TFDS shards and raw trajectory folders), on files written here.

RLDS fixtures are written with the converter's own TFDS writer (``write_rlds``), then edited
at the ``tf.train.Example`` level when a test needs a broken record; raw fixtures with its
h5py/PyAV writer, then edited on disk. The spec is docs/sources/droid.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import converters.droid as droid
from converters import get_converter
from converters.droid import DroidConverter
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, TimestampOrigin
from pipelines.samples import droid as droid_samples
from pipelines.samples.droid import (
    ANNOTATIONS_NAME,
    RAW_SAMPLE_IMAGE_HW,
    RAW_SAMPLES_DIR,
    SAMPLE_DEFECTS,
    TASKS,
    SampleEpisode,
)

HW = (24, 32)
JOINTS = [f"joint{i}" for i in range(1, 8)]
STATE_NAMES = [*JOINTS, "gripper", "ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw"]
SHARD0 = "1.0.1/droid_101-train.tfrecord-00000-of-00001"


# -- helpers ------------------------------------------------------------------------------


def tf():
    return droid.load_tensorflow()


def spec(n=20, *, lab="RAIL", outcome="success", when="2023-04-17 14:48:05", task=0, language=(True, True, True),
         defect=None, seed=0, file_root="/nfs/data/r2d2-data-full"):
    """A function of the features building one RLDS episode (and the trajectory it encodes)."""
    ep = SampleEpisode(lab, outcome, when, task, language, defect)
    traj = droid_samples.sample_trajectory(np.random.default_rng(seed), n, success=outcome == "success")

    def build(features, release):
        return droid_samples.rlds_episode(features, ep, traj, np.random.default_rng(seed), file_root=file_root,
                                          release=release)

    build.traj = traj
    build.ref = f"1.0.1/{droid_samples._sample_path(ep)}"
    return build


def make_release(root: Path, shards, *, version="1.0.1", builder="droid_101", hw=HW, edit=None) -> Path:
    """``root/<version>/`` with one shard per list in ``shards``; ``edit(example, shard, index)`` may
    change each ``tf.train.Example`` (return ``None`` to keep it as is)."""
    features = droid_samples.droid_features(hw, release=version)
    version_dir = root / version
    paths = droid_samples.write_rlds(version_dir, [[s(features, version) for s in shard] for shard in shards],
                             features=features, builder=builder)
    if edit is not None:
        for s, path in enumerate(paths):
            records = [r.numpy() for r in tf().data.TFRecordDataset(str(path))]
            with tf().io.TFRecordWriter(str(path)) as writer:
                for i, raw in enumerate(records):
                    example = tf().train.Example.FromString(raw)
                    edit(example, s, i)
                    writer.write(example.SerializeToString(deterministic=True))
    return version_dir


def read_all(conv: DroidConverter, unit: str):
    """[(ref, episode or reason, frames per camera)] for every episode of a unit; a unit error last."""
    out = []
    try:
        for ref, opener in conv.episodes(unit):
            try:
                with conv.read(opener) as ep:
                    frames = {name: list(cam.open_frames()) for name, cam in ep.cameras.items()}
                    out.append((ref, ep, frames))
            except EpisodeError as exc:
                out.append((ref, exc.reason, exc.message))
    except EpisodeError as exc:
        out.append((unit, exc.reason, exc.message))
    return out


def only_episode(conv, unit):
    (result,) = read_all(conv, unit)
    return result


def reason_of(conv, unit):
    results = read_all(conv, unit)
    assert len(results) == 1, results
    return results[0][1]


def floats(example, key):
    return example.features.feature[key].float_list.value


# -- schema and options -------------------------------------------------------------------


def test_registered_with_declared_schema():
    cls = get_converter("droid")
    assert cls is DroidConverter
    assert cls.embodiments == ("franka",) and cls.control_hz == 15.0
    assert cls.source_version == "1.0.1" and cls.converter_version


@pytest.mark.parametrize("options", [{"acton": "x"}, {"action": "cartesian_position"}, {"mode": "zip"},
                                     {"version": "latest"}, {"extras": "yes"}])
def test_bad_options_are_rejected(tmp_path, options):
    with pytest.raises(ValueError):
        DroidConverter(tmp_path, options)


def test_nothing_to_convert(tmp_path):
    with pytest.raises(FileNotFoundError):
        DroidConverter(tmp_path / "absent").discover()
    with pytest.raises(FileNotFoundError):
        DroidConverter(tmp_path).discover()
    with pytest.raises(FileNotFoundError):
        DroidConverter(tmp_path, {"mode": "raw"}).discover()


# -- RLDS: discovery and refs ---------------------------------------------------------------


def test_version_folder_or_parent_give_the_same_refs(tmp_path):
    a, b = spec(seed=1), spec(seed=2, when="2023-04-17 15:00:00")
    version_dir = make_release(tmp_path, [[a], [b]])
    parent, direct = DroidConverter(tmp_path), DroidConverter(version_dir)
    assert parent.discover() == ["1.0.1/droid_101-train.tfrecord-00000-of-00002",
                                 "1.0.1/droid_101-train.tfrecord-00001-of-00002"]
    assert direct.discover() == ["droid_101-train.tfrecord-00000-of-00002", "droid_101-train.tfrecord-00001-of-00002"]
    refs = [ref for u in parent.discover() for ref, _ in parent.episodes(u)]
    assert refs == [ref for u in direct.discover() for ref, _ in direct.episodes(u)] == [a.ref, b.ref]


def test_newest_version_by_default_or_the_one_asked(tmp_path):
    make_release(tmp_path, [[spec()]], version="1.0.0", builder="droid")
    make_release(tmp_path, [[spec(seed=3)]], version="1.0.1")
    (tmp_path / "0.9.10").mkdir()  # not a TFDS folder: ignored
    assert DroidConverter(tmp_path).discover() == [SHARD0]
    old = DroidConverter(tmp_path, {"version": "1.0.0"})
    assert old.discover() == ["1.0.0/droid-train.tfrecord-00000-of-00001"]
    ref, ep, _ = only_episode(old, old.discover()[0])
    assert ref.startswith("1.0.0/RAIL/success/")
    assert ep.metadata["release"] == {"builder": "droid", "version": "1.0.0", "split": "train"}
    assert ep.source_version == "1.0.0"  # the release read, not the converter's default
    _, newest, _ = only_episode(DroidConverter(tmp_path), SHARD0)
    assert newest.source_version == "1.0.1"
    assert set(ep.metadata["episode_metadata"]) == {"file_path", "recording_folderpath"}  # 1.0.0 has no more
    with pytest.raises(FileNotFoundError):
        DroidConverter(tmp_path, {"version": "2.0.0"}).discover()


def test_shards_come_from_dataset_info_and_a_missing_one_is_reported(tmp_path):
    version_dir = make_release(tmp_path, [[spec()], [spec(seed=1, when="2023-04-17 15:00:00")]])
    (version_dir / "droid_101-train.tfrecord-00001-of-00002").unlink()
    (version_dir / "droid_101-train.tfrecord-00007-of-00009").write_bytes(b"stray")  # not listed: ignored
    conv = DroidConverter(tmp_path)
    units = conv.discover()
    assert units == ["1.0.1/droid_101-train.tfrecord-00000-of-00002", "1.0.1/droid_101-train.tfrecord-00001-of-00002"]
    assert reason_of(conv, units[1]) is Reason.MISSING_FILE


def test_ref_falls_back_to_shard_and_record_index(tmp_path):
    a = spec()
    a_dup, b = spec(seed=5), spec(seed=5)  # same file_path twice in one shard

    def edit(example, s, i):
        if i == 0:
            example.features.feature["episode_metadata/file_path"].bytes_list.value[:] = [b"trajectory.h5"]

    make_release(tmp_path, [[a, a_dup, b]], edit=edit)
    conv = DroidConverter(tmp_path)
    results = read_all(conv, SHARD0)
    refs = [r[0] for r in results]
    assert refs == [f"{SHARD0}#0", a_dup.ref, f"{SHARD0}#2"]
    assert results[0][1].metadata["success"] is None and "file_path" in results[0][1].metadata["ref_fallback_reason"]
    assert "record 1" in results[2][1].metadata["ref_fallback_reason"]


# -- RLDS: content --------------------------------------------------------------------------


def test_rlds_episode_content(tmp_path):
    s = spec(n=25, outcome="failure", file_root="gs://xembodiment_data/r2d2/r2d2-data-full")
    make_release(tmp_path, [[s]])
    ref, ep, frames = only_episode(DroidConverter(tmp_path), SHARD0)
    traj = s.traj
    assert ref == s.ref and ref.startswith("1.0.1/RAIL/failure/2023-04-17/Mon_Apr_17_14:48:05_2023")
    assert ep.embodiment == "franka" and ep.robot_type == "franka_panda" and ep.control_hz == 15.0
    assert ep.state_names == STATE_NAMES
    expected_state = np.concatenate([traj.joints, traj.gripper[:, None], traj.ee], axis=1)
    np.testing.assert_allclose(ep.state, expected_state, rtol=1e-6, atol=1e-6)  # float32 on disk (TFDS float_list)
    assert ep.action_kind is ActionKind.JOINT_POSITION and ep.action_names == [*JOINTS, "gripper"]
    actions = traj.action_dict()
    np.testing.assert_allclose(ep.action[:, :7], actions["joint_position"], atol=1e-6)
    np.testing.assert_allclose(ep.action[:, 7], traj.gripper_cmd, atol=1e-6)
    assert ep.timestamp_origin is TimestampOrigin.FROM_CONTROL_RATE
    np.testing.assert_allclose(ep.timestamp, np.arange(25) / 15.0)
    assert ep.instruction == TASKS[0][0] and ep.instruction_alternatives == list(TASKS[0][1:])
    assert ep.metadata["language_instructions"] == list(TASKS[0])
    assert ep.metadata["success"] is False
    assert ep.metadata["gripper"]["open"] == 0.0 and ep.metadata["gripper"]["closed"] == 1.0
    meta = ep.metadata["episode_metadata"]
    assert meta["file_path"].endswith("/RAIL/failure/2023-04-17/Mon_Apr_17_14:48:05_2023/trajectory.h5")
    assert {"building", "collector_id", "date", "scene_id", "task_category", "extrinsics_wrist_cam"} <= set(meta)
    assert len(meta["extrinsics_exterior_cam_1"]) == 6
    assert ep.metadata["release"]["builder"] == "droid_101" and ep.metadata["record_index"] == 0
    assert sorted(ep.extras) == ["action_cartesian_position", "action_cartesian_velocity", "action_gripper_velocity",
                                 "action_joint_velocity", "rlds_action"]
    assert ep.extra_names["action_cartesian_velocity"] == ["ee_vx", "ee_vy", "ee_vz",
                                                          "ee_vroll", "ee_vpitch", "ee_vyaw"]
    assert sorted(frames) == ["exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"]
    assert all(len(f) == 25 and f[0].shape == (*HW, 3) for f in frames.values())
    # still stretches of the state give still frames (rendered from the state, not noise)
    idle = frames["exterior_image_1_left"]
    assert np.abs(idle[0].astype(int) - idle[1].astype(int)).mean() < 2.0


@pytest.mark.parametrize("option, stream, kind", [
    ("joint_position", "joint_position", ActionKind.JOINT_POSITION),
    ("joint_velocity", "joint_velocity", ActionKind.JOINT_VELOCITY),
    ("cartesian_velocity", "cartesian_velocity", ActionKind.EE_VELOCITY),
])
def test_action_option_picks_the_stream_and_kind(tmp_path, option, stream, kind):
    s = spec()
    make_release(tmp_path, [[s]])
    _, ep, _ = only_episode(DroidConverter(tmp_path, {"action": option}), SHARD0)
    assert ep.action_kind is kind
    assert ep.action_names == [*droid.ACTION_FIELDS[stream].names, "gripper"]
    np.testing.assert_allclose(ep.action[:, :-1], s.traj.action_dict()[stream], atol=1e-6)
    assert f"action_{stream}" not in ep.extras and "action_gripper_position" not in ep.extras
    assert ep.metadata["action"]["streams"] == [f"steps/action_dict/{stream}", "steps/action_dict/gripper_position"]
    _, lean, _ = only_episode(DroidConverter(tmp_path, {"action": option, "extras": False}), SHARD0)
    assert lean.extras == {}


@pytest.mark.parametrize("language, primary, alternatives", [
    ((False, True, False), 1, []),
    ((False, True, True), 1, [2]),
    ((True, False, True), 0, [2]),
])
def test_first_non_empty_instruction_is_primary(tmp_path, language, primary, alternatives):
    make_release(tmp_path, [[spec(task=1, language=language)]])
    _, ep, _ = only_episode(DroidConverter(tmp_path), SHARD0)
    assert ep.instruction == TASKS[1][primary]
    assert ep.instruction_alternatives == [TASKS[1][i] for i in alternatives]
    assert ep.metadata["language_instructions"] == [t if f else "" for t, f in zip(TASKS[1], language)]


def test_repeated_alternative_is_kept_once_and_varying_language_noted(tmp_path):
    def edit(example, s, i):
        feature = example.features.feature
        values = list(feature["steps/language_instruction_3"].bytes_list.value)
        feature["steps/language_instruction_3"].bytes_list.value[:] = [TASKS[0][1].encode()] * len(values)
        feature["steps/language_instruction_2"].bytes_list.value[-1] = b"something else"

    make_release(tmp_path, [[spec()]], edit=edit)
    _, ep, _ = only_episode(DroidConverter(tmp_path), SHARD0)
    assert ep.instruction_alternatives == [TASKS[0][1]]
    assert ep.metadata["language_varies_within_episode"] == ["language_instruction_2"]


# -- RLDS: streaming ------------------------------------------------------------------------


def test_records_are_read_one_at_a_time_and_frames_lazily(tmp_path, monkeypatch):
    make_release(tmp_path, [[spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(3)]])
    conv = DroidConverter(tmp_path)
    conv.discover()
    parsed, decoded = [], []
    release = conv.release(tmp_path / "1.0.1")
    original_parse = release.parse
    monkeypatch.setattr(release, "parse", lambda record: parsed.append(1) or original_parse(record))
    original_decode = droid.decode_image_bytes
    monkeypatch.setattr(droid, "decode_image_bytes",
                        lambda data, **kw: decoded.append(1) or original_decode(data, **kw))
    episodes = conv.episodes(SHARD0)
    ref, opener = next(episodes)
    assert len(parsed) == 1  # the second record has not been read
    with conv.read(opener) as ep:
        assert len(parsed) == 2  # opening re-reads the record
        assert decoded == []  # ... and decodes no frame
        frames = ep.cameras["wrist_image_left"].open_frames()
        next(frames)
        next(frames)
        assert len(decoded) == 2
    assert ep.cameras["wrist_image_left"].thread_safe
    next(episodes)
    assert len(parsed) == 3


def test_reading_rlds_does_not_import_tensorflow(samples):
    root, _, _ = samples
    code = (
        "import sys; from converters.droid import DroidConverter\n"
        f"c = DroidConverter({str(root)!r}, {{'mode': 'rlds'}})\n"
        "ref, opener = next(c.episodes(c.discover()[0]))\n"
        "with c.read(opener) as ep: [list(cam.open_frames()) for cam in ep.cameras.values()]\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_openers_are_handles_that_reread_their_record(tmp_path, monkeypatch, reader):
    make_release(tmp_path, [[spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(2)]])
    conv = DroidConverter(tmp_path)
    conv.discover()
    pairs = list(conv.episodes(SHARD0))  # consumers may keep every opener (the conformance suite does)
    read_at = []
    original = droid.read_tfrecord_at
    monkeypatch.setattr(droid, "read_tfrecord_at", lambda *a: read_at.append(a[1]) or original(*a))
    states = []
    for _ in range(2):
        with conv.read(pairs[1][1]) as ep:
            states.append(ep.state)
    np.testing.assert_array_equal(states[0], states[1])
    if reader == "crc32c":  # the handle re-reads its record at its byte offset each time it is opened
        assert len(read_at) == 2 and read_at[0] == read_at[1] > 0
    else:  # TensorFlow's reader gives no offsets: the parsed record is kept instead
        assert read_at == []


# -- RLDS: broken input ---------------------------------------------------------------------


def test_truncated_shard_yields_the_good_records_then_corrupt_file(tmp_path, reader):
    specs = [spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(4)]
    version_dir = make_release(tmp_path, [specs])
    droid_samples._truncate_shard(version_dir / "droid_101-train.tfrecord-00000-of-00001", 2)
    results = read_all(DroidConverter(tmp_path), SHARD0)
    assert [r[0] for r in results] == [specs[0].ref, specs[1].ref, SHARD0]
    assert results[2][1] is Reason.CORRUPT_FILE and "2 of 4 episodes lost" in results[2][2]
    assert results[2][2].startswith(f"{SHARD0}: ")  # either reader names the shard


@pytest.fixture(params=["crc32c", "tensorflow"])
def reader(request, monkeypatch):
    """Both TFRecord readers: the direct one (google-crc32c) and TensorFlow's fallback."""
    if request.param == "tensorflow":
        monkeypatch.setitem(droid._MODULES, "crc32c", None)
    return request.param


@pytest.mark.parametrize("damage", ["boundary", "garbage", "flipped", "header"])
def test_damaged_shard_is_corrupt_file(tmp_path, damage, reader):
    specs = [spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(2)]
    version_dir = make_release(tmp_path, [specs])
    path = version_dir / "droid_101-train.tfrecord-00000-of-00001"
    data = bytearray(path.read_bytes())
    if damage == "boundary":  # a partial copy that ends exactly after the first record
        first = int.from_bytes(data[:8], "little")
        data = data[: 8 + 4 + first + 4]
    elif damage == "garbage":
        data = bytearray(b"this is not a tfrecord file" * 10)
    elif damage == "flipped":  # one flipped byte inside the second record: its CRC no longer matches
        data[-200] ^= 0xFF
    else:  # a partial copy that ends inside the second record's header
        first = int.from_bytes(data[:8], "little")
        data = data[: 8 + 4 + first + 4 + 6]
    path.write_bytes(bytes(data))
    results = read_all(DroidConverter(tmp_path), SHARD0)
    # a flipped byte inside intact framing costs the direct reader that record only (next test)
    lost = f"1.0.1/{SHARD0.split('/')[1]}#1" if damage == "flipped" and reader == "crc32c" else SHARD0
    assert results[-1][0] == lost and results[-1][1] is Reason.CORRUPT_FILE
    assert len(results) == (1 if damage == "garbage" else 2)


def test_a_record_failing_its_crc_costs_that_record_only(tmp_path):
    specs = [spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(4)]
    version_dir = make_release(tmp_path, [specs])
    path = version_dir / "droid_101-train.tfrecord-00000-of-00001"
    data = bytearray(path.read_bytes())
    second = 16 + int.from_bytes(data[:8], "little")  # where record 1's framing starts
    data[second + 12 + 40] ^= 0xFF  # inside its data: length and length CRC intact
    path.write_bytes(bytes(data))
    results = read_all(DroidConverter(tmp_path), SHARD0)
    assert [r[0] for r in results] == [specs[0].ref, f"1.0.1/{path.name}#1", specs[2].ref, specs[3].ref]
    assert results[1][1] is Reason.CORRUPT_FILE and f"record at byte {second}" in results[1][2]
    assert "CRC mismatch" in results[1][2]
    assert all(not isinstance(r[1], Reason) for i, r in enumerate(results) if i != 1)


def _del(key):
    return lambda example, s, i: example.features.feature.pop(key)


def _trim(key, n):
    def edit(example, s, i):
        values = floats(example, key)
        del values[len(values) - n:]
    return edit


def _nan(key):
    def edit(example, s, i):
        floats(example, key)[10] = float("nan")
    return edit


def _empty(example, s, i):
    for key, feature in example.features.feature.items():
        if key.startswith("steps/"):
            for kind in ("float_list", "int64_list", "bytes_list"):
                if feature.HasField(kind):
                    del getattr(feature, kind).value[:]


RLDS_BROKEN = {
    "no joint_position": (_del("steps/observation/joint_position"), Reason.MISSING_KEY),
    "no primary action": (_del("steps/action_dict/joint_position"), Reason.MISSING_KEY),
    "no camera": (_del("steps/observation/wrist_image_left"), Reason.MISSING_CAMERA),
    "joint_position one step short": (_trim("steps/observation/joint_position", 7), Reason.LENGTH_MISMATCH),
    "action one step short": (_trim("steps/action_dict/joint_position", 7), Reason.LENGTH_MISMATCH),
    "gripper one step short": (_trim("steps/observation/gripper_position", 1), Reason.LENGTH_MISMATCH),
    "joint_position ragged": (_trim("steps/observation/joint_position", 3), Reason.SHAPE_MISMATCH),
    "nan in state": (_nan("steps/observation/cartesian_position"), Reason.NON_FINITE_VALUES),
    "nan in an extra stream": (_nan("steps/action_dict/cartesian_velocity"), Reason.NON_FINITE_VALUES),
    "empty episode": (_empty, Reason.EMPTY_EPISODE),
}


@pytest.mark.parametrize("case", sorted(RLDS_BROKEN))
def test_broken_records(tmp_path, case):
    edit, reason = RLDS_BROKEN[case]
    make_release(tmp_path, [[spec()]], edit=edit)
    assert reason_of(DroidConverter(tmp_path), SHARD0) is reason


@pytest.mark.parametrize("defect", ["no_language", "nan_action", "bad_jpeg"])
def test_sample_defects_in_records(tmp_path, defect):
    make_release(tmp_path, [[spec(defect=defect, language=(False,) * 3 if defect == "no_language" else (True,) * 3)]])
    ref, reason, message = only_episode(DroidConverter(tmp_path), SHARD0)
    assert reason is SAMPLE_DEFECTS[defect]
    assert ref in message or defect == "bad_jpeg" and "wrist_image_left[" in message


def test_record_that_is_not_an_example_is_corrupt_file(tmp_path):
    good = spec(seed=1)
    version_dir = make_release(tmp_path, [[spec(), good]])
    path = version_dir / "droid_101-train.tfrecord-00000-of-00001"
    records = [r.numpy() for r in tf().data.TFRecordDataset(str(path))]
    with tf().io.TFRecordWriter(str(path)) as writer:  # valid framing and CRCs, garbage payload
        writer.write(b"\xff\xfe not a protobuf")
        writer.write(records[1])
    results = read_all(DroidConverter(tmp_path), SHARD0)
    assert [r[:2] for r in results][0] == (f"{SHARD0}#0", Reason.CORRUPT_FILE)
    assert results[1][0] == good.ref and results[1][1].num_frames == 20


def test_frames_of_another_size_than_features_json_declares(tmp_path):
    from pipelines.samples.toolkit import encode_jpeg

    def edit(example, s, i):
        example.features.feature["steps/observation/exterior_image_2_left"].bytes_list.value[3] = encode_jpeg(
            np.zeros((10, 10, 3), np.uint8))

    make_release(tmp_path, [[spec()]], edit=edit)
    assert reason_of(DroidConverter(tmp_path), SHARD0) is Reason.SHAPE_MISMATCH


# -- raw layout -----------------------------------------------------------------------------


def make_raw(root: Path, ep: SampleEpisode | None = None, *, seed=0, annotate=True) -> tuple[str, str]:
    """One raw trajectory folder under ``root/droid_raw`` plus the annotations file; (ref, uuid)."""
    ep = ep or SampleEpisode("RAIL", "success", "2023-06-05 21:44:09", 0)
    base = root / RAW_SAMPLES_DIR
    rel, uuid = droid_samples._write_raw_episode(base, ep, seed, 0)
    texts = droid_samples._instructions(ep)
    table = {uuid: {k: t for (_, k), t in zip(droid.LANGUAGE_KEYS, texts) if t}} if annotate else {}
    (base / ANNOTATIONS_NAME).write_text(json.dumps(table))
    return f"{RAW_SAMPLES_DIR}/{rel}", uuid


def test_raw_episode_content(tmp_path):
    ref, uuid = make_raw(tmp_path, SampleEpisode("RAIL", "failure", "2023-06-05 21:44:09", 2, (True, False, True)))
    conv = DroidConverter(tmp_path)
    assert conv.discover() == [ref]
    got_ref, ep, frames = only_episode(conv, ref)
    assert ep.source_version == "raw"
    folder = tmp_path / ref
    with h5py.File(folder / "trajectory.h5") as h5:
        joints = h5["observation/robot_state/joint_positions"][()]
        step_ms = h5["observation/timestamp/control/step_start"][()]
        types = {s: int(h5["observation/camera_type"][s][0]) for s in h5["observation/camera_type"]}
        joint_velocity = h5["action/joint_velocity"][()]
    meta = json.loads(next(folder.glob("metadata_*.json")).read_text())
    assert got_ref == ref and ep.state_names == STATE_NAMES
    np.testing.assert_allclose(ep.state[:, :7], joints, rtol=1e-6)
    assert ep.timestamp_origin is TimestampOrigin.RECORDED
    np.testing.assert_allclose(ep.timestamp, step_ms / 1000.0)
    assert ep.metadata["timestamp_clock"] == "observation/timestamp/control/step_start"
    assert ep.instruction == TASKS[2][0] and ep.instruction_alternatives == [TASKS[2][2]]
    assert ep.metadata["success"] is False and ep.metadata["layout"] == "raw"
    assert ep.metadata["episode_metadata"]["uuid"] == uuid and "user" not in ep.metadata["episode_metadata"]
    assert "user" not in ep.metadata["h5_attrs"] and ep.metadata["annotations_file"].endswith(ANNOTATIONS_NAME)
    serials = ep.metadata["camera_serials"]
    assert serials["wrist_image_left"] == meta["wrist_cam_serial"] and types[serials["wrist_image_left"]] == 0
    assert serials["exterior_image_1_left"] == meta["ext1_cam_serial"] < meta["ext2_cam_serial"]
    np.testing.assert_allclose(ep.extras["action_joint_velocity"], joint_velocity, rtol=1e-6)
    assert all(len(f) == ep.num_frames and f[0].shape == (*RAW_SAMPLE_IMAGE_HW, 3) for f in frames.values())
    assert ep.metadata["videos"]["wrist_image_left"]["codec"] == "mpeg4"


def test_raw_video_decodes_to_rgb(tmp_path):
    red = np.zeros((6, 32, 48, 3), np.uint8)
    red[..., 0] = 220
    path = tmp_path / "red.mp4"
    droid_samples.write_mp4(path, red, (32, 48))
    frames = list(droid._video_stream("cam", path, 6, "red.mp4").open_frames())
    assert len(frames) == 6
    r, g, b = frames[2].reshape(-1, 3).mean(axis=0)
    assert r > 180 and g < 40 and b < 40  # cv2 would hand back BGR here; PyAV gives RGB


def test_raw_video_opens_lazily_and_extra_frames_are_ignored(tmp_path, monkeypatch):
    ref, _ = make_raw(tmp_path)
    folder = tmp_path / ref
    with h5py.File(folder / "trajectory.h5") as h5:
        n = h5["action/joint_position"].shape[0]
    wrist = json.loads(next(folder.glob("metadata_*.json")).read_text())["wrist_cam_serial"]
    droid_samples.write_mp4(folder / "recordings/MP4" / f"{wrist}.mp4", np.zeros((n + 5, 72, 128, 3), np.uint8),
                            (72, 128))
    import av

    opened = []
    original = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or original(*a, **k))
    conv = DroidConverter(tmp_path)
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        probes = len(opened)
        assert probes == 3  # each video's header checked once
        frames = ep.cameras["wrist_image_left"].open_frames()
        assert len(opened) == probes
        next(frames)
        assert len(opened) == probes + 1
        assert len([next(frames)] + list(frames)) == n - 1  # the 5 extra frames are not delivered


def test_raw_serials_fall_back_to_camera_type(tmp_path):
    ref, _ = make_raw(tmp_path)
    path = next((tmp_path / ref).glob("metadata_*.json"))
    meta = json.loads(path.read_text())
    for key in ("wrist_cam_serial", "ext1_cam_serial", "ext2_cam_serial"):
        del meta[key]
    path.write_text(json.dumps(meta))
    _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    with h5py.File(tmp_path / ref / "trajectory.h5") as h5:
        types = {s: int(h5["observation/camera_type"][s][0]) for s in h5["observation/camera_type"]}
    serials = ep.metadata["camera_serials"]
    assert types[serials["wrist_image_left"]] == 0
    assert serials["exterior_image_1_left"] < serials["exterior_image_2_left"]


def test_raw_annotations_option_and_robot_state_clock(tmp_path):
    ref, uuid = make_raw(tmp_path, annotate=False)
    (tmp_path / "mine.json").write_text(json.dumps({uuid: {"language_instruction2": "wipe the table"}}))
    with h5py.File(tmp_path / ref / "trajectory.h5", "r+") as h5:
        del h5["observation/timestamp/control"]
    _, ep, _ = only_episode(DroidConverter(tmp_path, {"annotations": "mine.json"}), ref)
    assert ep.instruction == "wipe the table" and ep.metadata["annotations_file"] == "mine.json"
    assert ep.metadata["timestamp_clock"] == "observation/timestamp/robot_state/read_start"
    assert reason_of(DroidConverter(tmp_path), ref) is Reason.MISSING_LANGUAGE


def _metadata_file(root, ref):
    return next((root / ref).glob("metadata_*.json"))


def _edit_json(fn):
    def edit(root, ref):
        path = _metadata_file(root, ref)
        meta = json.loads(path.read_text())
        fn(meta)
        path.write_text(json.dumps(meta))
    return edit


def _edit_h5(fn):
    def edit(root, ref):
        with h5py.File(root / ref / "trajectory.h5", "r+") as h5:
            fn(h5)
    return edit


def _video(role, fn):
    def edit(root, ref):
        serial = json.loads(_metadata_file(root, ref).read_text())[f"{role}_cam_serial"]
        fn(root / ref / "recordings/MP4" / f"{serial}.mp4")
    return edit


def _replace(key, fn):
    def edit(h5):
        value = fn(h5[key][()])
        del h5[key]
        h5[key] = value
    return edit


def _swap_wrist(meta):
    meta["wrist_cam_serial"], meta["ext1_cam_serial"] = meta["ext1_cam_serial"], meta["wrist_cam_serial"]


RAW_BROKEN = {
    "no metadata": (lambda root, ref: _metadata_file(root, ref).unlink(), Reason.MISSING_METADATA),
    "two metadata files": (lambda root, ref: (root / ref / "metadata_other.json").write_text("{}"),
                           Reason.INVALID_METADATA),
    "metadata not json": (lambda root, ref: _metadata_file(root, ref).write_text("{oops"), Reason.INVALID_METADATA),
    "metadata uuid differs": (_edit_json(lambda m: m.update(uuid="LAB+x+y")), Reason.INVALID_METADATA),
    "wrist serial is an exterior camera": (_edit_json(_swap_wrist), Reason.INVALID_METADATA),
    "wrist serial leaves the folder": (_edit_json(lambda m: m.update(wrist_cam_serial="../../../../../../etc/hostname")),
                                       Reason.INVALID_METADATA),
    "h5 truncated": (lambda root, ref: (root / ref / "trajectory.h5").write_bytes(
        (root / ref / "trajectory.h5").read_bytes()[:5000]), Reason.CORRUPT_FILE),
    "no trajectory.h5 joints": (_edit_h5(lambda h5: h5.__delitem__("observation/robot_state/joint_positions")),
                                Reason.MISSING_KEY),
    "action one step short": (_edit_h5(_replace("action/joint_position", lambda v: v[:-1])), Reason.LENGTH_MISMATCH),
    "gripper 2-D": (_edit_h5(_replace("observation/robot_state/gripper_position", lambda v: np.stack([v, v], 1))),
                    Reason.SHAPE_MISMATCH),
    "clock one step short": (_edit_h5(_replace("observation/timestamp/control/step_start", lambda v: v[:-1])),
                             Reason.LENGTH_MISMATCH),
    "clock goes back": (_edit_h5(_replace("observation/timestamp/control/step_start", lambda v: v[::-1])),
                        Reason.NON_MONOTONIC_TIMESTAMPS),
    "nan joints": (_edit_h5(_replace("observation/robot_state/joint_positions",
                                     lambda v: np.where(np.arange(len(v))[:, None] == 4, np.nan, v))),
                   Reason.NON_FINITE_VALUES),
    "mp4 missing": (_video("ext2", lambda p: p.unlink()), Reason.MISSING_CAMERA),
    "mp4 truncated": (_video("ext1", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
                      Reason.VIDEO_DECODE_ERROR),
    "mp4 garbage": (_video("wrist", lambda p: p.write_bytes(b"\x00" * 4096)), Reason.VIDEO_DECODE_ERROR),
    "mp4 short": (_video("wrist", lambda p: droid_samples.write_mp4(p, np.zeros((5, 72, 128, 3), np.uint8), (72, 128))),
                  Reason.FRAME_COUNT_MISMATCH),
    "not annotated": (lambda root, ref: (root / RAW_SAMPLES_DIR / ANNOTATIONS_NAME).write_text("{}"),
                      Reason.MISSING_LANGUAGE),
    "no annotations file": (lambda root, ref: (root / RAW_SAMPLES_DIR / ANNOTATIONS_NAME).unlink(),
                            Reason.MISSING_LANGUAGE),
    "annotations not json": (lambda root, ref: (root / RAW_SAMPLES_DIR / ANNOTATIONS_NAME).write_text("["),
                             Reason.INVALID_METADATA),
}


@pytest.mark.parametrize("case", sorted(RAW_BROKEN))
def test_broken_raw_episodes(tmp_path, case):
    edit, reason = RAW_BROKEN[case]
    ref, _ = make_raw(tmp_path)
    edit(tmp_path, ref)
    got, message = read_all(DroidConverter(tmp_path), ref)[0][1:]
    assert got is reason, message
    assert ref in message


# -- sample generator -----------------------------------------------------------------------


def file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples") / "droid"
    started = time.perf_counter()
    expected = droid_samples.write_samples(root, seed=0)
    return root, expected, time.perf_counter() - started


def test_another_seed_gives_other_samples_with_the_same_outcomes(samples, tmp_path):
    root, expected, _ = samples
    # the same seed giving the same bytes, in another process: test_converter_conformance
    assert droid_samples.write_samples(tmp_path / "other", seed=1) == expected
    def data(hashes):  # camera serials (MP4 names) and uuids are drawn from the seed too
        return {v for k, v in hashes.items() if "tfrecord" in k or k.endswith((".h5", ".mp4"))}

    assert data(file_hashes(root)).isdisjoint(data(file_hashes(tmp_path / "other")))


def test_samples_shape(samples):
    root, expected, seconds = samples
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 8_000_000
    assert (root / "1.0.1" / "dataset_info.json").is_file() and (root / "1.0.1" / "features.json").is_file()
    info = json.loads((root / "1.0.1" / "dataset_info.json").read_text())
    assert info["name"] == "droid_101" and [int(n) for n in info["splits"][0]["shardLengths"]] == [4, 5]
    assert (root / RAW_SAMPLES_DIR / ANNOTATIONS_NAME).is_file()
    assert sum(v is None for v in expected.values()) >= 6
    assert set(expected.values()) - {None} == {r.value for r in SAMPLE_DEFECTS.values() if r is not None}


def test_samples_read_as_declared(samples):
    root, expected, _ = samples
    conv = DroidConverter(root)
    got = {}
    for unit in conv.discover():
        for result in read_all(conv, unit):
            ref, outcome = result[0], result[1]
            got[ref] = outcome.value if isinstance(outcome, Reason) else None
            if outcome is not None and not isinstance(outcome, Reason):
                assert 40 <= outcome.num_frames <= 75
                assert all(len(f) == outcome.num_frames for f in result[2].values())
    assert got == expected


def test_sample_failure_and_language_quirks(samples):
    root, expected, _ = samples
    conv = DroidConverter(root, {"mode": "rlds"})
    assert all(u.startswith("1.0.1/") for u in conv.discover())
    episodes = {r[0]: r[1] for r in read_all(conv, "1.0.1/droid_101-train.tfrecord-00000-of-00002")}
    failure = next(ep for ref, ep in episodes.items() if "/failure/" in ref)
    assert failure.metadata["success"] is False
    only_second = next(ep for ep in episodes.values() if not isinstance(ep, Reason)
                       and ep.metadata["language_instructions"][0] == "")
    assert only_second.instruction == only_second.metadata["language_instructions"][1]
    raw = DroidConverter(root, {"mode": "raw"})
    assert all(u.startswith("droid_raw/") for u in raw.discover())


def test_write_synthetic(tmp_path):
    droid_samples.write_synthetic(tmp_path, episodes=3, frames=30, height=36, width=64, seed=4)
    conv = DroidConverter(tmp_path)
    units = conv.discover()
    assert len(units) == 3
    for unit in units:
        ref, ep, frames = only_episode(conv, unit)
        assert ep.num_frames == 30 and all(f[0].shape == (36, 64, 3) and len(f) == 30 for f in frames.values())


# -- rules the mutation run showed unpinned (issue 18) ----------------------------------------------


def test_metadata_values_become_json_values():
    assert droid._jsonable_value(b"caf\xc3\xa9 \xff") == "café \ufffd"  # undecodable bytes replaced
    assert droid._jsonable_value(np.array([b"a", b"b"])) == ["a", "b"]
    assert droid._jsonable_value(np.array(["x", b"y"], dtype=object)) == ["x", "y"]
    assert droid._jsonable_value(np.array([[1.5, 2.0]])) == [[1.5, 2.0]]
    assert droid._jsonable_value(np.float32(0.5)) == 0.5 and droid._jsonable_value(float("nan")) is None


def test_a_boolean_stream_in_a_raw_file_is_numeric(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("b", data=np.array([True, False, True]))
        f.create_dataset("s", data=np.array([b"a", b"b", b"c"]))
        field = droid.Field(("flag",), "x", "b")
        np.testing.assert_array_equal(droid._matrix(f["b"], field, "b", "w"), [[1.0], [0.0], [1.0]])
        with pytest.raises(EpisodeError) as err:
            droid._matrix(f["s"], field, "s", "w")
        assert err.value.reason is Reason.UNSUPPORTED_LAYOUT


def test_re_reading_a_record_that_fails_its_crc_is_corrupt_file(tmp_path):
    crc32c = droid._crc32c()
    if crc32c is None:
        pytest.skip("google-crc32c is not installed")
    data = b"payload"
    length = len(data).to_bytes(8, "little")
    record = length + droid._masked_crc(length, crc32c).to_bytes(4, "little") + data + (0).to_bytes(4, "little")
    path = tmp_path / "x.tfrecord"
    path.write_bytes(record)
    with pytest.raises(EpisodeError) as err:
        droid.read_tfrecord_at(path, 0, "shard")
    assert err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message == "shard: the record at byte 0: corrupted record (CRC mismatch)"


def test_raw_metadata_file_rules(tmp_path):
    """One metadata_<uuid>.json per folder (several: invalid_metadata naming them); the uuid comes from the
    file name when the file does not state it."""
    ref, uuid = make_raw(tmp_path)
    path = _metadata_file(tmp_path, ref)
    meta = json.loads(path.read_text())
    meta.pop("uuid", None)
    path.write_text(json.dumps(meta))
    _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    assert ep.metadata["episode_metadata"]["uuid"] == uuid
    (path.parent / "metadata_other.json").write_text(json.dumps(meta))
    _, reason, message = only_episode(DroidConverter(tmp_path), ref)
    assert reason is Reason.INVALID_METADATA
    assert message.endswith(f"several metadata files {sorted([path.name, 'metadata_other.json'])}")


def test_raw_language_is_looked_up_from_the_release_base_up_to_the_root_and_its_absence_explained(tmp_path):
    ref, uuid = make_raw(tmp_path)
    table = tmp_path / RAW_SAMPLES_DIR / ANNOTATIONS_NAME
    table.rename(tmp_path / ANNOTATIONS_NAME)  # at the root, above the release base
    _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    assert ep.instruction and ep.metadata["annotations_file"] == ANNOTATIONS_NAME
    (tmp_path / ANNOTATIONS_NAME).unlink()
    _, reason, message = only_episode(DroidConverter(tmp_path), ref)
    assert reason is Reason.MISSING_LANGUAGE
    assert message.endswith(f"; no {droid.RAW_ANNOTATIONS_GLOB} found (set the 'annotations' option)")
    (tmp_path / ANNOTATIONS_NAME).write_text(json.dumps({"someone_else": {}}))
    _, reason, message = only_episode(DroidConverter(tmp_path), ref)
    assert reason is Reason.MISSING_LANGUAGE and message.endswith(f"; uuid {uuid!r} is not in {ANNOTATIONS_NAME}")


def _bytes_edit(key, fn):
    def edit(example, s, i):
        values = example.features.feature[key].bytes_list.value
        new = fn(list(values))
        del values[:]
        values.extend(new)
    return edit


@pytest.mark.parametrize("edit, reason, words", [
    (_bytes_edit("steps/language_instruction", lambda v: [b"\xff\xfe"] * len(v)), Reason.INVALID_METADATA,
     ": steps/language_instruction: text is not UTF-8: "),
    (_bytes_edit("steps/language_instruction", lambda v: v[:-1]), Reason.LENGTH_MISMATCH,
     ": steps/language_instruction has 19 steps but the state has 20"),
    (_bytes_edit("steps/observation/wrist_image_left", lambda v: v[:-1]), Reason.FRAME_COUNT_MISMATCH,
     ": steps/observation/wrist_image_left has 19 frames but steps/observation/joint_position has 20"),
])
def test_record_language_and_frames_problems_name_the_episode_and_the_stream(tmp_path, edit, reason, words):
    make_release(tmp_path, [[spec()]], edit=edit)
    ref, got, message = only_episode(DroidConverter(tmp_path), SHARD0)
    assert got is reason and words in message and message.startswith(ref), message


def test_a_raw_clock_that_is_not_numeric_1d_is_shape_mismatch():
    clocks = {droid.RAW_CLOCKS[0]: np.zeros((3, 2), np.int64)}
    with pytest.raises(EpisodeError) as err:
        droid._raw_timestamps(clocks.get, 3, "ep")
    assert err.value.reason is Reason.SHAPE_MISMATCH
    assert err.value.message == f"ep: trajectory.h5:{droid.RAW_CLOCKS[0]} must be numeric [T], got (3, 2)"


def test_the_newest_version_is_the_highest_by_number_not_by_text(tmp_path):
    make_release(tmp_path, [[spec()]], version="1.0.9")
    make_release(tmp_path, [[spec(seed=3)]], version="1.0.10")
    assert DroidConverter(tmp_path).rlds_version_dir().name == "1.0.10"


def test_a_shard_cut_inside_a_record_header_names_the_damage(tmp_path):
    if droid._crc32c() is None:
        pytest.skip("google-crc32c is not installed")
    path = tmp_path / "x.tfrecord"
    path.write_bytes(b"\x05\x00\x00")
    with pytest.raises(EpisodeError) as err:
        list(droid.read_tfrecords(path, "shard"))
    assert err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message == "shard: unreadable after record 0: truncated record header at byte 0"


def test_optional_libraries_are_loaded_once_with_tensorflow_quietened(monkeypatch):
    """``_crc32c`` is google-crc32c's ``value`` (or None without it); ``load_tensorflow`` silences TensorFlow's C++
    logging and oneDNN notice (unless the environment says otherwise) and returns the module, kept for later calls."""
    pytest.importorskip("google_crc32c")
    import google_crc32c
    import tensorflow

    monkeypatch.setattr(droid, "_MODULES", {})
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert droid._crc32c() is google_crc32c.value and droid._MODULES["crc32c"] is google_crc32c.value
    assert droid.load_tensorflow() is tensorflow and droid._MODULES["tf"] is tensorflow
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_a_version_folder_given_as_a_unit_is_no_episode(tmp_path):
    """A readable release folder as a unit is unsupported_layout; one whose dataset_info.json cannot be read is
    invalid_metadata (how discovery reports such a release)."""
    version_dir = make_release(tmp_path, [[spec()]])
    assert read_all(DroidConverter(tmp_path), "1.0.1") == [
        ("1.0.1", Reason.UNSUPPORTED_LAYOUT, "1.0.1: a TFDS version folder, not an episode")]
    (version_dir / "dataset_info.json").write_text("{")
    [(unit, reason, message)] = read_all(DroidConverter(tmp_path), "1.0.1")
    assert unit == "1.0.1" and reason is Reason.INVALID_METADATA and message.startswith("1.0.1: ")


def test_a_shard_with_fewer_records_than_dataset_info_lists_is_corrupt_file_after_its_records(tmp_path):
    specs = [spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(2)]
    version_dir = make_release(tmp_path, [specs])
    path = version_dir / "droid_101-train.tfrecord-00000-of-00001"
    first = next(iter(tf().data.TFRecordDataset(str(path)))).numpy()
    with tf().io.TFRecordWriter(str(path)) as writer:  # intact framing, one record where two are listed
        writer.write(first)
    results = read_all(DroidConverter(tmp_path), SHARD0)
    assert [r[0] for r in results] == [specs[0].ref, SHARD0]
    assert results[1][1:] == (Reason.CORRUPT_FILE, f"{SHARD0}: shard holds 1 records but dataset_info.json lists 2 "
                                                   "(truncated copy?)")


# -- rules the seed-2 mutation sample showed unpinned (issue 18) -----------------------------------


def test_load_tensorflow_hides_every_gpu_and_leaves_an_initialised_runtime_as_it_is(monkeypatch):
    """``load_tensorflow`` makes no GPU visible to TensorFlow (the readers and sample writers run on CPUs next to
    training jobs); a runtime that is already initialised refuses with RuntimeError, and is left as it is."""
    import tensorflow

    calls = []

    def initialised(devices, device_type=None):  # what TensorFlow does once its context exists
        calls.append((devices, device_type))
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(droid, "_MODULES", {})
    monkeypatch.setattr(tensorflow.config, "set_visible_devices", initialised)
    assert droid.load_tensorflow() is tensorflow
    assert calls == [([], "GPU")]


def test_load_tfds_quietens_tensorflow_logging_unless_the_environment_says_otherwise(monkeypatch):
    """``load_tfds`` sets TF_CPP_MIN_LOG_LEVEL=3 when unset (TFDS may load TensorFlow's C++ libraries), keeps a
    value that is set, and returns the module, kept for later calls."""
    import tensorflow_datasets

    monkeypatch.setattr(droid, "_MODULES", {})
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert droid.load_tfds() is tensorflow_datasets and droid._MODULES["tfds"] is tensorflow_datasets
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setattr(droid, "_MODULES", {})
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    droid.load_tfds()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def _framed(payload: bytes, crc32c, *, announced: int | None = None) -> bytes:
    """One TFRecord record (length, its CRC, data, data CRC); ``announced`` overrides the stated length."""
    length = (len(payload) if announced is None else announced).to_bytes(8, "little")
    return (length + droid._masked_crc(length, crc32c).to_bytes(4, "little") + payload
            + droid._masked_crc(payload, crc32c).to_bytes(4, "little"))


def test_a_record_shorter_than_its_announced_length_names_the_length(tmp_path):
    """Intact length and length CRC, fewer bytes than announced: corrupt_file saying how many were announced."""
    crc32c = droid._crc32c()
    if crc32c is None:
        pytest.skip("google-crc32c is not installed")
    path = tmp_path / "x.tfrecord"
    path.write_bytes(_framed(b"first", crc32c) + _framed(b"0123456789", crc32c, announced=100)[:30])
    with pytest.raises(EpisodeError) as err:
        list(droid.read_tfrecords(path, "shard"))
    assert err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message == "shard: unreadable after record 1: truncated record (100 bytes announced) at byte 21"


def test_re_reading_past_the_last_record_is_corrupt_file(tmp_path):
    """An offset where no record starts any more (the shard was cut since it was listed) is corrupt_file naming it."""
    crc32c = droid._crc32c()
    if crc32c is None:
        pytest.skip("google-crc32c is not installed")
    path = tmp_path / "x.tfrecord"
    path.write_bytes(_framed(b"payload", crc32c))
    assert droid.read_tfrecord_at(path, 0, "shard") == b"payload"
    with pytest.raises(EpisodeError) as err:
        droid.read_tfrecord_at(path, 23, "shard")
    assert err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message == "shard: no record at byte 23 any more"


def test_a_release_read_directly_reports_damage_in_an_unlisted_shard_without_a_loss_count(tmp_path):
    """``RldsRelease.records`` on a shard dataset_info.json does not list: damage is corrupt_file after the good
    records, with no "episodes lost" count (there is no listed count to take them from)."""
    specs = [spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(2)]
    version_dir = make_release(tmp_path, [specs])
    copy = version_dir / "copy.tfrecord"
    copy.write_bytes((version_dir / "droid_101-train.tfrecord-00000-of-00001").read_bytes())
    droid_samples._truncate_shard(copy, 1)
    release = DroidConverter(tmp_path).release(version_dir)
    got = []
    with pytest.raises(EpisodeError) as err:
        for item in release.records(copy, "copy"):
            got.append(item)
    assert len(got) == 1 and err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message.startswith("copy: unreadable after record 1") and "lost" not in err.value.message
    second = 16 + int.from_bytes(copy.read_bytes()[:8], "little")  # where the cut record starts
    assert err.value.message.endswith(f" at byte {second}")  # the reader's own words, nothing appended


def test_a_non_numeric_array_is_unsupported_layout_naming_the_stream_and_dtype():
    """A stream that is not numbers (an array, not an HDF5 dataset) is unsupported_layout, naming it and its dtype."""
    field = droid.Field(("flag",), "x", "x")
    with pytest.raises(EpisodeError) as err:
        droid._matrix(np.array(["a", "b"]), field, "steps/x", "ep")
    assert err.value.reason is Reason.UNSUPPORTED_LAYOUT
    assert err.value.message == "ep: steps/x has non-numeric dtype <U1"


def test_a_root_that_is_a_version_folder_must_be_the_version_asked(tmp_path):
    """The ``version`` option with a version folder as root: the same version reads it, another is an error."""
    version_dir = make_release(tmp_path, [[spec()]])
    assert DroidConverter(version_dir, {"version": "1.0.1"}).rlds_version_dir() == version_dir
    with pytest.raises(ValueError, match="is version folder 1.0.1, option asks 1.0.0"):
        DroidConverter(version_dir, {"version": "1.0.0"}).rlds_version_dir()


def test_a_shard_unit_that_dataset_info_does_not_list_is_unsupported_layout(tmp_path):
    version_dir = make_release(tmp_path, [[spec()]])
    (version_dir / "droid_101-train.tfrecord-00007-of-00009").write_bytes(b"stray")
    unit = "1.0.1/droid_101-train.tfrecord-00007-of-00009"
    assert read_all(DroidConverter(tmp_path), unit) == [
        (unit, Reason.UNSUPPORTED_LAYOUT, f"{unit}: not a shard listed in {version_dir}/dataset_info.json")]


def test_rlds_metadata_names_the_shard_of_the_record(tmp_path):
    make_release(tmp_path, [[spec()], [spec(seed=1, when="2023-04-17 15:00:00")]])
    conv = DroidConverter(tmp_path)
    for unit in conv.discover():
        _, ep, _ = only_episode(conv, unit)
        assert ep.metadata["shard"] == unit.split("/")[1] and ep.metadata["record_index"] == 0
        assert {cam.source_file for cam in ep.cameras.values()} == {f"{unit}#0"}


def test_the_instruction_of_a_record_is_its_first_steps(tmp_path):
    """Language that changes within an episode: the first step's text is the instruction (the change is noted)."""
    edit = _bytes_edit("steps/language_instruction", lambda v: [b"open the drawer"] + v[1:])
    make_release(tmp_path, [[spec()]], edit=edit)
    _, ep, _ = only_episode(DroidConverter(tmp_path), SHARD0)
    assert ep.instruction == "open the drawer"
    assert ep.metadata["language_varies_within_episode"] == ["language_instruction"]


def test_an_rlds_action_of_another_shape_names_the_episode(tmp_path):
    """features.json declaring the opaque 7-D ``action`` with another shape: shape_mismatch naming the episode."""
    version_dir = make_release(tmp_path, [[spec(n=8)]])
    features = json.loads((version_dir / "features.json").read_text())
    steps = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    steps["action"]["tensor"]["shape"]["dimensions"] = []  # a scalar per step: 56 values come back as [56]
    (version_dir / "features.json").write_text(json.dumps(features))
    ref, reason, message = only_episode(DroidConverter(tmp_path), SHARD0)
    assert reason is Reason.SHAPE_MISMATCH
    assert message.startswith(f"{ref} ({SHARD0}#0): steps/action must be [T, 7]") and message.endswith("got (56,)")


def test_a_release_without_steps_is_missing_key_per_record(tmp_path):
    """A TFDS folder of another dataset (no ``steps`` feature): each record is missing_key, naming it."""
    f = droid.load_tfds().features
    features = f.FeaturesDict({"episode_metadata": f.FeaturesDict({"file_path": f.Text()})})
    path = "/data/RAIL/success/2023-04-17/Mon_Apr_17_14:48:05_2023/trajectory.h5"
    droid_samples.write_rlds(tmp_path / "1.0.1", [[{"episode_metadata": {"file_path": path}}]], features=features,
                             builder="droid_101")
    ref = "1.0.1/RAIL/success/2023-04-17/Mon_Apr_17_14:48:05_2023"
    assert read_all(DroidConverter(tmp_path), SHARD0) == [
        (ref, Reason.MISSING_KEY, f"{ref} ({SHARD0}#0): record has no 'steps'")]


def test_a_record_that_no_longer_parses_when_opened_names_the_record(tmp_path):
    """The shard rewritten between listing and opening: the handle's re-read record fails to parse, corrupt_file
    naming the shard and record."""
    if droid._crc32c() is None:
        pytest.skip("google-crc32c is not installed")
    version_dir = make_release(tmp_path, [[spec()]])
    conv = DroidConverter(tmp_path)
    [(_, opener)] = list(conv.episodes(SHARD0))
    with tf().io.TFRecordWriter(str(version_dir / "droid_101-train.tfrecord-00000-of-00001")) as writer:
        writer.write(b"\xff\xfe not a protobuf")
    with pytest.raises(EpisodeError) as err:
        with conv.read(opener):
            pass
    assert err.value.reason is Reason.CORRUPT_FILE
    assert err.value.message.startswith(f"{SHARD0}#0: cannot parse tf.train.Example: ")


def test_raw_cameras_name_their_mp4_and_its_header(tmp_path):
    """A raw camera's source is its ZED serial and its MP4 (relative to root); metadata keeps each MP4's codec,
    size and declared frame count."""
    ref, _ = make_raw(tmp_path)
    _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    serials = ep.metadata["camera_serials"]
    h, w = RAW_SAMPLE_IMAGE_HW
    for name, cam in ep.cameras.items():
        assert cam.source_name == serials[name]
        assert cam.source_file == f"{ref}/recordings/MP4/{serials[name]}.mp4"
        assert ep.metadata["videos"][name] == {"codec": "mpeg4", "width": w, "height": h,
                                               "header_frames": ep.metadata["videos"][name]["header_frames"]}
        assert ep.metadata["videos"][name]["header_frames"] >= ep.num_frames


def test_a_raw_video_that_fails_when_its_frames_are_read_names_the_video(tmp_path):
    path = tmp_path / "gone.mp4"
    path.write_bytes(b"\x00" * 4096)
    frames = droid._video_stream("cam", path, 3, "ep:recordings/MP4/gone.mp4").open_frames()
    with pytest.raises(EpisodeError) as err:
        next(frames)
    assert err.value.reason is Reason.VIDEO_DECODE_ERROR
    assert err.value.message.startswith("ep:recordings/MP4/gone.mp4: cannot open video")


def test_an_annotations_option_naming_an_absent_file_is_missing_file(tmp_path):
    ref, _ = make_raw(tmp_path)
    _, reason, message = only_episode(DroidConverter(tmp_path, {"annotations": "absent.json"}), ref)
    assert reason is Reason.MISSING_FILE
    assert message == f"{ref}: annotations file {tmp_path / 'absent.json'} not found"


def test_raw_success_comes_from_the_folder_and_the_metadata_only_without_one(tmp_path):
    """A success/failure folder decides; a metadata ``success`` flag counts only for a folder outside both."""
    ref, _ = make_raw(tmp_path)
    _edit_json(lambda m: m.update(success=False))(tmp_path, ref)
    _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    assert ep.metadata["success"] is True
    unsorted = ref.replace("/success/", "/unsorted/")
    (tmp_path / ref).parent.parent.rename((tmp_path / unsorted).parent.parent)
    _edit_json(lambda m: m.update(success=True))(tmp_path, unsorted)
    _, ep, _ = only_episode(DroidConverter(tmp_path), unsorted)
    assert ep.metadata["success"] is True
    _edit_json(lambda m: m.pop("success"))(tmp_path, unsorted)
    _, ep, _ = only_episode(DroidConverter(tmp_path), unsorted)
    assert ep.metadata["success"] is None


def test_an_unreadable_raw_metadata_file_is_corrupt_file(tmp_path):
    ref, uuid = make_raw(tmp_path)
    path = _metadata_file(tmp_path, ref)
    path.unlink()
    path.mkdir()  # matches metadata_*.json, but cannot be read
    _, reason, message = only_episode(DroidConverter(tmp_path), ref)
    assert reason is Reason.CORRUPT_FILE
    assert message.startswith(f"{ref}: cannot read metadata_{uuid}.json: ")


def test_camera_type_entries_without_a_first_value_are_ignored(tmp_path):
    """``observation/camera_type`` members that are empty, scalar or groups identify no camera: the episode reads."""
    ref, _ = make_raw(tmp_path)
    with h5py.File(tmp_path / ref / "trajectory.h5", "r+") as h5:
        types = h5["observation/camera_type"]
        types.create_dataset("empty", data=np.zeros(0, np.int64))
        types.create_dataset("scalar", data=np.int64(0))
        types.create_group("group")
    meta = json.loads(_metadata_file(tmp_path, ref).read_text())
    _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    assert ep.metadata["camera_serials"] == {cam.name: meta[cam.raw_serial_key] for cam in droid.CAMERAS}


def test_a_trajectory_h5_that_is_a_directory_is_still_an_episode(tmp_path):
    """A folder whose trajectory.h5 is a directory is discovered and reported corrupt_file, not left out."""
    ref, _ = make_raw(tmp_path)
    h5 = tmp_path / ref / "trajectory.h5"
    h5.unlink()
    h5.mkdir()
    conv = DroidConverter(tmp_path)
    assert conv.discover() == [ref]
    assert reason_of(conv, ref) is Reason.CORRUPT_FILE


# -- rules the seed-3 mutation sample showed unpinned (issue 18) -----------------------------------


def test_without_google_crc32c_records_are_read_by_tensorflow_without_offsets(tmp_path, monkeypatch):
    """google-crc32c missing: ``_crc32c`` is None (kept, not retried) and the shard is read by TensorFlow's
    reader, which gives no byte offsets."""
    monkeypatch.setattr(droid, "_MODULES", {})
    monkeypatch.setitem(sys.modules, "google_crc32c", None)  # ``import google_crc32c`` raises ImportError
    assert droid._crc32c() is None and droid._MODULES["crc32c"] is None
    path = tmp_path / "x.tfrecord"
    with tf().io.TFRecordWriter(str(path)) as writer:
        writer.write(b"first")
        writer.write(b"second")
    assert list(droid.read_tfrecords(path, "shard")) == [(None, b"first"), (None, b"second")]


def test_the_tensorflow_reader_reports_its_error_without_the_op_decorations(tmp_path, monkeypatch):
    """TensorFlow wraps its reader's error in ``{{function_node ...}}`` and ``[Op:...] name:``; the corrupt_file
    message keeps TensorFlow's own words between them, unchanged."""
    monkeypatch.setitem(droid._MODULES, "crc32c", None)
    specs = [spec(seed=i, when=f"2023-04-17 14:4{i}:05") for i in range(2)]
    version_dir = make_release(tmp_path, [specs])
    path = version_dir / "droid_101-train.tfrecord-00000-of-00001"
    droid_samples._truncate_shard(path, 1)
    with pytest.raises(tf().errors.OpError) as raw:
        list(tf().data.TFRecordDataset(str(path)))
    assert "{{" in raw.value.message and "[Op:" in raw.value.message  # what there is to drop
    results = read_all(DroidConverter(tmp_path), SHARD0)
    unit, reason, message = results[-1]
    assert unit == SHARD0 and reason is Reason.CORRUPT_FILE
    prefix, lost = f"{SHARD0}: unreadable after record 1: {type(raw.value).__name__}: ", "; 1 of 2 episodes lost"
    assert message.startswith(prefix) and message.endswith(lost)
    detail = message[len(prefix):-len(lost)]
    assert detail and detail in raw.value.message and "{{" not in detail and "[Op:" not in detail


def test_raw_cameras_may_be_read_on_parallel_threads(tmp_path):
    """Each raw camera opens its own decoder when its frames are read, so the writer may read them in parallel."""
    assert droid._video_stream("cam", tmp_path / "never_opened.mp4", 3, "ep").thread_safe


def test_an_episode_without_language_names_the_empty_rlds_slots(tmp_path):
    """All three instructions blank: missing_language naming the episode and the RLDS keys it looked at."""
    make_release(tmp_path, [[spec(language=(False, False, False))]])
    ref, reason, message = only_episode(DroidConverter(tmp_path), SHARD0)
    assert reason is Reason.MISSING_LANGUAGE
    assert message == (f"{ref} ({SHARD0}#0): all instructions are empty "
                       "(language_instruction, language_instruction_2, language_instruction_3)")


def test_episode_metadata_records_the_action_option_its_streams_and_units(tmp_path):
    make_release(tmp_path, [[spec()]])
    _, ep, _ = only_episode(DroidConverter(tmp_path, {"action": "cartesian_velocity"}), SHARD0)
    assert ep.metadata["action"] == {
        "option": "cartesian_velocity",
        "streams": ["steps/action_dict/cartesian_velocity", "steps/action_dict/gripper_position"],
        "units": droid.ACTION_CHOICES["cartesian_velocity"][2],
    }


def test_raw_metadata_is_read_as_utf8_whatever_the_locale(tmp_path):
    """metadata_<uuid>.json is JSON, hence UTF-8: a task typed in any language reads where the locale is ASCII."""
    import locale

    ref, _ = make_raw(tmp_path)
    path = _metadata_file(tmp_path, ref)
    meta = json.loads(path.read_text())
    meta["current_task"] = "把杯子放进抽屉"
    path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        _, ep, _ = only_episode(DroidConverter(tmp_path), ref)
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert ep.metadata["episode_metadata"]["current_task"] == "把杯子放进抽屉"


def test_a_camera_serial_of_the_wrong_type_says_what_camera_type_holds(tmp_path):
    """Wrist and exterior serials swapped in the metadata: invalid_metadata naming the first camera checked (ext1),
    its serial and the camera_type stored for it, with the meaning of the types."""
    ref, _ = make_raw(tmp_path)
    _edit_json(_swap_wrist)(tmp_path, ref)
    serial = json.loads(_metadata_file(tmp_path, ref).read_text())["ext1_cam_serial"]
    _, reason, message = only_episode(DroidConverter(tmp_path), ref)
    assert reason is Reason.INVALID_METADATA
    assert message == (f"{ref}: 'ext1_cam_serial' = {serial} but observation/camera_type/{serial} = 0 "
                       "(0 = wrist, 1 = exterior)")


def test_raw_discovery_skips_hidden_and_recordings_folders(tmp_path):
    """A trajectory.h5 under a hidden folder (a trash, a sync cache) or a recordings/ folder is no episode."""
    for rel in ("RAIL/success/2023-06-05/t", ".trash/RAIL/success/2023-06-05/t", "recordings/RAIL/success/x/t"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "trajectory.h5").touch()
    assert DroidConverter(tmp_path, {"mode": "raw"}).discover() == ["RAIL/success/2023-06-05/t"]


def test_rlds_mode_without_a_version_folder_says_so_even_beside_raw_folders(tmp_path):
    (tmp_path / "RAIL/success/2023-06-05/t").mkdir(parents=True)
    (tmp_path / "RAIL/success/2023-06-05/t/trajectory.h5").touch()
    with pytest.raises(FileNotFoundError, match="no TFDS version folder .with dataset_info.json. at or under"):
        DroidConverter(tmp_path, {"mode": "rlds"}).discover()


def _drop_from_features(version_dir: Path, *path: str) -> None:
    """Remove one feature (a key path below the top-level features, through sequences) from features.json."""
    features = json.loads((version_dir / "features.json").read_text())
    node = features["featuresDict"]["features"]
    for key in path[:-1]:
        node = node[key]
        node = node["sequence"]["feature"] if "sequence" in node else node
        node = node["featuresDict"]["features"]
    del node[path[-1]]
    (version_dir / "features.json").write_text(json.dumps(features))


def test_a_release_declaring_no_action_dict_is_missing_key_naming_the_action_stream(tmp_path):
    """features.json without ``steps/action_dict``: the parsed steps have no such group, missing_key naming the
    primary action stream."""
    version_dir = make_release(tmp_path, [[spec(n=8)]])
    _drop_from_features(version_dir, "steps", "action_dict")
    ref, reason, message = only_episode(DroidConverter(tmp_path), SHARD0)
    assert reason is Reason.MISSING_KEY
    assert message == f"{ref} ({SHARD0}#0): missing steps/action_dict/joint_position"


def test_a_release_declaring_no_episode_metadata_falls_back_to_the_shard_ref(tmp_path):
    """features.json without ``episode_metadata``: no file_path to take the ref from, so the ref is the shard and
    record index, the success unknown, and the episode still converts."""
    version_dir = make_release(tmp_path, [[spec(n=8)]])
    _drop_from_features(version_dir, "episode_metadata")
    ref, ep, _ = only_episode(DroidConverter(tmp_path), SHARD0)
    assert ref == f"{SHARD0}#0" and ep.num_frames == 8
    assert ep.metadata["episode_metadata"] == {} and ep.metadata["success"] is None
    assert ep.metadata["ref_fallback_reason"] == ("episode_metadata/file_path None has no "
                                                  "<lab>/<success|failure>/<date>/<time>")


def test_a_record_without_a_language_slot_reads_with_that_slot_empty(tmp_path):
    """A record missing one of the three instruction streams: that slot is empty, the others still count."""
    make_release(tmp_path, [[spec()]], edit=_del("steps/language_instruction_3"))
    _, ep, _ = only_episode(DroidConverter(tmp_path), SHARD0)
    assert ep.metadata["language_instructions"] == [TASKS[0][0], TASKS[0][1], ""]
    assert ep.instruction == TASKS[0][0] and ep.instruction_alternatives == [TASKS[0][1]]


def test_a_record_that_is_not_an_example_names_the_shard_and_record(tmp_path):
    """A listed record whose payload is no tf.train.Example: corrupt_file naming the shard and the record."""
    version_dir = make_release(tmp_path, [[spec()]])
    with tf().io.TFRecordWriter(str(version_dir / "droid_101-train.tfrecord-00000-of-00001")) as writer:
        writer.write(b"\xff\xfe not a protobuf")
    ref, reason, message = only_episode(DroidConverter(tmp_path), SHARD0)
    assert ref == f"{SHARD0}#0" and reason is Reason.CORRUPT_FILE
    assert message.startswith(f"{SHARD0}#0: cannot parse tf.train.Example: ")
