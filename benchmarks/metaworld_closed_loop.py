"""The Meta-World closed-loop benchmark at a chosen scale: does the A1 policy this project trains act?

What is measured
----------------
The same chain ``dvc repro`` runs for ``finetune_metaworld``, at the scale given on the command
line, in a scratch directory: scripted-expert demonstrations of ``--tasks`` (``--demos`` per
task, seeds 0..), conversion into a store (in-house converter, failed runs curated out), a
manifest with a calibration split, training of the ``tiny`` policy (``--backbone``) on it (``--steps``, from
random weights: the demonstrations are its only data), early-exit calibration, and the closed
loop on ``--episodes`` held-out seeds per task (``--eval-seed-start``, 10000..): the policy at full depth and with
early exit at each ``--cs`` (ITFM, delta = 2), next to the scripted expert and the demonstrations'
mean action and the same fine-tune trained without cameras (``no_images``: proprioception and
instruction only, the bar an image policy must clear) (``--chains full`` adds the same thresholds without warm start). Printed per row: success per task and mean, TFLOPs and LLM layers per query, ms per
query; and the wall time of each phase. The expert row is the ceiling and the mean-action row the
floor, measured on the same seeds in the same run.

Usage::

    python benchmarks/metaworld_closed_loop.py                                   # 2 tasks, 20 demos, 1500 steps
    python benchmarks/metaworld_closed_loop.py --tasks button-press-topdown-v3 drawer-open-v3 door-open-v3 \
        window-open-v3 --demos 50 --steps 5000 --episodes 20 --workdir /tmp/mw --json out.json
    python benchmarks/metaworld_closed_loop.py ... --workdir /tmp/mw --reuse --execute-steps 4   # same models, new loop
    python benchmarks/metaworld_closed_loop.py ... --workdir /tmp/mw --reuse-data --backbone tiny-deep   # same data
    python benchmarks/metaworld_closed_loop.py ... --parallel 1   # one episode at a time: ms/query is a latency

The episodes of a task run in lockstep by default (``--parallel``, docs/evaluation.md), their
queries batched: the same episodes, for much less policy time, but ms/query is then a batch share.

Rendering needs a process without TensorFlow (``docs/evaluation.md``); this script never imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _task_noise(text: str) -> tuple[str, float]:
    task, sep, value = text.partition("=")
    try:
        if not sep or not task:
            raise ValueError
        return task, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TASK=STD (e.g. window-open-v3=0.3), got {text!r}") from None


def _finished(checkpoint: Path) -> bool:
    """Whether a checkpoint holds a run trained to its last step (an interrupted one resumes instead)."""
    from training.checkpoint import read_config

    try:
        saved = read_config(checkpoint)
    except FileNotFoundError:
        return False
    return saved.get("step") is not None and saved.get("step") == saved.get("total_steps")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["button-press-topdown-v3", "drawer-open-v3"])
    parser.add_argument("--demos", type=int, default=20, help="demonstrations per task")
    parser.add_argument("--demo-noise", type=float, default=0.0,
                        help="DART-style demonstrations: noise (std, action units) added to the hand motion the "
                             "expert's robot executes, the expert's own actions recorded (docs/evaluation.md)")
    parser.add_argument("--demo-noise-share", type=float, default=1.0,
                        help="the share of each task's demonstrations recorded with --demo-noise (0.5: every "
                             "second one; the rest are the plain expert)")
    parser.add_argument("--demo-task-noise", nargs="+", default=[], metavar="TASK=STD", type=_task_noise,
                        help="a task's own --demo-noise (e.g. window-open-v3=0.3; other tasks keep --demo-noise)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-seed", type=int, default=0,
                        help="the training runs' seed (initial weights, sampling order, exit and noise draws): "
                             "another seed is another training run of the same recipe")
    parser.add_argument("--head", choices=["fm", "mlp"], default="fm")
    parser.add_argument("--backbone", default="tiny",
                        help="training/model/presets.py: tiny (4 LLM layers) or tiny-deep (8: finer exit steps)")
    parser.add_argument("--image-size", type=int, default=224, help="render and model input size")
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    parser.add_argument("--eval-seed-start", type=int, default=10000,
                        help="the first held-out seed (demonstrations use 0..--demos-1); another range gives "
                             "episodes that no earlier choice of recipe was made on")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--execute-steps", type=int, default=1,
                        help="actions of each chunk executed before the next query (docs/evaluation.md: 1 succeeds more)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="episodes of a task run in lockstep, their queries batched (default: all --episodes; "
                             "1: one at a time, so ms/query is one query's latency rather than a batch share)")
    parser.add_argument("--calibration-samples", type=int, default=256,
                        help="at most this many calibration-split samples set the exit thresholds")
    parser.add_argument("--videos-per-task", type=int, default=2,
                        help="rollout videos per task and row (reports/evaluation/mw/videos; 0: none)")
    parser.add_argument("--video-rows", nargs="+", help="only these rows get videos (default: every row)")
    parser.add_argument("--cs", type=float, nargs="+", default=[1.0, 0.7])
    parser.add_argument("--chains", nargs="+", choices=["itfm", "full"], default=["itfm"],
                        help="flow-matching exit chains: itfm (delta = 2, warm start) and/or full (10 steps per check)")
    parser.add_argument("--baselines", nargs="*", choices=["expert", "mean_action", "no_images"],
                        default=["expert", "mean_action", "no_images"],
                        help="baseline rows (none: only the trained policy's rows, e.g. beside an earlier run's "
                             "baselines on the same seeds)")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--reuse", action="store_true",
                        help="with --workdir of an earlier run of the same tasks and sizes: keep its demonstrations, "
                             "store, manifest and trained models; calibrate and run the closed loop again (e.g. with "
                             "another --execute-steps, --cs or --episodes); a no_images control in --baselines "
                             "that the run did not finish is trained (with the reused run's steps, model and seed)")
    parser.add_argument("--reuse-data", action="store_true",
                        help="with --workdir of an earlier run: keep its demonstrations, store and manifest, and "
                             "train anew on them (e.g. another --backbone, --head or --steps; same --image-size)")
    args = parser.parse_args(argv)
    if args.reuse and args.reuse_data:
        parser.error("--reuse keeps the trained models as well as the data: give one of --reuse and --reuse-data")

    import torch

    from pipelines.convert import ConvertConfig, run_conversion
    from pipelines.episode_store.images import ImageConfig
    from pipelines.manifest.build import ManifestParams, build_manifest
    from training.calibrate import calibrate
    from training.checkpoint import read_config
    from training.config import resolve_run
    from training.evaluate import evaluate
    from training.sim.demos import DemoConfig, record
    from training.train import Trainer

    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="a1pipe-metaworld-"))
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    trained = work / "models" / "finetune" / "mw" / "checkpoint"
    blind = work / "models" / "baselines" / "mw" / "no_images" / "checkpoint"
    if args.reuse and not trained.is_dir():
        parser.error(f"--reuse needs --workdir of a finished run; {trained} is missing")
    kept = work / "demos" / "demos.json", work / "manifests" / "mw" / "manifest.json"
    if args.reuse_data and not all(path.is_file() for path in kept):
        parser.error(f"--reuse-data needs --workdir of a run that built its data; "
                     f"{next(path for path in kept if not path.is_file())} is missing")

    t = time.perf_counter()
    if args.reuse or args.reuse_data:  # the demonstrations as recorded (their own max_steps), not re-recorded
        demos = json.loads((work / "demos" / "demos.json").read_text())
        args.demos = len(demos["config"]["seeds"])
        unrecorded = sorted(set(args.tasks) - set(demos["config"]["tasks"]))
        if unrecorded:
            parser.error(f"--tasks {unrecorded} were not recorded in {work / 'demos'}: "
                         f"it has {list(demos['config']['tasks'])}")
    if args.reuse:
        # the reused run's sizes, not this command's defaults: the printout, the --json record and the
        # held-out seeds' overlap check describe what was recorded and trained
        trained_config = read_config(trained)["run"]
        trained_run, trained_model = trained_config["run"], trained_config["model"]
        args.steps, args.batch_size = int(trained_run["steps"]), int(trained_run["batch_size"])
        # and its model and seed: a control trained here is the trained policy's, cameras withheld
        args.train_seed = int(trained_run.get("seed", 0))
        args.backbone, args.head = trained_model["backbone"], trained_model["head"]
    elif not args.reuse_data:
        demos = record(DemoConfig(out=str(work / "demos"), tasks=tuple(args.tasks), seeds=tuple(range(args.demos)),
                                  image_size=args.image_size, max_steps=args.max_steps,
                                  action_noise=args.demo_noise, noise_share=args.demo_noise_share,
                                  task_noise=dict(args.demo_task_noise)))
        times["demonstrations"] = time.perf_counter() - t
    t = time.perf_counter()
    if not (args.reuse or args.reuse_data):
        run_conversion(ConvertConfig(source="metaworld", converter="inhouse", input_root=str(work / "demos"),
                                     store_root=str(work / "data" / "metaworld"),
                                     image=ImageConfig(height=args.image_size, width=args.image_size),
                                     curation={"failed_episodes": "remove"}), workers=1, show_progress=False)
        build_manifest([work / "data" / "metaworld"], work / "manifests" / "mw",
                       ManifestParams(name="mw", validation_fraction=0.0, calibration_fraction=0.1))
    times["conversion_and_manifest"] = time.perf_counter() - t

    optim = {"lr_vision": args.lr, "lr_connector": args.lr, "lr_llm": args.lr, "lr_head": args.lr,
             "warmup_steps": min(100, args.steps // 10), "freeze_steps": 0}
    stage = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.train_seed, "log_every": 50,
             "checkpoint_every": max(1, args.steps // 4), "validation_batches": 0, "threads": args.threads,
             "optim": optim, "data": {"num_workers": 1}}
    doc = {"training": {
        "profile": "b", "pretrain_manifest": "mw", "finetune": ["mw"], "manifests": str(work / "manifests"),
        "out": str(work / "models"), "reports": str(work / "reports"),
        "data": {"data_root": str(work / "data"), "num_workers": 1, "chunk": args.chunk,
                 "image_size": [args.image_size, args.image_size], "normalization": "bounds_q99",
                 "augment": {"enabled": False}},
        "profiles": {"b": {"model": {"backbone": args.backbone, "head": args.head},
                           # the fine-tune is the training: the pre-trained start is one step from random
                           "pretrain": {**stage, "steps": 1, "optim": {**optim, "warmup_steps": 0}},
                           "finetune": stage,
                           "calibration": {"max_samples": args.calibration_samples, "batch_size": 16, "first_exit": 1, "exit_interval": 1,
                                           "distributions": {"exp": sorted(set(args.cs) | {1.0})},
                                           "online_samples": 0, "budgets": [0.75]}}}},
        "sim": {"tasks": list(args.tasks), "demos": {"seed_start": 0, "per_task": args.demos},
                "eval": {"targets": ["mw"], "episodes": args.episodes, "seed_start": args.eval_seed_start,
                         "max_steps": args.max_steps, "execute_steps": args.execute_steps, "cs": list(args.cs),
                         "parallel": args.parallel or args.episodes,
                         "chains": list(args.chains), "baselines": list(args.baselines),
                         "videos": {"per_task": args.videos_per_task}
                                    | ({"rows": list(args.video_rows)} if args.video_rows else {})}}}
    t = time.perf_counter()
    if not args.reuse:
        Trainer(resolve_run(doc, "pretrain"), quiet=True).train()
        Trainer(resolve_run(doc, "finetune", "mw"), quiet=True).train()
    times["training"] = time.perf_counter() - t
    if "no_images" in args.baselines and not (args.reuse and _finished(blind)):
        t = time.perf_counter()
        Trainer(resolve_run(doc, "finetune", "mw", variant="no_images"), quiet=True).train()
        times["training_no_images"] = time.perf_counter() - t
    t = time.perf_counter()
    calibrate("mw", doc)
    times["calibration"] = time.perf_counter() - t
    t = time.perf_counter()
    result = evaluate("mw", doc)
    times["closed_loop"] = time.perf_counter() - t

    rows = result["closed_loop"]["rows"]
    lanes = result["closed_loop"]["parallel"]
    print(f"Meta-World closed loop: {len(args.tasks)} tasks, {args.demos} demonstrations each "
          f"(expert success {demos['success']}), {args.steps} training steps (batch {args.batch_size}), "
          f"{args.episodes} held-out episodes per task, {args.threads} threads"
          + (f"; {lanes} episodes in lockstep, so ms/query is a share of a batch of queries, not one query's latency"
             if lanes > 1 else ""))
    header = "policy".ljust(14) + "".join(t.removesuffix("-v3")[:22].rjust(24) for t in args.tasks)
    print(header + "    mean  TFLOPs/q  layers  ms/query")
    for name, row in rows.items():
        per = "".join(f"{row['per_task'][t]['success']:24.2f}" for t in args.tasks)
        tflops = "-" if row["tflops_per_query"] is None else f"{row['tflops_per_query']:.2e}"
        layers = "-" if row["layer_fraction"] is None else f"{row['layer_fraction']:.0%}"
        print(f"{name:14s}{per}{row['success']:8.2f}{tflops:>10s}{layers:>8s}{row['policy_ms_per_query']:10.1f}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"report: {work / 'reports/evaluation/mw/report.md'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "times_s": times, "demos": demos["success"],
                                               "rows": {k: {kk: vv for kk, vv in v.items() if kk != "per_task"}
                                                        | {"per_task": {t: v["per_task"][t]["success"]
                                                                        for t in args.tasks}}
                                                        for k, v in rows.items()}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
