"""Closed-loop rollouts: a policy queried for action chunks, executed open-loop, until success.

A policy here is anything with ``act(observation) -> Query``: the trained A1 policy (with or
without early exit), the scripted expert, a constant action, a policy that ignores images.
The loop is the same for all of them, so their success rates on the same seeds compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from training.sim.metaworld import MetaWorldTask, Observation


@dataclass
class Query:
    """One policy call: ``actions`` [H, D] (H >= 1; D = 4 in Meta-World, 7 in LIBERO) and, for the A1
    policy, where it exited."""

    actions: np.ndarray
    exit_layer: int | None = None
    layer_fraction: float | None = None  # LLM layers run / all layers
    flops: float | None = None


class Policy(Protocol):
    """``sees_images`` (optional, default True): False for a policy that never looks at the cameras,
    whose episodes are then run without rendering them (unless they are recorded)."""

    def reset(self, task: MetaWorldTask) -> None: ...

    def act(self, observation: Observation, task: MetaWorldTask) -> Query: ...


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    steps: int  # steps run (to success, or max_steps)
    queries: int
    wall_s: float  # whole episode: policy, simulation and rendering
    policy_s: float  # inside the policy's act calls
    exit_layers: list[int] = field(default_factory=list)
    layer_fractions: list[float] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def ask(self, act: Callable[..., Query], *args: Any) -> Query:
        """``act(*args)`` once: the policy's query, timed, with where it exited and what it cost recorded."""
        t = time.perf_counter()
        query = act(*args)
        return self.record(query, time.perf_counter() - t)

    def record(self, query: Query, seconds: float) -> Query:
        """Count one query that took ``seconds`` of policy time (its share, when answered in a batch)."""
        self.policy_s += seconds
        self.queries += 1
        if query.exit_layer is not None:
            self.exit_layers.append(int(query.exit_layer))
        if query.layer_fraction is not None:
            self.layer_fractions.append(float(query.layer_fraction))
        if query.flops is not None:
            self.flops.append(float(query.flops))
        return query


@dataclass
class Frame:
    """One state of a recorded episode (``training/sim/video.py`` draws it): the observation after
    ``step`` actions, the exit layer of the chunk in force (the last query's: for a state an action
    is taken from, the query that action came from; None for a policy without exits), whether the
    task is solved yet, and whether the policy was queried on this observation."""

    images: dict[str, np.ndarray]
    step: int
    exit_layer: int | None
    success: bool
    query: bool


def rollout(task: MetaWorldTask, policy: Policy, seed: int, *, execute_steps: int,
            frames: list[Frame] | None = None) -> EpisodeResult:
    """Run one episode of ``task`` from ``seed``: query, execute up to ``execute_steps`` actions of
    the chunk, re-query; stop at the first success or after the task's ``max_steps``.

    ``frames``: a list to record the episode into: its start and the state after every step
    (``steps + 1`` frames). It keeps the observations the policy was given (no extra rendering),
    so a recorded episode runs, and is timed, like any other."""
    if execute_steps < 1:
        raise ValueError(f"execute_steps must be >= 1, got {execute_steps}")
    start = time.perf_counter()
    observation = task.reset(seed, render=frames is not None or getattr(policy, "sees_images", True))
    policy.reset(task)
    result = EpisodeResult(task.task, int(seed), False, 0, 0, 0.0, 0.0)
    layer = None  # the exit layer of the chunk in force, for the recording
    while task.steps < task.max_steps and not result.success:
        query = result.ask(policy.act, observation, task)
        layer = None if query.exit_layer is None else int(query.exit_layer)
        actions = np.asarray(query.actions, dtype=np.float32).reshape(-1, 4)
        if not len(actions):
            raise ValueError(f"{task.task}: the policy returned no action")
        for i, action in enumerate(actions[:execute_steps]):
            if frames is not None:
                frames.append(Frame(observation.images, task.steps, layer, result.success, i == 0))
            observation, result.success = task.step(action)
            if result.success or task.steps >= task.max_steps:
                break
    if frames is not None:
        frames.append(Frame(observation.images, task.steps, layer, result.success, False))
    result.steps = task.steps
    result.wall_s = time.perf_counter() - start
    return result


