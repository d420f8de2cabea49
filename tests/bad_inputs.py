"""The bad-input corpus: broken episodes of every kind a real download shows, generated in code, per source.

A conversion over terabytes meets truncated copies, garbage bytes, NaN, wrong shapes, clocks that go
back, empty episodes and links that point nowhere. Each must cost only the episode it hits, carry the
reason code auditors filter on, and never end the run. Unit tests of a converter prove its reader
raises the right error; this corpus proves the whole pipeline (discovery, Beam, quarantine, report)
keeps that promise next to good episodes. ``tests/test_bad_input_corpus.py`` holds it to that.

Every case is a record (:class:`Case`): source, corruption kind, the reason code it must get and a
``make`` function that writes it into a copy of the source's sample tree. The builders reuse the
fixture writers of the per-source tests, so a case states only the one thing it breaks. Being data,
the corpus prints its own coverage: ``python tests/bad_inputs.py --table`` converts it and prints
the kinds x sources table of the reason codes observed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.episode_store.errors import Reason

#: corruption kinds, the rows of the coverage table, in the order printed
KINDS: dict[str, str] = {
    "truncated_file": "main data file cut short (a partial copy)",
    "garbage_file": "main data file replaced by bytes that are not its format",
    "truncated_media": "a video or encoded image cut short",
    "garbage_media": "a video or encoded image replaced by garbage",
    "damaged_record": "one record of a multi-episode file fails its CRC or does not parse",
    "non_finite": "NaN or infinity in state or action",
    "implausible_value": "a value like 2e36 (garbage bytes read as a number)",
    "wrong_shape": "an array of the wrong rank or width",
    "non_monotonic_timestamps": "timestamps that go back",
    "empty_episode": "an episode with zero frames",
    "missing_file": "a file the episode needs is absent",
    "dangling_symlink": "an episode file that is a link to nothing",
    "directory_as_file": "a directory under an episode file's name",
    "garbage_metadata": "a metadata JSON/JSONL/parquet file that does not parse",
    "malformed_metadata": "metadata that parses but holds a null or a value of the wrong type",
    "path_outside_root": "metadata naming a path outside the source folder",
}


@dataclass(frozen=True)
class Made:
    """What a builder wrote: the broken episode's ref, and refs of good episodes it put beside it in
    the same file (they prove the damage costs that episode only)."""

    ref: str
    companions: tuple[str, ...] = ()
    #: sample episodes that live inside the broken unit and rightly go down with it (refs starting
    #: with this prefix): a release whose shard list cannot be read takes its shards' episodes along
    takes_down: str | None = None


@dataclass(frozen=True)
class Case:
    """One broken input: a record rather than a test function, so the coverage table is printed from
    the same data the tests run, and adding a kind or a source is adding rows."""

    source: str
    kind: str
    name: str
    #: the reason code the broken episode must be quarantined with
    expect: str
    #: writes the case into the source's input root, returns its ref (or a :class:`Made`)
    make: Callable[[Path], str | Made]
    #: why the pipeline is known to get this case wrong (the test is a strict xfail), else None
    xfail: str | None = None
    #: the case takes more than its own episode down (a release whose metadata is unreadable takes
    #: its shards), or ends the whole run: it gets a run (and a copy of the samples) of its own so the
    #: source's other cases still report
    isolated: bool = False

    @property
    def id(self) -> str:
        return f"{self.source}-{self.name}"

    def build(self, root: Path) -> Made:
        made = self.make(root)
        return made if isinstance(made, Made) else Made(made)


# --------------------------------------------------------------------------------------
# byte-level damage, shared by every source
# --------------------------------------------------------------------------------------


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


def garbage(path: Path, size: int = 4096) -> None:
    """Random bytes, seeded by the file name: the same corpus every run, and no format's magic number
    survives (an error page saved under the file's name, a disk block of another file)."""
    path.write_bytes(b"\x00GARBAGE" + np.random.default_rng(_seed(str(path.name))).bytes(size))


def cut(path: Path, fraction: float = 0.5) -> None:
    """A partial copy: an interrupted download or sync keeps the head of a file."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def dangle(path: Path) -> None:
    """Turn ``path`` into a symbolic link to a file that does not exist (a half-synced mirror)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"{path.name}.never-downloaded", path)


def as_directory(path: Path) -> None:
    """A folder where a file should be (an archive unpacked in place, a mistyped ``mkdir``)."""
    if path.exists():
        path.unlink()
    (path / "unexpected").mkdir(parents=True)


def _h5_replace(h5: h5py.File, key: str, value: np.ndarray) -> None:
    del h5[key]
    h5.create_dataset(key, data=value)


def _h5_edit(path: Path, fn: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "r+") as h5:
        fn(h5)


def _h5_set(path: Path, key: str, index: tuple, value: float) -> None:
    with h5py.File(path, "r+") as h5:
        data = h5[key][()]
        data[index] = value
        h5[key][...] = data


# --------------------------------------------------------------------------------------
# in-house: ALOHA/ACT HDF5 (clones of sample episodes inside sample task folders)
# --------------------------------------------------------------------------------------

_INHOUSE_FRANKA = "franka_pick_cube/episode_0.hdf5"  # padded JPEG + compress_len, no /timestamp
_INHOUSE_UR5 = "ur5_stack_blocks/episode_0.hdf5"  # variable-length JPEG, recorded /timestamp
_INHOUSE_ALOHA = "aloha_transfer_cube/episode_0.hdf5"  # raw uint8 frames


def _inhouse_clone(template: str, number: int, edit: Callable[[Path], None]):
    """``make`` helper: copy a good sample episode to ``episode_<number>.hdf5`` in its task folder, then edit."""

    def make(root: Path) -> str:
        ref = f"{Path(template).parent.as_posix()}/episode_{number}.hdf5"
        shutil.copyfile(root / template, root / ref)
        edit(root / ref)
        return ref

    return make


