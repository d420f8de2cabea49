"""Loading pretrained weights: a Molmo checkpoint in its own key layout, or plain Hugging Face directories.

A1 starts from Molmo-7B-D-0924, whose checkpoint (remote-code ``modeling_molmo.py``, an
OLMo-style model) names and packs tensors differently from the ``transformers`` classes
the policy is built from. The map, one rule per Molmo tensor:

| Molmo key (``model.`` prefix) | policy parameter | transform |
|---|---|---|
| ``transformer.wte.embedding`` + ``transformer.wte.new_embedding`` | ``llm.embed_tokens.weight`` | concatenated (vocabulary + 128 Molmo tokens) |
| ``transformer.blocks.{i}.att_proj.{weight,bias}`` | ``llm.layers.{i}.self_attn.{q,k,v}_proj.*`` | rows split q, k, v |
| ``transformer.blocks.{i}.attn_out.weight`` | ``llm.layers.{i}.self_attn.o_proj.weight`` | |
| ``transformer.blocks.{i}.attn_norm.weight`` | ``llm.layers.{i}.input_layernorm.weight`` | |
| ``transformer.blocks.{i}.ff_norm.weight`` | ``llm.layers.{i}.post_attention_layernorm.weight`` | |
| ``transformer.blocks.{i}.ff_proj.weight`` | ``llm.layers.{i}.mlp.{up,gate}_proj.weight`` | rows split: first half up, second half gate (Molmo: ``x, gate = chunk(2)``; ``silu(gate) * x``) |
| ``transformer.blocks.{i}.ff_out.weight`` | ``llm.layers.{i}.mlp.down_proj.weight`` | |
| ``transformer.ln_f.weight`` | ``exit_norm.weight`` | the shared exit norm |
| ``vision_backbone.image_vit.class_embedding`` | ``vision.model.vision_model.embeddings.class_embedding`` | |
| ``vision_backbone.image_vit.positional_embedding`` | ``...embeddings.position_embedding.weight`` | |
| ``vision_backbone.image_vit.patch_embedding.weight`` | ``...embeddings.patch_embedding.weight`` | Molmo's patches are flattened (dh, dw, c): reshaped to a conv kernel (out, c, dh, dw) |
| ``vision_backbone.image_vit.pre_ln.*`` | ``...pre_layrnorm.*`` | |
| ``vision_backbone.image_vit.transformer.resblocks.{i}.attention.{wq,wk,wv,wo}.*`` | ``...encoder.layers.{i}.self_attn.{q,k,v,out}_proj.*`` | |
| ``...resblocks.{i}.feed_forward.{w1,w2}.*`` | ``...encoder.layers.{i}.mlp.{fc1,fc2}.*`` | |
| ``...resblocks.{i}.{attention_norm,ffn_norm}.*`` | ``...encoder.layers.{i}.{layer_norm1,layer_norm2}.*`` | |
| ``vision_backbone.image_pooling_2d.{wq,wk,wv,wo}.*`` | ``pooling.*`` | |
| ``vision_backbone.image_projector.{w1,w2,w3}.weight`` | ``projector.*`` | |

Not loaded, on purpose: ``transformer.ff_out.weight`` (the language-model head: the
policy predicts actions, not tokens) and ``vision_backbone.pad_embed`` (Molmo's embeddings
for padded crop regions: the policy feeds one letterboxed crop per camera). Any other
Molmo key is an error, so a checkpoint of another layout is refused rather than half-loaded.
The action head, proprio projector and action queries stay freshly initialised; so does
CLIP's post-layernorm, which Molmo never uses.

``llm`` and ``vision`` directories are plain ``transformers`` checkpoints (``Qwen2Model``
or ``Qwen2ForCausalLM``; ``CLIPVisionModel``/``SiglipVisionModel`` or the full CLIP/SigLIP
model, whose text tower is ignored); their names match the policy's modules after a prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from training.config import WeightsConfig
from training.model.presets import Preset

Transform = Callable[[torch.Tensor], list[tuple[str, torch.Tensor]]]
SKIPPED = {"model.transformer.ff_out.weight": "language-model head (the policy predicts actions)",
           "model.vision_backbone.pad_embed": "crop-padding embeddings (one letterboxed crop per camera)"}
VIT = "vision.model.vision_model"


class WeightsError(ValueError):
    """A weights directory does not fit the policy (the message names the tensors)."""


def safetensors_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{directory}: no *.safetensors files")
    return files


def iter_tensors(directory: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a (possibly sharded) safetensors checkpoint, one at a time (memory: one tensor)."""
    for path in safetensors_files(directory):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                yield key, f.get_tensor(key)


