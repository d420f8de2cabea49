"""AdamW with A1's parameter groups and learning-rate schedule (see ``OptimConfig``).

Schedule, per group, as a factor of the group's rate at optimizer step k (0-based):
``(k + 1) / warmup`` during warm-up, then a cosine from 1 down to ``min_lr_ratio`` at the
last step; groups with freeze steps (the LLM and the connector) are 0 for ``k <
freeze_steps`` and then take the warm-up ramp where it stands (A1's
``MultimodalScheduler``). It is a ``LambdaLR``, so its position is saved and restored with
the optimizer.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from training.config import OptimConfig

GROUPS = ("vision", "connector", "llm", "head")


def group_of(name: str) -> str:
    """Which learning-rate group a policy parameter belongs to."""
    if name.startswith("vision."):
        return "vision"
    if name.startswith(("pooling.", "projector.")):
        return "connector"
    if name.startswith(("llm.", "exit_norm.")):
        return "llm"
    return "head"  # the action head, the proprio projector, the action queries


def lr_factor(step: int, *, warmup: int, total: int, min_ratio: float, freeze: int) -> float:
    if step < freeze:
        return 0.0
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(policy: nn.Module, config: OptimConfig, total_steps: int, *,
                    fused: bool = False) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable groups (a group with lr 0 is frozen, not just given a zero rate)."""
    rates = {"vision": config.lr_vision, "connector": config.lr_connector, "llm": config.lr_llm,
             "head": config.lr_head}
    frozen_embeddings = {"llm.embed_tokens.weight"} if config.freeze_embeddings else set()
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in policy.named_parameters():
        group = group_of(name)
        trainable = rates[group] > 0 and name not in frozen_embeddings
        param.requires_grad_(trainable)
        if trainable:
            decay = param.ndim >= 2 and "norm" not in name
            buckets.setdefault((group, decay), []).append(param)
    param_groups, lambdas = [], []
    for (group, decay), params in sorted(buckets.items()):
        param_groups.append({"params": params, "lr": rates[group], "name": f"{group}{'' if decay else '_no_decay'}",
                             "weight_decay": config.weight_decay if decay else 0.0})
        freeze = config.freeze_steps if group in ("llm", "connector") else 0
        lambdas.append(partial(lr_factor, warmup=config.warmup_steps, total=total_steps,
                               min_ratio=config.min_lr_ratio, freeze=freeze))
    if not param_groups:
        raise ValueError("nothing to train: every learning rate is 0")
    optimizer = torch.optim.AdamW(param_groups, betas=config.betas, eps=config.eps, fused=fused or None)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
