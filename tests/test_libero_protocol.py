"""The LIBERO evaluation protocol (``training/sim/libero.py``) against a fake environment.

LIBERO itself is not installed here (its asset pack comes from the Hugging Face Hub), so the loop
runs against ``FakeEnv``, which records every call and action and numbers its observations, and
the factory runs against a small fake ``libero`` package written to a temporary directory. What
is checked is what makes a success rate comparable with the published ones: settling, horizon,
chunk execution, init-state order and seeding, image orientation and size, the 8-number state and
the gripper convention.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from training.sim import libero as lib
from training.sim.libero import (
    DUMMY_ACTION,
    LiberoObservation,
    LiberoProtocol,
    LiberoUnavailable,
    SimError,
    make_libero_env,
    observe,
    process_actions,
    quat2axisangle,
    run_task,
    run_trial,
)
from training.sim.rollout import Query, summarize

SIZE = 256
ROWS, COLS = np.indices((SIZE, SIZE))


def _camera(blue: int) -> np.ndarray:
    """Red = row, green = column: a 180-degree turn moves (0, 0) to (255, 255) in both, a flip in one."""
    return np.stack([ROWS, COLS, np.full_like(ROWS, blue)], axis=-1).astype(np.uint8)


AGENTVIEW, WRIST = _camera(10), _camera(200)


class FakeEnv:
    """LIBERO's env surface; observation k (k steps since the init state; -1 for the init state
    itself) carries k as the end-effector x, and ``done`` holds from step ``done_from`` on."""

    def __init__(self, done_from: int | None = None, *, quat=(0.0, 0.0, 0.0, 1.0), fingers=(0.04, -0.04),
                 **_: object):
        self.done_from = done_from
        self.quat = quat
        self.fingers = fingers
        self.calls: list[tuple] = []
        self.steps = 0
        self.closed = False

    def _obs(self, marker: int) -> dict[str, np.ndarray]:
        return {"agentview_image": AGENTVIEW, "robot0_eye_in_hand_image": WRIST,
                "robot0_eef_pos": np.array([float(marker), 0.2, 0.3]),
                "robot0_eef_quat": np.array(self.quat, dtype=np.float64),
                "robot0_gripper_qpos": np.array(self.fingers)}

    def seed(self, seed):
        self.calls.append(("seed", seed))

    def reset(self):
        self.calls.append(("reset",))
        self.steps = 0
        return self._obs(-2)

    def set_init_state(self, state):
        self.calls.append(("init", state))
        self.steps = 0
        return self._obs(-1)

    def step(self, action):
        assert isinstance(action, list) and len(action) == 7, action
        self.calls.append(("step", list(action)))
        self.steps += 1
        done = self.done_from is not None and self.steps >= self.done_from
        return self._obs(self.steps), 0.0, done, {}

    def close(self):
        self.closed = True

    @property
    def actions(self) -> list[list[float]]:
        return [c[1] for c in self.calls if c[0] == "step"]


class ChunkPolicy:
    """Chunks of ``horizon`` actions; action j of query q has x = 1 + 100 q + j, so the env's action
    log says which chunk and which position every executed action came from."""

    def __init__(self, horizon: int = 10, gripper: float = 1.0, dim: int = 7):
        self.horizon, self.gripper, self.dim = horizon, gripper, dim
        self.seen: list[LiberoObservation] = []
        self.instructions: list[str] = []
        self.resets = 0

    def reset(self):
        self.resets += 1

    def act(self, observation, instruction):
        self.seen.append(observation)
        self.instructions.append(instruction)
        q = len(self.seen) - 1
        actions = np.zeros((self.horizon, self.dim))
        actions[:, 0] = 1 + 100 * q + np.arange(self.horizon)
        actions[:, -1] = self.gripper
        return Query(actions, exit_layer=q, layer_fraction=0.5, flops=1e9 * (q + 1))

    @property
    def markers(self) -> list[int]:
        return [int(o.proprio[0]) for o in self.seen]


def protocol(**kw) -> LiberoProtocol:
    kw.setdefault("suite", "libero_spatial")
    kw.setdefault("max_steps", 20)
    kw.setdefault("image_size", SIZE)
    return LiberoProtocol(**kw)


def trial(env, policy, proto, state="s0", index=0):
    return run_trial(env, state, policy, proto, instruction="put the bowl on the plate", trial=index)


# --- settling, chunks, horizon -------------------------------------------------------------------------


@pytest.mark.parametrize("settle", [0, 3, 10])
def test_settling_sends_only_the_dummy_action_and_never_queries_the_policy(settle):
    env, policy = FakeEnv(), ChunkPolicy()
    result = trial(env, policy, protocol(settle_steps=settle))
    assert env.actions[:settle] == [list(DUMMY_ACTION)] * settle
    assert env.actions[settle][0] == 1  # the first policy action follows immediately
    assert DUMMY_ACTION == (0, 0, 0, 0, 0, 0, -1)
    # the first query sees the observation after the last settling step (-1: set_init_state's)
    assert policy.markers[0] == (settle if settle else -1)
    assert len(env.actions) == settle + 20 and result.steps == 20


def test_the_policy_is_queried_every_execute_steps_actions():
    env, policy = FakeEnv(), ChunkPolicy(horizon=10)
    result = trial(env, policy, protocol(execute_steps=8))
    xs = [a[0] for a in env.actions[10:]]
    assert xs == [*range(1, 9), *range(101, 109), *range(201, 205)]  # 8 of each 10, then 4 of the third
    assert policy.markers == [10, 18, 26]
    assert result.queries == 3 and result.exit_layers == [0, 1, 2] and result.flops == [1e9, 2e9, 3e9]
    assert result.layer_fractions == [0.5] * 3 and result.policy_s >= 0 and result.wall_s >= result.policy_s


def test_a_chunk_shorter_than_execute_steps_is_never_run_past_its_end():
    env, policy = FakeEnv(), ChunkPolicy(horizon=3)
    result = trial(env, policy, protocol(execute_steps=8, max_steps=7))
    assert [a[0] for a in env.actions[10:]] == [1, 2, 3, 101, 102, 103, 201]
    assert policy.markers == [10, 13, 16] and result.queries == 3


def test_execute_steps_one_queries_every_step():
    env, policy = FakeEnv(), ChunkPolicy(horizon=10)
    trial(env, policy, protocol(execute_steps=1, max_steps=4))
    assert [a[0] for a in env.actions[10:]] == [1, 101, 201, 301]


def test_the_trial_stops_at_done_with_the_policy_steps_counted():
    env, policy = FakeEnv(done_from=10 + 17), ChunkPolicy()
    result = trial(env, policy, protocol())
    assert result.success and result.steps == 17
    assert len(env.actions) == 27 and result.queries == 3


def test_done_while_settling_is_ignored():
    env, policy = FakeEnv(done_from=1), ChunkPolicy()
    result = trial(env, policy, protocol())
    assert len(env.actions) == 11 and result.success and result.steps == 1 and result.queries == 1


@pytest.mark.parametrize(("done_from", "success"), [(30, True), (31, False), (None, False)])
def test_the_horizon_is_max_steps_policy_steps_and_done_on_the_last_counts(done_from, success):
    env, policy = FakeEnv(done_from=done_from), ChunkPolicy()
    result = trial(env, policy, protocol(max_steps=20, settle_steps=10))
    assert result.success is success
    assert result.steps == 20 and len(env.actions) == 30


@pytest.mark.parametrize(("suite", "steps"), [("libero_spatial", 220), ("libero_object", 280), ("libero_goal", 300),
                                               ("libero_10", 520), ("libero_90", 400)])
def test_default_horizons_are_the_published_ones(suite, steps):
    p = LiberoProtocol(suite)
    assert (p.max_steps, p.trials, p.settle_steps, p.execute_steps, p.seed) == (steps, 50, 10, 8, 0)
    assert p.gripper_from_unit and p.binarize_gripper and p.invert_gripper
    assert LiberoProtocol(suite, max_steps=7).max_steps == 7


def test_a_full_default_horizon_runs_to_its_end():
    env, policy = FakeEnv(), ChunkPolicy(horizon=8)
    result = trial(env, policy, LiberoProtocol("libero_spatial", image_size=16))
    assert len(env.actions) == 10 + 220 and result.steps == 220 and result.queries == 220 // 8 + 1


# --- trials -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 7])
def test_init_states_are_used_in_order_and_the_env_is_seeded_before_each_trial(seed):
    env, policy = FakeEnv(done_from=12), ChunkPolicy()
    seen = []
    results = run_task(env, ["s0", "s1", "s2", "s3"], policy, protocol(trials=3, seed=seed), "stack the bowls",
                       task="task_a", on_trial=seen.append)
    setup = [c for c in env.calls if c[0] != "step"]
    assert setup == [("seed", seed), ("reset",), ("init", "s0"), ("seed", seed), ("reset",), ("init", "s1"),
                     ("seed", seed), ("reset",), ("init", "s2")]
    kinds = [c[0] for c in env.calls]
    assert kinds == (["seed", "reset", "init"] + ["step"] * 12) * 3  # setup before every trial's steps
    assert [r.seed for r in results] == [0, 1, 2] and seen == results
    assert all(r.success and r.steps == 2 and r.task == "task_a" for r in results)
    assert policy.resets == 3 and set(policy.instructions) == {"stack the bowls"}
    assert summarize(results)["task_a"]["success"] == 1.0


def test_more_trials_than_init_states_is_a_named_error_before_anything_runs():
    env = FakeEnv()
    with pytest.raises(SimError, match=r"5 trials .* only 4 initial states"):
        run_task(env, ["s0", "s1", "s2", "s3"], ChunkPolicy(), protocol(trials=5), "stack the bowls")
    assert env.calls == []


def test_unknown_suites_and_bad_settings_are_named_errors():
    with pytest.raises(SimError, match=r"unknown LIBERO suite 'libero_100'.*libero_spatial.*libero_90"):
        LiberoProtocol("libero_100")
    with pytest.raises(SimError, match="unknown LIBERO suite") as caught:
        make_libero_env("libero_100", 0)
    assert not isinstance(caught.value, LiberoUnavailable)
    for bad in ({"execute_steps": 0}, {"trials": 0}, {"settle_steps": -1}, {"max_steps": 0}, {"image_size": 0}):
        with pytest.raises(SimError, match=next(iter(bad))):
            LiberoProtocol("libero_goal", **bad)


@pytest.mark.parametrize("shape", [(10, 4), (0, 7), (2, 3, 7)])
def test_a_chunk_that_is_not_h_by_7_is_a_named_error(shape):
    class Bad(ChunkPolicy):
        def act(self, observation, instruction):
            return Query(np.zeros(shape))

    with pytest.raises(SimError, match="policy returned no action" if shape[0] == 0 else r"\[H, 7\]"):
        trial(FakeEnv(), Bad(), protocol())


# --- what the policy sees -------------------------------------------------------------------------------


def test_images_are_turned_180_degrees_at_render_size():
    env, policy = FakeEnv(), ChunkPolicy()
    trial(env, policy, protocol(max_steps=1))
    images = policy.seen[0].images
    assert set(images) == {"agentview", "wrist"}
    for name, source, blue in (("agentview", AGENTVIEW, 10), ("wrist", WRIST, 200)):
        image = images[name]
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(image, source[::-1, ::-1])
        assert tuple(image[0, 0]) == (255, 255, blue) and tuple(image[0, 255]) == (255, 0, blue)


def test_images_are_resized_to_the_model_input_after_turning():
    env, policy = FakeEnv(), ChunkPolicy()
    trial(env, policy, protocol(max_steps=1, image_size=64))
    image = policy.seen[0].images["agentview"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    # a ramp shrunk 4x is (up to filter rounding) the turned ramp sampled at the block centres
    turned = AGENTVIEW[::-1, ::-1].astype(int)
    block_means = turned.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    assert np.abs(image[1:-1, 1:-1].astype(int) - block_means[1:-1, 1:-1]).max() <= 2
    assert image[0, 0, 0] > 240 and image[-1, -1, 0] < 15 and image[0, -1, 1] < 15
    expected = Image.fromarray(np.ascontiguousarray(AGENTVIEW[::-1, ::-1])).resize((64, 64), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(image, np.asarray(expected))  # antialiased Lanczos, the documented filter


def test_a_downscale_is_antialiased_not_subsampled():
    stripes = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: subsampling gives all black or all white
    obs = FakeEnv()._obs(0) | {"agentview_image": stripes}
    image = observe(obs, 64).images["agentview"]
    assert 100 < image[8:-8, 8:-8].mean() < 155 and image[8:-8, 8:-8].std() < 20


def _axis_angle_quat(axis, angle):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.array([*(axis * np.sin(angle / 2)), np.cos(angle / 2)])


@pytest.mark.parametrize(("quat", "expected"), [
    ((0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0)),  # identity
    ((0.0, 0.0, 0.0, -1.0), (0.0, 0.0, 0.0)),  # w = -1: also no rotation, not 0/0
    ((0.0, 0.0, 0.0, 1.0 + 1e-9), (0.0, 0.0, 0.0)),  # w rounding past 1 is clipped, not NaN
    (tuple(_axis_angle_quat((0, 0, 1), np.pi / 2)), (0.0, 0.0, np.pi / 2)),
    (tuple(_axis_angle_quat((1, 2, 2), 1.0)), (1 / 3, 2 / 3, 2 / 3)),
    (tuple(-_axis_angle_quat((0, 0, 1), np.pi / 2)), (0.0, 0.0, -3 * np.pi / 2)),  # robosuite does not canonicalise
])
def test_quat2axisangle_matches_hand_computed_values(quat, expected):
    q = np.array(quat)
    out = quat2axisangle(q)
    assert out.shape == (3,) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_array_equal(q, np.array(quat))  # the observation is not modified in place


def test_the_state_is_eef_position_axis_angle_and_finger_positions():
    quat = tuple(_axis_angle_quat((0, 0, 1), np.pi / 2))
    env, policy = FakeEnv(quat=quat, fingers=(0.039, -0.038)), ChunkPolicy()
    trial(env, policy, protocol(max_steps=1, settle_steps=0))
    state = policy.seen[0].proprio
    assert state.dtype == np.float32 and state.shape == (8,)
    np.testing.assert_allclose(state, [-1.0, 0.2, 0.3, 0.0, 0.0, np.pi / 2, 0.039, -0.038], rtol=1e-6, atol=1e-7)
    identity = observe(FakeEnv()._obs(5), 16).proprio
    np.testing.assert_allclose(identity, [5.0, 0.2, 0.3, 0.0, 0.0, 0.0, 0.04, -0.04], rtol=1e-6)


# --- gripper ------------------------------------------------------------------------------------------

GRIPPER_IN = (0.0, 0.25, 0.5, 1.0)


@pytest.mark.parametrize(("from_unit", "binarize", "invert", "expected"), [
    (True, True, True, (1.0, 1.0, 0.0, -1.0)),  # OFT/A1: 0 (closed in RLDS) -> +1 close; 0.5 is the tie: 0
    (True, True, False, (-1.0, -1.0, 0.0, 1.0)),
    (True, False, True, (1.0, 0.5, 0.0, -1.0)),
    (True, False, False, (-1.0, -0.5, 0.0, 1.0)),
    (False, True, True, (0.0, -1.0, -1.0, -1.0)),
    (False, True, False, (0.0, 1.0, 1.0, 1.0)),
    (False, False, True, (0.0, -0.25, -0.5, -1.0)),
    (False, False, False, GRIPPER_IN),
])
def test_gripper_post_processing_per_flag(from_unit, binarize, invert, expected):
    p = protocol(gripper_from_unit=from_unit, binarize_gripper=binarize, invert_gripper=invert)
    actions = np.tile(np.arange(1.0, 8.0), (4, 1))
    actions[:, -1] = GRIPPER_IN
    out = process_actions(actions, p)
    np.testing.assert_array_equal(out[:, -1], expected)
    np.testing.assert_array_equal(out[:, :6], actions[:, :6])  # only the gripper changes
    assert not np.signbit(out[:, -1][out[:, -1] == 0]).any()  # a held gripper is +0.0, not -0.0
    assert actions[0, -1] == 0.0  # the policy's array is left alone


@pytest.mark.parametrize(("gripper", "sent"), [(0.0, 1.0), (1.0, -1.0), (0.5, 0.0)])
def test_the_env_receives_the_processed_gripper_and_settling_is_not_processed(gripper, sent):
    env, policy = FakeEnv(), ChunkPolicy(gripper=gripper)
    trial(env, policy, protocol(max_steps=3))
    assert [a[-1] for a in env.actions] == [-1.0] * 10 + [sent] * 3


# --- the simulator factory --------------------------------------------------------------------------------

FAKE_PACKAGE = {
    "libero/__init__.py": "",
    "libero/libero/__init__.py": '''
import os
import yaml

config_file = os.path.join(os.environ.get("LIBERO_CONFIG_PATH", os.path.expanduser("~/.libero")), "config.yaml")
if not os.path.exists(config_file):  # what the real package does
    input("Do you want to specify a custom path for the dataset folder? (Y/N): ")


def get_libero_path(key):
    with open(config_file) as f:
        return yaml.safe_load(f)[key]


def get_assets_path():
    return os.environ["FAKE_LIBERO_ASSETS"]
''',
    "libero/libero/benchmark/__init__.py": '''
import collections
import os

Task = collections.namedtuple("Task", "name language problem problem_folder bddl_file init_states_file")


class Suite:
    n_tasks = 2

    def get_task(self, i):
        return Task(f"task_{i}", f"do thing {i}", "P", "libero_spatial", f"task_{i}.bddl", f"task_{i}.pruned_init")

    def get_task_init_states(self, i):
        if os.environ.get("FAKE_LIBERO_TORCH_REFUSES"):
            raise RuntimeError("Weights only load failed. ... set weights_only=False")
        return [f"state_{i}_{k}" for k in range(50)]


def get_benchmark_dict():
    return {"libero_spatial": Suite}
''',
    "libero/libero/envs/__init__.py": '''
import os

if os.environ.get("FAKE_LIBERO_BROKEN"):
    import robosuite_that_is_not_installed  # noqa: F401


class OffScreenRenderEnv:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.closed = False

    def close(self):
        self.closed = True
''',
}


def _forget_libero():
    for name in [m for m in sys.modules if m == "libero" or m.startswith("libero.")]:
        del sys.modules[name]


@pytest.fixture
def fake_libero(tmp_path, monkeypatch):
    """A ``libero`` package with the real one's import-time prompt and lookup functions; returns
    (package dir, config dir, assets dir)."""
    site = tmp_path / "site"
    for rel, text in FAKE_PACKAGE.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    config_dir, assets = tmp_path / "config", tmp_path / "assets"
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(config_dir))
    monkeypatch.setenv("FAKE_LIBERO_ASSETS", str(assets))
    monkeypatch.setenv("MUJOCO_GL", "egl")
    # a render process never loads TensorFlow; another test in this worker may have (the DROID reader)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delenv("FAKE_LIBERO_TORCH_REFUSES", raising=False)
    monkeypatch.delenv("FAKE_LIBERO_BROKEN", raising=False)

    def no_prompt(*args):
        raise AssertionError(f"libero prompted: {args}")

    monkeypatch.setattr("builtins.input", no_prompt)
    _forget_libero()
    monkeypatch.syspath_prepend(str(site))
    yield site / "libero" / "libero", config_dir, assets
    _forget_libero()


def _with_assets(assets):
    for folder in lib.ASSET_FOLDERS:
        (assets / folder).mkdir(parents=True)


def test_without_libero_the_factory_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as in a render process
    monkeypatch.setitem(sys.modules, "libero", None)  # `import libero` fails, installed or not
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path / "config"))
    with pytest.raises(LiberoUnavailable, match=r"pip install libero.*Hugging Face") as caught:
        make_libero_env("libero_spatial", 0)
    assert isinstance(caught.value, SimError)
    assert not (tmp_path / "config").exists()


def test_a_process_that_loaded_tensorflow_is_refused_before_any_scene_is_built(fake_libero, monkeypatch):
    _, config_dir, assets = fake_libero
    _with_assets(assets)
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    with pytest.raises(SimError, match="TensorFlow"):
        make_libero_env("libero_spatial", 0)
    assert not config_dir.exists()


def test_missing_assets_are_named_and_the_config_is_written_without_a_prompt(fake_libero):
    root, config_dir, assets = fake_libero
    (assets / "scenes").mkdir(parents=True)
    with pytest.raises(LiberoUnavailable, match=r"assets are missing \(articulated_objects, stable_hope_objects.*"
                                                r"pip install libero.*Hugging Face"):
        make_libero_env("libero_spatial", 0)
    import yaml

    config = yaml.safe_load((config_dir / "config.yaml").read_text())
    assert config["bddl_files"] == str(root / "bddl_files") and config["init_states"] == str(root / "init_files")
    assert set(config) == {"benchmark_root", "bddl_files", "init_states", "datasets", "assets"}


def test_a_libero_that_does_not_import_is_unavailable(fake_libero, monkeypatch):
    monkeypatch.setenv("FAKE_LIBERO_BROKEN", "1")
    with pytest.raises(LiberoUnavailable, match=r"does not import.*robosuite_that_is_not_installed"):
        make_libero_env("libero_spatial", 0)


def test_the_factory_builds_the_task_env_from_its_bddl_file(fake_libero):
    root, _config_dir, assets = fake_libero
    _with_assets(assets)
    with make_libero_env("libero_spatial", 1) as task:
        assert (task.name, task.instruction, task.n_tasks, task.suite, task.task_id) == (
            "task_1", "do thing 1", 2, "libero_spatial", 1)
        assert task.init_states[:2] == ["state_1_0", "state_1_1"] and len(task.init_states) == 50
        assert task.env.kwargs == {"bddl_file_name": str(root / "bddl_files" / "libero_spatial" / "task_1.bddl"),
                                   "camera_heights": 256, "camera_widths": 256}
        env = task.env
    assert env.closed
    assert make_libero_env("libero_spatial", 0, resolution=128).env.kwargs["camera_widths"] == 128
    with pytest.raises(SimError, match="tasks 0..1, not 2"):
        make_libero_env("libero_spatial", 2)


def test_an_existing_config_is_kept(fake_libero):
    _root, config_dir, assets = fake_libero
    _with_assets(assets)
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text("bddl_files: /custom/bddl\ninit_states: /custom/init\n")
    task = make_libero_env("libero_spatial", 0)
    assert task.env.kwargs["bddl_file_name"] == "/custom/bddl/libero_spatial/task_0.bddl"
    assert (config_dir / "config.yaml").read_text().startswith("bddl_files: /custom/bddl")


def test_init_states_refused_by_new_torch_are_reloaded_with_pickling_allowed(fake_libero, monkeypatch):
    root, _config_dir, assets = fake_libero
    _with_assets(assets)
    monkeypatch.setenv("FAKE_LIBERO_TORCH_REFUSES", "1")
    loads = []
    fake_torch = types.SimpleNamespace(load=lambda path, weights_only: loads.append((path, weights_only)) or ["x"])
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    task = make_libero_env("libero_spatial", 0)
    assert task.init_states == ["x"]
    assert loads == [(f"{root / 'init_files'}/libero_spatial/task_0.pruned_init", False)]


def test_evaluate_suite_runs_every_task_in_order_and_closes_each_env(fake_libero, monkeypatch):
    _root, _config_dir, assets = fake_libero
    _with_assets(assets)
    make_libero_env("libero_spatial", 0)  # writes the config, so the package now imports without it
    made: list[FakeEnv] = []

    def fake_env(**kwargs):
        made.append(FakeEnv(done_from=3 + len(made)))  # task 0 succeeds at step 1, task 1 at step 2
        return made[-1]

    monkeypatch.setattr(sys.modules["libero.libero.envs"], "OffScreenRenderEnv", fake_env)
    policy = ChunkPolicy()
    results = lib.evaluate_suite(policy, protocol(trials=2, settle_steps=2, max_steps=5, image_size=8))
    assert [(r.task, r.seed, r.success, r.steps) for r in results] == [
        ("task_0", 0, True, 1), ("task_0", 1, True, 1), ("task_1", 0, True, 2), ("task_1", 1, True, 2)]
    assert [[c[1] for c in env.calls if c[0] == "init"] for env in made] == [["state_0_0", "state_0_1"],
                                                                            ["state_1_0", "state_1_1"]]
    assert all(env.closed for env in made)
    assert policy.instructions == ["do thing 0"] * 2 + ["do thing 1"] * 2
    assert set(summarize(results)) == {"task_0", "task_1"}
    only = lib.evaluate_suite(ChunkPolicy(), protocol(trials=1, settle_steps=0, max_steps=2, image_size=8),
                              task_ids=[1])
    assert [r.task for r in only] == ["task_1"]
