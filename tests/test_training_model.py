"""The A1 policy: shapes and masks through both heads, flow matching against hand-computed values,
exits, the optimizer's groups and schedule, and the Molmo / Hugging Face weight maps."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from training.config import ConfigError, ExitConfig, ModelConfig, OptimConfig
from training.model import A1Policy
from training.model.heads import FlowMatchingExpert, sample_flow_time, time_embedding
from training.model.molmo import WeightsError, load_hf_llm, load_hf_vision, load_molmo, molmo_layout
from training.model.presets import preset
from training.model.tokenizer import byte_level_tokenizer
from training.optim import build_optimizer, group_of, lr_factor

CHUNK, DIM = 4, 8


def policy(head: str = "mlp", backbone: str = "tiny", mode: str = "all", **kw) -> A1Policy:
    torch.manual_seed(0)
    return A1Policy(ModelConfig(backbone=backbone, head=head, exits=ExitConfig(mode=mode), **kw), chunk=CHUNK,
                    state_dim=DIM, action_dim=DIM, camera_slots=2, tokenizer=byte_level_tokenizer())


def batch(pol: A1Policy, b: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    size = pol.image_size
    raw = {
        "images": torch.randint(0, 256, (b, 2, size, size, 3), generator=g, dtype=torch.uint8),
        "image_mask": torch.tensor([[True, True], [True, False], [True, True]][:b]),
        "state": torch.randn(b, DIM, generator=g), "state_mask": torch.ones(b, DIM, dtype=torch.bool),
        "state_dropped": torch.zeros(b, dtype=torch.bool),
        "action": torch.randn(b, CHUNK, DIM, generator=g), "action_mask": torch.ones(b, DIM, dtype=torch.bool),
        "action_time_mask": torch.ones(b, CHUNK, dtype=torch.bool),
        "text": ["pick up the cube", "open", "put the cup on the plate"][:b],
    }
    raw["action_mask"][:, 6:] = False
    raw["state_mask"][:, 6:] = False
    raw["action_time_mask"][1, 2:] = False
    return pol.prepare(raw, "cpu")


# --- shapes and masks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_both_heads_give_chunks_of_the_fixed_size_and_finite_losses(head):
    pol = policy(head)
    b = batch(pol)
    losses = pol.losses(b, pol.exits)
    assert sorted(losses) == [0, 1, 2, 3] and all(torch.isfinite(v) for v in losses.values())
    out = pol.predict(b, noise=torch.zeros(3, CHUNK, DIM))
    assert out.shape == (3, CHUNK, DIM)
    tokens = preset("tiny").tokens_per_image()
    prefix = pol.embed(b)
    text = b["text_ids"].shape[1]
    assert prefix.embeds.shape[1] == 2 * tokens + text + 1 + (CHUNK if head == "mlp" else 0)
    assert prefix.valid[1, tokens: 2 * tokens].sum() == 0  # sample 1's second camera is missing
    assert prefix.valid[1, 2 * tokens: 2 * tokens + text].sum() == len("open")


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_what_the_masks_hide_does_not_change_the_action(head):
    pol = policy(head).eval()
    b = batch(pol)
    noise = torch.randn(3, CHUNK, DIM, generator=torch.Generator().manual_seed(1))
    ref = pol.predict(b, noise=noise)
    changed = dict(b)
    changed["images"] = b["images"].clone()
    changed["images"][1, 1] = 255 - changed["images"][1, 1]  # pixels of sample 1's missing camera
    changed["text_ids"] = b["text_ids"].clone()
    changed["text_ids"][1, len("open"):] = 7  # padding of sample 1's prompt
    only_hidden = dict(b, images=changed["images"], text_ids=changed["text_ids"])
    torch.testing.assert_close(pol.predict(only_hidden, noise=noise), ref)
    visible = dict(b, images=b["images"].clone())
    visible["images"][0, 1] = 255 - visible["images"][0, 1]  # a camera that is there
    assert not torch.allclose(pol.predict(visible, noise=noise), ref)


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_a_sample_acts_the_same_alone_as_in_a_batch_with_longer_prompts(head):
    """A batch pads its prompts to the longest; rotary positions count real tokens only, so what
    training saw in a batch is what a query sees alone (both the full-depth and the layer-by-layer path)."""
    from training.inference import AdaptivePolicy, ExitSettings

    pol = policy(head).eval()
    b = batch(pol)
    noise = torch.randn(3, CHUNK, DIM, generator=torch.Generator().manual_seed(1))
    together = pol.predict(b, noise=noise)
    settings = ExitSettings(exits=(1, 2, 3), thresholds=(-math.inf,) * 3, fm_mode="full", full_steps=10)
    layer_by_layer = AdaptivePolicy(pol, settings).act(b, noise=noise).actions
    for i in range(3):
        raw = {k: v[i: i + 1] for k, v in b.items()
               if k not in ("text_ids", "text_valid")}
        alone = pol.prepare(raw, "cpu")
        assert alone["text_ids"].shape[1] == len(raw["text"][0]) < b["text_ids"].shape[1] or i == 2
        torch.testing.assert_close(pol.predict(alone, noise=noise[i: i + 1]), together[i: i + 1])
        torch.testing.assert_close(AdaptivePolicy(pol, settings).act(alone, noise=noise[i: i + 1]).actions,
                                   layer_by_layer[i: i + 1])


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_a_policy_cast_to_bf16_acts_on_the_loader_s_float32_batch(head):
    """Inference on a GPU casts the weights to bf16 without autocast (benchmarks/early_exit_latency.py);
    the loader's state and images stay as they are."""
    from training.inference import AdaptivePolicy, ExitSettings

    pol = policy(head).eval().to(torch.bfloat16)
    b = batch(pol)
    assert b["state"].dtype == torch.float32
    noise = torch.randn(3, CHUNK, DIM, generator=torch.Generator().manual_seed(1))
    full = pol.predict(b, noise=noise)
    settings = ExitSettings(exits=(1, 2, 3), thresholds=(-math.inf,) * 3, fm_mode="itfm", itfm_steps=2)
    adaptive = AdaptivePolicy(pol, settings).act(b, noise=noise).actions
    assert full.shape == adaptive.shape == (3, CHUNK, DIM)
    assert torch.isfinite(full).all() and torch.isfinite(adaptive).all()


