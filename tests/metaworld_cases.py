"""Meta-World as the closed-loop benchmark: seeding, observations, the rollout loop, the recorder.

Run by ``tests/test_closed_loop_metaworld.py`` in a fresh interpreter (a test process that loaded
TensorFlow for the DROID tests cannot render); ``pytest tests/metaworld_cases.py`` runs them directly.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil

import h5py
import numpy as np
import pytest

from training.sim.demos import DemoConfig, config_from_params, record, task_folder
from training.sim.metaworld import PROPRIO_NAMES, MetaWorldTask, SimError
from training.sim.rollout import ConstantPolicy, ExpertPolicy, Query, rollout, summarize

TASK = "button-press-topdown-v3"


@pytest.fixture(scope="module")
def task():
    with MetaWorldTask(TASK, image_size=32, max_steps=150) as t:
        yield t


def test_a_seed_is_one_start_state_and_seeds_differ(task):
    a = task.reset(3)
    b = task.reset(3)
    c = task.reset(4)
    assert np.array_equal(a.privileged, b.privileged) and np.array_equal(a.images["corner2"], b.images["corner2"])
    assert not np.array_equal(a.privileged[4:], c.privileged[4:])  # the object moved with the seed
    assert a.proprio.shape == (len(PROPRIO_NAMES),) and a.proprio.dtype == np.float32
    assert np.array_equal(a.proprio, a.privileged[:4].astype(np.float32))
    for image in a.images.values():
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and image.std() > 0


def test_the_scene_camera_is_turned_upright(task):
    task.reset(0)
    raw = task._renderer
    raw.update_scene(task.env.data, camera="corner2")
    assert np.array_equal(task.render("corner2"), raw.render()[::-1, ::-1])
    raw.update_scene(task.env.data, camera="gripperPOV")
    assert np.array_equal(task.render("gripperPOV"), raw.render())


def _manual_expert(task, seed):
    task.reset(seed)
    for _ in range(task.max_steps):
        _, success = task.step(task.expert_action())
        if success:
            return True, task.steps
    return False, task.steps


def test_the_loop_with_the_expert_standing_in_reproduces_the_expert(task, monkeypatch):
    rendered = []
    render = task.render
    monkeypatch.setattr(task, "render", lambda camera: rendered.append(camera) or render(camera))
    for seed in (0, 1):
        success, steps = _manual_expert(task, seed)
        rendered.clear()
        result = rollout(task, ExpertPolicy(), seed, execute_steps=1)
        assert success and (result.success, result.steps, result.queries) == (True, steps, steps)
        assert rendered == []  # the expert does not look: its episodes are not rendered
    frames = []  # unless recorded
    rollout(task, ExpertPolicy(), 0, execute_steps=1, frames=frames)
    assert len(rendered) == 2 * len(frames) and set(frames[-1].images) == {"corner2", "gripperPOV"}


class _Chunked:
    """Returns H copies of the expert's action and counts what the loop executes."""

    def __init__(self, horizon):
        self.horizon, self.calls = horizon, 0

    def reset(self, task):
        self.calls = 0

    def act(self, observation, task):
        self.calls += 1
        return Query(np.repeat(task.expert_action()[None], self.horizon, 0), exit_layer=2, layer_fraction=0.75,
                     flops=10.0)


