"""Per-query latency and FLOPs: normal inference vs early exit (delta = 10) vs Inter-Layer Truncated FM.

What is measured
----------------
For each head of the ``tiny`` configuration (random weights; three 64 px cameras, chunk
``--chunk``, one query at a time as a robot asks), ``--queries`` queries of each mode, after
warm-up, on one thread:

1. **no exit**: normal inference, the LLM to its last layer and the head once (flow
   matching: ``full_steps`` = 10 Euler steps);
2. **early exit, delta = 10, to the last layer**: the exit check at every exit, the FM head
   denoising 10 steps from noise at each (the paper's A1-FMe delta = 10 row, its worst case);
3. **ITFM, delta = 2, to the last layer**: 2 warm-started steps per check (A1-FMe delta = 2);
4. **ITFM, delta = 2, calibrated**: with thresholds at c = 1.0 (uniform target) fitted on
   other queries of the same model, i.e. exiting where the action stops changing.

Each row prints ms per query, its ratio to "no exit" (the figure to compare; the paper's
per-episode ITFM / no-exit ratio on LIBERO is 10.5 s / 37.8 s = 0.28) and analytic FLOPs
per query (``training/cost.py``). With a CUDA GPU, the ``molmo-7b-d`` configuration
(random weights, bf16) is timed the same way (CUDA-synchronised); without one it says so.

Usage::

    python benchmarks/early_exit_latency.py
    python benchmarks/early_exit_latency.py --queries 20 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _query(policy, b: int, device, size: int, g):
    import torch

    raw = {"images": torch.randint(0, 256, (b, 3, size, size, 3), dtype=torch.uint8, generator=g),
           "image_mask": torch.ones(b, 3, dtype=torch.bool), "state": torch.randn(b, 32, generator=g),
           "state_mask": torch.ones(b, 32, dtype=torch.bool), "state_dropped": torch.zeros(b, dtype=torch.bool),
           "action": torch.zeros(b, policy.chunk, 32), "action_mask": torch.ones(b, 32, dtype=torch.bool),
           "action_time_mask": torch.ones(b, policy.chunk, dtype=torch.bool), "text": ["open the top drawer"] * b}
    return policy.prepare(raw, device)


def measure(backbone: str, head: str, args, device) -> list[dict]:
    import numpy as np
    import torch

    from training.config import ModelConfig
    from training.cost import cost_model, query_flops
    from training.exits import exit_distribution, thresholds
    from training.inference import AdaptivePolicy, ExitSettings, exit_settings, stack_discrepancies
    from training.model import A1Policy
    from training.model.heads import MLPHead
    from training.model.tokenizer import byte_level_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        policy = A1Policy(ModelConfig(backbone=backbone, head=head), chunk=args.chunk, state_dim=32, action_dim=32,
                          camera_slots=3, tokenizer=byte_level_tokenizer()).eval()
    if device.type == "cuda":
        policy.to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    size = policy.image_size
    queries = [_query(policy, 1, device, size, g) for _ in range(args.queries)]
    fit = [_query(policy, 8, device, size, g) for _ in range(4)]
    interval = 1 if policy.num_layers <= 8 else 2
    base = exit_settings(policy, 1, interval)
    mlp = isinstance(policy.head, MLPHead)
    chain = {} if mlp else {"fm_mode": "itfm", "itfm_steps": 2}
    recorder = AdaptivePolicy(policy, ExitSettings(exits=base.exits, **chain))
    v = stack_discrepancies([recorder.act(b, generator=g, record=True) for b in fit], "cosine").float().numpy()
    eta = thresholds(v.astype(np.float64), exit_distribution("exp", 1.0, len(base.exits)))
    never = (-math.inf,) * len(base.exits)
    modes = {"no exit": None,
             "early exit, delta 10, to the last layer": ExitSettings(exits=base.exits, thresholds=never,
                                                                     fm_mode="full", full_steps=10),
             "ITFM delta 2, to the last layer": ExitSettings(exits=base.exits, thresholds=never, fm_mode="itfm",
                                                             itfm_steps=2),
             "ITFM delta 2, calibrated (c = 1.0)": ExitSettings(exits=base.exits, thresholds=tuple(eta),
                                                                 fm_mode="itfm", itfm_steps=2)}
    if mlp:
        modes = {"no exit": None,
                 "exit check at every exit, to the last layer": ExitSettings(exits=base.exits, thresholds=never),
                 "calibrated (c = 1.0)": ExitSettings(exits=base.exits, thresholds=tuple(eta))}
    prefix_len = int(policy.embed(queries[0]).embeds.shape[1])
    model = cost_model(policy, prefix_len)
    layers = policy.num_layers
    rows = []

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for name, settings in modes.items():
        adaptive = AdaptivePolicy(policy, settings) if settings else None
        noise = torch.randn((1, policy.chunk, 32), generator=g)
        for q in queries[:2]:  # warm-up
            policy.predict(q, noise=noise) if adaptive is None else adaptive.act(q, noise=noise)
        exits, flops = [], []
        sync()
        started = time.perf_counter()
        for q in queries:
            if adaptive is None:
                policy.predict(q, noise=noise, steps=10)
                exits.append(layers - 1)
                flops.append(query_flops(model, 3, [layers - 1], layers - 1, 10)["total"])
            else:
                r = adaptive.act(q, noise=noise)
                k = int(r.exit_index[0])
                exits.append(int(r.exit_layer[0]))
                flops.append(query_flops(model, 3, [settings.reference, *settings.exits[: k + 1]],
                                         int(r.exit_layer[0]), settings.steps)["total"])
        sync()
        ms = (time.perf_counter() - started) / len(queries) * 1e3
        rows.append({"backbone": backbone, "head": head, "mode": name, "ms_per_query": ms,
                     "gflops_per_query": float(np.mean(flops)) / 1e9,
                     "mean_exit_layer": float(np.mean(exits)), "layers": layers})
    base_ms = rows[0]["ms_per_query"]
    for r in rows:
        r["ratio_to_no_exit"] = r["ms_per_query"] / base_ms
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--heads", default="fm,mlp")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for head in args.heads.split(","):
        rows += measure("tiny", head, args, torch.device("cpu"))
    gpu: dict | list = {"skipped": "no CUDA device on this machine"}
    if torch.cuda.is_available():
        gpu = measure("molmo-7b-d", "fm", argparse.Namespace(**{**vars(args), "queries": 10}), torch.device("cuda"))
    print(f"per-query latency, batch 1, chunk {args.chunk}, {args.threads} thread(s)")
    print(f"{'backbone':<11}{'head':<5}{'mode':<44}{'ms':>9}{'RATIO':>8}{'GFLOPs':>10}{'exit layer':>12}")
    for r in rows + (gpu if isinstance(gpu, list) else []):
        print(f"{r['backbone']:<11}{r['head']:<5}{r['mode']:<44}{r['ms_per_query']:>9.2f}{r['ratio_to_no_exit']:>8.2f}"
              f"{r['gflops_per_query']:>10.4f}{r['mean_exit_layer'] + 1:>8.1f}/{r['layers']}")
    if isinstance(gpu, dict):
        print("molmo-7b-d on GPU:", gpu["skipped"])
    print("paper (LIBERO, per episode): ITFM delta 2 / no exit = 10.5 s / 37.8 s = 0.28")
    if args.json:
        args.json.write_text(json.dumps({"tiny": rows, "molmo_7b_d_gpu": gpu}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
