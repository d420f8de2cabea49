"""Training-step throughput of the A1 policy, and the share of step time spent waiting for data.

What is measured
----------------
On a store the benchmark writes itself (``loader_throughput.build_store``: three 224x224
cameras, 14-dimensional bimanual state and action), for each action head (``mlp``,
``fm``) and exit mode (``last``, ``all``, ``random``) of the ``tiny`` configuration:

1. **Fed by the loader**: the real training step (``Trainer`` internals: prepare, losses,
   backward, clip, AdamW) on batches from ``ManifestLoader`` with ``--workers`` loader
   processes; samples/s over ``--steps`` steps after two warm-up steps, and the share of
   wall time the step spent waiting for its next batch.
2. **Baseline, fed from memory**: the same steps on batches already in memory (the first
   batches of the same loader, cycled), the same process and threads. The ratio
   loader-fed / memory-fed is the figure to compare: 1.0 means the loader never holds the
   model up.

On a machine with a CUDA GPU it also times the ``molmo-7b-d`` configuration (random
weights, bf16 autocast, flow-matching expert, one random exit per step) at ``--gpu-batch``
samples per step, with peak GPU memory; without one it says it skipped that.

CPU runs set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported and use explicit thread
counts (``--threads``), because spinning OpenMP threads on a shared 2-core machine make a
step 30x slower (``model_stack.md``).

Usage::

    python benchmarks/train_throughput.py                      # tiny, both heads, three exit modes
    python benchmarks/train_throughput.py --steps 40 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _step(policy, optimizer, scheduler, batch, exits, generator, clip: float, bf16: bool, device) -> float:
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        losses = policy.losses(batch, exits, generator)
        loss = torch.stack(list(losses.values())).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def measure(manifest: Path, data_dir: Path, head: str, mode: str, args) -> dict:
    import torch

    from training.config import AugmentConfig, DataConfig, ExitConfig, ModelConfig, OptimConfig
    from training.data import ManifestData, ManifestLoader
    from training.model import A1Policy
    from training.model.tokenizer import byte_level_tokenizer
    from training.optim import build_optimizer
    from training.train import step_generator

    device = torch.device("cpu")
    data = ManifestData(manifest, DataConfig(data_root=str(data_dir), batch_size=args.batch, chunk=args.chunk,
                                             image_size=(64, 64), num_workers=args.workers,
                                             augment=AugmentConfig(enabled=True), state_mask_prob=0.5))
    torch.manual_seed(0)
    policy = A1Policy(ModelConfig(backbone="tiny", head=head, exits=ExitConfig(mode=mode)), chunk=args.chunk,
                      state_dim=32, action_dim=32, camera_slots=3, tokenizer=byte_level_tokenizer())
    optimizer, scheduler = build_optimizer(policy, OptimConfig(lr_vision=1e-3, lr_connector=1e-3, lr_llm=1e-3,
                                                               lr_head=1e-3, warmup_steps=5, freeze_steps=0),
                                           total_steps=10 * args.steps)
    loader = iter(ManifestLoader(data))
    total = args.steps + 2
    wait = compute = 0.0
    memory = []
    for step in range(total):
        t0 = time.perf_counter()
        batch = policy.prepare(next(loader), device)
        t1 = time.perf_counter()
        exits = policy.exits_for_step(mode, step_generator(0, step, 0))
        _step(policy, optimizer, scheduler, batch, exits, step_generator(0, step, 1), 1.0, False, device)
        t2 = time.perf_counter()
        if step >= 2:
            wait += t1 - t0
            compute += t2 - t1
        if len(memory) < 4:
            memory.append(batch)
    fed = args.steps * args.batch / (wait + compute)
    started = time.perf_counter()
    for step, batch in zip(range(args.steps), cycle(memory)):
        exits = policy.exits_for_step(mode, step_generator(0, step, 0))
        _step(policy, optimizer, scheduler, batch, exits, step_generator(0, step, 1), 1.0, False, device)
    in_memory = args.steps * args.batch / (time.perf_counter() - started)
    return {"head": head, "mode": mode, "samples_per_s": fed, "data_wait_share": wait / (wait + compute),
            "step_s": (wait + compute) / args.steps, "memory_fed_samples_per_s": in_memory,
            "ratio_loader_fed_to_memory_fed": fed / in_memory}


def gpu_molmo(args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    from training.config import ExitConfig, ModelConfig, OptimConfig
    from training.model import A1Policy
    from training.model.tokenizer import byte_level_tokenizer
    from training.optim import build_optimizer
    from training.train import step_generator

    device = torch.device("cuda")
    torch.manual_seed(0)
    with torch.device(device):
        policy = A1Policy(ModelConfig(backbone="molmo-7b-d", head="fm", exits=ExitConfig(mode="random")),
                          chunk=50, state_dim=32, action_dim=32, camera_slots=3, tokenizer=byte_level_tokenizer())
    policy.to(torch.bfloat16)
    optimizer, scheduler = build_optimizer(policy, OptimConfig(lr_vision=0.0, lr_connector=5e-6, lr_llm=5e-6,
                                                               lr_head=5e-5, warmup_steps=10, freeze_steps=0),
                                           total_steps=100, fused=True)
    b = args.gpu_batch
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.randint(0, 256, (b, 3, 336, 336, 3), dtype=torch.uint8, generator=g),
             "image_mask": torch.ones(b, 3, dtype=torch.bool), "state": torch.randn(b, 32, generator=g),
             "state_mask": torch.ones(b, 32, dtype=torch.bool), "state_dropped": torch.zeros(b, dtype=torch.bool),
             "action": torch.randn(b, 50, 32, generator=g), "action_mask": torch.ones(b, 32, dtype=torch.bool),
             "action_time_mask": torch.ones(b, 50, dtype=torch.bool), "text": ["put the cup on the plate"] * b}
    batch = policy.prepare(batch, device)
    times, layers = [], []
    for step in range(args.gpu_steps + 2):
        exits = policy.exits_for_step("random", step_generator(0, step, 0))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        _step(policy, optimizer, scheduler, batch, exits, step_generator(0, step, 1), 1.0, True, device)
        torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - t0)
            layers.append(exits[0] + 1)
    return {"batch": b, "step_s_mean": sum(times) / len(times), "layers_run_mean": sum(layers) / len(layers),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "device": torch.cuda.get_device_name(0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="loader worker processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--heads", default="mlp,fm")
    p.add_argument("--modes", default="last,all,random")
    p.add_argument("--gpu-batch", type=int, default=16)
    p.add_argument("--gpu-steps", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    import torch

    from loader_throughput import build_store

    torch.set_num_threads(args.threads)
    base = Path(tempfile.mkdtemp(prefix="a1pipe-train-bench-"))
    try:
        data_dir, manifest, _ = build_store(base, args.episodes, 24, 224, processes=2)
        rows = [measure(manifest, data_dir, h, m, args) for h in args.heads.split(",") for m in args.modes.split(",")]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"tiny policy, batch {args.batch}, chunk {args.chunk}, 3 cameras at 64 px (stored 224), "
          f"{args.threads} training thread(s), {args.workers} loader worker(s)")
    print(f"{'head':<5}{'exits':<8}{'samples/s':>10}{'step s':>9}{'data wait':>11}{'from memory':>13}{'RATIO':>8}")
    for r in rows:
        print(f"{r['head']:<5}{r['mode']:<8}{r['samples_per_s']:>10.1f}{r['step_s']:>9.3f}"
              f"{r['data_wait_share']:>10.1%}{r['memory_fed_samples_per_s']:>13.1f}"
              f"{r['ratio_loader_fed_to_memory_fed']:>8.2f}")
    gpu = gpu_molmo(args)
    print("molmo-7b-d on GPU:", json.dumps(gpu))
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "tiny": rows,
                                         "molmo_7b_d_gpu": gpu}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