@pytest.mark.parametrize("execute", [1, 4, 8, 10])
def test_chunks_run_open_loop_for_execute_steps_then_the_policy_is_asked_again(task, execute):
    policy = _Chunked(horizon=8)
    result = rollout(task, policy, 0, execute_steps=execute)
    assert result.success  # held expert actions still press the button
    assert result.queries == policy.calls == -(-result.steps // min(execute, 8))  # a chunk never runs past its end
    assert result.exit_layers == [2] * result.queries and result.flops == [10.0] * result.queries


def test_an_unsolved_episode_runs_exactly_max_steps(task):
    result = rollout(task, ConstantPolicy([0.0, 0.0, 0.0, 0.0]), 0, execute_steps=4)
    assert not result.success and result.steps == task.max_steps
    assert result.queries == task.max_steps  # a one-action chunk: asked every step
    with pytest.raises(SimError, match="already ran"):
        task.step(np.zeros(4))


def test_bad_settings_and_calls_are_named():
    with pytest.raises(SimError, match="unknown Meta-World task"):
        MetaWorldTask("button-press-v2")
    with pytest.raises(SimError, match="no camera"):
        MetaWorldTask(TASK, cameras=("wrist",))
    with pytest.raises(SimError, match="max_steps"):
        MetaWorldTask(TASK, max_steps=501)
    with MetaWorldTask(TASK, image_size=16) as t:
        with pytest.raises(SimError, match="before reset"):
            t.step(np.zeros(4))
        t.reset(0)
        with pytest.raises(SimError, match="4 numbers"):
            t.step(np.zeros(3))
    with pytest.raises(ValueError, match="execute_steps"):
        rollout(t, ExpertPolicy(), 0, execute_steps=0)


def test_summary_counts_success_steps_and_exits():
    from training.sim.rollout import EpisodeResult

    results = [EpisodeResult("a", 0, True, 40, 10, 1.0, 0.5, [1, 1, 3], [0.5, 0.5, 1.0], [1.0, 2.0]),
               EpisodeResult("a", 1, False, 100, 25, 2.0, 1.0, [3], [1.0], [4.0]),
               EpisodeResult("b", 0, True, 60, 15, 1.5, 0.7)]
    s = summarize(results)
    assert s["a"]["success"] == 0.5 and s["a"]["steps_to_success"] == 40 and s["a"]["episodes"] == 2
    assert s["a"]["exit_layer_histogram"] == {"1": 2, "3": 2} and s["a"]["layer_fraction"] == 0.75
    assert s["a"]["flops_per_episode"] == 3.5 and s["b"]["layer_fraction"] is None and s["b"]["success"] == 1.0


class _ChunkedMany(_Chunked):
    """``_Chunked``, answering several lockstepped episodes per call, each exiting at a layer of its own seed's."""

    def __init__(self, horizon):
        super().__init__(horizon)
        self.batches = []

    def reset(self, task):
        super().reset(task)
        self.seed = task.seed

    def act(self, observation, task):
        query = super().act(observation, task)
        query.exit_layer = task.seed % 3
        return query

    def reset_many(self, tasks):
        self.calls = 0

    def act_many(self, observations, tasks, episodes):
        self.batches.append(list(episodes))
        return [self.act(o, t) for o, t in zip(observations, tasks)]


def test_episodes_in_lockstep_are_the_episodes_run_alone(task):
    """rollout_many: each episode's queries, actions, stop and recording are what rollout gives it alone,
    the queries of a step asked in one batch, an episode that ended leaving the batch."""
    from training.sim.rollout import rollout_many

    seeds, execute, keys = (3, 6), 3, ("task", "seed", "success", "steps", "queries", "exit_layers", "flops")
    with MetaWorldTask(TASK, image_size=32, max_steps=20) as short:  # this episode stops at 20 steps, unsolved
        scenes = [task, short]
        alone_frames = [[], []]
        alone = [rollout(scene, _ChunkedMany(8), seed, execute_steps=execute, frames=recorded)
                 for scene, seed, recorded in zip(scenes, seeds, alone_frames)]
        policy, frames = _ChunkedMany(8), {1: []}
        together = rollout_many(scenes, policy, seeds, execute_steps=execute, frames=frames)
        one_by_one = rollout_many(scenes, _Chunked(8), seeds, execute_steps=execute)  # cannot batch: one at a time
        with pytest.raises(ValueError, match="a scene of its own"):
            rollout_many([short, short], policy, (0, 1), execute_steps=1)
    assert alone[0].success and (alone[1].success, alone[1].steps) == (False, 20)
    assert [[getattr(r, k) for k in keys] for r in together] == [[getattr(r, k) for k in keys] for r in alone]
    assert policy.batches[:7] == [[0, 1]] * 7 and policy.batches[7:] == [[0]] * (alone[0].queries - 7)
    assert [(f.step, f.exit_layer, f.success, f.query) for f in frames[1]] == \
        [(f.step, f.exit_layer, f.success, f.query) for f in alone_frames[1]]
    assert all(np.array_equal(f.images["corner2"], g.images["corner2"]) for f, g in zip(frames[1], alone_frames[1]))
    assert [(r.steps, r.queries) for r in one_by_one] == [(r.steps, r.queries) for r in alone]


class _Exiting:
    """The expert's action in chunks of 4, exiting at layers 1, 2, 3 in turn, as a 4-layer A1 might."""

    def reset(self, task):
        self.calls = 0

    def act(self, observation, task):
        self.calls += 1
        return Query(np.repeat(task.expert_action()[None], 4, 0), exit_layer=1 + self.calls % 3)


def test_a_rollout_video_has_a_frame_per_state_with_the_exit_layer_drawn_on_it(task, tmp_path):
    import av
    from PIL import Image, ImageDraw, ImageFont

    from training.sim.video import BAND_RGB, EXIT_RGB, VideoConfig, VideoWriter

    config = VideoConfig(per_task=1, rows=("itfm c=0.7",))
    assert config.wants("itfm c=0.7", 0) and not config.wants("itfm c=0.7", 1) and not config.wants("expert", 0)
    frames = []
    result = rollout(task, _Exiting(), 0, execute_steps=4, frames=frames)
    writer = VideoWriter(tmp_path / "videos", config)
    path = writer.write("itfm c=0.7", result, frames, instruction=task.instruction, image_size=32,
                        max_steps=task.max_steps, layers=4)
    writer.close()
    assert path == tmp_path / "videos" / "itfm_c_0.7" / f"{TASK}_seed0.mp4"
    index = json.loads((tmp_path / "videos" / "index.json").read_text())["videos"]
    assert [(v["row"], v["video"]) for v in index] == [("itfm c=0.7", f"itfm_c_0.7/{TASK}_seed0.mp4")]

    # the sidecar: the start and the state after every step, each with the exit layer of its chunk
    meta = json.loads(path.with_suffix(".json").read_text())
    shown = meta["frames"]
    assert result.success and len(shown) == result.steps + 1 and [f["step"] for f in shown] == list(range(len(shown)))
    assert [f["exit_layer"] for f in shown if f["query"]] == result.exit_layers  # one query frame per query
    assert [f["success"] for f in shown] == [False] * result.steps + [True]
    assert meta["layers"] == 4 and meta["instruction"] == task.instruction

    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]
    assert len(decoded) == result.steps + 1 and decoded[0].shape == (meta["size"][1], meta["size"][0], 3)

    # the exit layer, read back from the pixels: the decoded box against the same text drawn on the caption
    x0, y0, x1, y1 = meta["exit_layer_box"]
    font = ImageFont.load_default(size=meta["font_size"])

    def drawn(layer):
        canvas = Image.new("RGB", (x1 - x0, y1 - y0), BAND_RGB)
        ImageDraw.Draw(canvas).text((0, 0), f"exit layer {layer} / 4", font=font, fill=EXIT_RGB)
        return np.asarray(canvas).astype(np.int16)

    for i in (0, 5, len(shown) - 1):
        box, layer = decoded[i][y0:y1, x0:x1], shown[i]["exit_layer"]
        assert np.abs(box - drawn(layer)).mean() < 15  # the text is there (H.264 blurs its edges)
        for other in {1, 2, 3} - {layer}:  # and it is this digit: on the pixels where the digits differ
            digit = np.any(drawn(layer) != drawn(other), axis=-1)
            right, wrong = (np.abs(box - drawn(k))[digit].mean() for k in (layer, other))
            assert right < wrong / 2, (i, layer, other, right, wrong)

    again = VideoWriter(tmp_path / "again", config)  # the same recording writes the same bytes
    assert again.write("itfm c=0.7", result, frames, instruction=task.instruction, image_size=32,
                       max_steps=task.max_steps, layers=4).read_bytes() == path.read_bytes()


