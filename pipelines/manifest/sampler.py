"""Draw training frames with exactly a manifest's probabilities, reproducibly, sharded without overlap.

A manifest gives every episode a probability (equal share per dataset, then per
embodiment, then per episode or per kept frame) and its kept frame ranges. A frame's
probability is its episode's probability spread uniformly over the episode's kept frames.

Each epoch is one global sequence of draws fixed by ``(seed, epoch)``: ``seed`` is the run's
draw seed (training's), not the manifest's ``split_seed``, which fixed the splits read here.
A data-loader worker on a distributed rank takes every ``world_size * num_workers``-th draw
starting at its own slot, so the shards of an epoch are disjoint and together are the whole
sequence, whatever the worker and rank layout. :meth:`ManifestSampler.batches` shards the same
sequence by whole batches instead, so what a rank trains on does not depend on how many
loader workers it uses, and a run can resume at any batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.manifest.format import load_manifest


@dataclass(frozen=True)
class FrameRef:
    episode: int  # row of the manifest's episode table
    frame: int  # source-frame index inside the episode


class ManifestSampler:
    """Sample ``(episode row, frame index)`` pairs with probability ``p_episode / kept_frames``."""

    def __init__(
        self,
        episode_probability: Sequence[float],
        kept_ranges: Sequence[Sequence[tuple[int, int]]],
        *,
        seed: int = 0,
        samples_per_epoch: int | None = None,
    ):
        p = np.asarray(episode_probability, dtype=np.float64)
        if p.ndim != 1 or len(p) != len(kept_ranges):
            raise ValueError(f"{len(p)} probabilities for {len(kept_ranges)} episodes")
        negative = np.flatnonzero(p < 0)
        if negative.size:
            raise ValueError(f"episode probabilities must be >= 0: row {negative[0]} has {float(p[negative[0]])!r}")
        if not np.isclose(p.sum(), 1.0, rtol=0, atol=1e-9):
            raise ValueError(f"episode probabilities must sum to 1 within 1e-9 (sum {float(p.sum())!r})")
        self.p = p / p.sum()
        self.ranges = [np.asarray(r, dtype=np.int64).reshape(-1, 2) for r in kept_ranges]
        self.lengths = np.array([int((r[:, 1] - r[:, 0]).sum()) for r in self.ranges], dtype=np.int64)
        empty = np.flatnonzero((self.lengths == 0) & (self.p > 0))
        if empty.size:
            raise ValueError(f"episode rows {empty[:5].tolist()} have probability but no kept frames")
        self.cdf = np.cumsum(self.p)
        self.cdf[-1] = 1.0
        self.seed = int(seed)
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1 or None (all kept frames), got {samples_per_epoch!r}")
        self.samples_per_epoch = int(self.lengths.sum() if samples_per_epoch is None else samples_per_epoch)
        self.rows: list[dict[str, Any]] | None = None  # the manifest's table rows, when built from one

    @classmethod
    def from_manifest(cls, manifest_dir: str | Path, *, split: str = "train", seed: int = 0,
                      samples_per_epoch: int | None = None) -> ManifestSampler:
        """A sampler over one split of a released manifest; ``self.rows[i]`` is the table row of episode ``i``.

        Training reads the manifest, never the stores' own tables, so what it samples is
        exactly what the auditor verified.
        """
        _, table = load_manifest(manifest_dir)
        rows = [r for r in table if r["split"] == split]
        if not rows:
            raise ValueError(f"{manifest_dir}: no episodes in split {split!r}")
        sampler = cls([r["probability"] for r in rows],
                      [[(k["start"], k["stop"]) for k in r["kept_ranges"]] for r in rows],
                      seed=seed, samples_per_epoch=samples_per_epoch)
        sampler.rows = rows
        return sampler

    def frame_probability(self, episode: int) -> float:
        """Probability of each kept frame of an episode (the manifest's definition, for audits)."""
        return float(self.p[episode] / self.lengths[episode]) if self.lengths[episode] else 0.0

    def epoch(self, epoch: int) -> np.ndarray:
        """The epoch's global draw sequence: an int64 array [samples_per_epoch, 2] of (episode, frame)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n = self.samples_per_epoch
        episodes = np.searchsorted(self.cdf, rng.random(n), side="right").clip(max=len(self.p) - 1)
        offsets = (rng.random(n) * self.lengths[episodes]).astype(np.int64)
        frames = np.empty(n, dtype=np.int64)
        for e in np.unique(episodes):
            mask = episodes == e
            r = self.ranges[e]
            ends = np.cumsum(r[:, 1] - r[:, 0])
            which = np.searchsorted(ends, offsets[mask], side="right")
            before = np.r_[0, ends][which]
            frames[mask] = r[which, 0] + offsets[mask] - before
        return np.stack([episodes, frames], axis=1)

    def shard(self, epoch: int, *, rank: int = 0, world_size: int = 1, worker: int = 0,
              num_workers: int = 1) -> Iterator[FrameRef]:
        """This (rank, worker)'s share of the epoch: draws ``slot, slot + stride, ...``."""
        if not (0 <= rank < world_size and 0 <= worker < num_workers):
            raise ValueError(f"rank {rank}/{world_size}, worker {worker}/{num_workers} out of range")
        stride = world_size * num_workers
        slot = rank * num_workers + worker
        for episode, frame in self.epoch(epoch)[slot::stride]:
            yield FrameRef(int(episode), int(frame))

    def batches_per_epoch(self, batch_size: int, world_size: int = 1) -> int:
        """Whole global batches (``batch_size`` per rank) in an epoch; the incomplete tail is not drawn."""
        if batch_size < 1 or world_size < 1:
            raise ValueError(f"batch_size {batch_size} and world_size {world_size} must be >= 1")
        return self.samples_per_epoch // (batch_size * world_size)

    def batches(self, epoch: int, batch_size: int, *, rank: int = 0, world_size: int = 1, worker: int = 0,
                num_workers: int = 1, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """This (rank, worker)'s batches: ``(batch index, draw positions [B], (episode, frame) rows [B, 2])``.

        The epoch's draws are cut into global batches of ``batch_size * world_size``
        consecutive draws; rank ``r`` takes rows ``r * batch_size ..`` of each. Loader worker
        ``w`` of ``num_workers`` takes batches ``start + w, start + w + num_workers, ...``: a
        PyTorch DataLoader collects from its workers round-robin, so the rank receives
        batches ``start, start + 1, ...`` in order, the same batches whatever the number of
        workers, and a run resumed at batch ``start`` sees exactly what it would have seen.
        Draw positions index the epoch's sequence: a per-sample key independent of the layout.
        """
        if not (0 <= rank < world_size and 0 <= worker < num_workers):
            raise ValueError(f"rank {rank}/{world_size}, worker {worker}/{num_workers} out of range")
        total = self.batches_per_epoch(batch_size, world_size)
        if not 0 <= start <= total:
            raise ValueError(f"start batch {start} outside 0..{total}")
        draws = self.epoch(epoch)
        for b in range(start + worker, total, num_workers):
            lo = (b * world_size + rank) * batch_size
            positions = np.arange(lo, lo + batch_size, dtype=np.int64)
            yield b, positions, draws[lo: lo + batch_size]
