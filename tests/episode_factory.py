"""Build synthetic in-memory episodes for store tests (no source format involved)."""

from __future__ import annotations

import numpy as np

from pipelines.episode_store import ActionKind, CameraStream, Episode


def make_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth images (gradients + a moving square) so JPEG error is small and realistic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 90)], -1)
    frames = np.repeat(base[None].astype(np.uint8), n, axis=0)
    color = rng.integers(0, 255, 3)
    for i in range(n):
        x = (i * 3) % max(w - 10, 1)
        frames[i, 10:20, x : x + 10] = color
    return frames


def make_episode(
    n: int = 30,
    *,
    ref: str = "task/episode_0.hdf5",
    embodiment: str = "franka",
    state_dim: int = 8,
    action_dim: int = 8,
    cameras: tuple[str, ...] = ("top", "wrist"),
    seed: int = 0,
    source: str = "inhouse",
    subtasks: bool = True,
) -> Episode:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 10.0
    state = np.cumsum(rng.normal(0, 0.01, (n, state_dim)), axis=0).astype(np.float32)
    action = (state + rng.normal(0, 0.001, (n, action_dim if action_dim == state_dim else state_dim)))[:, :action_dim]
    return Episode(
        source_episode=ref,
        embodiment=embodiment,
        robot_type=embodiment,
        control_hz=10.0,
        timestamp=t,
        state=state,
        state_names=[f"joint_{i}" for i in range(state_dim)],
        action=action.astype(np.float32),
        action_names=[f"target_joint_{i}" for i in range(action_dim)],
        action_kind=ActionKind.JOINT_POSITION,
        instruction="pick up the red cube",
        instruction_alternatives=["grasp the cube"],
        subtasks=(["reach"] * (n // 2) + [None] * (n - n // 2)) if subtasks else None,
        cameras={c: CameraStream.from_array(c, make_frames(n, seed=seed + k)) for k, c in enumerate(cameras)},
        extras={"qvel": rng.normal(size=(n, state_dim)).astype(np.float32)},
        extra_names={"qvel": [f"joint_{i}_vel" for i in range(state_dim)]},
        metadata={"sim": False, "operator": "a"},
        source=source,
        source_version="test-1",
        converter_version="0.0.1",
    )


def die_after_encoding(frames: int) -> None:
    """Make this process exit abruptly (no cleanup, like SIGKILL) once ``frames`` JPEGs were encoded.

    Only for forked child processes in atomicity tests.
    """
    import os

    import pipelines.episode_store.writer as writer

    calls = {"n": 0}
    real = writer.encode_jpeg

    def dying(im, quality):
        calls["n"] += 1
        if calls["n"] > frames:
            os._exit(9)
        return real(im, quality)

    writer.encode_jpeg = dying