def test_recorded_demonstrations_are_in_house_recordings_with_the_outcome(tmp_path):
    config = DemoConfig(out=str(tmp_path / "demos"), tasks=(TASK,), seeds=(0, 1), image_size=32, max_steps=40)
    summary = record(config)
    folder = tmp_path / "demos" / task_folder(TASK)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["robot_type"] == "sawyer" and meta["camera_names"] == ["corner2", "gripperPOV"]
    assert meta["joint_names"] == list(PROPRIO_NAMES) and meta["fps"] == 80.0
    assert meta["instruction"] == "press the button from the top"
    # 40 steps is too few for this expert (it needs ~60-75): recorded, and marked failed
    assert [e["success"] for e in summary["episodes"]] == [False, False]
    with h5py.File(folder / "episode_0.hdf5") as f:
        assert bool(f.attrs["sim"]) and not bool(f.attrs["success"])
        assert f["/observations/qpos"].shape == (40, 4) and f["/action"].shape == (40, 4)
        assert np.abs(f["/action"][:]).max() <= 1.0
        assert f["/observations/images/gripperPOV"].shape == (40,)
    with MetaWorldTask(TASK, image_size=32, max_steps=40) as t:  # frame t is the state before action t
        first = t.reset(0)
        with h5py.File(folder / "episode_0.hdf5") as f:
            assert np.array_equal(f["/observations/qpos"][0], first.proprio)
            assert np.allclose(f["/action"][0], np.clip(t.expert_action(), -1, 1))
    mtime = (folder / "episode_1.hdf5").stat().st_mtime_ns
    assert record(config)["episodes"] == summary["episodes"]  # resumed: nothing re-recorded
    assert (folder / "episode_1.hdf5").stat().st_mtime_ns == mtime


