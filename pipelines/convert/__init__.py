"""The conversion pipeline: discover -> read -> curate -> write, as an Apache Beam pipeline.

``a1pipe convert`` builds one pipeline per source. Work units (files, shards)
are distributed over workers; each worker converts its units episode by
episode, publishes each episode atomically and emits an *outcome* (converted or
quarantined with a reason code). Outcomes and mergeable statistics are written
by Beam as sharded files under ``STORE/.work/<run>/``; the driver checks that
every unit is accounted for, then writes ``index.parquet``, ``stats.json`` and
``conversion_report.json``. The same code runs on Beam's local multi-process
runner (default) and on Flink, Spark or Dataflow: extra Beam options pass
straight through.

One module per job: ``worker.py`` (one unit's episodes -> files and outcomes), ``graph.py`` (the
Beam graph and its runner), ``finalize.py`` (outcomes -> index, statistics, curation, report;
stale episodes), ``progress.py`` (the progress bar). This module holds the run's settings and the
driver that runs the jobs in order. Where the store lives (local disk or object storage) is
``pipelines.storage``'s business: the jobs speak to its :class:`~pipelines.storage.Storage`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from converters import get_converter
from pipelines import storage
from pipelines.convert.finalize import finalize_run
from pipelines.convert.graph import (
    build_pipeline,
    check_workers_see_store,
    given_options,
    import_beam,
    pipeline_options,
    private_tmpdir,
    ran_on,
)
from pipelines.convert.progress import ProgressBar
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.layout import LOCK_FILE, STORE_MARKER, TMP_DIR, WORK_DIR
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.record import MAX_ABS_VALUE

log = logging.getLogger("a1pipe.convert")


@dataclass(frozen=True)
class ConvertConfig:
    """One source's conversion: what to read, with which converter, into which store, and the
    settings the store's files depend on. Frozen and picklable: Beam ships it to every worker."""

    source: str
    input_root: str
    store_root: str
    image: ImageConfig = field(default_factory=ImageConfig)
    converter_options: dict[str, Any] = field(default_factory=dict)
    curation: dict[str, Any] = field(default_factory=dict)
    #: the converter to read ``input_root`` with, when it is not ``source``'s own: another dataset in
    #: an existing converter's layout (``sources.<name>.converter``); ``source`` names the dataset
    converter: str | None = None
    #: plausibility bound on every state and action value (``implausible_values`` beyond it)
    max_abs_value: float = MAX_ABS_VALUE
    #: the largest share of this source's published episodes one run may retire as stale (1.0: any);
    #: beyond it the run fails and retires none (``finalize._retire_stale``)
    max_retire_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.max_abs_value > 0:
            raise ValueError(f"max_abs_value must be positive, got {self.max_abs_value}")
        if not 0 <= self.max_retire_fraction <= 1:
            raise ValueError(f"max_retire_fraction must be within [0, 1], got {self.max_retire_fraction}")

    @property
    def converter_name(self) -> str:
        return self.converter or self.source

    def make_converter(self):
        converter = get_converter(self.converter_name)(self.input_root, self.converter_options)
        if self.converter:
            converter.dataset_name = self.source
        converter.max_abs_value = self.max_abs_value
        return converter


def run_conversion(
    config: ConvertConfig,
    *,
    workers: int = 0,
    beam_args: list[str] | None = None,
    show_progress: bool = True,
    shared_output: bool = False,
) -> dict[str, Any]:
    """Convert one source into a store; return the published conversion report plus ``run``: this
    run's wall time, throughput and local worker sizing, which are not published in the store.

    A store on this machine's disk with a runner whose workers run elsewhere is refused before
    anything starts, unless ``shared_output`` says the path is a filesystem every worker mounts
    (:func:`~pipelines.convert.graph.check_workers_see_store`)."""
    beam = import_beam()
    started = time.time()
    storage.use_beam_options(beam_args or [])  # the store's options (an S3 endpoint...) in this process too
    check_workers_see_store(config.store_root, pipeline_options(workers, beam_args or []), shared_output)
    converter = config.make_converter()
    input_root = storage.at(config.input_root)
    if input_root.local is not None and not input_root.local.exists():  # a prefix is no object to check
        raise FileNotFoundError(f"input root {config.input_root} does not exist")
    store = storage.at(config.store_root)
    with store.lock(LOCK_FILE):
        _prepare_store(store)
        units = converter.discover()
        log.info("%s: %d work units under %s", config.source, len(units), config.input_root)
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        work_dir = store.path(WORK_DIR, run_id)
        # The progress log and Beam's temporaries need a directory on this machine that its local
        # workers share; a run into an object store (a cluster's, as a rule) shows no progress bar.
        local_work = store.local / WORK_DIR / run_id if store.local is not None else None
        progress_path = tmp = None
        if local_work is not None:
            local_work.mkdir(parents=True)
            progress_path, tmp = os.path.join(local_work, "progress.log"), os.path.join(local_work, "tmp")
        options = pipeline_options(workers, beam_args or [], units=len(units))
        given = given_options(options)  # as given: runners fill in options of their own (ports, environments)
        with ProgressBar(progress_path, len(units), config.source, enabled=show_progress), private_tmpdir(tmp):
            with beam.Pipeline(options=options) as pipeline:
                build_pipeline(pipeline, config, units, work_dir, progress_path, tmp)
        runner = ran_on(pipeline.runner, pipeline.result)
        report = finalize_run(config, converter, units, work_dir, started, runner, given)
        store.delete_tree(f"{WORK_DIR}/{run_id}")
        store.remove_empty_dirs(WORK_DIR, TMP_DIR)
    return report


def _prepare_store(store: storage.Storage) -> None:
    """Make ``store`` a store (its marker), and clear what a killed run left in it: private
    temporaries, never visible as episodes, and the temporary of a published file whose rename
    never happened (the published file itself is whole)."""
    if not store.exists(STORE_MARKER):
        with store.working_copy(publish=[STORE_MARKER]) as root:
            EpisodeStore.create(root)
    store.remove_leftovers(TMP_DIR, WORK_DIR)