def test_loss_counts_only_valid_dimensions_and_steps():
    pol = policy("mlp")
    b = batch(pol)
    base = pol.losses(b, (3,))[3]
    poisoned = dict(b, action=b["action"].clone())
    poisoned["action"][:, :, 6:] = 1e6  # masked dimensions
    poisoned["action"][1, 2:] = 1e6  # masked chunk steps
    assert torch.equal(pol.losses(poisoned, (3,))[3], base)


def test_a_dropped_state_reads_as_no_state():
    pol = policy("mlp").eval()
    b = batch(pol)
    dropped = dict(b, state_dropped=torch.ones(3, dtype=torch.bool), state=torch.zeros_like(b["state"]))
    no_mask = dict(b, state_mask=torch.zeros_like(b["state_mask"]), state=torch.zeros_like(b["state"]))
    torch.testing.assert_close(pol.predict(dropped), pol.predict(no_mask))


def test_causal_option_hides_later_tokens():
    assert policy("mlp").attention_mask(torch.ones(1, 3, dtype=torch.bool), torch.float32)[0, 0, 0, 2] == 0
    causal = policy("mlp", causal=True).attention_mask(torch.ones(1, 3, dtype=torch.bool), torch.float32)
    assert causal[0, 0, 0, 2] < -1e8 and causal[0, 0, 2, 0] == 0


# --- flow matching --------------------------------------------------------------------------------------


