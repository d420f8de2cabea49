"""Read a store: its index, statistics and any frame of any episode."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from . import FORMAT_VERSION
from .images import decode_jpeg
from .layout import (
    EPISODE_ATTR,
    EPISODE_SUFFIX,
    EPISODES_DIR,
    INDEX_FILE,
    STATS_FILE,
    STORE_MARKER,
    episode_relpath,
)
from .record import ActionKind, CameraStream, Episode, TimestampOrigin

warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")


class StoreError(Exception):
    """The path is not a readable episode store."""


def _unwrap(value: Any) -> bytes:
    while isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return bytes(value)


class EpisodeReader:
    """One episode file. Random access: reading frame ``i`` touches only that frame's bytes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip = zarr.storage.ZipStore(self.path, mode="r")
        self.group = zarr.open_group(self._zip, mode="r")
        try:
            self.meta: dict[str, Any] = dict(self.group.attrs[EPISODE_ATTR])
        except KeyError as exc:
            self.close()
            raise StoreError(f"{self.path}: no '{EPISODE_ATTR}' attribute; not an a1pipe episode") from exc

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def episode_id(self) -> str:
        return self.meta["episode_id"]

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def cameras(self) -> list[str]:
        return sorted(self.meta["cameras"])

    @cached_property
    def timestamp(self) -> np.ndarray:
        return self.group["timestamp"][:]

    @cached_property
    def state(self) -> np.ndarray:
        return self.group["state"][:]

    @cached_property
    def action(self) -> np.ndarray:
        return self.group["action"][:]

    def subtasks(self) -> list[str | None] | None:
        if "language" not in self.group or "subtask_index" not in self.group["language"]:
            return None
        arr = self.group["language/subtask_index"]
        texts = list(arr.attrs["texts"])
        return [texts[i] if i >= 0 else None for i in arr[:].tolist()]

    def extra(self, name: str) -> np.ndarray:
        return self.group[f"extras/{name}"][:]

    def encoded_frame(self, camera: str, index: int) -> bytes:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range for {self.episode_id} ({self.num_frames} frames)")
        return _unwrap(self.group[f"images/{camera}"][index : index + 1])

    def frame(self, camera: str, index: int) -> np.ndarray:
        return decode_jpeg(self.encoded_frame(camera, index))

    def encoded_frames(self, camera: str, start: int = 0, stop: int | None = None, block: int = 64) -> Iterator[bytes]:
        """The stored JPEG bytes of frames ``start..stop``, read a shard-friendly block at a time."""
        stop = self.num_frames if stop is None else stop
        arr = self.group[f"images/{camera}"]
        for lo in range(start, stop, block):
            for item in np.asarray(arr[lo : min(lo + block, stop)], dtype=object).reshape(-1):
                yield _unwrap(item)

    def frames(self, camera: str, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        for data in self.encoded_frames(camera, start, stop):
            yield decode_jpeg(data)

    def to_episode(self) -> Episode:
        """The episode as an in-memory record (frames stream lazily while this reader is open)."""
        meta = self.meta
        cams = {
            name: CameraStream(name=name, num_frames=self.num_frames, open_frames=lambda n=name: self.frames(n))
            for name in self.cameras
        }
        return Episode(
            source_episode=meta["source"]["episode"],
            embodiment=meta["embodiment"],
            robot_type=meta["robot_type"],
            control_hz=meta["control_hz"],
            timestamp=self.timestamp,
            timestamp_origin=TimestampOrigin(meta["timestamp_origin"]),
            state=self.state,
            state_names=list(meta["state_names"]),
            action=self.action,
            action_names=list(meta["action_names"]),
            action_kind=ActionKind(meta["action_kind"]),
            instruction=meta["language"]["instruction"],
            instruction_alternatives=list(meta["language"]["alternatives"]),
            subtasks=self.subtasks(),
            cameras=cams,
            extras={k: self.extra(k) for k in meta["extras"]},
            extra_names={k: list(v["names"]) for k, v in meta["extras"].items()},
            metadata=dict(meta["metadata"]),
            source=meta["source"]["name"],
            source_version=meta["source"]["version"],
            converter_version=meta["converter"]["version"],
        )


class EpisodeStore:
    """A store directory: ``a1pipe_store.json``, ``index.parquet``, ``stats.json``, ``episodes/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        marker = self.root / STORE_MARKER
        if not marker.is_file():
            raise StoreError(f"{self.root}: not an a1pipe store (no {STORE_MARKER})")
        self.info = json.loads(marker.read_text())
        if self.info.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{self.root}: format_version {self.info.get('format_version')!r}, this a1pipe reads {FORMAT_VERSION}"
            )

    @staticmethod
    def create(root: str | Path) -> EpisodeStore:
        """Open a store, creating an empty one (marker only) if the directory has none."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        marker = root / STORE_MARKER
        if not marker.exists():
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"format": "a1pipe-episode-store", "format_version": FORMAT_VERSION}, indent=2) + "\n"
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
            raise KeyError(f"episode {episode_id} not in store {self.root}")
        return EpisodeReader(path)

    def episode_files(self) -> list[Path]:
        """Every published episode file (sorted), whether or not the index lists it."""
        base = self.root / EPISODES_DIR
        return sorted(base.glob(f"*/*/*{EPISODE_SUFFIX}")) if base.is_dir() else []
