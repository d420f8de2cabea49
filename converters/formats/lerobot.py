"""Reader for LeRobot datasets, shared by the converters of LeRobot-format releases.

A library, not a source: ``converters/robocoin.py`` and ``converters/gm100.py`` subclass
:class:`LeRobotConverter` and only declare their tables (feature keys, embodiment ids,
language rules). Anyone who brings another LeRobot dataset does the same. The layouts it
reads, what it checks and every recorded flag are specified in ``docs/sources/lerobot.md``.

Layouts (auto-detected from ``meta/info.json`` ``codebase_version``)::

    v2.0 / v2.1   meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl
                  data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet      one episode
                  videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
    v3.0          meta/info.json, meta/tasks.parquet, meta/episodes/chunk-XXX/file-XXX.parquet
                  data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet               many episodes
                  videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4     many episodes

The work unit is one episode, ``<dataset path relative to the root>/episode_<index:06d>``.
Reading one episode reads only its own parquet rows (v3: the row groups whose
``episode_index`` statistics contain it) and streams each camera one decoded frame at a
time with PyAV (v3: seek to the episode's ``from_timestamp`` and decode only its window).

``pipelines/samples/formats/lerobot.py`` writes datasets in the same layouts with the
libraries LeRobot uses, for the sample generators and the tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from converters.base import Converter, option, relative_inside
from converters.formats.video import count_frames, decode_frames
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import (
    ActionKind,
    CameraStream,
    Episode,
    TimestampOrigin,
    decode_image_bytes,
)

INFO_PATH = "meta/info.json"
V2_EPISODES_PATH = "meta/episodes.jsonl"
V2_TASKS_PATH = "meta/tasks.jsonl"
V2_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
V3_TASKS_PATH = "meta/tasks.parquet"
V3_EPISODES_DIR = "meta/episodes"

#: codebase_version -> layout family
LAYOUTS = {"v2.0": "v2", "v2.1": "v2", "v3.0": "v3"}
DEFAULT_PATHS = {
    "v2": (
        "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    ),
    "v3": (
        "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    ),
}
DEFAULT_CHUNKS_SIZE = 1000

#: per-frame columns every LeRobot dataset has; never copied to extras
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")

#: columns of meta/episodes/*.parquet the reader needs (v3); stats/* columns are never read
V3_EPISODE_COLUMNS = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index",
                      "data/chunk_index", "data/file_index")
V3_VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")

EPISODE_REF_RE = re.compile(r"^(?:(?P<dataset>.+)/)?episode_(?P<index>\d+)$")
NAME_POLICIES = ("pad", "generic", "strict")

_PARQUET_ERRORS = (pa.ArrowException, OSError)


# --------------------------------------------------------------------------------------
# Options and declarative per-source tables
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderOptions:
    """Reader knobs; converters take them from their ``options`` (params.yaml), whose dataclass
    extends this one (:class:`LeRobotOptions`).

    ``name_policy``: what to do when a feature's ``names`` list is shorter than the data
    (see docs/sources/lerobot.md §4): ``pad`` keeps the given names for the leading
    dimensions and names the rest ``<stub>_dim_<i>``, ``generic`` names every dimension
    ``<stub>_dim_<i>``, ``strict`` quarantines with ``name_mismatch``. More names than
    dimensions is always ``name_mismatch``. Every repair is recorded in the metadata.
    ``video_extra_frames``: a video may hold up to this many frames more than the episode
    has parquet rows (the extra trailing frames are dropped and recorded); fewer frames
    or more than this is ``frame_count_mismatch``.
    ``video_time_tolerance_s``: how far a decoded frame's time may be from
    ``from_timestamp + timestamp`` of its row (default: half a frame period).
    ``check_frame_times``: compare every decoded frame's time with its row's timestamp.
    """

    name_policy: str = option("pad", choices=NAME_POLICIES)
    video_extra_frames: int = option(0, ge=0)
    video_time_tolerance_s: float | None = option(None, gt=0)
    check_frame_times: bool = True


@dataclass(frozen=True)
class LeRobotOptions(ReaderOptions):
    """The options of a plain :class:`LeRobotConverter`: the reader's, and ``embodiment`` (one id for
    every dataset under the root; None or empty: the slug of each dataset's ``robot_type``)."""

    embodiment: str | None = None


@dataclass(frozen=True)
class FeatureMap:
    """Which LeRobot features become what in the unified episode (one per source)."""

    #: first key present is the state / action (aliases cover early or custom layouts)
    state_keys: tuple[str, ...] = ("observation.state",)
    action_keys: tuple[str, ...] = ("action",)
    #: camera name = video/image feature key minus the first matching prefix
    camera_prefixes: tuple[str, ...] = ("observation.images.", "observation.image.", "observation.")
    action_kind: ActionKind = ActionKind.JOINT_POSITION
    #: dimension name -> canonical name, applied to state, action and extras names
    renames: Mapping[str, str] = field(default_factory=dict)
    #: numeric feature keys not copied to ``Episode.extras``
    exclude_extras: tuple[str, ...] = ()

    def camera_name(self, key: str) -> str:
        for prefix in self.camera_prefixes:
            if key.startswith(prefix) and len(key) > len(prefix):
                return key[len(prefix):].replace(".", "_").replace("/", "_")
        return key.replace(".", "_").replace("/", "_")


# --------------------------------------------------------------------------------------
# Refs
# --------------------------------------------------------------------------------------


def episode_ref(dataset: str, index: int) -> str:
    """``<dataset>/episode_000012`` (``episode_000012`` for a dataset at the root)."""
    name = f"episode_{index:06d}"
    return name if dataset in ("", ".") else f"{dataset}/{name}"


def parse_episode_ref(ref: str) -> tuple[str, int] | None:
    """``(dataset, index)`` of an episode ref, ``None`` for a dataset-level unit."""
    m = EPISODE_REF_RE.match(ref)
    if m is None:
        return None
    return (m.group("dataset") or "", int(m.group("index")))


