"""Curation inside the conversion pipeline: decide, for every converted episode, what training may use.

Curation never rewrites episode files. Every episode that passes the format checks is
published with all its frames; curation then records, per episode, whether it is kept
or quarantined (corruption, outliers, no motion, duplicate) and which source-frame
ranges are kept or removed with which reason (``STORE/curation.parquet``), and
summarises it per source and embodiment (``STORE/curation_report.json``). Changing a
threshold therefore re-curates from the stored low-dimensional data without
re-encoding a single image, and nothing disappears silently.

Outlier bounds need the whole dataset: the pipeline computes them per (source,
embodiment) in a first pass with mergeable quantile samples (Beam combiners) and
applies them to each episode in a second (see ``pipelines/convert/graph.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.curation_rules import (
    CorruptionRules,
    CurationReason,
    MotionThresholds,
    OutlierRules,
    SegmentRules,
    corruption,
    first_violation,
    idle_steps,
    physical_violation,
    robust_bounds,
    segment,
)
from pipelines.episode_store.index import CurationStatus
from pipelines.episode_store.layout import CURATION_FILE, CURATION_REPORT_FILE
from pipelines.episode_store.schema import ACTION, STATE, VECTORS
from pipelines.episode_store.stats import FeatureStats, frame_keys

#: fields whose per-dimension value bounds are estimated; per-step delta bounds derive from them
BOUND_FIELDS = VECTORS


@dataclass(frozen=True)
class CurationConfig:
    """All curation thresholds, from ``params.yaml`` (``curation:``); see docs/curation.md."""

    enabled: bool = True
    #: episodes whose source marks them failed (``metadata.success`` false): keep | remove
    failed_episodes: str = "keep"
    corruption: CorruptionRules = CorruptionRules()
    outliers: OutlierRules = OutlierRules()
    check_outliers: bool = True
    #: below this many frames of an embodiment, bounds are not trusted and not applied
    min_frames_for_bounds: int = 1000
    motion: MotionThresholds = MotionThresholds()
    segments: SegmentRules = SegmentRules()
    #: per-embodiment overrides: {embodiment: {"motion": {...}, "segments": {...}}}
    per_embodiment: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: declared physical limits: {embodiment: {dimension name: [low, high]}}
    physical_limits: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> CurationConfig:
        p = dict(params or {})
        known = {"enabled", "failed_episodes", "corruption", "outliers", "motion", "segments", "per_embodiment",
                 "physical_limits"}
        unknown = set(p) - known
        if unknown:
            raise ValueError(f"unknown curation parameter(s): {sorted(unknown)} (known: {sorted(known)})")
        outliers = dict(p.get("outliers") or {})
        check = bool(outliers.pop("enabled", True))
        if "min_frames" in outliers:  # one name, one meaning: corruption.min_frames is an episode's minimum length
            raise ValueError("curation.outliers.min_frames is now curation.outliers.min_frames_for_bounds "
                             "(the frames an embodiment needs before its outlier bounds are applied)")
        min_frames = int(outliers.pop("min_frames_for_bounds", 1000))
        motion = dict(p.get("motion") or {})
        if "ignore" in motion:
            motion["ignore"] = tuple(motion["ignore"])
        failed = str(p.get("failed_episodes", "keep"))
        if failed not in ("keep", "remove"):
            raise ValueError(f"curation.failed_episodes must be keep or remove, got {failed!r}")
        return cls(
            enabled=bool(p.get("enabled", True)),
            failed_episodes=failed,
            corruption=CorruptionRules(**(p.get("corruption") or {})),
            outliers=OutlierRules(**outliers),
            check_outliers=check,
            min_frames_for_bounds=min_frames,
            motion=MotionThresholds(**motion),
            segments=SegmentRules(**(p.get("segments") or {})),
            per_embodiment={k: dict(v or {}) for k, v in (p.get("per_embodiment") or {}).items()},
            physical_limits={
                emb: {name: (float(lo), float(hi)) for name, (lo, hi) in limits.items()}
                for emb, limits in (p.get("physical_limits") or {}).items()
            },
        )

    def with_declared_limits(self, declared: dict[str, dict[str, tuple[float, float]]]) -> CurationConfig:
        """Add a converter's declared physical limits; ranges set in params.yaml take precedence."""
        from dataclasses import replace

        merged = {emb: dict(limits) for emb, limits in declared.items()}
        for emb, limits in self.physical_limits.items():
            merged.setdefault(emb, {}).update(limits)
        return replace(self, physical_limits=merged)

    @property
    def uses_images(self) -> bool:
        """Whether any embodiment's idle test needs the per-step image change."""
        return self.enabled and (
            self.motion.image_change is not None
            or any((v.get("motion") or {}).get("image_change") is not None for v in self.per_embodiment.values())
        )

    def motion_for(self, embodiment: str) -> MotionThresholds:
        override = dict(self.per_embodiment.get(embodiment, {}).get("motion") or {})
        if "ignore" in override:
            override["ignore"] = tuple(override["ignore"])
        base = self.motion
        return MotionThresholds(**{**base.__dict__, **override})

    def segments_for(self, embodiment: str) -> SegmentRules:
        override = self.per_embodiment.get(embodiment, {}).get("segments") or {}
        return SegmentRules(**{**self.segments.__dict__, **override})