def test_flow_time_follows_beta_1_5_1_on_0_001_to_1():
    from scipy import stats

    t = sample_flow_time(20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert 0.001 <= float(t.min()) and float(t.max()) <= 1.0
    raw = (t - 0.001) / 0.999
    assert stats.kstest(raw.numpy(), stats.beta(1.5, 1.0).cdf).pvalue > 0.01


def test_fm_loss_is_the_masked_mse_of_velocity_against_noise_minus_action():
    pol = policy("fm", mode="last")
    b = batch(pol)
    head: FlowMatchingExpert = pol.head
    prefix = pol.embed(b)
    out = pol.run_llm(prefix, pol.num_layers)
    valid = b["action_time_mask"][:, :, None] & b["action_mask"][:, None, :]
    g = torch.Generator().manual_seed(5)
    loss = head.loss(out.kv, prefix.valid, b["state"], b["state_mask"], b["action"], valid, g)
    g = torch.Generator().manual_seed(5)  # the same draws, by hand
    t = sample_flow_time(3, g, torch.device("cpu"))
    noise = torch.randn(b["action"].shape, generator=g)
    x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * b["action"]
    v = head.velocity(out.kv, prefix.valid, b["state"], b["state_mask"], x_t, t)
    expected = ((v - (noise - b["action"])) ** 2)[valid].mean()
    torch.testing.assert_close(loss, expected)


def test_euler_sampler_on_known_velocity_fields(monkeypatch):
    pol = policy("fm")
    head: FlowMatchingExpert = pol.head
    x0 = torch.randn(2, CHUNK, DIM, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(head, "velocity", lambda kv, valid, s, m, x, t: torch.full_like(x, 0.5))
    out = head.sample([], None, None, None, steps=4, x=x0)
    torch.testing.assert_close(out, x0 - 0.5)  # constant field: x(0) = x(1) - v
    seen = []
    monkeypatch.setattr(head, "velocity", lambda kv, valid, s, m, x, t: seen.append(t.clone()) or x)
    out = head.sample([], None, None, None, steps=4, x=x0)
    torch.testing.assert_close(out, x0 * (1 - 0.25) ** 4)  # v = x: each step multiplies by 1 - dt
    assert [float(t[0]) for t in seen] == [1.0, 0.75, 0.5, 0.25]
    seen.clear()
    head.sample([], None, None, None, steps=2, x=x0, t_start=0.5)  # a warm start part-way
    assert [float(t[0]) for t in seen] == [0.5, 0.25]


def test_time_embedding_matches_pi0_periods():
    e = time_embedding(torch.tensor([0.0, 0.5]), 8)
    assert e.shape == (2, 8)
    period = 4e-3 * (4.0 / 4e-3) ** torch.linspace(0, 1, 4)
    torch.testing.assert_close(e[1, :4], torch.sin(0.5 / period * 2 * math.pi))
    torch.testing.assert_close(e[0], torch.cat([torch.zeros(4), torch.ones(4)]))


def test_expert_width_must_share_the_llm_head_size():
    with pytest.raises(ValueError, match="multiple of the LLM head size 32"):
        policy("fm", expert_width=48)


# --- exits ------------------------------------------------------------------------------------------


def test_every_preset_can_be_named_in_params_and_the_deep_one_exits_after_each_of_its_layers():
    from training.config import BACKBONES
    from training.model.presets import PRESETS

    assert BACKBONES == tuple(PRESETS)
    deep, tiny = preset("tiny-deep"), preset("tiny")
    assert deep.llm.layers == 8 and (deep.vision, deep.connector, deep.expert) == (tiny.vision, tiny.connector,
                                                                                     tiny.expert)
    assert policy("mlp", backbone="tiny-deep").exits == tuple(range(8))  # after each of the 8 layers


def test_exit_set_and_modes():
    assert ExitConfig(first=1, interval=2).layers(28) == tuple(range(1, 28, 2))  # A1's 14 exits, last included
    assert ExitConfig(first=0, interval=3).layers(8) == (0, 3, 6, 7)
    with pytest.raises(ConfigError, match="beyond"):
        ExitConfig(first=8).layers(8)
    pol = policy("mlp", mode="random")
    draws = [pol.exits_for_step("random", torch.Generator().manual_seed(s)) for s in range(40)]
    assert {d[0] for d in draws} == {0, 1, 2, 3} and all(len(d) == 1 for d in draws)
    assert draws == [pol.exits_for_step("random", torch.Generator().manual_seed(s)) for s in range(40)]
    assert pol.exits_for_step("last") == (3,) and pol.exits_for_step("all") == (0, 1, 2, 3)


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_all_mode_gives_every_exit_a_gradient(head):
    pol = policy(head)
    losses = pol.losses(batch(pol), pol.exits)
    for e, loss in losses.items():
        pol.zero_grad()
        loss.backward(retain_graph=True)
        grads = {i: pol.llm.layers[i].mlp.down_proj.weight.grad for i in range(pol.num_layers)}
        for i, g in grads.items():
            reaches = g is not None and bool(g.abs().sum() > 0)
            # exit e trains layers 0..e (the FM expert reads layer e's keys and values, not its MLP)
            expected = i < e or (i == e and head == "mlp")
            assert reaches == expected, (head, e, i)


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_random_mode_runs_the_llm_only_to_the_drawn_exit(head):
    pol = policy(head, mode="random")
    calls = []
    for i, layer in enumerate(pol.llm.layers):
        layer.register_forward_hook(lambda mod, inp, out, i=i: calls.append(i))
    pol.losses(batch(pol), (1,))
    assert calls == [0, 1]
    assert pol.llm.config.num_hidden_layers == 4  # restored after the truncated call


# --- optimizer ------------------------------------------------------------------------------------


def test_parameter_groups_follow_a1():
    pol = policy("fm")
    config = OptimConfig(lr_vision=0.0, lr_connector=2e-6, lr_llm=5e-6, lr_head=5e-5)
    opt, _ = build_optimizer(pol, config, total_steps=100)
    rates = {g["name"]: g["initial_lr"] for g in opt.param_groups}
    assert rates == {"connector": 2e-6, "connector_no_decay": 2e-6, "head": 5e-5, "head_no_decay": 5e-5,
                     "llm": 5e-6, "llm_no_decay": 5e-6}
    assert not any(p.requires_grad for p in pol.vision.parameters())
    assert not pol.llm.embed_tokens.weight.requires_grad  # A1 freezes token embeddings
    named = dict(pol.named_parameters())
    grouped = {id(p): g["name"] for g in opt.param_groups for p in g["params"]}
    assert grouped[id(named["proprio.fc1.weight"])] == "head" and grouped[id(named["exit_norm.weight"])] == "llm_no_decay"
    assert grouped[id(named["pooling.wq.weight"])] == "connector" and group_of("head.expert.layers.0.mlp") == "head"
    with pytest.raises(ValueError, match="nothing to train"):
        build_optimizer(pol, OptimConfig(lr_vision=0, lr_connector=0, lr_llm=0, lr_head=0), 10)


def test_learning_rate_schedule_at_chosen_steps():
    pol = policy("mlp")
    config = OptimConfig(lr_connector=1.0, lr_llm=1.0, lr_head=2.0, warmup_steps=10, freeze_steps=4, min_lr_ratio=0.1)
    opt, sched = build_optimizer(pol, config, total_steps=30)
    seen = []
    for _ in range(30):
        seen.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert seen[0]["head"] == pytest.approx(2.0 * 1 / 10) and seen[0]["llm"] == 0.0
    assert seen[3]["llm"] == 0.0 and seen[4]["llm"] == pytest.approx(5 / 10)  # held, then joins the ramp
    assert seen[9]["head"] == pytest.approx(2.0) and seen[9]["llm"] == pytest.approx(1.0)
    assert seen[10]["llm"] == pytest.approx(1.0)  # cosine starts at its top
    assert seen[29]["llm"] == pytest.approx(0.1) and seen[29]["head"] == pytest.approx(0.2)
    mid = 10 + (29 - 10) / 2
    assert lr_factor(int(mid), warmup=10, total=30, min_ratio=0.1, freeze=0) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 19)))
    assert all(a["llm"] >= b["llm"] for a, b in zip(seen[10:], seen[11:]))


