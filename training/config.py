"""Training configuration: ``params.yaml``'s ``training`` section, parsed once into frozen dataclasses.

Every knob of training lives in ``params.yaml`` (so DVC re-runs exactly the stages whose
settings changed) and is read here, once, into immutable objects the rest of
``training/`` receives. Parsing is strict: an unknown key, a wrong type or a value out
of range is an error naming the key, never a silently ignored setting. A typo'd
``state_mask_prob`` must stop a run, not train a different model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROMPTS = ("instruction", "subtask", "instruction_and_subtask")
NORMALIZATIONS = ("none", "bounds_q99", "mean_std")
NORMALIZATION_SCOPES = ("dataset_embodiment", "embodiment")


class ConfigError(ValueError):
    """A training setting is unknown, mistyped or out of range (the message names it)."""


@dataclass(frozen=True)
class AugmentConfig:
    """A1's image augmentation (paper Table 8; ``a1/data/iterable_dataset_mixture.py``).

    With probability ``p`` one effect is chosen (random erasing or sharpening, equally
    likely); with a further probability ``p_second`` the other effect is added. The
    effects are drawn once per sample and applied to all of its cameras. Erased squares
    are black, ``erase_count`` of them, each side drawn from ``erase_size`` pixels of a
    224-pixel-wide image (scaled with the model's input width, so the same fraction of
    the picture is hidden at any resolution).
    """

    enabled: bool = True
    p: float = 0.5
    p_second: float = 0.3
    erase_count: tuple[int, int] = (1, 3)
    erase_size: tuple[int, int] = (20, 80)
    sharpness: tuple[float, float] = (2.0, 3.5)

    def __post_init__(self) -> None:
        _probability("training.data.augment.p", self.p)
        _probability("training.data.augment.p_second", self.p_second)
        _range("training.data.augment.erase_count", self.erase_count, low=1)
        _range("training.data.augment.erase_size", self.erase_size, low=1)
        _range("training.data.augment.sharpness", self.sharpness, low=0)


@dataclass(frozen=True)
class DataConfig:
    """How a released manifest becomes batches (``training/data/``)."""

    #: directory holding the stores a manifest names (rows name stores by directory name), or an
    #: object-store prefix holding them (``s3://bucket/stores``: docs/object_storage.md)
    data_root: str = "data/converted"
    #: where the files of stores on object storage are kept on this machine's disk, episode files
    #: under their sha256 (downloaded once, checked on the way); unused when data_root is a directory
    cache_dir: str = "data/cache"
    #: the camera-slot and dimension-layout table; None: the one shipped in ``training/data/layouts.yaml``
    layouts: str | None = None
    #: the model's fixed camera inputs, in order; embodiments map their cameras onto these
    camera_slots: tuple[str, ...] = ("primary", "left_wrist", "right_wrist")
    #: model input (height, width); stored frames larger than this decode at a reduced DCT scale
    image_size: tuple[int, int] = (224, 224)
    #: false: no camera is read and every slot is masked, so the model sees proprioception and the
    #: prompt only (the no-image control a closed-loop benchmark compares an image policy with)
    images: bool = True
    #: action chunk length H: actions a[t .. t+H-1]
    chunk: int = 50
    max_state_dim: int = 32
    max_action_dim: int = 32
    #: the text a sample carries: the episode instruction, the frame's sub-task (falling back
    #: to the instruction where a frame has none), or both joined as "instruction. subtask";
    #: samples carry the sub-task itself only when the prompt uses it
    prompt: str = "instruction"
    #: none (A1 pre-training), bounds_q99 (q01/q99 -> [-1, 1], clipped) or mean_std
    normalization: str = "none"
    #: statistics per (dataset, embodiment) or per embodiment merged across datasets
    normalization_scope: str = "dataset_embodiment"
    #: probability of zeroing a sample's whole state vector (A1: 0.5 pre-training, 0 fine-tuning)
    state_mask_prob: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: samples per rank per batch
    batch_size: int = 32
    #: data-loader worker processes per rank (0: load in the training process)
    num_workers: int = 2
    prefetch_factor: int = 2
    #: draws per epoch (all ranks together); default: the split's kept frames
    samples_per_epoch: int | None = None
    #: episode files each worker keeps open (a bounded LRU: memory stays flat at any dataset size)
    open_episodes: int = 32
    #: frames that may fail to decode before the run stops (each is reported and its sample skipped)
    max_decode_errors: int = 100
    #: re-hash every episode file against the manifest before training (slow on large data)
    verify_files: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        where = "training.data"
        if not self.camera_slots or len(set(self.camera_slots)) != len(self.camera_slots):
            raise ConfigError(f"{where}.camera_slots must be non-empty and unique, got {list(self.camera_slots)}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ConfigError(f"{where}.image_size must be [height, width] of at least 8, got {list(self.image_size)}")
        for name in ("chunk", "max_state_dim", "max_action_dim", "batch_size", "prefetch_factor", "open_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "max_decode_errors"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name} must be >= 0, got {getattr(self, name)}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ConfigError(f"{where}.samples_per_epoch must be >= 1 or null, got {self.samples_per_epoch}")
        _choice(f"{where}.prompt", self.prompt, PROMPTS)
        _choice(f"{where}.normalization", self.normalization, NORMALIZATIONS)
        _choice(f"{where}.normalization_scope", self.normalization_scope, NORMALIZATION_SCOPES)
        _probability(f"{where}.state_mask_prob", self.state_mask_prob)

    def replace(self, **changes: Any) -> DataConfig:
        """A copy with some settings changed (checked like the original)."""
        return dataclasses.replace(self, **changes)


#: the names of ``training.model.presets.PRESETS`` (tests/test_training_model.py checks they agree): that
#: module is not imported here, since importing ``training.model`` brings in torch
BACKBONES = ("tiny", "tiny-deep", "tiny-molmo", "molmo-7b-d")
HEADS = ("mlp", "fm")
EXIT_MODES = ("last", "all", "random")
PRECISIONS = ("auto", "fp32", "bf16")
STAGES = ("pretrain", "finetune")


@dataclass(frozen=True)
class ExitConfig:
    """Which LLM layers can produce an action, and how training supervises them.

    The exit set is layers ``first, first + interval, ...`` plus the last layer (A1's
    inference set is ``first=1, interval=2``; its training supervises every layer,
    ``first=0, interval=1``). ``last`` trains the final layer only; ``all`` averages the
    loss over every exit (A1's "supervise all L layers"); ``random`` draws one exit per
    step, the same on every rank, and the LLM forward stops after it (A1's
    ``train_exit_random_layer``).
    """

    mode: str = "random"
    first: int = 0
    interval: int = 1

    def __post_init__(self) -> None:
        _choice("model.exits.mode", self.mode, EXIT_MODES)
        if self.first < 0 or self.interval < 1:
            raise ConfigError(f"model.exits: first must be >= 0 and interval >= 1, got {self.first}, {self.interval}")

    def layers(self, num_layers: int) -> tuple[int, ...]:
        """The exit set for an LLM of ``num_layers`` layers (0-based layer indices)."""
        if self.first >= num_layers:
            raise ConfigError(f"model.exits.first {self.first} is beyond the LLM's {num_layers} layers")
        return tuple(sorted(set(range(self.first, num_layers, self.interval)) | {num_layers - 1}))


@dataclass(frozen=True)
class WeightsConfig:
    """Pretrained weights to start from (local directories; nothing is downloaded)."""

    #: a Molmo checkpoint directory (safetensors in Molmo's own key layout; training/model/molmo.py)
    molmo: str | None = None
    #: a Hugging Face Qwen2 directory (config.json + safetensors)
    llm: str | None = None
    #: a Hugging Face CLIP or SigLIP vision directory
    vision: str | None = None
    #: a directory with tokenizer.json (the real tokenizer); None: the byte-level one built in code
    tokenizer: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The A1 policy (``training/model/``)."""

    #: named architecture (``training/model/presets.py``): ``tiny`` (random init, minutes on 2 CPU cores),
    #: ``molmo-7b-d`` (Molmo-7B-D-0924's shape), ``tiny-deep`` (tiny with 8 LLM layers, for the early-exit
    #: benchmark) or ``tiny-molmo`` (tiny, with Molmo's vision side and key layout: for testing weight loading)
    backbone: str = "tiny"
    #: ``mlp`` (A1-MLP: query tokens, MLP-ResNet, L1) or ``fm`` (A1-FM: flow-matching expert)
    head: str = "fm"
    #: causal LLM attention over the prefix (A1's default is bidirectional: false)
    causal: bool = False
    #: MLP head: action query tokens (a divisor of the chunk); None: one per chunk step
    query_tokens: int | None = None
    #: FM expert width; None: the backbone's default (tiny 64, molmo-7b-d 1024 as A1)
    expert_width: int | None = None
    #: Euler steps when sampling actions
    fm_steps: int = 10
    #: instruction tokens kept (longer prompts are cut)
    max_text_tokens: int = 48
    exits: ExitConfig = field(default_factory=ExitConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)

    def __post_init__(self) -> None:
        _choice("model.backbone", self.backbone, BACKBONES)
        _choice("model.head", self.head, HEADS)
        for name in ("fm_steps", "max_text_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.query_tokens is not None and self.query_tokens < 1:
            raise ConfigError(f"model.query_tokens must be >= 1 or null, got {self.query_tokens}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with A1's parameter groups and schedule (paper Table 8, ``a1/optim.py``).

    Groups: the vision tower (frozen at lr 0: not trained), the connector (image pooling
    and projector), the LLM (token embeddings frozen when ``freeze_embeddings``) and the
    action head (MLP head or expert, proprio projector, action queries). Every group warms
    up linearly from 0 over ``warmup_steps``; the LLM and connector are held at 0 for their
    first ``freeze_steps`` (then join the ramp already in progress, as A1); after warm-up
    every group follows a cosine to ``min_lr_ratio`` of its rate at the last step.
    """

    lr_vision: float = 0.0
    lr_connector: float = 5e-6
    lr_llm: float = 5e-6
    lr_head: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 2000
    freeze_steps: int = 1000
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    freeze_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("lr_vision", "lr_connector", "lr_llm", "lr_head", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.freeze_steps < 0:
            raise ConfigError("optim.warmup_steps and optim.freeze_steps must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class StageConfig:
    """One training run's recipe: pre-training or one fine-tuning target."""

    steps: int = 300
    #: samples per optimizer step over all ranks (each rank loads batch_size / world_size)
    batch_size: int = 16
    log_every: int = 10
    checkpoint_every: int = 100
    #: validation batches evaluated at every checkpoint (0: none); from the manifest's validation split
    validation_batches: int = 2
    #: auto: bf16 autocast where the device supports it, else fp32
    precision: str = "auto"
    #: torch threads of the training process (0: every core)
    threads: int = 0
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.validation_batches < 0 or self.threads < 0:
            raise ConfigError("validation_batches and threads must be >= 0")
        _choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class CalibrationConfig:
    """Early-exit calibration of a fine-tuned model (``training/calibrate.py``, docs/early_exit.md)."""

    #: the manifest split to calibrate on; when the manifest has no such split: validation, then train
    split: str = "calibration"
    max_samples: int = 2048
    batch_size: int = 16
    #: the exit set: first, first + interval, ... and the last layer (A1: 1 and 2, 14 exits of 28)
    first_exit: int = 1
    exit_interval: int = 2
    #: exit criteria c per target distribution (exp: p_k ~ c^k; gauss: centre c; gamma: shape c)
    distributions: dict[str, Any] = field(default_factory=lambda: {"exp": [1.0, 0.7, 0.4, 0.1],
                                                                   "gauss": [1.0, 3.0], "gamma": [1.0, 2.0]})
    #: p_0 = 0: never exit at the first exit (A1 does this for its 7B models)
    disable_first: bool = False
    #: flow matching: Euler steps per check with Inter-Layer Truncated FM, and without it
    itfm_steps: int = 2
    full_steps: int = 10
    noise_seed: int = 0
    #: budget mode: target fractions of the full model's LLM layers and, separately, of its FLOPs per
    #: query, each solved for c (exp distribution)
    budgets: tuple[float, ...] = (0.5, 0.75)
    #: what evaluation uses unless told otherwise
    metric: str = "cosine"
    distribution: str = "exp"
    c: float = 1.0
    #: samples of the validation split run adaptively with the default thresholds (0: none)
    online_samples: int = 256

    def __post_init__(self) -> None:
        from training.exits import DISTRIBUTIONS, METRICS

        for name in ("max_samples", "batch_size", "exit_interval", "itfm_steps", "full_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"calibration.{name} must be >= 1, got {getattr(self, name)}")
        if self.first_exit < 1:
            raise ConfigError("calibration.first_exit must be >= 1 (layer first_exit - 1 is its reference)")
        unknown = sorted(set(self.distributions) - set(DISTRIBUTIONS))
        if unknown:
            raise ConfigError(f"calibration.distributions: unknown {unknown} (known: {list(DISTRIBUTIONS)})")
        _choice("calibration.metric", self.metric, METRICS)
        _choice("calibration.distribution", self.distribution, DISTRIBUTIONS)
        if any(not 0 < b <= 1 for b in self.budgets):
            raise ConfigError(f"calibration.budgets must be fractions in (0, 1], got {list(self.budgets)}")


@dataclass(frozen=True)
class EvaluationConfig:
    """Open-loop evaluation of a fine-tune on its manifest (``training/evaluate.py``, docs/evaluation.md)."""

    #: the split whose actions are compared; when the manifest has none: calibration, then train (recorded)
    split: str = "validation"
    max_samples: int = 256
    batch_size: int = 16
    #: exit criteria evaluated (each must be among the calibration's c of its default distribution)
    cs: tuple[float, ...] = (1.0, 0.7, 0.4, 0.1)
    #: flow-matching chains with exits: itfm (Inter-Layer Truncated FM, delta = calibration.itfm_steps
    #: from the previous exit's action) and full (calibration.full_steps from noise at every check)
    chains: tuple[str, ...] = ("itfm", "full")
    noise_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"evaluation.{name} must be >= 1, got {getattr(self, name)}")
        bad = [c for c in self.chains if c not in ("itfm", "full")]
        if bad or not self.chains:
            raise ConfigError(f"evaluation.chains must be a non-empty subset of [itfm, full], got {list(self.chains)}")


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, resolved from ``params.yaml`` (see :func:`resolve_run`)."""

    stage: str
    name: str
    profile: str
    model: ModelConfig
    run: StageConfig
    data: DataConfig
    #: the manifest's directory, the run's directory (checkpoints) and its dvclive directory (metrics, plots)
    manifest_dir: str
    out: str
    reports: str
    #: dvclive directory of this run's machine-dependent figures (throughput, data-wait share), kept
    #: apart from ``reports`` (a DVC output) so that a re-run on another machine leaves dvc.lock as it is
    runtime: str = ""
    #: the checkpoint a fine-tuning run starts from
    init: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))


@dataclass(frozen=True)
class TrainingConfig:
    """The whole ``training`` section."""

    data: DataConfig = field(default_factory=DataConfig)
    #: the active profile: one switch between the tiny chain and the paper's recipe
    profile: str = "tiny"
    #: the manifest pre-training reads (``<manifests>/<pretrain_manifest>``)
    pretrain_manifest: str = "pretrain"
    #: fine-tuning targets: manifests that each get a ``finetune@<name>`` stage
    finetune: tuple[str, ...] = ()
    #: where the released manifests are, where runs write checkpoints, and their metrics
    manifests: str = "manifests"
    out: str = "models"
    reports: str = "data/reports/training"
    #: named profiles; each: {model, pretrain, finetune, finetune_targets: {name: overrides}}
    profiles: dict[str, Any] = field(default_factory=dict)


def load_training_config(params: str | Path | dict[str, Any] = "params.yaml") -> TrainingConfig:
    """Parse ``params.yaml``'s ``training`` section (a path or the already-loaded document)."""
    return parse(TrainingConfig, _training_section(params), "training")


def _training_section(params: str | Path | dict[str, Any]) -> dict[str, Any]:
    if not isinstance(params, dict):
        path = Path(params)
        if not path.is_file():
            raise ConfigError(f"{path}: no such parameters file")
        params = yaml.safe_load(path.read_text()) or {}
    return dict(params.get("training") or {})


#: fine-tuning variants: the same run with these ``training.data`` settings, written apart from it
#: (``<out>/baselines/<name>/<variant>``) so the two can be compared on the same seeds
VARIANTS: dict[str, dict[str, Any]] = {"no_images": {"images": False}}


def resolve_run(params: str | Path | dict[str, Any], stage: str, name: str | None = None, *,
                variant: str | None = None) -> RunConfig:
    """The configuration of one run: the active profile's model and stage settings, with overrides.

    ``pretrain`` trains on ``training.pretrain_manifest``; ``finetune`` (``name`` = a
    fine-tuning manifest listed in ``training.finetune``) takes the profile's ``finetune``
    settings, then that target's ``finetune_targets.<name>`` overrides, trains on manifest
    ``name`` and starts from the pre-training run's checkpoint. A stage's ``data`` mapping
    overrides ``training.data`` key by key. Every level is parsed strictly.
    ``variant`` (fine-tuning only, one of ``VARIANTS``) changes the data settings on top of all of
    that and writes the run under ``<out>/baselines/<name>/<variant>``: same manifest, same start,
    same recipe.
    """
    _choice("stage", stage, STAGES)
    if variant is not None:
        _choice("variant", variant, tuple(VARIANTS))
        if stage != "finetune":
            raise ConfigError(f"variant {variant!r} applies to fine-tuning runs only, not {stage}")
    section = _training_section(params)
    top = load_training_config({"training": section})
    if top.profile not in top.profiles:
        raise ConfigError(f"training.profile {top.profile!r} is not among training.profiles {sorted(top.profiles)}")
    where = f"training.profiles.{top.profile}"
    profile = dict(top.profiles[top.profile] or {})
    unknown = set(profile) - {"model", "pretrain", "finetune", "finetune_targets", "calibration", "evaluation"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    model = parse(ModelConfig, profile.get("model") or {}, f"{where}.model")
    stage_values = dict(profile.get(stage) or {})
    if stage == "finetune":
        if not name:
            raise ConfigError("a fine-tuning run needs the name of its manifest")
        if name not in top.finetune:
            raise ConfigError(f"{name!r} is not a fine-tuning target (training.finetune lists {list(top.finetune)})")
        targets = dict(profile.get("finetune_targets") or {})
        stage_values = _merge(stage_values, dict(targets.get(name) or {}))
        manifest = name
    else:
        name, manifest = "pretrain", top.pretrain_manifest
    data_overrides = stage_values.pop("data", None) or {}
    run = parse(StageConfig, stage_values, f"{where}.{stage}")
    data_values = _merge(dict(section.get("data") or {}), dict(data_overrides))
    if variant is not None:
        data_values = _merge(data_values, VARIANTS[variant])
    data = parse(DataConfig, data_values, f"{where}.{stage}.data (over training.data)")
    where_to = "pretrain" if stage == "pretrain" else f"finetune/{name}" if variant is None else \
        f"baselines/{name}/{variant}"
    out, reports = str(Path(top.out) / where_to), str(Path(top.reports) / where_to)
    init = str(Path(top.out) / "pretrain") if stage == "finetune" else None
    return RunConfig(stage=stage, name=name, profile=top.profile, model=model, run=run, data=data,
                     manifest_dir=str(Path(top.manifests) / manifest), out=out, reports=reports,
                     runtime=str(runtime_reports(top.reports) / where_to), init=init)


def runtime_reports(reports: str | Path) -> Path:
    """Where training, calibration and evaluation put what depends on the machine, not on the inputs
    (samples/s, ms per query): ``<training.reports>/runtime``. It is no stage's DVC output (dvc.yaml
    lists it as top-level metrics), so the tracked reports are byte-identical on any machine."""
    return Path(reports) / "runtime"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursively for mappings."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def parse(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, strictly: unknown keys and mistyped values are errors."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (known: {sorted(names)})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, got {list(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _choice(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {list(allowed)}, got {value!r}")


def _probability(where: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where} must be in [0, 1], got {value}")


def _range(where: str, pair: tuple, *, low: float) -> None:
    if not low <= pair[0] <= pair[1]:
        raise ConfigError(f"{where} must be [min, max] with {low} <= min <= max, got {list(pair)}")


def resolve_calibration(params: str | Path | dict[str, Any]) -> CalibrationConfig:
    """The active profile's ``calibration`` section."""
    top = load_training_config({"training": _training_section(params)})
    profile = dict(top.profiles.get(top.profile) or {})
    return parse(CalibrationConfig, profile.get("calibration") or {}, f"training.profiles.{top.profile}.calibration")


def resolve_evaluation(params: str | Path | dict[str, Any]) -> EvaluationConfig:
    """The active profile's ``evaluation`` section."""
    top = load_training_config({"training": _training_section(params)})
    profile = dict(top.profiles.get(top.profile) or {})
    return parse(EvaluationConfig, profile.get("evaluation") or {}, f"training.profiles.{top.profile}.evaluation")
