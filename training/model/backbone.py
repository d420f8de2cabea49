"""The VLM backbone: vision tower, connector (image pooling + projector) and the decoder LLM.

Built with ``transformers`` classes from a preset (``presets.py``): a CLIP or SigLIP
vision model, and a ``Qwen2Model`` for the LLM. The connector is Molmo's: features of two
ViT layers concatenated per patch, pooled 2x2 by attention with the window's mean as the
query, then a SwiGLU projector to the LLM width. Its parameter names are Molmo's
(``wq/wk/wv/wo``, ``w1/w2/w3``), so a Molmo checkpoint loads onto it unchanged.

The LLM's final norm is replaced by the identity: every exit, the last included, reads a
block's raw output and applies one shared exit norm (initialised from the LLM's final
norm when weights are loaded). So ``hidden_states[i + 1]`` is block ``i``'s output for
every ``i``, and an exit after any layer is computed the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2Model, SiglipVisionConfig, SiglipVisionModel
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from training.model.presets import ConnectorSpec, LLMSpec, VisionSpec


class VisionTower(nn.Module):
    """uint8 images -> per-patch features of the chosen ViT layers, concatenated (Molmo: layers -2 and -9)."""

    def __init__(self, spec: VisionSpec):
        super().__init__()
        self.spec = spec
        common = dict(hidden_size=spec.width, intermediate_size=spec.mlp, num_hidden_layers=spec.layers,
                      num_attention_heads=spec.heads, image_size=spec.image_size, patch_size=spec.patch_size,
                      hidden_act=spec.act, attn_implementation="sdpa")
        if spec.kind == "clip":
            self.model = CLIPVisionModel(CLIPVisionConfig(**common))
        elif spec.kind == "siglip":
            self.model = SiglipVisionModel(SiglipVisionConfig(vision_use_head=False, **common))
        else:
            raise ValueError(f"vision kind must be clip or siglip, got {spec.kind!r}")
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_width(self) -> int:
        return self.spec.width * len(self.spec.feature_layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images uint8 [N, H, W, 3] (H = W = the preset's size) -> [N, patches, feature_width]."""
        x = images.permute(0, 3, 1, 2).to(self.mean.dtype).div(255.0)
        x = (x - self.mean) / self.std
        out = self.model(pixel_values=x.to(self.model.dtype), output_hidden_states=True)
        features = torch.cat([out.hidden_states[i] for i in self.spec.feature_layers], dim=-1)
        return features[:, self.spec.prefix_tokens:]


class ImagePooling2d(nn.Module):
    """Molmo's "attention-meanq" pooling: each window of pool x pool patches -> one token."""

    def __init__(self, in_width: int, spec: ConnectorSpec):
        super().__init__()
        self.pool, self.heads = spec.pool, spec.pool_heads
        self.wq = nn.Linear(in_width, spec.pool_width)
        self.wk = nn.Linear(in_width, spec.pool_width)
        self.wv = nn.Linear(in_width, spec.pool_width)
        self.wo = nn.Linear(spec.pool_width, spec.pool_width)

    def forward(self, features: torch.Tensor, side: int) -> torch.Tensor:
        """[N, side*side, C] -> [N, ceil(side/pool)^2, pool_width]."""
        n, _, c = features.shape
        p = self.pool
        x = features.reshape(n, side, side, c)
        pad = (-side) % p
        if pad:  # Molmo pads the bottom and right edges
            x = F.pad(x, (0, 0, 0, pad, 0, pad))
        h = x.shape[1] // p
        windows = x.reshape(n, h, p, h, p, c).permute(0, 1, 3, 2, 4, 5).reshape(n * h * h, p * p, c)
        query = windows.mean(dim=1, keepdim=True)
        q, k, v = self.wq(query), self.wk(windows), self.wv(windows)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        # written out (one query over pool^2 keys): every product is visible to torch's FLOP counter
        weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(n * h * h, 1, -1)
        return self.wo(out).reshape(n, h * h, -1)


class ImageProjector(nn.Module):
    """Molmo's SwiGLU projector to the LLM width: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, in_width: int, hidden: int, out_width: int):
        super().__init__()
        self.w1 = nn.Linear(in_width, hidden, bias=False)
        self.w3 = nn.Linear(in_width, hidden, bias=False)
        self.w2 = nn.Linear(hidden, out_width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def qwen2_config(spec: LLMSpec, **overrides) -> Qwen2Config:
    values = dict(hidden_size=spec.width, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                  num_key_value_heads=spec.kv_heads, intermediate_size=spec.mlp, vocab_size=spec.vocab,
                  rope_theta=spec.rope_theta, rms_norm_eps=spec.rms_eps, max_position_embeddings=spec.max_positions,
                  head_dim=spec.head_dim, tie_word_embeddings=False, use_sliding_window=False,
                  attn_implementation="sdpa")
    values.update(overrides)
    config = Qwen2Config(**values)
    config.attention_bias = spec.qkv_bias  # Qwen2 always has q/k/v biases; recorded for the key map
    return config


def build_llm(spec: LLMSpec) -> tuple[Qwen2Model, Qwen2RMSNorm]:
    """The decoder LLM with its final norm removed, and the shared exit norm that replaces it."""
    llm = Qwen2Model(qwen2_config(spec))
    llm.norm = nn.Identity()
    return llm, Qwen2RMSNorm(spec.width, eps=spec.rms_eps)


class ProprioProjector(nn.Module):
    """The state (and which of its dimensions exist) -> one LLM token (OpenVLA-OFT / A1)."""

    def __init__(self, state_dim: int, width: int):
        super().__init__()
        self.fc1 = nn.Linear(2 * state_dim, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # the loader's state is float32; a policy cast to bf16 for inference (no autocast) takes it as is
        x = torch.cat([state, mask.to(state.dtype)], dim=-1).to(self.fc1.weight.dtype)
        return self.fc2(F.gelu(self.fc1(x)))