def molmo_rule(key: str, preset: Preset) -> Transform | None:
    """How one Molmo tensor lands in the policy; None for a key outside the layout."""
    llm, vis = preset.llm, preset.vision
    q, kv = llm.heads * llm.head_dim, llm.kv_heads * llm.head_dim
    m = re.fullmatch(r"model\.transformer\.blocks\.(\d+)\.(\w+)\.(weight|bias)", key)
    if m:
        i, part, kind = m.groups()
        base = f"llm.layers.{i}"
        if part == "att_proj":
            return lambda t: [(f"{base}.self_attn.q_proj.{kind}", t[:q]), (f"{base}.self_attn.k_proj.{kind}", t[q:q + kv]),
                              (f"{base}.self_attn.v_proj.{kind}", t[q + kv:])]
        if part == "ff_proj" and kind == "weight":
            half = llm.mlp
            return lambda t: [(f"{base}.mlp.up_proj.weight", t[:half]), (f"{base}.mlp.gate_proj.weight", t[half:])]
        simple = {"attn_out": "self_attn.o_proj", "attn_norm": "input_layernorm",
                  "ff_norm": "post_attention_layernorm", "ff_out": "mlp.down_proj"}
        if part in simple:
            return lambda t: [(f"{base}.{simple[part]}.{kind}", t)]
        return None
    if key == "model.transformer.ln_f.weight":
        return lambda t: [("exit_norm.weight", t)]
    m = re.fullmatch(r"model\.vision_backbone\.image_vit\.transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", key)
    if m:
        i, part, kind = m.groups()
        names = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
                 "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.out_proj",
                 "feed_forward.w1": "mlp.fc1", "feed_forward.w2": "mlp.fc2", "attention_norm": "layer_norm1",
                 "ffn_norm": "layer_norm2"}
        if part in names:
            return lambda t: [(f"{VIT}.encoder.layers.{i}.{names[part]}.{kind}", t)]
        return None
    vit = {"model.vision_backbone.image_vit.class_embedding": f"{VIT}.embeddings.class_embedding",
           "model.vision_backbone.image_vit.positional_embedding": f"{VIT}.embeddings.position_embedding.weight",
           "model.vision_backbone.image_vit.pre_ln.weight": f"{VIT}.pre_layrnorm.weight",
           "model.vision_backbone.image_vit.pre_ln.bias": f"{VIT}.pre_layrnorm.bias"}
    if key in vit:
        return lambda t: [(vit[key], t)]
    if key == "model.vision_backbone.image_vit.patch_embedding.weight":
        p = vis.patch_size
        return lambda t: [(f"{VIT}.embeddings.patch_embedding.weight",
                           t.reshape(t.shape[0], p, p, 3).permute(0, 3, 1, 2).contiguous())]
    m = re.fullmatch(r"model\.vision_backbone\.(image_pooling_2d|image_projector)\.(\w+)\.(weight|bias)", key)
    if m:
        module = "pooling" if m.group(1) == "image_pooling_2d" else "projector"
        return lambda t: [(f"{module}.{m.group(2)}.{m.group(3)}", t)]
    return None


def load_molmo(policy: torch.nn.Module, directory: str | Path) -> dict[str, Any]:
    """Copy a Molmo checkpoint's tensors into the policy; returns what was loaded and skipped."""
    if policy.spec.vision.kind != "clip":
        raise WeightsError(f"a Molmo checkpoint needs the CLIP backbone (molmo-7b-d), not {policy.spec.name!r}")
    params = dict(policy.state_dict(keep_vars=True))
    embedding: dict[str, torch.Tensor] = {}
    loaded: set[str] = set()
    skipped: dict[str, str] = {}
    unknown: list[str] = []
    for key, tensor in iter_tensors(directory):
        if key in SKIPPED:
            skipped[key] = SKIPPED[key]
            continue
        if key in ("model.transformer.wte.embedding", "model.transformer.wte.new_embedding"):
            embedding[key.rsplit(".", 1)[1]] = tensor
            continue
        rule = molmo_rule(key, policy.spec)
        if rule is None:
            unknown.append(key)
            continue
        for name, value in rule(tensor):
            _copy(params, name, value, key)
            loaded.add(name)
    if unknown:
        raise WeightsError(f"{directory}: tensors outside Molmo's layout {sorted(unknown)[:8]}"
                           f"{' ...' if len(unknown) > 8 else ''}")
    if embedding:
        if set(embedding) != {"embedding", "new_embedding"}:
            raise WeightsError(f"{directory}: wte.embedding and wte.new_embedding must come together")
        _copy(params, "llm.embed_tokens.weight", torch.cat([embedding["embedding"], embedding["new_embedding"]]),
              "model.transformer.wte")
        loaded.add("llm.embed_tokens.weight")
    backbone = {n for n in params if n.startswith(("llm.", "vision.", "pooling.", "projector.", "exit_norm."))}
    not_loaded = sorted(backbone - loaded - {f"{VIT}.post_layernorm.weight", f"{VIT}.post_layernorm.bias"})
    if not_loaded:
        raise WeightsError(f"{directory}: no tensor for backbone parameters {not_loaded[:8]}"
                           f"{' ...' if len(not_loaded) > 8 else ''}")
    return {"loaded": sorted(loaded), "skipped": skipped}


