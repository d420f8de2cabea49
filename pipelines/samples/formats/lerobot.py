"""Writing LeRobot datasets (v2.0, v2.1, v3.0) for the sample generators of LeRobot-format sources and tests.

The counterpart of the reader ``converters/formats/lerobot.py``: datasets are written in the
layouts it reads, with the libraries LeRobot uses (pyarrow parquet, PyAV ``yuv420p`` MP4, AV1
via libsvtav1 when the PyAV build has it).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from converters.formats.lerobot import DEFAULT_CHUNKS_SIZE, DEFAULT_PATHS, LAYOUTS, V3_EPISODES_DIR
from pipelines.samples.toolkit import Mp4Writer, encode_png

#: LeRobot's encoder settings (lerobot.datasets.video_utils.encode_video_frames): g=2, yuv420p
AV1_CRF, H264_CRF, GOP = 30, 23, 2


def av1_encoder() -> str | None:
    """The AV1 encoder this PyAV build has (libsvtav1 is LeRobot's default), or None."""
    for name in ("libsvtav1", "libaom-av1"):
        if name in av.codecs_available:
            with contextlib.suppress(Exception):
                av.codec.Codec(name, "w")
                return name
    return None


def av1_decoder() -> str | None:
    for name in ("libdav1d", "libaom-av1", "av1"):
        if name in av.codecs_available:
            with contextlib.suppress(Exception):
                av.codec.Codec(name, "r")
                return name
    return None


def video_codec(preferred: str) -> tuple[str, str]:
    """``(encoder, info codec name)`` for ``"av1"`` (falls back to H.264 without AV1) or ``"h264"``."""
    if preferred == "av1":
        enc = av1_encoder()
        if enc is not None and av1_decoder() is not None:
            return enc, "av1"
    return "libx264", "h264"


class VideoWriter(Mp4Writer):
    """An MP4 with LeRobot's encoder settings (``yuv420p``, GOP 2, its CRFs), frame slot ``i`` at ``i / fps``.

    ``deterministic`` makes the bytes a function of the frames alone: the encoders run on
    one thread (x264 and SVT-AV1 otherwise split work by core count) and x264's macroblock
    tree rate control is off (with it this x264 build produced different bitstreams for the
    same frames from run to run). Without it (benchmark input) SVT-AV1 runs its fastest
    preset.
    """

    def __init__(self, path: Path, fps: float, height: int, width: int, codec: str, deterministic: bool = True):
        options = {"g": str(GOP), "crf": str(AV1_CRF if "av1" in codec else H264_CRF)}
        if deterministic:
            if codec == "libsvtav1":
                options["svtav1-params"] = "lp=1"
            elif codec == "libx264":
                options["threads"] = "1"
                options["x264-params"] = "no-mbtree=1"
        elif codec == "libsvtav1":
            options["preset"] = "12"  # synthetic benchmark input: 4x faster to write, same decoder path
        super().__init__(path, codec, fps, height, width, options=options)


@dataclass
class SampleCamera:
    """A camera feature of a sample dataset: ``video`` (MP4) or ``image`` (PNG in parquet)."""

    key: str
    height: int
    width: int
    codec: str = "h264"  # av1 | h264 | image


@dataclass
class SampleEpisode:
    """One episode to write. ``columns`` are the parquet feature columns (``[T]`` or ``[T, D]``).

    ``frames(camera_key)`` yields that camera's RGB frames lazily. Defects a writer can
    plant: ``drop_video_frames`` (camera key -> frames missing at the end of its video),
    ``missing_videos`` (camera keys whose file is not written), ``corrupt_parquet``
    (v2 file truncated after writing).
    """

    index: int
    columns: dict[str, np.ndarray]
    task_index: int
    tasks: list[str]
    frames: Callable[[str], Iterator[np.ndarray]]
    timestamp: np.ndarray | None = None
    drop_video_frames: dict[str, int] = field(default_factory=dict)
    missing_videos: set[str] = field(default_factory=set)
    corrupt_parquet: bool = False

    @property
    def length(self) -> int:
        return len(next(iter(self.columns.values())))


def feature_entry(dtype: str, shape: Sequence[int], names: Any = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"dtype": dtype, "shape": list(shape), "names": names}
    entry.update(extra)
    return entry


def video_feature(cam: SampleCamera, fps: float, codec_name: str, version: str) -> dict[str, Any]:
    h, w = cam.height + cam.height % 2, cam.width + cam.width % 2  # yuv420p: encoded at even sizes
    info = {
        "video.height": h, "video.width": w, "video.codec": codec_name,
        "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps, "video.channels": 3,
        "has_audio": False,
    }
    key = "video_info" if version == "v2.0" else "info"
    return {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"], key: info}


def _arrow_column(values: np.ndarray, fixed: bool, dtype: str) -> pa.Array:
    values = np.asarray(values)
    arrow_type = {"float32": pa.float32(), "float64": pa.float64(), "int32": pa.int32(), "int64": pa.int64(),
                  "bool": pa.bool_()}[dtype]
    if values.ndim == 1:
        return pa.array(values.astype(dtype), type=arrow_type)
    flat = pa.array(values.astype(dtype).reshape(-1), type=arrow_type)
    width = values.shape[1]
    if fixed:
        return pa.FixedSizeListArray.from_arrays(flat, width)
    offsets = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


class DatasetWriter:
    """Writes one LeRobot dataset (v2.0/v2.1 or v3.0) the way LeRobot lays it out.

    ``features`` are the non-camera features (``info.json`` entries, in column order);
    ``column_dtypes`` their parquet dtypes (e.g. float64 timestamps where a release wrote
    them). v3 files roll over every ``episodes_per_file`` episodes (LeRobot rolls over by
    size; the sample sets are too small for that); ``row_group_size`` rows per parquet row
    group (``None``: one per episode, as recent LeRobot writes them).
    """

    def __init__(
        self,
        root: Path,
        *,
        version: str,
        fps: float,
        robot_type: str | None,
        features: dict[str, dict[str, Any]],
        cameras: Sequence[SampleCamera],
        tasks: Mapping[int, str],
        chunks_size: int = DEFAULT_CHUNKS_SIZE,
        info_overrides: Mapping[str, Any] | None = None,
        list_columns: str = "fixed",
        timestamp_dtype: str = "float32",
        episodes_per_file: int = 50,
        row_group_size: int | None = None,
        deterministic: bool = True,
    ):
        self.root, self.version, self.fps = Path(root), version, fps
        self.layout = LAYOUTS[version]
        self.robot_type, self.tasks = robot_type, dict(tasks)
        self.cameras = list(cameras)
        self.codecs = {c.key: video_codec(c.codec) for c in self.cameras if c.codec != "image"}
        self.features = dict(features)
        self.chunks_size = chunks_size
        self.info_overrides = dict(info_overrides or {})
        self.fixed = list_columns == "fixed"
        self.timestamp_dtype = timestamp_dtype
        self.episodes_per_file = episodes_per_file
        self.row_group_size = row_group_size
        self.deterministic = deterministic
        self.episode_rows: list[dict[str, Any]] = []
        self.stats_rows: list[dict[str, Any]] = []
        self.total_frames = 0
        # v3 state: the open data/video files
        self._file = (0, 0)
        self._file_tables: list[pa.Table] = []
        self._file_episodes = 0
        self._videos: dict[str, VideoWriter] = {}

    # -- info ------------------------------------------------------------------------

    def _all_features(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cam in self.cameras:
            if cam.codec == "image":
                out[cam.key] = feature_entry("image", [cam.height, cam.width, 3], ["height", "width", "channels"])
            else:
                out[cam.key] = video_feature(cam, self.fps, self.codecs[cam.key][1], self.version)
        out.update(self.features)
        for key, dtype in (("timestamp", self.timestamp_dtype), ("frame_index", "int64"),
                           ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
            out.setdefault(key, feature_entry(dtype, [1], None))
        return out

    def _info(self) -> dict[str, Any]:
        n = len(self.episode_rows)
        has_video = any(c.codec != "image" for c in self.cameras)
        data_path, video_path = DEFAULT_PATHS[self.layout]
        info: dict[str, Any] = {"codebase_version": self.version, "robot_type": self.robot_type,
                                "total_episodes": n, "total_frames": self.total_frames,
                                "total_tasks": len(self.tasks)}
        if self.layout == "v2":
            info["total_videos"] = n * sum(1 for c in self.cameras if c.codec != "image")
            info["total_chunks"] = (max((r["episode_index"] for r in self.episode_rows), default=0)
                                    // self.chunks_size) + 1
            info["chunks_size"] = self.chunks_size
        else:
            info["chunks_size"] = self.chunks_size
            info["data_files_size_in_mb"] = 100
            info["video_files_size_in_mb"] = 200
        info["fps"] = int(self.fps) if float(self.fps).is_integer() else self.fps
        info["splits"] = {"train": f"0:{n}"}
        info["data_path"] = data_path
        info["video_path"] = video_path if has_video else None
        info["features"] = self._all_features()
        for key, value in self.info_overrides.items():
            if value is _DELETE:
                info.pop(key, None)
            else:
                info[key] = value
        return info

    # -- episodes ----------------------------------------------------------------------

    def _table(self, ep: SampleEpisode) -> pa.Table:
        n = ep.length
        cols: dict[str, pa.Array] = {}
        for key, values in ep.columns.items():
            dtype = self.features.get(key, {}).get("dtype", str(np.asarray(values).dtype))
            cols[key] = _arrow_column(values, self.fixed, dtype)
        for cam in self.cameras:
            if cam.codec == "image":
                blobs = [encode_png(f) for f in ep.frames(cam.key)]
                cols[cam.key] = pa.StructArray.from_arrays(
                    [pa.array(blobs, type=pa.binary()), pa.array([None] * n, type=pa.string())], ["bytes", "path"]
                )
        ts = ep.timestamp if ep.timestamp is not None else np.arange(n) / self.fps
        cols["timestamp"] = pa.array(np.asarray(ts, dtype=self.timestamp_dtype))
        cols["frame_index"] = pa.array(np.arange(n, dtype=np.int64))
        cols["episode_index"] = pa.array(np.full(n, ep.index, dtype=np.int64))
        cols["index"] = pa.array(np.arange(self.total_frames, self.total_frames + n, dtype=np.int64))
        cols["task_index"] = pa.array(np.full(n, ep.task_index, dtype=np.int64))
        return pa.table(cols)

    def add(self, ep: SampleEpisode) -> None:
        table = self._table(ep)
        row: dict[str, Any] = {"episode_index": ep.index, "tasks": list(ep.tasks), "length": ep.length}
        if self.layout == "v2":
            self._add_v2(ep, table)
        else:
            row.update(self._add_v3(ep, table))
        self.episode_rows.append(row)
        self.stats_rows.append({"episode_index": ep.index, "stats": _episode_stats(ep.columns)})
        self.total_frames += ep.length

    def _add_v2(self, ep: SampleEpisode, table: pa.Table) -> None:
        chunk = ep.index // self.chunks_size
        data_path, video_path = DEFAULT_PATHS["v2"]
        path = self.root / data_path.format(episode_chunk=chunk, episode_index=ep.index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=self.row_group_size)
        if ep.corrupt_parquet:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        for cam in self.cameras:
            if cam.codec == "image" or cam.key in ep.missing_videos:
                continue
            target = self.root / video_path.format(episode_chunk=chunk, episode_index=ep.index, video_key=cam.key)
            self._encode(target, cam, ep.frames(cam.key), ep.length - ep.drop_video_frames.get(cam.key, 0))

    def _encode(self, path: Path, cam: SampleCamera, frames: Iterator[np.ndarray], count: int) -> None:
        writer = VideoWriter(path, self.fps, cam.height, cam.width, self.codecs[cam.key][0], self.deterministic)
        try:
            for i, frame in enumerate(frames):
                if i >= count:
                    break
                writer.write(frame)
        finally:
            writer.close()

    def _add_v3(self, ep: SampleEpisode, table: pa.Table) -> dict[str, Any]:
        if self._file_episodes >= self.episodes_per_file:
            self._roll_over()
        chunk, file = self._file
        data_path, video_path = DEFAULT_PATHS["v3"]
        row: dict[str, Any] = {"data/chunk_index": chunk, "data/file_index": file,
                               "dataset_from_index": self.total_frames,
                               "dataset_to_index": self.total_frames + ep.length}
        self._file_tables.append(table)
        self._file_episodes += 1
        for cam in self.cameras:
            if cam.codec == "image":
                continue
            if cam.key not in self._videos:
                target = self.root / video_path.format(video_key=cam.key, chunk_index=chunk, file_index=file)
                self._videos[cam.key] = VideoWriter(target, self.fps, cam.height, cam.width,
                                                    self.codecs[cam.key][0], self.deterministic)
            writer = self._videos[cam.key]
            start = writer.count / self.fps
            keep = ep.length - ep.drop_video_frames.get(cam.key, 0)
            for i, frame in enumerate(ep.frames(cam.key)):
                if i >= keep:
                    break
                writer.write(frame)
            # the metadata window is the episode's nominal duration, whatever the video holds
            pad = ep.drop_video_frames.get(cam.key, 0)
            writer.count += pad  # keep later episodes at their nominal times (a gap in the file)
            row[f"videos/{cam.key}/chunk_index"] = chunk
            row[f"videos/{cam.key}/file_index"] = file
            row[f"videos/{cam.key}/from_timestamp"] = start
            row[f"videos/{cam.key}/to_timestamp"] = start + ep.length / self.fps
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        return row

    def _roll_over(self) -> None:
        self._flush_v3()
        chunk, file = self._file
        self._file = (chunk, file + 1) if file + 1 < self.chunks_size else (chunk + 1, 0)

    def _flush_v3(self) -> None:
        if self._file_tables:
            chunk, file = self._file
            path = self.root / DEFAULT_PATHS["v3"][0].format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.concat_tables(self._file_tables)
            if self.row_group_size is None:
                with pq.ParquetWriter(path, table.schema) as writer:
                    for t in self._file_tables:  # one row group per episode
                        writer.write_table(t)
            else:
                pq.write_table(table, path, row_group_size=self.row_group_size)
        for writer in self._videos.values():
            writer.close()
        self._file_tables, self._file_episodes, self._videos = [], 0, {}

    # -- meta --------------------------------------------------------------------------

    def close(self) -> None:
        if self.layout == "v3":
            self._flush_v3()
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        (meta / "info.json").write_text(json.dumps(self._info(), indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
        if self.layout == "v2":
            _write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for i, t in sorted(self.tasks.items())])
            _write_jsonl(meta / "episodes.jsonl", self.episode_rows)
            if self.version == "v2.1":
                _write_jsonl(meta / "episodes_stats.jsonl", self.stats_rows)
            return
        # v3: tasks.parquet as pandas writes a DataFrame indexed by task text
        items = sorted(self.tasks.items())
        tasks = pa.table({"task_index": pa.array([i for i, _ in items], pa.int64()),
                          "task": pa.array([t for _, t in items], pa.string())})
        pandas_meta = {"index_columns": ["task"], "column_indexes": [], "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None}], "creator": {"library": "pyarrow", "version": pa.__version__}}
        tasks = tasks.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
        pq.write_table(tasks, meta / "tasks.parquet")
        rows = []
        for row, stats in zip(self.episode_rows, self.stats_rows):
            flat = dict(row)
            for feat, values in stats["stats"].items():
                for stat, v in values.items():
                    flat[f"stats/{feat}/{stat}"] = v
            rows.append(flat)
        table = pa.Table.from_pylist(rows)
        path = self.root / V3_EPISODES_DIR / "chunk-000" / "file-000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


_DELETE = object()  # info_overrides value: drop the key from info.json


def delete_key() -> object:
    """Sentinel for ``info_overrides``: leave this key out of info.json."""
    return _DELETE


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _episode_stats(columns: Mapping[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    out = {}
    for key, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        v = v.reshape(len(v), -1)
        with np.errstate(all="ignore"):
            out[key] = {"min": np.nanmin(v, 0).round(6).tolist(), "max": np.nanmax(v, 0).round(6).tolist(),
                        "mean": np.nanmean(v, 0).round(6).tolist(), "std": np.nanstd(v, 0).round(6).tolist(),
                        "count": [len(v)]}
    return out
