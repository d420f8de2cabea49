"""The Parquet episode index (one row per episode) and the per-episode summary it is built from."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import INDEX_FILE
from .reader import EpisodeReader
from .schema import (
    ACTION,
    METADATA_SUCCESS,
    STATE,
    ConverterKey,
    LanguageKey,
    MetaKey,
    SourceKey,
)
from .digest import file_sha256

INDEX_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_version", pa.string(), nullable=False),
        pa.field("source_episode", pa.string(), nullable=False),
        pa.field("embodiment", pa.string(), nullable=False),
        pa.field("robot_type", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("control_hz", pa.float64(), nullable=False),
        pa.field("cameras", pa.list_(pa.string()), nullable=False),
        pa.field("state_dim", pa.int32(), nullable=False),
        pa.field("action_dim", pa.int32(), nullable=False),
        pa.field("action_kind", pa.string(), nullable=False),
        pa.field("converter_version", pa.string(), nullable=False),
        pa.field("format_version", pa.int32(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
    ]
)


class CurationStatus(StrEnum):
    """A ``curation.parquet`` row's ``status``: what training may use of the episode."""

    KEPT = "kept"  # its ``kept_ranges``
    QUARANTINED = "quarantined"  # nothing; ``reason`` and ``message`` say why


#: one row per episode the conversion saw: kept (with its kept and removed frame ranges) or quarantined
_RANGE = pa.struct([("start", pa.int64()), ("stop", pa.int64())])
_REMOVAL = pa.struct([("start", pa.int64()), ("stop", pa.int64()), ("reason", pa.string()), ("message", pa.string())])
CURATION_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("embodiment", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("message", pa.string()),
        pa.field("frames_in", pa.int64(), nullable=False),
        pa.field("frames_kept", pa.int64(), nullable=False),
        pa.field("kept_ranges", pa.list_(_RANGE), nullable=False),
        pa.field("removed_ranges", pa.list_(_REMOVAL), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
    ]
)


def index_row(reader: EpisodeReader, relpath: str, size_bytes: int, sha256: str) -> dict[str, Any]:
    meta = reader.meta
    source = meta[MetaKey.SOURCE]
    return {
        "episode_id": meta[MetaKey.EPISODE_ID],
        "source": source[SourceKey.NAME],
        "source_version": source[SourceKey.VERSION],
        "source_episode": source[SourceKey.EPISODE],
        "embodiment": meta[MetaKey.EMBODIMENT],
        "robot_type": meta[MetaKey.ROBOT_TYPE],
        "instruction": meta[MetaKey.LANGUAGE][LanguageKey.INSTRUCTION],
        "num_frames": int(meta[MetaKey.NUM_FRAMES]),
        "duration_s": float(meta[MetaKey.DURATION_S]),
        "control_hz": float(meta[MetaKey.CONTROL_HZ]),
        "cameras": reader.cameras,
        "state_dim": len(meta[MetaKey.STATE_NAMES]),
        "action_dim": len(meta[MetaKey.ACTION_NAMES]),
        "action_kind": meta[MetaKey.ACTION_KIND],
        "converter_version": meta[MetaKey.CONVERTER][ConverterKey.VERSION],
        "format_version": int(meta[MetaKey.FORMAT_VERSION]),
        "path": relpath,
        "size_bytes": int(size_bytes),
        "sha256": sha256,
    }


