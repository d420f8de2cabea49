"""Two-level balanced sampling weights (A1 paper, section 4.1).

"Each dataset is sampled with equal probability, then embodiment-balanced within each
dataset": P(episode) = share(dataset) * 1/|embodiments of the dataset| * share of the
episode inside its (dataset, embodiment) group, where the last share is uniform over kept
frames (a frame's probability is then equal inside a group) or uniform over episodes.
Dataset shares are equal unless overridden (e.g. the official A1 mixture); overrides are
normalised and the effective shares are reported.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

WITHIN = ("frames", "episodes")
# a weight is read as the nearest fraction with a denominator up to this (0.1 is exactly 1/10)
WEIGHT_DENOMINATOR = 10**9


def _weight(dataset: str, value: Any) -> Fraction:
    """One dataset weight as an exact fraction: a finite real number >= 0 (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"dataset weight of {dataset!r} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"dataset weight of {dataset!r} must be a finite number >= 0, got {value!r}")
    return Fraction(value if isinstance(value, numbers.Rational) else float(value)).limit_denominator(
        WEIGHT_DENOMINATOR)


def episode_probabilities(
    rows: Sequence[dict[str, Any]],
    *,
    dataset_weights: dict[str, float] | None = None,
    within: str = "frames",
) -> tuple[list[float], dict[str, Any]]:
    """Per-row probabilities (summing to 1) and the declared shares per dataset and embodiment.

    ``rows`` need ``dataset``, ``embodiment`` and ``frames_kept``. Computed with exact
    fractions, so shares summed from the table equal the declared ones exactly before the
    final conversion to float.
    """
    if within not in WITHIN:
        raise ValueError(f"within must be one of {WITHIN}, got {within!r}")
    if not rows:
        raise ValueError("no episodes to weight")
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        if row["frames_kept"] <= 0:
            raise ValueError(f"row {i} ({row.get('episode_id')}) has no kept frames")
        groups[row["dataset"]][row["embodiment"]].append(i)
    datasets = sorted(groups)
    if dataset_weights:
        unknown = set(dataset_weights) - set(datasets)
        missing = set(datasets) - set(dataset_weights)
        if unknown or missing:
            raise ValueError(f"dataset_weights must name exactly the datasets present: unknown {sorted(unknown)}, "
                             f"missing {sorted(missing)}")
        raw = {d: _weight(d, dataset_weights[d]) for d in datasets}
        if sum(raw.values()) == 0:
            raise ValueError(f"dataset weights are all zero ({dict(sorted(dataset_weights.items()))}): "
                             "at least one dataset needs a weight > 0")
    else:
        raw = {d: Fraction(1) for d in datasets}
    total = sum(raw.values())
    dataset_share = {d: raw[d] / total for d in datasets}

    probs: list[Fraction] = [Fraction(0)] * len(rows)
    shares: dict[str, Any] = {}
    for d in datasets:
        embodiments = sorted(groups[d])
        emb_share = dataset_share[d] / len(embodiments)
        shares[d] = {"share": float(dataset_share[d]), "embodiments": {}}
        for e in embodiments:
            members = groups[d][e]
            if within == "frames":
                frames = sum(rows[i]["frames_kept"] for i in members)
                for i in members:
                    probs[i] = emb_share * Fraction(rows[i]["frames_kept"], frames)
            else:
                for i in members:
                    probs[i] = emb_share / len(members)
            shares[d]["embodiments"][e] = {"share": float(emb_share), "episodes": len(members),
                                           "frames_kept": sum(rows[i]["frames_kept"] for i in members)}
    assert sum(probs) == 1
    return [float(p) for p in probs], {"within": within, "datasets": shares}
