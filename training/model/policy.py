"""The A1 policy: VLM backbone + action head, with an action available after any exit layer.

The prefix the LLM reads, in order: each camera slot's image tokens (a missing slot's
tokens are masked out), the instruction's tokens (padding masked), one proprio token
(OpenVLA-OFT / A1: a small projector of the state and its dimension mask), and for the
MLP head its action query tokens. Attention over the prefix is bidirectional unless
``model.causal`` (A1's default ``llm_causal_attention=False``).

An exit after LLM layer i (0-based) takes, for the MLP head, the query tokens' block-i
outputs through the shared exit norm; for the flow-matching expert, the prefix keys and
values of layers 0..i and the expert's first i + 1 layers. (A1's MLP exit i reads the
*input* of block i, one layer earlier than its flow-matching exit i; here both read
block i.) Training modes (``model.exits.mode``): ``last``, ``all`` (the mean over the
exit set) and ``random`` (one exit per step; the LLM forward stops after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.config import ModelConfig
from training.model.backbone import ImagePooling2d, ImageProjector, ProprioProjector, VisionTower, build_llm
from training.model.heads import NEG, FlowMatchingExpert, MLPHead, masked_mean
from training.model.presets import Preset, preset
from training.model.tokenizer import encode_batch


@dataclass
class Prefix:
    embeds: torch.Tensor  # [B, S, W]
    valid: torch.Tensor  # bool [B, S]
    queries: slice | None  # the MLP head's query tokens

    @property
    def positions(self) -> torch.Tensor:
        """Rotary positions [B, S]: each real token's index among its sample's real tokens.

        A batch pads its texts to the longest one and masks absent cameras, so a token's index in
        the padded sequence depends on the other samples of the batch. Trained on batches whose
        longest text is one instruction and queried alone, a policy would see the proprio and query
        tokens at positions it never trained on (measured: Meta-World actions off by 0.5 for the
        shortest instruction, exact for the longest). Counting only real tokens makes a sample's
        output independent of its batch, as if it ran unpadded. Padding tokens repeat the previous
        real token's position; they are masked as keys, so their value is never read.
        """
        return (self.valid.long().cumsum(dim=1) - 1).clamp(min=0)


@dataclass
class LLMOutput:
    hidden: tuple[torch.Tensor, ...] | None  # hidden[i + 1] = block i's raw output
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None  # per layer (keys, values) of the prefix
    layers: int  # layers run


class A1Policy(nn.Module):
    def __init__(self, config: ModelConfig, *, chunk: int, state_dim: int, action_dim: int, camera_slots: int,
                 tokenizer: Any = None):
        super().__init__()
        self.config = config
        self.spec: Preset = preset(config.backbone)
        self.chunk, self.state_dim, self.action_dim, self.camera_slots = chunk, state_dim, action_dim, camera_slots
        self.tokenizer = tokenizer
        spec = self.spec
        self.vision = VisionTower(spec.vision)
        self.pooling = ImagePooling2d(self.vision.feature_width, spec.connector)
        self.projector = ImageProjector(spec.connector.pool_width, spec.connector.projector_mlp, spec.llm.width)
        self.llm, self.exit_norm = build_llm(spec.llm)
        self.proprio = ProprioProjector(state_dim, spec.llm.width)
        if config.head == "mlp":
            self.head: nn.Module = MLPHead(spec.llm.width, chunk, action_dim, config.query_tokens)
        else:
            self.head = FlowMatchingExpert(spec.llm, spec.expert, config.expert_width, chunk, state_dim, action_dim)
        self.exits: tuple[int, ...] = config.exits.layers(spec.llm.layers)
        self.vision.requires_grad_(False)  # A1 keeps the ViT frozen (lr 0)

    @property
    def num_layers(self) -> int:
        return self.spec.llm.layers

    @property
    def image_size(self) -> int:
        return self.spec.vision.image_size

    # --- inputs ---------------------------------------------------------------------------------------

    def prepare(self, batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
        """A loader batch on ``device``, with the prompt tokenized (``text_ids``, ``text_valid``)."""
        out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        ids, valid = encode_batch(self.tokenizer, list(batch["text"]), self.config.max_text_tokens)
        out["text_ids"], out["text_valid"] = ids.to(device), valid.to(device)
        return out

    def image_tokens(self, images: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        """uint8 [B, slots, H, W, 3] -> [B, slots * tokens, W]; the tower runs only on present cameras."""
        b, slots = image_mask.shape
        tokens = self.spec.tokens_per_image()
        width = self.spec.llm.width
        out = torch.zeros(b, slots, tokens, width, device=images.device, dtype=self.llm.embed_tokens.weight.dtype)
        present = image_mask.reshape(-1).nonzero().squeeze(-1)
        if present.numel():
            flat = images.reshape(b * slots, *images.shape[2:])[present]
            features = self.vision(flat)
            pooled = self.pooling(features, self.spec.vision.patches)
            out.view(b * slots, tokens, width)[present] = self.projector(pooled).to(out.dtype)
        return out.reshape(b, slots * tokens, width)

    def embed(self, batch: dict[str, Any]) -> Prefix:
        image_mask = batch["image_mask"]
        b = image_mask.shape[0]
        parts = [self.image_tokens(batch["images"], image_mask), self.llm.embed_tokens(batch["text_ids"])]
        valid = [image_mask.repeat_interleave(self.spec.tokens_per_image(), dim=1), batch["text_valid"]]
        # A dropped state (state masking) reads as no state at all: values and mask both zero.
        state_mask = batch["state_mask"] & ~batch["state_dropped"][:, None]
        parts.append(self.proprio(batch["state"], state_mask)[:, None].to(parts[0].dtype))
        valid.append(torch.ones(b, 1, dtype=torch.bool, device=image_mask.device))
        queries = None
        if isinstance(self.head, MLPHead):
            start = sum(p.shape[1] for p in parts)
            parts.append(self.head.query_embed[None].expand(b, -1, -1).to(parts[0].dtype))
            valid.append(torch.ones(b, self.head.queries, dtype=torch.bool, device=image_mask.device))
            queries = slice(start, start + self.head.queries)
        return Prefix(torch.cat(parts, dim=1), torch.cat(valid, dim=1), queries)

    def attention_mask(self, valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive [B, 1, S, S]: keys that are real tokens (and, when causal, not later); every row sees itself."""
        s = valid.shape[1]
        allowed = valid[:, None, :].expand(-1, s, -1).clone()
        if self.config.causal:
            allowed &= torch.ones(s, s, dtype=torch.bool, device=valid.device).tril()
        allowed |= torch.eye(s, dtype=torch.bool, device=valid.device)
        return torch.zeros(allowed.shape, dtype=dtype, device=valid.device).masked_fill(~allowed, NEG)[:, None]

    def run_llm(self, prefix: Prefix, layers: int) -> LLMOutput:
        """The LLM's first ``layers`` blocks over the prefix (transformers slices its layer list)."""
        mlp = isinstance(self.head, MLPHead)
        config = self.llm.config
        full = config.num_hidden_layers
        config.num_hidden_layers = layers
        try:
            out = self.llm(inputs_embeds=prefix.embeds, attention_mask=self.attention_mask(prefix.valid,
                                                                                           prefix.embeds.dtype),
                           position_ids=prefix.positions, output_hidden_states=mlp, use_cache=not mlp)
        finally:
            config.num_hidden_layers = full
        kv = None if mlp else [(layer.keys, layer.values) for layer in out.past_key_values.layers[:layers]]
        return LLMOutput(out.hidden_states if mlp else None, kv, layers)

    def iter_layers(self, prefix: Prefix, stop: int | None = None):
        """Run the LLM one block at a time, yielding ``(i, block i's output, cache)`` after each block.

        Every block runs once; its keys and values stay in ``cache`` (a DynamicCache holding
        layers 0..i), so an exit check after block i costs nothing extra in the LLM, and going
        on to block i + 1 recomputes nothing. Equal to ``run_llm`` (tested).
        """
        from transformers.cache_utils import DynamicCache

        h = prefix.embeds
        s = h.shape[1]
        positions = prefix.positions
        cache_position = torch.arange(s, device=h.device)
        rope = self.llm.rotary_emb(h, positions)
        mask = self.attention_mask(prefix.valid, h.dtype)
        cache = DynamicCache()
        for i, layer in enumerate(self.llm.layers[: self.num_layers if stop is None else stop]):
            h = layer(h, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                      cache_position=cache_position, position_embeddings=rope)
            yield i, h, cache

    # --- training -------------------------------------------------------------------------------------

    def exits_for_step(self, mode: str, draw: torch.Generator | None = None) -> tuple[int, ...]:
        if mode == "last":
            return (self.num_layers - 1,)
        if mode == "all":
            return self.exits
        pick = int(torch.randint(len(self.exits), (1,), generator=draw).item())
        return (self.exits[pick],)

    def forward(self, batch: dict[str, Any], exits: Sequence[int],
                generator: torch.Generator | None = None) -> dict[int, torch.Tensor]:
        """The training losses at ``exits`` (what DistributedDataParallel wraps)."""
        return self.losses(batch, exits, generator)

    def losses(self, batch: dict[str, Any], exits: Sequence[int],
               generator: torch.Generator | None = None) -> dict[int, torch.Tensor]:
        """The loss at each exit in ``exits``; the LLM runs only as deep as the deepest of them."""
        prefix = self.embed(batch)
        out = self.run_llm(prefix, max(exits) + 1)
        actions = batch["action"].to(prefix.embeds.dtype)
        valid = batch["action_time_mask"][:, :, None] & batch["action_mask"][:, None, :]
        losses = {}
        for e in exits:
            if isinstance(self.head, MLPHead):
                predicted = self.head(self.exit_norm(out.hidden[e + 1][:, prefix.queries]))
                losses[e] = masked_mean((predicted.float() - actions.float()).abs(), valid)
            else:
                state_mask = batch["state_mask"] & ~batch["state_dropped"][:, None]
                losses[e] = self.head.loss(out.kv[: e + 1], prefix.valid, batch["state"].to(actions.dtype),
                                           state_mask, actions, valid, generator)
        return losses

    # --- inference ------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, batch: dict[str, Any], exit_layer: int | None = None, *, steps: int | None = None,
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised actions [B, H, D] from one exit (default: the last layer)."""
        layer = self.num_layers - 1 if exit_layer is None else exit_layer
        prefix = self.embed(batch)
        out = self.run_llm(prefix, layer + 1)
        if isinstance(self.head, MLPHead):
            return self.head(self.exit_norm(out.hidden[layer + 1][:, prefix.queries])).float()
        b = prefix.embeds.shape[0]
        if noise is None:
            noise = torch.randn((b, self.chunk, self.action_dim), generator=generator, device="cpu")
        x = noise.to(prefix.embeds.device, prefix.embeds.dtype)
        state_mask = batch["state_mask"] & ~batch["state_dropped"][:, None]
        return self.head.sample(out.kv[: layer + 1], prefix.valid, batch["state"].to(x.dtype), state_mask,
                                steps or self.config.fm_steps, x).float()
