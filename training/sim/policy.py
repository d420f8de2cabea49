"""A trained A1 checkpoint as a Meta-World controller, at full depth or with early exit.

The observation goes through exactly what training saw: the checkpoint's layout table puts the
cameras in their slots (``metaworld/sawyer``: ``corner2`` primary, ``gripperPOV`` left wrist),
its normaliser scales the hand position and gripper opening, the prompt is the task's
instruction, and the predicted chunk is unscaled back to Meta-World's four action numbers.
Images are rendered at the model's input size, so nothing is resized.

Cost per query is counted as calibration counts it (``training/cost.py``): the prefix, the LLM
layers run, and every head evaluation of the exit checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import load_policy
from training.cost import cost_model, query_flops
from training.inference import AdaptivePolicy, ExitSettings
from training.model.heads import MLPHead
from training.sim.metaworld import (
    ACTION_NAMES,
    PROPRIO_NAMES,
    MetaWorldTask,
    Observation,
    SimError,
)
from training.sim.rollout import Query

DATASET, EMBODIMENT = "metaworld", "sawyer"


class A1SimPolicy:
    """``settings`` None: full depth, ``full_steps`` Euler steps (the no-exit row); else adaptive exit.

    ``noise_seed`` fixes the flow-matching noise per episode (seeded from it and the episode's
    seed), so a configuration's rollouts repeat exactly.
    """

    def __init__(self, checkpoint: str | Path, *, settings: ExitSettings | None = None, full_steps: int = 10,
                 noise_seed: int = 0, dataset: str = DATASET, embodiment: str = EMBODIMENT,
                 loaded: tuple[Any, Any, Any] | None = None):
        self.policy, self.spec, self.saved = loaded or load_policy(checkpoint)
        self.settings, self.full_steps, self.noise_seed = settings, full_steps, noise_seed
        self.codec = self.spec.codec(dataset, embodiment)
        cameras = self.codec.entry.cameras
        self.slot_cameras = [cameras.get(slot) for slot in self.spec.camera_slots]
        if not any(self.slot_cameras):
            raise SimError(f"the layout of {dataset}/{embodiment} puts no camera in the slots {self.spec.camera_slots}")
        self.adaptive = AdaptivePolicy(self.policy, settings) if settings is not None else None
        self.mlp = isinstance(self.policy.head, MLPHead)
        self._cost = None
        self._generator = torch.Generator()
        self._action_mask = torch.from_numpy(self.codec.layout("action", ACTION_NAMES).mask)[None]

    @property
    def image_size(self) -> int:
        h, w = self.spec.image_size
        if h != w:
            raise SimError(f"the model's input is {h}x{w}; Meta-World renders square images")
        return h

    def reset(self, task: MetaWorldTask) -> None:
        missing = [c for c in self.slot_cameras if c is not None and c not in task.cameras]
        if missing:
            raise SimError(f"the policy sees cameras {missing} the task does not render ({task.cameras})")
        if task.image_size != self.image_size:
            raise SimError(f"the task renders {task.image_size} px; the model takes {self.image_size} px")
        self._generator.manual_seed(self.noise_seed * 1_000_003 + (task.seed or 0))
        if self.adaptive is not None:
            self.adaptive.reset()

    def batch(self, observation: Observation, instruction: str) -> dict[str, Any]:
        """One query in the loader's batch layout (see ``training/data/dataset.py``)."""
        size = self.image_size
        slots = len(self.spec.camera_slots)
        images = np.zeros((1, slots, size, size, 3), dtype=np.uint8)
        image_mask = np.zeros((1, slots), dtype=bool)
        for s, camera in enumerate(self.slot_cameras):
            if camera is not None:
                images[0, s] = observation.images[camera]
                image_mask[0, s] = True
        state, state_mask = self.codec.encode("state", observation.proprio[None].astype(np.float32), PROPRIO_NAMES)
        chunk = self.policy.chunk
        raw = {
            "images": torch.from_numpy(images), "image_mask": torch.from_numpy(image_mask),
            "state": torch.from_numpy(np.asarray(state, dtype=np.float32)),
            "state_mask": torch.from_numpy(np.asarray(state_mask))[None],
            "state_dropped": torch.zeros(1, dtype=torch.bool),
            "action_mask": self._action_mask, "action_time_mask": torch.ones(1, chunk, dtype=torch.bool),
            "text": [instruction],
        }
        return self.policy.prepare(raw, "cpu")

    @torch.no_grad()
    def act(self, observation: Observation, task: MetaWorldTask) -> Query:
        batch = self.batch(observation, task.instruction)
        noise = None if self.mlp else torch.randn((1, self.policy.chunk, self.policy.action_dim),
                                                  generator=self._generator)
        layers = self.policy.num_layers
        if self.adaptive is None:
            packed = self.policy.predict(batch, noise=noise, steps=self.full_steps)
            exit_layer, checks, steps = layers - 1, [layers - 1], self.full_steps
        else:
            result = self.adaptive.act(batch, noise=noise)
            packed = result.actions
            s = self.settings
            exit_layer = int(result.exit_layer[0])
            checks = [s.reference, *s.exits[: int(result.exit_index[0]) + 1]]
            steps = s.steps
        images = int(batch["image_mask"].sum())
        if self._cost is None:
            self._cost = cost_model(self.policy, int(self.policy.embed(batch).embeds.shape[1]))
        flops = query_flops(self._cost, images, checks, exit_layer, steps)["total"]
        actions = self.codec.decode_actions(packed[0].numpy(), ACTION_NAMES)
        return Query(np.nan_to_num(actions, nan=0.0), exit_layer=exit_layer,
                     layer_fraction=(exit_layer + 1) / layers, flops=float(flops))
