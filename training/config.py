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

    #: directory holding the stores a manifest names (rows name stores by directory name)
    data_root: str = "data/converted"
    #: the camera-slot and dimension-layout table; None: the one shipped in ``training/data/layouts.yaml``
    layouts: str | None = None
    #: the model's fixed camera inputs, in order; embodiments map their cameras onto these
    camera_slots: tuple[str, ...] = ("primary", "left_wrist", "right_wrist")
    #: model input (height, width); stored frames larger than this decode at a reduced DCT scale
    image_size: tuple[int, int] = (224, 224)
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


@dataclass(frozen=True)
class TrainingConfig:
    """The whole ``training`` section."""

    data: DataConfig = field(default_factory=DataConfig)


def load_training_config(params: str | Path | dict[str, Any] = "params.yaml") -> TrainingConfig:
    """Parse ``params.yaml``'s ``training`` section (a path or the already-loaded document)."""
    if not isinstance(params, dict):
        path = Path(params)
        if not path.is_file():
            raise ConfigError(f"{path}: no such parameters file")
        params = yaml.safe_load(path.read_text()) or {}
    return parse(TrainingConfig, params.get("training") or {}, "training")


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
