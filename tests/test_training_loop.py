"""The training loop: run configuration, checkpoints and exact resume, fine-tuning from pre-training,
two-process DDP, metrics, and whether a tiny policy learns a task it can only solve by looking."""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.training_stores import build_store, build_test_manifest, colour_task_episode
from training.checkpoint import load_train_state, read_config
from training.config import ConfigError, resolve_run
from training.data.spec import DataSpec
from training.train import Trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A colour task: 18 episodes, the front camera's colour (one of three) fixes the action."""
    base = tmp_path_factory.mktemp("train")
    episodes = [colour_task_episode(f"colour_{c}/ep{i}.hdf5", c) for c in range(3) for i in range(6)]
    build_store(base / "data" / "inhouse", episodes)
    build_test_manifest([base / "data" / "inhouse"], base / "manifests" / "toy", validation_fraction=0.3)
    return base


def params(base: Path, *, head: str = "mlp", mode: str = "random", steps: int = 6, batch_size: int = 4,
           lr: float = 1e-3, checkpoint_every: int = 3, finetune: dict | None = None, **stage) -> dict:
    optim = {"lr_vision": lr, "lr_connector": lr, "lr_llm": lr, "lr_head": lr, "warmup_steps": 2,
             "freeze_steps": 1}
    pretrain = {"steps": steps, "batch_size": batch_size, "log_every": 1, "checkpoint_every": checkpoint_every,
                "validation_batches": 1, "threads": 1, "optim": optim, **stage}
    return {"training": {
        "profile": "t", "pretrain_manifest": "toy", "finetune": ["toy"], "manifests": str(base / "manifests"),
        "out": str(base / "models"), "reports": str(base / "reports"),
        "data": {"data_root": str(base / "data"), "num_workers": 0, "chunk": 4, "augment": {"enabled": False},
                 "normalization": "bounds_q99"},
        "profiles": {"t": {"model": {"backbone": "tiny", "head": head, "exits": {"mode": mode}},
                           "calibration": {"max_samples": 32, "batch_size": 8, "first_exit": 1, "exit_interval": 1,
                                           "distributions": {"exp": [1.0, 0.4], "gauss": [1.0]},
                                           "online_samples": 16, "budgets": [0.75]},
                           "pretrain": pretrain,
                           "finetune": finetune or {"steps": 2, "batch_size": batch_size, "log_every": 1,
                                                    "checkpoint_every": 2, "validation_batches": 0, "threads": 1,
                                                    "optim": optim}}}}}


def losses(summary: dict) -> list[float]:
    return [h["train/loss"] for h in summary["history"] if "train/loss" in h]


# --- configuration ----------------------------------------------------------------------------------


def test_runs_resolve_from_the_active_profile_with_stage_and_target_overrides():
    run = resolve_run(REPO / "params.yaml", "pretrain")
    assert (run.profile, run.model.backbone, run.model.head, run.run.steps) == ("tiny", "tiny", "fm", 60)
    assert run.data.state_mask_prob == 0.5 and run.data.normalization == "bounds_q99"  # stage over training.data
    assert run.data.chunk == 50 and run.manifest_dir == "manifests/pretrain" and run.init is None
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    doc["training"]["profile"] = "paper"
    with pytest.raises(ConfigError, match="not a fine-tuning target"):  # released, but not in the default chain
        resolve_run(doc, "finetune", "finetune_rc_arrange_paper_cups")
    doc["training"]["finetune"].append("finetune_rc_arrange_paper_cups")
    paper = resolve_run(doc, "finetune", "finetune_rc_arrange_paper_cups")
    assert paper.model.backbone == "molmo-7b-d" and paper.run.batch_size == 32  # Table 9's ARX5 row
    assert paper.run.steps == 50000 and paper.data.state_mask_prob == 0.3 and paper.run.optim.lr_vision == 0.0
    assert paper.init == "models/pretrain" and paper.out == "models/finetune/finetune_rc_arrange_paper_cups"
    assert resolve_run(doc, "pretrain").run.batch_size == 1024
    blind = resolve_run(doc, "finetune", "finetune_rc_arrange_paper_cups", variant="no_images")
    assert blind.data.images is False and paper.data.images is True
    assert blind.data.replace(images=True) == paper.data and blind.run == paper.run and blind.init == paper.init
    assert blind.out == "models/baselines/finetune_rc_arrange_paper_cups/no_images"
    assert blind.reports.endswith("baselines/finetune_rc_arrange_paper_cups/no_images")
    with pytest.raises(ConfigError, match="fine-tuning runs only"):
        resolve_run(doc, "pretrain", variant="no_images")
    with pytest.raises(ConfigError, match="variant"):
        resolve_run(doc, "finetune", "finetune_rc_arrange_paper_cups", variant="no_text")
    with pytest.raises(ConfigError, match="not a fine-tuning target"):
        resolve_run(doc, "finetune", "pretrain")
    doc["training"]["profile"] = "huge"
    with pytest.raises(ConfigError, match="training.profile 'huge' is not among"):
        resolve_run(doc, "pretrain")
    doc["training"]["profile"] = "paper"
    doc["training"]["profiles"]["paper"]["pretrain"]["stepz"] = 3
    with pytest.raises(ConfigError, match=r"training.profiles.paper.pretrain: unknown keys \['stepz'\]"):
        resolve_run(doc, "pretrain")


