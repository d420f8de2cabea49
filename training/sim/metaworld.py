"""Meta-World tasks as a robot the policy sees through cameras and proprioception only.

Meta-World (MIT) ships its MuJoCo scenes inside the PyPI package and a scripted expert per
task, and renders headless on CPU, so the closed loop runs on a laptop with no download
(``../shared/reference/sim_benchmark.md`` has the measured facts). What this module fixes:

- **Varied, reproducible starts.** The ``*-goal-observable`` classes freeze one random start;
  :meth:`MetaWorldTask.reset` unfreezes it and seeds the task's own generator, so a seed is one
  start state on every machine and different seeds are different starts.
- **What the policy sees.** Two cameras, ``corner2`` (the scene, rendered upside down by
  MuJoCo, so turned 180 degrees) and ``gripperPOV`` (the wrist), and four proprioceptive
  numbers: the hand position (x, y, z in metres) and the gripper opening (0 closed .. 1
  open). The privileged observation (object poses, goal) goes to the scripted expert only.
- **Cheap rendering.** Shadows, reflections and multisampling dominate CPU rendering time
  (150-250 ms an image); they are off, which gives ~10-20 ms an image.

``MUJOCO_GL`` defaults to ``egl`` (software EGL works headless); set it to ``osmesa`` before
import where EGL is missing.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Self

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

#: what the policy's state vector holds, in order
PROPRIO_NAMES = ("hand_x", "hand_y", "hand_z", "gripper_opening")
#: what an action holds: the hand's position change (scaled by the env to 1 cm a unit per step) and
#: the gripper effort (-1 open .. 1 close)
ACTION_NAMES = ("hand_dx", "hand_dy", "hand_dz", "gripper_effort")
#: the cameras a policy sees: a scene camera and the wrist camera (which carries most of the signal)
CAMERAS = ("corner2", "gripperPOV")
#: cameras MuJoCo renders upside down in these scenes
_ROTATED = frozenset({"corner", "corner2", "corner3", "corner4"})
#: Meta-World's control period: frame_skip 5 x timestep 2.5 ms
CONTROL_HZ = 80.0
#: a step after this many raises inside Meta-World
MAX_PATH_LENGTH = 500

#: one readable instruction per task (the policy is conditioned on it)
INSTRUCTIONS: dict[str, str] = {
    "assembly-v3": "put the ring on the peg",
    "basketball-v3": "put the ball into the hoop",
    "bin-picking-v3": "move the puck from one bin to the other",
    "box-close-v3": "put the lid on the box",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "press the button behind the wall from the top",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "press the button behind the wall",
    "coffee-button-v3": "press the button on the coffee machine",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "pick the ring off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "lock the door by turning the lock",
    "door-open-v3": "open the door",
    "door-unlock-v3": "unlock the door by turning the lock",
    "hand-insert-v3": "put the hand into the hole",
    "drawer-close-v3": "close the drawer",
    "drawer-open-v3": "open the drawer",
    "faucet-open-v3": "turn the faucet on",
    "faucet-close-v3": "turn the faucet off",
    "hammer-v3": "hammer the nail into the wall",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "pick-place-wall-v3": "pick up the puck and place it at the goal behind the wall",
    "pick-out-of-hole-v3": "pick the peg out of the hole",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the goal",
    "plate-slide-side-v3": "slide the plate sideways into the goal",
    "plate-slide-back-v3": "slide the plate back out of the goal",
    "plate-slide-back-side-v3": "slide the plate sideways out of the goal",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "peg-unplug-side-v3": "unplug the peg from the side",
    "soccer-v3": "kick the ball into the goal",
    "stick-push-v3": "push the bottle with the stick",
    "stick-pull-v3": "pull the bottle with the stick",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck to the goal behind the wall",
    "push-back-v3": "pull the puck back to the goal",
    "reach-v3": "reach the goal with the hand",
    "reach-wall-v3": "reach the goal behind the wall",
    "shelf-place-v3": "put the puck on the shelf",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}


class SimError(RuntimeError):
    """A task, camera or setting Meta-World does not have."""


@dataclass
class Observation:
    """What one step shows: ``images`` (camera -> HxWx3 uint8) and ``proprio`` [4] for the
    policy; ``privileged`` (Meta-World's full 39-number observation) for the scripted expert."""

    images: dict[str, np.ndarray]
    proprio: np.ndarray
    privileged: np.ndarray


def task_names() -> list[str]:
    return list(INSTRUCTIONS)


def _quiet() -> warnings.catch_warnings:
    """Meta-World and gymnasium warn on every expert call and env construction."""
    return warnings.catch_warnings(action="ignore")


def _check_no_tensorflow() -> None:
    if "tensorflow" in sys.modules and os.environ.get("MUJOCO_GL") in ("egl", "osmesa"):
        raise SimError("Meta-World cannot render in a process that has loaded TensorFlow: TensorFlow exports its "
                       "bundled LLVM process-wide and Mesa's software renderer crashes in it; run the simulator "
                       "in a process that never imports tensorflow")


class MetaWorldTask:
    """One Meta-World task, seeded per episode, rendering the policy's cameras.

    ``image_size`` is the rendered square side; ``cameras`` any of the scene's cameras
    (``topview``, ``corner``..``corner4``, ``behindGripper``, ``gripperPOV``).
    """

    def __init__(self, task: str, *, image_size: int = 64, cameras: tuple[str, ...] = CAMERAS,
                 max_steps: int = 200):
        if task not in INSTRUCTIONS:
            raise SimError(f"unknown Meta-World task {task!r} (tasks: {', '.join(INSTRUCTIONS)})")
        if not 1 <= max_steps <= MAX_PATH_LENGTH:
            raise SimError(f"max_steps must be in 1..{MAX_PATH_LENGTH}, got {max_steps}")
        if image_size < 8:
            raise SimError(f"image_size must be at least 8 pixels, got {image_size}")
        _check_no_tensorflow()
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
        from metaworld.policies import ENV_POLICY_MAP

        self.task = task
        self.instruction = INSTRUCTIONS[task]
        self.image_size = image_size
        self.seed: int | None = None
        self.max_steps = max_steps
        self.cameras = tuple(cameras)
        with _quiet():
            self.env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"]()
            self._expert = ENV_POLICY_MAP[task]()
        known = {self.env.model.camera(i).name for i in range(self.env.model.ncam)}
        missing = [c for c in self.cameras if c not in known]
        if missing:
            raise SimError(f"{task}: no camera {missing} (cameras: {sorted(known)})")
        self.env.max_path_length = MAX_PATH_LENGTH
        self.env.model.vis.quality.offsamples = 0
        self._mujoco = mujoco
        self._renderer = mujoco.Renderer(self.env.model, image_size, image_size)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self.steps = 0
        self._obs: np.ndarray | None = None
        self._render = True  # whether this episode's observations carry images (reset's render)

    # --- episode -----------------------------------------------------------------------------------

    def reset(self, seed: int, *, render: bool = True) -> Observation:
        """Start the episode of ``seed``: the same seed gives the same start state. ``render`` False:
        the episode's observations carry no images (for a policy that does not look, such as the
        scripted expert; rendering is most of a step's time, and the physics is the same either way)."""
        env = self.env
        env._freeze_rand_vec = False  # the goal-observable classes freeze one start
        env.seeded_rand_vec = True
        env.seed(int(seed))
        with _quiet():
            obs, _ = env.reset()
        self.steps = 0
        self.seed = int(seed)
        self._obs = obs
        self._render = render
        return self._observe(obs)

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        """Apply one action (clipped to [-1, 1]); returns the observation and whether the task is solved."""
        if self._obs is None:
            raise SimError("step before reset")
        if self.steps >= self.max_steps:
            raise SimError(f"{self.task}: episode already ran its {self.max_steps} steps")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if action.shape != (4,):
            raise SimError(f"an action has 4 numbers {ACTION_NAMES}, got {action.shape[0]}")
        with _quiet():
            obs, _, _, _, info = self.env.step(action.astype(np.float32))
        self.steps += 1
        self._obs = obs
        return self._observe(obs), bool(info["success"])

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state (it reads the privileged state)."""
        if self._obs is None:
            raise SimError("expert_action before reset")
        with _quiet():
            return np.asarray(self._expert.get_action(self._obs), dtype=np.float32)

    # --- what the policy sees ----------------------------------------------------------------------

    def _observe(self, obs: np.ndarray) -> Observation:
        return Observation(images={c: self.render(c) for c in self.cameras} if self._render else {},
                           proprio=np.asarray(obs[:4], dtype=np.float32), privileged=obs)

    def render(self, camera: str) -> np.ndarray:
        _check_no_tensorflow()
        self._renderer.update_scene(self.env.data, camera=camera)
        image = self._renderer.render()
        if camera in _ROTATED:
            image = image[::-1, ::-1]
        return np.ascontiguousarray(image)

    def close(self) -> None:
        self._renderer.close()
        self.env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