def test_noisy_demonstrations_record_the_expert_s_action_for_each_state_they_reach(task, tmp_path, monkeypatch):
    """DART-style recording: the robot executes the expert's hand motion plus the noise (gripper as given),
    the file holds the expert's action for every state reached, and the noise is the episode's own."""
    from training.sim.demos import record_episode

    monkeypatch.setattr(task, "max_steps", 12)
    executed, expert = [], []
    step, expert_action = task.step, task.expert_action
    monkeypatch.setattr(task, "step", lambda a: executed.append(np.array(a)) or step(a))
    monkeypatch.setattr(task, "expert_action", lambda: expert.append(expert_action()) or expert[-1])

    def recorded(name, noise):
        executed.clear(), expert.clear()
        record_episode(task, 3, tmp_path / name, 95, action_noise=noise)
        with h5py.File(tmp_path / name) as f:
            return f["/action"][:], f["/observations/qpos"][:], dict(f.attrs)

    actions, qpos, attrs = recorded("noisy.hdf5", 0.3)
    done, labels = np.array(executed), np.clip(np.array(expert), -1, 1)
    assert np.array_equal(actions, labels) and len(actions) == 12 and attrs["action_noise"] == 0.3
    moved = done[:, :3] - labels[:, :3]
    assert np.all(moved != 0) and 0.15 < moved.std() < 0.45 and np.array_equal(done[:, 3], labels[:, 3])
    again, again_qpos, _ = recorded("again.hdf5", 0.3)
    assert np.array_equal(again, actions) and np.array_equal(again_qpos, qpos)  # the same noise on every run
    plain, plain_qpos, plain_attrs = recorded("plain.hdf5", 0.0)
    assert np.array_equal(np.array(executed), plain) and "action_noise" not in plain_attrs
    assert not np.allclose(plain_qpos[1:], qpos[1:])  # the noise moved the robot off the expert's path
    for bad in (-0.1, float("nan"), float("inf")):  # refused before the episode runs, as DemoConfig does
        with pytest.raises(SimError, match="action_noise must be a finite number >= 0"):
            record_episode(task, 3, tmp_path / "bad.hdf5", 95, action_noise=bad)


def test_a_noise_share_spreads_the_noisy_demonstrations_evenly_over_the_seeds():
    """``noise_share``: each first n demonstrations hold their share of noisy ones (so fewer demos keep the mix)."""
    def pattern(share, n=8):
        config = DemoConfig(out="x", tasks=(TASK,), seeds=tuple(range(n)), action_noise=0.3, noise_share=share)
        return [config.noise_for(i) for i in range(n)]

    assert pattern(1.0) == [0.3] * 8 and pattern(0.0) == [0.0] * 8
    assert pattern(0.5) == [0.0, 0.3] * 4  # every second one
    assert pattern(0.25) == [0.0, 0.0, 0.0, 0.3] * 2
    third = pattern(1 / 3, 9)
    assert third == [0.0, 0.0, 0.3] * 3  # 1/3 given as a float still lands on every third
    assert pattern(0.75) == [0.0, 0.3, 0.3, 0.3] * 2
    assert [DemoConfig(out="x", tasks=(TASK,), seeds=(0,), action_noise=0.0, noise_share=0.5).noise_for(i)
            for i in range(4)] == [0.0] * 4  # no noise: every demonstration plain
    for bad in (-0.01, 1.01):
        with pytest.raises(SimError, match="noise_share must be in"):
            DemoConfig(out="x", tasks=(TASK,), seeds=(0,), action_noise=0.3, noise_share=bad)
    for bad in (-0.1, float("nan"), float("inf")):  # NaN passes a plain `< 0` check
        with pytest.raises(SimError, match="action_noise must be a finite number >= 0"):
            DemoConfig(out="x", tasks=(TASK,), seeds=(0,), action_noise=bad)