# --- checkpoints and resume -----------------------------------------------------------------------


@pytest.mark.parametrize("head", ["mlp", "fm"])
def test_n_steps_straight_equal_half_then_resume_then_half(task, tmp_path, head):
    straight_base = tmp_path / "a"
    (straight_base).mkdir()
    for name in ("data", "manifests"):
        os.symlink(task / name, straight_base / name)
    straight = Trainer(resolve_run(params(straight_base, head=head), "pretrain"), quiet=True).train()
    split_base = tmp_path / "b"
    split_base.mkdir()
    for name in ("data", "manifests"):
        os.symlink(task / name, split_base / name)
    first = Trainer(resolve_run(params(split_base, head=head), "pretrain"), quiet=True).train(stop_at=3)
    assert read_config(split_base / "models/pretrain/checkpoint")["step"] == 3
    second = Trainer(resolve_run(params(split_base, head=head), "pretrain"), quiet=True)
    assert second.start_step == 3
    rest = second.train()
    assert losses(straight) == losses(first) + losses(rest)  # bit for bit
    a = torch.load(straight_base / "models/pretrain/checkpoint/train_state.pt", weights_only=True)
    b = load_train_state(split_base / "models/pretrain/checkpoint")
    assert a["loader"] == b["loader"] and a["step"] == b["step"] == 6


def test_a_checkpoint_carries_weights_config_data_spec_tokenizer_and_its_manifest(task, tmp_path):
    for name in ("data", "manifests"):
        os.symlink(task / name, tmp_path / name)
    Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True).train()
    ckpt = tmp_path / "models/pretrain/checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "data_spec.json", "model.safetensors",
                                                      "normalization.json", "tokenizer.json", "train_state.pt"]
    config = read_config(ckpt)
    from pipelines.manifest.format import file_sha256

    assert config["manifest"]["manifest_json_sha256"] == file_sha256(task / "manifests/toy/manifest.json")
    assert config["manifest"]["name"] == "toy" and config["step"] == 6
    assert config["shapes"]["chunk"] == 4 and config["shapes"]["image_size"] == [64, 64]
    spec = DataSpec.load(ckpt)
    assert spec.normalizer.mode == "bounds_q99" and "inhouse/franka" in spec.normalizer.groups
    metrics = json.loads((tmp_path / "reports/pretrain/metrics.json").read_text())
    assert metrics["step"] == 6 and "loss" in metrics["train"] and "action_l1" in metrics["val"]
    assert (tmp_path / "reports/pretrain/plots/metrics/train/loss.tsv").is_file()
    # throughput depends on the machine: logged apart from the tracked metrics, never in them
    assert not {"samples_per_s", "data_wait_share"} & set(metrics["train"])
    speed = json.loads((tmp_path / "reports/runtime/pretrain/metrics.json").read_text())
    assert speed["step"] == 6 and speed["train"]["samples_per_s"] > 0 and 0 <= speed["train"]["data_wait_share"] <= 1