def find_datasets(root: Path) -> list[str]:
    """Every folder under ``root`` holding ``meta/info.json``, as sorted root-relative POSIX paths.

    A dataset's own subfolders are not searched (a dataset never nests another); folders
    whose name starts with ``.`` are skipped. The root itself is ``""``.
    """
    found: list[str] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if (here / INFO_PATH).is_file():
            rel = here.relative_to(root).as_posix()
            found.append("" if rel == "." else rel)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """One entry of ``info.json`` ``features``."""

    key: str
    dtype: str
    shape: tuple[int, ...] | None
    names: tuple[str, ...] | None
    info: Mapping[str, Any]

    @property
    def is_video(self) -> bool:
        return self.dtype == "video"

    @property
    def is_image(self) -> bool:
        return self.dtype == "image"

    @property
    def is_depth(self) -> bool:
        return bool(self.info.get("video.is_depth_map", False))

    @classmethod
    def parse(cls, key: str, raw: Any, where: str) -> FeatureSpec:
        if not isinstance(raw, Mapping):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: features['{key}'] must be an object, got {raw!r}")
        dtype = raw.get("dtype")
        if not isinstance(dtype, str):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where}: features['{key}'] has no dtype")
        shape = raw.get("shape")
        if shape is not None:
            if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                             for s in shape):
                raise EpisodeError(Reason.INVALID_METADATA, f"{where}: features['{key}'].shape is {shape!r}")
            shape = tuple(shape)
        # "names" is a list, a {"motors"/"axes": [...]} dict or null; early RoboCOIN files say "name"
        names = _flatten_names(raw["names"] if "names" in raw else raw.get("name"))
        info = raw.get("info") or raw.get("video_info") or {}  # v2.0 said "video_info"
        return cls(key, dtype, shape, names, info if isinstance(info, Mapping) else {})


def _flatten_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        out: list[str] = []
        for part in value.values():
            out.extend(_flatten_names(part) or ())
        return tuple(out)
    if isinstance(value, (list, tuple)):
        out = []
        for part in value:
            if isinstance(part, (list, tuple, Mapping)):
                out.extend(_flatten_names(part) or ())
            else:
                out.append(str(part))
        return tuple(out)
    return (str(value),)


def resolve_names(
    declared: Sequence[str] | None, width: int, stub: str, policy: str, where: str, key: str,
    repairs: dict[str, Any],
) -> list[str]:
    """Dimension names for a ``[T, width]`` feature under the reader's name rule (docs §4)."""
    generic = [f"{stub}_dim_{i}" for i in range(width)]
    if declared is None:
        repairs[key] = {"declared": None, "width": width, "rule": "generic"}
        return generic
    names = list(declared)
    if len(names) == width:
        return names
    if len(names) > width:
        raise EpisodeError(
            Reason.NAME_MISMATCH,
            f"{where}: feature '{key}' lists {len(names)} names but the data has {width} dimensions",
        )
    if policy == "strict":
        raise EpisodeError(
            Reason.NAME_MISMATCH,
            f"{where}: feature '{key}' lists {len(names)} names for {width} dimensions (name_policy strict)",
        )
    repairs[key] = {"declared": len(names), "width": width, "rule": policy}
    if policy == "generic":
        return generic
    return names + generic[len(names):]


# --------------------------------------------------------------------------------------
# Dataset metadata
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSpan:
    """Where one camera's frames of one episode are: a file and (v3) a time window."""

    path: str  # relative to the dataset root
    start: float  # seconds; 0 for a v2 per-episode file
    stop: float | None  # end of the window (exclusive); None = end of file (v2)
    glob: str | None = None  # v2: the same file in any chunk folder (see LeRobotDataset._locate)


@dataclass(frozen=True)
class EpisodeMeta:
    """One episode's row of ``meta/episodes.jsonl`` (v2) or ``meta/episodes/*.parquet`` (v3)."""

    index: int
    length: int | None
    tasks: tuple[str, ...]
    data_path: str
    videos: Mapping[str, VideoSpan]
    row_range: tuple[int, int] | None = None  # v3 dataset_from_index, dataset_to_index
    next_data_path: str | None = None  # v3: the following data file, for episodes split across files
    data_glob: str | None = None  # v2: the same file in any chunk folder