def load_hf_llm(policy: torch.nn.Module, directory: str | Path) -> dict[str, Any]:
    """A transformers Qwen2 checkpoint: ``model.*`` (or bare) names onto ``llm.*``, its final norm onto the exit norm."""
    params = dict(policy.state_dict(keep_vars=True))
    loaded, skipped = set(), {}
    for key, tensor in iter_tensors(directory):
        name = key[len("model."):] if key.startswith("model.") else key
        if name.startswith("lm_head.") or key.startswith("lm_head."):
            skipped[key] = "language-model head"
            continue
        target = "exit_norm.weight" if name == "norm.weight" else f"llm.{name}"
        if target not in params:
            raise WeightsError(f"{directory}: {key} has no place in the policy's LLM")
        _copy(params, target, tensor, key)
        loaded.add(target)
    missing = sorted(n for n in params if n.startswith("llm.") and n not in loaded)
    if missing:
        raise WeightsError(f"{directory}: no tensor for {missing[:8]}")
    return {"loaded": sorted(loaded), "skipped": skipped}


def load_hf_vision(policy: torch.nn.Module, directory: str | Path) -> dict[str, Any]:
    """A transformers CLIP or SigLIP checkpoint's vision tower; layers beyond the preset's are skipped
    (Molmo uses 23 of CLIP ViT-L/14's 24)."""
    params = dict(policy.state_dict(keep_vars=True))
    layers = policy.spec.vision.layers
    loaded, skipped = set(), {}
    for key, tensor in iter_tensors(directory):
        if key.startswith(("text_model.", "logit_", "text_projection", "visual_projection")):
            skipped[key] = "text tower / projection"
            continue
        name = key[key.index("vision_model."):] if "vision_model." in key else None
        if name is None:
            raise WeightsError(f"{directory}: {key} is not a vision-tower tensor")
        m = re.match(r"vision_model\.encoder\.layers\.(\d+)\.", name)
        if m and int(m.group(1)) >= layers:
            skipped[key] = f"layer beyond the preset's {layers}"
            continue
        if name.startswith("vision_model.head."):
            skipped[key] = "pooling head (unused)"
            continue
        target = f"vision.model.{name}"
        if target not in params:
            raise WeightsError(f"{directory}: {key} has no place in the policy's vision tower")
        _copy(params, target, tensor, key)
        loaded.add(target)
    missing = sorted(n for n in params if n.startswith("vision.") and n not in loaded and "post_layernorm" not in n)
    if missing:
        raise WeightsError(f"{directory}: no tensor for {missing[:8]}")
    return {"loaded": sorted(loaded), "skipped": skipped}


def load_pretrained(policy: torch.nn.Module, weights: WeightsConfig) -> dict[str, Any]:
    """Everything ``model.weights`` names: a Molmo checkpoint, or LLM and vision directories."""
    report: dict[str, Any] = {}
    if weights.molmo:
        if weights.llm or weights.vision:
            raise WeightsError("model.weights: give a Molmo checkpoint or llm/vision directories, not both")
        report["molmo"] = load_molmo(policy, weights.molmo)
    if weights.llm:
        report["llm"] = load_hf_llm(policy, weights.llm)
    if weights.vision:
        report["vision"] = load_hf_vision(policy, weights.vision)
    return report