def rollout_many(tasks: Sequence[MetaWorldTask], policy: Any, seeds: Sequence[int], *, execute_steps: int,
                 frames: dict[int, list[Frame]] | None = None) -> list[EpisodeResult]:
    """Episodes of ``seeds`` run in lockstep, one per scene of ``tasks``, the policy's queries of a
    step answered in one batch (``policy.act_many``): what :func:`rollout` does for each episode
    alone (the same queries, actions executed and stopping rule), for a fraction of the policy
    time where a batch costs little more than one query (a small model on CPU, any model on a GPU).

    A policy without ``act_many`` runs its episodes one after another with :func:`rollout`. Timing
    is shared: a batch's time is split evenly over its queries, and each episode's ``wall_s`` is
    the lockstep's wall time over the number of episodes, so neither is one query's latency.
    ``frames``: episode index -> a list to record that episode into (as for :func:`rollout`)."""
    if len(tasks) != len(seeds) or not tasks:
        raise ValueError(f"rollout_many needs one scene per seed, got {len(tasks)} scenes for {len(seeds)} seeds")
    if len(set(map(id, tasks))) != len(tasks):
        raise ValueError("rollout_many needs a scene of its own for each episode")
    if execute_steps < 1:
        raise ValueError(f"execute_steps must be >= 1, got {execute_steps}")
    frames = frames or {}
    if not hasattr(policy, "act_many"):
        return [rollout(t, policy, s, execute_steps=execute_steps, frames=frames.get(i))
                for i, (t, s) in enumerate(zip(tasks, seeds))]
    start = time.perf_counter()
    n = len(tasks)
    looks = getattr(policy, "sees_images", True)
    observations = [t.reset(s, render=looks or i in frames) for i, (t, s) in enumerate(zip(tasks, seeds))]
    policy.reset_many(tasks)
    results = [EpisodeResult(t.task, int(s), False, 0, 0, 0.0, 0.0) for t, s in zip(tasks, seeds)]
    layers: list[int | None] = [None] * n  # the exit layer of each episode's chunk in force
    plans: list[np.ndarray | None] = [None] * n  # the actions left to execute of each episode's chunk
    done = [t.steps >= t.max_steps for t in tasks]
    while not all(done):
        asking = [i for i in range(n) if not done[i] and plans[i] is None]  # their next action starts a chunk
        if asking:
            t0 = time.perf_counter()
            queries = policy.act_many([observations[i] for i in asking], [tasks[i] for i in asking], asking)
            share = (time.perf_counter() - t0) / len(asking)
            for i, query in zip(asking, queries):
                results[i].record(query, share)
                layers[i] = None if query.exit_layer is None else int(query.exit_layer)
                actions = np.asarray(query.actions, dtype=np.float32).reshape(-1, 4)[:execute_steps]
                if not len(actions):
                    raise ValueError(f"{tasks[i].task}: the policy returned no action")
                plans[i] = actions
        for i in range(n):
            if done[i]:
                continue
            task, plan = tasks[i], plans[i]
            if i in frames:
                frames[i].append(Frame(observations[i].images, task.steps, layers[i], results[i].success,
                                       i in asking))
            observations[i], results[i].success = task.step(plan[0])
            plans[i] = plan[1:] if len(plan) > 1 else None
            done[i] = results[i].success or task.steps >= task.max_steps
    wall = (time.perf_counter() - start) / n
    for i, (task, result) in enumerate(zip(tasks, results)):
        if i in frames:
            frames[i].append(Frame(observations[i].images, task.steps, layers[i], result.success, False))
        result.steps = task.steps
        result.wall_s = wall
    return results


# --- reference policies ------------------------------------------------------------------------------


class ExpertPolicy:
    """Meta-World's scripted expert (reads the privileged state): the upper reference."""

    sees_images = False

    def reset(self, task: MetaWorldTask) -> None:
        pass

    def act(self, observation: Observation, task: MetaWorldTask) -> Query:
        return Query(task.expert_action()[None])


class ConstantPolicy:
    """One fixed action every step (the demonstrations' mean action): the lower reference."""

    sees_images = False

    def __init__(self, action: Sequence[float] | np.ndarray | Callable[[str], np.ndarray]):
        self._action = action

    def reset(self, task: MetaWorldTask) -> None:
        pass

    def act(self, observation: Observation, task: MetaWorldTask) -> Query:
        action = self._action(task.task) if callable(self._action) else self._action
        return Query(np.asarray(action, dtype=np.float32).reshape(1, 4))


def _histogram(layers: list[int]) -> dict[str, int]:
    values, counts = np.unique(np.asarray(layers, dtype=np.int64), return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, counts)}


def summarize_row(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    """One evaluated setting (a row of the results table) over all its episodes: success rate, the
    per-task summary, mean TFLOPs, LLM-layer fraction and policy time per query, exit-layer histogram.
    Meta-World and LIBERO rows are the same shape, so one report reads both."""
    flops = [f for r in results for f in r.flops]
    fractions = [f for r in results for f in r.layer_fractions]
    queries = sum(r.queries for r in results)
    return {
        "success": float(np.mean([r.success for r in results])) if results else 0.0,
        "per_task": summarize(results),
        "tflops_per_query": float(np.mean(flops)) / 1e12 if flops else None,
        "layer_fraction": float(np.mean(fractions)) if fractions else None,
        "policy_ms_per_query": 1000 * sum(r.policy_s for r in results) / max(1, queries),
        "exit_layer_histogram": _histogram([e for r in results for e in r.exit_layers]),
    }


def summarize(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    """Per task: success rate, steps to success, exit-layer histogram, layer fraction, FLOPs, time."""
    out: dict[str, Any] = {}
    for name in sorted({r.task for r in results}):
        rs = [r for r in results if r.task == name]
        won = [r.steps for r in rs if r.success]
        layers = [e for r in rs for e in r.exit_layers]
        fractions = [f for r in rs for f in r.layer_fractions]
        flops = [sum(r.flops) for r in rs if r.flops]
        out[name] = {
            "episodes": len(rs),
            "success": float(np.mean([r.success for r in rs])),
            "steps_to_success": float(np.mean(won)) if won else None,
            "queries_per_episode": float(np.mean([r.queries for r in rs])),
            "exit_layer_histogram": _histogram(layers),
            "layer_fraction": float(np.mean(fractions)) if fractions else None,
            "flops_per_episode": float(np.mean(flops)) if flops else None,
            "wall_s_per_episode": float(np.mean([r.wall_s for r in rs])),
            "policy_s_per_episode": float(np.mean([r.policy_s for r in rs])),
        }
    return out
