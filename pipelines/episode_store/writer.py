"""Write one :class:`Episode` into a store as a single ``<id>.zarr.zip`` file, atomically.

The episode is first written as a zarr v3 group into a private temporary
directory (streaming camera frames block by block, so memory does not grow with
episode length), then packed into a deterministic ZIP (stored, sorted members,
fixed timestamps: the same input gives byte-identical files), fsynced, and
renamed into ``episodes/``. Readers therefore never see a half-written episode,
and a killed writer leaves only a temporary directory that the next run removes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import VLenBytesCodec

from .digest import content_digest
from .errors import EpisodeError, Reason
from .images import ImageConfig, encode_jpeg, resize_frame
from .layout import TMP_DIR, episode_id, episode_relpath
from .record import MAX_ABS_VALUE, Episode, check_episode
from .schema import (
    ACTION,
    EPISODE_ATTR,
    FORMAT_VERSION,
    FRAME_ENCODING,
    LOW_DIM_ARRAYS,
    NO_SUBTASK,
    STATE,
    SUBTASK_INDEX,
    SUBTASK_INDEX_DTYPE,
    SUBTASK_TEXTS_ATTR,
    TIMESTAMP,
    CameraKey,
    CameraSourceKey,
    ConverterKey,
    ExtraKey,
    LanguageKey,
    MetaKey,
    SourceKey,
    extra_array,
    image_array,
)

#: frames per shard of an image array (inner chunk = 1 frame); bounds writer memory
FRAMES_PER_SHARD = 256
#: cameras of one episode encoded concurrently
MAX_CAMERA_THREADS = 4
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")


def write_episode(
    episode: Episode,
    store_root: str | Path,
    image_config: ImageConfig,
    *,
    frames_per_shard: int = FRAMES_PER_SHARD,
    max_abs_value: float = MAX_ABS_VALUE,
) -> str:
    """Write ``episode`` into the store and return its episode id.

    Raises :class:`EpisodeError` (never leaves a visible file) when the record
    breaks the format, when a camera stream yields the wrong number of frames, or
    when writing fails.
    """
    check_episode(episode, max_abs_value=max_abs_value)
    store_root = Path(store_root)
    eid = episode_id(episode.source, episode.source_episode)
    final = store_root / episode_relpath(eid)
    tmp = store_root / TMP_DIR / f"{eid}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        group_dir = tmp / "episode.zarr"
        _write_group(episode, eid, group_dir, image_config, frames_per_shard)
        packed = tmp / "episode.zarr.zip"
        pack_directory(group_dir, packed)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(packed, final)
        _fsync_dir(final.parent)
    except EpisodeError:
        raise
    except OSError as exc:
        raise EpisodeError(Reason.WRITE_ERROR, f"{episode.source_episode}: cannot write {final}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return eid


def episode_attributes(episode: Episode, eid: str, cameras: dict[str, Any]) -> dict[str, Any]:
    n = episode.num_frames
    duration = float(episode.timestamp[-1] - episode.timestamp[0]) if n > 1 else 0.0
    return {
        MetaKey.FORMAT_VERSION: FORMAT_VERSION,
        MetaKey.EPISODE_ID: eid,
        MetaKey.SOURCE: {
            SourceKey.NAME: episode.source,
            SourceKey.VERSION: episode.source_version,
            SourceKey.EPISODE: episode.source_episode,
        },
        MetaKey.CONVERTER: {
            ConverterKey.NAME: episode.converter or episode.source,
            ConverterKey.VERSION: episode.converter_version,
        },
        MetaKey.EMBODIMENT: episode.embodiment,
        MetaKey.ROBOT_TYPE: episode.robot_type,
        MetaKey.CONTROL_HZ: float(episode.control_hz),
        MetaKey.NUM_FRAMES: n,
        MetaKey.DURATION_S: duration,
        MetaKey.TIMESTAMP_ORIGIN: str(episode.timestamp_origin),
        MetaKey.STATE_NAMES: list(episode.state_names),
        MetaKey.ACTION_NAMES: list(episode.action_names),
        MetaKey.ACTION_KIND: str(episode.action_kind),
        MetaKey.LANGUAGE: {
            LanguageKey.INSTRUCTION: episode.instruction,
            LanguageKey.ALTERNATIVES: list(episode.instruction_alternatives),
            LanguageKey.HAS_SUBTASKS: episode.subtasks is not None,
        },
        MetaKey.CAMERAS: cameras,
        MetaKey.EXTRAS: {k: {ExtraKey.NAMES: list(episode.extra_names.get(k, []))} for k in sorted(episode.extras)},
        MetaKey.METADATA: _jsonable(episode.metadata, MetaKey.METADATA),
    }


def _write_group(
    episode: Episode, eid: str, group_dir: Path, image_config: ImageConfig, frames_per_shard: int
) -> None:
    n = episode.num_frames
    root = zarr.open_group(zarr.storage.LocalStore(group_dir), mode="w")
    # Low-dimensional arrays are stored uncompressed. They are a fraction of a percent of an
    # episode next to its JPEGs, and compressing them made the file's bytes depend on which zstd
    # the process had bound: TensorFlow (loaded to read DROID's RLDS) exports its own zstd
    # symbols, and once it is loaded numcodecs' calls may resolve to them and emit other bytes
    # for the same values. Uncompressed, equal data gives equal files whatever else is loaded.
    low_dim = {name: np.asarray(values, dtype=LOW_DIM_ARRAYS[name])
               for name, values in ((TIMESTAMP, episode.timestamp), (STATE, episode.state), (ACTION, episode.action))}
    for name, data in low_dim.items():
        root.create_array(name, data=data, chunks=data.shape, compressors=None)  # one chunk: [T] or [T, D]
    if episode.subtasks is not None:
        texts = sorted({s for s in episode.subtasks if s})
        lookup = {s: i for i, s in enumerate(texts)}
        index = np.array([lookup[s] if s else NO_SUBTASK for s in episode.subtasks], dtype=SUBTASK_INDEX_DTYPE)
        arr = root.create_array(SUBTASK_INDEX, data=index, chunks=(n,), compressors=None)
        arr.attrs[SUBTASK_TEXTS_ATTR] = texts
    for key in sorted(episode.extras):
        data = np.asarray(episode.extras[key])
        if data.dtype == object or data.dtype.kind in "US":
            raise EpisodeError(Reason.SHAPE_MISMATCH, f"{episode.source_episode}: extra '{key}' must be numeric")
        root.create_array(extra_array(key), data=data, chunks=data.shape or (1,), compressors=None)

    # One thread per camera: decode, resize and JPEG encode release the GIL, so a lone long
    # episode still uses several cores; each camera owns its array, so threads share nothing.
    names = sorted(episode.cameras)
    parallel = all(episode.cameras[n].thread_safe for n in names)
    threads = max(1, min(len(names), MAX_CAMERA_THREADS)) if parallel else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {n: pool.submit(_write_camera, episode, n, root, image_config, frames_per_shard) for n in names}
        written = {n: futures[n].result() for n in names}
    cameras: dict[str, Any] = {n: written[n][0] for n in names}
    attributes = episode_attributes(episode, eid, cameras)
    # The duplicate-detection digest covers every stored frame; hashing the JPEGs as they are
    # encoded saves reading the whole episode back (the validator re-derives and checks it).
    attributes[MetaKey.CONTENT_SHA256] = content_digest(
        low_dim[TIMESTAMP], low_dim[STATE], low_dim[ACTION], [d for n in names for d in written[n][1]])
    root.attrs[EPISODE_ATTR] = attributes


def _write_camera(
    episode: Episode, name: str, root: zarr.Group, config: ImageConfig, frames_per_shard: int
) -> tuple[dict[str, Any], list[bytes]]:
    """Encode and store one camera; returns its metadata and the sha256 of each stored frame."""
    stream = episode.cameras[name]
    n = episode.num_frames
    where = f"{episode.source_episode}: camera '{name}'"
    arr = root.create_array(
        image_array(name),
        shape=(n,),
        chunks=(1,),
        shards=(min(frames_per_shard, n),),
        dtype=zarr.dtype.VariableLengthBytes(),
        serializer=VLenBytesCodec(),
        compressors=None,
    )
    source_hw: tuple[int, int] | None = None
    out_hw: tuple[int, int] | None = None
    pending: list[bytes] = []  # encoded frames of the shard being filled; raw frames are never buffered
    digests: list[bytes] = []
    written = 0
    for i, frame in enumerate(stream.open_frames()):
        if i >= n:
            raise EpisodeError(Reason.FRAME_COUNT_MISMATCH, f"{where} yielded more than {n} frames")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise EpisodeError(
                Reason.SHAPE_MISMATCH, f"{where} frame {i} must be HxWx3 uint8, got {frame.shape} {frame.dtype}"
            )
        if source_hw is None:
            source_hw = (int(frame.shape[0]), int(frame.shape[1]))
        elif config.resize == "none" and frame.shape[:2] != source_hw:
            raise EpisodeError(
                Reason.SHAPE_MISMATCH, f"{where} frame {i} is {frame.shape[:2]} but earlier frames are {source_hw}"
            )
        im = resize_frame(frame, config)
        out_hw = (im.height, im.width)
        pending.append(encode_jpeg(im, config.quality))
        digests.append(hashlib.sha256(pending[-1]).digest())
        if len(pending) == frames_per_shard:
            written = _flush(arr, written, pending)
    if pending:
        written = _flush(arr, written, pending)
    if written != n:
        raise EpisodeError(Reason.FRAME_COUNT_MISMATCH, f"{where} yielded {written} frames, expected {n}")
    assert source_hw is not None and out_hw is not None
    return {
        CameraKey.SOURCE: {CameraSourceKey.NAME: stream.source_name or name,
                           CameraSourceKey.FILE: stream.source_file or None},
        CameraKey.ENCODING: FRAME_ENCODING,
        CameraKey.QUALITY: config.quality,
        CameraKey.HEIGHT: out_hw[0],
        CameraKey.WIDTH: out_hw[1],
        CameraKey.SOURCE_HEIGHT: source_hw[0],
        CameraKey.SOURCE_WIDTH: source_hw[1],
        CameraKey.RESIZE: config.resize,
    }, digests


def _flush(arr: zarr.Array, start: int, pending: list[bytes]) -> int:
    """Write one whole shard of encoded frames (zarr never rewrites a shard partially)."""
    block = np.empty(len(pending), dtype=object)
    block[:] = pending
    arr[start : start + len(pending)] = block
    pending.clear()
    return start + len(block)


def pack_directory(src: Path, dest: Path) -> None:
    """Pack a zarr directory store into a deterministic, uncompressed ZIP and fsync it.

    Members are stored (JPEG chunks do not shrink further) so any chunk
    can be read with one seek; names are sorted and timestamps fixed so equal
    content gives equal bytes (stable sha256 checksums across re-conversions).
    """
    files = sorted(p for p in src.rglob("*") if p.is_file())
    with open(dest, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(src).as_posix(), date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_STORED
                with open(path, "rb") as fin, zf.open(info, "w", force_zip64=True) as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
        fh.flush()
        os.fsync(fh.fileno())




def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable(value: Any, where: str) -> Any:
    """Metadata must round-trip through JSON; numpy scalars/arrays are converted, others rejected."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise EpisodeError(Reason.INVALID_METADATA, f"{where} is not JSON-serialisable: {type(value).__name__}")