def test_a_task_named_in_task_noise_gets_its_own_noise_and_the_others_the_common_one():
    """``task_noise``: a task's own std in place of ``action_noise`` (still spread by ``noise_share``);
    a task it does not name keeps ``action_noise``; a name not among the tasks, or a negative std, is refused."""
    tasks = (TASK, "drawer-open-v3")
    config = DemoConfig(out="x", tasks=tasks, seeds=tuple(range(4)), action_noise=0.1, noise_share=0.5,
                        task_noise={TASK: 0.3})
    assert [config.noise_for(i, TASK) for i in range(4)] == [0.0, 0.3, 0.0, 0.3]
    assert [config.noise_for(i, "drawer-open-v3") for i in range(4)] == [0.0, 0.1, 0.0, 0.1]
    assert [config.noise_for(i) for i in range(4)] == [0.0, 0.1, 0.0, 0.1]  # no task: the common std
    plain_elsewhere = DemoConfig(out="x", tasks=tasks, seeds=(0,), task_noise={TASK: 0.3})
    assert plain_elsewhere.noise_for(0, TASK) == 0.3 and plain_elsewhere.noise_for(0, "drawer-open-v3") == 0.0
    assert DemoConfig(out="x", tasks=tasks, seeds=(0,), action_noise=0.2,
                      task_noise={TASK: 0.0}).noise_for(0, TASK) == 0.0  # 0 for one task: its expert plain
    with pytest.raises(SimError, match=r"task_noise names tasks not recorded: \['window-open-v3'\]"):
        DemoConfig(out="x", tasks=tasks, seeds=(0,), task_noise={"window-open-v3": 0.3})
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(SimError, match="task_noise must be finite numbers >= 0"):
            DemoConfig(out="x", tasks=tasks, seeds=(0,), task_noise={TASK: bad})


def test_recording_applies_each_task_its_own_noise(tmp_path):
    """The files of a task named in ``task_noise`` carry its std; the other task's files are the plain expert."""
    config = DemoConfig(out=str(tmp_path), tasks=(TASK, "drawer-open-v3"), seeds=(0,), image_size=32, max_steps=4,
                        task_noise={"drawer-open-v3": 0.25})
    summary = record(config)
    noise = {}
    for task in config.tasks:
        with h5py.File(tmp_path / task_folder(task) / "episode_0.hdf5") as f:
            noise[task] = float(f.attrs.get("action_noise", 0.0))
    assert noise == {TASK: 0.0, "drawer-open-v3": 0.25}
    assert summary["config"]["task_noise"] == {"drawer-open-v3": 0.25}


def test_a_resumed_recording_keeps_only_files_made_with_the_noise_asked_for(tmp_path):
    """Files on disk are kept when recorded the same way; a file from another noise setting is re-recorded."""
    config = DemoConfig(out=str(tmp_path), tasks=(TASK,), seeds=(0, 1), image_size=32, max_steps=6,
                        action_noise=0.3, noise_share=0.5)
    record(config)
    folder = tmp_path / task_folder(TASK)

    def noise_on_disk():
        out = []
        for seed in (0, 1):
            with h5py.File(folder / f"episode_{seed}.hdf5") as f:
                out.append(float(f.attrs.get("action_noise", 0.0)))
        return out

    assert noise_on_disk() == [0.0, 0.3]
    stamps = [(folder / f"episode_{s}.hdf5").stat().st_mtime_ns for s in (0, 1)]
    summary = record(config)
    assert [(folder / f"episode_{s}.hdf5").stat().st_mtime_ns for s in (0, 1)] == stamps  # both kept
    assert all("action_noise" not in e for e in summary["episodes"])
    assert summary["config"]["noise_share"] == 0.5 and summary["config"]["action_noise"] == 0.3
    record(DemoConfig(**{**config.__dict__, "noise_share": 1.0}))
    assert noise_on_disk() == [0.3, 0.3]
    assert (folder / "episode_1.hdf5").stat().st_mtime_ns == stamps[1]  # the one already noisy kept
    record(DemoConfig(**{**config.__dict__, "action_noise": 0.0}))
    assert noise_on_disk() == [0.0, 0.0]  # the plain expert again: both re-recorded


