"""Mergeable per-dimension statistics of state and action (count, mean, std, min, max, q01, q99).

Statistics are computed per (source, embodiment) in the conversion pipeline and
merged into per-source figures by dimension *name*, because embodiments of one
source rarely share a vector layout. The stored values stay unnormalised (the A1
paper trains without cross-dataset normalisation); these figures are for
training-time transforms, curation thresholds and audits.

Every figure is a function of the *set* of episodes, never of the order in which Beam's workers
merged their partial results, so ``stats.json`` is the same bytes for any run, worker count or
runner (floating-point merges in arrival order made it differ in the last digits):

- count, min and max are exact;
- mean and std: each episode's frames, mean and sum of squared deviations come from its own
  values (``math.fsum``, correctly rounded, so the same on every machine); episodes combine in
  exact rational arithmetic and the result is rounded once;
- q01 and q99 are read from the frames whose *key*, a hash of (episode id, frame index), is
  among the ``QUANTILE_SAMPLE`` smallest: every frame while a dimension has fewer, otherwise a
  uniform sample of that many frames. Which frames those are depends on the set only, and memory
  stays bounded at any dataset size. A sample's rank error at q = 0.01 has a standard deviation
  of sqrt(q (1 - q) / QUANTILE_SAMPLE) = 0.00055; ``QUANTILE_EPSILON``, the tolerance
  ``stats.json`` declares and the validator checks, is nine of them.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .schema import STAT_KEYS, STATE, VECTORS

QUANTILE_EPSILON = 0.005
#: frames per dimension that q01/q99 are read from (all of them, up to this many)
QUANTILE_SAMPLE = 1 << 15


def frame_keys(episode_id: str, frames: int) -> np.ndarray:
    """The sampling keys of an episode's frames: a 64-bit hash of (episode id, frame index)
    (blake2b of the id, then splitmix64's mixer), the same on every machine and in every run."""
    seed = int.from_bytes(hashlib.blake2b(episode_id.encode(), digest_size=8).digest(), "little")
    z = np.arange(frames, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _percentile(ordered: np.ndarray, percent: int) -> float:
    """The smallest value with at least ``percent``% of ``ordered`` at or below it (integer
    arithmetic: ``0.01 * n`` in floating point can land one rank off)."""
    return float(ordered[max((percent * len(ordered) + 99) // 100 - 1, 0)])


def _float(exact: Fraction) -> float:
    """``exact`` rounded once; beyond float range (squares of values near 1e154) infinity."""
    try:
        return float(exact)
    except OverflowError:
        return math.inf


@dataclass
class DimStats:
    count: int = 0
    #: sums over episodes, exact: frames * mean, frames * mean ** 2, and each episode's sum of
    #: squared deviations from its own mean
    total: Fraction = Fraction(0)
    squares: Fraction = Fraction(0)
    deviations: Fraction = Fraction(0)
    min: float = float("inf")
    max: float = float("-inf")
    #: the quantile sample: frame keys and values (a superset of the ``QUANTILE_SAMPLE`` smallest
    #: keys seen; cut down to them when it grows past twice that)
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    values: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    #: no frame with a larger key can be among the smallest ``QUANTILE_SAMPLE`` (None: fewer seen)
    limit: np.uint64 | None = None

    def add(self, values: np.ndarray, keys: np.ndarray) -> None:
        """One episode's values of this dimension, with its frames' :func:`frame_keys`."""
        values = np.asarray(values, dtype=np.float64)
        n = int(values.size)
        if n == 0:
            return
        mean = math.fsum(values.tolist()) / n
        part = DimStats(count=n, total=n * Fraction(mean), squares=n * Fraction(mean) ** 2,
                        deviations=Fraction(math.fsum(((values - mean) ** 2).tolist())),
                        min=float(values.min()), max=float(values.max()), keys=np.asarray(keys, np.uint64),
                        values=values)
        part._compact(QUANTILE_SAMPLE)
        self.merge(part)

    def merge(self, other: DimStats) -> None:
        if other.count == 0:
            return
        self.count += other.count
        self.total += other.total
        self.squares += other.squares
        self.deviations += other.deviations
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        keys, values = other.keys, other.values
        if self.limit is not None:
            keep = keys <= self.limit
            keys, values = keys[keep], values[keep]
        self.keys = np.concatenate([self.keys, keys])
        self.values = np.concatenate([self.values, values])
        if other.limit is not None:  # the union holds QUANTILE_SAMPLE keys up to other's limit too
            self.limit = other.limit if self.limit is None else min(self.limit, other.limit)
        self._compact(2 * QUANTILE_SAMPLE)

    def _compact(self, above: int) -> None:
        """Keep the ``QUANTILE_SAMPLE`` smallest (key, value) pairs once more than ``above`` are held:
        the smallest of a union are among the smallest of its parts, whatever the order."""
        if len(self.keys) > above:
            order = np.lexsort((self.values, self.keys))[:QUANTILE_SAMPLE]
            self.keys, self.values = self.keys[order], self.values[order]
            self.limit = self.keys[-1]

    def summary(self) -> dict[str, float]:
        if not self.count:
            nan = float("nan")
            return {"count": 0, "mean": 0.0, "std": nan, "min": self.min, "max": self.max, "q01": nan, "q99": nan}
        mean = self.total / self.count
        # sum of squared deviations from the overall mean: within episodes, plus between them
        m2 = self.deviations + self.squares - self.total * mean
        self._compact(QUANTILE_SAMPLE)
        ordered = np.sort(self.values)
        return {
            "count": self.count,
            "mean": float(mean),
            "std": math.sqrt(_float(m2 / self.count)),
            "min": self.min,
            "max": self.max,
            "q01": _percentile(ordered, 1),
            "q99": _percentile(ordered, 99),
        }


@dataclass
class FeatureStats:
    """Statistics of one field over many episodes, keyed by dimension name."""

    dims: dict[str, DimStats] = field(default_factory=dict)

    def add(self, values: np.ndarray, names: list[str], keys: np.ndarray) -> None:
        """One episode's values [frames, dims], with its frames' :func:`frame_keys`."""
        values = np.asarray(values)
        for j, name in enumerate(names):
            self.dims.setdefault(name, DimStats()).add(values[:, j], keys)

    def merge(self, other: FeatureStats) -> None:
        for name, dim in other.dims.items():
            self.dims.setdefault(name, DimStats()).merge(dim)

    def summary(self, order: list[str] | None = None) -> dict[str, list]:
        names = order if order is not None else sorted(self.dims)
        per_dim = [self.dims[n].summary() for n in names]
        out: dict[str, list] = {"names": list(names)}
        for key in STAT_KEYS:
            out[key] = [d[key] for d in per_dim]
        return out


@dataclass
class EpisodeSetStats:
    """Stats of a set of episodes (one embodiment, or a whole source)."""

    episodes: int = 0
    frames: int = 0
    fields: dict[str, FeatureStats] = field(default_factory=lambda: {f: FeatureStats() for f in VECTORS})
    #: the dimension layouts seen, per field: a set, so that merging in any order gives one result
    layouts: dict[str, set[tuple[str, ...]]] = field(default_factory=lambda: {f: set() for f in VECTORS})

    @classmethod
    def of_episode(cls, arrays: dict[str, np.ndarray], names: dict[str, list[str]], episode_id: str) -> EpisodeSetStats:
        frames = int(len(arrays[STATE]))
        stats = cls(episodes=1, frames=frames)
        keys = frame_keys(episode_id, frames)
        for f in VECTORS:
            stats.fields[f].add(arrays[f], names[f], keys)
            stats.layouts[f] = {tuple(names[f])}
        return stats

    def merge(self, other: EpisodeSetStats) -> EpisodeSetStats:
        self.episodes += other.episodes
        self.frames += other.frames
        for f in VECTORS:
            self.fields[f].merge(other.fields[f])
            self.layouts[f] |= other.layouts[f]
        return self

    def names(self, f: str) -> list[str]:
        """``f``'s dimension order: the layout's (the embodiment's, as a rule, which has one); of
        several, each name where it first appears in the layouts taken in sorted order."""
        return _first_seen(sorted(self.layouts[f]))

    def summary(self, order: dict[str, list[str]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"episodes": self.episodes, "frames": self.frames}
        for f in VECTORS:
            out[f] = self.fields[f].summary(order[f] if order else self.names(f))
        return out


def _first_seen(layouts) -> list[str]:
    names: dict[str, None] = {}
    for layout in layouts:
        names.update(dict.fromkeys(layout))
    return list(names)


def build_stats_document(per_embodiment: dict[tuple[str, str], EpisodeSetStats]) -> dict[str, Any]:
    """``stats.json`` content: per source (merged by dimension name) and per embodiment.

    A source's dimensions are in the order the embodiments, sorted, first name them.
    """
    sources: dict[str, Any] = {}
    for source in sorted({s for s, _ in per_embodiment}):
        merged = EpisodeSetStats()
        embodiments = {}
        for (s, emb) in sorted(k for k in per_embodiment if k[0] == source):
            merged.merge(copy.deepcopy(per_embodiment[(s, emb)]))
            embodiments[emb] = per_embodiment[(s, emb)].summary()
        order = {f: _first_seen(embodiments[emb][f]["names"] for emb in sorted(embodiments)) for f in VECTORS}
        entry = merged.summary(order)
        entry["embodiments"] = embodiments
        sources[source] = entry
    return stats_document(sources)


def stats_document(sources: dict[str, Any]) -> dict[str, Any]:
    """``stats.json`` around per-source entries (as :func:`build_stats_document` makes them)."""
    return {"format_version": 1, "quantile_epsilon": QUANTILE_EPSILON, "std_ddof": 0,
            "sources": dict(sorted(sources.items()))}
