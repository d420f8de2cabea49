"""The closed-loop benchmark of one fine-tune: its policy, with and without early exit, and the
reference policies, on the same held-out seeds of the same tasks.

Rows (each over ``tasks`` x ``episodes`` rollouts from seeds ``seed_start ..``, disjoint from the
demonstration seeds):

- ``no_exit``: the full model, ``full_steps`` flow-matching steps (the normal A1 query);
- ``<chain> c=<c>``: early exit with the calibration's thresholds for that c (its default metric
  and distribution), per chain (``itfm``: delta = ``itfm_steps`` warm-started steps per check;
  ``full``: ``full_steps`` from noise at every check; an MLP head has one chain, ``mlp``);
- ``expert``: Meta-World's scripted expert (reads the privileged state): the ceiling;
- ``mean_action``: the demonstrations' mean action of the task, every step: the floor;
- ``no_images``: the same fine-tune trained and queried without cameras (``a1pipe train finetune
  --variant no_images``), at full depth: what proprioception and the instruction alone achieve,
  the bar the image policy has to clear.

A few rollouts of each row (``sim.eval.videos``) are recorded and written as captioned videos
(``training/sim/video.py``).
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.config import ConfigError
from training.sim.video import VideoConfig

BASELINES = ("expert", "mean_action", "no_images")
#: the baselines run when ``sim.eval.baselines`` is not given: those that need no trained model
DEFAULT_BASELINES = ("expert", "mean_action")


@dataclass(frozen=True)
class ClosedLoopConfig:
    tasks: tuple[str, ...]
    targets: tuple[str, ...]
    episodes: int = 3
    seed_start: int = 1000
    max_steps: int = 150
    execute_steps: int = 4
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    cs: tuple[float, ...] = (1.0, 0.7, 0.4, 0.1)
    chains: tuple[str, ...] = ("itfm",)
    noise_seed: int = 0
    #: episodes of a task run in lockstep, their queries batched (``rollout_many``); 1: one at a time,
    #: so the recorded policy time is one query's latency
    parallel: int = 1
    videos: VideoConfig = field(default_factory=VideoConfig)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed_start, self.seed_start + self.episodes))


def closed_loop_config(params: dict[str, Any]) -> ClosedLoopConfig | None:
    """``sim.eval`` from params.yaml (None without a ``sim`` section); evaluation seeds must not
    overlap the demonstration seeds."""
    sim = params.get("sim")
    if not sim:
        return None
    raw = dict(sim.get("eval") or {})
    known = {"targets", "episodes", "seed_start", "max_steps", "execute_steps", "baselines", "cs", "chains",
             "noise_seed", "parallel", "videos"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"sim.eval: unknown keys {unknown} (known: {sorted(known)})")
    config = ClosedLoopConfig(
        tasks=tuple(sim.get("tasks") or ()), targets=tuple(raw.get("targets") or ()),
        episodes=int(raw.get("episodes", 3)), seed_start=int(raw.get("seed_start", 1000)),
        max_steps=int(raw.get("max_steps", 150)), execute_steps=int(raw.get("execute_steps", 4)),
        baselines=tuple(raw.get("baselines", DEFAULT_BASELINES)), cs=tuple(float(c) for c in raw.get("cs", (1.0, 0.7, 0.4, 0.1))),
        chains=tuple(raw.get("chains", ("itfm",))), noise_seed=int(raw.get("noise_seed", 0)),
        parallel=int(raw.get("parallel", 1)))
    if not config.tasks:
        raise ConfigError("sim.tasks is empty")
    if config.episodes < 1 or config.execute_steps < 1 or config.max_steps < 1 or config.parallel < 1:
        raise ConfigError("sim.eval: episodes, execute_steps, max_steps and parallel must be >= 1")
    bad = [b for b in config.baselines if b not in BASELINES]
    if bad:
        raise ConfigError(f"sim.eval.baselines: unknown {bad} (known: {list(BASELINES)})")
    rows = {*config.baselines, "no_exit"} | {f"{chain} c={c:g}" for chain in (*config.chains, "mlp") for c in config.cs}
    config = dataclasses.replace(config, videos=VideoConfig.from_params(raw.get("videos"), rows))
    demos = sim.get("demos") or {}
    d0, dn = int(demos.get("seed_start", 0)), int(demos.get("per_task", 10))
    if config.seed_start < d0 + dn and d0 < config.seed_start + config.episodes:
        raise ConfigError(f"sim.eval seeds {config.seed_start}..{config.seed_start + config.episodes - 1} overlap the "
                          f"demonstration seeds {d0}..{d0 + dn - 1}: evaluate on starts the policy never saw")
    return config


def mean_actions(data) -> dict[str, np.ndarray]:
    """Per instruction: the mean action over the kept frames of a manifest split's episodes."""
    from pipelines.episode_store.reader import EpisodeReader

    sums: dict[str, list[np.ndarray]] = {}
    for row, path in zip(data.rows, data.episode_paths):
        with EpisodeReader(path) as reader:
            action = reader.action
        kept = [action[r["start"]:r["stop"]] for r in row["kept_ranges"]]
        sums.setdefault(row["instruction"], []).extend(kept)
    return {k: np.concatenate(v).mean(axis=0) for k, v in sums.items() if v}


