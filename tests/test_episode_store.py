"""The episode store: round trip, determinism, record checks, atomic writes, random access."""

from __future__ import annotations

import json
import multiprocessing as mp
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.episode_store import CameraStream, EpisodeError, Reason
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.index import rebuild_index_and_stats
from pipelines.episode_store.layout import EPISODES_DIR, INDEX_FILE, TMP_DIR, episode_id, episode_relpath
from pipelines.episode_store.reader import EpisodeReader, EpisodeStore, StoreError
from pipelines.episode_store.validator import validate_store
from pipelines.episode_store.digest import file_sha256
from pipelines.episode_store.writer import write_episode
from tests.episode_factory import die_after_encoding, make_episode, make_frames

NATIVE = ImageConfig(resize="none", quality=95)


@pytest.fixture
def store(tmp_path):
    return EpisodeStore.create(tmp_path / "store")


def test_round_trip_reads_what_was_written(store):
    from pipelines.episode_store.schema import TimestampOrigin

    ep = make_episode(40)
    ep.timestamp_origin = TimestampOrigin.FROM_CONTROL_RATE
    eid = write_episode(ep, store.root, NATIVE, frames_per_shard=16)
    assert eid == episode_id("inhouse", ep.source_episode)
    with store.open_episode(eid) as r:
        back = r.to_episode()
        np.testing.assert_array_equal(back.timestamp, ep.timestamp)
        assert back.timestamp.dtype == np.float64
        np.testing.assert_array_equal(back.state, ep.state)
        assert back.state.dtype == np.float32 and back.action.dtype == np.float32
        np.testing.assert_array_equal(back.action, ep.action)
        assert back.state_names == ep.state_names and back.action_names == ep.action_names
        assert back.action_kind == ep.action_kind
        assert back.instruction == ep.instruction
        assert back.instruction_alternatives == ep.instruction_alternatives
        assert back.subtasks == ep.subtasks
        np.testing.assert_array_equal(back.extras["qvel"], ep.extras["qvel"])
        assert back.extra_names == ep.extra_names
        assert back.metadata == ep.metadata
        assert (back.source, back.source_version, back.converter_version) == ("inhouse", "test-1", "0.0.1")
        assert back.embodiment == "franka" and back.control_hz == 10.0
        assert (back.source_episode, back.robot_type, back.timestamp_origin) == (
            ep.source_episode, ep.robot_type, ep.timestamp_origin)
        assert back.converter == ""  # converted by the source's own converter
        assert {c: (s.name, s.num_frames) for c, s in back.cameras.items()} == {"top": ("top", 40),
                                                                               "wrist": ("wrist", 40)}
        for cam in ("top", "wrist"):
            original = list(ep.cameras[cam].open_frames())
            decoded = list(back.cameras[cam].open_frames())
            assert len(decoded) == 40
            for a, b in zip(original, decoded):
                assert a.shape == b.shape
                assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0  # JPEG q95 tolerance


def test_random_access_frame_equals_sequential_frame(store):
    eid = write_episode(make_episode(50), store.root, NATIVE, frames_per_shard=8)
    with store.open_episode(eid) as r:
        sequential = list(r.frames("top"))
        for i in (0, 7, 8, 31, 49):
            np.testing.assert_array_equal(r.frame("top", i), sequential[i])
        with pytest.raises(IndexError, match=f"frame 50 out of range for {eid} \\(50 frames\\)"):
            r.encoded_frame("top", 50)
        # one frame per chunk: the chunk grid is the random-access unit
        assert r.group["images/top"].chunks == (1,)


def test_one_read_per_frame_gives_zarr_s_bytes_for_every_frame_of_every_shard(store):
    from pipelines.episode_store.reader import _unwrap

    eid = write_episode(make_episode(37), store.root, NATIVE, frames_per_shard=8)  # 5 shards, the last partial
    with store.open_episode(eid) as r:
        for cam in r.cameras:
            assert r._frame_ranges(cam) is not None  # the byte-range path, not zarr, serves these reads
            for i in range(37):
                assert r.encoded_frame(cam, i) == _unwrap(r.group[f"images/{cam}"][i: i + 1])
        with pytest.raises(KeyError, match="no camera 'side'"):
            r.encoded_frame("side", 0)


def test_direct_reads_of_metadata_and_arrays_equal_zarr_s(store):
    ep = make_episode(23)
    ep.extras["flag"] = np.arange(23) % 3 == 0
    ep.extra_names["flag"] = ["flag"]
    eid = write_episode(ep, store.root, NATIVE)
    with store.open_episode(eid) as r:
        g = r.group
        assert r.meta == dict(g.attrs["a1pipe_episode"])
        for name in ("timestamp", "state", "action"):
            fast = getattr(r, name)
            assert fast.dtype == g[name].dtype and np.array_equal(fast, g[name][:])
        for name in ("qvel", "flag"):
            assert r.extra(name).dtype == g[f"extras/{name}"].dtype
            assert np.array_equal(r.extra(name), g[f"extras/{name}"][:])
        assert r.subtasks() == ep.subtasks
        with pytest.raises(KeyError, match="no extra 'torque'"):
            r.extra("torque")
    no_subtasks = write_episode(make_episode(5, ref="b", subtasks=False), store.root, NATIVE)
    with store.open_episode(no_subtasks) as r:
        assert r.subtasks() is None


