"""The shared LeRobot reader (converters/formats/lerobot.py) on datasets written here.

Every dataset is built with the reader's own ``DatasetWriter`` (pyarrow parquet, PyAV MP4)
and then, where a test needs it, damaged or edited to state the one disagreement it is
about. Camera frames are flat grey levels that encode (episode, frame), so a decoded frame
proves it came from the right place of a shared v3 video file. The rules under test are
written down in docs/sources/lerobot.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from converters.base import parse_options
from converters.formats import lerobot as L
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind, TimestampOrigin, check_episode
from pipelines.samples.formats import lerobot as W

NAMES = ["j1", "j2", "j3", "gripper"]
FPS = 30.0
CAM = "observation.images.front"


def level(episode: int, frame: int) -> int:
    return 16 + (episode * 37 + frame * 5) % 220


def grey_frames(episode: int, n: int, h: int = 32, w: int = 48):
    for i in range(n):
        yield np.full((h, w, 3), level(episode, i), dtype=np.uint8)


def state_of(episode: int, n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return np.stack([np.sin(t / 9 + episode), np.cos(t / 7), 0.1 * t / n, np.linspace(1, 0, n)], axis=1)


def write(
    root: Path,
    *,
    version: str = "v2.1",
    lengths=(20, 26, 23),
    codec: str = "h264",
    cameras: tuple[str, ...] = (CAM,),
    names=NAMES,
    robot_type: str | None = "test_arm",
    episodes_per_file: int = 2,
    row_group_size: int | None = 8,
    timestamp_dtype: str = "float32",
    info_overrides=None,
    extra_columns=None,
    drop=None,
    tasks=None,
    task_of=None,
    chunks_size: int = 1000,
) -> Path:
    feats = {
        "observation.state": {"dtype": "float32", "shape": [4], "names": names},
        "action": {"dtype": "float32", "shape": [4], "names": names},
    }
    for key, (dtype, _) in (extra_columns or {}).items():
        feats[key] = {"dtype": dtype, "shape": [1], "names": None}
    cams = [W.SampleCamera(k, 32, 48, "image" if k.endswith("_png") else codec) for k in cameras]
    writer = W.DatasetWriter(
        root, version=version, fps=FPS, robot_type=robot_type, features=feats, cameras=cams,
        tasks=tasks if tasks is not None else {0: "pick up the cube"}, episodes_per_file=episodes_per_file,
        row_group_size=row_group_size, timestamp_dtype=timestamp_dtype, info_overrides=info_overrides,
        chunks_size=chunks_size,
    )
    for e, n in enumerate(lengths):
        s = state_of(e, n)
        cols = {"observation.state": s, "action": np.concatenate([s[1:], s[-1:]])}
        for key, (dtype, fn) in (extra_columns or {}).items():
            cols[key] = fn(e, n).astype(dtype)
        writer.add(W.SampleEpisode(
            index=e, columns=cols, task_index=(task_of or {}).get(e, 0), tasks=["pick up the cube"],
            frames=lambda key, e=e, n=n: grey_frames(e, n),
            drop_video_frames=(drop or {}).get(e, {}),
        ))
    writer.close()
    return root


def read(root: Path, index: int, rel: str = "", fmap=L.FeatureMap(), **options):
    ds = L.LeRobotDataset(root, rel, parse_options(L.ReaderOptions, options, source="test"))
    raw = ds.read(index, L.episode_ref(rel, index), fmap)
    ep = L.build_episode(
        raw, fmap, ds.options, embodiment="test_arm", robot_type="test_arm", instruction="pick up the cube"
    )
    return ds, raw, ep


def frames_of(ep, name="front"):
    return list(ep.cameras[name].open_frames())


def assert_frames_are(frames, episode):
    got = [int(round(f.mean())) for f in frames]
    want = [level(episode, i) for i in range(len(frames))]
    assert np.max(np.abs(np.array(got) - np.array(want))) <= 2, (got[:8], want[:8])


def flags(ep):
    return ep.metadata["lerobot"]["flags"]


# -- round trips ------------------------------------------------------------------------


def test_v21_round_trip(tmp_path):
    root = write(tmp_path / "ds")
    ds = L.LeRobotDataset(root)
    assert (ds.version, ds.layout, ds.fps, ds.robot_type) == ("v2.1", "v2", FPS, "test_arm")
    assert ds.episode_indices() == [0, 1, 2] and ds.tasks == {0: "pick up the cube"}
    for e, n in enumerate((20, 26, 23)):
        _, raw, ep = read(root, e)
        check_episode(ep)
        np.testing.assert_array_equal(ep.state, state_of(e, n).astype(np.float32))
        np.testing.assert_allclose(ep.timestamp, np.arange(n) / FPS, atol=1e-6)
        assert ep.state_names == NAMES and ep.action_kind == ActionKind.JOINT_POSITION
        assert ep.timestamp_origin == TimestampOrigin.RECORDED and ep.control_hz == FPS
        assert_frames_are(frames_of(ep), e)
        meta = ep.metadata["lerobot"]
        assert meta["codebase_version"] == "v2.1" and meta["episode_index"] == e and meta["split"] == "train"
        assert "name_repairs" not in flags(ep)
    assert (root / "meta" / "episodes_stats.jsonl").is_file()


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_v30_round_trip_seeks_into_shared_files(tmp_path, codec):
    if codec == "av1" and W.av1_encoder() is None:
        pytest.skip("this PyAV build cannot encode AV1")
    lengths = (20, 26, 23, 17, 21)
    root = write(tmp_path / "ds", version="v3.0", lengths=lengths, codec=codec, episodes_per_file=2)
    assert sorted(p.name for p in (root / "data" / "chunk-000").iterdir()) == [
        "file-000.parquet", "file-001.parquet", "file-002.parquet"]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"][CAM]["info"]["video.codec"] == codec and "total_chunks" not in info
    for e, n in enumerate(lengths):
        _, raw, ep = read(root, e)
        check_episode(ep)
        np.testing.assert_array_equal(ep.state, state_of(e, n).astype(np.float32))
        frames = frames_of(ep)
        assert len(frames) == n
        assert_frames_are(frames, e)


def test_v30_reads_only_the_row_groups_of_the_episode(tmp_path):
    root = write(tmp_path / "ds", version="v3.0", lengths=(20, 26, 23), episodes_per_file=3, row_group_size=8)
    path = root / "data" / "chunk-000" / "file-000.parquet"
    assert pq.ParquetFile(path).metadata.num_row_groups == 9
    table, groups = L._read_episode_rows(path, 1, ["observation.state", "action"], "x")
    assert groups == [2, 3, 4, 5] and table.num_rows == 26  # rows 20..45 of 69
    assert set(table.column("episode_index").to_pylist()) == {1}


def test_v30_rows_in_the_following_file_are_found_and_recorded(tmp_path):
    root = write(tmp_path / "ds", version="v3.0", lengths=(20, 26), episodes_per_file=1)
    meta_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(meta_path)
    files = table.column("data/file_index").to_pylist()
    files[1] = 0  # the metadata says episode 1 is in file 0; its rows are in file 1
    table = table.set_column(table.schema.get_field_index("data/file_index"), "data/file_index",
                             pa.array(files, pa.int64()))
    pq.write_table(table, meta_path)
    _, _, ep = read(root, 1)
    assert ep.num_frames == 26
    assert flags(ep)["rows_from_files"]["read"] == ["data/chunk-000/file-001.parquet"]


def test_v20_video_info_and_dict_names(tmp_path):
    root = write(tmp_path / "ds", version="v2.0", names={"motors": NAMES})
    info = json.loads((root / "meta" / "info.json").read_text())
    assert "video_info" in info["features"][CAM]
    _, _, ep = read(root, 0)
    assert ep.state_names == NAMES and ep.metadata["lerobot"]["codebase_version"] == "v2.0"
    assert_frames_are(frames_of(ep), 0)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_image_features_are_cameras(tmp_path, version):
    root = write(tmp_path / "ds", version=version, cameras=("observation.images.wrist_png",), lengths=(12, 9))
    for e, n in enumerate((12, 9)):
        _, _, ep = read(root, e)
        frames = frames_of(ep, "wrist_png")
        assert len(frames) == n
        assert [int(f[0, 0, 0]) for f in frames] == [level(e, i) for i in range(n)]  # PNG: lossless


# -- metadata that disagrees with the data ------------------------------------------------


@pytest.mark.parametrize(
    "policy, want",
    [("pad", ["j1", "j2", "state_dim_2", "state_dim_3"]),
     ("generic", ["state_dim_0", "state_dim_1", "state_dim_2", "state_dim_3"])],
)
def test_fewer_names_than_dimensions_are_repaired_and_recorded(tmp_path, policy, want):
    root = write(tmp_path / "ds", names=["j1", "j2"])
    _, _, ep = read(root, 0, name_policy=policy)
    assert ep.state_names == want
    assert flags(ep)["name_repairs"]["observation.state"] == {"declared": 2, "width": 4, "rule": policy}
    check_episode(ep)


def test_fewer_names_quarantine_under_strict_policy(tmp_path):
    root = write(tmp_path / "ds", names=["j1", "j2"])
    with pytest.raises(EpisodeError) as err:
        read(root, 0, name_policy="strict")
    assert err.value.reason == Reason.NAME_MISMATCH and "2 names for 4 dimensions" in err.value.message


def test_more_names_than_dimensions_is_a_name_mismatch(tmp_path):
    root = write(tmp_path / "ds", names=NAMES + ["wrist_roll", "spare"])
    with pytest.raises(EpisodeError) as err:
        read(root, 0)
    assert err.value.reason == Reason.NAME_MISMATCH
    assert "6 names" in err.value.message and "4 dimensions" in err.value.message


def test_null_names_get_generic_names(tmp_path):
    root = write(tmp_path / "ds", names=None)
    _, _, ep = read(root, 0)
    assert ep.action_names == [f"action_dim_{i}" for i in range(4)]
    assert flags(ep)["name_repairs"]["action"]["rule"] == "generic"


def test_float64_timestamps_are_kept_and_recorded(tmp_path):
    root = write(tmp_path / "ds", timestamp_dtype="float64")
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    assert info["features"]["timestamp"]["dtype"] == "float64"
    _, _, ep = read(root, 1)
    assert flags(ep)["timestamp_dtype"] == "float64" and "dtype_disagrees" not in flags(ep)
    info["features"]["timestamp"]["dtype"] = "float32"  # metadata claims float32, parquet holds float64
    info_path.write_text(json.dumps(info))
    _, _, ep = read(root, 1)
    assert flags(ep)["dtype_disagrees"]["timestamp"] == {"declared": "float32", "parquet": "float64"}


def test_declared_shape_disagreeing_with_data_is_recorded(tmp_path):
    root = write(tmp_path / "ds")
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.state"]["shape"] = [6]
    info_path.write_text(json.dumps(info))
    _, _, ep = read(root, 0)
    assert flags(ep)["shape_disagrees"]["observation.state"] == {"declared": [6], "parquet_width": 4}


def test_short_video_is_a_frame_count_mismatch_with_both_counts(tmp_path):
    root = write(tmp_path / "ds", drop={1: {CAM: 3}})
    with pytest.raises(EpisodeError) as err:
        read(root, 1)
    assert err.value.reason == Reason.FRAME_COUNT_MISMATCH
    assert "23 video frames" in err.value.message and "26 parquet rows" in err.value.message


def test_short_window_of_a_shared_v3_video(tmp_path):
    root = write(tmp_path / "ds", version="v3.0", lengths=(20, 26, 23), episodes_per_file=3, drop={1: {CAM: 4}})
    with pytest.raises(EpisodeError) as err:
        read(root, 1)
    assert err.value.reason == Reason.FRAME_COUNT_MISMATCH and "22 video frames in [" in err.value.message
    _, _, ep = read(root, 2)  # the next episode keeps its nominal window
    assert_frames_are(frames_of(ep), 2)


def _extend_video(root: Path, episode: int, extra: int, n: int) -> None:
    path = root / "videos" / "chunk-000" / CAM / f"episode_{episode:06d}.mp4"
    writer = W.VideoWriter(path, FPS, 32, 48, "libx264")
    for frame in grey_frames(episode, n + extra):
        writer.write(frame)
    writer.close()


def test_extra_video_frames_within_tolerance_are_dropped_and_recorded(tmp_path):
    root = write(tmp_path / "ds")
    _extend_video(root, 0, 2, 20)
    with pytest.raises(EpisodeError) as err:
        read(root, 0)
    assert err.value.reason == Reason.FRAME_COUNT_MISMATCH and "22 video frames" in err.value.message
    _, _, ep = read(root, 0, video_extra_frames=2)
    assert flags(ep)["video_frames_trimmed"] == {"front": 2}
    frames = frames_of(ep)
    assert len(frames) == 20
    assert_frames_are(frames, 0)
    with pytest.raises(EpisodeError):
        read(root, 0, video_extra_frames=1)


def test_frame_times_must_match_parquet_timestamps(tmp_path):
    root = write(tmp_path / "ds", lengths=(20,))
    path = root / "data" / "chunk-000" / "episode_000000.parquet"
    table = pq.read_table(path)
    ts = np.arange(20, dtype=np.float32) / FPS
    ts[10:] += 2.0 / FPS  # the parquet says two frames were skipped; the video has none missing
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", pa.array(ts))
    pq.write_table(table, path)
    _, _, ep = read(root, 0)
    with pytest.raises(EpisodeError) as err:
        frames_of(ep)
    assert err.value.reason == Reason.FRAME_COUNT_MISMATCH and "video frame 10" in err.value.message
    _, _, ep = read(root, 0, check_frame_times=False)
    assert len(frames_of(ep)) == 20


def test_null_robot_type_needs_a_configured_embodiment(tmp_path):
    root = write(tmp_path / "ds", robot_type=None)

    class Plain(L.LeRobotConverter):
        name, source_version, converter_version, embodiments, control_hz = "plain", "x", "1", ("arm",), 30.0

    conv = Plain(root)
    ref = conv.discover()[0]
    with pytest.raises(EpisodeError) as err:
        with conv.read(lambda: conv.open_episode(ref)):
            pass
    assert err.value.reason == Reason.MISSING_METADATA and "robot_type is None" in err.value.message
    conv = Plain(root, {"embodiment": "arm"})
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        assert ep.embodiment == "arm" and ep.instruction == "pick up the cube"


def test_length_and_total_disagreements_are_recorded(tmp_path):
    root = write(tmp_path / "ds")
    eps = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]
    eps[0]["length"] = 99
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    info = json.loads((root / "meta" / "info.json").read_text())
    info["total_episodes"] = 4
    info["discarded_episode_indices"] = [7]
    (root / "meta" / "info.json").write_text(json.dumps(info))
    _, _, ep = read(root, 0)
    f = flags(ep)
    assert f["length_disagrees"] == {"episodes_meta": 99, "parquet_rows": 20}
    assert f["total_episodes_disagrees"] == {"info": 4, "episodes_meta": 3}
    assert f["info_extra_keys"] == {"discarded_episode_indices": [7]}


def test_episode_outside_the_splits_is_kept_and_recorded(tmp_path):
    root = write(tmp_path / "ds", info_overrides={"splits": {"train": "0:2"}})
    _, _, ep = read(root, 2)
    assert ep.metadata["lerobot"]["split"] is None and flags(ep)["not_in_splits"] is True
    ds = L.LeRobotDataset(root)
    ds.info["splits"] = {"train": [0, "1:2"], "val": [2]}
    assert [ds.split_of(i) for i in range(3)] == ["train", "train", "val"]


def test_chunk_folder_not_matching_chunks_size_is_found_and_recorded(tmp_path):
    root = write(tmp_path / "ds", chunks_size=2)  # episode 2 is written to chunk-001
    assert (root / "data" / "chunk-001" / "episode_000002.parquet").is_file()
    _, _, ep = read(root, 2)
    assert "path_fallback" not in flags(ep)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["chunks_size"] = 1000  # now the metadata says chunk-000
    (root / "meta" / "info.json").write_text(json.dumps(info))
    _, _, ep = read(root, 2)
    fb = flags(ep)["path_fallback"]
    assert fb["data/chunk-000/episode_000002.parquet"] == "data/chunk-001/episode_000002.parquet"
    assert_frames_are(frames_of(ep), 2)


@pytest.mark.parametrize("key,template", [
    ("data_path", "../outside/episode_{episode_index:06d}.parquet"),
    ("data_path", "/etc/episode_{episode_index:06d}.parquet"),
    ("video_path", "videos/../../{video_key}/episode_{episode_index:06d}.mp4"),
])
def test_a_path_template_leading_outside_the_dataset_is_invalid_metadata(tmp_path, key, template):
    root = write(tmp_path / "ds", info_overrides={key: template})
    with pytest.raises(EpisodeError) as info:
        read(root, 0)
    assert info.value.reason == Reason.INVALID_METADATA and "leads outside" in info.value.message


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_an_episode_with_no_parquet_rows_is_empty(tmp_path, version):
    root = write(tmp_path / "ds", version=version)
    for path in (root / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.filter(pc.not_equal(table["episode_index"], 1)), path)
    with pytest.raises(EpisodeError) as info:
        read(root, 1)
    assert info.value.reason == Reason.EMPTY_EPISODE and "episode 1" in info.value.message
    assert read(root, 0)[2].num_frames == 20  # the other episodes of the file still read


def test_undeclared_and_missing_columns_are_recorded(tmp_path):
    root = write(tmp_path / "ds", extra_columns={"next.reward": ("float32", lambda e, n: np.linspace(0, 1, n))})
    info = json.loads((root / "meta" / "info.json").read_text())
    del info["features"]["next.reward"]
    info["features"]["observation.effort"] = {"dtype": "float32", "shape": [4], "names": NAMES}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    _, _, ep = read(root, 0)
    assert flags(ep)["undeclared_columns"] == ["next.reward"]
    assert flags(ep)["declared_columns_missing"] == ["observation.effort"]
    assert ep.extras["next.reward"].shape == (20, 1) and ep.extra_names["next.reward"] == ["next_reward_dim_0"]


def test_task_text_resolution(tmp_path):
    root = write(tmp_path / "ds", tasks={0: "pick up the cube", 1: "place it"}, task_of={1: 5, 2: 1})
    ds = L.LeRobotDataset(root)
    raw = ds.read(0, "episode_000000", L.FeatureMap())
    assert L.episode_tasks(raw) == (["pick up the cube"], {"task_index": [0]})
    raw = ds.read(2, "episode_000002", L.FeatureMap())  # episodes meta says "pick up the cube", rows say 1
    texts, info = L.episode_tasks(raw)
    assert texts == ["place it"] and info["episode_meta_tasks_disagree"] == ["pick up the cube"]
    raw = ds.read(1, "episode_000001", L.FeatureMap())  # task_index 5 has no text: the episode's own list
    assert L.episode_tasks(raw) == (["pick up the cube"], {"task_from_episode_meta": {"task_index": 5}})
    eps = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]
    eps[1]["tasks"] = []
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    raw = L.LeRobotDataset(root).read(1, "episode_000001", L.FeatureMap())
    with pytest.raises(EpisodeError) as err:
        L.episode_tasks(raw)
    assert err.value.reason == Reason.MISSING_LANGUAGE and "task_index [5]" in err.value.message


# -- broken input -------------------------------------------------------------------------


def _break(root: Path, what: str) -> None:
    data = root / "data" / "chunk-000" / "episode_000001.parquet"
    video = root / "videos" / "chunk-000" / CAM / "episode_000001.mp4"
    if what == "truncated_parquet":
        data.write_bytes(data.read_bytes()[:300])
    elif what == "missing_parquet":
        data.unlink()
    elif what == "garbage_video":
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    elif what == "truncated_video":
        video.write_bytes(video.read_bytes()[:400])
    elif what == "missing_video":
        video.unlink()
    elif what == "missing_state_column":
        table = pq.read_table(data).drop_columns(["observation.state"])
        pq.write_table(table, data)
    elif what == "ragged_vectors":
        table = pq.read_table(data)
        rows = table.column("action").to_pylist()
        rows[3] = rows[3][:2]
        table = table.set_column(table.schema.get_field_index("action"), "action",
                                 pa.array(rows, pa.list_(pa.float32())))
        pq.write_table(table, data)
    elif what == "null_rows":
        table = pq.read_table(data)
        rows = table.column("action").to_pylist()
        rows[3] = None  # a dropped sample (variable-size list: pyarrow cannot read back null fixed-size rows)
        table = table.set_column(table.schema.get_field_index("action"), "action",
                                 pa.array(rows, pa.list_(pa.float32())))
        pq.write_table(table, data)


@pytest.mark.parametrize(
    "what, reason",
    [("truncated_parquet", Reason.CORRUPT_FILE), ("missing_parquet", Reason.MISSING_FILE),
     ("garbage_video", Reason.VIDEO_DECODE_ERROR), ("truncated_video", Reason.VIDEO_DECODE_ERROR),
     ("missing_video", Reason.MISSING_FILE), ("missing_state_column", Reason.MISSING_KEY),
     ("ragged_vectors", Reason.SHAPE_MISMATCH), ("null_rows", Reason.NON_FINITE_VALUES)],
)
def test_broken_input_has_a_specific_reason(tmp_path, what, reason):
    root = write(tmp_path / "ds")
    _break(root, what)
    with pytest.raises(EpisodeError) as err:
        _, _, ep = read(root, 1)
        frames_of(ep)
    assert err.value.reason == reason, err.value.message
    assert "episode_000001" in err.value.message
    _, _, ep = read(root, 0)  # the neighbour is untouched
    assert len(frames_of(ep)) == 20


@pytest.mark.parametrize(
    "edit, reason",
    [(lambda info: info.update(codebase_version="v1.6"), Reason.UNSUPPORTED_LAYOUT),
     (lambda info: info.update(fps=0), Reason.INVALID_METADATA),
     (lambda info: info.update(video_path=None), Reason.UNSUPPORTED_LAYOUT),
     (lambda info: info.update(chunks_size="many"), Reason.INVALID_METADATA),
     (lambda info: info.pop("features"), Reason.INVALID_METADATA)],
)
def test_bad_info_json(tmp_path, edit, reason):
    root = write(tmp_path / "ds")
    info = json.loads((root / "meta" / "info.json").read_text())
    edit(info)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EpisodeError) as err:
        L.LeRobotDataset(root)
    assert err.value.reason == reason


def test_discovery_lists_episodes_and_broken_datasets_as_units(tmp_path):
    write(tmp_path / "root" / "robot_a" / "task_1", lengths=(5, 6))
    write(tmp_path / "root" / "robot_b", version="v3.0", lengths=(5,))
    broken = write(tmp_path / "root" / "robot_c", lengths=(5,))
    (broken / "meta" / "info.json").write_text("{not json")
    nested = tmp_path / "root" / "robot_b" / "meta" / "inner"  # a dataset's own folders are not searched
    nested.mkdir(parents=True)
    (nested / "info.json").write_text("{}")

    class Plain(L.LeRobotConverter):
        name, source_version, converter_version, embodiments, control_hz = "plain", "x", "1", ("test_arm",), 30.0

    conv = Plain(tmp_path / "root")
    units = conv.discover()
    assert units == ["robot_a/task_1/episode_000000", "robot_a/task_1/episode_000001",
                     "robot_b/episode_000000", "robot_c"]
    assert L.parse_episode_ref("robot_a/task_1/episode_000001") == ("robot_a/task_1", 1)
    assert L.parse_episode_ref("episode_000004") == ("", 4) and L.parse_episode_ref("robot_c") is None
    with pytest.raises(EpisodeError) as err:
        list(conv.episodes("robot_c"))
    assert err.value.reason == Reason.INVALID_METADATA
    assert [ref for ref, _ in conv.episodes("robot_b")] == ["robot_b/episode_000000"]
    with pytest.raises(FileNotFoundError):
        Plain(tmp_path / "nowhere").discover()


def test_reader_options_are_validated():
    assert parse_options(L.ReaderOptions, {}, source="test") == L.ReaderOptions()
    for bad in ({"name_policy": "guess"}, {"video_extra_frames": -1}, {"video_time_tolerance_s": 0},
                {"check_frame_times": "yes"}):
        with pytest.raises(ValueError):
            parse_options(L.ReaderOptions, bad, source="test")


# -- streaming ----------------------------------------------------------------------------


def test_frames_stream_lazily_and_containers_close(tmp_path, monkeypatch):
    root = write(tmp_path / "ds", version="v3.0", lengths=(20, 26), episodes_per_file=2)
    _, _, ep = read(root, 1)
    opened, closed = [], []
    real_open = av.open

    class Spy:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def close(self):
            closed.append(self)
            self._c.close()

    def spy(*args, **kwargs):
        container = Spy(real_open(*args, **kwargs))
        opened.append(container)
        return container

    monkeypatch.setattr(av, "open", spy)
    stream = ep.cameras["front"].open_frames()
    assert opened == []  # nothing is opened or decoded before the writer asks for a frame
    first = next(stream)
    assert len(opened) == 1 and first.shape == (32, 48, 3) and first.dtype == np.uint8
    second = next(stream)
    assert abs(int(second.mean()) - level(1, 1)) <= 2
    stream.close()  # a consumer stopping early still closes the file
    assert closed == opened
    rest = list(ep.cameras["front"].open_frames())
    assert len(rest) == 26 and len(closed) == 2
