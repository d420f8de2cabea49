"""The conversion as a Beam graph, and the runner it runs on.

Units are spread over the workers (``worker.py``); their outcomes, a record of each finished unit,
each source's statistics and each episode's curation decision leave the graph as JSON lines under
the run's work directory, where the driver (``finalize.py``) reads them and checks that every unit
is accounted for. Outlier bounds need the whole dataset, so curation takes two passes: mergeable
quantile samples per (source, embodiment) first, then each episode against its bounds
(``pipelines/curation.py``). The same graph runs on Beam's local multi-process runner (the
default, sized here) and on Flink, Spark or Dataflow; a runner whose workers cannot see a local
store is refused before it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from converters import get_converter
from pipelines import storage
from pipelines.convert.worker import UnitWorker, apply_worker_settings
from pipelines.curation import BoundsAccumulator, CurationConfig, curate
from pipelines.episode_store.stats import EpisodeSetStats, build_stats_document

if TYPE_CHECKING:
    from pipelines.convert import ConvertConfig


def import_beam():
    """Apache Beam, imported without the warnings its optional integrations print on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import apache_beam as beam
    return beam


def build_pipeline(pipeline, config: ConvertConfig, units: list[str], work_dir: str, progress_path: str | None,
                   worker_tmpdir: str | None = None):
    """The conversion graph on ``pipeline``; ``worker_tmpdir``: the run's private temporary directory,
    for workers that share the store's disk (see :func:`~pipelines.convert.worker.apply_worker_settings`)."""
    beam = import_beam()
    work = storage.at(work_dir)

    class ConvertUnitFn(beam.DoFn):
        """One unit's outcomes, then one record that the unit finished and with how many: the driver
        publishes nothing unless every unit's record, and each of its outcomes, reached it."""

        def __init__(self, cfg: ConvertConfig, progress: str | None, tmpdir: str | None):
            self.cfg = cfg
            self.progress = progress
            self.tmpdir = tmpdir
            self.worker: UnitWorker | None = None

        def setup(self):
            apply_worker_settings(self.tmpdir)
            self.worker = UnitWorker(self.cfg, self.progress)

        def process(self, unit: str):
            episodes = 0
            for outcome in self.worker.convert_unit(unit):
                episodes += 1
                yield outcome
            yield beam.pvalue.TaggedOutput(UNITS, json.dumps({"unit": unit, "episodes": episodes}))

    class MergeFn(beam.CombineFn):
        """Combines mergeable accumulators (``add``/``merge`` methods) such as stats and bounds samples."""

        def __init__(self, make, add):
            self.make, self.add = make, add

        def create_accumulator(self):
            return self.make()

        def add_input(self, acc, value):
            return self.add(acc, value)

        def merge_accumulators(self, accs):
            accs = iter(accs)
            first = next(accs)
            for acc in accs:
                first.merge(acc)
            return first

        def extract_output(self, acc):
            return acc

    curation = CurationConfig.from_params(config.curation).with_declared_limits(
        get_converter(config.converter_name).physical_limits
    )

    converting = (
        pipeline
        | "Units" >> beam.Create(units, reshuffle=False)
        | "Distribute" >> beam.Reshuffle()
        | "Convert" >> beam.ParDo(ConvertUnitFn(config, progress_path, worker_tmpdir)).with_outputs(UNITS, main="outcomes")
    )
    outcomes = converting.outcomes
    converting[UNITS] | "WriteUnits" >> beam.io.WriteToText(work.path(UNITS), file_name_suffix=".jsonl")
    (
        outcomes
        | "OutcomeJson" >> beam.Map(
            lambda o: json.dumps({k: v for k, v in o.items() if k not in ("stats", "low_dim")}, sort_keys=True)
        )
        | "WriteOutcomes" >> beam.io.WriteToText(work.path("outcomes"), file_name_suffix=".jsonl")
    )
    (
        outcomes
        | "Converted" >> beam.Filter(lambda o: o["status"] == "converted")
        | "KeyStats" >> beam.Map(lambda o: (tuple(o["stats_key"]), o["stats"]))
        | "MergeStats" >> beam.CombinePerKey(MergeFn(EpisodeSetStats, EpisodeSetStats.merge))
        # the accumulators stay inside Beam: what reaches the work dir is each source's finished entry,
        # as JSON, so the driver never unpickles a file
        | "BySource" >> beam.Map(lambda kv: (kv[0][0], kv))
        | "GroupSource" >> beam.GroupByKey()
        | "SourceStats" >> beam.Map(
            lambda kv: json.dumps({kv[0]: build_stats_document(dict(kv[1]))["sources"][kv[0]]}))
        | "WriteStats" >> beam.io.WriteToText(work.path("stats"), file_name_suffix=".jsonl")
    )
    converted = outcomes | "ForCuration" >> beam.Filter(lambda o: o["status"] == "converted")
    bounds = (
        converted
        | "KeyLowDim" >> beam.Map(lambda o: ((o["low_dim"].source, o["low_dim"].embodiment), o["low_dim"]))
        | "Bounds" >> beam.CombinePerKey(MergeFn(BoundsAccumulator, BoundsAccumulator.add))
        | "BoundValues" >> beam.Map(lambda kv: (kv[0], kv[1].bounds(curation.outliers)))
    )
    (
        converted
        | "Curate" >> beam.Map(
            lambda o, b: dict(
                curate(o["low_dim"], curation, b.get((o["low_dim"].source, o["low_dim"].embodiment))).to_row(),
                content_sha256=o["content_sha256"],
            ),
            b=beam.pvalue.AsDict(bounds),
        )
        | "CurationJson" >> beam.Map(lambda row: json.dumps(row, sort_keys=True))
        | "WriteCuration" >> beam.io.WriteToText(work.path("curation"), file_name_suffix=".jsonl")
    )


