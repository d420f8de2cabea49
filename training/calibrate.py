"""The ``calibrate@<name>`` stage: thresholds for early exit from a fine-tuned model's discrepancies.

1. Load ``models/finetune/<name>/checkpoint`` and the manifest it was fine-tuned on; take the
   manifest's ``calibration`` split (episodes never trained on), or, when the manifest has
   none, its validation split, then its training split (recorded in the output, so a reader
   knows when thresholds were fitted on training episodes, as A1's are).
2. Run the model over it once per action chain, recording every exit's action for every
   sample of every batch (A1 keeps batch element 0 only): one chain for the MLP head; two for
   flow matching, Inter-Layer Truncated FM (``itfm_steps`` warm-started steps per check) and
   the full chain (``full_steps`` steps from one shared noise draw per check). Discrepancies
   are computed per chunk, as the online test computes them, for all four metrics.
3. Thresholds for every metric x distribution x c in ``calibration.distributions``, the c
   that meets each budget in ``calibration.budgets`` (a fraction of the full model's LLM
   layers, and separately of its FLOPs per query), and for each the exit distribution it achieves on the calibration samples, its
   expected LLM-layer fraction and FLOPs fraction (``training/cost.py``).
4. Online, on the validation split (or the calibration samples when there is none): the
   adaptive policy with the default metric and distribution at each c, against normal
   full-depth inference of the same batches: layers, FLOPs and wall time per query, and how
   far the actions move from the full-depth ones.

Outputs (``models/calibration/<name>/``): ``thresholds.json``, ``discrepancies.npz`` (V per
chain and metric), and the stage's metrics and plot (``data/reports/training/calibration/<name>/``).
The online check's wall times depend on the machine, so they are written apart, to
``data/reports/training/runtime/calibration/<name>.json``, and the outputs above are the same on
any machine that computes the same numbers.
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

from pipelines.manifest.format import load_manifest
from training.checkpoint import CHECKPOINT_DIR, load_policy
from training.config import (
    AugmentConfig,
    CalibrationConfig,
    ConfigError,
    DataConfig,
    parse,
    resolve_calibration,
    resolve_run,
)
from training.cost import cost_model, query_flops
from training.data import ManifestData, ManifestLoader
from training.exits import (
    METRICS,
    assign,
    exit_distribution,
    expected_cost,
    solve_budget,
    thresholds,
)
from training.inference import (
    AdaptivePolicy,
    ExitSettings,
    exit_settings,
    stack_discrepancies,
)
from training.io import publishing, write_json, write_text
from training.model.heads import MLPHead, masked_mean

FORMAT_VERSION = 1


def _split(manifest: dict[str, Any], wanted: str) -> str:
    counts = manifest.get("counts", {})
    for split in (wanted, "validation", "train"):
        if counts.get(split, {}).get("episodes"):
            return split
    raise ConfigError(f"manifest {manifest['name']} has no episodes to calibrate on")


def _data(manifest_dir: str, saved: dict[str, Any], split: str, batch_size: int, samples: int) -> ManifestData:
    data = parse(DataConfig, saved["run"]["data"], "checkpoint run.data")
    config = data.replace(augment=AugmentConfig(enabled=False), state_mask_prob=0.0, num_workers=0,
                          batch_size=batch_size, samples_per_epoch=samples,
                          image_size=tuple(saved["shapes"]["image_size"]))
    return ManifestData(manifest_dir, config, split=split)


def _batches(policy, data: ManifestData, limit: int):
    seen = 0
    for raw in ManifestLoader(data, num_workers=0):
        if seen >= limit:
            return
        seen += raw["size"]
        yield policy.prepare(raw, "cpu")


def chains(policy) -> dict[str, dict[str, Any]]:
    if isinstance(policy.head, MLPHead):
        return {"mlp": {}}
    return {"itfm": {"fm_mode": "itfm"}, "full": {"fm_mode": "full"}}


def calibrate(name: str, params: str | Path = "params.yaml", *, out: str | Path | None = None,
              reports: str | Path | None = None) -> dict[str, Any]:
    cal: CalibrationConfig = resolve_calibration(params)
    run = resolve_run(params, "finetune", name)
    checkpoint = Path(run.out) / CHECKPOINT_DIR
    if not (checkpoint / "config.json").is_file():
        raise ConfigError(f"{checkpoint}: no fine-tuned checkpoint; run finetune@{name} first")
    out = Path(out or Path(run.out).parents[1] / "calibration" / name)
    reports = Path(reports or Path(run.reports).parents[1] / "calibration" / name)
    runtime = Path(run.runtime).parents[1] / "calibration" / f"{name}.json"
    torch.set_num_threads(max(1, run.run.threads or os.cpu_count() or 1))
    policy, _, saved = load_policy(checkpoint)
    manifest_dir = saved["manifest"]["dir"]
    manifest, _ = load_manifest(manifest_dir)
    split = _split(manifest, cal.split)
    frames = manifest["counts"][split]["frames_kept"]
    samples = min(cal.max_samples, max(cal.batch_size, frames))
    data = _data(manifest_dir, saved, split, cal.batch_size, samples - samples % cal.batch_size or cal.batch_size)
    layers = policy.num_layers
    base = exit_settings(policy, cal.first_exit, cal.exit_interval, itfm_steps=cal.itfm_steps,
                         full_steps=cal.full_steps)
    exits = base.exits
    images_per_query = float(np.mean([int(b["image_mask"].sum()) / b["image_mask"].shape[0]
                                      for b in _batches(policy, data, cal.batch_size)]))
    prefix_len = None
    values: dict[str, dict[str, np.ndarray]] = {}
    generator = torch.Generator().manual_seed(cal.noise_seed)
    for chain, extra in chains(policy).items():
        settings = ExitSettings(exits=exits, itfm_steps=cal.itfm_steps, full_steps=cal.full_steps, **extra)
        adaptive = AdaptivePolicy(policy, settings)
        results = []
        for batch in _batches(policy, data, samples):
            results.append(adaptive.act(batch, generator=generator, record=True))
            prefix_len = prefix_len or int(policy.embed(batch).embeds.shape[1])
        values[chain] = {m: stack_discrepancies(results, m).numpy().astype(np.float64) for m in METRICS}
    model = cost_model(policy, prefix_len)
    layer_cost = [(i + 1) / layers for i in exits]
    table: dict[str, Any] = {}
    for chain, by_metric in values.items():
        steps = cal.itfm_steps if chain == "itfm" else cal.full_steps
        full = query_flops(model, round(images_per_query), [layers - 1], layers - 1,
                           cal.full_steps)["total"]
        flops_cost = [query_flops(model, round(images_per_query), [base.reference, *exits[: k + 1]], i,
                                  steps)["total"] / full for k, i in enumerate(exits)]
        table[chain] = {"exit_flops_fraction": flops_cost, "metrics": {}}
        for metric, v in by_metric.items():
            entries = []
            for kind, cs in sorted(cal.distributions.items()):
                for c in cs:
                    p = exit_distribution(kind, float(c), len(exits), disable_first=cal.disable_first)
                    eta = thresholds(v, p)
                    achieved = np.bincount(assign(v, eta), minlength=len(exits)) / v.shape[1]
                    entries.append({"distribution": kind, "c": float(c), "target": p.tolist(),
                                    "thresholds": eta.tolist(), "achieved": achieved.tolist(),
                                    "layer_fraction": expected_cost(v, eta, layer_cost),
                                    "flops_fraction": expected_cost(v, eta, flops_cost)})
            budgets = [dict(solve_budget(v, cost, b, kind="exp", disable_first=cal.disable_first), unit=unit)
                       for unit, cost in (("layers", layer_cost), ("flops", flops_cost)) for b in cal.budgets]
            table[chain]["metrics"][metric] = {"thresholds": entries, "budgets": budgets}
    online = _online(policy, saved, manifest_dir, manifest, cal, table, exits, model, round(images_per_query))
    result = {
        "format_version": FORMAT_VERSION, "name": name, "checkpoint": str(checkpoint),
        "manifest": saved["manifest"], "split": split, "samples": int(next(iter(values.values()))["cosine"].shape[1]),
        "exits": list(exits), "reference_layer": base.reference, "layers": layers,
        "chains": {c: {"fm_mode": e.get("fm_mode"), "steps": cal.itfm_steps if c == "itfm" else cal.full_steps}
                   for c, e in chains(policy).items()},
        "default": {"metric": cal.metric, "distribution": cal.distribution, "c": cal.c,
                    "chain": "mlp" if "mlp" in table else "itfm"},
        "prefix_len": prefix_len, "images_per_query": images_per_query, "table": table, "online": online,
        "settings": _jsonable(cal),
    }
    _write(out, reports, runtime, result, values)
    return result


def _online(policy, saved, manifest_dir, manifest, cal, table, exits, model, images) -> dict[str, Any]:
    """The default thresholds at each c of the default distribution, run adaptively on held-out batches."""
    if not cal.online_samples:
        return {}
    split = "validation" if manifest["counts"].get("validation", {}).get("episodes") else _split(manifest, cal.split)
    data = _data(manifest_dir, saved, split, cal.batch_size, max(cal.batch_size, cal.online_samples))
    chain = "mlp" if "mlp" in table else "itfm"
    entries = [e for e in table[chain]["metrics"][cal.metric]["thresholds"] if e["distribution"] == cal.distribution]
    generator = torch.Generator().manual_seed(cal.noise_seed + 1)
    batches = list(_batches(policy, data, cal.online_samples))
    full_time, full_actions, noises = 0.0, [], []
    for batch in batches:
        noise = torch.randn((batch["images"].shape[0], policy.chunk, policy.action_dim), generator=generator)
        t = time.perf_counter()
        full_actions.append(policy.predict(batch, noise=noise, steps=cal.full_steps))
        full_time += time.perf_counter() - t
        noises.append(noise)
    layers = policy.num_layers
    full_flops = query_flops(model, images, [layers - 1], layers - 1, cal.full_steps)["total"]
    steps = cal.itfm_steps if chain == "itfm" else cal.full_steps
    rows = []
    for entry in entries:
        settings = ExitSettings(exits=tuple(exits), thresholds=tuple(entry["thresholds"]), metric=cal.metric,
                                fm_mode="itfm" if chain == "itfm" else "full", itfm_steps=cal.itfm_steps,
                                full_steps=cal.full_steps)
        adaptive = AdaptivePolicy(policy, settings)
        exit_layers, flops, moved, elapsed = [], [], [], 0.0
        for batch, full, noise in zip(batches, full_actions, noises):
            t = time.perf_counter()
            r = adaptive.act(batch, noise=noise)
            elapsed += time.perf_counter() - t
            valid = batch["action_time_mask"][:, :, None] & batch["action_mask"][:, None, :]
            for n in range(r.actions.shape[0]):
                k = int(r.exit_index[n])
                checks = [settings.reference, *exits[: k + 1]]
                flops.append(query_flops(model, images, checks, int(r.exit_layer[n]), steps)["total"] / full_flops)
                moved.append(float(masked_mean((r.actions[n] - full[n]).abs(), valid[n])))
            exit_layers += r.exit_layer.tolist()
        hist = np.bincount([exits.index(e) for e in exit_layers], minlength=len(exits)) / len(exit_layers)
        rows.append({"c": entry["c"], "exit_histogram": hist.tolist(),
                     "layer_fraction": float(np.mean([(e + 1) / layers for e in exit_layers])),
                     "flops_fraction": float(np.mean(flops)), "time_ratio": elapsed / full_time,
                     "action_l1_from_full_depth": float(np.mean(moved))})
    return {"split": split, "samples": sum(int(b["images"].shape[0]) for b in batches), "chain": chain,
            "metric": cal.metric, "distribution": cal.distribution, "full_depth_time_s": full_time, "rows": rows}


def _jsonable(cal: CalibrationConfig) -> dict[str, Any]:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cal)))


#: the online check's wall-clock figures: they depend on the machine, so they go to the runtime
#: report and never into thresholds.json or metrics.json (DVC outputs that must not change per machine)
TIMING_KEYS = ("full_depth_time_s", "time_ratio")


def _without_timing(result: dict[str, Any]) -> dict[str, Any]:
    online = {k: v for k, v in result["online"].items() if k not in TIMING_KEYS}
    if "rows" in online:
        online["rows"] = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in online["rows"]]
    return {**result, "online": online}


def _write(out: Path, reports: Path, runtime: Path, result: dict[str, Any],
           values: dict[str, dict[str, np.ndarray]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    reports.mkdir(parents=True, exist_ok=True)
    online = result["online"]
    write_json(runtime, {"full_depth_time_s": online.get("full_depth_time_s"),
                         **{f"online_c{row['c']:g}": {"time_ratio": row["time_ratio"]} for row in online.get("rows", [])}})
    write_json(out / "thresholds.json", _without_timing(result))
    arrays = {f"{chain}_{metric}": v for chain, by in values.items() for metric, v in by.items()}
    with publishing(out / "discrepancies.npz") as tmp:
        np.savez_compressed(tmp, exits=np.array(result["exits"]), **arrays)
    d = result["default"]
    chain = result["table"][d["chain"]]["metrics"][d["metric"]]["thresholds"]
    entry = next(e for e in chain if e["distribution"] == d["distribution"] and e["c"] == d["c"])
    lines = ["exit_layer,kind,fraction"]
    for layer, target, achieved in zip(result["exits"], entry["target"], entry["achieved"]):
        lines += [f"{layer},target,{target:.6f}", f"{layer},achieved,{achieved:.6f}"]
    write_text(reports / "exit_distribution.csv", "\n".join(lines) + "\n")
    summary = {"samples": result["samples"], "split": result["split"],
               "default_layer_fraction": entry["layer_fraction"], "default_flops_fraction": entry["flops_fraction"]}
    for row in result["online"].get("rows", []):
        summary[f"online_c{row['c']:g}"] = {k: row[k] for k in ("layer_fraction", "flops_fraction",
                                                               "action_l1_from_full_depth")}
    for b in result["table"][d["chain"]]["metrics"][d["metric"]]["budgets"]:
        summary[f"budget_{b['unit']}_{b['target']:g}"] = {"c": b["c"], "achieved": b["achieved"], "met": b["met"]}
    write_json(reports / "metrics.json", summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="a1pipe calibrate", description="early-exit thresholds for a fine-tune")
    parser.add_argument("--name", required=True, help="the fine-tuning manifest (a training.finetune entry)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = calibrate(args.name, args.params)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"a1pipe calibrate: error: {exc}", file=sys.stderr)
        return 2
    online = {f"c={r['c']:g}": round(r["layer_fraction"], 3) for r in result["online"].get("rows", [])}
    print(json.dumps({"name": args.name, "split": result["split"], "samples": result["samples"],
                      "exits": result["exits"], "online_layer_fraction": online}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