def test_a_corrupt_shard_index_is_an_error_not_wrong_bytes(store):
    from pipelines.episode_store.reader import StoreError

    eid = write_episode(make_episode(10), store.root, NATIVE, frames_per_shard=8)
    path = store.episode_path(eid)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("images/top/c/0")
    with store.open_episode(eid) as r:
        start, _ = r._frame_ranges("top").locate(0)  # the first chunk starts the shard's data
    with open(path, "r+b") as fh:  # flip a byte inside the shard index (its last 16 * 8 + 4 bytes)
        fh.seek(int(start) + info.compress_size - 20)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with store.open_episode(eid) as r:
        with pytest.raises(StoreError, match="shard index checksum mismatch"):
            r.encoded_frame("top", 0)


def test_other_codec_chains_are_read_through_zarr(store, monkeypatch):
    import pipelines.episode_store.reader as reader

    eid = write_episode(make_episode(12), store.root, NATIVE, frames_per_shard=8)
    with store.open_episode(eid) as r:
        expected = [r.encoded_frame("top", i) for i in range(12)]
    monkeypatch.setattr(reader, "_FRAME_CODECS", {"name": "something-else"})
    with store.open_episode(eid) as r:
        assert [r.encoded_frame("top", i) for i in range(12)] == expected
        assert r._frame_ranges("top") is None


