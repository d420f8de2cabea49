"""The conversion as a Beam graph, and the runner it runs on.

Units are spread over the workers (``worker.py``); their outcomes, each source's statistics and
each episode's curation decision leave the graph as JSON lines under the run's work directory,
where the driver (``finalize.py``) reads them. Outlier bounds need the whole dataset, so curation
takes two passes: mergeable sketches per (source, embodiment) first, then each episode against
its bounds (``pipelines/curation.py``). The same graph runs on Beam's local multi-process runner
(the default, sized here) and on Flink, Spark or Dataflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from converters import get_converter
from pipelines import storage
from pipelines.convert.worker import UnitWorker
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


def build_pipeline(pipeline, config: ConvertConfig, units: list[str], work_dir: str, progress_path: str | None):
    beam = import_beam()
    work = storage.at(work_dir)

    class ConvertUnitFn(beam.DoFn):
        def __init__(self, cfg: ConvertConfig, progress: str | None):
            self.cfg = cfg
            self.progress = progress
            self.worker: UnitWorker | None = None

        def setup(self):
            self.worker = UnitWorker(self.cfg, self.progress)

        def process(self, unit: str):
            yield from self.worker.convert_unit(unit)

    class MergeFn(beam.CombineFn):
        """Combines mergeable accumulators (``add``/``merge`` methods) such as stats and bounds sketches."""

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

    outcomes = (
        pipeline
        | "Units" >> beam.Create(units, reshuffle=False)
        | "Distribute" >> beam.Reshuffle()
        | "Convert" >> beam.ParDo(ConvertUnitFn(config, progress_path))
    )
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
        # the sketches stay inside Beam: what reaches the work dir is each source's finished entry,
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


#: work units that make another local worker process pay for its start-up (~4 s of Beam harness and
#: imports; a sample-sized unit converts in well under a second)
UNITS_PER_AUTO_WORKER = 32


def auto_workers(units: int, cores: int | None = None) -> int:
    """``workers: 0``: one process per core, but no more than the units keep busy."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, -(-units // UNITS_PER_AUTO_WORKER)))


def pipeline_options(workers: int, beam_args: list[str], units: int | None = None):
    """Default: Beam's local runner, one process per core (``workers`` 0; fewer for a handful of
    ``units``). Any ``--runner`` in ``beam_args`` wins."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        workers = workers or (auto_workers(units) if units is not None else os.cpu_count() or 1)
        mode = "in_memory" if workers == 1 else "multi_processing"
        args = [
            "--runner=DirectRunner",
            f"--direct_num_workers={workers}",
            f"--direct_running_mode={mode}",
            "--default_sdk_harness_log_level=WARNING",
            *args,
        ]
    beam = import_beam()
    return beam.options.pipeline_options.PipelineOptions(args)


@contextlib.contextmanager
def private_tmpdir(directory: Path | None) -> Iterator[None]:
    """Point TMPDIR (inherited by local Beam workers) into ``directory``, the run's own, removed with
    it afterwards; None leaves TMPDIR as it is.

    Beam's local runner leaves empty temporary directories behind in TMPDIR on every run.
    """
    if directory is None:
        yield
        return
    private = os.path.join(directory, "tmp")
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