def _copy(params: dict[str, torch.Tensor], name: str, value: torch.Tensor, source: str) -> None:
    target = params.get(name)
    if target is None:
        raise WeightsError(f"{source}: maps to {name}, which the policy does not have")
    if tuple(target.shape) != tuple(value.shape):
        raise WeightsError(f"{source}: shape {tuple(value.shape)} does not fit {name} {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(value.to(target.dtype))


def molmo_layout(preset: Preset) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of a Molmo checkpoint with this preset's sizes (the layout the map reads)."""
    llm, vis, con = preset.llm, preset.vision, preset.connector
    q, kv = llm.heads * llm.head_dim, llm.kv_heads * llm.head_dim
    pool_in = vis.width * len(vis.feature_layers)
    out: dict[str, tuple[int, ...]] = {
        "model.transformer.wte.embedding": (llm.vocab - 128, llm.width),
        "model.transformer.wte.new_embedding": (128, llm.width),
        "model.transformer.ln_f.weight": (llm.width,),
        "model.transformer.ff_out.weight": (llm.vocab - 128, llm.width),
        "model.vision_backbone.image_vit.class_embedding": (vis.width,),
        "model.vision_backbone.image_vit.positional_embedding": (vis.patches ** 2 + 1, vis.width),
        "model.vision_backbone.image_vit.patch_embedding.weight": (vis.width, vis.patch_size ** 2 * 3),
        "model.vision_backbone.image_vit.pre_ln.weight": (vis.width,),
        "model.vision_backbone.image_vit.pre_ln.bias": (vis.width,),
        "model.vision_backbone.pad_embed": (2, pool_in),
        "model.vision_backbone.image_projector.w1.weight": (con.projector_mlp, con.pool_width),
        "model.vision_backbone.image_projector.w3.weight": (con.projector_mlp, con.pool_width),
        "model.vision_backbone.image_projector.w2.weight": (llm.width, con.projector_mlp),
    }
    for w in ("wq", "wk", "wv"):
        out[f"model.vision_backbone.image_pooling_2d.{w}.weight"] = (con.pool_width, pool_in)
        out[f"model.vision_backbone.image_pooling_2d.{w}.bias"] = (con.pool_width,)
    out["model.vision_backbone.image_pooling_2d.wo.weight"] = (con.pool_width, con.pool_width)
    out["model.vision_backbone.image_pooling_2d.wo.bias"] = (con.pool_width,)
    for i in range(llm.layers):
        b = f"model.transformer.blocks.{i}"
        out.update({f"{b}.att_proj.weight": (q + 2 * kv, llm.width), f"{b}.att_proj.bias": (q + 2 * kv,),
                    f"{b}.attn_out.weight": (llm.width, q), f"{b}.attn_norm.weight": (llm.width,),
                    f"{b}.ff_norm.weight": (llm.width,), f"{b}.ff_proj.weight": (2 * llm.mlp, llm.width),
                    f"{b}.ff_out.weight": (llm.width, llm.mlp)})
    for i in range(vis.layers):
        b = f"model.vision_backbone.image_vit.transformer.resblocks.{i}"
        for w in ("wq", "wk", "wv", "wo"):
            out[f"{b}.attention.{w}.weight"] = (vis.width, vis.width)
            out[f"{b}.attention.{w}.bias"] = (vis.width,)
        out.update({f"{b}.feed_forward.w1.weight": (vis.mlp, vis.width), f"{b}.feed_forward.w1.bias": (vis.mlp,),
                    f"{b}.feed_forward.w2.weight": (vis.width, vis.mlp), f"{b}.feed_forward.w2.bias": (vis.width,)})
        for n in ("attention_norm", "ffn_norm"):
            out[f"{b}.{n}.weight"] = (vis.width,)
            out[f"{b}.{n}.bias"] = (vis.width,)
    return out


def molmo_config_json(preset: Preset) -> str:
    """A Molmo-style config.json for a checkpoint written in code (tests, tiny checkpoints)."""
    llm, vis = preset.llm, preset.vision
    return json.dumps({"model_type": "molmo", "hidden_size": llm.width, "num_hidden_layers": llm.layers,
                       "num_attention_heads": llm.heads, "num_key_value_heads": llm.kv_heads,
                       "intermediate_size": 2 * llm.mlp, "embedding_size": llm.vocab - 128,
                       "rope_theta": llm.rope_theta, "qkv_bias": llm.qkv_bias, "vit_layers": list(vis.feature_layers)},
                      indent=1)