#: the work files (``units*.jsonl``) and the graph's output that record each finished unit
UNITS = "units"

#: work units that make another local worker process pay for its start-up (~4 s of Beam harness and
#: imports; a sample-sized unit converts in well under a second)
UNITS_PER_AUTO_WORKER = 32


def auto_workers(units: int, cores: int | None = None) -> int:
    """``workers: 0``: one process per core, but no more than the units keep busy."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, -(-units // UNITS_PER_AUTO_WORKER)))


def pipeline_options(workers: int, beam_args: list[str], units: int | None = None):
    """Default: Beam's local runner, one process per core (``workers`` 0; fewer for a handful of
    ``units``). Any ``--runner`` in ``beam_args`` wins.

    Beam's DirectRunner first offers a pipeline to the Prism runner, a Go binary it downloads from
    GitHub, and falls back to its Python runner when that fails, saying so only in an INFO log.
    ``--allow_unsafe_triggers`` is the switch with which Beam (2.77, ``SwitchingDirectRunner``)
    never offers it: conversion is a batch graph with no triggers, so the flag changes nothing
    else, and the run goes straight to the FnApiRunner (the report names it, see :func:`ran_on`).
    """
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        workers = workers or (auto_workers(units) if units is not None else os.cpu_count() or 1)
        mode = "in_memory" if workers == 1 else "multi_processing"
        args = [
            "--runner=DirectRunner",
            "--allow_unsafe_triggers",
            f"--direct_num_workers={workers}",
            f"--direct_running_mode={mode}",
            "--default_sdk_harness_log_level=WARNING",
            *args,
        ]
    beam = import_beam()
    return beam.options.pipeline_options.PipelineOptions(args)


#: options that size the local runner to this machine's cores: the run's, not the store's, record
LOCAL_SIZING = ("direct_num_workers", "direct_running_mode")
#: option names whose values are credentials (object-store keys, tokens): never written anywhere
_SECRET_WORDS = ("secret", "password", "token", "credential", "key")


def given_options(options) -> dict[str, Any]:
    """The Beam options this run set (Beam's defaults left out), as JSON values, credentials masked."""
    given = options.get_all_options(drop_default=True)
    masked = {k: "***" if isinstance(v, str) and any(w in k.lower() for w in _SECRET_WORDS) else v
              for k, v in sorted(given.items())}
    return json.loads(json.dumps(masked, default=str))


def ran_on(runner, result) -> str:
    """The name of the runner that executed the graph. Beam's DirectRunner is a switch that hands
    the graph to another runner, named here by the kind of result that came back."""
    from apache_beam.runners.direct.direct_runner import (
        DirectPipelineResult,
        SwitchingDirectRunner,
    )
    from apache_beam.runners.portability.fn_api_runner.fn_runner import RunnerResult

    if not isinstance(runner, SwitchingDirectRunner):
        return type(runner).__name__
    if isinstance(result, RunnerResult):
        return "FnApiRunner"
    return "BundleBasedDirectRunner" if isinstance(result, DirectPipelineResult) else "PrismRunner"


def workers_elsewhere(options) -> str | None:
    """Why the runner's workers may not see this machine's disk; None when they run on it: Beam's
    local runners, and a portable runner (Flink, Spark, Prism, a job service) whose environment is
    LOOPBACK (workers in this process). A runner of another kind (Dataflow, Dask, a deployment's
    own) counts as elsewhere."""
    from apache_beam.options.pipeline_options import PortableOptions, StandardOptions
    from apache_beam.runners.portability.portable_runner import PortableRunner
    from apache_beam.runners.runner import create_runner

    runner = create_runner(options.view_as(StandardOptions).runner or StandardOptions.DEFAULT_RUNNER)
    name = type(runner).__name__
    if isinstance(runner, PortableRunner):
        kind = options.view_as(PortableOptions).environment_type or _default_environment_type(runner, options)
        return None if kind.upper() == "LOOPBACK" else f"{name} runs its workers in {kind} environments, not in this process"
    if name in StandardOptions.LOCAL_RUNNERS:
        return None
    return f"{name} runs its workers on other machines"


def _default_environment_type(runner, options) -> str:
    """The environment a portable runner picks when none is given, by Beam's rules (LOOPBACK for
    Prism and for a local Flink or Spark master, DOCKER otherwise). Not through the runner's own
    ``default_environment``: that also stages the job's dependencies (runs pip, builds a
    ``--setup_file``), nothing a check may do."""
    from apache_beam.options.pipeline_options import (
        FlinkRunnerOptions,
        PortableOptions,
        SparkRunnerOptions,
    )
    from apache_beam.runners.portability.flink_runner import (
        MAGIC_HOST_NAMES,
        FlinkRunner,
    )
    from apache_beam.runners.portability.prism_runner import PrismRunner
    from apache_beam.runners.portability.spark_runner import (
        LOCAL_MASTER_PATTERN,
        SparkRunner,
    )

    if options.view_as(PortableOptions).output_executable_path:
        return "DOCKER"
    local = (isinstance(runner, PrismRunner)
             or isinstance(runner, FlinkRunner) and options.view_as(FlinkRunnerOptions).flink_master in MAGIC_HOST_NAMES
             or isinstance(runner, SparkRunner)
             and re.match(LOCAL_MASTER_PATTERN, options.view_as(SparkRunnerOptions).spark_master_url) is not None)
    return "LOOPBACK" if local else "DOCKER"


def check_workers_see_store(store_root: str, options, shared: bool) -> None:
    """Refuse, before anything starts, a store on this machine's disk that the runner's workers
    cannot reach: they would publish episodes and work files where the driver never looks, and
    the run would find no outcome for any unit. ``shared``: the path is a filesystem mounted at
    the same place on every worker (NFS, Lustre), which no check here can see."""
    if shared or storage.at(store_root).local is None:
        return
    why = workers_elsewhere(options)
    if why is not None:
        raise ValueError(
            f"the store {store_root} is a directory on this machine, and {why}: they could not write "
            "it. Write to object storage (s3://..., gs://...), run on this machine (no --runner, or "
            "--environment_type=LOOPBACK), or, if the path is a filesystem every worker mounts at "
            "the same place, pass --shared-output")


@contextlib.contextmanager
def private_tmpdir(private: str | None) -> Iterator[None]:
    """Point this process's TMPDIR (inherited by local Beam workers) at ``private``, a directory in the
    run's work dir, removed with it afterwards; None leaves TMPDIR as it is. Workers that do not
    inherit it get it in ``DoFn.setup`` (:func:`~pipelines.convert.worker.apply_worker_settings`).

    Beam's local runner leaves empty temporary directories behind in TMPDIR on every run.
    """
    if private is None:
        yield
        return
    os.makedirs(private, exist_ok=True)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = private, None
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        tempfile.tempdir = saved_tempdir
