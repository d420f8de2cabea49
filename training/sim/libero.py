"""LIBERO evaluation client following the protocol the A1 paper, OpenVLA-OFT and openpi report.

LIBERO success rates are only comparable between papers when every client runs the same loop,
and the published clients agree on one (OpenVLA-OFT's ``experiments/robot/libero/run_libero_eval.py``
and ``libero_utils.py``, openpi's ``examples/libero/main.py``, and A1's own
``robot_experiments/libero/eval_libero*.py``, which copies OFT's loop). This module is that loop,
written against a duck-typed environment so the protocol is testable without the simulator:

- **Trials.** 50 trials per task; trial ``i`` starts from the task's fixed initial state
  ``init_states[i]``, in order. The environment is seeded before every trial (``seed``, 0 as in
  OFT and A1; openpi uses 7). OFT and A1 seed once when the environment is built; LIBERO's seed is
  NumPy's global seed, so reseeding per trial makes a trial's start independent of how many
  trials ran before it, and the first trial is identical to theirs.
- **Settling.** The first 10 steps send the no-op ``[0, 0, 0, 0, 0, 0, -1]`` (gripper open) so the
  objects come to rest; the policy is not queried, the steps are not counted, and a ``done``
  reported while settling is ignored, as in the references.
- **Horizon.** At most ``max_steps`` policy steps per trial: libero_spatial 220, libero_object 280,
  libero_goal 300, libero_10 520, libero_90 400 (the references' ``while t < max_steps + 10``).
  Success is the environment's ``done``; a ``done`` on the last allowed step counts.
- **What the policy sees.** ``agentview_image`` and ``robot0_eye_in_hand_image``, rendered at
  256x256 and turned 180 degrees (``img[::-1, ::-1]``, how the training data was stored), then
  resized to the model's input (PIL Lanczos, antialiased; OFT uses TensorFlow's antialiased
  Lanczos-3 after a JPEG round trip, openpi pads to square first: the renders are square, so only
  the filter differs). State: end-effector position (3), the axis-angle of the end-effector
  quaternion (3, robosuite's ``quat2axisangle``) and the two gripper finger positions (2).
- **Chunks.** The first ``execute_steps`` actions of each chunk run open loop (8, OFT and A1;
  openpi 5), never past the chunk's end, then the policy is queried again.
- **Gripper.** The policy's gripper value in [0, 1] is mapped to [-1, 1], binarised with the sign
  and negated into LIBERO's convention (-1 open, +1 close), as OFT and A1 do for models trained on
  ``openvla/modified_libero_rlds``. Each step is a flag, so models trained on data already in the
  environment's convention (openpi's LeRobot LIBERO) turn them off.

Two choices the references leave open: the sign of exactly 0 (a gripper value of exactly 0.5) is
0, as ``np.sign`` gives in OFT, so the gripper holds rather than picking a side; and an exception
inside a trial propagates (OFT logs it and counts a failure, which hides broken clients).

The simulator is the PyPI ``libero`` package (Hugging Face's packaging of the benchmark: bddl
files and initial states included) with its asset pack, which it downloads from the Hugging Face
Hub on first use; :func:`make_libero_env` raises :class:`LiberoUnavailable` with that hint when
either is missing. NumPy and PIL only here: the policy brings its own framework.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
from PIL import Image

from training.io import write_text
from training.sim.metaworld import SimError, _check_no_tensorflow
from training.sim.rollout import EpisodeResult, Query

#: policy steps per trial, per suite (the longest training demonstration plus a margin)
MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
SUITES = tuple(MAX_STEPS)
#: the settling action: no motion, gripper open (LIBERO's convention)
DUMMY_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ACTION_DIM = 7
#: the policy's camera name -> LIBERO's observation key
CAMERA_KEYS: dict[str, str] = {"agentview": "agentview_image", "wrist": "robot0_eye_in_hand_image"}
#: what the 8 numbers of the state hold, in order
PROPRIO_NAMES = ("eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_left", "gripper_right")
#: the render size every reference uses; the model's input size is a separate setting
RENDER_SIZE = 256
#: the asset folders LIBERO's scenes load from (its own downloader checks the same ones)
ASSET_FOLDERS = ("articulated_objects", "scenes", "stable_hope_objects", "stable_scanned_objects",
                 "turbosquid_objects")
INSTALL_HINT = ("install the simulator with `pip install libero` (the benchmark's bddl files and initial "
                "states; it pulls robosuite 1.4 and mujoco) and make its asset pack available: the package "
                "downloads it from the Hugging Face Hub (jadechoghari/libero-assets) on first use, which needs "
                "network access, or copy a downloaded pack to ~/.cache/libero/assets")


class LiberoUnavailable(SimError):
    """The simulator or its assets are not installed, so no LIBERO number can be produced here."""


@dataclass(frozen=True)
class LiberoProtocol:
    """One evaluation's settings; the defaults are OpenVLA-OFT's (and A1's) published protocol."""

    suite: str
    trials: int = 50
    settle_steps: int = 10
    max_steps: int | None = None  # None: the suite's entry in MAX_STEPS
    execute_steps: int = 8
    image_size: int = 224  # the model's input side; renders are resized to it
    seed: int = 0
    gripper_from_unit: bool = True
    binarize_gripper: bool = True
    invert_gripper: bool = True

    def __post_init__(self) -> None:
        check_suite(self.suite)
        if self.max_steps is None:
            object.__setattr__(self, "max_steps", MAX_STEPS[self.suite])
        for name, low in (("trials", 1), ("settle_steps", 0), ("max_steps", 1), ("execute_steps", 1),
                          ("image_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < low:
                raise SimError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass
class LiberoObservation:
    """What the policy sees: ``images`` ("agentview", "wrist" -> HxWx3 uint8 at the model's size,
    already turned 180 degrees) and ``proprio`` [8] float32 (``PROPRIO_NAMES``)."""

    images: dict[str, np.ndarray]
    proprio: np.ndarray


class LiberoPolicy(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: LiberoObservation, instruction: str) -> Query: ...


class LiberoEnv(Protocol):
    """The part of LIBERO's ``OffScreenRenderEnv`` the loop uses."""

    def seed(self, seed: int) -> Any: ...

    def reset(self) -> Any: ...

    def set_init_state(self, init_state: Any) -> Mapping[str, Any]: ...

    def step(self, action: Sequence[float]) -> tuple[Mapping[str, Any], float, bool, Any]: ...

    def close(self) -> None: ...


def check_suite(suite: str) -> str:
    if suite not in MAX_STEPS:
        raise SimError(f"unknown LIBERO suite {suite!r} (suites: {', '.join(SUITES)})")
    return suite


# --- observation and action conversion ---------------------------------------------------------------


def quat2axisangle(quat: Sequence[float] | np.ndarray) -> np.ndarray:
    """Axis-angle (axis times angle in radians) of an (x, y, z, w) quaternion, exactly as robosuite
    computes it, because the training data's state was made with robosuite's function: w is clipped
    to [-1, 1], no sign canonicalisation (w < 0 gives angles above pi), and a (near) zero rotation
    is the zero vector rather than 0/0."""
    q = np.array(quat, dtype=np.float64).reshape(-1)
    if q.shape != (4,):
        raise SimError(f"a quaternion has 4 numbers (x, y, z, w), got {q.shape[0]}")
    w = float(np.clip(q[3], -1.0, 1.0))
    den = np.sqrt(1.0 - w * w)
    if den < 1e-12:
        return np.zeros(3)
    return q[:3] * 2.0 * np.arccos(w) / den


def proprio_state(obs: Mapping[str, Any]) -> np.ndarray:
    """The 8-number state the references feed the model (see ``PROPRIO_NAMES``)."""
    pos = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).reshape(3)
    fingers = np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64).reshape(2)
    return np.concatenate([pos, quat2axisangle(obs["robot0_eef_quat"]), fingers]).astype(np.float32)


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """Turn a render 180 degrees (the orientation the training data was stored in) and resize it to
    the model's square input with an antialiasing filter, so small models see what large ones see."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise SimError(f"a camera image is HxWx3, got shape {image.shape}")
    rotated = np.ascontiguousarray(image[::-1, ::-1]).astype(np.uint8, copy=False)
    if rotated.shape[:2] == (size, size):
        return rotated
    resized = Image.fromarray(rotated).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


def observe(obs: Mapping[str, Any], image_size: int) -> LiberoObservation:
    """LIBERO's observation dictionary as the policy sees it."""
    return LiberoObservation(images={name: prepare_image(obs[key], image_size) for name, key in CAMERA_KEYS.items()},
                             proprio=proprio_state(obs))


def process_actions(actions: np.ndarray, protocol: LiberoProtocol) -> np.ndarray:
    """The policy's [N, 7] actions in the environment's convention: only the gripper (last number)
    changes. With all flags on, g in [0, 1] becomes -sign(2g - 1): 0 -> +1 (close), 1 -> -1 (open),
    exactly 0.5 -> 0 (``np.sign(0)``, what OFT sends)."""
    out = np.array(actions, dtype=np.float64).reshape(-1, ACTION_DIM)
    gripper = out[:, -1]
    if protocol.gripper_from_unit:
        gripper = 2.0 * gripper - 1.0
    if protocol.binarize_gripper:
        gripper = np.sign(gripper)
    if protocol.invert_gripper:
        gripper = -gripper
    out[:, -1] = gripper + 0.0  # + 0.0 turns -0.0 into 0.0, so a held gripper prints as 0
    return out


# --- the loop ----------------------------------------------------------------------------------------


def _chunk(query: Query, task: str) -> np.ndarray:
    actions = np.asarray(query.actions, dtype=np.float64)
    if actions.ndim == 1:
        actions = actions[None]
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        raise SimError(f"{task}: a LIBERO action chunk is [H, {ACTION_DIM}] (6 end-effector deltas and the "
                       f"gripper), got shape {actions.shape}")
    if not len(actions):
        raise SimError(f"{task}: the policy returned no action")
    return actions


def run_trial(env: LiberoEnv, init_state: Any, policy: LiberoPolicy, protocol: LiberoProtocol, *,
              instruction: str, trial: int, task: str | None = None) -> EpisodeResult:
    """One trial from ``init_state``: seed, reset, settle, then query-and-execute until ``done`` or
    ``protocol.max_steps`` policy steps. ``EpisodeResult.seed`` holds the trial index (the init
    state's index, which is what identifies a LIBERO start) and ``steps`` the policy steps run."""
    name = task or instruction
    start = time.perf_counter()
    policy.reset()
    env.seed(protocol.seed)
    env.reset()
    obs = env.set_init_state(init_state)
    result = EpisodeResult(name, int(trial), False, 0, 0, 0.0, 0.0)
    for _ in range(protocol.settle_steps):
        obs, _, _, _ = env.step(list(DUMMY_ACTION))
    queue: list[np.ndarray] = []
    max_steps = int(protocol.max_steps or 0)  # never None after __post_init__
    while result.steps < max_steps:
        if not queue:
            observation = observe(obs, protocol.image_size)
            query = result.ask(policy.act, observation, instruction)
            queue = list(process_actions(_chunk(query, name)[: protocol.execute_steps], protocol))
        obs, _, done, _ = env.step(queue.pop(0).tolist())
        result.steps += 1
        if done:
            result.success = True
            break
    result.wall_s = time.perf_counter() - start
    return result


def run_task(env: LiberoEnv, init_states: Sequence[Any], policy: LiberoPolicy, protocol: LiberoProtocol,
             instruction: str, *, task: str | None = None,
             on_trial: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """``protocol.trials`` trials from the first init states, in order; checked before any trial runs,
    so a suite with fewer stored starts fails at once instead of after hours of simulation."""
    if protocol.trials > len(init_states):
        raise SimError(f"{task or instruction}: {protocol.trials} trials asked for but the task has only "
                       f"{len(init_states)} initial states")
    results = []
    for i in range(protocol.trials):
        result = run_trial(env, init_states[i], policy, protocol, instruction=instruction, trial=i, task=task)
        results.append(result)
        if on_trial is not None:
            on_trial(result)
    return results


# --- the simulator -----------------------------------------------------------------------------------


@dataclass
class LiberoTask:
    """One task of a suite, ready to run: its environment, initial states and instruction."""

    suite: str
    task_id: int
    name: str
    instruction: str
    env: Any
    init_states: Any
    n_tasks: int  # tasks in the suite

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _package_root() -> Path:
    """Where ``libero/libero`` is, found without importing it (its import may prompt)."""
    try:
        spec = importlib.util.find_spec("libero")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise LiberoUnavailable(f"the `libero` package is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "libero"


def _ensure_config(root: Path) -> Path:
    """Write the config LIBERO's import otherwise asks for on stdin (``input()``), with the answers
    it uses by default, so a batch job never blocks on a prompt. An existing config is kept."""
    config_dir = Path(os.environ.get("LIBERO_CONFIG_PATH") or Path.home() / ".libero")
    config = config_dir / "config.yaml"
    if config.is_file():
        return config
    import yaml

    paths = {"benchmark_root": str(root), "bddl_files": str(root / "bddl_files"),
             "init_states": str(root / "init_files"), "datasets": str(root.parent / "datasets"),
             "assets": str(root / "assets")}
    config_dir.mkdir(parents=True, exist_ok=True)
    write_text(config, yaml.safe_dump(paths))  # atomic: parallel evaluations never read half a file
    return config


def _assets_dir(libero_pkg: Any) -> Path:
    """The Hugging Face packaging resolves (and on first use downloads) assets itself; the upstream
    repository keeps them at the configured ``assets`` path."""
    getter = getattr(libero_pkg, "get_assets_path", None)
    return Path(getter() if callable(getter) else libero_pkg.get_libero_path("assets"))


def _init_states(libero_pkg: Any, task_suite: Any, task_id: int, task: Any) -> Any:
    """Upstream LIBERO loads the init states with ``torch.load`` defaults, which refuse its pickles
    from torch 2.6 on; the file ships inside the package, so it is loaded again with pickling
    allowed, through the torch that LIBERO itself imported."""
    try:
        return task_suite.get_task_init_states(task_id)
    except Exception as exc:
        torch = sys.modules.get("torch")
        if "weights_only" not in str(exc) or torch is None:
            raise
        path = os.path.join(libero_pkg.get_libero_path("init_states"), task.problem_folder, task.init_states_file)
        return torch.load(path, weights_only=False)


def make_libero_env(suite: str, task_id: int, resolution: int = RENDER_SIZE) -> LiberoTask:
    """Task ``task_id`` of ``suite`` as an off-screen LIBERO environment rendering both cameras at
    ``resolution`` (256 in every reference). Raises :class:`LiberoUnavailable` when the package does
    not import or its assets are missing, before any scene is built; the Hugging Face packaging
    first tries its own download of the assets, which is how they arrive on first use.

    ``MUJOCO_GL`` defaults to ``egl`` (headless); set ``osmesa`` before the call where EGL is missing.
    LIBERO's config is written to ``$LIBERO_CONFIG_PATH`` (default ``~/.libero``) if absent.
    """
    check_suite(suite)
    os.environ.setdefault("MUJOCO_GL", "egl")
    _check_no_tensorflow()  # the same Mesa/TensorFlow LLVM clash as Meta-World's renderer
    root = _package_root()
    _ensure_config(root)
    try:
        import libero.libero as libero_pkg
        from libero.libero import benchmark
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as exc:
        raise LiberoUnavailable(f"`libero` is installed but does not import ({exc}): {INSTALL_HINT}") from exc
    assets = _assets_dir(libero_pkg)
    missing = [f for f in ASSET_FOLDERS if not (assets / f).is_dir()]
    if missing:
        raise LiberoUnavailable(f"LIBERO's assets are missing ({', '.join(missing)} not in {assets}): {INSTALL_HINT}")
    suites = benchmark.get_benchmark_dict()
    if suite not in suites:
        raise LiberoUnavailable(f"this `libero` has no suite {suite!r} (it has {sorted(suites)}): {INSTALL_HINT}")
    task_suite = suites[suite]()
    if not 0 <= task_id < task_suite.n_tasks:
        raise SimError(f"{suite} has tasks 0..{task_suite.n_tasks - 1}, not {task_id}")
    task = task_suite.get_task(task_id)
    init_states = _init_states(libero_pkg, task_suite, task_id, task)
    bddl = os.path.join(libero_pkg.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=resolution, camera_widths=resolution)
    return LiberoTask(suite, int(task_id), str(task.name), str(task.language), env, init_states,
                      int(task_suite.n_tasks))


def evaluate_suite(policy: LiberoPolicy, protocol: LiberoProtocol, *, task_ids: Sequence[int] | None = None,
                   resolution: int = RENDER_SIZE,
                   on_trial: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """Every task of ``protocol.suite`` (or ``task_ids``) under the protocol, one environment at a
    time; results are named by LIBERO's task name, so ``training.sim.rollout.summarize`` gives the
    per-task table."""
    results: list[EpisodeResult] = []
    pending = list(task_ids) if task_ids is not None else [0]
    while pending:
        task_id = pending.pop(0)
        with make_libero_env(protocol.suite, task_id, resolution) as made:
            if task_ids is None and task_id == 0:
                pending = list(range(1, made.n_tasks))
            results += run_task(made.env, made.init_states, policy, protocol, made.instruction, task=made.name,
                                on_trial=on_trial)
    return results
