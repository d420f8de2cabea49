"""Threshold calibration cost: 14 exits x 1,000,000 samples, vectorised vs a per-sample Python loop.

What is measured
----------------
A discrepancy matrix V (``--exits`` x ``--samples``, values with a deliberate share of ties)
and an exponential target distribution; then, in the same run and on one core:

1. ``training.exits.thresholds``: the filtered-quantile thresholds, numpy per exit
   (``np.partition`` over the samples still unassigned);
2. the baseline, ``training.exits.thresholds_loop``: the same procedure as DeeR-VLA's and
   A1's code run it, one Python step per sample (walk the sorted row counting unassigned
   samples, then mark every sample at or below the threshold);
3. ``training.exits.solve_budget``: the bisection on c for a budget of half the layers
   (about 30-60 threshold computations).

It checks that both threshold computations give identical values and prints the times and
their ratio. Goal (issue 12): under 5 s on one core for the vectorised thresholds.

Usage::

    python benchmarks/calibration_cost.py                      # 14 x 1,000,000
    python benchmarks/calibration_cost.py --samples 100000 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal states

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from training.exits import exit_distribution, solve_budget, thresholds, thresholds_loop

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exits", type=int, default=14)
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--c", type=float, default=0.9)
    p.add_argument("--skip-loop", action="store_true", help="do not run the slow baseline")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    k, n = args.exits, args.samples
    values = rng.gamma(2.0, 1.0, (k, n)) * np.linspace(1.0, 0.3, k)[:, None]
    values[:, : n // 10] = np.round(values[:, : n // 10], 2)  # ties: 10 % of the samples on a 0.01 grid
    target = exit_distribution("exp", args.c, k)
    started = time.perf_counter()
    eta = thresholds(values, target)
    fast = time.perf_counter() - started
    out = {"exits": k, "samples": n, "vectorised_s": fast}
    if not args.skip_loop:
        started = time.perf_counter()
        reference = thresholds_loop(values, target)
        out["loop_s"] = time.perf_counter() - started
        out["identical"] = bool(np.array_equal(eta, reference))
        out["ratio_vectorised_to_loop"] = fast / out["loop_s"]
    cost = [(i + 1) / k for i in range(k)]
    started = time.perf_counter()
    budget = solve_budget(values, cost, 0.5)
    out["budget_s"] = time.perf_counter() - started
    out["budget"] = {key: budget[key] for key in ("c", "achieved", "target", "met")}
    print(f"thresholds for {k} exits x {n:,} samples (exp, c={args.c}), one core")
    print(f"  vectorised: {fast:.3f} s")
    if not args.skip_loop:
        print(f"  per-sample loop (DeeR/A1 procedure): {out['loop_s']:.3f} s   RATIO vectorised/loop "
              f"{out['ratio_vectorised_to_loop']:.4f}   identical: {out['identical']}")
    print(f"  budget 0.5 of the layers: c={budget['c']:.4g}, achieved {budget['achieved']:.4f} in "
          f"{out['budget_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out.get("identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