def test_a_repacked_deflated_episode_reads_the_same_through_zarr(store):
    """Members compressed by a tool that rewrote the ZIP have no byte ranges; they must not read as blanks."""
    ep = make_episode(20)
    eid = write_episode(ep, store.root, NATIVE, frames_per_shard=8)
    path = store.episode_path(eid)
    with store.open_episode(eid) as r:
        expected = (r.meta, r.timestamp, r.state, r.action, r.subtasks(), r.extra("qvel"),
                    {cam: [r.encoded_frame(cam, i) for i in range(20)] for cam in r.cameras})
    repacked = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(repacked, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    repacked.replace(path)
    with store.open_episode(eid) as r:
        assert r.meta == expected[0]
        for got, want in zip((r.timestamp, r.state, r.action), expected[1:4]):
            assert got.dtype == want.dtype and np.array_equal(got, want)
        assert r.subtasks() == expected[4] and np.array_equal(r.extra("qvel"), expected[5])
        for cam, frames in expected[6].items():
            assert [r.encoded_frame(cam, i) for i in range(20)] == frames
            assert r._frame_ranges(cam) is None


def test_arrays_outside_the_writer_s_chunking_are_read_through_zarr(store, monkeypatch):
    import pipelines.episode_store.reader as reader

    eid = write_episode(make_episode(9), store.root, NATIVE)
    with store.open_episode(eid) as r:
        expected = {name: getattr(r, name) for name in ("timestamp", "state", "action")}
    monkeypatch.setattr(reader, "_single_chunk_codecs", lambda meta: None)
    with store.open_episode(eid) as r:
        for name, want in expected.items():
            got = getattr(r, name)
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_resize_modes_produce_declared_size(store):
    ep = make_episode(5, ref="a")
    eid = write_episode(ep, store.root, ImageConfig(height=32, width=32, resize="pad"))
    with store.open_episode(eid) as r:
        info = r.meta["cameras"]["top"]
        assert (info["height"], info["width"], info["source_height"], info["source_width"]) == (32, 32, 48, 64)
        frame = r.frame("top", 0)
        assert frame.shape == (32, 32, 3)
        assert frame[:2].mean() < 10 < frame[8:24].mean()  # 64x48 -> 32x24 letterboxed: black bars on top
    eid = write_episode(make_episode(5, ref="b"), store.root, ImageConfig(height=20, width=30, resize="stretch"))
    with store.open_episode(eid) as r:
        assert r.frame("wrist", 4).shape == (20, 30, 3)


def test_same_input_gives_byte_identical_file(tmp_path):
    a = EpisodeStore.create(tmp_path / "a")
    b = EpisodeStore.create(tmp_path / "b")
    eid = write_episode(make_episode(20), a.root, ImageConfig())
    write_episode(make_episode(20), b.root, ImageConfig())
    assert file_sha256(a.episode_path(eid)) == file_sha256(b.episode_path(eid))
    names = zipfile.ZipFile(a.episode_path(eid)).namelist()
    assert names == sorted(names) and "zarr.json" in names


def test_zstd_compressed_low_dim_arrays_of_older_stores_read_the_same(store, tmp_path):
    """Stores written before low-dim arrays were kept plain hold them zstd-compressed; both read alike."""
    import json

    import numcodecs

    from pipelines.episode_store.writer import pack_directory

    eid = write_episode(make_episode(15), store.root, NATIVE)
    path = store.episode_path(eid)
    with store.open_episode(eid) as r:
        want = {name: getattr(r, name) for name in ("timestamp", "state", "action")}
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(path).extractall(unpacked)
    for name in want:
        meta_path = unpacked / name / "zarr.json"
        meta = json.loads(meta_path.read_text())
        assert [c["name"] for c in meta["codecs"]] == ["bytes"]  # what the writer stores now
        meta["codecs"].append({"name": "zstd", "configuration": {"level": 0, "checksum": False}})
        meta_path.write_text(json.dumps(meta))
        chunk = unpacked / name / "c" / "/".join("0" * len(meta["shape"]))
        chunk.write_bytes(numcodecs.Zstd().encode(chunk.read_bytes()))
    pack_directory(unpacked, path)
    with store.open_episode(eid) as r:
        for name, expected in want.items():
            got = getattr(r, name)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
        assert np.array_equal(r.group["state"][:], want["state"])  # zarr agrees the chunks are zstd


def test_episode_ids_are_stable_and_distinct():
    assert episode_id("droid", "x/1") == episode_id("droid", "x/1")
    assert episode_id("droid", "x/1") != episode_id("droid", "x/2")
    assert episode_id("droid", "x/1") != episode_id("robomind", "x/1")
    assert episode_relpath(episode_id("droid", "x/1")).startswith("episodes/droid/")
    with pytest.raises(ValueError):
        episode_id("Bad Name", "x")


def _mutated(**changes):
    ep = make_episode(12)
    for k, v in changes.items():
        setattr(ep, k, v)
    return ep


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda: _mutated(timestamp=np.array([]), state=np.zeros((0, 8)), action=np.zeros((0, 8))), Reason.EMPTY_EPISODE),
        (lambda: _mutated(action=np.zeros((11, 8), np.float32)), Reason.LENGTH_MISMATCH),
        (lambda: _mutated(state=np.zeros((12,), np.float32)), Reason.SHAPE_MISMATCH),
        (lambda: _mutated(state_names=["a"] * 3), Reason.NAME_MISMATCH),
        (lambda: _mutated(action=np.full((12, 8), np.nan, np.float32)), Reason.NON_FINITE_VALUES),
        (lambda: _mutated(timestamp=np.r_[np.arange(6), np.arange(6)] / 10.0), Reason.NON_MONOTONIC_TIMESTAMPS),
        (lambda: _mutated(instruction="  "), Reason.MISSING_LANGUAGE),
        (lambda: _mutated(cameras={}), Reason.MISSING_CAMERA),
        (lambda: _mutated(cameras={"top": CameraStream.from_array("top", make_frames(11))}), Reason.FRAME_COUNT_MISMATCH),
        (lambda: _mutated(subtasks=["x"] * 3), Reason.LENGTH_MISMATCH),
        (lambda: _mutated(control_hz=0.0), Reason.INVALID_METADATA),
    ],
)
def test_broken_records_are_rejected_with_their_reason_and_nothing_is_published(store, make, reason):
    with pytest.raises(EpisodeError) as info:
        write_episode(make(), store.root, NATIVE)
    assert info.value.reason == reason
    assert not store.episode_files()
    assert not any((store.root / TMP_DIR).glob("*"))


@pytest.mark.parametrize("value,bound,ok", [(1e6, 1e6, True), (-1e6, 1e6, True), (1.0000001e6, 1e6, False),
                                            (-2e36, 1e6, False), (5e6, 1e7, True), (2e7, 1e7, False)])
def test_values_beyond_the_plausibility_bound_are_implausible_not_data(value, bound, ok):
    from pipelines.episode_store.record import check_episode

    for field in ("state", "action"):
        arr = np.zeros((12, 8), np.float32)
        arr[5, 2] = value
        ep = _mutated(**{field: arr})
        if ok:
            check_episode(ep, max_abs_value=bound)
            continue
        with pytest.raises(EpisodeError) as info:
            check_episode(ep, max_abs_value=bound)
        assert info.value.reason == Reason.IMPLAUSIBLE_VALUES
        assert f"{field} has 1 values beyond" in info.value.message and "first at frame 5" in info.value.message


def test_the_conversion_applies_its_plausibility_bound(tmp_path):
    from pipelines.convert import ConvertConfig

    config = ConvertConfig("inhouse", str(tmp_path), str(tmp_path / "s"), max_abs_value=5e7)
    assert config.make_converter().max_abs_value == 5e7
    assert ConvertConfig("inhouse", str(tmp_path), str(tmp_path / "s")).make_converter().max_abs_value == 1e6
    with pytest.raises(ValueError, match="positive"):
        ConvertConfig("inhouse", str(tmp_path), str(tmp_path / "s"), max_abs_value=0)


