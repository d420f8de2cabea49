"""Adaptive (early-exit) inference: stop the LLM once the action has stopped changing.

The LLM runs one block at a time with its KV cache (``A1Policy.iter_layers``: no block is
computed twice). After the reference layer (the one just before the first exit) and after
every exit layer the head produces an action; at exit k the discrepancy with the previous
action (``training/exits.py``) is compared with eta_k, and a sample exits when it is at or
below it, at ``max_layer``, or at the last exit.

- **MLP head**: the head on the query tokens' exit-normed states at that layer.
- **Flow matching, full**: ``full_steps`` Euler steps from the same noise at every check
  (A1's early exit without its anchor draws fresh noise per layer, so its discrepancies mix
  layer drift with sampling noise; one shared draw keeps only the drift).
- **Flow matching, Inter-Layer Truncated FM** (paper Eq. 10; default): ``itfm_steps``
  (delta = 2) Euler steps per check, the first check from noise, every later one warm-started
  from the previous check's action, the time schedule restarting at t = 1 as A1's code does.

The controller forgets everything between queries; ``carry_over=True`` keeps A1's code's
behaviour instead (the first warm start of a query comes from the previous query's last
action), for comparison only.

Every query reports, per sample, its exit layer, the layers run, the head evaluations, and
wall time per component (vision and embeddings, LLM blocks, head, checks), synchronised on
CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from training.exits import METRICS, discrepancy
from training.model.heads import MLPHead

FM_MODES = ("itfm", "full")


@dataclass(frozen=True)
class ExitSettings:
    exits: tuple[int, ...]
    #: eta per exit; None: never exit early (calibration records every exit)
    thresholds: tuple[float, ...] | None = None
    metric: str = "cosine"
    max_layer: int | None = None
    fm_mode: str = "itfm"
    itfm_steps: int = 2
    full_steps: int = 10
    carry_over: bool = False

    def __post_init__(self) -> None:
        if not self.exits or list(self.exits) != sorted(set(self.exits)) or self.exits[0] < 1:
            raise ValueError(f"exits must be ascending layer indices from 1 (layer exits[0] - 1 is the first "
                             f"exit's reference), got {list(self.exits)}")
        if self.thresholds is not None and len(self.thresholds) != len(self.exits):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.exits)} exits")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.fm_mode not in FM_MODES:
            raise ValueError(f"fm_mode must be one of {FM_MODES}, got {self.fm_mode!r}")

    @property
    def reference(self) -> int:
        return self.exits[0] - 1

    @property
    def steps(self) -> int:
        return self.itfm_steps if self.fm_mode == "itfm" else self.full_steps


@dataclass
class ExitResult:
    actions: torch.Tensor  # [B, H, D] normalised, from each sample's exit
    exit_layer: torch.Tensor  # [B] the layer each sample exited after
    exit_index: torch.Tensor  # [B] its position in the exit set
    head_evals: torch.Tensor  # [B] head (or expert chain) evaluations until its exit, the reference included
    layers_computed: int  # LLM blocks the batch ran (the deepest exit of the batch)
    timing: dict[str, float] = field(default_factory=dict)
    #: record mode: every check's action (reference first) and every metric's discrepancy [K, B]
    actions_per_check: list[torch.Tensor] = field(default_factory=list)
    discrepancies: dict[str, torch.Tensor] = field(default_factory=dict)


class AdaptivePolicy:
    """A trained policy plus exit settings; ``act`` answers one batch of queries."""

    def __init__(self, policy: torch.nn.Module, settings: ExitSettings):
        if settings.exits[-1] >= policy.num_layers:
            raise ValueError(f"exit {settings.exits[-1]} is beyond the LLM's {policy.num_layers} layers")
        self.policy, self.settings = policy, settings
        self._carried: torch.Tensor | None = None

    def reset(self) -> None:
        self._carried = None

    def _sync(self, device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    @torch.no_grad()
    def act(self, batch: dict[str, Any], *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
            record: bool = False) -> ExitResult:
        pol, s = self.policy, self.settings
        device = batch["images"].device
        timing = {"prefix": 0.0, "llm": 0.0, "head": 0.0, "check": 0.0}
        t0 = time.perf_counter()
        prefix = pol.embed(batch)
        self._sync(device)
        timing["prefix"] = time.perf_counter() - t0
        b = prefix.embeds.shape[0]
        valid = batch["action_time_mask"][:, :, None] & batch["action_mask"][:, None, :]
        mlp = isinstance(pol.head, MLPHead)
        if not mlp and noise is None:
            noise = torch.randn((b, pol.chunk, pol.action_dim), generator=generator, device="cpu")
        noise = noise.to(device, prefix.embeds.dtype) if noise is not None else None
        state = batch["state"].to(prefix.embeds.dtype)
        state_mask = batch["state_mask"] & ~batch["state_dropped"][:, None]
        checks = (s.reference, *s.exits)
        # A1: exit at the first exit at or beyond max_layer, whatever the discrepancy
        last = s.exits[-1] if s.max_layer is None else next((e for e in s.exits if e >= s.max_layer), s.exits[-1])
        actions = torch.zeros(b, pol.chunk, pol.action_dim, device=device)
        exit_layer = torch.full((b,), -1, dtype=torch.long, device=device)
        exit_index = torch.full((b,), -1, dtype=torch.long, device=device)
        head_evals = torch.zeros(b, dtype=torch.long, device=device)
        alive = torch.ones(b, dtype=torch.bool, device=device)
        result = ExitResult(actions, exit_layer, exit_index, head_evals, 0, timing)
        previous: torch.Tensor | None = None
        layers = 0
        t_layer = time.perf_counter()
        for i, hidden, cache in pol.iter_layers(prefix, stop=last + 1):
            layers = i + 1
            if i not in checks:
                continue
            self._sync(device)
            t1 = time.perf_counter()
            timing["llm"] += t1 - t_layer
            if mlp:
                action = pol.head(pol.exit_norm(hidden[:, prefix.queries])).float()
            else:
                kv = [(cache.layers[j].keys, cache.layers[j].values) for j in range(i + 1)]
                if s.fm_mode == "itfm" and previous is not None:
                    start = previous.to(noise.dtype)
                elif s.fm_mode == "itfm" and s.carry_over and self._carried is not None:
                    start = self._carried.to(noise.dtype)
                else:
                    start = noise
                action = pol.head.sample(kv, prefix.valid, state, state_mask, s.steps, start).float()
            head_evals += alive.long()
            self._sync(device)
            t2 = time.perf_counter()
            timing["head"] += t2 - t1
            if record:
                result.actions_per_check.append(action)
            if i != s.reference:
                k = s.exits.index(i)
                d = discrepancy(action, previous, valid, s.metric)
                if record:
                    for metric in METRICS:
                        value = d if metric == s.metric else discrepancy(action, previous, valid, metric)
                        result.discrepancies.setdefault(metric, torch.zeros(len(s.exits), b, device=device))[k] = value
                leaving = alive.clone() if (i == last) else alive & (
                    d <= s.thresholds[k] if s.thresholds is not None else torch.zeros_like(alive))
                actions[leaving] = action[leaving]
                exit_layer[leaving] = i
                exit_index[leaving] = k
                alive &= ~leaving
                timing["check"] += time.perf_counter() - t2
                if not alive.any() and not record:
                    break
            previous = action
            t_layer = time.perf_counter()
        result.layers_computed = layers
        if s.carry_over:
            self._carried = actions.clone()
        return result


def exit_settings(policy: torch.nn.Module, first: int, interval: int, **kw: Any) -> ExitSettings:
    """The exit set ``first, first + interval, ...`` plus the last layer (A1: first 1, interval 2)."""
    layers = policy.num_layers
    exits = tuple(sorted(set(range(first, layers, interval)) | {layers - 1}))
    return ExitSettings(exits=exits, **kw)


def stack_discrepancies(results: Sequence[ExitResult], metric: str) -> torch.Tensor:
    """V [K, N] over many batches (record mode)."""
    return torch.cat([r.discrepancies[metric].cpu() for r in results], dim=1)