@dataclass
class LowDim:
    """The part of an episode curation looks at (read back from the store)."""

    episode_id: str
    source: str
    embodiment: str
    control_hz: float
    timestamp: np.ndarray
    state: np.ndarray
    action: np.ndarray
    state_names: list[str]
    action_names: list[str]
    #: per-step camera change (only when ``motion.image_change`` is configured)
    image_change: np.ndarray | None = None
    #: the source's outcome flag (``metadata.success``); None where the source has none
    success: bool | None = None


class BoundsAccumulator:
    """First pass: mergeable per-dimension quantile samples of values for one (source, embodiment).

    Per-step deltas are bounded by the width of the value bounds (no single step may
    jump further than the whole plausible range of its dimension): delta quantiles would
    call every rare-but-real fast event (a gripper closing in one step) an outlier.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.fields = {f: FeatureStats() for f in BOUND_FIELDS}

    def add(self, low: LowDim) -> BoundsAccumulator:
        self.frames += len(low.timestamp)
        keys = frame_keys(low.episode_id, len(low.timestamp))
        self.fields[STATE].add(low.state, low.state_names, keys)
        self.fields[ACTION].add(low.action, low.action_names, keys)
        return self

    def merge(self, other: BoundsAccumulator) -> BoundsAccumulator:
        self.frames += other.frames
        for f in BOUND_FIELDS:
            self.fields[f].merge(other.fields[f])
        return self

    def bounds(self, rules: OutlierRules) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": self.frames}
        for f in BOUND_FIELDS:
            summary = self.fields[f].summary()
            low, high = robust_bounds(np.array(summary["q01"]), np.array(summary["q99"]), rules)
            out[f] = {"names": summary["names"], "low": low.tolist(), "high": high.tolist()}
            span = (high - low).tolist()
            out[_delta(f)] = {"names": summary["names"], "low": [-w for w in span], "high": span}
        return out


@dataclass
class CurationOutcome:
    episode_id: str
    source: str
    embodiment: str
    status: str  # a CurationStatus
    reason: str | None
    message: str
    frames_in: int
    kept: list[tuple[int, int]]
    removed: list[dict[str, Any]]

    @property
    def frames_kept(self) -> int:
        return sum(b - a for a, b in self.kept)

    def to_row(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "source": self.source,
            "embodiment": self.embodiment,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "frames_in": self.frames_in,
            "frames_kept": self.frames_kept,
            "kept_ranges": [{"start": a, "stop": b} for a, b in self.kept],
            "removed_ranges": self.removed,
        }


def _delta(field: str) -> str:
    """The bounds entry of a field's per-step changes."""
    return f"{field}_delta"


def _bounded(values: np.ndarray, names: list[str], bounds: dict[str, Any], label: str) -> str | None:
    index = {n: j for j, n in enumerate(bounds["names"])}
    cols = [j for j, n in enumerate(names) if n in index]
    if not cols:
        return None
    low = np.array([bounds["low"][index[names[j]]] for j in cols])
    high = np.array([bounds["high"][index[names[j]]] for j in cols])
    return first_violation(np.asarray(values)[:, cols], [names[j] for j in cols], low, high, label)


def curate(low: LowDim, config: CurationConfig, bounds: dict[str, Any] | None) -> CurationOutcome:
    """Second pass for one episode: whole-episode checks, then idle/static segmentation."""
    n = len(low.timestamp)

    def quarantined(reason: CurationReason, message: str) -> CurationOutcome:
        return CurationOutcome(
            low.episode_id, low.source, low.embodiment, str(CurationStatus.QUARANTINED), str(reason), message, n, [],
            [{"start": 0, "stop": n, "reason": str(reason), "message": message}],
        )

    if not config.enabled:
        return CurationOutcome(low.episode_id, low.source, low.embodiment, str(CurationStatus.KEPT), None, "", n,
                               [(0, n)], [])
    if low.success is False and config.failed_episodes == "remove":
        return quarantined(CurationReason.FAILED_ATTEMPT, "the source records this attempt as failed")
    broken = corruption(low.timestamp, low.state, low.action, low.control_hz, config.corruption)
    if broken:
        return quarantined(*broken)
    limits = config.physical_limits.get(low.embodiment, {})
    vectors = ((STATE, low.state, low.state_names), (ACTION, low.action, low.action_names))
    for label, values, names in vectors:
        message = physical_violation(values, names, limits, label)
        if message:
            return quarantined(CurationReason.PHYSICAL_RANGE, message)
    if config.check_outliers and bounds is not None and bounds["frames"] >= config.min_frames_for_bounds:
        checks = (*vectors, *((_delta(label), np.diff(values, axis=0), names) for label, values, names in vectors))
        for label, values, names in checks:
            if len(values):
                message = _bounded(values, names, bounds[label], label)
                if message:
                    return quarantined(CurationReason.OUTLIER, message)
    idle = idle_steps(low.timestamp, low.state, low.action, low.state_names, low.action_names,
                      config.motion_for(low.embodiment), low.image_change)
    result = segment(idle, config.segments_for(low.embodiment))
    if not result.kept:
        reasons = sorted({str(r.reason) for r in result.removed})
        return CurationOutcome(
            low.episode_id, low.source, low.embodiment, str(CurationStatus.QUARANTINED), str(CurationReason.NO_MOTION),
            f"no segment left to learn from after removing {', '.join(reasons)}", n, [],
            [r.to_json() for r in result.removed],
        )
    return CurationOutcome(
        low.episode_id, low.source, low.embodiment, str(CurationStatus.KEPT), None, "", n, result.kept,
        [r.to_json() for r in result.removed],
    )


