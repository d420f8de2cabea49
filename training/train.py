"""The one training loop: pre-training and fine-tuning differ only in configuration and starting weights.

``a1pipe train pretrain`` / ``a1pipe train finetune --name <manifest>`` (or, for several
processes, ``torchrun --nproc_per_node N -m training.train pretrain``) resolves the run
from ``params.yaml`` (``training.config.resolve_run``), checks the manifest against the
stores, builds the policy (from a pre-training checkpoint for fine-tuning, or from
pretrained weights when configured), and trains:

- AdamW with A1's parameter groups and schedule (``training/optim.py``), gradient
  clipping, bf16 autocast where the device supports it;
- the exit mode of ``model.exits.mode``; in ``random`` mode the exit of a step comes from
  a generator seeded by (seed, step), so every rank draws the same one without talking;
- a checkpoint every ``checkpoint_every`` steps and at the end (``training/checkpoint.py``),
  with validation losses, the action error against a mean-action baseline and against the
  same model with the cameras shuffled across the batch (does it use its images?);
- metrics through ``dvclive`` (``dvc metrics show`` / ``dvc plots show``), a progress bar
  with loss and samples/s.

An interrupted run resumes from its last checkpoint when its configuration is unchanged,
and reproduces exactly the steps it would have taken: every random draw of a step comes
from a generator keyed by (seed, step, rank), and the data position is part of the
checkpoint. A run whose configuration changed starts over (and says why).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads stall shared cores

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pipelines.manifest.format import file_sha256
from training.checkpoint import (
    CHECKPOINT_DIR,
    load_train_state,
    load_weights,
    read_config,
    save_checkpoint,
)
from training.config import VARIANTS, AugmentConfig, ConfigError, RunConfig, resolve_run
from training.data import ManifestData, ManifestLoader
from training.data.normalize import group_key
from training.model import A1Policy
from training.model.heads import masked_mean
from training.model.tokenizer import load_tokenizer
from training.optim import build_optimizer

log = logging.getLogger("a1pipe.training")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def setup(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def check_replicas(self, model: torch.nn.Module) -> None:
        """Every rank must hold the same weights (DDP keeps them equal; a desync is an error, not noise)."""
        if self.world == 1:
            return
        device = next(model.parameters()).device  # NCCL gathers device tensors, gloo CPU ones
        total = torch.zeros(1, dtype=torch.float64, device=device)
        for p in model.parameters():
            total += p.detach().double().sum() + p.detach().double().abs().sum() * 1e-3
        sums = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(self.world)]
        dist.all_gather(sums, total)
        if any(not torch.equal(s, sums[0]) for s in sums):
            raise RuntimeError(f"replicas diverged: parameter checksums {[float(s) for s in sums]}")


def step_generator(seed: int, step: int, stream: int, rank: int = 0) -> torch.Generator:
    """A generator for one step's draws: the same on every rank for ``rank=0`` streams (the exit),
    distinct per rank otherwise (flow noise and times)."""
    key = hashlib.sha256(f"{seed}:{step}:{stream}:{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little"))


def run_identity(run: RunConfig) -> dict[str, Any]:
    """What a checkpoint must share with a run to resume it (everything but display settings)."""
    ident = run.to_json()
    ident["run"].pop("log_every", None)
    ident.pop("runtime", None)
    return ident


def _changed(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _changed(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [prefix.rstrip(".")] if a != b else []


class Trainer:
    def __init__(self, run: RunConfig, *, quiet: bool = False):
        self.run, self.quiet = run, quiet
        self.env = Dist.setup()
        self.device = torch.device(f"cuda:{self.env.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        threads = run.run.threads or os.cpu_count() or 1
        torch.set_num_threads(max(1, threads // self.env.world if self.device.type == "cpu" else threads))
        self.bf16 = run.run.precision == "bf16" or (
            run.run.precision == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported())
        if run.run.batch_size % self.env.world:
            raise ConfigError(f"batch_size {run.run.batch_size} is not divisible by the {self.env.world} processes")
        self.out = Path(run.out)
        self.checkpoint_dir = self.out / CHECKPOINT_DIR
        self.start_step = 0
        self._prepare()

    # --- set-up -------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        run = self.run
        from training.model.presets import preset

        size = preset(run.model.backbone).vision.image_size
        per_rank = run.run.batch_size // self.env.world
        data_config = run.data.replace(batch_size=per_rank, image_size=(size, size), seed=run.run.seed)
        self.data = ManifestData(run.manifest_dir, data_config, split="train")
        self.validation = None
        if run.run.validation_batches:
            counts = self.data.manifest["counts"].get("validation", {})
            if counts.get("episodes"):
                val_config = data_config.replace(augment=AugmentConfig(enabled=False), state_mask_prob=0.0,
                                                 num_workers=0)
                self.validation = ManifestData(run.manifest_dir, val_config, split="validation")
        init = Path(run.init) / CHECKPOINT_DIR if run.init else None
        if init is not None and not (init / "config.json").is_file():
            raise ConfigError(f"fine-tuning starts from {init}, which holds no checkpoint: run the pretrain stage first")
        self.tokenizer = load_tokenizer(init if init is not None else run.model.weights.tokenizer)
        spec = self.data.spec
        torch.manual_seed(run.run.seed)  # the initial weights are part of the run's reproducibility
        self.policy = A1Policy(run.model, chunk=spec.chunk, state_dim=spec.max_state_dim,
                               action_dim=spec.max_action_dim, camera_slots=len(spec.camera_slots),
                               tokenizer=self.tokenizer)
        if init is not None:
            self._check_init(init)
            load_weights(self.policy, init)
        elif any((run.model.weights.molmo, run.model.weights.llm, run.model.weights.vision)):
            from training.model.molmo import load_pretrained

            load_pretrained(self.policy, run.model.weights)
        self.policy.to(self.device)
        self.optimizer, self.scheduler = build_optimizer(self.policy, run.run.optim, run.run.steps,
                                                         fused=self.device.type == "cuda")
        self.model: torch.nn.Module = self.policy
        if self.env.world > 1:
            # unused parameters: layers past a random exit, the last LLM layer's output under the expert
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.policy, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.loader = ManifestLoader(self.data, rank=self.env.rank, world_size=self.env.world,
                                     pin_memory=self.device.type == "cuda")
        manifest_json = Path(run.manifest_dir) / "manifest.json"
        self.manifest_info = {"name": self.data.manifest["name"], "dir": str(run.manifest_dir),
                              "manifest_json_sha256": file_sha256(manifest_json),
                              "table_sha256": self.data.manifest["table"]["sha256"], "split": "train"}
        self._maybe_resume()

    def _check_init(self, init: Path) -> None:
        saved = read_config(init)
        mine = self.run.model
        theirs = saved["run"]["model"]
        for key in ("backbone", "head", "query_tokens", "expert_width"):
            if theirs.get(key) != getattr(mine, key):
                raise ConfigError(f"fine-tuning model.{key} {getattr(mine, key)!r} differs from the pre-trained "
                                  f"checkpoint's {theirs.get(key)!r} ({init})")
        shape = saved["shapes"]
        spec = self.data.spec
        for key, value in (("chunk", spec.chunk), ("state_dim", spec.max_state_dim),
                           ("action_dim", spec.max_action_dim), ("camera_slots", len(spec.camera_slots))):
            if shape[key] != value and not (key == "chunk" and mine.head == "fm"):
                raise ConfigError(f"fine-tuning {key} {value} differs from the pre-trained checkpoint's {shape[key]}")

    def _maybe_resume(self) -> None:
        if not (self.checkpoint_dir / "config.json").is_file():
            return
        saved = read_config(self.checkpoint_dir)
        changed = _changed(saved.get("identity"), run_identity(self.run))
        # A rebuilt manifest (new stores, other splits) is another run too, whatever the settings say.
        if (saved.get("manifest") or {}).get("table_sha256") != self.manifest_info["table_sha256"]:
            changed.insert(0, f"manifest {self.manifest_info['name']} (episode table)")
        if changed:
            log.warning("%s: the configuration changed since its checkpoint (%s); training from the start",
                        self.out, ", ".join(changed[:6]))
            return
        load_weights(self.policy, self.checkpoint_dir)
        state = load_train_state(self.checkpoint_dir)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        self.start_step = int(state["step"])
        log.info("%s: resuming at step %d of %d", self.out, self.start_step, self.run.run.steps)

    # --- the loop ---------------------------------------------------------------------------------------

    def batches(self):
        while True:
            yield from self.loader

    def train(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``run.steps`` (or stop after step ``stop_at``, writing a checkpoint there); a summary."""
        run = self.run.run
        last = run.steps if stop_at is None else min(run.steps, stop_at)
        live, runtime_live = self._live(self.run.reports), self._live(self.run.runtime)
        progress = self._progress(last)
        history: list[dict[str, Any]] = []
        window: dict[str, list[float]] = {}
        step = self.start_step
        waited = computed = 0.0
        samples = 0
        batches = self.batches()
        tick = time.perf_counter()
        self.model.train()
        while step < last:
            t0 = time.perf_counter()
            batch = self.policy.prepare(next(batches), self.device)
            t1 = time.perf_counter()
            exits = self.policy.exits_for_step(self.policy.config.exits.mode, step_generator(run.seed, step, 0))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                losses = self.policy_losses(batch, exits, step_generator(run.seed, step, 1, self.env.rank))
                loss = torch.stack(list(losses.values())).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if run.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), run.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            step += 1
            t2 = time.perf_counter()
            waited += t1 - t0
            computed += t2 - t1
            samples += batch["size"] * self.env.world
            window.setdefault("loss", []).append(float(loss.detach()))
            for e, value in losses.items():
                window.setdefault(f"loss_exit_{e}", []).append(float(value.detach()))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{window['loss'][-1]:.4f}",
                                     samples_s=f"{samples / max(1e-9, time.perf_counter() - tick):.1f}")
            if step % run.log_every == 0 or step == last:
                record = {f"train/{k}": self.env.mean(float(np.mean(v))) for k, v in window.items()}
                for group in self.optimizer.param_groups:
                    record[f"train/lr_{group['name']}"] = group["lr"]
                speed = {"train/samples_per_s": samples / max(1e-9, time.perf_counter() - tick),
                         "train/data_wait_share": waited / max(1e-9, waited + computed)}
                history.append({"step": step, **record, **speed})
                self._log(live, step, record)
                self._log(runtime_live, step, speed)
                window.clear()
            if step % run.checkpoint_every == 0 or step == last:
                evaluation = self.evaluate() if self.validation is not None else {}
                if evaluation:
                    history.append({"step": step, **evaluation})
                    self._log(live, step, evaluation)
                self.save(step)
        if progress is not None:
            progress.close()
        for sink in (live, runtime_live):
            if sink is not None:
                sink.end()
        self.env.barrier()
        return {"steps": step, "history": history, "checkpoint": str(self.checkpoint_dir),
                "decode_errors": self.loader.decode_errors}

    def policy_losses(self, batch: dict[str, Any], exits, generator) -> dict[int, torch.Tensor]:
        # through the module's forward (A1Policy.forward = losses), so DDP synchronises the gradients
        return self.model(batch, exits, generator)

    # --- validation ---------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation losses per exit, and the last exit's action L1 against a mean-action baseline and
        against itself with the cameras shuffled across the batch."""
        self.policy.eval()
        totals: dict[str, list[float]] = {}
        loader = ManifestLoader(self.validation, rank=self.env.rank, world_size=self.env.world, num_workers=0)
        for i, raw in enumerate(loader):
            if i >= self.run.run.validation_batches:
                break
            batch = self.policy.prepare(raw, self.device)
            generator = step_generator(self.run.run.seed, i, 2, self.env.rank)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                for e, value in self.policy.losses(batch, self.policy.exits, generator).items():
                    totals.setdefault(f"val/loss_exit_{e}", []).append(float(value))
                valid = batch["action_time_mask"][:, :, None] & batch["action_mask"][:, None, :]
                truth = batch["action"].float()
                noise = torch.randn(truth.shape, generator=step_generator(self.run.run.seed, i, 3, self.env.rank))
                predicted = self.policy.predict(batch, noise=noise)
                totals.setdefault("val/action_l1", []).append(float(masked_mean((predicted - truth).abs(), valid)))
                shuffled = dict(batch)
                shuffled["images"] = batch["images"].roll(1, dims=0)
                shuffled["image_mask"] = batch["image_mask"].roll(1, dims=0)
                predicted = self.policy.predict(shuffled, noise=noise)
                totals.setdefault("val/action_l1_images_shuffled", []).append(
                    float(masked_mean((predicted - truth).abs(), valid)))
                baseline = self.mean_actions(raw).to(self.device)
                totals.setdefault("val/mean_action_baseline_l1", []).append(
                    float(masked_mean((baseline[:, None, :] - truth).abs(), valid)))
        self.policy.train()
        return {k: self.env.mean(float(np.mean(v))) for k, v in totals.items()}

    def mean_actions(self, batch: dict[str, Any]) -> torch.Tensor:
        """Each sample's embodiment's mean action (from the stores' statistics), normalised and placed."""
        rows = []
        for dataset, embodiment in zip(batch["dataset"], batch["embodiment"]):
            codec = self.data.codec(dataset, embodiment)
            stats = codec.normalizer.groups[group_key(dataset, embodiment, codec.normalizer.scope)]["action"]
            packed, _ = codec.encode("action", stats.mean, stats.names)
            rows.append(packed)
        return torch.from_numpy(np.stack(rows)).float()

    # --- checkpoints and logging --------------------------------------------------------------------

    def save(self, step: int) -> None:
        self.env.check_replicas(self.policy)
        if self.env.rank == 0:
            spec = self.data.spec
            config = {
                "run": self.run.to_json(), "identity": run_identity(self.run), "step": step,
                "total_steps": self.run.run.steps, "manifest": self.manifest_info,
                "shapes": {"chunk": spec.chunk, "state_dim": spec.max_state_dim, "action_dim": spec.max_action_dim,
                           "camera_slots": len(spec.camera_slots), "image_size": list(spec.image_size),
                           "exits": list(self.policy.exits), "layers": self.policy.num_layers},
                "init": str(Path(self.run.init) / CHECKPOINT_DIR) if self.run.init else None,
                "world_size": self.env.world,
            }
            state = {"step": step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "loader": self.loader.state_dict(), "torch_rng": torch.get_rng_state()}
            save_checkpoint(self.out, model=self.policy, config=config, spec=spec, tokenizer=self.tokenizer,
                            train_state=state)
        self.env.barrier()

    def _live(self, directory: str):
        """A dvclive logger on rank 0. Two per run: ``run.reports`` (losses, learning rates: a DVC
        output, the same on any machine) and ``run.runtime`` (throughput: machine-dependent, no output)."""
        if self.env.rank != 0 or not directory:
            return None
        from dvclive import Live

        return Live(dir=directory, resume=self.start_step > 0, save_dvc_exp=False, dvcyaml=None, report=None)

    def _log(self, live, step: int, record: dict[str, float]) -> None:
        if live is None:
            return
        live.step = step
        for key, value in record.items():
            if math.isfinite(value):
                live.log_metric(key, value)
        live.next_step()

    def _progress(self, last: int):
        if self.quiet or self.env.rank != 0:
            return None
        from tqdm import tqdm

        return tqdm(total=last, initial=self.start_step, desc=f"{self.run.stage} {self.run.name}", unit="step",
                    dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="a1pipe train", description="pre-train or fine-tune the A1 policy")
    parser.add_argument("stage", choices=("pretrain", "finetune"))
    parser.add_argument("--name", help="the fine-tuning manifest (a training.finetune entry)")
    parser.add_argument("--variant", choices=sorted(VARIANTS),
                        help="a fine-tuning variant (no_images: the same run without cameras), written under "
                             "<out>/baselines/<name>/<variant>")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--stop-at", type=int, default=None, help="stop after this step (a checkpoint is written)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run = resolve_run(args.params, args.stage, args.name, variant=args.variant)
        summary = Trainer(run, quiet=args.quiet).train(stop_at=args.stop_at)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"a1pipe train {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        last = next((h for h in reversed(summary["history"]) if "train/loss" in h), {})
        print(json.dumps({"steps": summary["steps"], "checkpoint": summary["checkpoint"],
                          "train_loss": last.get("train/loss"), "decode_errors": summary["decode_errors"]}))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