def test_demo_settings_are_checked():
    config = config_from_params({"sim": {"tasks": [TASK], "demos": {"per_task": 3, "seed_start": 5}}})
    assert config.seeds == (5, 6, 7) and config.tasks == (TASK,) and config.action_noise == 0.0
    assert config_from_params({"sim": {"tasks": [TASK], "demos": {"action_noise": 0.2}}}).action_noise == 0.2
    assert config.noise_share == 1.0
    assert config_from_params({"sim": {"tasks": [TASK], "demos": {"noise_share": 0.5}}}).noise_share == 0.5
    assert config.task_noise == {}
    assert config_from_params({"sim": {"tasks": [TASK], "demos": {"task_noise": {TASK: 0.3}}}}).task_noise == {TASK: 0.3}
    with pytest.raises(SimError, match="unknown keys"):
        config_from_params({"sim": {"tasks": [TASK], "demos": {"per_tsk": 3}}})
    with pytest.raises(SimError, match="sim.tasks is empty"):
        config_from_params({"sim": {"demos": {}}})


def test_demonstrations_convert_as_their_own_dataset_and_failed_ones_are_curated_out(tmp_path):
    """The recorder's files through the in-house converter, as ``sources.metaworld`` converts them."""
    import pyarrow.parquet as pq

    from pipelines.convert import ConvertConfig, run_conversion
    from pipelines.episode_store.images import ImageConfig
    from pipelines.episode_store.reader import EpisodeStore
    from pipelines.episode_store.validator import validate_store

    demos = tmp_path / "demos"
    record(DemoConfig(out=str(demos), tasks=(TASK,), seeds=(0, 1), image_size=32, max_steps=120))
    record(DemoConfig(out=str(demos), tasks=(TASK,), seeds=(2,), image_size=32, max_steps=30))  # too short: fails
    store = tmp_path / "converted" / "metaworld"
    config = ConvertConfig(source="metaworld", converter="inhouse", input_root=str(demos), store_root=str(store),
                           image=ImageConfig(height=32, width=32), curation={"failed_episodes": "remove"})
    report = run_conversion(config, workers=1, show_progress=False)
    assert report["counts"]["converted"] == 3 and report["counts"]["quarantined"] == 0
    assert validate_store(store).ok
    rows = {r["source_episode"]: r for r in pq.read_table(store / "index.parquet").to_pylist()}
    assert {r["source"] for r in rows.values()} == {"metaworld"} and {r["embodiment"] for r in rows.values()} == {"sawyer"}
    curation = {r["episode_id"]: r for r in pq.read_table(store / "curation.parquet").to_pylist()}
    ref = f"{task_folder(TASK)}/episode_2.hdf5"
    assert curation[rows[ref]["episode_id"]]["reason"] == "failed_attempt"
    assert all(curation[rows[f"{task_folder(TASK)}/episode_{s}.hdf5"]["episode_id"]]["status"] == "kept" for s in (0, 1))
    with EpisodeStore(store).open_episode(rows[ref]["episode_id"]) as r:
        assert r.meta["converter"]["name"] == "inhouse" and r.meta["source"]["name"] == "metaworld"
        assert r.meta["metadata"]["success"] is False and r.meta["metadata"]["sim"] is True
        episode = r.to_episode()
        assert episode.source == "metaworld" and episode.converter == "inhouse"
        assert episode.state_names == list(PROPRIO_NAMES) and episode.action_kind == "ee_pose_delta"


def _a_batch_of_queries_answers_each_as_it_would_be_answered_alone(work):
    """CheckpointController.query_many (the lockstep's batched queries): each query gets its own noise
    generator's noise, its own exit layer and its own cost, whatever the other prompts' lengths."""
    import torch

    from training.sim.closed_loop import exit_rows
    from training.sim.policy import A1SimPolicy

    calibration = json.loads((work / "models/calibration/mw/thresholds.json").read_text())
    ((_, _, settings),) = exit_rows(calibration, (0.4,), ("itfm",), 2, 10)
    policies = [A1SimPolicy(work / "models/finetune/mw/checkpoint", settings=exits) for exits in (None, settings)]
    with MetaWorldTask(TASK, image_size=policies[0].image_size) as scene:
        seen = [scene.reset(seed) for seed in (1, 2, 3)]
        prompts = [scene.instruction, "press", scene.instruction + " now"]
    for policy in policies:

        def noise():
            return [torch.Generator().manual_seed(k) for k in (1, 2, 3)]

        batched = policy.query_many([o.images for o in seen], [o.proprio for o in seen], prompts, noise())
        alone = [policy.query_many([o.images], [o.proprio], [p], [g])[0] for o, p, g in zip(seen, prompts, noise())]
        assert [(q.exit_layer, q.flops) for q in batched] == [(q.exit_layer, q.flops) for q in alone]
        assert len({q.flops for q in alone}) == 3  # three prompt lengths, three costs
        for b, a in zip(batched, alone):
            np.testing.assert_allclose(b.actions, a.actions, atol=1e-4)
        with pytest.raises(ValueError, match="noise generators"):
            policy.query_many([seen[0].images], [seen[0].proprio], prompts[:1], [])