def summarize_episode_file(
    store_root: str | Path, relpath: str, *, image_change: bool = False, sha256: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read back a published episode: its index row and the low-dim data statistics need.

    The pipeline summarises every episode from the file it just wrote (or found
    on resume), so the index always describes what is on disk. Only the metadata and the
    low-dimensional arrays are read (and the frames when ``image_change``); ``sha256``, the
    file's digest as the store's index already records it, spares hashing the whole file
    again on resume (terabytes at AgiBot scale); ``a1pipe validate`` checks it.
    """
    path = Path(store_root) / relpath
    sha = sha256 if sha256 is not None else file_sha256(path)
    with EpisodeReader(path) as reader:
        row = index_row(reader, relpath, path.stat().st_size, sha)
        low_dim = {
            "source": row["source"],
            "embodiment": row["embodiment"],
            "control_hz": row["control_hz"],
            "timestamp": reader.timestamp,
            "arrays": {STATE: reader.state, ACTION: reader.action},
            "names": {STATE: list(reader.meta[MetaKey.STATE_NAMES]), ACTION: list(reader.meta[MetaKey.ACTION_NAMES])},
            "content_sha256": content_sha256(reader),
            "cameras": reader.meta[MetaKey.CAMERAS],
            "success": (reader.meta.get(MetaKey.METADATA) or {}).get(METADATA_SUCCESS),
        }
        if image_change:
            from pipelines.episode_store.images import image_change_per_step

            low_dim["image_change"] = image_change_per_step([list(reader.encoded_frames(c)) for c in reader.cameras])
    return row, low_dim


def content_sha256(reader: EpisodeReader, *, recorded: bool = True) -> str:
    """Digest of what training sees (relative time, state, action, every stored frame), for duplicates.

    The writer records it as it encodes; files written before it did are read back in full.
    """
    import hashlib

    from .digest import content_digest

    if recorded and isinstance(reader.meta.get(MetaKey.CONTENT_SHA256), str):
        return reader.meta[MetaKey.CONTENT_SHA256]
    frame_digests = [
        hashlib.sha256(data).digest() for camera in reader.cameras for data in reader.encoded_frames(camera, block=256)
    ]
    return content_digest(reader.timestamp, reader.state, reader.action, frame_digests)


def write_index(rows: list[dict[str, Any]], store_root: str | Path) -> Path:
    """Write ``index.parquet`` atomically, rows sorted by (source, episode_id) for determinism."""
    rows = sorted(rows, key=lambda r: (r["source"], r["episode_id"]))
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    from pipelines.storage import publish_local

    dest = Path(store_root) / INDEX_FILE
    publish_local(dest, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return dest


def read_index_rows(store_root: str | Path) -> list[dict[str, Any]]:
    """The index's rows (none when there is no index yet). An unreadable index raises
    :class:`CorruptDerivedFile`: it is derived from the episode files and can be rebuilt."""
    path = Path(store_root) / INDEX_FILE
    if not path.is_file():
        return []
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise CorruptDerivedFile(path, exc) from exc


class CorruptDerivedFile(Exception):
    """A file a run derives from the episode files (index, statistics) exists but cannot be read."""

    def __init__(self, path: str | Path, cause: BaseException):
        super().__init__(f"{path}: unreadable ({type(cause).__name__}: {cause})")
        self.path = Path(path)


def rebuild_index_and_stats(store_root: str | Path) -> tuple[int, int]:
    """Summarise every published episode file and rewrite ``index.parquet`` and ``stats.json``.

    The single-process counterpart of the conversion pipeline's final step, for
    recovering a store whose index was lost and for building test stores.
    Returns (episodes, frames).
    """
    import json

    from .layout import STATS_FILE
    from .reader import EpisodeStore
    from .stats import EpisodeSetStats, build_stats_document

    store = EpisodeStore(store_root)
    rows = []
    per_key: dict[tuple[str, str], EpisodeSetStats] = {}
    for path in store.episode_files():
        rel = path.relative_to(store.root).as_posix()
        row, low = summarize_episode_file(store.root, rel)
        rows.append(row)
        part = EpisodeSetStats.of_episode(low["arrays"], low["names"], row["episode_id"])
        key = (row["source"], row["embodiment"])
        per_key[key] = per_key[key].merge(part) if key in per_key else part
    write_index(rows, store.root)
    doc = build_stats_document(per_key)
    from pipelines.storage import write_text

    write_text(store.root / STATS_FILE, json.dumps(doc, indent=1) + "\n")
    return len(rows), sum(r["num_frames"] for r in rows)