def summarize(outcomes: list[CurationOutcome]) -> dict[str, Any]:
    """``curation_report.json``: per source and embodiment, episodes and frames in, out and why."""

    def empty() -> dict[str, Any]:
        return {"episodes_in": 0, "episodes_kept": 0, "quarantined_by_reason": {}, "frames_in": 0,
                "frames_kept": 0, "frames_removed_by_reason": {}}

    sources: dict[str, Any] = {}
    for o in sorted(outcomes, key=lambda o: (o.source, o.embodiment, o.episode_id)):
        src = sources.setdefault(o.source, {"total": empty(), "embodiments": {}})
        for entry in (src["total"], src["embodiments"].setdefault(o.embodiment, empty())):
            entry["episodes_in"] += 1
            entry["frames_in"] += o.frames_in
            entry["frames_kept"] += o.frames_kept
            if o.status == CurationStatus.KEPT:
                entry["episodes_kept"] += 1
            else:
                entry["quarantined_by_reason"][o.reason] = entry["quarantined_by_reason"].get(o.reason, 0) + 1
            for r in o.removed:
                key = r["reason"]
                entry["frames_removed_by_reason"][key] = entry["frames_removed_by_reason"].get(key, 0) + r["stop"] - r["start"]
    for src in sources.values():
        for entry in [src["total"], *src["embodiments"].values()]:
            removed = sum(entry["frames_removed_by_reason"].values())
            assert removed + entry["frames_kept"] == entry["frames_in"], "curation must account for every frame"
            entry["frames_removed"] = removed
            entry["kept_fraction"] = round(entry["frames_kept"] / entry["frames_in"], 6) if entry["frames_in"] else None
            entry["quarantined_by_reason"] = dict(sorted(entry["quarantined_by_reason"].items()))
            entry["frames_removed_by_reason"] = dict(sorted(entry["frames_removed_by_reason"].items()))
    return {"format_version": 1, "sources": sources}


def collect_reports(stores: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Merge the ``curation_report.json`` of several stores into one metric document and plot rows.

    The plot rows give, per source and reason, the fraction of that source's input frames
    removed for that reason (what ``dvc plots show`` draws).
    """
    import json
    from pathlib import Path

    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for store in stores:
        path = Path(store) / CURATION_REPORT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no curation report (convert the store first)")
        for source, entry in json.loads(path.read_text())["sources"].items():
            total = entry["total"]
            metrics[source] = {k: total[k] for k in ("episodes_in", "episodes_kept", "frames_in", "frames_kept",
                                                      "kept_fraction")}
            for reason, frames in total["frames_removed_by_reason"].items():
                rows.append({"source": source, "reason": reason,
                             "removed_fraction": round(frames / total["frames_in"], 6) if total["frames_in"] else 0.0})
    return dict(sorted(metrics.items())), sorted(rows, key=lambda r: (r["source"], r["reason"]))


def cross_store_duplicates(stores: list[str]) -> list[dict[str, str]]:
    """Episodes kept in one store whose content equals a kept episode of another store.

    Within a store the conversion already keeps one copy; here the smallest episode id
    over all stores is the copy to keep, and every other copy is listed so the manifests
    stage can leave it out.
    """
    from pathlib import Path

    import pyarrow.parquet as pq

    from pipelines.curation_rules import duplicates

    digests: dict[str, str] = {}
    where: dict[str, str] = {}
    for store in stores:
        path = Path(store) / CURATION_FILE
        if not path.is_file():
            continue
        for row in pq.read_table(path, columns=["episode_id", "status", "content_sha256"]).to_pylist():
            if row["status"] == CurationStatus.KEPT:
                digests[row["episode_id"]] = row["content_sha256"]
                where[row["episode_id"]] = str(store)
    return [
        {"episode_id": eid, "store": where[eid], "duplicate_of": keep, "duplicate_of_store": where[keep],
         "content_sha256": digests[eid]}
        for eid, keep in sorted(duplicates(digests).items())
        if where[eid] != where[keep]
    ]