def test_closed_loop_evaluation_end_to_end_through_the_benchmark_script(tmp_path, capsys):
    """demos -> store -> manifest -> training -> calibration -> closed loop, every row on the same seed."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "metaworld_closed_loop.py"
    spec = importlib.util.spec_from_file_location("metaworld_closed_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, work = tmp_path / "result.json", tmp_path / "work"
    assert module.main(["--tasks", TASK, "--demos", "3", "--demo-task-noise", f"{TASK}=0.05", "--steps", "2", "--batch-size", "4", "--image-size", "32",
                        "--episodes", "1", "--max-steps", "90", "--cs", "0.4", "--chains", "itfm", "full",
                        "--execute-steps", "4", "--calibration-samples", "64", "--videos-per-task", "1", "--video-rows", "itfm c=0.4",
                        "--threads", "1", "--workdir", str(work), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert json.loads((work / "demos/demos.json").read_text())["config"]["task_noise"] == {TASK: 0.05}
    for bad in ("window-open-v3", "=0.3", "window-open-v3=high"):  # TASK=STD or a clear refusal
        with pytest.raises(argparse.ArgumentTypeError, match="expected TASK=STD"):
            module._task_noise(bad)
    assert list(rows) == ["expert", "mean_action", "no_images", "no_exit", "itfm c=0.4", "full c=0.4"]
    assert all(f"\n{name}" in printed for name in rows)
    assert rows["expert"]["per_task"] == {TASK: 1.0} and rows["mean_action"]["success"] == 0.0
    assert rows["no_exit"]["layer_fraction"] == 1.0 and rows["no_exit"]["tflops_per_query"] > 0
    assert rows["itfm c=0.4"]["tflops_per_query"] < rows["full c=0.4"]["tflops_per_query"]  # 2 steps a check, not 10
    # the blind control runs at full depth on its own checkpoint, with no image tokens in its prefix
    assert rows["no_images"]["layer_fraction"] == 1.0
    assert rows["no_images"]["tflops_per_query"] < rows["no_exit"]["tflops_per_query"]
    blind = work / "models/baselines/mw/no_images/checkpoint"
    assert json.loads((blind / "data_spec.json").read_text())["images"] is False
    episodes = json.loads((work / "reports/evaluation/mw/episodes.json").read_text())
    assert {(e["config"], e["seed"]) for e in episodes} == {(name, 10000) for name in rows}
    no_exit = next(e for e in episodes if e["config"] == "no_exit")
    assert no_exit["queries"] == -(-no_exit["steps"] // 4) and set(no_exit["exit_layers"]) == {3}
    metrics = json.loads((work / "reports/evaluation/mw/metrics.json").read_text())
    assert metrics["mode"] == "closed_loop" and metrics["expert"]["per_task"] == {TASK: 1.0}
    videos = json.loads((work / "reports/evaluation/mw/videos/index.json").read_text())["videos"]
    assert [(v["row"], v["video"]) for v in videos] == [("itfm c=0.4", f"itfm_c_0.4/{TASK}_seed10000.mp4")]

    # --reuse evaluates the trained models again (here one action per query) without recording or training
    trained = work / "models/finetune/mw/checkpoint/model.safetensors"
    before, blind_before = trained.stat().st_mtime_ns, (blind / "model.safetensors").stat().st_mtime_ns
    assert module._finished(blind)
    # (two episodes in lockstep, their queries batched)
    assert module.main(["--tasks", TASK, "--image-size", "32", "--episodes", "2", "--parallel", "2", "--max-steps", "30",
                        "--cs", "0.4", "--baselines", "mean_action", "no_images", "--execute-steps", "1",
                        "--videos-per-task", "0", "--eval-seed-start", "10002",  # held-out seeds of another range
                        "--threads", "1",
                        "--workdir", str(work), "--reuse"]) == 0
    assert trained.stat().st_mtime_ns == before
    assert (blind / "model.safetensors").stat().st_mtime_ns == blind_before  # a finished control is kept
    reused = capsys.readouterr().out  # the reused run's sizes, not this command's defaults (20 demos, 1500 steps)
    assert "1 tasks, 3 demonstrations each" in reused and "2 training steps (batch 4)" in reused
    again = json.loads((work / "reports/evaluation/mw/episodes.json").read_text())
    assert [(e["seed"], e["queries"], e["steps"]) for e in again if e["config"] == "no_exit"] == [(10002, 30, 30),
                                                                                                 (10003, 30, 30)]
    assert "2 episodes in lockstep" in (work / "reports/evaluation/mw/report.md").read_text()
    _a_batch_of_queries_answers_each_as_it_would_be_answered_alone(work)
    assert len(list((work / "demos").rglob("*.hdf5"))) == 3  # the demonstrations were kept, not re-recorded
    with pytest.raises(SystemExit):  # nothing trained there
        module.main(["--tasks", TASK, "--workdir", str(tmp_path / "empty"), "--reuse"])
    _reuse_trains_a_missing_control_and_reuse_data_trains_another_model(module, work, tmp_path, capsys)


def _reuse_trains_a_missing_control_and_reuse_data_trains_another_model(module, work, tmp_path, capsys):
    """--reuse trains a no_images control the reused run lacks (with that run's steps, not this command's
    default); --reuse-data keeps the demonstrations, store and manifest and trains another model on them."""
    trained = work / "models/finetune/mw/checkpoint"
    blind = work / "models/baselines/mw/no_images/checkpoint"
    quick = ["--tasks", TASK, "--image-size", "32", "--episodes", "1", "--max-steps", "10", "--cs", "0.4",
             "--execute-steps", "4", "--videos-per-task", "0", "--threads", "1", "--workdir", str(work)]
    shutil.rmtree(blind)
    before = (trained / "model.safetensors").stat().st_mtime_ns
    assert module.main([*quick, "--baselines", "no_images", "--reuse"]) == 0
    assert json.loads((blind / "config.json").read_text())["step"] == 2  # the reused run's 2 steps, not 1500
    assert module._finished(blind) and (trained / "model.safetensors").stat().st_mtime_ns == before
    capsys.readouterr()
    partial = tmp_path / "interrupted"  # stopped before its last step: trained on (resumed), not kept
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({**json.loads((blind / "config.json").read_text()),
                                                     "step": 1, "total_steps": 2}))
    assert not module._finished(partial) and not module._finished(tmp_path / "never-trained")

    recorded = {p: p.stat().st_mtime_ns for p in (work / "demos").rglob("*.hdf5")}
    store = {p: p.stat().st_mtime_ns for p in (work / "data").rglob("*") if p.is_file()}
    out = tmp_path / "deep.json"
    # no baselines: only the trained policy's rows
    assert module.main([*quick, "--backbone", "tiny-deep", "--steps", "3", "--batch-size", "4", "--baselines",
                        "--train-seed", "5", "--reuse-data", "--json", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (work / "demos").rglob("*.hdf5")} == recorded
    assert {p: p.stat().st_mtime_ns for p in (work / "data").rglob("*") if p.is_file()} == store
    saved = json.loads((trained / "config.json").read_text())
    assert saved["step"] == 3 and saved["run"]["model"]["backbone"] == "tiny-deep"
    assert saved["run"]["run"]["seed"] == 5
    assert list(json.loads(out.read_text())["rows"]) == ["no_exit", "itfm c=0.4"]
    episodes = json.loads((work / "reports/evaluation/mw/episodes.json").read_text())
    assert {e for ep in episodes if ep["config"] == "no_exit" for e in ep["exit_layers"]} == {7}  # 8 LLM layers
    assert "3 demonstrations each" in capsys.readouterr().out
    # --reuse takes that run's model and seed, not this command's defaults (tiny, 0) nor its --head
    assert module.main([*quick, "--baselines", "--head", "mlp", "--reuse", "--json", str(out)]) == 0
    assert {k: json.loads(out.read_text())["args"][k] for k in ("backbone", "train_seed", "steps", "head")} == {
        "backbone": "tiny-deep", "train_seed": 5, "steps": 3, "head": "fm"}
    for bad, message in ((["--reuse", "--reuse-data"], "give one of --reuse and --reuse-data"),
                         (["--reuse-data", "--workdir", str(tmp_path / "empty")], "demos.json is missing"),
                         (["--reuse-data", "--tasks", "door-open-v3"], r"\['door-open-v3'\] were not recorded")):
        with pytest.raises(SystemExit):
            module.main([*quick, *bad])
        assert re.search(message, capsys.readouterr().err)

