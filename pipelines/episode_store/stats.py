"""Mergeable per-dimension statistics of state and action (count, mean, std, min, max, q01, q99).

Statistics are computed per (source, embodiment) in the conversion pipeline and
merged into per-source figures by dimension *name*, because embodiments of one
source rarely share a vector layout. The stored values stay unnormalised (the A1
paper trains without cross-dataset normalisation); these figures are for
training-time transforms, curation thresholds and audits.

Mean/variance use Chan et al.'s parallel update (exact up to float64 rounding,
independent of merge order). Quantiles use Beam's mergeable approximate-quantiles
sketch (``ApproximateQuantilesCombineFn``) with rank error ``QUANTILE_EPSILON``,
so memory stays bounded at any dataset size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .schema import STAT_KEYS, STATE, VECTORS

QUANTILE_EPSILON = 0.005


def _quantile_fn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

    return ApproximateQuantilesCombineFn.create(num_quantiles=101, epsilon=QUANTILE_EPSILON, input_batched=True)


_QFN = None


def quantile_fn():
    global _QFN
    if _QFN is None:
        _QFN = _quantile_fn()
    return _QFN


@dataclass
class DimStats:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    sketch: Any = None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        n = int(values.size)
        if n == 0:
            return
        other = DimStats(
            count=n,
            mean=float(values.mean()),
            m2=float(((values - values.mean()) ** 2).sum()),
            min=float(values.min()),
            max=float(values.max()),
        )
        fn = quantile_fn()
        other.sketch = fn.add_input(fn.create_accumulator(), values.tolist())
        self.merge(other)

    def merge(self, other: DimStats) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            self.min, self.max, self.sketch = other.min, other.max, other.sketch
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sketch = quantile_fn().merge_accumulators([self.sketch, other.sketch])

    def summary(self) -> dict[str, float]:
        q = quantile_fn().extract_output(self.sketch) if self.count else []
        return {
            "count": self.count,
            "mean": self.mean,
            "std": float(np.sqrt(self.m2 / self.count)) if self.count else float("nan"),
            "min": self.min,
            "max": self.max,
            "q01": float(q[1]) if q else float("nan"),
            "q99": float(q[99]) if q else float("nan"),
        }


@dataclass
class FeatureStats:
    """Statistics of one field over many episodes, keyed by dimension name."""

    dims: dict[str, DimStats] = field(default_factory=dict)

    def add(self, values: np.ndarray, names: list[str]) -> None:
        values = np.asarray(values)
        for j, name in enumerate(names):
            self.dims.setdefault(name, DimStats()).add(values[:, j])

    def merge(self, other: FeatureStats) -> None:
        for name, dim in other.dims.items():
            self.dims.setdefault(name, DimStats()).merge(dim)

    def summary(self, order: list[str] | None = None) -> dict[str, list]:
        names = order if order is not None else list(self.dims)
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
    #: dimension order as first seen, per field (the embodiment's layout)
    names: dict[str, list[str]] = field(default_factory=lambda: {f: [] for f in VECTORS})

    @classmethod
    def of_episode(cls, arrays: dict[str, np.ndarray], names: dict[str, list[str]]) -> EpisodeSetStats:
        stats = cls(episodes=1, frames=int(len(arrays[STATE])))
        for f in VECTORS:
            stats.fields[f].add(arrays[f], names[f])
            stats.names[f] = list(names[f])
        return stats

    def merge(self, other: EpisodeSetStats) -> EpisodeSetStats:
        self.episodes += other.episodes
        self.frames += other.frames
        for f in VECTORS:
            self.fields[f].merge(other.fields[f])
            self.names[f] += [n for n in other.names[f] if n not in self.names[f]]
        return self

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"episodes": self.episodes, "frames": self.frames}
        for f in VECTORS:
            out[f] = self.fields[f].summary(self.names[f])
        return out


def build_stats_document(per_embodiment: dict[tuple[str, str], EpisodeSetStats]) -> dict[str, Any]:
    """``stats.json`` content: per source (merged by dimension name) and per embodiment.

    Embodiments are merged in sorted order so the document is deterministic.
    """
    sources: dict[str, Any] = {}
    for source in sorted({s for s, _ in per_embodiment}):
        merged = EpisodeSetStats()
        embodiments = {}
        for (s, emb) in sorted(k for k in per_embodiment if k[0] == source):
            merged.merge(_copy(per_embodiment[(s, emb)]))
            embodiments[emb] = per_embodiment[(s, emb)].summary()
        entry = merged.summary()
        entry["embodiments"] = embodiments
        sources[source] = entry
    return stats_document(sources)


def stats_document(sources: dict[str, Any]) -> dict[str, Any]:
    """``stats.json`` around per-source entries (as :func:`build_stats_document` makes them)."""
    return {"format_version": 1, "quantile_epsilon": QUANTILE_EPSILON, "std_ddof": 0,
            "sources": dict(sorted(sources.items()))}


def _copy(stats: EpisodeSetStats) -> EpisodeSetStats:
    import copy

    return copy.deepcopy(stats)
