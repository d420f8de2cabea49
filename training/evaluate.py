"""``evaluate@<name>``: what a fine-tuned policy achieves, at what cost, with and without early exit.

A fine-tune listed in ``sim.eval.targets`` runs the closed-loop Meta-World benchmark
(``training/sim/closed_loop.py``). Every other fine-tune (the real-robot ones, which have no
simulator) is evaluated open loop on its manifest's held-out split: the predicted chunk against
the recorded one, as L1 and MSE over the valid dimensions and chunk steps, in the model's
normalised action units (``bounds_q99``: the robot's q01..q99 range maps to -1..1), for

- ``no_exit``: the full model, ``full_steps`` flow-matching steps;
- ``layer <i>``: the head on layer i's cache, for the reference layer and every exit (the same
  noise), which shows how much depth the task needs;
- ``<chain> c=<c>``: adaptive early exit with the calibration's thresholds.

Every row carries its cost: FLOPs per query by formula (``training/cost.py``; the tiny model's
formula equals torch's own count), the executed-layer fraction, the exit-layer histogram and
wall time per query, and its reduction against ``no_exit``. Outputs (``data/reports/training/
evaluation/<name>/``): ``metrics.json`` (DVC metrics), ``report.md`` (the paper's Tables 5, 6 and
3 in shape), ``compute.csv`` and ``exit_layers.csv`` (DVC plots), ``episodes.json`` (closed loop) and
``videos/`` (closed loop: a few rollouts of each row as captioned MP4s, ``training/sim/video.py``).
Wall times depend on the machine, so they are written apart (``data/reports/training/runtime/
evaluation/<name>.json``) and the tracked outputs are the same on any machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pipelines.manifest.format import load_manifest
from training.calibrate import _batches, _data
from training.checkpoint import CHECKPOINT_DIR, load_policy
from training.config import (
    ConfigError,
    EvaluationConfig,
    resolve_calibration,
    resolve_evaluation,
    resolve_run,
)
from training.cost import CostModel, cost_model, query_flops
from training.inference import AdaptivePolicy
from training.io import write_json, write_text
from training.model.heads import masked_mean

log = logging.getLogger("a1pipe.evaluate")
FORMAT_VERSION = 1


def _split(manifest: dict[str, Any], wanted: str) -> str:
    counts = manifest.get("counts", {})
    for split in (wanted, "validation", "calibration", "train"):
        if counts.get(split, {}).get("episodes"):
            return split
    raise ConfigError(f"manifest {manifest['name']} has no episodes to evaluate on")


def errors(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per sample: L1 and MSE over the valid (chunk step, dimension) entries."""
    l1, mse = [], []
    for n in range(predicted.shape[0]):
        diff = (predicted[n] - target[n]).float()
        l1.append(float(masked_mean(diff.abs(), valid[n])))
        mse.append(float(masked_mean(diff * diff, valid[n])))
    return l1, mse


class _Row:
    def __init__(self) -> None:
        self.l1: list[float] = []
        self.mse: list[float] = []
        self.flops: list[float] = []
        self.layers: list[int] = []
        self.seconds = 0.0
        self.queries = 0

    def to_json(self, num_layers: int, full_flops: float, full_seconds: float | None) -> dict[str, Any]:
        flops = float(np.mean(self.flops))
        seconds = self.seconds / max(1, self.queries)
        values, counts = np.unique(np.asarray(self.layers), return_counts=True)
        return {"l1": float(np.mean(self.l1)), "mse": float(np.mean(self.mse)), "samples": len(self.l1),
                "tflops_per_query": flops / 1e12, "flops_reduction": 1.0 - flops / full_flops,
                "layer_fraction": float(np.mean([(e + 1) / num_layers for e in self.layers])),
                "ms_per_query": 1000 * seconds,
                "time_reduction": None if full_seconds is None else 1.0 - seconds / full_seconds,
                "exit_layer_histogram": {str(int(v)): int(n) for v, n in zip(values, counts)}}


