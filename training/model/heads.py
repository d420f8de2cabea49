"""Action heads: A1-MLP (query tokens regressed by an MLP-ResNet) and A1-FM (a flow-matching expert).

Flow matching follows openpi / A1's code convention: t = 1 is noise and t = 0 is data.
Training draws t ~ Beta(1.5, 1) mapped to 0.999 t + 0.001 (more weight on noisy t),
x_t = t * eps + (1 - t) * a, and regresses the velocity u = eps - a with an MSE over the
valid (unpadded) dimensions and chunk steps. Sampling integrates with Euler steps from
t = 1: x <- x - v / steps. (The paper writes the same process with t reversed.)

The expert is a small Qwen2 whose layer j attends over the LLM layer j's keys and values
of the prefix, as they are (A1, pi0): it must have the LLM's head size and KV heads.
Unlike A1's code, its rotary base equals the LLM's, so the suffix's rotated keys and the
cached prefix keys agree on positions. An exit after LLM layer i uses the expert's first
i + 1 layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from transformers import Qwen2Model
from transformers.cache_utils import DynamicCache

from training.model.backbone import qwen2_config
from training.model.presets import ExpertSpec, LLMSpec

NEG = -1e9  # additive mask value (finite: a row never becomes all -inf)


class MLPResNet(nn.Module):
    """OpenVLA-OFT's head: LayerNorm, Linear, ReLU, two pre-norm residual blocks, LayerNorm, Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, blocks: int = 2):
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.ReLU())
                                    for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = x + block(x)
        return self.out(x)