def test_stream_that_lies_about_its_length_is_caught_while_writing(store):
    ep = make_episode(12)
    frames = make_frames(10)
    ep.cameras["top"] = CameraStream("top", 12, lambda: iter(frames))
    with pytest.raises(EpisodeError) as info:
        write_episode(ep, store.root, NATIVE)
    assert info.value.reason == Reason.FRAME_COUNT_MISMATCH
    assert "yielded 10 frames, expected 12" in info.value.message
    assert not store.episode_files()


def test_undecodable_frame_is_an_image_decode_error(store):
    ep = make_episode(4)
    ep.cameras["top"] = CameraStream.from_encoded("top", [b"\xff\xd8garbage"] * 4, where="top")
    with pytest.raises(EpisodeError) as info:
        write_episode(ep, store.root, NATIVE)
    assert info.value.reason == Reason.IMAGE_DECODE_ERROR


def _write_then_die(root, kill_after):
    """Child process: write an episode and die mid-way through its frames."""
    die_after_encoding(kill_after)
    write_episode(make_episode(60, ref="killed"), root, NATIVE, frames_per_shard=16)


def test_writer_killed_mid_episode_leaves_nothing_visible(store):
    write_episode(make_episode(10, ref="earlier"), store.root, NATIVE)
    proc = mp.get_context("fork").Process(target=_write_then_die, args=(str(store.root), 70))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 9
    published = store.episode_files()
    assert [p.name for p in published] == [f"{episode_id('inhouse', 'earlier')}.zarr.zip"]
    assert any((store.root / TMP_DIR).iterdir()), "the dead writer's temporary data stays private"
    rebuild_index_and_stats(store.root)
    assert validate_store(store.root).ok
    # a re-run of the same episode completes
    eid = write_episode(make_episode(60, ref="killed"), store.root, NATIVE)
    assert store.episode_path(eid).is_file()


def test_index_is_one_parquet_file_with_one_row_per_episode(store):
    for i in range(3):
        write_episode(make_episode(10 + i, ref=f"t/e{i}", embodiment="franka" if i else "ur5"), store.root, NATIVE)
    assert rebuild_index_and_stats(store.root) == (3, 33)
    table = pq.read_table(store.root / INDEX_FILE)
    assert store.index().equals(table)
    assert table.num_rows == 3
    rows = {r["source_episode"]: r for r in table.to_pylist()}
    assert rows["t/e2"]["num_frames"] == 12 and rows["t/e0"]["embodiment"] == "ur5"
    assert rows["t/e1"]["cameras"] == ["top", "wrist"]
    assert rows["t/e1"]["sha256"] == file_sha256(store.root / rows["t/e1"]["path"])
    assert rows["t/e1"]["path"].startswith(EPISODES_DIR + "/inhouse/")


