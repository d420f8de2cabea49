"""State and action normalisation from the stores' ``stats.json``, and its inverse at inference.

Three modes, per dimension, with statistics per normalisation group (``dataset/embodiment``
by default, or ``embodiment`` merged across datasets):

- ``none``: values as stored (A1 pre-trains this way, mixing raw joint angles and poses);
- ``bounds_q99``: ``2 (x - q01) / (q99 - q01) - 1`` clipped to [-1, 1] (OpenVLA, A1's LIBERO
  fine-tune); a dimension with ``q99 == q01`` maps to 0;
- ``mean_std``: ``(x - mean) / (std + 1e-6)`` (openpi, LeRobot).

The default group is ``dataset/embodiment`` because one embodiment id can carry other
conventions in another source (DROID's Franka gripper is closedness in [0, 1],
RoboChallenge's is an opening in metres). A group found in several stores is merged:
count, mean, std, min and max exactly (Chan's parallel formulas); q01 as the smallest and q99
as the largest of the stores' values, a conservative bound, since quantiles of disjoint sets
cannot be combined exactly from their summaries.

The statistics a run used are written beside its checkpoints (``normalization.json``) and
read back by inference, so un-normalising an action never depends on data the deployed
policy does not ship with (A1's LIBERO evaluation needs a file its training never writes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.episode_store.layout import STATS_FILE
from pipelines.episode_store.schema import STAT_KEYS, VECTORS
from training.config import NORMALIZATION_SCOPES, NORMALIZATIONS

STD_EPS = 1e-6
ZERO_WIDTH = 1e-8
FORMAT_VERSION = 1


class NormalizationError(ValueError):
    """Statistics are missing or do not cover a dimension (the message names the group and dimension)."""


@dataclass
class FieldStats:
    """Per-dimension statistics of one field of one group, aligned with ``names``."""

    names: list[str]
    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> FieldStats:
        return cls(names=list(entry["names"]),
                   **{k: np.asarray(entry[k], dtype=np.float64) for k in STAT_KEYS})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": list(self.names)}
        for k in STAT_KEYS:
            values = getattr(self, k).tolist()
            out[k] = [int(v) for v in values] if k == "count" else values
        return out

    @classmethod
    def merge(cls, parts: Sequence[FieldStats]) -> FieldStats:
        """Merge statistics of disjoint frame sets by dimension name (see the module docstring)."""
        if len(parts) == 1:
            return parts[0]
        names: list[str] = []
        for p in parts:
            names += [n for n in p.names if n not in names]
        acc = {k: np.zeros(len(names)) for k in ("count", "mean", "m2")}
        lo = {k: np.full(len(names), np.inf) for k in ("min", "q01")}
        hi = {k: np.full(len(names), -np.inf) for k in ("max", "q99")}
        for p in parts:
            for j, name in enumerate(p.names):
                i = names.index(name)
                n_a, n_b = acc["count"][i], p.count[j]
                if n_b <= 0:
                    continue
                n = n_a + n_b
                delta = p.mean[j] - acc["mean"][i]
                acc["mean"][i] += delta * n_b / n
                acc["m2"][i] += p.std[j] ** 2 * n_b + delta * delta * n_a * n_b / n
                acc["count"][i] = n
                lo["min"][i] = min(lo["min"][i], p.min[j])
                lo["q01"][i] = min(lo["q01"][i], p.q01[j])
                hi["max"][i] = max(hi["max"][i], p.max[j])
                hi["q99"][i] = max(hi["q99"][i], p.q99[j])
        std = np.sqrt(np.divide(acc["m2"], acc["count"], out=np.zeros(len(names)), where=acc["count"] > 0))
        return cls(names=names, count=acc["count"], mean=acc["mean"], std=std, min=lo["min"], max=hi["max"],
                   q01=lo["q01"], q99=hi["q99"])

    def select(self, names: Sequence[str], where: str) -> FieldStats:
        """The statistics of ``names``, in that order."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise NormalizationError(f"{where}: no statistics for dimensions {missing}")
        take = np.array([index[n] for n in names], dtype=np.int64)
        return FieldStats(names=list(names), **{k: getattr(self, k)[take] for k in STAT_KEYS})


def group_key(dataset: str, embodiment: str, scope: str) -> str:
    return f"{dataset}/{embodiment}" if scope == "dataset_embodiment" else embodiment