# --- weights ------------------------------------------------------------------------------------------


def _molmo_checkpoint(tmp_path, drop: str | None = None, extra: str | None = None):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * 0.1 for k, s in molmo_layout(preset("tiny-molmo")).items()}
    for key in list(state):
        if key.endswith("norm.weight") or key.endswith("ln_f.weight"):
            state[key] = 1.0 + state[key]
    if drop:
        del state[drop]
    if extra:
        state[extra] = torch.zeros(3)
    half = len(state) // 2  # sharded, as real checkpoints are
    keys = sorted(state)
    save_file({k: state[k] for k in keys[:half]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[half:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    return state


def _rope(x, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    angles = torch.arange(x.shape[-2]).float()[:, None] * inv[None]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def _molmo_block(state, x, i, spec):
    """One Molmo (OLMo-style) decoder block computed from its raw tensors: the reference the map must match."""
    b = f"model.transformer.blocks.{i}"

    def rms(v, w):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + spec.rms_eps) * w

    h = rms(x, state[f"{b}.attn_norm.weight"])
    qkv = h @ state[f"{b}.att_proj.weight"].T + state[f"{b}.att_proj.bias"]
    q_size, kv_size = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    q, k, v = qkv.split([q_size, kv_size, kv_size], -1)
    heads = lambda t, n: t.reshape(t.shape[0], t.shape[1], n, spec.head_dim).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q, spec.heads), heads(k, spec.kv_heads), heads(v, spec.kv_heads)
    q, k = _rope(q, spec.rope_theta), _rope(k, spec.rope_theta)
    rep = spec.heads // spec.kv_heads
    attn = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=True)
    x = x + attn.transpose(1, 2).reshape(x.shape) @ state[f"{b}.attn_out.weight"].T
    up, gate = (rms(x, state[f"{b}.ff_norm.weight"]) @ state[f"{b}.ff_proj.weight"].T).chunk(2, -1)
    return x + (F.silu(gate) * up) @ state[f"{b}.ff_out.weight"].T


def test_a_molmo_checkpoint_loads_onto_the_policy_and_computes_what_molmo_computes(tmp_path):
    state = _molmo_checkpoint(tmp_path)
    pol = policy("fm", backbone="tiny-molmo")
    report = load_molmo(pol, tmp_path)
    assert set(report["skipped"]) == {"model.transformer.ff_out.weight", "model.vision_backbone.pad_embed"}
    spec = preset("tiny-molmo")
    emb = pol.llm.embed_tokens.weight
    assert torch.equal(emb[: spec.llm.vocab - 128], state["model.transformer.wte.embedding"])
    assert torch.equal(emb[-128:], state["model.transformer.wte.new_embedding"])
    assert torch.equal(pol.exit_norm.weight, state["model.transformer.ln_f.weight"])
    # the LLM's blocks compute Molmo's blocks
    x = torch.randn(1, 9, spec.llm.width, generator=torch.Generator().manual_seed(3))
    ref = x
    for i in range(spec.llm.layers):
        ref = _molmo_block(state, ref, i, spec.llm)
    with torch.no_grad():
        ours = pol.llm(inputs_embeds=x).last_hidden_state
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # the patch embedding computes Molmo's linear map of (dh, dw, c)-flattened patches
    image = torch.randn(1, 3, spec.vision.image_size, spec.vision.image_size)
    p = spec.vision.patch_size
    n = spec.vision.patches
    patches = image.permute(0, 2, 3, 1).reshape(1, n, p, n, p, 3).permute(0, 1, 3, 2, 4, 5).reshape(1, n * n, -1)
    molmo = patches @ state["model.vision_backbone.image_vit.patch_embedding.weight"].T
    conv = pol.vision.model.vision_model.embeddings.patch_embedding(image).flatten(2).transpose(1, 2)
    torch.testing.assert_close(conv, molmo, rtol=1e-4, atol=1e-4)
    assert torch.equal(pol.pooling.wq.weight, state["model.vision_backbone.image_pooling_2d.wq.weight"])
    assert torch.equal(pol.projector.w3.weight, state["model.vision_backbone.image_projector.w3.weight"])
    assert torch.equal(pol.vision.model.vision_model.encoder.layers[2].mlp.fc2.bias,
                       state["model.vision_backbone.image_vit.transformer.resblocks.2.feed_forward.w2.bias"])
    b = batch(pol)
    assert torch.isfinite(pol.predict(b)).all()


def test_a_checkpoint_outside_molmo_s_layout_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _molmo_checkpoint(tmp_path / "a", drop="model.transformer.blocks.1.ff_out.weight")
    with pytest.raises(WeightsError, match=r"no tensor for backbone parameters \['llm.layers.1.mlp.down_proj"):
        load_molmo(policy("mlp", backbone="tiny-molmo"), tmp_path / "a")
    _molmo_checkpoint(tmp_path / "b", extra="model.transformer.blocks.0.q_norm.weight")
    with pytest.raises(WeightsError, match="outside Molmo's layout"):
        load_molmo(policy("mlp", backbone="tiny-molmo"), tmp_path / "b")
    with pytest.raises(WeightsError, match="needs the CLIP backbone"):
        load_molmo(policy("mlp"), tmp_path / "a")


def test_plain_hugging_face_llm_and_vision_directories_load(tmp_path):
    from transformers import Qwen2ForCausalLM, SiglipVisionModel

    source = policy("mlp")
    donor = Qwen2ForCausalLM(source.llm.config)
    donor.model.norm.weight.data.fill_(1.5)
    donor.save_pretrained(tmp_path / "llm", safe_serialization=True)
    vision = SiglipVisionModel(source.vision.model.config)
    vision.save_pretrained(tmp_path / "vision", safe_serialization=True)
    pol = policy("mlp")
    load_hf_llm(pol, tmp_path / "llm")
    load_hf_vision(pol, tmp_path / "vision")
    assert torch.equal(pol.llm.layers[2].self_attn.k_proj.weight, donor.model.layers[2].self_attn.k_proj.weight)
    assert torch.equal(pol.exit_norm.weight, torch.full_like(pol.exit_norm.weight, 1.5))
    assert torch.equal(pol.vision.model.vision_model.encoder.layers[1].mlp.fc1.weight,
                       vision.vision_model.encoder.layers[1].mlp.fc1.weight)


def test_molmo_7b_d_is_molmo_s_shape():
    spec = preset("molmo-7b-d")
    with torch.device("meta"):
        pol = A1Policy(ModelConfig(backbone="molmo-7b-d", head="fm"), chunk=50, state_dim=32, action_dim=32,
                       camera_slots=3)
    counts = {k: sum(p.numel() for n, p in pol.named_parameters() if n.startswith(k))
              for k in ("vision.", "llm.", "head.")}
    assert 7.0e9 < counts["llm."] < 7.7e9  # Qwen2-7B without its LM head
    assert 0.28e9 < counts["vision."] < 0.32e9  # CLIP ViT-L/14-336, 23 of 24 layers
    assert 0.25e9 < counts["head."] < 0.30e9  # A1's expert, without the unused 156M vocabulary
    assert pol.llm.layers[0].self_attn.head_dim == pol.head.expert.layers[0].self_attn.head_dim == 128
    layout = molmo_layout(spec)
    assert layout["model.transformer.blocks.0.ff_proj.weight"] == (37888, 3584)
    assert layout["model.vision_backbone.image_vit.positional_embedding"] == (577, 1024)
    assert pol.exits == tuple(range(28))
    assert os.environ.get("USE_TF") == "0"