def open_loop(policy, saved: dict[str, Any], calibration: dict[str, Any], config: EvaluationConfig, *,
              full_steps: int, itfm_steps: int) -> dict[str, Any]:
    from training.sim.closed_loop import exit_rows

    manifest_dir = saved["manifest"]["dir"]
    manifest, _ = load_manifest(manifest_dir)
    split = _split(manifest, config.split)
    frames = manifest["counts"][split]["frames_kept"]
    samples = min(config.max_samples, max(config.batch_size, frames))
    samples = samples - samples % config.batch_size or config.batch_size
    data = _data(manifest_dir, saved, split, config.batch_size, samples)
    layers = policy.num_layers
    exits = tuple(calibration["exits"])
    reference = calibration["reference_layer"]
    generator = torch.Generator().manual_seed(config.noise_seed)
    rows: dict[str, _Row] = {}
    adaptive = {f"{chain} c={c:g}": AdaptivePolicy(policy, s)
                for chain, c, s in exit_rows(calibration, config.cs, config.chains, itfm_steps, full_steps)}
    steps_of = {name: a.settings.steps for name, a in adaptive.items()}
    model: CostModel | None = None
    for batch in _batches(policy, data, samples):
        b = batch["images"].shape[0]
        if model is None:
            model = cost_model(policy, int(policy.embed(batch).embeds.shape[1]))
        images = [int(m.sum()) for m in batch["image_mask"]]
        noise = torch.randn((b, policy.chunk, policy.action_dim), generator=generator)
        valid = batch["action_time_mask"][:, :, None] & batch["action_mask"][:, None, :]
        target = batch["action"]
        for layer in (layers - 1, *[e for e in (reference, *exits) if e != layers - 1]):
            row = rows.setdefault("no_exit" if layer == layers - 1 else f"layer {layer}", _Row())
            t = time.perf_counter()
            predicted = policy.predict(batch, exit_layer=layer, noise=noise, steps=full_steps)
            row.seconds += time.perf_counter() - t
            row.queries += b
            l1, mse = errors(predicted, target, valid)
            row.l1 += l1
            row.mse += mse
            row.layers += [layer] * b
            row.flops += [query_flops(model, n, [layer], layer, full_steps)["total"] for n in images]
        for name, a in adaptive.items():
            row = rows.setdefault(name, _Row())
            t = time.perf_counter()
            result = a.act(batch, noise=noise)
            row.seconds += time.perf_counter() - t
            row.queries += b
            l1, mse = errors(result.actions, target, valid)
            row.l1 += l1
            row.mse += mse
            row.layers += result.exit_layer.tolist()
            s = a.settings
            row.flops += [query_flops(model, images[n], [s.reference, *s.exits[: int(result.exit_index[n]) + 1]],
                                      int(result.exit_layer[n]), steps_of[name])["total"] for n in range(b)]
    full = rows["no_exit"]
    full_flops, full_seconds = float(np.mean(full.flops)), full.seconds / max(1, full.queries)
    return {"split": split, "samples": len(full.l1), "units": "normalised actions (bounds_q99: q01..q99 -> -1..1)",
            "rows": {name: row.to_json(layers, full_flops, full_seconds) for name, row in rows.items()},
            "cost_model": model}


