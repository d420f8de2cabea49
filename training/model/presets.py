"""Named architectures: ``tiny`` (random init, runs the whole chain on 2 CPU cores) and ``molmo-7b-d``.

``molmo-7b-d`` is exactly Molmo-7B-D-0924's shape (the A1 paper's backbone): CLIP
ViT-L/14 at 336 px with the first 23 of its 24 layers, features of layers -2 and -9
concatenated, 2x2 attention pooling with a mean query, a SwiGLU projector, and Qwen2-7B
(28 layers, width 3584, 28 heads, 4 KV heads, MLP 18944, rope theta 1e6, QKV bias,
vocabulary 152064 + 128 Molmo tokens). Its flow-matching expert is A1's: a Qwen2 of width
1024 with as many layers as the LLM and the LLM's head size and KV heads, so each expert
layer can attend over the LLM layer's keys and values as they are.

``tiny`` keeps every structural feature (two ViT layers pooled, KV-sharing expert, a
pooled projector) at sizes that train in seconds per hundred steps on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionSpec:
    kind: str  # "clip" or "siglip"
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp: int
    #: ViT hidden states whose features are concatenated per patch (negative: from the last)
    feature_layers: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    act: str = "quick_gelu"

    @property
    def patches(self) -> int:
        return self.image_size // self.patch_size

    @property
    def prefix_tokens(self) -> int:
        """Class tokens before the patches (CLIP has one; SigLIP none)."""
        return 1 if self.kind == "clip" else 0


@dataclass(frozen=True)
class LLMSpec:
    width: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    rope_theta: float
    qkv_bias: bool = True
    rms_eps: float = 1e-6
    max_positions: int = 4096

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


@dataclass(frozen=True)
class ConnectorSpec:
    pool: int  # pooling window side (2: 2x2 patches per image token)
    pool_heads: int
    pool_width: int  # width of the pooled features (Molmo: the ViT width)
    projector_mlp: int  # SwiGLU hidden size of the projector


@dataclass(frozen=True)
class ExpertSpec:
    width: int  # heads follow from the LLM's head size; the MLP is twice the width


@dataclass(frozen=True)
class Preset:
    name: str
    vision: VisionSpec
    connector: ConnectorSpec
    llm: LLMSpec
    expert: ExpertSpec
    notes: tuple[str, ...] = field(default_factory=tuple)

    def tokens_per_image(self) -> int:
        side = -(-self.vision.patches // self.connector.pool)
        return side * side


_TINY = Preset(
    name="tiny",
    vision=VisionSpec(kind="siglip", image_size=64, patch_size=8, width=64, layers=2, heads=2, mlp=128,
                      feature_layers=(-1, -2), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), act="gelu_pytorch_tanh"),
    connector=ConnectorSpec(pool=2, pool_heads=2, pool_width=64, projector_mlp=128),
    llm=LLMSpec(width=128, layers=4, heads=4, kv_heads=2, mlp=256, vocab=512, rope_theta=10000.0),
    expert=ExpertSpec(width=64),
)

PRESETS = {
    "tiny": _TINY,
    # tiny with twice the LLM layers: the early-exit benchmark's model (benchmarks/metaworld_closed_loop.py
    # --backbone). With 4 layers one exit is a quarter of the depth, so a target such as c = 0.7 lands on
    # coarse fractions; with 8 the exits after layers 1..7 spread the cost in eighths
    "tiny-deep": replace(_TINY, name="tiny-deep", llm=replace(_TINY.llm, layers=8)),
    # tiny, with Molmo's vision side (CLIP, a class token, two ViT layers pooled, an odd patch grid padded
    # for 2x2 pooling) and Molmo's vocabulary split: a Molmo-layout checkpoint of this size loads onto it
    "tiny-molmo": Preset(
        name="tiny-molmo",
        vision=VisionSpec(kind="clip", image_size=56, patch_size=8, width=64, layers=3, heads=2, mlp=128,
                          feature_layers=(-2, -3), mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD),
        connector=ConnectorSpec(pool=2, pool_heads=2, pool_width=64, projector_mlp=96),
        llm=LLMSpec(width=128, layers=3, heads=4, kv_heads=2, mlp=192, vocab=512 + 128, rope_theta=1_000_000.0),
        expert=ExpertSpec(width=64),
    ),
    "molmo-7b-d": Preset(
        name="molmo-7b-d",
        vision=VisionSpec(kind="clip", image_size=336, patch_size=14, width=1024, layers=23, heads=16, mlp=4096,
                          feature_layers=(-2, -9), mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD),
        connector=ConnectorSpec(pool=2, pool_heads=16, pool_width=1024, projector_mlp=18944),
        llm=LLMSpec(width=3584, layers=28, heads=28, kv_heads=4, mlp=18944, vocab=152064 + 128,
                    rope_theta=1_000_000.0, max_positions=4096),
        expert=ExpertSpec(width=1024),
        notes=("one 336x336 crop per camera (A1 crop_mode 'resize'), no Molmo image start/column tokens",),
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"no backbone preset {name!r} (known: {sorted(PRESETS)})")
    return PRESETS[name]