def run(checkpoint: str | Path, calibration: dict[str, Any], config: ClosedLoopConfig, *, train_data,
        full_steps: int, itfm_steps: int, loaded: tuple[Any, Any, Any] | None = None,
        baseline_checkpoints: dict[str, str | Path] | None = None, videos: str | Path | None = None) -> dict[str, Any]:
    """Every row of the benchmark; returns ``{"rows": {name: {...}}, "episodes": [...]}``.

    ``loaded``: the policy already loaded from ``checkpoint`` (``load_policy``'s triple);
    ``baseline_checkpoints``: the checkpoint of each trained baseline (``no_images``) listed;
    ``videos``: the folder for the rollout videos ``config.videos`` asks for (None: none are made).
    """
    from training.checkpoint import load_policy
    from training.sim.metaworld import INSTRUCTIONS, MetaWorldTask
    from training.sim.policy import A1SimPolicy
    from training.sim.rollout import (
        ConstantPolicy,
        ExpertPolicy,
        rollout,
        rollout_many,
        summarize_row,
    )
    from training.sim.video import VideoWriter

    loaded = loaded or load_policy(checkpoint)
    policies: dict[str, Any] = {}
    for baseline in config.baselines:
        if baseline == "expert":
            policies["expert"] = ExpertPolicy()
        elif baseline == "no_images":
            path = (baseline_checkpoints or {}).get("no_images")
            if path is None:
                raise ConfigError("sim.eval.baselines lists no_images but no checkpoint of it was given")
            policies["no_images"] = A1SimPolicy(path, full_steps=full_steps, noise_seed=config.noise_seed)
            if policies["no_images"].spec.images:
                raise ConfigError(f"{path}: the no_images baseline was trained with images")
        else:
            means = mean_actions(train_data)
            missing = [t for t in config.tasks if INSTRUCTIONS[t] not in means]
            if missing:
                raise ConfigError(f"no demonstrations of {missing} in the fine-tuning manifest for mean_action")
            policies["mean_action"] = ConstantPolicy(lambda task, m=means: m[INSTRUCTIONS[task]])
    policies["no_exit"] = A1SimPolicy(checkpoint, full_steps=full_steps, noise_seed=config.noise_seed, loaded=loaded)
    for chain, c, settings in exit_rows(calibration, config.cs, config.chains, itfm_steps, full_steps):
        policies[f"{chain} c={c:g}"] = A1SimPolicy(checkpoint, settings=settings, full_steps=full_steps,
                                                   noise_seed=config.noise_seed, loaded=loaded)
    missing = sorted(set(config.videos.rows or ()) - set(policies))
    if missing:
        raise ConfigError(f"sim.eval.videos.rows: {missing} are not run here (rows: {list(policies)})")
    size = policies["no_exit"].image_size
    writer = None if videos is None else VideoWriter(videos, config.videos)
    by_policy: dict[str, list] = {name: [] for name in policies}
    seeds = list(config.seeds)
    lanes = min(config.parallel, len(seeds))
    for task_name in config.tasks:  # the scenes of a task (building one costs about a second), every policy in them
        with ExitStack() as stack:
            scenes = [stack.enter_context(MetaWorldTask(task_name, image_size=size, max_steps=config.max_steps))
                      for _ in range(lanes)]
            for name, policy in policies.items():
                for first in range(0, len(seeds), lanes):
                    group = seeds[first:first + lanes]
                    frames = {k: [] for k in range(len(group))
                              if writer is not None and config.videos.wants(name, first + k)}
                    if lanes == 1:
                        results = [rollout(scenes[0], policy, group[0], execute_steps=config.execute_steps,
                                           frames=frames.get(0))]
                    else:
                        results = rollout_many(scenes[:len(group)], policy, group,
                                               execute_steps=config.execute_steps, frames=frames)
                    by_policy[name] += results
                    for k, recorded in frames.items():  # drawn and encoded after the episode: outside its timing
                        writer.write(name, results[k], recorded, instruction=scenes[0].instruction, image_size=size,
                                     max_steps=config.max_steps,
                                     layers=policy.policy.num_layers if isinstance(policy, A1SimPolicy) else None)
    if writer is not None:
        writer.close()
    episodes, rows = [], {}
    for name, results in by_policy.items():
        rows[name] = summarize_row(results)
        episodes += [dict(r.to_json(), config=name) for r in results]
    return {"rows": rows, "episodes": episodes, "seeds": list(config.seeds), "tasks": list(config.tasks),
            "execute_steps": config.execute_steps, "max_steps": config.max_steps, "parallel": lanes}


def exit_rows(calibration: dict[str, Any], cs, chains, itfm_steps: int, full_steps: int):
    """(chain, c, ExitSettings) for each requested c and chain, thresholds from the calibration."""
    from training.inference import ExitSettings

    default = calibration["default"]
    available = list(calibration["table"])
    wanted = ["mlp"] if available == ["mlp"] else [c for c in chains if c in available]
    if not wanted:
        raise ConfigError(f"none of the chains {list(chains)} was calibrated (calibrated: {available})")
    out = []
    for chain in wanted:
        entries = calibration["table"][chain]["metrics"][default["metric"]]["thresholds"]
        by_c = {e["c"]: e for e in entries if e["distribution"] == default["distribution"]}
        for c in cs:
            if float(c) not in by_c:
                raise ConfigError(f"c = {c} was not calibrated for {default['distribution']} (calibrated: {sorted(by_c)})")
            settings = ExitSettings(exits=tuple(calibration["exits"]), thresholds=tuple(by_c[float(c)]["thresholds"]),
                                    metric=default["metric"], fm_mode="full" if chain == "full" else "itfm",
                                    itfm_steps=itfm_steps, full_steps=full_steps)
            out.append((chain, float(c), settings))
    return out