def test_stats_are_exact_per_embodiment_and_merged_by_name_per_source(store):
    eps = [make_episode(15, ref=f"e{i}", seed=i, embodiment="franka" if i < 2 else "ur5") for i in range(3)]
    for ep in eps:
        write_episode(ep, store.root, NATIVE)
    rebuild_index_and_stats(store.root)
    stats = store.stats()["sources"]["inhouse"]
    franka = np.concatenate([eps[0].state, eps[1].state]).astype(np.float64)
    emb = stats["embodiments"]["franka"]["state"]
    assert emb["names"] == eps[0].state_names
    np.testing.assert_allclose(emb["mean"], franka.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(emb["std"], franka.std(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(emb["min"], franka.min(0))
    np.testing.assert_array_equal(emb["max"], franka.max(0))
    everything = np.concatenate([e.state for e in eps]).astype(np.float64)
    np.testing.assert_allclose(stats["state"]["mean"], everything.mean(0), rtol=1e-9, atol=1e-12)
    assert stats["episodes"] == 3 and stats["frames"] == 45
    for j in range(8):
        lo, hi = stats["state"]["q01"][j], stats["state"]["q99"][j]
        assert everything[:, j].min() <= lo <= hi <= everything[:, j].max()


# --- the writer's rules at their edges: what it refuses mid-write, and what it leaves behind -------------


def _tmp_left(store) -> list[str]:
    return sorted(p.name for p in (store.root / TMP_DIR).glob("*")) if (store.root / TMP_DIR).exists() else []


def test_a_write_leaves_the_temporary_folder_empty_whether_it_succeeds_or_fails_mid_way(store):
    write_episode(make_episode(6, ref="ok"), store.root, NATIVE)
    assert _tmp_left(store) == []
    ep = make_episode(6, ref="bad")
    ep.cameras["wrist"] = CameraStream("wrist", 6, lambda: iter(make_frames(5)))  # fails after "top" was written
    with pytest.raises(EpisodeError):
        write_episode(ep, store.root, NATIVE)
    assert _tmp_left(store) == [] and [p.name for p in store.episode_files()] == [
        f"{episode_id('inhouse', 'ok')}.zarr.zip"]


def test_an_episode_without_sub_tasks_says_so_in_its_metadata(store):
    with_, without = (write_episode(make_episode(4, ref=r, subtasks=s), store.root, NATIVE)
                      for r, s in (("a", True), ("b", False)))
    for eid, has in ((with_, True), (without, False)):
        with store.open_episode(eid) as r:
            assert r.meta["language"]["has_subtasks"] is has
            assert (r.subtasks() is not None) is has


def _camera(frames) -> CameraStream:
    return CameraStream("top", len(frames), lambda: iter(frames))


@pytest.mark.parametrize("frames,reason,words", [
    (list(make_frames(7)), Reason.FRAME_COUNT_MISMATCH, "yielded more than 6 frames"),  # one frame too many
    ([f.astype(np.float32) for f in make_frames(6)], Reason.SHAPE_MISMATCH, "must be HxWx3 uint8"),
    ([f[..., :1] for f in make_frames(6)], Reason.SHAPE_MISMATCH, "must be HxWx3 uint8"),  # one channel
    ([f[..., 0] for f in make_frames(6)], Reason.SHAPE_MISMATCH, "must be HxWx3 uint8"),  # two dimensions
    (list(make_frames(3)) + list(make_frames(3, h=40)), Reason.SHAPE_MISMATCH, "frame 3 is (40, 64) but earlier"),
])
def test_a_camera_that_breaks_the_stream_s_contract_is_refused_with_its_reason(store, frames, reason, words):
    ep = make_episode(6)
    ep.cameras["top"] = CameraStream("top", 6, lambda: iter(frames))
    with pytest.raises(EpisodeError) as info:
        write_episode(ep, store.root, NATIVE)
    assert info.value.reason == reason and words in info.value.message
    assert info.value.message.startswith("task/episode_0.hdf5: camera 'top'")  # names the episode and the camera
    assert not store.episode_files() and _tmp_left(store) == []


def test_frames_that_change_size_are_accepted_when_every_frame_is_resized_to_one_size(store):
    ep = make_episode(6)
    ep.cameras["top"] = _camera(list(make_frames(3)) + list(make_frames(3, h=40)))
    eid = write_episode(ep, store.root, ImageConfig(height=32, width=32, resize="pad"))
    with store.open_episode(eid) as r:
        assert r.meta["cameras"]["top"]["height"] == 32 and r.meta["cameras"]["top"]["source_height"] == 48


def test_a_failing_disk_is_a_write_error_naming_the_episode(store, monkeypatch):
    import pipelines.episode_store.writer as writer

    def full(src, dest):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "pack_directory", full)
    with pytest.raises(EpisodeError) as info:
        write_episode(make_episode(4, ref="task/e.hdf5"), store.root, NATIVE)
    assert info.value.reason == Reason.WRITE_ERROR
    assert "task/e.hdf5: cannot write" in info.value.message and "No space left" in info.value.message
    assert not store.episode_files() and _tmp_left(store) == []


@pytest.mark.parametrize("metadata,where,kind", [
    ({"when": object()}, "metadata.when", "object"),
    ({"nested": {"bad": {1, 2}}}, "metadata.nested.bad", "set"),
    ({"items": [1, complex(1, 2)]}, "metadata.items", "complex"),
])
def test_metadata_that_is_not_json_is_invalid_metadata_naming_the_key_and_type(store, metadata, where, kind):
    ep = make_episode(4)
    ep.metadata = metadata
    with pytest.raises(EpisodeError) as info:
        write_episode(ep, store.root, NATIVE)
    assert info.value.reason == Reason.INVALID_METADATA
    assert info.value.message == f"{where} is not JSON-serialisable: {kind}"
    assert not store.episode_files()


def test_numpy_values_in_metadata_are_stored_as_plain_json():
    from pipelines.episode_store.writer import _jsonable

    assert _jsonable({"n": np.int64(3), "x": np.float32(0.5), "ok": np.bool_(True), "v": np.arange(2), "t": (1, "a"),
                      "raw": b"ab\xff", 7: None}, "metadata") == {
        "n": 3, "x": 0.5, "ok": True, "v": [0, 1], "t": [1, "a"], "raw": "ab\ufffd", "7": None}  # bytes as text


# --- the writer's format rules: what every written file holds, whatever the converter gave ----------------


def test_stored_arrays_have_the_format_s_dtypes_whatever_dtype_the_converter_gave(store):
    """timestamp float64, state/action float32 and sub-task indices int32 (docs/episode_format.md), also when a
    converter hands over float32 times or float64 vectors."""
    from pipelines.episode_store.schema import SUBTASK_INDEX, SUBTASK_INDEX_DTYPE

    ep = make_episode(6, cameras=("top",))
    ep.timestamp = (np.arange(6) / 10.0).astype(np.float32)
    ep.state, ep.action = ep.state.astype(np.float64), ep.action.astype(np.float64)
    with store.open_episode(write_episode(ep, store.root, NATIVE)) as r:
        for name, want, values in (("timestamp", np.float64, ep.timestamp), ("state", np.float32, ep.state),
                                   ("action", np.float32, ep.action)):
            assert r.group[name].dtype == want and getattr(r, name).dtype == want
            np.testing.assert_array_equal(r.group[name][:], values.astype(want))
        assert r.group[SUBTASK_INDEX].dtype == SUBTASK_INDEX_DTYPE


def test_every_low_dim_array_is_one_uncompressed_chunk(store):
    """Arrays other than images are stored as one plain chunk: no compressor (the file's bytes must not depend on
    which zstd the process bound) and the whole array in the chunk (the reader's one-read path)."""
    from pipelines.episode_store.schema import SUBTASK_INDEX, extra_array

    ep = make_episode(9, cameras=("top",))
    ep.extras["gripper"] = np.arange(9, dtype=np.int16)
    with store.open_episode(write_episode(ep, store.root, NATIVE)) as r:
        for name in ("timestamp", "state", "action", SUBTASK_INDEX, extra_array("qvel"), extra_array("gripper")):
            arr = r.group[name]
            assert arr.compressors == () and arr.chunks == arr.shape, name


def test_episode_metadata_records_duration_converter_and_extra_names():
    """duration_s is last minus first timestamp (0 for one frame); the converter is the source unless named;
    an extra without names has an empty name list."""
    from pipelines.episode_store.writer import episode_attributes

    ep = make_episode(5)
    ep.timestamp = ep.timestamp + 7.0  # 7.0 .. 7.4
    ep.extras["torque"] = np.zeros(5)  # no extra_names entry
    meta = episode_attributes(ep, "inhouse-x", {})
    assert meta["duration_s"] == pytest.approx(0.4)
    assert meta["converter"]["name"] == "inhouse"
    assert meta["extras"]["torque"]["names"] == [] and meta["extras"]["qvel"]["names"] == ep.extra_names["qvel"]
    two = make_episode(2)
    two.timestamp = np.array([3.0, 3.25])
    assert episode_attributes(two, "inhouse-x", {})["duration_s"] == 0.25
    assert episode_attributes(make_episode(1), "inhouse-x", {})["duration_s"] == 0.0
    ep.converter = "lerobot"
    assert episode_attributes(ep, "inhouse-x", {})["converter"]["name"] == "lerobot"


def test_the_writer_applies_the_plausibility_bound_it_is_given(store):
    ep = make_episode(4, cameras=("top",))
    ep.state[2, 1] = 5e6
    with pytest.raises(EpisodeError) as info:
        write_episode(ep, store.root, NATIVE)  # the 1e6 default
    assert info.value.reason == Reason.IMPLAUSIBLE_VALUES
    eid = write_episode(ep, store.root, NATIVE, max_abs_value=1e7)
    with store.open_episode(eid) as r:
        assert r.state[2, 1] == 5e6


def test_episodes_whose_ids_share_a_shard_folder_are_all_published(store):
    by_folder: dict[str, list[str]] = {}
    for i in range(2000):  # 256 shard folders: two ids meet in one after ~20 on average
        ref = f"shared/{i}"
        refs = by_folder.setdefault(episode_relpath(episode_id("inhouse", ref)).rsplit("/", 1)[0], [])
        refs.append(ref)
        if len(refs) == 2:
            break
    eids = [write_episode(make_episode(3, ref=ref, cameras=("top",)), store.root, NATIVE) for ref in refs]
    assert sorted(p.name for p in store.episode_files()) == sorted(f"{e}.zarr.zip" for e in eids)


@pytest.mark.parametrize("values", [np.array(["a"] * 6), np.array([b"a"] * 6), np.array([{}] * 6, dtype=object)],
                         ids=["str", "bytes", "object"])
def test_an_extra_that_is_not_numeric_is_refused_naming_it(store, values):
    ep = make_episode(6, cameras=("top",))
    ep.extras["note"] = values
    with pytest.raises(EpisodeError) as info:
        write_episode(ep, store.root, NATIVE)
    assert info.value.reason == Reason.SHAPE_MISMATCH
    assert info.value.message == "task/episode_0.hdf5: extra 'note' must be numeric"
    assert not store.episode_files()


def test_a_camera_s_source_name_and_file_are_recorded_or_default_to_its_name(store):
    ep = make_episode(3, cameras=("top", "wrist"))
    ep.cameras["top"].source_name, ep.cameras["top"].source_file = "cam_high", "videos/ep0.mp4"
    with store.open_episode(write_episode(ep, store.root, NATIVE)) as r:
        assert r.meta["cameras"]["top"]["source"] == {"name": "cam_high", "file": "videos/ep0.mp4"}
        assert r.meta["cameras"]["wrist"]["source"] == {"name": "wrist", "file": None}


def _meeting_camera(frames, barrier, met: list[bool], thread_safe: bool) -> CameraStream:
    """A camera whose stream waits at ``barrier`` for the episode's other camera before its first frame."""
    import threading

    def open_frames():
        try:
            barrier.wait(timeout=5 if thread_safe else 0.2)
            met.append(True)
        except threading.BrokenBarrierError:
            met.append(False)
        yield from frames

    return CameraStream("x", len(frames), open_frames, thread_safe=thread_safe)


@pytest.mark.parametrize("thread_safe", [True, False])
def test_thread_safe_cameras_are_encoded_together_and_others_one_at_a_time(store, thread_safe):
    """Cameras whose streams are all thread-safe are consumed on parallel threads; if any is not, one at a time."""
    import threading

    barrier, met = threading.Barrier(2), []
    ep = make_episode(3)
    ep.cameras = {c: _meeting_camera(make_frames(3), barrier, met, thread_safe) for c in ("top", "wrist")}
    write_episode(ep, store.root, NATIVE)
    assert met == ([True, True] if thread_safe else [False, False])


def test_frames_are_written_a_whole_shard_at_a_time(store, monkeypatch):
    """The writer buffers at most one shard of encoded frames and writes each shard in one piece."""
    from pipelines.episode_store import writer

    writes: list[tuple[str, int, int]] = []
    real = writer._flush
    monkeypatch.setattr(writer, "_flush", lambda arr, start, pending: writes.append(
        (arr.path, start, len(pending))) or real(arr, start, pending))
    write_episode(make_episode(10, cameras=("top",)), store.root, NATIVE, frames_per_shard=4)
    assert writes == [("images/top", 0, 4), ("images/top", 4, 4), ("images/top", 8, 2)]


def test_episode_files_hold_stored_members_with_fixed_attributes(store):
    """The ZIP's members are stored (any chunk is one seek), dated 1980-01-01 and plain 0644 files, whatever the
    clock or umask: equal content gives equal bytes."""
    eid = write_episode(make_episode(3, cameras=("top",)), store.root, NATIVE)
    with zipfile.ZipFile(store.episode_path(eid)) as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED and info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr == 0o644 << 16, info.filename


def test_the_recorded_content_digest_is_the_one_a_full_read_gives(store):
    from pipelines.episode_store.index import content_sha256

    with store.open_episode(write_episode(make_episode(5), store.root, NATIVE)) as r:
        assert r.meta["content_sha256"] == content_sha256(r, recorded=False)


# --- the reader's rules: the writer's files are read directly, anything else through zarr -----------------


def test_the_writer_s_files_are_read_without_opening_zarr(store):
    """Metadata, low-dim arrays, extras, sub-tasks and frames of what the writer produced are read straight from
    the file (zarr costs milliseconds per read); the values are zarr's."""
    ep = make_episode(20)
    ep.extras["gripper"] = np.arange(20, dtype=np.int16)
    eid = write_episode(ep, store.root, NATIVE, frames_per_shard=8)
    with store.open_episode(eid) as r:
        got = {name: getattr(r, name) for name in ("timestamp", "state", "action")}
        extras = {k: r.extra(k) for k in ("qvel", "gripper")}
        subtasks = r.subtasks()
        frames = [r.encoded_frame(c, i) for c in r.cameras for i in range(20)]
        assert "group" not in vars(r), "a direct read fell back to zarr"
        g = r.group
        for name, values in got.items():
            assert values.dtype == g[name].dtype and np.array_equal(values, g[name][:])
        for k, values in extras.items():
            assert values.dtype == g[f"extras/{k}"].dtype and np.array_equal(values, g[f"extras/{k}"][:])
        assert subtasks == ep.subtasks
        assert frames == [r.encoded_frame(c, i) for c in r.cameras for i in range(20)]


def test_an_episode_of_another_converter_reads_back_with_its_name(store):
    ep = make_episode(3, cameras=("top",))
    ep.converter = "lerobot"
    with store.open_episode(write_episode(ep, store.root, NATIVE)) as r:
        assert r.meta["converter"]["name"] == "lerobot" and r.to_episode().converter == "lerobot"


def _array_meta(codecs, *, shape=(4, 2), chunks=(4, 2), keys=None, **more):
    meta = {"codecs": codecs, "shape": list(shape), "chunk_grid": {"configuration": {"chunk_shape": list(chunks)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}} if keys is None else keys}
    return dict(meta, **more)


_PLAIN = {"name": "bytes", "configuration": {"endian": "little"}}
_ZSTD = {"name": "zstd", "configuration": {"level": 0}}


@pytest.mark.parametrize("meta,direct", [
    (_array_meta([_PLAIN]), False),  # the writer's: one plain chunk
    (_array_meta([_PLAIN, _ZSTD]), True),  # older stores: one zstd chunk
    (_array_meta([{"name": "bytes"}]), False),  # no endian given: little
    (_array_meta([_PLAIN], keys={"name": "default"}), False),  # no separator given: "/"
    (_array_meta([{"name": "bytes", "configuration": {"endian": "big"}}]), None),
    (_array_meta([_PLAIN, {"name": "gzip"}]), None),
    (_array_meta([_PLAIN, _ZSTD, {"name": "crc32c"}]), None),
    (_array_meta([]), None),
    ({k: v for k, v in _array_meta([_PLAIN]).items() if k != "codecs"}, None),
    (_array_meta([{"name": "transpose"}, _PLAIN]), None),
    (_array_meta([_PLAIN], storage_transformers=[{"name": "x"}]), None),
    (_array_meta([_PLAIN], chunks=(2, 2)), None),
    (_array_meta([_PLAIN], keys={"name": "default", "configuration": {"separator": "."}}), None),
    (_array_meta([_PLAIN], keys={"name": "v2", "configuration": {"separator": "/"}}), None),
    (_array_meta([_PLAIN], keys={}), None),
], ids=["plain", "zstd", "endian-default", "separator-default", "big-endian", "gzip", "three-codecs", "no-codecs",
        "codecs-missing", "transpose", "storage-transformer", "several-chunks", "dot-separator", "v2-keys",
        "no-key-encoding"])
def test_only_single_little_endian_chunks_plain_or_zstd_are_decoded_directly(meta, direct):
    """None: read through zarr; else whether the one chunk is zstd-compressed."""
    from pipelines.episode_store.reader import _single_chunk_codecs

    assert _single_chunk_codecs(meta) is direct


def test_an_empty_zarr_read_is_empty_bytes():
    from pipelines.episode_store.reader import _unwrap

    assert _unwrap(np.array([], dtype=object)) == b""
    assert _unwrap(np.array([[b"jpeg"]], dtype=object)) == b"jpeg"


def test_a_frame_range_reads_only_its_frames(store):
    eid = write_episode(make_episode(12, cameras=("top",)), store.root, NATIVE, frames_per_shard=4)
    with store.open_episode(eid) as r:
        assert list(r.encoded_frames("top", 2, 9, block=3)) == [r.encoded_frame("top", i) for i in range(2, 9)]
        assert [f.shape for f in r.frames("top", 3, 5)] == [(48, 64, 3)] * 2
        assert len(list(r.encoded_frames("top", 10))) == 2


def test_frames_of_a_shard_that_was_never_written_read_as_empty(store):
    eid = write_episode(make_episode(8, cameras=("top",)), store.root, NATIVE, frames_per_shard=4)
    path = store.episode_path(eid)
    with zipfile.ZipFile(path) as zf:  # drop the second shard, as a writer that never got there would
        members = [(i, zf.read(i)) for i in zf.infolist() if i.filename != "images/top/c/1"]
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    with store.open_episode(eid) as r:
        assert r._frame_ranges("top") is not None
        assert [r.encoded_frame("top", i) == b"" for i in range(8)] == [False] * 4 + [True] * 4


def test_a_damaged_local_header_is_an_error_naming_the_member(store):
    eid = write_episode(make_episode(4, cameras=("top",)), store.root, NATIVE)
    path = store.episode_path(eid)
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("state/c/0/0").header_offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"PK\x00\x00")
    with store.open_episode(eid) as r, pytest.raises(StoreError, match="state/c/0/0: bad local file header"):
        r.state  # noqa: B018


def test_a_zarr_file_that_is_no_episode_is_refused_naming_it(tmp_path):
    import zarr

    from pipelines.episode_store.writer import pack_directory

    zarr.open_group(zarr.storage.LocalStore(tmp_path / "g"), mode="w")
    pack_directory(tmp_path / "g", tmp_path / "plain.zarr.zip")
    with pytest.raises(StoreError, match=f"{tmp_path / 'plain.zarr.zip'}: no 'a1pipe_episode' attribute"):
        EpisodeReader(tmp_path / "plain.zarr.zip")


def test_closing_a_reader_releases_its_file_and_closing_twice_is_harmless(store):
    import os

    eid = write_episode(make_episode(3, cameras=("top",)), store.root, NATIVE)
    r = store.open_episode(eid)
    fd = r._fh
    r.group  # noqa: B018  (opens zarr's ZipStore too)
    r.close()
    r.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_store_is_created_with_its_marker_once_and_opened_by_it(tmp_path):
    from pipelines.episode_store.layout import STORE_FORMAT, STORE_MARKER
    from pipelines.episode_store.schema import FORMAT_VERSION

    root = tmp_path / "deep" / "store"  # parents are created
    assert EpisodeStore.create(root).location == str(root)
    marker = json.loads((root / STORE_MARKER).read_text())
    assert marker == {"format": STORE_FORMAT, "format_version": FORMAT_VERSION}
    EpisodeStore.create(root)  # again: the existing store is opened
    assert EpisodeStore(root, location="s3://bucket/store").location == "s3://bucket/store"
    with pytest.raises(KeyError, match=f"episode inhouse-0000000000000000 not in store {root}"):
        EpisodeStore(root).open_episode("inhouse-0000000000000000")
    with pytest.raises(StoreError, match=f"{tmp_path}: not an a1pipe store \\(no {STORE_MARKER}\\)"):
        EpisodeStore(tmp_path)
    (root / STORE_MARKER).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(StoreError, match=f"s3://b: format_version 99, this a1pipe reads {FORMAT_VERSION}"):
        EpisodeStore(root, location="s3://b")
