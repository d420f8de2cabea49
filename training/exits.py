"""Early-exit thresholds: discrepancy metrics, target exit distributions, filtered quantiles, budgets.

The procedure is DeeR-VLA's, which A1's code ports (``a1/vla/value_net.py``):

1. ``V[k, n]`` is how much sample n's action changed from the previous exit to exit k
   (``discrepancy``; the first exit compares with the layer just before it).
2. A target distribution ``p`` over the K exits comes from one number, the exit criterion c
   (``exit_distribution``): ``exp`` p_k ∝ c^k (k = 1..K; c < 1 favours early exits),
   ``gauss`` p_k ∝ exp(-(k - c)^2 / 2) (k = 0..K-1, centre c), ``gamma`` p_k ∝
   GammaPDF(k; shape c, scale 2) (k = 1..K); optionally p_0 = 0; normalised.
3. Thresholds, early to late (``thresholds``): ``n_k = floor(N p_k)``; eta_k is the value of
   the n_k-th smallest ``V[k, n]`` among the samples no earlier exit has taken; every sample
   with ``V[k, n] <= eta_k`` is then taken (so ties at eta_k exit together, which can take
   more than n_k samples: DeeR's behaviour, kept). ``n_k = 0`` means no exit at k
   (eta_k = -inf); so does an exit that finds fewer than n_k samples left (DeeR's loop never
   reaches its count then). The last exit always takes what is left (eta = +inf).

Why not the paper's Eq. 9 read literally (eta_k = the p_k-quantile of the *remaining*
samples): that sends a fraction p_k of what is left, not of all N, through exit k, so the
realised distribution drifts ever later from the target (with a uniform p over 14 exits,
the first exit would take 1/14 of the samples, the second 1/14 of the remaining 13/14, ...).
The code of DeeR and A1 counts n_k against all N, which realises p up to ties and the
floor; this module does that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

METRICS = ("cosine", "l2", "mean", "max")
DISTRIBUTIONS = ("exp", "gauss", "gamma")
EPS = 1e-5  # F.normalize's eps in DeeR's cosine


def discrepancy(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-sample change between two action chunks [B, H, D], over the valid (step, dim) entries.

    ``mean`` mean |a - b|; ``l2`` sqrt(mean (a - b)^2) (DeeR's "L2" is this RMS, not a norm);
    ``max`` max |a - b|; ``cosine`` 1 - cos(a, b) of the flattened valid entries. One number
    per chunk, computed the same way in calibration and online (A1 calibrates per chunk step
    but tests chunk means online).
    """
    v = valid.to(a.dtype)
    count = v.sum(dim=(1, 2)).clamp(min=1.0)
    diff = (a - b) * v
    if metric == "mean":
        return diff.abs().sum(dim=(1, 2)) / count
    if metric == "l2":
        return (diff.pow(2).sum(dim=(1, 2)) / count).sqrt()
    if metric == "max":
        return diff.abs().amax(dim=(1, 2))
    if metric == "cosine":
        av, bv = (a * v).flatten(1), (b * v).flatten(1)
        cos = (av * bv).sum(1) / (av.norm(dim=1).clamp(min=EPS) * bv.norm(dim=1).clamp(min=EPS))
        return 1.0 - cos
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _gamma_log_pdf(x: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """log GammaPDF(x; shape, scale) up to a constant (exit_distribution normalises): the pdf itself
    underflows to 0 at every exit for a large shape, which would leave no target mass at all."""
    return (shape - 1) * np.log(x) - x / scale


def exit_distribution(kind: str, c: float, k: int, *, disable_first: bool = False) -> np.ndarray:
    """The target fraction of samples per exit, p [K] (module docstring), normalised to 1."""
    if k < 1:
        raise ValueError("need at least one exit")
    if c <= 0 and kind != "gauss":
        raise ValueError(f"the exit criterion of {kind!r} must be > 0, got {c}")
    if kind == "exp":
        logp = np.arange(1, k + 1) * math.log(c)
        p = np.exp(logp - logp.max())
    elif kind == "gauss":
        p = np.exp(-((np.arange(k) - c) ** 2) / 2.0)
    elif kind == "gamma":
        logp = _gamma_log_pdf(np.arange(1, k + 1, dtype=np.float64), c, 2.0)
        p = np.exp(logp - logp.max())
    else:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {kind!r}")
    p = p.astype(np.float64)
    if disable_first and k > 1:
        p[0] = 0.0
    if not p.sum() > 0:
        raise ValueError(f"{kind} with c={c} puts no mass on any of the {k} exits")
    return p / p.sum()


def thresholds(values: np.ndarray, p: Sequence[float]) -> np.ndarray:
    """Filtered-quantile thresholds eta [K] for a discrepancy matrix V [K, N] and targets p [K]."""
    v = np.asarray(values, dtype=np.float64)
    k, n = v.shape
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (k,):
        raise ValueError(f"{len(p)} target fractions for {k} exits")
    eta = np.full(k, -np.inf)
    taken = np.zeros(n, dtype=bool)
    for i in range(k - 1):
        count = int(math.floor(n * p[i] + 1e-9))
        left = v[i][~taken]
        if count == 0 or count > left.size:
            continue
        eta[i] = np.partition(left, count - 1)[count - 1]
        taken |= v[i] <= eta[i]
    eta[-1] = np.inf
    return eta


def assign(values: np.ndarray, eta: Sequence[float]) -> np.ndarray:
    """Each sample's exit: the first k with V[k, n] <= eta_k (the last exit takes the rest)."""
    v = np.asarray(values, dtype=np.float64)
    hit = v <= np.asarray(eta, dtype=np.float64)[:, None]
    hit[-1] = True
    return hit.argmax(axis=0)


def thresholds_loop(values: np.ndarray, p: Sequence[float]) -> np.ndarray:
    """The same thresholds computed as DeeR's loop does it (one Python step per sample): the baseline
    ``benchmarks/calibration_cost.py`` times the vectorised version against, and a cross-check."""
    v = np.asarray(values, dtype=np.float64)
    k, n = v.shape
    eta = [-np.inf] * k
    filtered = [False] * n
    for i in range(k - 1):
        count = int(math.floor(n * p[i] + 1e-9))
        if count:
            seen = 0
            for j in np.argsort(v[i], kind="stable").tolist():
                if not filtered[j]:
                    seen += 1
                    if seen == count:
                        eta[i] = float(v[i][j])
                        break
        row = v[i].tolist()
        for j in range(n):
            if row[j] <= eta[i]:
                filtered[j] = True
    eta[-1] = np.inf
    return np.array(eta)


def expected_cost(values: np.ndarray, eta: Sequence[float], cost_per_exit: Sequence[float]) -> float:
    """Mean cost over the samples when each takes its exit's cost (a fraction of the full model's)."""
    return float(np.asarray(cost_per_exit, dtype=np.float64)[assign(values, eta)].mean())


def solve_budget(values: np.ndarray, cost_per_exit: Sequence[float], target: float, *, kind: str = "exp",
                 disable_first: bool = False, tolerance: float = 0.01, lo: float = 1e-4,
                 hi: float = 1e4) -> dict[str, float | bool | list[float]]:
    """The exit criterion c whose thresholds give an expected cost ``target`` (within ``tolerance``,
    relative), by bisection on log c; A1 and DeeR set c by hand, the paper calls its mode
    "budget-aware". Returns c, the thresholds, the achieved cost and whether it met the target."""
    if kind == "gauss":
        lo, hi = -2.0, float(np.asarray(values).shape[0]) + 1.0

    def cost_at(c: float) -> tuple[float, np.ndarray]:
        eta = thresholds(values, exit_distribution(kind, c, len(cost_per_exit), disable_first=disable_first))
        return expected_cost(values, eta, cost_per_exit), eta

    best: tuple[float, float, np.ndarray] | None = None
    a, b = lo, hi
    for _ in range(200):
        c = math.sqrt(a * b) if kind != "gauss" else (a + b) / 2
        cost, eta = cost_at(c)
        if best is None or abs(cost - target) < abs(best[1] - target):
            best = (c, cost, eta)
        if abs(cost - target) <= tolerance * target:
            break
        if cost < target:
            a = c
        else:
            b = c
        if (kind != "gauss" and b / a < 1 + 1e-12) or (kind == "gauss" and b - a < 1e-12):
            break
    c, cost, eta = best
    return {"c": c, "achieved": cost, "target": target, "met": abs(cost - target) <= tolerance * target,
            "thresholds": [float(x) for x in eta]}