def test_a_changed_configuration_starts_over_and_says_why(task, tmp_path, caplog):
    for name in ("data", "manifests"):
        os.symlink(task / name, tmp_path / name)
    Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True).train(stop_at=3)
    with caplog.at_level(logging.WARNING, logger="a1pipe.training"):
        again = Trainer(resolve_run(params(tmp_path, lr=5e-4), "pretrain"), quiet=True)
    assert again.start_step == 0 and "run.optim.lr_head" in caplog.text
    assert Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True).start_step == 3


def test_a_rebuilt_manifest_starts_over_instead_of_refusing_to_resume(task, tmp_path, caplog):
    """Same settings, other episode table (the stores were re-converted): train from the start."""
    os.symlink(task / "data", tmp_path / "data")
    build_test_manifest([task / "data" / "inhouse"], tmp_path / "manifests" / "toy", validation_fraction=0.3)
    Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True).train(stop_at=3)
    assert Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True).start_step == 3  # same table: resume
    build_test_manifest([task / "data" / "inhouse"], tmp_path / "manifests" / "toy", validation_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="a1pipe.training"):
        again = Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True)
    assert again.start_step == 0 and "manifest toy (episode table)" in caplog.text
    again.train()
    assert read_config(tmp_path / "models/pretrain/checkpoint")["step"] == 6


def test_fine_tuning_starts_from_the_pretrained_weights(task, tmp_path):
    for name in ("data", "manifests"):
        os.symlink(task / name, tmp_path / name)
    with pytest.raises(ConfigError, match="run the pretrain stage first"):
        Trainer(resolve_run(params(tmp_path), "finetune", "toy"), quiet=True)
    Trainer(resolve_run(params(tmp_path), "pretrain"), quiet=True).train()
    fine = Trainer(resolve_run(params(tmp_path), "finetune", "toy"), quiet=True)
    from safetensors.torch import load_file

    pretrained = load_file(str(tmp_path / "models/pretrain/checkpoint/model.safetensors"))
    assert torch.equal(fine.policy.state_dict()["llm.layers.0.mlp.up_proj.weight"],
                       pretrained["llm.layers.0.mlp.up_proj.weight"])
    fine.train()
    config = read_config(tmp_path / "models/finetune/toy/checkpoint")
    assert config["init"].endswith("models/pretrain/checkpoint") and config["step"] == 2
    with pytest.raises(ConfigError, match="model.head 'fm' differs"):
        Trainer(resolve_run(params(tmp_path, head="fm"), "finetune", "toy"), quiet=True)


# --- scale-out --------------------------------------------------------------------------------------