class LeRobotDataset:
    """One LeRobot dataset folder: validated ``info.json``, tasks and the episode list.

    Constructing it reads only ``meta/``; :meth:`read` opens one episode's data. Errors are
    :class:`EpisodeError`: a dataset-level error applies to every episode of the dataset.
    """

    def __init__(self, root: Path, rel: str = "", options: ReaderOptions | None = None):
        self.base = Path(root)
        self.rel = rel
        self.path = self.base / rel if rel else self.base
        self.where = rel or "."
        self.options = options or ReaderOptions()
        self.info = self._load_info()
        version = self.info.get("codebase_version")
        if version not in LAYOUTS:
            raise EpisodeError(
                Reason.UNSUPPORTED_LAYOUT,
                f"{self.where}: codebase_version {version!r} is not one of {sorted(LAYOUTS)}",
            )
        self.version: str = version
        self.layout = LAYOUTS[version]
        fps = self.info.get("fps")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise EpisodeError(Reason.INVALID_METADATA, f"{self.where}: info.json fps must be a number > 0, got {fps!r}")
        self.fps = float(fps)
        robot_type = self.info.get("robot_type")
        self.robot_type: str | None = robot_type if isinstance(robot_type, str) and robot_type.strip() else None
        raw_features = self.info.get("features")
        if not isinstance(raw_features, Mapping) or not raw_features:
            raise EpisodeError(Reason.INVALID_METADATA, f"{self.where}: info.json has no features")
        self.features = {k: FeatureSpec.parse(k, v, f"{self.where}: info.json") for k, v in raw_features.items()}
        chunks = self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE)
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks <= 0:
            raise EpisodeError(Reason.INVALID_METADATA, f"{self.where}: chunks_size must be an int > 0, got {chunks!r}")
        self.chunks_size = chunks
        default_data, default_video = DEFAULT_PATHS[self.layout]
        self.data_path = self.info.get("data_path") or default_data
        self.video_path = self.info.get("video_path")
        if self.video_path is None and any(f.is_video for f in self.features.values()):
            if "video_path" in self.info:
                raise EpisodeError(
                    Reason.UNSUPPORTED_LAYOUT,
                    f"{self.where}: features declare videos but info.json video_path is null",
                )
            self.video_path = default_video
        self._tasks: dict[int, str] | None = None
        self._episodes: dict[int, EpisodeMeta] | None = None

    # -- meta ------------------------------------------------------------------------

    def _load_info(self) -> dict[str, Any]:
        path = self.path / INFO_PATH
        if not path.is_file():
            raise EpisodeError(Reason.MISSING_METADATA, f"{self.where}: no {INFO_PATH}")
        data = _load_json(path, f"{self.where}: {INFO_PATH}")
        if not isinstance(data, dict):
            raise EpisodeError(Reason.INVALID_METADATA, f"{self.where}: {INFO_PATH} must hold a JSON object")
        return data

    @property
    def tasks(self) -> dict[int, str]:
        """``task_index -> task text`` from tasks.jsonl (v2) or tasks.parquet (v3); empty if absent."""
        if self._tasks is None:
            self._tasks = self._load_tasks_v2() if self.layout == "v2" else self._load_tasks_v3()
        return self._tasks

    def _load_tasks_v2(self) -> dict[int, str]:
        path = self.path / V2_TASKS_PATH
        if not path.is_file():
            return {}
        out: dict[int, str] = {}
        for row in _load_jsonl(path, f"{self.where}: {V2_TASKS_PATH}"):
            index, text = row.get("task_index"), row.get("task")
            if isinstance(index, int) and isinstance(text, str):
                out[index] = text
        return out

    def _load_tasks_v3(self) -> dict[int, str]:
        path = self.path / V3_TASKS_PATH
        if not path.is_file():
            return {}
        table = _read_parquet(path, None, f"{self.where}: {V3_TASKS_PATH}")
        # pandas (LeRobot's writer) stores the DataFrame index, the task text, as a column
        text_col = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
        if text_col is None or "task_index" not in table.column_names:
            raise EpisodeError(
                Reason.INVALID_METADATA,
                f"{self.where}: {V3_TASKS_PATH} needs columns task and task_index, has {table.column_names}",
            )
        texts = table.column(text_col).to_pylist()
        indices = table.column("task_index").to_pylist()
        return {int(i): str(t) for i, t in zip(indices, texts) if i is not None and t is not None}

    @property
    def episodes(self) -> dict[int, EpisodeMeta]:
        if self._episodes is None:
            self._episodes = self._load_episodes_v2() if self.layout == "v2" else self._load_episodes_v3()
        return self._episodes

    def episode_indices(self) -> list[int]:
        return sorted(self.episodes)

    def _load_episodes_v2(self) -> dict[int, EpisodeMeta]:
        path = self.path / V2_EPISODES_PATH
        if not path.is_file():
            raise EpisodeError(Reason.MISSING_METADATA, f"{self.where}: no {V2_EPISODES_PATH}")
        out: dict[int, EpisodeMeta] = {}
        video_keys = [k for k, f in self.features.items() if f.is_video]
        for row in _load_jsonl(path, f"{self.where}: {V2_EPISODES_PATH}"):
            index = row.get("episode_index")
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise EpisodeError(Reason.INVALID_METADATA, f"{self.where}: {V2_EPISODES_PATH} row {row!r}")
            length = row.get("length")
            tasks = row.get("tasks") or []
            chunk = index // self.chunks_size
            data = self._format(self.data_path, episode_chunk=chunk, episode_index=index)
            videos = {
                key: VideoSpan(
                    self._format(self.video_path, episode_chunk=chunk, episode_index=index, video_key=key),
                    0.0, None, self._chunk_glob(self.video_path, episode_index=index, video_key=key),
                )
                for key in video_keys
            }
            out[index] = EpisodeMeta(
                index=index,
                length=length if isinstance(length, int) and not isinstance(length, bool) else None,
                tasks=tuple(t for t in tasks if isinstance(t, str)) if isinstance(tasks, list) else (),
                data_path=data,
                videos=videos,
                data_glob=self._chunk_glob(self.data_path, episode_index=index),
            )
        return out

    def _load_episodes_v3(self) -> dict[int, EpisodeMeta]:
        folder = self.path / V3_EPISODES_DIR
        files = sorted(folder.glob("chunk-*/file-*.parquet")) if folder.is_dir() else []
        if not files:
            raise EpisodeError(Reason.MISSING_METADATA, f"{self.where}: no {V3_EPISODES_DIR}/chunk-*/file-*.parquet")
        video_keys = [k for k, f in self.features.items() if f.is_video]
        wanted = list(V3_EPISODE_COLUMNS) + [f"videos/{k}/{c}" for k in video_keys for c in V3_VIDEO_COLUMNS]
        out: dict[int, EpisodeMeta] = {}
        for path in files:
            where = f"{self.where}: {path.relative_to(self.path).as_posix()}"
            schema = _read_schema(path, where)
            cols = [c for c in wanted if c in schema.names]
            for required in ("episode_index", "data/chunk_index", "data/file_index"):
                if required not in cols:
                    raise EpisodeError(Reason.MISSING_KEY, f"{where}: no column '{required}'")
            for row in _read_parquet(path, cols, where).to_pylist():
                index = int(row["episode_index"])
                chunk, file = int(row["data/chunk_index"]), int(row["data/file_index"])
                videos: dict[str, VideoSpan] = {}
                for key in video_keys:
                    names = [f"videos/{key}/{c}" for c in V3_VIDEO_COLUMNS]
                    if any(row.get(n) is None for n in names):
                        continue  # reading this episode reports the camera as missing
                    vchunk, vfile, start, stop = (row[n] for n in names)
                    videos[key] = VideoSpan(
                        self._format(self.video_path, video_key=key, chunk_index=int(vchunk), file_index=int(vfile)),
                        float(start), float(stop),
                    )
                frm, to = row.get("dataset_from_index"), row.get("dataset_to_index")
                nchunk, nfile = (chunk, file + 1) if file + 1 < self.chunks_size else (chunk + 1, 0)
                out[index] = EpisodeMeta(
                    index=index,
                    length=int(row["length"]) if row.get("length") is not None else None,
                    tasks=tuple(str(t) for t in (row.get("tasks") or []) if t is not None),
                    data_path=self._format(self.data_path, chunk_index=chunk, file_index=file),
                    videos=videos,
                    row_range=(int(frm), int(to)) if frm is not None and to is not None else None,
                    next_data_path=self._format(self.data_path, chunk_index=nchunk, file_index=nfile),
                )
        return out

    def _format(self, template: str, **values: Any) -> str:
        """A file path from an info.json template; it must stay inside the dataset's folder."""
        try:
            filled = template.format(**values)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise EpisodeError(
                Reason.INVALID_METADATA, f"{self.where}: path template {template!r} cannot be filled: {exc}"
            ) from exc
        return relative_inside(filled, f"{self.where}: path template {template!r}")

    def _chunk_glob(self, template: str, **values: Any) -> str | None:
        if "{episode_chunk" not in template:
            return None
        return self._format(re.sub(r"\{episode_chunk[^}]*\}", "*", template), **values)

    def _locate(self, rel: str, pattern: str | None, flags: dict[str, Any]) -> Path | None:
        """The file at ``rel``; if absent (v2), the same file name in another chunk folder.

        ``chunks_size`` in real info.json files does not always match how the files were
        chunked; a unique match elsewhere is used and recorded in ``flags['path_fallback']``.
        """
        path = self.path / rel
        if path.is_file():
            return path
        if pattern is None:
            return None
        matches = sorted(p for p in self.path.glob(pattern) if p.is_file())
        if len(matches) == 1:
            found = matches[0].relative_to(self.path).as_posix()
            flags.setdefault("path_fallback", {})[rel] = found
            return matches[0]
        return None

    def split_of(self, index: int) -> str | None:
        """The first split in ``info.json`` ``splits`` that lists ``index`` (None: not covered)."""
        splits = self.info.get("splits")
        if not isinstance(splits, Mapping):
            return None
        for name, spec in splits.items():
            items = spec if isinstance(spec, list) else [spec]
            for item in items:
                if isinstance(item, int) and not isinstance(item, bool) and item == index:
                    return str(name)
                if isinstance(item, str) and ":" in item:
                    lo, _, hi = item.partition(":")
                    with contextlib.suppress(ValueError):
                        if int(lo) <= index < int(hi):
                            return str(name)
        return None

    def metadata_flags(self) -> dict[str, Any]:
        """Dataset-level disagreements of the metadata with itself, recorded on every episode."""
        flags: dict[str, Any] = {}
        total = self.info.get("total_episodes")
        with contextlib.suppress(EpisodeError):
            count = len(self.episodes)
            if isinstance(total, int) and total != count:
                flags["total_episodes_disagrees"] = {"info": total, "episodes_meta": count}
        known = {"codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "total_videos",
                 "total_chunks", "chunks_size", "fps", "splits", "data_path", "video_path", "features",
                 "data_files_size_in_mb", "video_files_size_in_mb", "tools"}
        extra = {k: self.info[k] for k in sorted(set(self.info) - known)}
        if extra:
            flags["info_extra_keys"] = extra
        return flags

    # -- one episode -----------------------------------------------------------------

    def read(self, index: int, ref: str, feature_map: FeatureMap) -> RawEpisode:
        """Read episode ``index``'s parquet rows and prepare (not decode) its camera streams."""
        meta = self.episodes.get(index)
        if meta is None:
            raise EpisodeError(Reason.MISSING_METADATA, f"{ref}: episode {index} is not in the episodes metadata")
        flags: dict[str, Any] = {}
        table, row_groups, file_columns = self._read_rows(meta, ref, flags)
        n = table.num_rows
        if n == 0 and self.layout == "v3":  # the episode has no frames: empty, whatever the metadata promised
            raise EpisodeError(
                Reason.EMPTY_EPISODE,
                f"{ref}: {meta.data_path} holds no rows of episode {index} although the episodes metadata points there",
            )
        if n == 0:
            raise EpisodeError(Reason.EMPTY_EPISODE, f"{ref}: no parquet rows for episode {index}")
        if meta.length is not None and meta.length != n:
            flags["length_disagrees"] = {"episodes_meta": meta.length, "parquet_rows": n}

        columns: dict[str, np.ndarray] = {}
        skipped: dict[str, str] = {}
        for name in table.column_names:
            spec = self.features.get(name)
            if spec is not None and (spec.is_video or spec.is_image):
                continue
            values = _column_to_array(table.column(name), f"{ref}: column '{name}'")
            if values is None:
                skipped[name] = f"non-numeric column ({table.column(name).type})"
                continue
            columns[name] = values
            if spec is None and name not in BOOKKEEPING:
                flags.setdefault("undeclared_columns", []).append(name)
            elif spec is not None:
                _check_declared(spec, values, table.column(name).type, flags)
        for key, spec in self.features.items():
            if not (spec.is_video or spec.is_image) and key not in table.column_names and key not in BOOKKEEPING:
                flags.setdefault("declared_columns_missing", []).append(key)

        if "timestamp" in columns:
            timestamp = np.asarray(columns["timestamp"], dtype=np.float64).reshape(n, -1)[:, 0]
            origin = TimestampOrigin.RECORDED
            ts_type = str(table.column("timestamp").type)
            flags["timestamp_dtype"] = _ARROW_DTYPE_NAMES.get(ts_type, ts_type)
        else:
            timestamp = np.arange(n, dtype=np.float64) / self.fps
            origin = TimestampOrigin.FROM_CONTROL_RATE
            flags["timestamp_missing"] = True
        if "frame_index" in columns:
            fi = np.asarray(columns["frame_index"]).reshape(-1)
            if not np.array_equal(fi, np.arange(n)):
                flags["frame_index_irregular"] = True
        task_index = np.asarray(columns["task_index"]).reshape(-1) if "task_index" in columns else None

        cameras: dict[str, CameraStream] = {}
        camera_keys: dict[str, str] = {}
        for key, spec in self.features.items():
            if not (spec.is_video or spec.is_image):
                continue
            if spec.is_depth:
                skipped[key] = "depth video (not an RGB camera)"
                continue
            name = feature_map.camera_name(key)
            if name in cameras:
                raise EpisodeError(Reason.INVALID_METADATA, f"{ref}: two camera features map to name '{name}'")
            if spec.is_video:
                cameras[name] = self._video_stream(meta, key, name, ref, timestamp, n, flags)
            else:
                if key not in file_columns:
                    raise EpisodeError(Reason.MISSING_CAMERA, f"{ref}: image feature '{key}' has no parquet column")
                cameras[name] = self._image_stream(meta, key, name, ref, row_groups, n)
            camera_keys[name] = key
        if skipped:
            flags["skipped_features"] = skipped
        return RawEpisode(
            dataset=self, meta=meta, ref=ref, num_frames=n, timestamp=timestamp, timestamp_origin=origin,
            columns=columns, task_index=task_index, cameras=cameras, camera_keys=camera_keys, flags=flags,
        )

    def _read_rows(
        self, meta: EpisodeMeta, ref: str, flags: dict[str, Any]
    ) -> tuple[pa.Table, dict[str, list[int]], set[str]]:
        """The episode's rows (all columns but video/image ones), the row groups read per data
        file (``[]``: all) and the column names of the file."""
        wanted = [k for k, f in self.features.items() if not (f.is_video or f.is_image)]
        if self.layout == "v2":
            path = self._locate(meta.data_path, meta.data_glob, flags)
            if path is None:
                raise EpisodeError(Reason.MISSING_FILE, f"{ref}: parquet file {meta.data_path} not found")
            where = f"{ref}: {path.relative_to(self.path).as_posix()}"
            schema = _read_schema(path, where)
            cols = _columns_to_read(schema, wanted)
            table = _read_parquet(path, cols, where)
            if "episode_index" in table.column_names and table.num_rows:  # no rows: an empty episode, below
                found = pc.unique(table.column("episode_index")).to_pylist()
                if found != [meta.index]:
                    raise EpisodeError(
                        Reason.INVALID_METADATA, f"{where}: holds rows of episode(s) {found}, expected {meta.index}"
                    )
            return table, {path.relative_to(self.path).as_posix(): []}, set(schema.names)

        # v3: only the row groups whose episode_index range contains this episode
        parts: list[pa.Table] = []
        groups_read: dict[str, list[int]] = {}
        file_columns: set[str] = set()
        for rel in (meta.data_path, meta.next_data_path):
            if rel is None:
                continue
            path = self.path / rel
            if not path.is_file():
                if rel == meta.data_path:
                    raise EpisodeError(Reason.MISSING_FILE, f"{ref}: parquet file {rel} not found")
                break
            where = f"{ref}: {rel}"
            file_columns |= set(_read_schema(path, where).names)
            part, groups = _read_episode_rows(path, meta.index, wanted, where)
            if part.num_rows:
                parts.append(part)
                groups_read[rel] = groups
            have = sum(p.num_rows for p in parts)
            if meta.length is None or have >= meta.length:
                break
        if any(rel != meta.data_path for rel in groups_read):
            # the episodes metadata named one file, (some of) the rows are in the next one
            flags["rows_from_files"] = {"episodes_meta": meta.data_path, "read": sorted(groups_read)}
        if not parts:
            return pa.table({}), groups_read, file_columns
        table = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        if meta.row_range is not None and "index" in table.column_names:
            idx = table.column("index").to_numpy()
            lo, hi = meta.row_range
            if len(idx) and (int(idx[0]) != lo or int(idx[-1]) != hi - 1):
                flags["row_range_disagrees"] = {"episodes_meta": [lo, hi], "index_column": [int(idx[0]), int(idx[-1]) + 1]}
        return table, groups_read, file_columns

    def _video_stream(
        self, meta: EpisodeMeta, key: str, name: str, ref: str, timestamp: np.ndarray, rows: int,
        flags: dict[str, Any],
    ) -> CameraStream:
        span = meta.videos.get(key)
        if span is None:
            raise EpisodeError(Reason.MISSING_CAMERA, f"{ref}: no video location for '{key}' in the episodes metadata")
        path = self._locate(span.path, span.glob, flags)
        if path is None:
            raise EpisodeError(Reason.MISSING_FILE, f"{ref}: video file {span.path} not found")
        where = f"{ref}: {span.path}"
        tol = self.options.video_time_tolerance_s or 0.5 / self.fps
        count = count_frames(path, where, start=span.start, stop=span.stop, tol=tol)
        if count > rows and count - rows <= self.options.video_extra_frames:
            flags.setdefault("video_frames_trimmed", {})[name] = count - rows
            count = rows
        if count != rows:
            window = "" if span.stop is None else f" in [{span.start:.3f}, {span.stop:.3f}) s"
            raise EpisodeError(
                Reason.FRAME_COUNT_MISMATCH,
                f"{where}: camera '{name}' has {count} video frames{window} but the episode has {rows} parquet rows",
            )
        times = timestamp if self.options.check_frame_times else None
        return CameraStream(
            name=name,
            num_frames=rows,
            open_frames=lambda: decode_video_frames(path, span.start, rows, times, tol, where),
            thread_safe=True,  # every stream opens its own container
            source_name=key,  # the feature key, e.g. observation.images.cam_high
            source_file=f"{self.rel}/{span.path}" if self.rel else span.path,  # relative to the input root
        )

    def _image_stream(
        self, meta: EpisodeMeta, key: str, name: str, ref: str, row_groups: Mapping[str, list[int]], rows: int
    ) -> CameraStream:
        sources = [(self.path / rel, groups) for rel, groups in row_groups.items()]
        index = meta.index if self.layout == "v3" else None
        return CameraStream(
            name=name,
            num_frames=rows,
            open_frames=lambda: image_column_frames(sources, key, index, self.path, f"{ref}: column '{key}'"),
            thread_safe=True,
            source_name=key,
            # the parquet file(s) whose column holds the frames, relative to the input root
            source_file=",".join(f"{self.rel}/{r}" if self.rel else r for r in sorted(row_groups)),
        )


