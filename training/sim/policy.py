"""A trained A1 checkpoint as a simulator controller (Meta-World, LIBERO), at full depth or with early exit.

The observation goes through exactly what training saw: the checkpoint's layout table puts the
cameras in their slots (``metaworld/sawyer``: ``corner2`` primary, ``gripperPOV`` left wrist),
its normaliser scales the hand position and gripper opening, the prompt is the task's
instruction, and the predicted chunk is unscaled back to Meta-World's four action numbers.
Images are rendered at the model's input size, so nothing is resized.

Cost per query is counted as calibration counts it (``training/cost.py``): the prefix, the LLM
layers run, and every head evaluation of the exit checks.

:class:`CheckpointController` does that for any (dataset, embodiment) the checkpoint was trained
on; :class:`A1SimPolicy` (Meta-World) and :class:`A1LiberoPolicy` (the LIBERO client,
``training/sim/libero.py``) only adapt their simulator's observation to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class CheckpointController:
    """A checkpoint's policy for one of the (dataset, embodiment)s it was trained on.

    ``cameras`` maps the stored camera names of that embodiment (the layout table's slots) to the
    simulator's camera names (default: the same names); ``state_names`` and ``action_names`` are
    the simulator's proprioception and action, named as the dataset names them, so the layout
    table places them and the normaliser scales them exactly as in training. ``settings`` None:
    full depth with ``full_steps`` Euler steps; else adaptive exit. ``noise_seed`` fixes the
    flow-matching noise per episode, so a configuration's rollouts repeat exactly.
    """

    def __init__(self, checkpoint: str | Path, *, dataset: str, embodiment: str, state_names: Sequence[str],
                 action_names: Sequence[str], cameras: Mapping[str, str] | None = None,
                 settings: ExitSettings | None = None, full_steps: int = 10, noise_seed: int = 0,
                 loaded: tuple[Any, Any, Any] | None = None):
        self.policy, self.spec, self.saved = loaded or load_policy(checkpoint)
        self.settings, self.full_steps, self.noise_seed = settings, full_steps, noise_seed
        self.state_names, self.action_names = tuple(state_names), tuple(action_names)
        try:
            self.codec = self.spec.codec(dataset, embodiment)
        except (KeyError, ValueError) as exc:
            raise SimError(f"{checkpoint}: no layout for {dataset}/{embodiment} in this model ({exc})") from exc
        stored = self.codec.entry.cameras
        cameras = dict(cameras) if cameras is not None else {}
        unknown = sorted(set(cameras) - set(stored.values()))
        if unknown:
            raise SimError(f"cameras {unknown} are not cameras of {dataset}/{embodiment} "
                           f"(its slots: {dict(stored)})")
        self.slot_cameras = [cameras.get(stored[slot], stored[slot]) if stored.get(slot) else None
                             for slot in self.spec.camera_slots]
        if not any(self.slot_cameras):
            raise SimError(f"the layout of {dataset}/{embodiment} puts no camera in the slots {self.spec.camera_slots}")
        self.adaptive = AdaptivePolicy(self.policy, settings) if settings is not None else None
        self.mlp = isinstance(self.policy.head, MLPHead)
        self._cost: dict[int, Any] = {}  # per prefix length
        self._prefix_other: int | None = None
        self._generator = torch.Generator()
        self._action_mask = torch.from_numpy(self.codec.layout("action", self.action_names).mask)[None]
        self.codec.layout("state", self.state_names)  # a name the layout does not place fails here, not mid-episode

    @property
    def image_size(self) -> int:
        h, w = self.spec.image_size
        if h != w:
            raise SimError(f"the model's input is {h}x{w}; the simulators render square images")
        return h

    @property
    def sees_images(self) -> bool:
        """Whether a query reads any camera (a model trained blind is queried blind)."""
        return bool(self.cameras) and bool(self.spec.images)

    @property
    def cameras(self) -> list[str]:
        """The simulator cameras the model looks at."""
        return [c for c in self.slot_cameras if c is not None]

    def episode_generator(self, seed: int, generator: torch.Generator | None = None) -> torch.Generator:
        """The flow-matching noise generator of the episode of ``seed`` (``generator`` reseeded, or a new one)."""
        return (generator or torch.Generator()).manual_seed(self.noise_seed * 1_000_003 + seed)

    def start_episode(self, seed: int) -> None:
        self.episode_generator(seed, self._generator)
        if self.adaptive is not None:
            self.adaptive.reset()

    def batch(self, images: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
              proprio: np.ndarray | Sequence[np.ndarray], instruction: str | Sequence[str]) -> dict[str, Any]:
        """Queries in the loader's batch layout (see ``training/data/dataset.py``): one (a mapping of
        images, a proprio vector and a string) or several (sequences of them). A model trained blind
        (``DataSpec.images`` false) is queried blind."""
        if isinstance(instruction, str):
            images, proprio, instruction = [images], [proprio], [instruction]
        b, size = len(instruction), self.image_size
        slots = len(self.spec.camera_slots)
        batch_images = np.zeros((b, slots, size, size, 3), dtype=np.uint8)
        image_mask = np.zeros((b, slots), dtype=bool)
        for i, views in enumerate(images):
            for s, camera in enumerate(self.slot_cameras):
                if camera is not None and self.spec.images:
                    batch_images[i, s] = views[camera]
                    image_mask[i, s] = True
        proprio = np.stack([np.asarray(p, dtype=np.float32) for p in proprio])
        state, state_mask = self.codec.encode("state", proprio, self.state_names)
        chunk = self.policy.chunk
        raw = {
            "images": torch.from_numpy(batch_images), "image_mask": torch.from_numpy(image_mask),
            "state": torch.from_numpy(np.asarray(state, dtype=np.float32)),
            "state_mask": torch.from_numpy(np.asarray(state_mask))[None].expand(b, -1),
            "state_dropped": torch.zeros(b, dtype=torch.bool),
            "action_mask": self._action_mask.expand(b, -1), "action_time_mask": torch.ones(b, chunk, dtype=torch.bool),
            "text": list(instruction),
        }
        return self.policy.prepare(raw, "cpu")

    def query(self, images: Mapping[str, np.ndarray], proprio: np.ndarray, instruction: str) -> Query:
        """The next action chunk [H, len(action_names)] in the robot's units, where the model exited
        and what the query cost."""
        return self.query_many([images], [proprio], [instruction], [self._generator])[0]

    @torch.no_grad()
    def query_many(self, images: Sequence[Mapping[str, np.ndarray]], proprio: Sequence[np.ndarray],
                   instructions: Sequence[str], generators: Sequence[torch.Generator]) -> list[Query]:
        """One query per episode of several episodes, answered in one batch: each episode's answer
        is what :meth:`query` gives it alone (its own noise generator, its own exit layer and cost;
        up to float rounding, as a sample acts the same alone as in a batch). The LLM runs as deep
        as the deepest exit of the batch; the cost recorded per episode is what its own exit needs."""
        if len(generators) != len(instructions):
            raise ValueError(f"{len(instructions)} queries but {len(generators)} noise generators")
        if self.settings is not None and self.settings.carry_over and len(instructions) > 1:
            raise SimError("carry_over keeps one controller state across queries: it answers one episode at a time")
        batch = self.batch(images, proprio, instructions)
        b, layers = len(instructions), self.policy.num_layers
        noise = None if self.mlp else torch.cat(
            [torch.randn((1, self.policy.chunk, self.policy.action_dim), generator=g) for g in generators])
        if self.adaptive is None:
            packed = self.policy.predict(batch, noise=noise, steps=self.full_steps)
            exits = [(layers - 1, [layers - 1])] * b
            steps = self.full_steps
        else:
            result = self.adaptive.act(batch, noise=noise)
            packed = result.actions
            s = self.settings
            exits = [(int(result.exit_layer[i]), [s.reference, *s.exits[: int(result.exit_index[i]) + 1]])
                     for i in range(b)]
            steps = s.steps
        if self._prefix_other is None:  # image, proprio and query tokens: the same for every query of this model
            self._prefix_other = int(self.policy.embed(batch).embeds.shape[1]) - int(batch["text_valid"].shape[1])
        queries = []
        for i, (exit_layer, checks) in enumerate(exits):
            # each query's own prefix (as it would be alone): its real text tokens, not the batch's padding
            tokens = self._prefix_other + int(batch["text_valid"][i].sum())
            if tokens not in self._cost:
                self._cost[tokens] = cost_model(self.policy, tokens)
            shown = int(batch["image_mask"][i].sum())
            flops = query_flops(self._cost[tokens], shown, checks, exit_layer, steps)["total"]
            actions = self.codec.decode_actions(packed[i].numpy(), self.action_names)
            queries.append(Query(np.nan_to_num(actions, nan=0.0), exit_layer=exit_layer,
                                 layer_fraction=(exit_layer + 1) / layers, flops=float(flops)))
        return queries


class A1SimPolicy(CheckpointController):
    """The checkpoint as a Meta-World policy (``training.sim.rollout.Policy``), on the demonstrations'
    own names: ``metaworld/sawyer``, its cameras as rendered, hand position and gripper opening."""

    def __init__(self, checkpoint: str | Path, *, settings: ExitSettings | None = None, full_steps: int = 10,
                 noise_seed: int = 0, dataset: str = DATASET, embodiment: str = EMBODIMENT,
                 loaded: tuple[Any, Any, Any] | None = None):
        super().__init__(checkpoint, dataset=dataset, embodiment=embodiment, state_names=PROPRIO_NAMES,
                         action_names=ACTION_NAMES, settings=settings, full_steps=full_steps,
                         noise_seed=noise_seed, loaded=loaded)

    def reset(self, task: MetaWorldTask) -> None:
        missing = [c for c in self.cameras if c not in task.cameras]
        if missing:
            raise SimError(f"the policy sees cameras {missing} the task does not render ({task.cameras})")
        if task.image_size != self.image_size:
            raise SimError(f"the task renders {task.image_size} px; the model takes {self.image_size} px")
        self.start_episode(task.seed or 0)

    def act(self, observation: Observation, task: MetaWorldTask) -> Query:
        return self.query(observation.images, observation.proprio, task.instruction)

    def reset_many(self, tasks: Sequence[MetaWorldTask]) -> None:
        """Start one episode in each of ``tasks`` (run in lockstep by ``rollout_many``): each gets the
        noise generator :meth:`reset` would give it alone."""
        for task in tasks:
            self.reset(task)
        self._generators = [self.episode_generator(t.seed or 0) for t in tasks]

    def act_many(self, observations: Sequence[Observation], tasks: Sequence[MetaWorldTask],
                 episodes: Sequence[int]) -> list[Query]:
        """Queries of the episodes ``episodes`` (indices into the last :meth:`reset_many`'s tasks), in one batch."""
        return self.query_many([o.images for o in observations], [o.proprio for o in observations],
                               [t.instruction for t in tasks], [self._generators[e] for e in episodes])


class A1LiberoPolicy(CheckpointController):
    """The checkpoint as a LIBERO policy (``training.sim.libero.LiberoPolicy``).

    LIBERO's observation is always the same eight numbers (``libero.PROPRIO_NAMES``) and two
    cameras (``agentview``, ``wrist``), and it takes seven action numbers (six end-effector deltas
    and the gripper); the dataset the model was fine-tuned on names them its own way. So
    ``state_names`` names the eight numbers as the dataset does, ``action_names`` are the dataset's
    action names (all of them: the layout places every one), ``sent`` the seven of them LIBERO
    gets, in its order (default: ``action_names`` when they are seven), and ``cameras`` maps stored
    camera names to ``agentview`` / ``wrist``. Every trial restarts the noise from ``noise_seed``
    and the trial's count, so trials repeat.
    """

    def __init__(self, checkpoint: str | Path, *, dataset: str, embodiment: str, cameras: Mapping[str, str],
                 state_names: Sequence[str], action_names: Sequence[str], sent: Sequence[str] | None = None,
                 **kwargs: Any):
        from training.sim.libero import ACTION_DIM, CAMERA_KEYS
        from training.sim.libero import PROPRIO_NAMES as LIBERO_PROPRIO

        if len(state_names) != len(LIBERO_PROPRIO):
            raise SimError(f"LIBERO's state is {len(LIBERO_PROPRIO)} numbers {list(LIBERO_PROPRIO)}; "
                           f"{len(state_names)} names were given")
        sent = list(sent if sent is not None else action_names)
        if len(sent) != ACTION_DIM:
            raise SimError(f"LIBERO takes {ACTION_DIM} action numbers; {len(sent)} were named ({sent})")
        unknown = [n for n in sent if n not in action_names]
        if unknown:
            raise SimError(f"actions {unknown} are not among the dataset's actions {list(action_names)}")
        bad = sorted(set(cameras.values()) - set(CAMERA_KEYS))
        if bad:
            raise SimError(f"LIBERO renders cameras {sorted(CAMERA_KEYS)}, not {bad}")
        super().__init__(checkpoint, dataset=dataset, embodiment=embodiment, cameras=cameras,
                         state_names=state_names, action_names=action_names, **kwargs)
        unmapped = [c for c in self.cameras if c not in CAMERA_KEYS]
        if unmapped:
            raise SimError(f"the model looks at stored cameras {unmapped}; map each to agentview or wrist")
        self._sent = [list(action_names).index(n) for n in sent]
        self._trials = 0

    def reset(self) -> None:
        self.start_episode(self._trials)
        self._trials += 1

    def act(self, observation, instruction: str) -> Query:
        query = self.query(observation.images, observation.proprio, instruction)
        query.actions = query.actions[:, self._sent]
        return query
