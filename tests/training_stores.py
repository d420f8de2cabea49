"""Constructed stores and manifests with exact, recognisable content for the training-data tests.

Every value encodes where it came from: ``state[t, j] = 1000 t + j``, ``action[t, j] =
100000 + 1000 t + j`` (exact in float32), and every frame of camera ``k`` is a flat colour
``(20 + 40 k, 5 t mod 250, 128)``, which survives JPEG within a few levels. A test can
therefore read a sample and say exactly which episode, frame, dimension and camera each
number and pixel came from.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.episode_store import ActionKind, CameraStream, Episode
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.index import CURATION_SCHEMA, rebuild_index_and_stats
from pipelines.episode_store.layout import CURATION_FILE, episode_id
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.writer import write_episode
from pipelines.manifest.build import ManifestParams, build_manifest

FRANKA_NAMES = [f"joint{i}" for i in range(1, 8)] + ["gripper"]
ALOHA_NAMES = ([f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
               + [f"right_joint{i}" for i in range(1, 7)] + ["right_gripper"])
FRANKA_CAMERAS = ("cam_front", "cam_wrist")
ALOHA_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def state_value(t: int, j: int) -> float:
    return 1000.0 * t + j


def action_value(t: int, j: int) -> float:
    return 100000.0 + 1000.0 * t + j


def camera_colour(k: int, t: int) -> tuple[int, int, int]:
    return 20 + 40 * k, (5 * t) % 250, 128


def coded_episode(ref: str, n: int, *, embodiment: str = "franka", names: list[str] | None = None,
                  cameras: tuple[str, ...] = FRANKA_CAMERAS, size: tuple[int, int] = (64, 64),
                  instruction: str = "pick up the cube", subtasks: list[str | None] | None = None,
                  action_padded: list[bool] | None = None, source: str = "inhouse") -> Episode:
    names = list(names or FRANKA_NAMES)
    t = np.arange(n)
    grid = np.add.outer(1000.0 * t, np.arange(len(names)))
    frames = {}
    for k, cam in enumerate(cameras):
        arr = np.zeros((n, size[0], size[1], 3), dtype=np.uint8)
        for i in range(n):
            arr[i] = camera_colour(k, i)
        frames[cam] = CameraStream.from_array(cam, arr)
    extras, extra_names = {}, {}
    if action_padded is not None:
        extras["action_padded"] = np.asarray(action_padded, dtype=bool).reshape(n, 1)
        extra_names["action_padded"] = ["action_padded"]
    return Episode(
        source_episode=ref, embodiment=embodiment, robot_type=embodiment, control_hz=10.0,
        timestamp=t / 10.0, state=grid.astype(np.float32), state_names=names,
        action=(grid + 100000.0).astype(np.float32), action_names=list(names),
        action_kind=ActionKind.JOINT_POSITION, instruction=instruction, instruction_alternatives=[],
        subtasks=subtasks, cameras=frames, extras=extras, extra_names=extra_names, metadata={"sim": True},
        source=source, source_version="test-1", converter_version="0.0.1",
    )


def build_store(root: Path, episodes: list[Episode], kept: dict[str, list[tuple[int, int]]] | None = None,
                size: tuple[int, int] = (64, 64)) -> Path:
    """A curated store: the episodes, their index and statistics, and ``curation.parquet`` keeping ``kept``."""
    kept = kept or {}
    EpisodeStore.create(root)
    config = ImageConfig(height=size[0], width=size[1], resize="pad", quality=95)
    for ep in episodes:
        write_episode(ep, root, config)
    rebuild_index_and_stats(root)
    rows: list[dict[str, Any]] = []
    store = EpisodeStore(root)
    for r in store.index().to_pylist():
        ranges = kept.get(r["source_episode"], [(0, r["num_frames"])])
        removed, previous = [], 0
        for a, b in ranges + [(r["num_frames"], r["num_frames"])]:
            if a > previous:
                removed.append({"start": previous, "stop": a, "reason": "static_run", "message": "test"})
            previous = b
        with store.open_episode(r["episode_id"]) as ep:
            digest = ep.meta["content_sha256"]
        rows.append({"episode_id": r["episode_id"], "source": r["source"], "embodiment": r["embodiment"],
                     "status": "kept", "reason": None, "message": "", "frames_in": r["num_frames"],
                     "frames_kept": sum(b - a for a, b in ranges),
                     "kept_ranges": [{"start": a, "stop": b} for a, b in ranges], "removed_ranges": removed,
                     "content_sha256": digest})
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATION_SCHEMA), root / CURATION_FILE)
    return root


def build_test_manifest(stores: list[Path], out: Path, *, name: str = "toy", validation_fraction: float = 0.0,
                        within: str = "frames") -> Path:
    build_manifest(stores, out, ManifestParams(name=name, within=within, validation_fraction=validation_fraction))
    return out


def eid(ref: str, source: str = "inhouse") -> str:
    return episode_id(source, ref)


COLOURS = ((220, 40, 40), (40, 200, 60), (50, 70, 230))


def colour_task_episode(ref: str, colour: int, n: int = 24, size: int = 64) -> Episode:
    """An episode whose every action is fixed by the colour its front camera sees (the wrist camera is grey):
    a policy can only predict it by looking. The instruction and the state say nothing about the colour."""
    rng = np.random.default_rng(zlib.crc32(ref.encode()))
    names = list(FRANKA_NAMES)
    target = np.array([1.0, -1.0, 0.5, -0.5, 0.25, -0.25, 0.75, 0.0], dtype=np.float32) * (colour - 1) * 2
    front = np.zeros((n, size, size, 3), dtype=np.uint8)
    front[:] = COLOURS[colour]
    wrist = np.full((n, size, size, 3), 128, dtype=np.uint8)
    state = rng.normal(0, 0.3, (n, len(names))).astype(np.float32)
    action = np.repeat(target[None], n, axis=0) + rng.normal(0, 0.02, (n, len(names))).astype(np.float32)
    return Episode(
        source_episode=ref, embodiment="franka", robot_type="franka", control_hz=10.0, timestamp=np.arange(n) / 10.0,
        state=state, state_names=names, action=action.astype(np.float32), action_names=list(names),
        action_kind=ActionKind.JOINT_POSITION, instruction="do the task", instruction_alternatives=[], subtasks=None,
        cameras={"cam_front": CameraStream.from_array("cam_front", front),
                 "cam_wrist": CameraStream.from_array("cam_wrist", wrist)},
        extras={}, extra_names={}, metadata={"sim": True}, source="inhouse", source_version="test-1",
        converter_version="0.0.1")