@dataclass
class RawEpisode:
    """One episode as the LeRobot files hold it, before it is mapped to the unified record."""

    dataset: LeRobotDataset
    meta: EpisodeMeta
    ref: str
    num_frames: int
    timestamp: np.ndarray
    timestamp_origin: TimestampOrigin
    columns: dict[str, np.ndarray]  # numeric columns, [T] or [T, D]
    task_index: np.ndarray | None
    cameras: dict[str, CameraStream]
    camera_keys: dict[str, str]  # camera name -> feature key
    flags: dict[str, Any]

    def matrix(self, key: str) -> np.ndarray:
        values = self.columns[key]
        return values.reshape(len(values), -1)


# --------------------------------------------------------------------------------------
# Parquet helpers
# --------------------------------------------------------------------------------------


def _load_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where} is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read: {exc}") from exc


def _load_jsonl(path: Path, where: str) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where} is not UTF-8: {exc}") from exc
    except OSError as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read: {exc}") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} line {number} is not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} line {number} is not a JSON object")
        rows.append(row)
    return rows


def _read_schema(path: Path, where: str) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except _PARQUET_ERRORS as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot open parquet file: {exc}") from exc


def _read_parquet(path: Path, columns: list[str] | None, where: str) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except _PARQUET_ERRORS as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read parquet file: {exc}") from exc


