"""Read a store: its index, statistics and any frame of any episode."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from .images import decode_jpeg
from .layout import (
    EPISODE_SUFFIX,
    EPISODES_DIR,
    INDEX_FILE,
    STATS_FILE,
    STORE_FORMAT,
    STORE_MARKER,
    episode_relpath,
)
from .record import CameraStream, Episode
from .schema import (
    ACTION,
    EPISODE_ATTR,
    FORMAT_VERSION,
    STATE,
    SUBTASK_INDEX,
    SUBTASK_TEXTS_ATTR,
    TIMESTAMP,
    ActionKind,
    ConverterKey,
    ExtraKey,
    LanguageKey,
    MetaKey,
    SourceKey,
    TimestampOrigin,
    extra_array,
    image_array,
)

warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")


class StoreError(Exception):
    """The path is not a readable episode store."""


def _unwrap(value: Any) -> bytes:
    while isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return bytes(value)


#: the image-array codec chain the writer produces (docs/episode_format.md, section 3)
_FRAME_CODECS = {
    "name": "sharding_indexed",
    "configuration": {
        "chunk_shape": [1],
        "codecs": [{"name": "vlen-bytes", "configuration": {}}],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
        "index_location": "end",
    },
}
_MISSING = 2**64 - 1  # a shard-index entry for a chunk that was never written


class FrameRanges:
    """Where each stored JPEG of one camera lies in the episode file.

    A shard's index (``16 * frames`` little-endian uint64 (offset, nbytes) pairs and a
    crc32c, at the shard's end) is read and checked the first time one of its frames is
    asked for; every frame is then one ``pread`` of its vlen-bytes chunk. See
    :class:`EpisodeReader` for why.
    """

    def __init__(self, reader: EpisodeReader, camera: str, per_shard: int):
        self.reader, self.camera, self.per_shard = reader, camera, per_shard
        self._shards: dict[int, tuple[int, bytes] | None] = {}  # shard -> (data start, index bytes)

    @classmethod
    def build(cls, reader: EpisodeReader, camera: str, meta: dict[str, Any]) -> FrameRanges | None:
        codecs = meta.get("codecs") or []
        if len(codecs) != 1 or codecs[0] != _FRAME_CODECS or not _default_keys(meta):
            return None
        prefix = f"{image_array(camera)}/c/"
        if any(name.startswith(prefix) and info.compress_type != zipfile.ZIP_STORED
               for name, info in reader._members.items()):
            return None  # a deflated shard has no byte ranges to read; zarr inflates it
        return cls(reader, camera, int(meta["chunk_grid"]["configuration"]["chunk_shape"][0]))

    def _shard(self, shard: int) -> tuple[int, bytes] | None:
        if shard not in self._shards:
            located = self.reader._locate(f"{image_array(self.camera)}/c/{shard}")
            if located is None:
                self._shards[shard] = None  # never written: every frame of it reads as the fill value
            else:
                start, length = located
                size = 16 * self.per_shard + 4
                raw = os.pread(self.reader._fh, size, start + length - size)
                if len(raw) != size or google_crc32c.value(raw[:-4]) != struct.unpack_from("<I", raw, size - 4)[0]:
                    raise StoreError(f"{self.reader.path}: {image_array(self.camera)} shard {shard}: shard index "
                                     f"checksum mismatch (corrupt file)")
                self._shards[shard] = (start, raw)
        return self._shards[shard]

    def locate(self, index: int) -> tuple[int, int] | None:
        """(file offset, size) of frame ``index``'s vlen-bytes chunk, or None if it was never written."""
        shard = self._shard(index // self.per_shard)
        if shard is None:
            return None
        offset, size = struct.unpack_from("<QQ", shard[1], 16 * (index % self.per_shard))
        return None if offset == _MISSING else (shard[0] + offset, size)

    def read(self, index: int) -> bytes:
        located = self.locate(index)
        if located is None:
            return b""
        offset, size = located
        chunk = os.pread(self.reader._fh, size, offset)
        if len(chunk) < 8:
            raise StoreError(f"frame {index}: truncated chunk ({len(chunk)} of {size} bytes)")
        count, length = struct.unpack_from("<II", chunk)
        if count != 1 or length != size - 8:
            raise StoreError(f"frame {index}: chunk holds {count} items of {length} bytes, expected 1 of {size - 8}")
        return chunk[8:]


def _default_keys(meta: dict[str, Any]) -> bool:
    enc = meta.get("chunk_key_encoding") or {}
    return enc.get("name") == "default" and (enc.get("configuration") or {}).get("separator", "/") == "/"


def _single_chunk_codecs(meta: dict[str, Any]) -> bool | None:
    """Whether a whole array sits in one chunk of little-endian bytes, as the writer stores low-dim arrays.

    Returns None when it does not (zarr reads it), else whether the chunk is zstd-compressed
    (stores written before low-dim arrays were kept uncompressed) or plain.
    """
    codecs = meta.get("codecs") or []
    if not codecs or codecs[0].get("name") != "bytes" or len(codecs) > 2:
        return None
    if len(codecs) == 2 and codecs[1].get("name") != "zstd":
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if (endian == "little" and not meta.get("storage_transformers") and _default_keys(meta)
            and list(meta["chunk_grid"]["configuration"]["chunk_shape"]) == list(meta["shape"])):
        return len(codecs) == 2
    return None


class EpisodeReader:
    """One episode file. Random access: reading frame ``i`` touches only that frame's bytes.

    Reads go straight to the file for what the writer produces: the metadata from the
    group's ``zarr.json``, each low-dimensional array from its single zstd chunk, each
    frame as one ``pread`` located by its shard index (the file is an uncompressed ZIP, so
    every member is a contiguous byte range). Through zarr-python these cost about 3 ms
    a frame and 7 ms to open an episode and read its arrays, against 0.6 ms to decode a
    224x224 JPEG: a training loader drawing frames uniformly over many episodes would
    spend most of its time there. Anything else (another codec chain, a compressed
    member, a missing chunk) is read through zarr, which also stays the reference: the
    validator reads through it, and tests hold both paths to identical bytes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._ranges: dict[str, FrameRanges | None] = {}
        self._zip: zarr.storage.ZipStore | None = None
        self._fh: int | None = os.open(self.path, os.O_RDONLY)
        try:
            with zipfile.ZipFile(self.path) as zf:
                self._members = {i.filename: i for i in zf.infolist()}
            root = self._json("zarr.json")
            self.meta: dict[str, Any] = dict(root["attributes"][EPISODE_ATTR])
        except KeyError as exc:
            self.close()
            raise StoreError(f"{self.path}: no '{EPISODE_ATTR}' attribute; not an a1pipe episode") from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._fh is not None:
            os.close(self._fh)
            self._fh = None

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def group(self) -> zarr.Group:
        """The episode as a zarr group (the reference reader; opened on first use)."""
        self._zip = zarr.storage.ZipStore(self.path, mode="r")
        return zarr.open_group(self._zip, mode="r")

    def _locate(self, name: str) -> tuple[int, int] | None:
        """(offset, length) of a stored member's bytes, or None if absent or compressed."""
        info = self._members.get(name)
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            return None
        header = os.pread(self._fh, 30, info.header_offset)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise StoreError(f"{self.path}: {name}: bad local file header")
        name_len, extra_len = struct.unpack_from("<HH", header, 26)
        return info.header_offset + 30 + name_len + extra_len, info.compress_size

    def _member(self, name: str) -> bytes | None:
        located = self._locate(name)
        if located is None:
            return None
        data = os.pread(self._fh, located[1], located[0])
        if len(data) != located[1]:
            raise StoreError(f"{self.path}: {name}: truncated ({len(data)} of {located[1]} bytes)")
        return data

    def _json(self, name: str) -> dict[str, Any]:
        data = self._member(name)
        if data is None:
            if name not in self._members:
                raise KeyError(name)
            with zipfile.ZipFile(self.path) as zf:  # a compressed member: let zipfile inflate it
                data = zf.read(name)
        return json.loads(data)

    def _array(self, name: str) -> np.ndarray:
        """A whole low-dimensional array: its one chunk decoded directly, else through zarr."""
        meta = self._json(f"{name}/zarr.json")
        compressed = _single_chunk_codecs(meta)
        if compressed is not None:
            key = f"{name}/c/" + "/".join("0" * len(meta["shape"])) if meta["shape"] else f"{name}/c"
            chunk = self._member(key)
            if chunk is not None:
                dtype = np.dtype(meta["data_type"]).newbyteorder("<")
                raw = numcodecs.Zstd().decode(chunk) if compressed else chunk
                expected = int(np.prod(meta["shape"], dtype=np.int64)) * dtype.itemsize
                if len(raw) != expected:
                    raise StoreError(f"{self.path}: {name}: chunk holds {len(raw)} bytes, its shape needs {expected}")
                return np.frombuffer(raw, dtype=dtype).reshape(meta["shape"]).astype(dtype.newbyteorder("="))
        return self.group[name][:]

    def has_array(self, name: str) -> bool:
        return f"{name}/zarr.json" in self._members

    @property
    def episode_id(self) -> str:
        return self.meta[MetaKey.EPISODE_ID]

    @property
    def num_frames(self) -> int:
        return int(self.meta[MetaKey.NUM_FRAMES])

    @property
    def cameras(self) -> list[str]:
        return sorted(self.meta[MetaKey.CAMERAS])

    @cached_property
    def timestamp(self) -> np.ndarray:
        return self._array(TIMESTAMP)

    @cached_property
    def state(self) -> np.ndarray:
        return self._array(STATE)

    @cached_property
    def action(self) -> np.ndarray:
        return self._array(ACTION)

    def subtasks(self) -> list[str | None] | None:
        if not self.has_array(SUBTASK_INDEX):
            return None
        texts = list(self._json(f"{SUBTASK_INDEX}/zarr.json")["attributes"][SUBTASK_TEXTS_ATTR])
        return [texts[i] if i >= 0 else None for i in self._array(SUBTASK_INDEX).tolist()]

    def extra(self, name: str) -> np.ndarray:
        if not self.has_array(extra_array(name)):
            raise KeyError(f"{self.episode_id} has no extra {name!r} (extras: {sorted(self.meta[MetaKey.EXTRAS])})")
        return self._array(extra_array(name))

    def encoded_frame(self, camera: str, index: int) -> bytes:
        """The stored JPEG bytes of one frame: one read of exactly those bytes."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range for {self.episode_id} ({self.num_frames} frames)")
        ranges = self._frame_ranges(camera)
        if ranges is None:
            return _unwrap(self.group[image_array(camera)][index : index + 1])
        return ranges.read(index)

    def _frame_ranges(self, camera: str) -> FrameRanges | None:
        if camera not in self._ranges:
            if camera not in self.meta[MetaKey.CAMERAS]:
                raise KeyError(f"{self.episode_id} has no camera {camera!r} (cameras: {self.cameras})")
            self._ranges[camera] = FrameRanges.build(self, camera, self._json(f"{image_array(camera)}/zarr.json"))
        return self._ranges[camera]

    def frame(self, camera: str, index: int) -> np.ndarray:
        return decode_jpeg(self.encoded_frame(camera, index))

    def encoded_frames(self, camera: str, start: int = 0, stop: int | None = None, block: int = 64) -> Iterator[bytes]:
        """The stored JPEG bytes of frames ``start..stop``, read a shard-friendly block at a time."""
        stop = self.num_frames if stop is None else stop
        arr = self.group[image_array(camera)]
        for lo in range(start, stop, block):
            for item in np.asarray(arr[lo : min(lo + block, stop)], dtype=object).reshape(-1):
                yield _unwrap(item)

    def frames(self, camera: str, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        for data in self.encoded_frames(camera, start, stop):
            yield decode_jpeg(data)

    def to_episode(self) -> Episode:
        """The episode as an in-memory record (frames stream lazily while this reader is open)."""
        meta = self.meta
        source, converter, language = meta[MetaKey.SOURCE], meta[MetaKey.CONVERTER], meta[MetaKey.LANGUAGE]
        cams = {
            name: CameraStream(name=name, num_frames=self.num_frames, open_frames=lambda n=name: self.frames(n))
            for name in self.cameras
        }
        return Episode(
            source_episode=source[SourceKey.EPISODE],
            embodiment=meta[MetaKey.EMBODIMENT],
            robot_type=meta[MetaKey.ROBOT_TYPE],
            control_hz=meta[MetaKey.CONTROL_HZ],
            timestamp=self.timestamp,
            timestamp_origin=TimestampOrigin(meta[MetaKey.TIMESTAMP_ORIGIN]),
            state=self.state,
            state_names=list(meta[MetaKey.STATE_NAMES]),
            action=self.action,
            action_names=list(meta[MetaKey.ACTION_NAMES]),
            action_kind=ActionKind(meta[MetaKey.ACTION_KIND]),
            instruction=language[LanguageKey.INSTRUCTION],
            instruction_alternatives=list(language[LanguageKey.ALTERNATIVES]),
            subtasks=self.subtasks(),
            cameras=cams,
            extras={k: self.extra(k) for k in meta[MetaKey.EXTRAS]},
            extra_names={k: list(v[ExtraKey.NAMES]) for k, v in meta[MetaKey.EXTRAS].items()},
            metadata=dict(meta[MetaKey.METADATA]),
            source=source[SourceKey.NAME],
            source_version=source[SourceKey.VERSION],
            converter_version=converter[ConverterKey.VERSION],
            converter="" if converter[ConverterKey.NAME] == source[SourceKey.NAME] else converter[ConverterKey.NAME],
        )


class EpisodeStore:
    """A store directory: ``a1pipe_store.json``, ``index.parquet``, ``stats.json``, ``episodes/``."""

    def __init__(self, root: str | Path, *, location: str | None = None):
        self.root = Path(root)
        #: where the store lives, for messages: ``root``, or the object-store prefix ``root`` holds
        #: files of (:meth:`staged`)
        self.location = location or str(self.root)
        marker = self.root / STORE_MARKER
        if not marker.is_file():
            raise StoreError(f"{self.location}: not an a1pipe store (no {STORE_MARKER})")
        self.info = json.loads(marker.read_text())
        if self.info.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{self.location}: format_version {self.info.get('format_version')!r}, this a1pipe reads {FORMAT_VERSION}"
            )

    @staticmethod
    @contextlib.contextmanager
    def staged(root: str | Path, *files: str) -> Iterator[EpisodeStore]:
        """The store at ``root``, a directory or an object-store prefix (``s3://``, ``gs://``), with
        its marker and those of ``files`` it has readable on this machine's disk for the block:
        a store on disk is read in place; from an object store they are downloaded, and nothing
        else of the store is."""
        from pipelines import storage

        where = storage.at(root)
        with where.working_copy(fetch=where.present(STORE_MARKER, *files)) as local:
            yield EpisodeStore(local, location=where.root)

    @staticmethod
    def create(root: str | Path) -> EpisodeStore:
        """Open a store, creating an empty one (marker only) if the directory has none."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        marker = root / STORE_MARKER
        if not marker.exists():
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"format": STORE_FORMAT, "format_version": FORMAT_VERSION}, indent=2) + "\n"
            )
            tmp.replace(marker)
        return EpisodeStore(root)

    def index(self) -> pa.Table:
        return pq.read_table(self.root / INDEX_FILE)

    def stats(self) -> dict[str, Any]:
        return json.loads((self.root / STATS_FILE).read_text())

    def episode_path(self, episode_id: str) -> Path:
        return self.root / episode_relpath(episode_id)

    def open_episode(self, episode_id: str) -> EpisodeReader:
        path = self.episode_path(episode_id)
        if not path.is_file():
            raise KeyError(f"episode {episode_id} not in store {self.location}")
        return EpisodeReader(path)

    def episode_files(self) -> list[Path]:
        """Every published episode file (sorted), whether or not the index lists it."""
        base = self.root / EPISODES_DIR
        return sorted(base.glob(f"*/*/*{EPISODE_SUFFIX}")) if base.is_dir() else []