def _inhouse_empty(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        for key in ("observations/qpos", "observations/qvel", "observations/effort", "action"):
            _h5_replace(h5, key, h5[key][()][:0])
        for cam in list(h5["observations/images"]):
            key = f"observations/images/{cam}"
            _h5_replace(h5, key, h5[key][()][:0])


def _inhouse_vlen_frame(index: int, fn: Callable[[bytes], bytes]):
    def edit(path: Path) -> None:
        with h5py.File(path, "r+") as h5:
            ds = h5["observations/images/cam_front"]
            ds[index] = np.frombuffer(fn(bytes(ds[index])), np.uint8)
    return edit


def _inhouse_task_folder(folder: str, meta_edit: Callable[[Path], None] | None = None, **meta):
    """``make`` helper: a new task folder written with the in-house tests' fixture writer."""

    def make(root: Path) -> str:
        import tests.test_inhouse_converter as t

        data, _ = t.datasets(12)
        ref = t.make_task(root, data, t.metadata(**meta) if meta else None, folder=folder)
        if meta_edit is not None:
            meta_edit(root / folder / "metadata.json")
        return ref

    return make


def _inhouse_without_metadata(root: Path) -> str:
    import tests.test_inhouse_converter as t

    data, _ = t.datasets(12)
    return t.make_task(root, data, False, folder="corpus_no_metadata")


def _inhouse_timestamps_back(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        t = h5["timestamp"][()]
        t[9] = t[4]
        h5["timestamp"][...] = t


def _inhouse_link(name: str, fn: Callable[[Path], None]):
    def make(root: Path) -> str:
        ref = f"franka_pick_cube/{name}"
        fn(root / ref)
        return ref
    return make


INHOUSE: list[Case] = [
    Case("inhouse", "truncated_file", "hdf5_cut_to_40pct", "corrupt_file",
         _inhouse_clone(_INHOUSE_FRANKA, 901, lambda p: cut(p, 0.4))),
    Case("inhouse", "garbage_file", "hdf5_garbage", "corrupt_file", _inhouse_clone(_INHOUSE_FRANKA, 902, garbage)),
    Case("inhouse", "truncated_media", "jpeg_frame_cut", "image_decode_error",
         _inhouse_clone(_INHOUSE_UR5, 903, _inhouse_vlen_frame(6, lambda b: b[: len(b) // 2]))),
    Case("inhouse", "garbage_media", "jpeg_frame_garbage", "image_decode_error",
         _inhouse_clone(_INHOUSE_UR5, 904, _inhouse_vlen_frame(3, lambda b: b"\x00GARBAGE" * 40))),
    Case("inhouse", "non_finite", "nan_in_qpos", "non_finite_values",
         _inhouse_clone(_INHOUSE_FRANKA, 905, lambda p: _h5_set(p, "observations/qpos", (5, 1), np.nan))),
    Case("inhouse", "non_finite", "inf_in_action", "non_finite_values",
         _inhouse_clone(_INHOUSE_FRANKA, 906, lambda p: _h5_set(p, "action", (3, 0), np.inf))),
    Case("inhouse", "non_finite", "inf_in_timestamp", "non_finite_values",
         _inhouse_clone(_INHOUSE_UR5, 911, lambda p: _h5_set(p, "timestamp", (3,), np.inf))),
    Case("inhouse", "implausible_value", "qpos_2e36", "implausible_values",
         _inhouse_clone(_INHOUSE_FRANKA, 907, lambda p: _h5_set(p, "observations/qpos", (7, 2), 2e36))),
    Case("inhouse", "wrong_shape", "qpos_1d", "shape_mismatch",
         _inhouse_clone(_INHOUSE_FRANKA, 908,
             lambda p: _h5_edit(p, lambda h5: _h5_replace(h5, "observations/qpos", h5["observations/qpos"][:, 0])))),
    Case("inhouse", "non_monotonic_timestamps", "timestamp_goes_back", "non_monotonic_timestamps",
         _inhouse_clone(_INHOUSE_UR5, 909, _inhouse_timestamps_back)),
    Case("inhouse", "empty_episode", "zero_frames", "empty_episode",
         _inhouse_clone(_INHOUSE_ALOHA, 910, _inhouse_empty)),
    Case("inhouse", "missing_file", "task_without_metadata_json", "missing_metadata", _inhouse_without_metadata),
    Case("inhouse", "dangling_symlink", "episode_hdf5_link_to_nothing", "missing_file",
         _inhouse_link("episode_950.hdf5", dangle)),
    Case("inhouse", "directory_as_file", "directory_named_episode_hdf5", "corrupt_file",
         _inhouse_link("episode_951.hdf5", as_directory)),
    Case("inhouse", "garbage_metadata", "metadata_json_garbage", "invalid_metadata",
         _inhouse_task_folder("corpus_metadata_garbage", meta_edit=lambda p: p.write_text('{"instruction": "pick'))),
    Case("inhouse", "path_outside_root", "camera_named_dotdot", "invalid_metadata",
         _inhouse_task_folder("corpus_camera_dotdot", camera_names=["..", "cam_wrist"])),
]


# --------------------------------------------------------------------------------------
# DROID: records appended to an intact RLDS shard, and clones of a raw trajectory folder
# --------------------------------------------------------------------------------------

_DROID_VERSION = "1.0.1"
_DROID_SHARD = "droid_101-train.tfrecord-00000-of-00002"  # the sample's intact shard
_DROID_RAW = "droid_raw/RAIL/success/2023-06-05/Mon_Jun__5_21:44:09_2023"
_DROID_STEPS = 12  # appended records are shortened to this many steps


def _droid_frame(data: bytes) -> bytes:
    """TFRecord framing (length, masked CRC32C of the length, data, masked CRC32C of the data)."""
    import google_crc32c

    from converters import droid

    length = len(data).to_bytes(8, "little")
    crc = google_crc32c.value
    return (length + droid._masked_crc(length, crc).to_bytes(4, "little") + data
            + droid._masked_crc(data, crc).to_bytes(4, "little"))


def _droid_template(root: Path):
    """The shard's first record as a ``tf.train.Example`` (TFDS's own proto, no TensorFlow), cut to
    ``_DROID_STEPS`` steps so appended records stay small."""
    from tensorflow_datasets.proto import tf_example_pb2

    from converters import droid

    path = root / _DROID_VERSION / _DROID_SHARD
    _, record = next(droid.read_tfrecords(path, "template"))
    example = tf_example_pb2.Example.FromString(record)
    features = example.features.feature
    steps = len(features["steps/is_first"].int64_list.value)
    for key, feature in features.items():
        if key.startswith("steps/"):
            values = getattr(feature, feature.WhichOneof("kind")).value
            width = len(values) // steps
            del values[_DROID_STEPS * width:]
    return example


def _droid_append(root: Path, records: list[bytes]) -> int:
    """Append framed records to the intact shard and list them in dataset_info.json; returns the
    index the first one gets in the shard."""
    info_path = root / _DROID_VERSION / "dataset_info.json"
    info = json.loads(info_path.read_text())
    split = next(s for s in info["splits"] if s["name"] == "train")
    first = int(split["shardLengths"][0])
    split["shardLengths"][0] = str(first + len(records))
    info_path.write_text(json.dumps(info, indent=1))
    with open(root / _DROID_VERSION / _DROID_SHARD, "ab") as fh:
        fh.writelines(records)
    return first


def _droid_named(example, minute: int) -> str:
    """Give a record its own file_path (hence its own ref); returns the ref."""
    folder = f"Mon_Jan__1_10:{minute:02d}:00_2024"
    path = f"/corpus/r2d2-data-full/CORPUS/success/2024-01-01/{folder}/trajectory.h5"
    values = example.features.feature["episode_metadata/file_path"].bytes_list.value
    values[0] = path.encode()
    return f"{_DROID_VERSION}/CORPUS/success/2024-01-01/{folder}"


def _droid_record(minute: int, edit: Callable, parses: bool = True):
    """``make`` helper: one edited record appended to the intact shard. A record that no longer
    parses has no file_path to name it: its ref is ``<version>/<shard>#<index>``."""

    def make(root: Path) -> str:
        example = _droid_template(root)
        ref = _droid_named(example, minute)
        edit(example)
        index = _droid_append(root, [_droid_frame(example.SerializeToString(deterministic=True))])
        return ref if parses else f"{_DROID_VERSION}/{_DROID_SHARD}#{index}"

    return make


def _droid_broken(name: str):
    """An edit of ``tests/test_droid_converter.py``'s RLDS_BROKEN table, applied to a proto Example."""

    def edit(example) -> None:
        import tests.test_droid_converter as t

        t.RLDS_BROKEN[name][0](example, 0, 0)

    return edit


def _droid_value(key: str, index: int, value: float):
    def edit(example) -> None:
        example.features.feature[key].float_list.value[index] = value
    return edit


def _droid_jpeg(key: str, index: int, fn: Callable[[bytes], bytes]):
    def edit(example) -> None:
        values = example.features.feature[key].bytes_list.value
        values[index] = fn(values[index])
    return edit


def _droid_crc_bad(root: Path) -> Made:
    """A record whose data fails its CRC inside intact framing, then a good one: the shard reads on."""
    bad, good = _droid_template(root), _droid_template(root)
    _droid_named(bad, 30)
    companion = _droid_named(good, 31)
    framed = bytearray(_droid_frame(bad.SerializeToString(deterministic=True)))
    framed[12 + 40] ^= 0xFF  # inside the data: the length and its CRC stay intact
    index = _droid_append(root, [bytes(framed), _droid_frame(good.SerializeToString(deterministic=True))])
    return Made(f"{_DROID_VERSION}/{_DROID_SHARD}#{index}", (companion,))


def _droid_not_an_example(root: Path) -> Made:
    """Valid framing and CRCs around a payload that is no protobuf (a writer bug, not disk damage)."""
    good = _droid_template(root)
    companion = _droid_named(good, 33)
    index = _droid_append(root, [_droid_frame(b"\xff\xfe not a protobuf"),
                                 _droid_frame(good.SerializeToString(deterministic=True))])
    return Made(f"{_DROID_VERSION}/{_DROID_SHARD}#{index}", (companion,))


def _droid_truncated_tail(root: Path) -> str:
    """A last record cut in half: the shard's earlier records (sample and corpus) still convert, the
    unit reports the loss. Must be built after every other record of the shard."""
    example = _droid_template(root)
    _droid_named(example, 59)
    framed = _droid_frame(example.SerializeToString(deterministic=True))
    _droid_append(root, [framed[: len(framed) // 2]])
    return f"{_DROID_VERSION}/{_DROID_SHARD}"


def _droid_raw(minute: int, edit: Callable[[Path, str], None]):
    """``make`` helper: a copy of a good raw trajectory folder (same uuid, so annotated), then edited."""

    def make(root: Path) -> str:
        ref = f"droid_raw/CORPUS/success/2024-02-02/Fri_Feb__2_09:{minute:02d}:00_2024"
        shutil.copytree(root / _DROID_RAW, root / ref)
        edit(root, ref)
        return ref

    return make


def _droid_raw_table(name: str):
    def edit(root: Path, ref: str) -> None:
        import tests.test_droid_converter as t

        t.RAW_BROKEN[name][0](root, ref)
    return edit


def _droid_release_info_garbage(root: Path) -> str:
    """The release's dataset_info.json cut mid-write: its shards cannot be listed, the raw folders
    beside it are untouched. Which ref a fix would report is open; the version folder is the unit
    that holds everything lost."""
    (root / _DROID_VERSION / "dataset_info.json").write_text('{"name": "droid_101", "splits": [{"name": "tra')
    return Made(_DROID_VERSION, takes_down=f"{_DROID_VERSION}/")


def _droid_raw_empty(root: Path, ref: str) -> None:
    with h5py.File(root / ref / "trajectory.h5", "r+") as h5:
        keys: list[str] = []
        h5.visititems(lambda k, o: keys.append(k) if isinstance(o, h5py.Dataset) else None)
        for key in keys:
            _h5_replace(h5, key, h5[key][()][:0])


DROID: list[Case] = [
    # RLDS records (appended to the intact shard in this order; the truncated tail comes last)
    Case("droid", "non_finite", "rlds_nan_in_state", "non_finite_values",
         _droid_record(1, _droid_broken("nan in state"))),
    Case("droid", "non_finite", "rlds_inf_in_action", "non_finite_values",
         _droid_record(2, _droid_value("steps/action_dict/joint_position", 20, float("inf")))),
    Case("droid", "implausible_value", "rlds_joint_2e36", "implausible_values",
         _droid_record(3, _droid_value("steps/observation/joint_position", 15, 2e36))),
    Case("droid", "wrong_shape", "rlds_ragged_joint_position", "shape_mismatch",
         _droid_record(4, _droid_broken("joint_position ragged"), parses=False)),
    Case("droid", "empty_episode", "rlds_zero_steps", "empty_episode",
         _droid_record(5, _droid_broken("empty episode"))),
    Case("droid", "truncated_media", "rlds_jpeg_cut", "image_decode_error",
         _droid_record(6, _droid_jpeg("steps/observation/exterior_image_1_left", 7, lambda b: b[: len(b) // 2]))),
    Case("droid", "garbage_media", "rlds_jpeg_garbage", "image_decode_error",
         _droid_record(7, _droid_jpeg("steps/observation/wrist_image_left", 5, lambda b: b"\x00GARBAGE" * 50))),
    Case("droid", "damaged_record", "rlds_record_fails_crc", "corrupt_file", _droid_crc_bad),
    Case("droid", "garbage_file", "rlds_record_not_an_example", "corrupt_file", _droid_not_an_example),
    Case("droid", "truncated_file", "rlds_shard_cut_in_last_record", "corrupt_file", _droid_truncated_tail),
    # raw trajectory folders
    Case("droid", "truncated_file", "raw_h5_cut", "corrupt_file", _droid_raw(1, _droid_raw_table("h5 truncated"))),
    Case("droid", "garbage_file", "raw_h5_garbage", "corrupt_file",
         _droid_raw(2, lambda root, ref: garbage(root / ref / "trajectory.h5"))),
    Case("droid", "truncated_media", "raw_mp4_cut", "video_decode_error",
         _droid_raw(3, _droid_raw_table("mp4 truncated"))),
    Case("droid", "garbage_media", "raw_mp4_garbage", "video_decode_error",
         _droid_raw(4, _droid_raw_table("mp4 garbage"))),
    Case("droid", "non_finite", "raw_nan_joints", "non_finite_values", _droid_raw(5, _droid_raw_table("nan joints"))),
    Case("droid", "wrong_shape", "raw_gripper_2d", "shape_mismatch", _droid_raw(6, _droid_raw_table("gripper 2-D"))),
    Case("droid", "non_monotonic_timestamps", "raw_clock_goes_back", "non_monotonic_timestamps",
         _droid_raw(7, _droid_raw_table("clock goes back"))),
    Case("droid", "empty_episode", "raw_zero_steps", "empty_episode", _droid_raw(8, _droid_raw_empty)),
    Case("droid", "missing_file", "raw_mp4_missing", "missing_camera", _droid_raw(9, _droid_raw_table("mp4 missing"))),
    Case("droid", "dangling_symlink", "raw_trajectory_h5_link_to_nothing", "missing_file",
         _droid_raw(10, lambda root, ref: dangle(root / ref / "trajectory.h5"))),
    Case("droid", "directory_as_file", "raw_directory_named_trajectory_h5", "corrupt_file",
         _droid_raw(11, lambda root, ref: as_directory(root / ref / "trajectory.h5"))),
    Case("droid", "garbage_metadata", "raw_metadata_json_garbage", "invalid_metadata",
         _droid_raw(12, _droid_raw_table("metadata not json"))),
    Case("droid", "path_outside_root", "raw_wrist_cam_serial_dotdot", "invalid_metadata",
         _droid_raw(13, _droid_raw_table("wrist serial leaves the folder"))),
    Case("droid", "garbage_metadata", "rlds_dataset_info_json_garbage", "invalid_metadata",
         _droid_release_info_garbage, isolated=True),
]


# --------------------------------------------------------------------------------------
# AgiBot World: extracted episodes of task 327 written with the AgiBot tests' fixture writer
# --------------------------------------------------------------------------------------


def _agibot(episode: int, edit_data: Callable[[dict], None] | None = None,
            edit_files: Callable[[Path, str], None] | None = None, task: int = 327, **build):
    def make(root: Path) -> str:
        import tests.test_agibot_converter as t

        options = dict(build)
        data = options.pop("data", None)
        if data is None:
            data = t.proprio()
            if edit_data is not None:
                edit_data(data)
        ref = t.build(root, task=task, episode=episode, data=data, **options)
        if edit_files is not None:
            edit_files(root, ref)
        return ref

    return make


def _agibot_table(name: str) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        import tests.test_agibot_converter as t

        t.BROKEN_PROPRIO[name][0](data)
    return edit


def _agibot_proprio(fn: Callable[[Path], None]):
    def edit(root: Path, ref: str) -> None:
        fn(root / "proprio_stats" / ref / "proprio_stats.h5")
    return edit


def _agibot_video(camera: str, fn: Callable[[Path], None]):
    def edit(root: Path, ref: str) -> None:
        fn(root / "observations" / ref / "videos" / f"{camera}_color.mp4")
    return edit


def _agibot_shard(name: str, fn: Callable[[Path], None]):
    def make(root: Path) -> str:
        unit = f"observations/327/{name}"
        fn(root / unit)
        return unit
    return make


def _agibot_task_info_garbage(root: Path, ref: str) -> None:
    (root / "task_info" / f"task_{ref.split('/')[0]}.json").write_bytes(b'[{"episode_id": 990014, "task_na')


def _agibot_set(key: str, index: tuple, value: float) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data[key] = np.asarray(data[key], dtype=np.float64)
        data[key][index] = value
    return edit


AGIBOT: list[Case] = [
    Case("agibot", "truncated_file", "proprio_h5_cut", "corrupt_file",
         _agibot(990001, edit_files=_agibot_proprio(lambda p: cut(p, 0.5)))),
    Case("agibot", "garbage_file", "proprio_h5_garbage", "corrupt_file",
         _agibot(990002, edit_files=_agibot_proprio(garbage))),
    Case("agibot", "truncated_media", "head_mp4_cut", "video_decode_error",
         _agibot(990003, edit_files=_agibot_video("head", lambda p: cut(p, 0.6)))),
    Case("agibot", "garbage_media", "hand_left_mp4_garbage", "video_decode_error",
         _agibot(990004, edit_files=_agibot_video("hand_left", garbage))),
    Case("agibot", "non_finite", "nan_in_action", "non_finite_values", _agibot(990005, _agibot_table("NaN action"))),
    Case("agibot", "implausible_value", "joint_state_2e36", "implausible_values",
         _agibot(990006, _agibot_set("state/joint/position", (4, 2), 2e36))),
    Case("agibot", "wrong_shape", "end_position_n_by_6", "shape_mismatch",
         _agibot(990007, _agibot_table("end position [N,6]"))),
    Case("agibot", "non_monotonic_timestamps", "timestamps_go_back", "non_monotonic_timestamps",
         _agibot(990008, _agibot_table("timestamps go back"))),
    Case("agibot", "empty_episode", "empty_timestamp", "empty_episode",
         _agibot(990009, _agibot_table("empty timestamp"))),
    Case("agibot", "missing_file", "no_proprio_stats", "missing_file", _agibot(990010, data=False)),
    Case("agibot", "missing_file", "hand_right_mp4_missing", "missing_camera",
         _agibot(990011, frames={"hand_right": None})),
    Case("agibot", "garbage_file", "shard_tar_garbage", "corrupt_file", _agibot_shard("990300-990301.tar", garbage)),
    Case("agibot", "dangling_symlink", "shard_tar_link_to_nothing", "missing_file",
         _agibot_shard("990200-990201.tar", dangle)),
    Case("agibot", "dangling_symlink", "episode_folder_link_to_nothing", "missing_file",
         _agibot(990400, edit_files=lambda root, ref: dangle(root / "observations" / ref))),
    Case("agibot", "directory_as_file", "shard_tar_is_a_directory", "corrupt_file",
         _agibot_shard("990100-990101.tar", as_directory)),
    Case("agibot", "garbage_metadata", "task_info_json_garbage", "invalid_metadata",
         _agibot(990014, task=9001, edit_files=_agibot_task_info_garbage)),
]


# --------------------------------------------------------------------------------------
# RoboMIND: trajectory.hdf5 files written with the RoboMIND tests' fixture writer
# --------------------------------------------------------------------------------------

_ROBOMIND_TASK = "apples_placed_on_a_ceramic_plate"  # has an instruction in the sample's CSV


def _robomind(episode: str, edit: Callable[[Path], None] | None = None, h5_edit: Callable | None = None,
              folder: str = "h5_franka_3rgb", after: Callable[[Path], None] | None = None):
    def make(root: Path) -> str:
        import tests.test_robomind_converter as t

        ref = t.make(root, folder, task=_ROBOMIND_TASK, episode=episode, csv=False)
        if h5_edit is not None:
            t.edit(root, ref, h5_edit)
        if edit is not None:
            edit(root / ref)
        if after is not None:
            after(root)
        return ref

    return make


def _robomind_table(name: str):
    def fn(f) -> None:
        import tests.test_robomind_converter as t

        t.BROKEN[name][0](f)
    return fn


def _robomind_frame(index: int, fn: Callable[[bytes], bytes]):
    def edit(f) -> None:
        ds = f["observations/rgb_images/camera_top"]
        ds[index] = np.frombuffer(fn(bytes(ds[index])), np.uint8)
    return edit


def _robomind_set(key: str, index: tuple, value: float):
    def edit(f) -> None:
        data = f[key][()]
        data[index] = value
        f[key][...] = data
    return edit


def _robomind_annotation_garbage(root: Path) -> None:
    path = root / "language_description_annotation_json" / "h5_franka_1rgb.json"
    path.write_bytes(b'{"h5_franka_1rgb": [{"episode": ')


ROBOMIND: list[Case] = [
    Case("robomind", "truncated_file", "hdf5_cut", "corrupt_file", _robomind("1017_990001", lambda p: cut(p, 0.55))),
    Case("robomind", "garbage_file", "hdf5_garbage", "corrupt_file", _robomind("1017_990002", garbage)),
    Case("robomind", "truncated_media", "jpeg_frame_cut", "image_decode_error",
         _robomind("1017_990003", h5_edit=_robomind_frame(5, lambda b: b[: len(b) // 2]))),
    Case("robomind", "garbage_media", "jpeg_frame_garbage", "image_decode_error",
         _robomind("1017_990004", h5_edit=_robomind_frame(3, lambda b: b"\x00GARBAGE" * 40))),
    Case("robomind", "non_finite", "nan_in_action", "non_finite_values",
         _robomind("1017_990005", h5_edit=_robomind_table("NaN action"))),
    Case("robomind", "implausible_value", "state_2e36", "implausible_values",
         _robomind("1017_990006", h5_edit=_robomind_set("puppet/joint_position", (4, 1), 2e36))),
    Case("robomind", "wrong_shape", "action_width_6", "shape_mismatch",
         _robomind("1017_990007", h5_edit=_robomind_table("wrong width"))),
    Case("robomind", "empty_episode", "zero_frames", "empty_episode",
         _robomind("1017_990008", h5_edit=_robomind_table("zero frames"))),
    Case("robomind", "missing_file", "camera_dataset_missing", "missing_camera",
         _robomind("1017_990009", h5_edit=_robomind_table("camera missing"))),
    Case("robomind", "dangling_symlink", "trajectory_hdf5_link_to_nothing", "missing_file",
         _robomind("1017_990010", dangle)),
    Case("robomind", "directory_as_file", "directory_named_trajectory_hdf5", "corrupt_file",
         _robomind("1017_990011", as_directory)),
    Case("robomind", "garbage_metadata", "annotation_json_garbage", "invalid_metadata",
         _robomind("1017_990012", folder="h5_franka_1rgb", after=_robomind_annotation_garbage)),
]


# --------------------------------------------------------------------------------------
# RoboChallenge: episode folders written with the RoboChallenge tests' fixture writer (UR5, 12 frames)
# --------------------------------------------------------------------------------------


def _robochallenge(name: str, edit: Callable[[Path], None]):
    """One UR5 episode in its own task folder (a task-level file may be the broken one)."""

    def make(root: Path) -> str:
        import tests.test_robochallenge_converter as t

        ref = t.make_episode(root, {"": t.ur5_lines(12)}, t.VIDEOS["ur5"], task=f"corpus_{name}")
        edit(root / ref)
        return ref

    return make


def _robochallenge_table(name: str):
    def edit(ep: Path) -> None:
        import tests.test_robochallenge_converter as t

        t.BROKEN[name][0](ep)
    return edit


def _robochallenge_line(index: int, **values):
    def edit(ep: Path) -> None:
        import tests.test_robochallenge_converter as t

        t._set_line(index, **values)(ep)
    return edit


def _states_cut_mid_line(ep: Path) -> None:
    path = ep / "states" / "states.jsonl"
    data = path.read_bytes()
    end_of_line_6 = [i for i, b in enumerate(data) if b == ord("\n")][5]
    path.write_bytes(data[: end_of_line_6 + 30])


def _robochallenge_folder_link(root: Path) -> str:
    """An episode folder that is a link to a folder never downloaded, among a sample task's episodes."""
    ref = "wipe_the_table/data/episode_000099"
    dangle(root / ref)
    return ref


ROBOCHALLENGE: list[Case] = [
    Case("robochallenge", "truncated_file", "states_jsonl_cut_mid_line", "corrupt_file",
         _robochallenge("states_cut", _states_cut_mid_line)),
    Case("robochallenge", "garbage_file", "states_jsonl_garbage", "corrupt_file",
         _robochallenge("states_garbage", lambda ep: garbage(ep / "states" / "states.jsonl"))),
    Case("robochallenge", "truncated_media", "mp4_cut", "video_decode_error",
         _robochallenge("mp4_cut", _robochallenge_table("video truncated"))),
    Case("robochallenge", "garbage_media", "mp4_garbage", "video_decode_error",
         _robochallenge("mp4_garbage", _robochallenge_table("video not mp4"))),
    Case("robochallenge", "non_finite", "nan_gripper", "non_finite_values",
         _robochallenge("nan", _robochallenge_table("nan value"))),
    Case("robochallenge", "non_finite", "null_joint", "non_finite_values",
         _robochallenge("null", _robochallenge_table("null value"))),
    Case("robochallenge", "implausible_value", "joint_2e36", "implausible_values",
         _robochallenge("implausible",
                        _robochallenge_line(4, joint_positions=[2e36, -1.57, -1.57, -1.57, 1.57, 0.06]))),
    Case("robochallenge", "wrong_shape", "short_joint_vector", "shape_mismatch",
         _robochallenge("short_vector", _robochallenge_table("short joint vector"))),
    Case("robochallenge", "non_monotonic_timestamps", "timestamps_go_back", "non_monotonic_timestamps",
         _robochallenge("clock_back", _robochallenge_table("timestamps go back"))),
    Case("robochallenge", "empty_episode", "empty_states_jsonl", "empty_episode",
         _robochallenge("empty", _robochallenge_table("empty states"))),
    Case("robochallenge", "missing_file", "states_jsonl_missing", "missing_file",
         _robochallenge("no_states", lambda ep: (ep / "states" / "states.jsonl").unlink())),
    Case("robochallenge", "dangling_symlink", "states_jsonl_link_to_nothing", "missing_file",
         _robochallenge("states_link", lambda ep: dangle(ep / "states" / "states.jsonl"))),
    Case("robochallenge", "dangling_symlink", "episode_folder_link_to_nothing", "missing_file",
         _robochallenge_folder_link),
    Case("robochallenge", "garbage_metadata", "episode_meta_json_garbage", "invalid_metadata",
         _robochallenge("meta_garbage", _robochallenge_table("episode_meta not json"))),
]


# --------------------------------------------------------------------------------------
# LeRobot layouts (RoboCOIN v2.1, GM-100 v3.0): datasets written with the LeRobot reader tests' writer
# --------------------------------------------------------------------------------------

_CAM = "observation.images.front"


@dataclass(frozen=True)
class _LeRobotLayout:
    version: str
    data: str  # the episode's data file, relative to the dataset
    video: str


_V21 = _LeRobotLayout("v2.1", "data/chunk-000/episode_000000.parquet", f"videos/chunk-000/{_CAM}/episode_000000.mp4")
_V30 = _LeRobotLayout("v3.0", "data/chunk-000/file-000.parquet", f"videos/{_CAM}/chunk-000/file-000.mp4")


def _lerobot(source: str, name: str, edit: Callable[[Path, _LeRobotLayout], None] | None = None,
             dataset_unit: bool = False, **write):
    """``make`` helper: a one-episode dataset of its own (20 frames), then edited.

    RoboCOIN finds the embodiment from robot_type (``rmc_aida_l``, a robot the samples do not
    have); GM-100 from the platform folder the dataset sits in."""
    layout = _V21 if source == "robocoin" else _V30

    def make(root: Path) -> str:
        import tests.test_lerobot_reader as t

        rel = f"corpus_{name}" if source == "robocoin" else f"agilex/corpus_{name}"
        robot_type = "rmc_aida_l" if source == "robocoin" else "agilex"
        t.write(root / rel, version=layout.version, lengths=(20,), robot_type=robot_type, **write)
        if edit is not None:
            edit(root / rel, layout)
        return rel if dataset_unit else f"{rel}/episode_000000"

    return make


def _parquet_edit(fn: Callable[[pa.Table], pa.Table]):
    def edit(ds: Path, layout: _LeRobotLayout) -> None:
        path = ds / layout.data
        pq.write_table(fn(pq.read_table(path)), path)
    return edit


def _set_cell(column: str, row: int, dim: int | None, value: float):
    def fn(table: pa.Table) -> pa.Table:
        values = table.column(column).to_pylist()
        if dim is None:
            values[row] = value
        else:
            values[row] = list(values[row])
            values[row][dim] = value
        i = table.schema.get_field_index(column)
        return table.set_column(i, column, pa.array(values, table.schema.field(column).type))
    return fn


def _ragged(table: pa.Table) -> pa.Table:
    rows = table.column("action").to_pylist()
    rows[3] = rows[3][:2]
    i = table.schema.get_field_index("action")
    return table.set_column(i, "action", pa.array(rows, pa.list_(pa.float32())))


def _timestamps_back(table: pa.Table) -> pa.Table:
    values = table.column("timestamp").to_pylist()
    values[8] = values[3]
    i = table.schema.get_field_index("timestamp")
    return table.set_column(i, "timestamp", pa.array(values, table.schema.field("timestamp").type))


def _no_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.not_equal(table["episode_index"], 0))


def _on_file(attr: str, fn: Callable[[Path], None]):
    def edit(ds: Path, layout: _LeRobotLayout) -> None:
        fn(ds / getattr(layout, attr))
    return edit


def _on_meta(rel: str, fn: Callable[[Path], None]):
    def edit(ds: Path, layout: _LeRobotLayout) -> None:
        fn(ds / rel)
    return edit


def _lerobot_cases(source: str) -> list[Case]:
    episodes_meta = "meta/episodes.jsonl" if source == "robocoin" else "meta/episodes/chunk-000/file-000.parquet"
    episodes_meta_reason = "invalid_metadata" if source == "robocoin" else "corrupt_file"

    def case(kind: str, name: str, expect: str, edit=None, **kw) -> Case:
        return Case(source, kind, name, expect, _lerobot(source, name, edit, **kw))

    return [
        case("truncated_file", "parquet_cut", "corrupt_file", _on_file("data", lambda p: cut(p, 0.3))),
        case("garbage_file", "parquet_garbage", "corrupt_file", _on_file("data", garbage)),
        case("truncated_media", "mp4_cut", "video_decode_error", _on_file("video", lambda p: cut(p, 0.3))),
        case("garbage_media", "mp4_garbage", "video_decode_error", _on_file("video", garbage)),
        case("non_finite", "nan_in_state", "non_finite_values",
             _parquet_edit(_set_cell("observation.state", 3, 1, float("nan")))),
        case("non_finite", "inf_in_action", "non_finite_values",
             _parquet_edit(_set_cell("action", 6, 0, float("-inf")))),
        case("implausible_value", "action_2e36", "implausible_values", _parquet_edit(_set_cell("action", 5, 2, 2e36))),
        case("wrong_shape", "ragged_action", "shape_mismatch", _parquet_edit(_ragged)),
        case("non_monotonic_timestamps", "timestamps_go_back", "non_monotonic_timestamps",
             _parquet_edit(_timestamps_back)),
        case("empty_episode", "parquet_without_rows", "empty_episode", _parquet_edit(_no_rows)),
        case("missing_file", "parquet_missing", "missing_file", _on_file("data", lambda p: p.unlink())),
        case("dangling_symlink", "parquet_link_to_nothing", "missing_file", _on_file("data", dangle)),
        case("garbage_metadata", "info_json_garbage", "invalid_metadata",
             _on_meta("meta/info.json", lambda p: p.write_bytes(b'{"codebase_version": "v')), dataset_unit=True),
        case("garbage_metadata", "episodes_meta_garbage", episodes_meta_reason, _on_meta(episodes_meta, garbage),
             dataset_unit=True),
        case("path_outside_root", "data_path_dotdot", "invalid_metadata", dataset_unit=True,
             info_overrides={"data_path": "../../outside/episode_{episode_index:06d}.parquet"
                             if source == "robocoin" else "../../outside/file-{file_index:03d}.parquet"}),
    ]


def _null_in_episodes_meta(column: str):
    """A missing value in meta/episodes (pandas writes None, or NaN in a float column) of a v3.0 dataset."""

    def edit(ds: Path, layout: _LeRobotLayout) -> None:
        path = ds / "meta/episodes/chunk-000/file-000.parquet"
        table = pq.read_table(path)
        values = table.column(column).to_pylist()
        values[0] = None
        i = table.schema.get_field_index(column)
        pq.write_table(table.set_column(i, column, pa.array(values, table.schema.field(column).type)), path)

    return edit


def _gm100_shared_file(root: Path) -> Made:
    """2e36 in the middle episode of a v3.0 file shared by three: it alone is lost."""
    src, rel = "galaxea_r1_pro/stack_the_paper_cups", "galaxea_r1_pro/corpus_shared_file"
    shutil.copytree(root / src, root / rel)
    for path in sorted((root / rel / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        rows = table.column("action").to_pylist()
        episodes = table.column("episode_index").to_pylist()
        hit = next((i for i, e in enumerate(episodes) if e == 1), None)
        if hit is None:
            continue
        rows[hit + 2] = [2e36] + list(rows[hit + 2])[1:]
        i = table.schema.get_field_index("action")
        pq.write_table(table.set_column(i, "action", pa.array(rows, table.schema.field("action").type)), path)
    return Made(f"{rel}/episode_000001", (f"{rel}/episode_000000", f"{rel}/episode_000002"))


ROBOCOIN: list[Case] = _lerobot_cases("robocoin") + [
    Case("robocoin", "malformed_metadata", "info_data_path_not_a_string", "invalid_metadata",
         _lerobot("robocoin", "info_data_path_not_a_string", dataset_unit=True, info_overrides={"data_path": 7})),
]
GM100: list[Case] = _lerobot_cases("gm100") + [
    Case("gm100", "implausible_value", "shared_v3_file_one_episode_2e36", "implausible_values", _gm100_shared_file),
    Case("gm100", "malformed_metadata", "episodes_meta_null_chunk_index", "invalid_metadata",
         _lerobot("gm100", "episodes_meta_null_chunk_index", _null_in_episodes_meta("data/chunk_index"),
                  dataset_unit=True)),
]


# --------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------

# records appended after the cut-off last one could not be read: the truncated tail is built last
assert [c.name for c in DROID if c.name.startswith("rlds_") and not c.isolated][-1] == "rlds_shard_cut_in_last_record"

CASES: dict[str, list[Case]] = {
    "droid": DROID,
    "agibot": AGIBOT,
    "robocoin": ROBOCOIN,
    "robomind": ROBOMIND,
    "gm100": GM100,
    "robochallenge": ROBOCHALLENGE,
    "inhouse": INHOUSE,
}
ALL_CASES: list[Case] = [c for cases in CASES.values() for c in cases]

for _case in ALL_CASES:  # a typo in the table must fail at import, not as a confusing test failure
    assert _case.kind in KINDS, _case
    assert Reason(_case.expect), _case
assert len({c.id for c in ALL_CASES}) == len(ALL_CASES), "case names must be unique per source"


def shared_cases(source: str) -> list[Case]:
    return [c for c in CASES[source] if not c.isolated]


def build_corpus(source: str, samples: Path, root: Path, cases: list[Case] | None = None) -> dict[str, Made]:
    """A copy of the source's samples at ``root`` with the cases (default: all shared ones) written into it."""
    shutil.copytree(samples, root, symlinks=True)
    return {case.name: case.build(root) for case in (shared_cases(source) if cases is None else cases)}


def convert(source: str, root: Path, store: Path, allow_mass_retire: bool = False) -> dict:
    """One run of ``a1pipe convert`` over the whole input with the project's ``params.yaml`` (one
    local Beam worker); returns its report. ``store`` may already hold the samples' conversion (same
    settings): those episodes then resume, and the run still lists, and must keep, every one.
    ``allow_mass_retire``: the run may retire most of the store's episodes (``--allow-mass-retire``)."""
    import json

    from pipelines.cli import main

    params = Path(__file__).resolve().parents[1] / "params.yaml"
    code = main(["convert", "--source", source, "--input", str(root), "--output", str(store), "--params", str(params),
                 "--workers", "1", "--quiet", *(["--allow-mass-retire"] if allow_mass_retire else [])])
    if code != 0:
        raise RuntimeError(f"a1pipe convert --source {source} exited {code}")
    return json.loads((store / "conversion_report.json").read_text())


def table(observed: dict[str, dict[str, str | None]]) -> str:
    """Markdown table, kinds x sources, of the reason codes observed: what a reviewer checks coverage
    against. A wrong code names the expected one, ``no outcome`` is a case the run's report does not
    list, a dash a kind the source's layout cannot have (no timestamps, no paths from metadata)."""
    sources = list(CASES)
    lines = ["| kind | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
    for kind in KINDS:
        cells = []
        for source in sources:
            parts = []
            for case in CASES[source]:
                if case.kind != kind:
                    continue
                got = observed.get(source, {}).get(case.name, "not run")
                cell = got or "no outcome"
                if got != case.expect:
                    cell += f" (expected {case.expect}{', known: xfail' if case.xfail else ''})"
                if cell not in parts:
                    parts.append(cell)
            cells.append("<br>".join(parts) if parts else "-")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def observe(report: dict, made: dict[str, Made]) -> dict[str, str | None]:
    """Case name -> the reason the run gave its episode (``None``: no outcome or converted)."""
    got = {e["source_episode"]: e for e in report["episodes"]}
    return {name: (got[m.ref]["reason"] if m.ref in got else None) for name, m in made.items()}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging
    import tempfile

    from pipelines.samples import generator

    parser = argparse.ArgumentParser(description="Convert the bad-input corpus and print its coverage table.")
    parser.add_argument("--table", action="store_true", help="print the kinds x sources table (markdown)")
    parser.add_argument("--sources", default=",".join(CASES), help="comma-separated sources (default: all)")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    observed: dict[str, dict[str, str | None]] = {}
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as tmp:
        for source in args.sources.split(","):
            samples = Path(tmp) / "samples" / source
            samples.mkdir(parents=True)
            generator(source).write_samples(samples, seed=args.seed)
            observed[source] = {}
            runs = [(source, None)] + [(f"{source}-{c.name}", [c]) for c in CASES[source] if c.isolated]
            for name, cases in runs:
                made = build_corpus(source, samples, Path(tmp) / "input" / name, cases)
                try:
                    report = convert(source, Path(tmp) / "input" / name, Path(tmp) / "store" / name)
                except Exception as exc:  # noqa: BLE001 - a run that fails is a finding, reported in the table
                    observed[source].update({case: f"run fails ({type(exc).__name__})" for case in made})
                else:
                    observed[source].update(observe(report, made))
            print(f"{source}: {sum(observed[source][c.name] == c.expect for c in CASES[source])}/{len(CASES[source])} "
                  "cases got their expected reason", file=sys.stderr)
    text = table(observed)
    if args.out:
        Path(args.out).write_text(text)
    if args.table or not args.out:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