def _columns_to_read(schema: pa.Schema, wanted: Iterable[str]) -> list[str]:
    """Declared non-video features and bookkeeping columns present, plus undeclared numeric columns."""
    names = set(schema.names)
    cols = [c for c in wanted if c in names]
    cols += [c for c in BOOKKEEPING if c in names and c not in cols]
    for f in schema:
        if f.name not in cols and _numeric_or_list(f.type) and not f.name.startswith("__"):
            cols.append(f.name)
    return cols


def _numeric_or_list(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _read_episode_rows(path: Path, index: int, wanted: list[str], where: str) -> tuple[pa.Table, list[int]]:
    """v3: rows of one episode from a multi-episode file, reading only the row groups that can hold it.

    Row groups are chosen from the parquet ``episode_index`` column statistics; without
    statistics the (small) ``episode_index`` column is read to choose them. The chosen groups
    are then filtered on ``episode_index``.
    """
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        if "episode_index" not in schema.names:
            raise EpisodeError(Reason.MISSING_KEY, f"{where}: no episode_index column in a multi-episode file")
        md = pf.metadata
        # statistics are per parquet leaf column (a struct or list column has its own leaves)
        col = next(i for i in range(md.num_columns) if md.schema.column(i).path == "episode_index")
        groups: list[int] = []
        for g in range(md.num_row_groups):
            stats = md.row_group(g).column(col).statistics
            if stats is not None and stats.has_min_max:
                if stats.min <= index <= stats.max:
                    groups.append(g)
            else:
                values = pf.read_row_group(g, columns=["episode_index"]).column(0)
                if pc.any(pc.equal(values, index)).as_py():
                    groups.append(g)
        cols = _columns_to_read(schema, wanted)
        if not groups:
            return pa.Table.from_batches([], schema=pa.schema([schema.field(c) for c in cols])), []
        table = pf.read_row_groups(groups, columns=cols)
    except EpisodeError:
        raise
    except _PARQUET_ERRORS as exc:
        raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read parquet file: {exc}") from exc
    table = table.filter(pc.equal(table.column("episode_index"), index))
    return table, groups


def _column_to_array(col: pa.ChunkedArray, where: str) -> np.ndarray | None:
    """A numeric column as ``[T]`` or ``[T, D]`` numpy (``None`` for non-numeric columns).

    Null rows are ``non_finite_values`` (a missing value); null elements inside a list
    become NaN (floats) so the episode check names them.
    """
    t = col.type
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(arr, pa.ChunkedArray):  # zero chunks
        arr = pa.array([], type=t)
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        if not (pa.types.is_integer(vt) or pa.types.is_floating(vt) or pa.types.is_boolean(vt)):
            return None
        if arr.null_count:
            raise EpisodeError(Reason.NON_FINITE_VALUES, f"{where} has {arr.null_count} null rows")
        n = len(arr)
        if pa.types.is_fixed_size_list(t):
            width = t.list_size
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            widths = np.unique(lengths)
            if len(widths) > 1:
                raise EpisodeError(
                    Reason.SHAPE_MISMATCH, f"{where} holds vectors of different lengths {widths.tolist()}"
                )
            width = int(widths[0]) if n else 0
        values = arr.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(values).reshape(n, width)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        if arr.null_count and not pa.types.is_floating(t):
            raise EpisodeError(Reason.NON_FINITE_VALUES, f"{where} has {arr.null_count} null rows")
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    return None


_ARROW_DTYPE_NAMES = {"float": "float32", "double": "float64", "halffloat": "float16"}


def _check_declared(spec: FeatureSpec, values: np.ndarray, arrow_type: pa.DataType, flags: dict[str, Any]) -> None:
    """Record (not fail) where a numeric column disagrees with its declared dtype or shape."""
    t = arrow_type.value_type if hasattr(arrow_type, "value_type") else arrow_type
    actual = _ARROW_DTYPE_NAMES.get(str(t), str(t))
    if spec.dtype != actual and spec.dtype not in ("video", "image"):
        flags.setdefault("dtype_disagrees", {})[spec.key] = {"declared": spec.dtype, "parquet": actual}
    width = 1 if values.ndim == 1 else values.shape[1]
    declared = int(np.prod(spec.shape)) if spec.shape else None
    if declared is not None and declared != width:
        flags.setdefault("shape_disagrees", {})[spec.key] = {"declared": list(spec.shape), "parquet_width": width}


# --------------------------------------------------------------------------------------
# Video and image streams
# --------------------------------------------------------------------------------------


def decode_video_frames(
    path: Path, start: float, count: int, times: np.ndarray | None, tol: float, where: str
) -> Iterator[np.ndarray]:
    """Decode ``count`` frames from ``start`` on, one at a time, as HxWx3 uint8 RGB.

    The container is opened when iteration starts and closed when it ends (or the consumer
    stops early). With ``times``, frame ``i`` must be presented within ``tol`` of
    ``start + times[i]``; a frame out of place means the video lost or gained a frame.
    """
    n = 0
    t0 = float(times[0]) if times is not None and len(times) else 0.0
    with contextlib.closing(decode_frames(path, where, start=start, tol=tol)) as decoded:
        for frame in decoded:
            t = frame.time
            if t is not None and t < start - tol:
                continue
            if times is not None and t is not None and abs((t - start) - (float(times[n]) - t0)) > tol:
                raise EpisodeError(
                    Reason.FRAME_COUNT_MISMATCH,
                    f"{where}: video frame {n} is presented at {t - start:.4f} s but its parquet row says "
                    f"{float(times[n]) - t0:.4f} s (the video lost or gained a frame)",
                )
            yield frame.to_ndarray(format="rgb24")
            n += 1
            if n == count:
                return
    raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: decoded only {n} of {count} frames")


def image_column_frames(
    sources: Sequence[tuple[Path, list[int]]], key: str, episode: int | None, root: Path, where: str,
    batch_size: int = 16,
) -> Iterator[np.ndarray]:
    """Decode an ``image`` feature (parquet ``{bytes, path}`` structs) a small batch at a time."""
    n = 0
    for path, groups in sources:
        try:
            pf = pq.ParquetFile(path)
            cols = [key] + (["episode_index"] if episode is not None else [])
            batches = pf.iter_batches(batch_size=batch_size, row_groups=groups or None, columns=cols)
            for batch in batches:
                col = batch.column(0)
                if episode is not None:
                    keep = pc.equal(batch.column(1), episode)
                    col = pc.filter(col, keep)
                for i in range(len(col)):
                    yield _decode_image_cell(col, i, root, f"{where}[{n}]")
                    n += 1
        except EpisodeError:
            raise
        except _PARQUET_ERRORS as exc:
            raise EpisodeError(Reason.CORRUPT_FILE, f"{where}: cannot read images: {exc}") from exc


def _decode_image_cell(col: pa.Array, i: int, root: Path, where: str) -> np.ndarray:
    if pa.types.is_struct(col.type):
        cell = col[i].as_py() or {}
        data, rel = cell.get("bytes"), cell.get("path")
    elif pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        data, rel = col[i].as_py(), None
    else:
        raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{where}: image column of type {col.type}")
    if data is None:
        if not rel:
            raise EpisodeError(Reason.IMAGE_DECODE_ERROR, f"{where}: image cell has neither bytes nor path")
        path = root / rel
        if not path.is_file():
            raise EpisodeError(Reason.MISSING_FILE, f"{where}: image file {rel} not found")
        data = path.read_bytes()
    return decode_image_bytes(data, where=where)


# --------------------------------------------------------------------------------------
# Mapping to the unified episode
# --------------------------------------------------------------------------------------


def episode_tasks(raw: RawEpisode) -> tuple[list[str], dict[str, Any]]:
    """The episode's task texts, most frequent first, and how they were found.

    Per-row ``task_index`` through the tasks table is authoritative. A ``task_index`` with
    no text falls back to the episode's own ``tasks`` list when that holds exactly one
    non-empty text (recorded); otherwise the episode has no usable language.
    """
    ds, info = raw.dataset, {}
    table_name = V2_TASKS_PATH if ds.layout == "v2" else V3_TASKS_PATH
    if raw.task_index is None:
        texts = [t for t in raw.meta.tasks if t.strip()]
        if not texts:
            raise EpisodeError(Reason.MISSING_LANGUAGE, f"{raw.ref}: no task_index column and no tasks in the episode meta")
        return texts, {"task_source": "episodes_meta"}
    counts = Counter(int(v) for v in raw.task_index)
    ordered = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    texts: list[str] = []
    missing = [i for i in ordered if i not in ds.tasks]
    if missing:
        fallback = [t for t in raw.meta.tasks if t.strip()]
        if len(fallback) == 1 and len(ordered) == 1:
            info["task_from_episode_meta"] = {"task_index": missing[0]}
            return fallback, info
        raise EpisodeError(
            Reason.MISSING_LANGUAGE,
            f"{raw.ref}: task_index {missing} has no text in {table_name} (episode meta tasks: {list(raw.meta.tasks)})",
        )
    texts = [ds.tasks[i] for i in ordered]
    info["task_index"] = ordered
    if raw.meta.tasks and set(raw.meta.tasks) != set(texts):
        info["episode_meta_tasks_disagree"] = list(raw.meta.tasks)
    return texts, info


def build_episode(
    raw: RawEpisode,
    fmap: FeatureMap,
    options: ReaderOptions,
    *,
    embodiment: str,
    robot_type: str,
    instruction: str,
    alternatives: Sequence[str] = (),
    subtasks: list[str | None] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Episode:
    """Map a :class:`RawEpisode` to the unified record under the feature map and name rule."""
    ds, ref = raw.dataset, raw.ref
    repairs: dict[str, Any] = {}
    renamed: dict[str, str] = {}

    def pick(keys: tuple[str, ...], label: str) -> str:
        for key in keys:
            if key in raw.columns:
                return key
        raise EpisodeError(
            Reason.MISSING_KEY, f"{ref}: no {label} column (looked for {list(keys)}; have {sorted(raw.columns)})"
        )

    def names_for(key: str, width: int, stub: str) -> list[str]:
        spec = ds.features.get(key)
        names = resolve_names(spec.names if spec else None, width, stub, options.name_policy, ref, key, repairs)
        out = []
        for n in names:
            new = fmap.renames.get(n, n)
            if new != n:
                renamed[n] = new
            out.append(new)
        return out

    state_key, action_key = pick(fmap.state_keys, "state"), pick(fmap.action_keys, "action")
    state = raw.matrix(state_key).astype(np.float32)
    action = raw.matrix(action_key).astype(np.float32)
    state_names = names_for(state_key, state.shape[1], "state")
    action_names = names_for(action_key, action.shape[1], "action")

    extras: dict[str, np.ndarray] = {}
    extra_names: dict[str, list[str]] = {}
    skip = set(BOOKKEEPING) | {state_key, action_key} | set(fmap.exclude_extras)
    for key in sorted(raw.columns):
        if key in skip:
            continue
        values = raw.matrix(key)
        extras[key] = values
        extra_names[key] = names_for(key, values.shape[1], key.replace(".", "_"))

    flags = dict(raw.flags)
    flags.update(ds.metadata_flags())
    if repairs:
        flags["name_repairs"] = repairs
    if renamed:
        flags["renamed_dimensions"] = renamed
    split = ds.split_of(raw.meta.index)
    lerobot = {
        "codebase_version": ds.version,
        "dataset": ds.rel,
        "episode_index": raw.meta.index,
        "fps": ds.fps,
        "robot_type": ds.robot_type,
        "state_key": state_key,
        "action_key": action_key,
        "cameras": dict(raw.camera_keys),
        "split": split,
        "flags": flags,
    }
    if split is None and isinstance(ds.info.get("splits"), Mapping):
        flags["not_in_splits"] = True
    meta = {"lerobot": lerobot}
    meta.update(metadata or {})
    return Episode(
        source_episode=ref,
        embodiment=embodiment,
        robot_type=robot_type,
        control_hz=ds.fps,
        timestamp=raw.timestamp,
        state=state,
        state_names=state_names,
        action=action,
        action_names=action_names,
        action_kind=fmap.action_kind,
        instruction=instruction,
        cameras=raw.cameras,
        timestamp_origin=raw.timestamp_origin,
        instruction_alternatives=list(alternatives),
        subtasks=subtasks,
        extras=extras,
        extra_names=extra_names,
        metadata=meta,
    )


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


# --------------------------------------------------------------------------------------
# Converter base for LeRobot-format sources
# --------------------------------------------------------------------------------------


class LeRobotConverter(Converter):
    """Discovery, caching and episode mapping for a root holding one or many LeRobot datasets.

    Subclasses set ``feature_map`` and override :meth:`embodiment_for` /
    :meth:`language_for` / :meth:`extra_metadata`. Options understood here: the
    :class:`ReaderOptions` keys, plus ``embodiment`` (force one embodiment id) for the
    default :meth:`embodiment_for`.
    """

    feature_map: ClassVar[FeatureMap] = FeatureMap()
    #: a source's options extend :class:`ReaderOptions`, so they are also the reader's
    options_type: ClassVar[type[ReaderOptions]] = LeRobotOptions
    #: datasets whose metadata a worker keeps open (LRU)
    dataset_cache_size: ClassVar[int] = 32

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        self._datasets: OrderedDict[str, LeRobotDataset | EpisodeError] = OrderedDict()

    # -- discovery ---------------------------------------------------------------------

    def discover(self) -> list[str]:
        """One unit per episode of every dataset under ``root``; a dataset whose episode list
        cannot be read is one dataset-level unit (its path), quarantined when converted."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name} root {self.root} is not a directory")
        units: list[str] = []
        for rel in find_datasets(self.root):
            try:
                ds = self.dataset(rel)
                units.extend(episode_ref(rel, i) for i in ds.episode_indices())
            except EpisodeError:
                units.append(rel or ".")
        return sorted(units)

    def episodes(self, unit: str) -> Iterator[tuple[str, Callable[[], Any]]]:
        parsed = parse_episode_ref(unit)
        if parsed is not None:
            yield unit, lambda: self.open_episode(unit)
            return
        rel = "" if unit == "." else unit
        ds = self.dataset(rel)  # raises the dataset-level error
        for index in ds.episode_indices():
            ref = episode_ref(rel, index)
            yield ref, (lambda r=ref: self.open_episode(r))

    def dataset(self, rel: str) -> LeRobotDataset:
        """The (cached) dataset at ``rel``; a cached failure is raised again."""
        cached = self._datasets.get(rel)
        if cached is None:
            try:
                cached = LeRobotDataset(self.root, rel, self.options)
                _ = cached.episodes  # validate the episode list once
            except EpisodeError as exc:
                cached = exc
            except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
                # a value of the wrong type where the metadata promises another (a null chunk index, a
                # number as a path template): this dataset is malformed, the source's others are not
                cached = EpisodeError(Reason.INVALID_METADATA, f"{rel or '.'}: malformed metadata "
                                                               f"({type(exc).__name__}: {exc})")
            self._datasets[rel] = cached
            while len(self._datasets) > self.dataset_cache_size:
                self._datasets.popitem(last=False)
        else:
            self._datasets.move_to_end(rel)
        if isinstance(cached, EpisodeError):
            raise EpisodeError(cached.reason, cached.message)
        return cached

    # -- reading -----------------------------------------------------------------------

    @contextlib.contextmanager
    def open_episode(self, source_episode: str) -> Iterator[Episode]:
        parsed = parse_episode_ref(source_episode)
        if parsed is None:
            raise EpisodeError(Reason.UNSUPPORTED_LAYOUT, f"{source_episode}: not an episode ref")
        rel, index = parsed
        ds = self.dataset(rel)
        embodiment, robot_type = self.embodiment_for(ds, source_episode)
        raw = ds.read(index, source_episode, self.feature_map)
        instruction, alternatives, subtasks, language_meta = self.language_for(ds, raw)
        metadata = dict(language_meta)
        metadata.update(self.extra_metadata(ds, raw))
        episode = build_episode(
            raw, self.feature_map, self.options,
            embodiment=embodiment, robot_type=robot_type, instruction=instruction,
            alternatives=alternatives, subtasks=subtasks, metadata=metadata,
        )
        yield self.finish(episode, ds, raw)

    # -- hooks -------------------------------------------------------------------------

    def embodiment_for(self, ds: LeRobotDataset, ref: str) -> tuple[str, str]:
        """``(embodiment id, robot_type)``: option ``embodiment``, else the slug of ``robot_type``."""
        forced = self.options.embodiment
        if forced:
            return forced, ds.robot_type or forced
        if ds.robot_type is None or not slugify(ds.robot_type):
            raise EpisodeError(
                Reason.MISSING_METADATA,
                f"{ref}: info.json robot_type is {ds.robot_type!r} and no embodiment is configured (option 'embodiment')",
            )
        return slugify(ds.robot_type), ds.robot_type

    def language_for(
        self, ds: LeRobotDataset, raw: RawEpisode
    ) -> tuple[str, list[str], list[str | None] | None, dict[str, Any]]:
        """``(instruction, alternatives, subtasks, metadata)``: the most frequent task text."""
        texts, info = episode_tasks(raw)
        meta: dict[str, Any] = {"tasks": texts}
        if info:
            meta["task_info"] = info
        return texts[0], [], None, meta

    def extra_metadata(self, ds: LeRobotDataset, raw: RawEpisode) -> dict[str, Any]:
        """Source-specific metadata merged into ``Episode.metadata``."""
        return {}

    def finish(self, episode: Episode, ds: LeRobotDataset, raw: RawEpisode) -> Episode:
        """Last look at the mapped episode (final dimension names are known here)."""
        return episode