class Normalizer:
    """Normalise and un-normalise state and action vectors of any group, by dimension name."""

    def __init__(self, mode: str, scope: str, groups: dict[str, dict[str, FieldStats]],
                 provenance: list[dict[str, str]] | None = None):
        if mode not in NORMALIZATIONS:
            raise NormalizationError(f"normalization must be one of {list(NORMALIZATIONS)}, got {mode!r}")
        if scope not in NORMALIZATION_SCOPES:
            raise NormalizationError(f"normalization_scope must be one of {list(NORMALIZATION_SCOPES)}, got {scope!r}")
        self.mode, self.scope, self.groups = mode, scope, groups
        self.provenance = provenance or []
        self._cache: dict[tuple[str, str, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_stores(cls, mode: str, scope: str, stores: Iterable[Path],
                    wanted: Iterable[tuple[str, str]]) -> Normalizer:
        """Statistics of every wanted (dataset, embodiment), merged across the stores that hold it."""
        wanted = sorted(set(wanted))
        parts: dict[str, dict[str, list[FieldStats]]] = {}
        provenance = []
        for store in sorted(stores, key=lambda p: p.name):
            path = store / STATS_FILE
            if not path.is_file():
                raise NormalizationError(f"{store}: no stats.json")
            raw = path.read_bytes()
            provenance.append({"store": store.name, "stats_sha256": hashlib.sha256(raw).hexdigest()})
            sources = json.loads(raw).get("sources", {})
            for dataset, embodiment in wanted:
                entry = sources.get(dataset, {}).get("embodiments", {}).get(embodiment)
                if entry is None:
                    continue
                key = group_key(dataset, embodiment, scope)
                for f in VECTORS:
                    parts.setdefault(key, {}).setdefault(f, []).append(FieldStats.from_json(entry[f]))
        missing = sorted({group_key(d, e, scope) for d, e in wanted} - set(parts))
        if missing:
            raise NormalizationError(f"no stats.json entry in the manifest's stores for {missing}")
        groups = {k: {f: FieldStats.merge(v[f]) for f in VECTORS} for k, v in sorted(parts.items())}
        return cls(mode, scope, groups, provenance)

    def _params(self, key: str, field: str, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale) with normalised = (x - offset) / scale, for these names in this order."""
        cache_key = (key, field, tuple(names))
        if cache_key not in self._cache:
            if key not in self.groups:
                raise NormalizationError(f"no normalisation statistics for group {key!r} "
                                         f"(have {sorted(self.groups)})")
            s = self.groups[key][field].select(names, f"{key} {field}")
            if self.mode == "bounds_q99":
                width = s.q99 - s.q01
                degenerate = width < ZERO_WIDTH
                offset = np.where(degenerate, s.q01, (s.q99 + s.q01) / 2)
                scale = np.where(degenerate, np.inf, width / 2)  # x / inf = 0: a constant dimension maps to 0
            elif self.mode == "mean_std":
                offset, scale = s.mean, s.std + STD_EPS
            else:
                offset, scale = np.zeros(len(names)), np.ones(len(names))
            self._cache[cache_key] = (offset.astype(np.float64), scale.astype(np.float64))
        return self._cache[cache_key]

    def normalize(self, key: str, field: str, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
        if self.mode == "none":
            return np.asarray(values, dtype=np.float32)
        offset, scale = self._params(key, field, names)
        out = (np.asarray(values, dtype=np.float64) - offset) / scale
        if self.mode == "bounds_q99":
            out = np.clip(out, -1.0, 1.0)
        return out.astype(np.float32)

    def unnormalize(self, key: str, field: str, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
        if self.mode == "none":
            return np.asarray(values, dtype=np.float32)
        offset, scale = self._params(key, field, names)
        finite = np.where(np.isinf(scale), 0.0, scale)  # a constant dimension comes back as its constant
        return (np.asarray(values, dtype=np.float64) * finite + offset).astype(np.float32)

    # --- saved beside every checkpoint ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "mode": self.mode, "scope": self.scope,
                "std_eps": STD_EPS, "quantile_merge": "q01 = min over stores, q99 = max over stores",
                "stores": self.provenance,
                "groups": {k: {f: v[f].to_json() for f in VECTORS} for k, v in self.groups.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalizer:
        if data.get("format_version") != FORMAT_VERSION:
            raise NormalizationError(f"normalization file format_version {data.get('format_version')!r}, "
                                     f"this a1pipe reads {FORMAT_VERSION}")
        groups = {k: {f: FieldStats.from_json(v[f]) for f in VECTORS} for k, v in data["groups"].items()}
        return cls(data["mode"], data["scope"], groups, data.get("stores"))
