"""Checkpoints: everything needed to run a model, and to resume its training exactly.

``<run>/checkpoint/`` holds

- ``model.safetensors``: every weight of the policy;
- ``config.json``: the run's resolved configuration, the step, and the manifest that trained
  it (name, and the sha256 of its ``manifest.json`` and of its episode table), so a model
  says which data trained it;
- ``data_spec.json`` and ``normalization.json``: camera slots, layouts and statistics for
  inference (``training/data/spec.py``);
- ``tokenizer.json``;
- ``train_state.pt``: optimizer, scheduler, RNG and data-loader position, loaded with
  ``torch.load(weights_only=True)`` (tensors and plain values only).

A checkpoint is written into a temporary directory and swapped into place, so an
interrupted save leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoint"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"


def save_checkpoint(run_dir: str | Path, *, model: torch.nn.Module, config: dict[str, Any], spec: Any,
                    tokenizer: Any, train_state: dict[str, Any]) -> Path:
    """Write ``run_dir/checkpoint`` atomically and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / f".{CHECKPOINT_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes metadata in hash-map order (safetensors issue #584), so
    # two keys make the same weights different bytes, and DVC's lock would change on every run; the
    # format version is in config.json
    save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "a1pipe-policy"})
    (tmp / CONFIG_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **config}, indent=1,
                                              sort_keys=True) + "\n")
    spec.save(tmp)
    tokenizer.save(str(tmp / "tokenizer.json"))
    torch.save(train_state, tmp / STATE_FILE)
    old = run_dir / f".{CHECKPOINT_DIR}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_config(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: no {CONFIG_FILE}; not a checkpoint")
    config = json.loads(path.read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {config.get('format_version')!r}, this a1pipe reads {FORMAT_VERSION}")
    return config


def load_weights(model: torch.nn.Module, checkpoint: str | Path, *, strict: bool = True) -> None:
    state = load_file(str(Path(checkpoint) / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"{checkpoint}: weights do not fit the model: missing {missing[:8]}, unexpected "
                         f"{unexpected[:8]}")


def load_train_state(checkpoint: str | Path) -> dict[str, Any]:
    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)


def load_policy(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """A trained policy ready for inference, with its data spec: ``(policy, spec, config)``."""
    from training.config import ModelConfig, parse
    from training.data.spec import DataSpec
    from training.model import A1Policy
    from training.model.tokenizer import load_tokenizer

    checkpoint = Path(checkpoint)
    config = read_config(checkpoint)
    model = parse(ModelConfig, config["run"]["model"], f"{checkpoint}/config.json run.model")
    shapes = config["shapes"]
    policy = A1Policy(model, chunk=shapes["chunk"], state_dim=shapes["state_dim"], action_dim=shapes["action_dim"],
                      camera_slots=shapes["camera_slots"], tokenizer=load_tokenizer(checkpoint))
    load_weights(policy, checkpoint)
    return policy.to(device).eval(), DataSpec.load(checkpoint), config