def component_table(model: CostModel, images: int, exits: list[int], itfm_steps: int, full_steps: int) -> dict:
    """Table 3 in shape for this model: GFLOPs per component and per query variant."""
    g = 1e9
    layers = model.preset.llm.layers
    last = layers - 1
    rows = {"vision (per image)": model.vision_per_image() / g, f"vision ({images} images)": images * model.vision_per_image() / g,
            "llm layer": model.llm_layer() / g, f"llm ({layers} layers)": layers * model.llm_layer() / g}
    if model.head == "mlp":
        rows["mlp head"] = model.mlp_head() / g
    else:
        rows["fm step"] = model.expert_step(layers) / g
        rows[f"fm ({full_steps} steps)"] = full_steps * model.expert_step(layers) / g
    rows["query, no exit"] = query_flops(model, images, [last], last, full_steps)["total"] / g
    if model.head != "mlp":
        checks = [exits[0] - 1, *exits]
        rows[f"query, every exit checked, delta={full_steps}"] = query_flops(model, images, checks, last, full_steps)["total"] / g
        rows[f"query, every exit checked, delta={itfm_steps} (ITFM)"] = query_flops(model, images, checks, last, itfm_steps)["total"] / g
    return {k: round(v, 6) for k, v in rows.items()}


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def report(name: str, result: dict[str, Any]) -> str:
    """The Markdown report: Table 5 (rows: no exit and each c), Table 6 (FM chains), Table 3 (components)."""
    lines = [f"# Evaluation of `{name}`", ""]
    if "closed_loop" in result:
        cl = result["closed_loop"]
        tasks = cl["tasks"]
        lines += [(f"Closed loop in Meta-World: {len(cl['seeds'])} episodes per task (seeds {cl['seeds'][0]}.."
                   f"{cl['seeds'][-1]}, never demonstrated), at most {cl['max_steps']} steps, "
                   f"{cl['execute_steps']} actions of each chunk executed before the next query"
                   + (f", {cl['parallel']} episodes in lockstep (their queries batched). " if cl.get("parallel", 1) > 1
                      else ". ") +
                   "Baselines on the same seeds: `expert` (Meta-World's scripted policy, reading the privileged "
                   "state: the ceiling), `mean_action` (the demonstrations' mean action: the floor) and "
                   "`no_images` (the same fine-tune without cameras: what proprioception and the instruction "
                   "alone achieve)."), "",
                  "## Success and cost (Table 5 in shape)", "",
                  "| policy | " + " | ".join(tasks) + " | mean | TFLOPs/query | reduction | LLM layers |",
                  "|---|" + "---|" * (len(tasks) + 4)]
        full = cl["rows"].get("no_exit", {}).get("tflops_per_query")
        for row_name, row in cl["rows"].items():
            per = [_fmt(row["per_task"][t]["success"], ".2f") for t in tasks]
            reduction = None if full is None or row["tflops_per_query"] is None else 1 - row["tflops_per_query"] / full
            lines.append(f"| {row_name} | " + " | ".join(per) + f" | {row['success']:.2f} | "
                         f"{_fmt(row['tflops_per_query'], '.4g')} | {_fmt(reduction, '.0%')} | "
                         f"{_fmt(row['layer_fraction'], '.0%')} |")
        lines += ["", RUNTIME_NOTE.format(name=name), ""]
    if "open_loop" in result:
        ol = result["open_loop"]
        lines += [f"Open loop on the `{ol['split']}` split ({ol['samples']} samples); errors in {ol['units']}.", "",
                  "## Action error and cost (Table 5 in shape)", "",
                  "| policy | L1 | MSE | TFLOPs/query | FLOPs reduction | LLM layers | exit layers |",
                  "|---|---|---|---|---|---|---|"]
        for row_name, row in ol["rows"].items():
            hist = ", ".join(f"{k}: {v}" for k, v in row["exit_layer_histogram"].items())
            lines.append(f"| {row_name} | {row['l1']:.4f} | {row['mse']:.4f} | {row['tflops_per_query']:.4g} | "
                         f"{row['flops_reduction']:.0%} | {row['layer_fraction']:.0%} | {hist} |")
        lines += ["", RUNTIME_NOTE.format(name=name), ""]
    rows = (result.get("closed_loop") or result.get("open_loop"))["rows"]
    fm = [r for r in rows if r.startswith(("itfm ", "full "))]
    if fm:
        score = "success" if "closed_loop" in result else "l1"
        lines += ["## Flow matching with early exit (Table 6 in shape)", "",
                  (f"`itfm`: delta = {result['itfm_steps']} Euler steps per check, warm-started from the previous "
                   f"exit's action; `full`: {result['full_steps']} steps from noise at every check."), "",
                  f"| c | chain | delta | warm start | {score} | TFLOPs/query | LLM layers |", "|---|---|---|---|---|---|---|"]
        for r in fm:
            chain, c = r.split(" c=")
            row = rows[r]
            delta = result["itfm_steps"] if chain == "itfm" else result["full_steps"]
            lines.append(f"| {c} | {chain} | {delta} | {'yes' if chain == 'itfm' else 'no'} | "
                         f"{row[score]:.4f} | {_fmt(row['tflops_per_query'], '.4g')} | {_fmt(row['layer_fraction'], '.0%')} |")
        lines.append("")
    lines += ["## Cost per component (Table 3 in shape)", "", "| component | GFLOPs |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in result["components"].items()]
    return "\n".join(lines) + "\n"


def evaluate(name: str, params: str | Path = "params.yaml", *, reports: str | Path | None = None) -> dict[str, Any]:
    from training.sim.closed_loop import closed_loop_config

    doc = yaml.safe_load(Path(params).read_text()) if not isinstance(params, dict) else params
    cal = resolve_calibration(doc)
    ecfg = resolve_evaluation(doc)
    run = resolve_run(doc, "finetune", name)
    checkpoint = Path(run.out) / CHECKPOINT_DIR
    thresholds = Path(run.out).parents[1] / "calibration" / name / "thresholds.json"
    if not thresholds.is_file():
        raise ConfigError(f"{thresholds}: no calibration; run calibrate@{name} first")
    calibration = json.loads(thresholds.read_text())
    reports = Path(reports or Path(run.reports).parents[1] / "evaluation" / name)
    runtime = Path(run.runtime).parents[1] / "evaluation" / f"{name}.json"
    torch.set_num_threads(max(1, run.run.threads or os.cpu_count() or 1))
    policy, spec, saved = load_policy(checkpoint)
    sim = closed_loop_config(doc)
    result: dict[str, Any] = {"format_version": FORMAT_VERSION, "name": name, "checkpoint": str(checkpoint),
                              "manifest": saved["manifest"], "itfm_steps": cal.itfm_steps, "full_steps": cal.full_steps}
    images = round(calibration["images_per_query"])
    if sim is not None and name in sim.targets:
        from training.sim.closed_loop import run as closed_loop

        data = _data(saved["manifest"]["dir"], saved, "train", 1, 1)
        baselines = {}
        if "no_images" in sim.baselines:
            blind = Path(resolve_run(doc, "finetune", name, variant="no_images").out) / CHECKPOINT_DIR
            if not (blind / "config.json").is_file():
                raise ConfigError(f"{blind}: no checkpoint of the no_images baseline; train it first "
                                  f"(baseline@{name}: a1pipe train finetune --name {name} --variant no_images)")
            baselines["no_images"] = blind
        result["closed_loop"] = closed_loop(checkpoint, calibration, sim, train_data=data, full_steps=cal.full_steps,
                                            itfm_steps=cal.itfm_steps, loaded=(policy, spec, saved),
                                            baseline_checkpoints=baselines, videos=reports / "videos")
        model = cost_model(policy, calibration["prefix_len"])
    else:
        from training.sim.video import VideoWriter

        result["open_loop"] = open_loop(policy, saved, calibration, ecfg, full_steps=cal.full_steps,
                                        itfm_steps=cal.itfm_steps)
        VideoWriter(reports / "videos").close()  # no simulator, no video: the stage's folder holds an empty index
        model = result["open_loop"].pop("cost_model")
    result["components"] = component_table(model, images, list(calibration["exits"]), cal.itfm_steps, cal.full_steps)
    _write(reports, runtime, name, result)
    return result


#: wall-clock figures of a row: they depend on the machine and its load, so they are written to the
#: runtime report (``data/reports/training/runtime/evaluation/<name>.json``) and printed, never into
#: metrics.json or report.md, which DVC tracks and which must come out the same on any machine
TIMING_KEYS = ("ms_per_query", "time_reduction", "policy_ms_per_query")
RUNTIME_NOTE = ("Wall time per query depends on the machine and its load; it is in "
                "`data/reports/training/runtime/evaluation/{name}.json`, not here. FLOPs are the portable cost.")


def _write(reports: Path, runtime: Path, name: str, result: dict[str, Any]) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    closed = "closed_loop" in result
    part = result["closed_loop" if closed else "open_loop"]
    metrics = {"mode": "closed_loop" if closed else "open_loop", "score": "success" if closed else "l1"}
    compute = ["policy,tflops_per_query,layer_fraction,score"]
    histogram = ["policy,exit_layer,fraction"]
    for row_name, row in part["rows"].items():
        keep = ("success", "tflops_per_query", "layer_fraction") if closed else \
            ("l1", "mse", "tflops_per_query", "flops_reduction", "layer_fraction")
        metrics[row_name] = {k: row[k] for k in keep}
        if closed:
            metrics[row_name]["per_task"] = {t: v["success"] for t, v in row["per_task"].items()}
        if row.get("tflops_per_query") is not None:
            score = row["success"] if closed else row["l1"]
            compute.append(f"{row_name},{row['tflops_per_query']:.6g},{row['layer_fraction']:.6f},{score:.6f}")
        total = sum(row["exit_layer_histogram"].values())
        for layer, count in row["exit_layer_histogram"].items():
            histogram.append(f"{row_name},{layer},{count / total:.6f}")
    write_json(runtime, {row_name: {k: row[k] for k in TIMING_KEYS if k in row}
                         for row_name, row in part["rows"].items()})
    write_text(reports / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    write_text(reports / "compute.csv", "\n".join(compute) + "\n")
    write_text(reports / "exit_layers.csv", "\n".join(histogram) + "\n")
    write_text(reports / "report.md", report(name, result))
    if closed:
        write_text(reports / "episodes.json", json.dumps(part["episodes"], indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="a1pipe evaluate", description="evaluate a fine-tuned policy "
                                     "(closed loop in Meta-World or open loop on its manifest), with early exit")
    parser.add_argument("--name", required=True, help="the fine-tuning manifest (a training.finetune entry)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reports", help="output directory (default data/reports/training/evaluation/<name>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(args.name, args.params, reports=args.reports)
    except ConfigError as exc:
        print(f"a1pipe evaluate: error: {exc}", file=sys.stderr)
        return 2
    part = result.get("closed_loop") or result["open_loop"]
    for row_name, row in part["rows"].items():
        score = f"success {row['success']:.2f}" if "success" in row else f"L1 {row['l1']:.4f}"
        ms = row.get("policy_ms_per_query", row.get("ms_per_query"))
        print(f"{args.name} {row_name}: {score}, layers {_fmt(row['layer_fraction'], '.0%')}, {_fmt(ms, '.1f')} ms/query")
    return 0


if __name__ == "__main__":
    sys.exit(main())