def test_two_process_ddp_on_cpu_trains_in_sync(task, tmp_path):
    for name in ("data", "manifests"):
        os.symlink(task / name, tmp_path / name)
    doc = params(tmp_path, head="fm", mode="random", steps=4, checkpoint_every=2, validation_batches=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           f"--master_port={port}", "-m", "training.train", "pretrain", "--params",
                           str(tmp_path / "params.yaml"), "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    config = read_config(tmp_path / "models/pretrain/checkpoint")
    assert config["world_size"] == 2 and config["step"] == 4  # replicas were checked equal at both checkpoints
    state = load_train_state(tmp_path / "models/pretrain/checkpoint")
    assert state["loader"]["world_size"] == 2 and state["loader"]["batch_size"] == 2  # 4 per step over 2 ranks


# --- does it learn? ---------------------------------------------------------------------------------


@pytest.mark.parametrize("head,mode,steps", [("mlp", "last", 50), ("fm", "random", 120)])
def test_a_tiny_policy_learns_a_task_it_can_only_solve_by_looking(task, tmp_path, head, mode, steps):
    for name in ("data", "manifests"):
        os.symlink(task / name, tmp_path / name)
    run = resolve_run(params(tmp_path, head=head, mode=mode, steps=steps, batch_size=16, checkpoint_every=steps,
                             validation_batches=2), "pretrain")
    summary = Trainer(run, quiet=True).train()
    val = [h for h in summary["history"] if "val/action_l1" in h][-1]
    curve = losses(summary)
    assert sum(curve[-10:]) / 10 < 0.5 * sum(curve[:10]) / 10
    # measured: mlp 0.06 (50 steps) and fm 0.25 (120) against a mean-action baseline of 0.82; shuffled 1.0
    assert val["val/action_l1"] < 0.5 * val["val/mean_action_baseline_l1"], val
    assert val["val/action_l1_images_shuffled"] > 2 * val["val/action_l1"], val


@pytest.fixture(scope="module")
def calibrated(task, tmp_path_factory):
    """``get(head)`` -> (base, params, the calibrate stage's result): pre-trained and fine-tuned 2 steps on the
    colour task (with validation and calibration splits), then calibrated, once per head for the module.

    The calibrate, evaluation and LIBERO tests only read these models and thresholds; evaluating writes
    the run's evaluation reports, which only the evaluation test reads. ``params`` is a copy per call,
    free to edit.
    """
    from pipelines.manifest.build import ManifestParams, build_manifest
    from training.calibrate import calibrate

    built: dict[str, tuple[Path, dict, dict]] = {}

    def get(head: str) -> tuple[Path, dict, dict]:
        if head not in built:
            base = tmp_path_factory.mktemp(f"calibrated-{head}")
            os.symlink(task / "data", base / "data")
            build_manifest([task / "data" / "inhouse"], base / "manifests" / "toy",
                           ManifestParams(name="toy", validation_fraction=0.2, calibration_fraction=0.3))
            doc = params(base, head=head, steps=2, checkpoint_every=2)
            Trainer(resolve_run(doc, "pretrain"), quiet=True).train()
            Trainer(resolve_run(doc, "finetune", "toy"), quiet=True).train()
            built[head] = (base, doc, calibrate("toy", doc))
        base, doc, result = built[head]
        return base, copy.deepcopy(doc), copy.deepcopy(result)

    return get


@pytest.mark.parametrize("head", ["fm", "mlp"])
def test_calibrate_stage_writes_thresholds_from_the_calibration_split(calibrated, head):
    import numpy as np

    from training.exits import exit_distribution, thresholds

    base, _, result = calibrated(head)
    out = base / "models/calibration/toy"
    saved = json.loads((out / "thresholds.json").read_text())
    assert saved["split"] == "calibration" and saved["exits"] == [1, 2, 3] and saved["reference_layer"] == 0
    chains = ["itfm", "full"] if head == "fm" else ["mlp"]
    assert sorted(saved["table"]) == sorted(chains) and saved["samples"] == 32
    arrays = np.load(out / "discrepancies.npz")
    for chain in chains:
        v = arrays[f"{chain}_cosine"]
        assert v.shape == (3, 32)
        entry = next(e for e in saved["table"][chain]["metrics"]["cosine"]["thresholds"]
                     if e["distribution"] == "exp" and e["c"] == 0.4)
        assert entry["thresholds"] == thresholds(v, exit_distribution("exp", 0.4, 3)).tolist()  # reproducible
        assert sum(entry["achieved"]) == pytest.approx(1.0) and 0 < entry["layer_fraction"] <= 1
        budgets = saved["table"][chain]["metrics"]["cosine"]["budgets"]
        assert [(b["unit"], b["target"]) for b in budgets] == [("layers", 0.75), ("flops", 0.75)]
    assert [r["c"] for r in saved["online"]["rows"]] == [1.0, 0.4] and saved["online"]["samples"] == 16
    assert result["default"]["chain"] == chains[0]
    reports = base / "reports/calibration/toy"
    assert (reports / "exit_distribution.csv").read_text().startswith("exit_layer,kind,fraction")
    assert set(json.loads((reports / "metrics.json").read_text())["online_c0.4"]) == {
        "layer_fraction", "flops_fraction", "action_l1_from_full_depth"}
    # wall times only in the runtime report: the published thresholds are the same on any machine
    assert "time" not in (out / "thresholds.json").read_text()
    timing = json.loads((base / "reports/runtime/calibration/toy.json").read_text())
    assert timing["full_depth_time_s"] > 0 and timing["online_c0.4"]["time_ratio"] > 0


@pytest.mark.parametrize("head", ["fm", "mlp"])
def test_open_loop_evaluation_rows_costs_and_known_errors(calibrated, tmp_path, head):
    from training.checkpoint import load_policy
    from training.config import EvaluationConfig
    from training.evaluate import evaluate, open_loop

    base, doc, _ = calibrated(head)
    doc["training"]["profiles"]["t"]["evaluation"] = {"cs": [1.0, 0.4], "max_samples": 16, "batch_size": 8}
    result = evaluate("toy", doc)
    rows = result["open_loop"]["rows"]
    chains = ["itfm", "full"] if head == "fm" else ["mlp"]
    assert list(rows) == ["no_exit", "layer 0", "layer 1", "layer 2"] + [f"{c} c={v:g}" for c in chains for v in (1.0, 0.4)]
    assert result["open_loop"]["split"] == "validation" and rows["no_exit"]["samples"] == 16
    assert rows["no_exit"]["flops_reduction"] == 0 and rows["no_exit"]["layer_fraction"] == 1.0
    assert rows["layer 0"]["layer_fraction"] == 0.25 and rows["layer 0"]["flops_reduction"] > 0.1
    assert rows["layer 0"]["exit_layer_histogram"] == {"0": 16}
    for name in rows:
        if " c=" in name:
            assert 0.25 < rows[name]["layer_fraction"] <= 1.0 and sum(rows[name]["exit_layer_histogram"].values()) == 16
    reports = base / "reports/evaluation/toy"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["mode"] == "open_loop" and metrics["no_exit"]["l1"] == rows["no_exit"]["l1"]
    assert (reports / "compute.csv").read_text().splitlines()[0] == "policy,tflops_per_query,layer_fraction,score"
    text = (reports / "report.md").read_text()
    assert "| no_exit |" in text and "Table 3" in text and ("Table 6" in text) == (head == "fm")
    timing = json.loads((base / "reports/runtime/evaluation/toy.json").read_text())
    assert timing["no_exit"]["ms_per_query"] > 0 and timing["no_exit"]["time_reduction"] == 0
    assert json.loads((reports / "videos" / "index.json").read_text())["videos"] == []  # no simulator, no video
    # evaluated again: the tracked outputs are byte-identical (no wall time leaks into them)
    tracked = ("metrics.json", "compute.csv", "exit_layers.csv", "report.md")
    evaluate("toy", doc, reports=tmp_path / "again")
    assert [f for f in tracked if (tmp_path / "again" / f).read_bytes() != (reports / f).read_bytes()] == []

    # a model whose error at layer i is exactly 0.1 (i + 1) in every valid entry
    policy, _, saved = load_policy(base / "models/finetune/toy/checkpoint")
    policy.predict = lambda batch, exit_layer=None, noise=None, steps=None: batch["action"] + 0.1 * (exit_layer + 1)
    calibration = json.loads((base / "models/calibration/toy/thresholds.json").read_text())
    known = open_loop(policy, saved, calibration, EvaluationConfig(cs=(1.0,), chains=("itfm",), max_samples=16,
                                                                   batch_size=8), full_steps=10, itfm_steps=2)["rows"]
    for name, layer in (("no_exit", 3), ("layer 0", 0), ("layer 2", 2)):
        assert known[name]["l1"] == pytest.approx(0.1 * (layer + 1), rel=1e-5)
        assert known[name]["mse"] == pytest.approx((0.1 * (layer + 1)) ** 2, rel=1e-4)


def test_a_checkpoint_drives_the_libero_client_with_and_without_early_exit(calibrated):
    """The LIBERO protocol loop (a fake env) with the A1 adapter on a trained checkpoint: LIBERO's
    observation reaches the model through the dataset's names, chunks come back as 7 numbers, the
    early-exit rows run fewer layers, and a trial repeats exactly."""
    import numpy as np

    from tests.test_libero_protocol import FakeEnv
    from tests.training_stores import FRANKA_NAMES
    from training.sim.closed_loop import exit_rows
    from training.sim.libero import LiberoProtocol, run_trial
    from training.sim.metaworld import SimError
    from training.sim.policy import A1LiberoPolicy

    base, _, calibration = calibrated("fm")
    checkpoint = base / "models/finetune/toy/checkpoint"
    names = {"dataset": "inhouse", "embodiment": "franka", "cameras": {"cam_front": "agentview", "cam_wrist": "wrist"},
             "state_names": FRANKA_NAMES, "action_names": FRANKA_NAMES, "sent": FRANKA_NAMES[:6] + ["gripper"]}
    protocol = LiberoProtocol(suite="libero_spatial", max_steps=12, execute_steps=4, image_size=64)

    def trial(policy):
        env = FakeEnv()
        return run_trial(env, "s0", policy, protocol, instruction="pick up the red block", trial=0), env.actions

    full, sent = trial(A1LiberoPolicy(checkpoint, **names))
    assert full.queries == 3 and full.steps == 12 and set(full.exit_layers) == {3} and min(full.flops) > 0
    assert len(sent) == 22 and all(len(a) == 7 and a[-1] in (-1.0, 0.0, 1.0) for a in sent[10:])
    assert trial(A1LiberoPolicy(checkpoint, **names))[1] == sent  # noise seeded per trial: repeats
    (_, _, settings), = exit_rows(calibration, [0.4], ["itfm"], 2, 10)
    early, _ = trial(A1LiberoPolicy(checkpoint, settings=settings, **names))
    assert np.mean(early.layer_fractions) < 1.0 and np.mean(early.flops) < np.mean(full.flops)
    swapped, swapped_sent = trial(A1LiberoPolicy(checkpoint, **{**names, "sent": FRANKA_NAMES[:6][::-1] + ["gripper"]}))
    first_chunk = slice(protocol.settle_steps, protocol.settle_steps + protocol.execute_steps)
    assert [a[:6][::-1] for a in swapped_sent[first_chunk]] == [a[:6] for a in sent[first_chunk]]
    assert [a[6] for a in swapped_sent[first_chunk]] == [a[6] for a in sent[first_chunk]]
    with pytest.raises(SimError, match="8 numbers"):
        A1LiberoPolicy(checkpoint, **{**names, "state_names": FRANKA_NAMES[:7]})
    with pytest.raises(SimError, match="map each to agentview or wrist"):
        A1LiberoPolicy(checkpoint, **{**names, "cameras": {"cam_front": "agentview"}})
    with pytest.raises(SimError, match="7 action numbers"):
        A1LiberoPolicy(checkpoint, **{**names, "sent": None})
    with pytest.raises(SimError, match="no layout for inhouse/ur5"):
        A1LiberoPolicy(checkpoint, **{**names, "embodiment": "ur5"})


def test_a1pipe_libero_runs_the_suite_with_early_exit_rows_and_names_a_missing_simulator(calibrated, tmp_path,
                                                                                          monkeypatch, capsys):
    from tests.test_libero_protocol import FakeEnv
    from tests.training_stores import FRANKA_NAMES
    from training import libero_eval
    from training.sim import libero

    base, _, _ = calibrated("fm")
    argv = ["--checkpoint", str(base / "models/finetune/toy/checkpoint"), "--suite", "libero_goal",
            "--trials", "2", "--tasks", "3", "--dataset", "inhouse", "--embodiment", "franka",
            "--camera", "cam_front=agentview", "--camera", "cam_wrist=wrist", "--state-names", *FRANKA_NAMES,
            "--action-names", *FRANKA_NAMES, "--sent", *FRANKA_NAMES[:6], "gripper",
            "--calibration", str(base / "models/calibration/toy/thresholds.json"), "--c", "0.4",
            "--out", str(tmp_path / "libero.json")]
    for bad in ("cam_front", "=wrist", "cam_front=side"):  # refused while parsing, before anything loads
        with pytest.raises(SystemExit) as stop:
            libero_eval.main([*argv, "--camera", bad])
        assert stop.value.code == 2 and f"got {bad!r}" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setitem(sys.modules, "libero", None)  # not installed
    assert libero_eval.main(argv) == 2
    assert "pip install libero" in capsys.readouterr().err and not (tmp_path / "libero.json").exists()

    built = []

    def fake_env(suite, task_id, resolution=256):
        built.append((suite, task_id))
        return libero.LiberoTask(suite, task_id, f"task{task_id}", "put the bowl on the plate", FakeEnv(done_from=5),
                                 ["s0", "s1"], 10)

    monkeypatch.setattr(libero, "make_libero_env", fake_env)
    assert libero_eval.main(argv) == 0
    result = json.loads((tmp_path / "libero.json").read_text())
    assert list(result["rows"]) == ["no_exit", "itfm c=0.4"] and built[1:] == [("libero_goal", 3)] * 2
    for row in result["rows"].values():
        assert row["success"] == 1.0 and [e["seed"] for e in row["episodes"]] == [0, 1]
        assert row["per_task"]["task3"]["success"] == 1.0
    assert result["rows"]["itfm c=0.4"]["tflops_per_query"] < result["rows"]["no_exit"]["tflops_per_query"]
    assert result["protocol"]["image_size"] == 64 and result["protocol"]["max_steps"] == 300


def test_evaluation_settings_are_checked():
    from training.config import ConfigError, EvaluationConfig
    from training.sim.closed_loop import closed_loop_config

    with pytest.raises(ConfigError, match="chains"):
        EvaluationConfig(chains=("fast",))
    sim = {"tasks": ["drawer-open-v3"], "demos": {"seed_start": 0, "per_task": 10}}
    assert closed_loop_config({}) is None
    config = closed_loop_config({"sim": {**sim, "eval": {"seed_start": 10, "episodes": 3}}})
    assert config.seeds == (10, 11, 12)  # just past the last demonstration seed
    assert config.baselines == ("expert", "mean_action")  # the trained no_images control is asked for by name
    assert closed_loop_config({"sim": {**sim, "eval": {"seed_start": 10, "baselines": ["no_images"]}}}).baselines == \
        ("no_images",)
    with pytest.raises(ConfigError, match="overlap the demonstration seeds"):
        closed_loop_config({"sim": {**sim, "eval": {"seed_start": 9}}})
    with pytest.raises(ConfigError, match="overlap"):
        closed_loop_config({"sim": {"tasks": ["drawer-open-v3"], "demos": {"seed_start": 100, "per_task": 5},
                                    "eval": {"seed_start": 98, "episodes": 3}}})
    assert closed_loop_config({"sim": {"tasks": ["drawer-open-v3"], "demos": {"seed_start": 100, "per_task": 5},
                                       "eval": {"seed_start": 97, "episodes": 3}}}).seeds == (97, 98, 99)
    with pytest.raises(ConfigError, match="unknown keys"):
        closed_loop_config({"sim": {**sim, "eval": {"episode": 3}}})
    with pytest.raises(ConfigError, match="baselines"):
        closed_loop_config({"sim": {**sim, "eval": {"seed_start": 50, "baselines": ["oracle"]}}})
    assert config.parallel == 1  # one episode at a time unless asked: the policy time is one query's latency
    assert closed_loop_config({"sim": {**sim, "eval": {"seed_start": 50, "parallel": 4}}}).parallel == 4
    for key in ("episodes", "execute_steps", "max_steps", "parallel"):
        closed_loop_config({"sim": {**sim, "eval": {"seed_start": 50, key: 1}}})
        with pytest.raises(ConfigError, match=f"{key}.* must be >= 1"):
            closed_loop_config({"sim": {**sim, "eval": {"seed_start": 50, key: 0}}})


def test_video_settings_are_checked():
    from training.config import ConfigError
    from training.sim.closed_loop import closed_loop_config
    from training.sim.video import VideoConfig

    sim = {"tasks": ["drawer-open-v3"], "demos": {"seed_start": 0, "per_task": 10}}

    def videos(**settings):
        return closed_loop_config({"sim": {**sim, "eval": {"seed_start": 10, "cs": [0.7], "chains": ["itfm"],
                                                           "videos": settings}}}).videos

    assert closed_loop_config({"sim": {**sim, "eval": {"seed_start": 10}}}).videos == VideoConfig()  # a few by default
    assert VideoConfig().per_task == 2 and VideoConfig().rows is None
    config = videos(per_task=1, rows=["expert", "no_exit", "itfm c=0.7"], cameras=["gripperPOV"], fps=10)
    assert config.rows == ("expert", "no_exit", "itfm c=0.7") and config.cameras == ("gripperPOV",)
    assert videos(rows=["mlp c=0.7"]).rows == ("mlp c=0.7",)  # an MLP head's one chain
    assert videos(per_task=0).wants("no_exit", 0) is False
    for settings, match in [({"per_task": -1}, "per_task must be >= 0"),
                            ({"rows": ["itfm c=0.4"]}, "not rows of this evaluation"),  # c 0.4 is not evaluated
                            ({"rows": ["no_images"]}, "not rows of this evaluation"),  # nor is this baseline
                            ({"rows": []}, "rows is empty"),
                            ({"cameras": ["topview"]}, "not cameras the policy sees"),
                            ({"fps": 0}, "fps"), ({"min_height": 8}, "min_height"),
                            ({"rows": "no_exit"}, "is a list"), ({"size": 256}, "unknown keys")]:
        with pytest.raises(ConfigError, match=match):
            videos(**settings)


def test_exit_rows_take_each_c_from_the_calibration_and_refuse_a_missing_one():
    from training.config import ConfigError
    from training.sim.closed_loop import exit_rows

    entry = lambda c, eta: {"distribution": "exp", "c": c, "thresholds": eta}
    cal = {"default": {"metric": "cosine", "distribution": "exp"}, "exits": [1, 2, 3],
           "table": {"itfm": {"metrics": {"cosine": {"thresholds": [entry(1.0, [0.1, 0.2, 9]), entry(0.4, [0.3, 0.4, 9])]}}},
                     "full": {"metrics": {"cosine": {"thresholds": [entry(0.4, [0.5, 0.6, 9])]}}}}}
    rows = exit_rows(cal, [0.4], ["itfm", "full"], itfm_steps=2, full_steps=10)
    assert [(c, v, s.thresholds, s.fm_mode, s.steps) for c, v, s in rows] == [
        ("itfm", 0.4, (0.3, 0.4, 9), "itfm", 2), ("full", 0.4, (0.5, 0.6, 9), "full", 10)]
    with pytest.raises(ConfigError, match=r"c = 1.0 was not calibrated"):
        exit_rows(cal, [1.0], ["full"], itfm_steps=2, full_steps=10)
    mlp = {"default": cal["default"], "exits": [1, 2, 3], "table": {"mlp": cal["table"]["itfm"]}}
    assert [r[0] for r in exit_rows(mlp, [1.0], ["itfm", "full"], itfm_steps=2, full_steps=10)] == ["mlp"]


def test_the_report_renders_tables_5_6_and_3_from_fixed_inputs():
    from training.evaluate import report

    def row(success, tflops, fraction):
        return {"success": success, "per_task": {"a": {"success": success}, "b": {"success": 1.0}},
                "tflops_per_query": tflops, "layer_fraction": fraction, "policy_ms_per_query": 12.5}

    result = {"itfm_steps": 2, "full_steps": 10, "components": {"llm layer": 1.5},
              "closed_loop": {"tasks": ["a", "b"], "seeds": [1000, 1001], "max_steps": 120, "execute_steps": 4,
                              "rows": {"no_exit": row(0.5, 2.0, 1.0), "itfm c=0.7": row(0.5, 1.0, 0.5),
                                       "expert": row(1.0, None, None)}}}
    text = report("toy", result)
    assert "| no_exit | 0.50 | 1.00 | 0.50 | 2 | 0% | 100% |\n" in text
    assert "| itfm c=0.7 | 0.50 | 1.00 | 0.50 | 1 | 50% | 50% |\n" in text
    assert "| expert | 1.00 | 1.00 | 1.00 | - | - | - |\n" in text
    assert "12.5" not in text and "runtime/evaluation/toy.json" in text  # wall time is reported apart
    assert "| 0.7 | itfm | 2 | yes | 0.5000 | 1 | 50% |" in text
    assert "| llm layer | 1.5 |" in text and "seeds 1000..1001" in text