class MLPHead(nn.Module):
    """A1-MLP: ``queries`` action tokens appended to the prefix; each one's hidden state -> its chunk steps."""

    def __init__(self, width: int, chunk: int, action_dim: int, queries: int | None = None):
        super().__init__()
        queries = queries or chunk
        if chunk % queries:
            raise ValueError(f"model.query_tokens {queries} must divide the chunk {chunk}")
        self.chunk, self.action_dim, self.queries = chunk, action_dim, queries
        self.steps_per_query = chunk // queries
        self.query_embed = nn.Parameter(torch.randn(queries, width) * 0.02)
        self.mlp = MLPResNet(width, width, self.steps_per_query * action_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Exit-normed hidden states of the query tokens [B, Q, W] -> actions [B, H, D]."""
        return self.mlp(hidden).reshape(hidden.shape[0], self.chunk, self.action_dim)


def time_embedding(t: torch.Tensor, width: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """pi0's sine-cosine embedding of the flow time t [B] -> [B, width]."""
    fraction = torch.linspace(0.0, 1.0, width // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[:, None] / period[None, :] * 2 * math.pi
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


def sample_flow_time(batch: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """t ~ Beta(1.5, 1), then 0.999 t + 0.001. Beta(a, 1) has CDF t^a, so t = u^(1/a) exactly."""
    u = torch.rand(batch, generator=generator, device="cpu").to(device)
    return u.pow(1.0 / 1.5) * 0.999 + 0.001


class FlowMatchingExpert(nn.Module):
    """A1-FM: suffix = [state token, H action tokens]; layer j attends over the LLM's layer-j prefix K/V."""

    def __init__(self, llm: LLMSpec, spec: ExpertSpec, width: int | None, chunk: int, state_dim: int,
                 action_dim: int):
        super().__init__()
        width = width or spec.width
        if width % llm.head_dim or (width // llm.head_dim) % llm.kv_heads:
            raise ValueError(f"expert width {width} must be a multiple of the LLM head size {llm.head_dim} with a "
                             f"head count divisible by the LLM's {llm.kv_heads} KV heads")
        heads = width // llm.head_dim
        # vocab_size 1: the expert reads embeddings, never token ids (A1's expert keeps a 156M-parameter
        # vocabulary it never uses); MLP width 2x its width, as A1's 1024 -> 2048
        self.expert = Qwen2Model(qwen2_config(llm, hidden_size=width, num_attention_heads=heads,
                                              intermediate_size=2 * width, vocab_size=1))
        self.width, self.chunk, self.action_dim = width, chunk, action_dim
        self.state_in = nn.Linear(2 * state_dim, width)
        self.action_in = nn.Linear(action_dim, width)
        self.time_mlp = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
        self.out = nn.Linear(width, action_dim)

    def velocity(self, prefix_kv: Sequence[tuple[torch.Tensor, torch.Tensor]], prefix_valid: torch.Tensor,
                 state: torch.Tensor, state_mask: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v(x_t, t) [B, H, D] using the first ``len(prefix_kv)`` expert layers."""
        n_layers = len(prefix_kv)
        state_token = self.state_in(torch.cat([state, state_mask.to(state.dtype)], dim=-1))[:, None]
        actions = self.action_in(x_t)
        tokens = self.time_mlp(torch.cat([actions, time_embedding(t, self.width).to(actions.dtype)[:, None]
                                          .expand(-1, self.chunk, -1)], dim=-1))
        suffix = torch.cat([state_token, tokens], dim=1)
        mask = self._mask(prefix_valid, suffix.dtype)
        cache = DynamicCache()  # fresh every call: the expert appends its suffix K/V to the cache in place
        for layer, (k, v) in enumerate(prefix_kv):
            cache.update(k, v, layer)
        # the suffix continues each sample's real prefix tokens (see ``Prefix.positions``), not the padded length
        positions = (prefix_valid.sum(dim=1, keepdim=True)
                     + torch.arange(1 + self.chunk, device=suffix.device)[None]).to(torch.long)
        config = self.expert.config
        full = config.num_hidden_layers
        config.num_hidden_layers = n_layers  # run only the first n layers (transformers slices its layer list)
        try:
            hidden = self.expert(inputs_embeds=suffix, attention_mask=mask, position_ids=positions,
                                 past_key_values=cache, use_cache=False).last_hidden_state
        finally:
            config.num_hidden_layers = full
        return self.out(hidden[:, 1:])  # last_hidden_state is already through the expert's final norm

    def _mask(self, prefix_valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive [B, 1, 1 + H, prefix + 1 + H]: the state token sees the prefix and itself; action
        tokens see the prefix, the state and every action token (pi0's blocks); padding is hidden."""
        b, prefix_len = prefix_valid.shape
        s = 1 + self.chunk
        allowed = torch.ones(b, s, prefix_len + s, dtype=torch.bool, device=prefix_valid.device)
        allowed[:, :, :prefix_len] = prefix_valid[:, None, :]
        allowed[:, 0, prefix_len + 1:] = False
        mask = torch.zeros(allowed.shape, dtype=dtype, device=prefix_valid.device).masked_fill(~allowed, NEG)
        return mask[:, None]

    def loss(self, prefix_kv, prefix_valid, state, state_mask, actions, valid, generator=None) -> torch.Tensor:
        """Flow-matching MSE over valid dims and steps; ``valid`` is bool [B, H, D]."""
        b = actions.shape[0]
        t = sample_flow_time(b, generator, actions.device).to(actions.dtype)
        noise = torch.randn(actions.shape, generator=generator, device="cpu").to(actions.device, actions.dtype)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        target = noise - actions
        v = self.velocity(prefix_kv, prefix_valid, state, state_mask, x_t, t)
        return masked_mean((v.float() - target.float()) ** 2, valid)

    @torch.no_grad()
    def sample(self, prefix_kv, prefix_valid, state, state_mask, steps: int, x: torch.Tensor,
               t_start: float = 1.0) -> torch.Tensor:
        """Euler from ``t_start`` to 0 in ``steps`` equal steps, starting at ``x`` (noise, or a warm start)."""
        dt = t_start / steps
        t = torch.full((x.shape[0],), t_start, device=x.device, dtype=x.dtype)
        for _ in range(steps):
            v = self.velocity(prefix_kv, prefix_valid, state, state_mask, x, t)
            x = x - dt * v.to(x.dtype)
            t = t - dt
        return x


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp(min=1.0)
