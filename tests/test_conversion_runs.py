"""What a conversion run may claim: completeness, retiring, runners and their workers, statistics.

A run publishes only when every work unit is accounted for and retires at most a bounded share of
a source; a runner whose workers cannot see a local store is refused before it starts; the default
runner is named and never downloads Prism; the report says which runner ran, with which options;
and ``stats.json`` is the same bytes for any worker count or merge order.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import pipelines.convert.finalize as finalize_module
from converters import get_converter
from pipelines.cli import main as cli
from pipelines.convert import ConvertConfig, run_conversion
from pipelines.convert.finalize import IncompleteRun, RunRecords, _check_complete
from pipelines.convert.graph import check_workers_see_store, pipeline_options
from pipelines.convert.worker import apply_worker_settings
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.stats import (
    QUANTILE_SAMPLE,
    EpisodeSetStats,
    build_stats_document,
)
from pipelines.samples import write_samples
from tests import beam_cluster

SMALL = ImageConfig(height=48, width=64, quality=85)
#: two embodiments, five good episodes and one the converter quarantines
FEW = ("aloha_transfer_cube/episode_0.hdf5", "aloha_transfer_cube/episode_1.hdf5", "franka_pick_cube/episode_0.hdf5",
       "franka_pick_cube/episode_1.hdf5", "franka_pick_cube/episode_11.hdf5", "franka_pick_cube/episode_2.hdf5")
DERIVED = ("index.parquet", "stats.json", "curation.parquet", "curation_report.json")


def _input_with(samples: Path, dest: Path, episodes) -> Path:
    """An in-house input root holding ``episodes`` and every task's metadata."""
    for path in samples.rglob("*"):
        rel = path.relative_to(samples).as_posix()
        if path.is_file() and (rel in episodes or not rel.endswith(".hdf5")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / rel)
    return dest


@pytest.fixture(scope="module")
def few(tmp_path_factory) -> Path:
    samples = tmp_path_factory.mktemp("samples")
    write_samples(samples, seed=0, sources=["inhouse"])
    return _input_with(samples / "inhouse", tmp_path_factory.mktemp("few") / "inhouse", FEW)


@pytest.fixture(scope="module")
def published(few, tmp_path_factory):
    """The default runner with one worker: (store, report, runners Prism was asked to run, the
    temporary directories ``DoFn.setup`` applied).

    The DoFn reaches its worker pickled, with what it calls: the spy logs to a file."""
    from apache_beam.runners.portability import prism_runner

    import pipelines.convert.graph as graph_module

    root = tmp_path_factory.mktemp("published")
    store, log = root / "inhouse", str(root / "setup.log")
    prism = []

    def spy(tmpdir):
        with open(log, "a") as fh:
            fh.write(f"{tmpdir}\n")
        apply_worker_settings(tmpdir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prism_runner.PrismRunner, "run_pipeline", lambda *a, **k: prism.append(a) or 1 / 0)
        mp.setattr(graph_module, "apply_worker_settings", spy)
        report = run_conversion(ConvertConfig("inhouse", str(few), str(store), image=SMALL), workers=1, show_progress=False)
    return store, report, prism, Path(log).read_text().splitlines()


def _files(store: Path, names=DERIVED) -> dict[str, bytes]:
    return {name: (store / name).read_bytes() for name in names}


def _config(src: Path, store: Path, **kw) -> ConvertConfig:
    return ConvertConfig("inhouse", str(src), str(store), image=SMALL, **kw)


# --- the default runner and the report --------------------------------------------------------------------


def test_the_default_runner_never_asks_prism_and_the_report_names_the_runner_that_ran(published):
    store, report, prism, _ = published
    assert prism == []
    assert report["runner"] == "FnApiRunner"
    assert report["runner_options"] == {"allow_unsafe_triggers": True, "default_sdk_harness_log_level": "WARNING",
                                        "runner": "DirectRunner"}
    assert json.loads((store / "conversion_report.json").read_text())["runner"] == "FnApiRunner"


def test_the_options_given_are_recorded_with_credentials_masked():
    from pipelines.convert.graph import LOCAL_SIZING, given_options

    given = given_options(pipeline_options(2, ["--s3_secret_access_key=hunter2", "--allow_non_deterministic_key_coders"]))
    assert given["direct_num_workers"] == 2 and set(LOCAL_SIZING) <= set(given)
    assert given["s3_secret_access_key"] == "***" and given["allow_non_deterministic_key_coders"] is True


def test_workers_apply_their_settings_in_setup(published, tmp_path, monkeypatch):
    store, _, _, settings = published
    assert len(settings) == 1 and Path(settings[0]).parent.parent == store / ".work"
    monkeypatch.delenv("HDF5_USE_FILE_LOCKING", raising=False)
    monkeypatch.setenv("TMPDIR", "/nonexistent")
    monkeypatch.setattr(tempfile, "tempdir", None)
    apply_worker_settings(str(tmp_path / "private"))
    assert os.environ["HDF5_USE_FILE_LOCKING"] == "FALSE" and tempfile.gettempdir() == str(tmp_path / "private")
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "TRUE")  # a deployment's own choice stands
    apply_worker_settings(None)
    assert os.environ["HDF5_USE_FILE_LOCKING"] == "TRUE" and tempfile.gettempdir() == str(tmp_path / "private")


# --- runners whose workers cannot see a local store ---------------------------------------------------------


@pytest.mark.parametrize("args,refused", [
    ([], False),
    (["--runner=FnApiRunner"], False),
    (["--runner=PrismRunner"], False),  # LOOPBACK by default
    (["--runner=FlinkRunner"], False),  # a local Flink master: LOOPBACK
    (["--runner=FlinkRunner", "--flink_master=flink:8081"], True),  # DOCKER
    (["--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=LOOPBACK"], False),
    (["--runner=SparkRunner", "--spark_master_url=spark://master:7077"], True),
    (["--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=EXTERNAL",
      "--environment_config=localhost:50000"], True),
    (["--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=PROCESS",
      '--environment_config={"command": "/opt/boot"}'], True),
    (["--runner=DataflowRunner", "--project=p", "--region=r"], True),
])
def test_a_local_store_is_refused_with_workers_elsewhere(args, refused):
    options = pipeline_options(1, args)
    if refused:
        with pytest.raises(ValueError, match="--shared-output"):
            check_workers_see_store("/data/store", options, shared=False)
    else:
        check_workers_see_store("/data/store", options, shared=False)
    check_workers_see_store("/data/store", options, shared=True)
    check_workers_see_store("s3://bucket/store", options, shared=False)


def test_a_refused_runner_fails_before_the_store_is_touched(few, tmp_path, capsys):
    store = tmp_path / "store"
    argv = ["convert", "--source", "inhouse", "--input", str(few), "--output", str(store), "--quiet",
            "--", "--runner=PortableRunner", "--job_endpoint=localhost:1", "--environment_type=EXTERNAL",
            "--environment_config=localhost:2"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "PortableRunner runs its workers in EXTERNAL environments" in err and "--shared-output" in err
    assert not store.exists()


# --- completeness ----------------------------------------------------------------------------------------


def test_a_run_whose_outcomes_never_arrived_names_its_units(few):
    """The issue's case (workers writing where the driver cannot see): no file in the work dir."""
    units = get_converter("inhouse")(str(few), {}).discover()
    with pytest.raises(IncompleteRun, match=rf"{len(units)} of {len(units)} work units never reported finishing "
                                            rf"\({units[0]}, "):
        _check_complete(_config(few, Path("/unused")), units, RunRecords([], {}, [], {}), "/work/dir")


def test_a_run_missing_some_outcomes_fails_and_retires_and_publishes_nothing(published, few, tmp_path, monkeypatch,
                                                                             capsys):
    """Two units' records lost between the workers and the driver: one unit's outcome, another's record
    that it finished. The CLI exits non-zero naming both; the store is as it was."""
    src, _, _, _ = published
    store = tmp_path / "store"
    shutil.copytree(src, store)
    before = _files(store, (*DERIVED, "conversion_report.json"))
    episodes = sorted(p.relative_to(store) for p in EpisodeStore(store).episode_files())
    lost_outcome, lost_record = "aloha_transfer_cube/episode_1.hdf5", "franka_pick_cube/episode_2.hdf5"
    real = finalize_module._load_outcomes

    def lossy(work_dir):
        for path in Path(work_dir).glob("*.jsonl"):
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(line for line in lines if not (
                (path.name.startswith("outcomes") and json.loads(line)["unit"] == lost_outcome)
                or (path.name.startswith("units") and json.loads(line)["unit"] == lost_record))))
        return real(work_dir)

    monkeypatch.setattr(finalize_module, "_load_outcomes", lossy)
    argv = ["convert", "--source", "inhouse", "--input", str(few), "--output", str(store), "--workers", "1", "--quiet",
            "--image-height", "48", "--image-width", "64", "--image-quality", "85"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "incomplete run" in err and "Nothing was retired or published" in err
    assert f"1 of {len(FEW)} work units never reported finishing ({lost_record})" in err
    assert f"outcomes missing from 1 of {len(FEW)} work units ({lost_outcome})" in err
    assert _files(store, (*DERIVED, "conversion_report.json")) == before
    assert sorted(p.relative_to(store) for p in EpisodeStore(store).episode_files()) == episodes
    assert not (store / ".stale").exists()


# --- retiring --------------------------------------------------------------------------------------------


def test_retiring_most_of_a_source_needs_an_explicit_flag(published, few, tmp_path, capsys):
    """An input that lost most of its episodes at once (a failed mount, a wrong path) retires none of
    them and publishes nothing; ``--allow-mass-retire`` retires them."""
    src, report, _, _ = published
    store = tmp_path / "store"
    shutil.copytree(src, store)
    before = _files(store)
    left = _input_with(few, tmp_path / "input", {"franka_pick_cube/episode_0.hdf5"})
    argv = ["convert", "--source", "inhouse", "--input", str(left), "--output", str(store), "--workers", "1", "--quiet",
            "--image-height", "48", "--image-width", "64", "--image-quality", "85"]
    assert cli(argv) == 2
    converted = report["counts"]["converted"]
    err = capsys.readouterr().err
    assert f"refusing to retire {converted - 1} of the {converted} published episodes" in err
    assert "--allow-mass-retire" in err and "Nothing was retired or published" in err
    assert _files(store) == before and not (store / ".stale").exists()
    assert cli([*argv, "--allow-mass-retire"]) == 0
    stale = json.loads((store / "conversion_report.json").read_text())["stale_episodes"]
    assert len(stale) == converted - 1 and all((store / s["moved_to"]).is_file() for s in stale)


def test_the_retire_bound_is_a_share_within_zero_and_one():
    for bad in (1.5, 1.0001, -0.0001):
        with pytest.raises(ValueError, match="max_retire_fraction"):
            _config(Path("in"), Path("out"), max_retire_fraction=bad)
    for edge in (0.0, 1.0):
        assert _config(Path("in"), Path("out"), max_retire_fraction=edge).max_retire_fraction == edge


@pytest.mark.parametrize("published,gone,fraction,allowed", [
    (4, 2, 0.5, True),    # exactly the share: allowed
    (4, 3, 0.5, False),   # one more: refused
    (5, 2, 0.5, True),
    (5, 3, 0.5, False),   # 3 > 2.5
    (3, 1, 1 / 3, True),  # a share that is not a round number, exactly met
    (3, 2, 1 / 3, False),
    (4, 0, 0.0, True),    # nothing gone is never refused
    (4, 1, 0.0, False),   # 0: nothing may be retired
    (4, 4, 1.0, True),    # 1: any share, the whole source included
])
def test_the_retire_cap_allows_exactly_its_share_and_refuses_one_more(tmp_path, published, gone, fraction, allowed):
    from pipelines.convert.finalize import MassRetire, _retire_stale

    ids = [f"ep{i:02d}" for i in range(published)]
    for i, eid in enumerate(ids):  # the layout finalize reads: episodes/<source>/<shard>/<id>.zarr.zip
        path = tmp_path / "episodes" / "inhouse" / f"s{i % 2}" / f"{eid}.zarr.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(eid.encode())
    config = _config(Path("in"), tmp_path, max_retire_fraction=fraction)
    keep = set(ids[gone:])
    if allowed:
        stale = _retire_stale(config, keep)
        assert sorted(s["episode_id"] for s in stale) == ids[:gone]
        assert all((tmp_path / s["moved_to"]).read_bytes() == s["episode_id"].encode() for s in stale)
    else:
        with pytest.raises(MassRetire, match=f"refusing to retire {gone} of the {published} published"):
            _retire_stale(config, keep)
        assert not (tmp_path / ".stale").exists()  # none moved
    assert sorted(p.name for p in (tmp_path / "episodes").rglob("*.zarr.zip")) == \
        sorted(f"{e}.zarr.zip" for e in (keep if allowed else ids))


# --- deterministic statistics ----------------------------------------------------------------------------


def _merged(parts: list[EpisodeSetStats], order: list[int], workers: int) -> EpisodeSetStats:
    """``parts`` combined as ``workers`` Beam combiners would: each folds its share in arrival order,
    then the partial results are merged, the last worker's first."""
    partial = []
    for w in range(workers):
        acc = EpisodeSetStats()
        for i in order[w::workers]:
            acc.merge(copy.deepcopy(parts[i]))
        partial.append(acc)
    total = EpisodeSetStats()
    for acc in reversed(partial):
        total.merge(acc)
    return total


def test_statistics_do_not_depend_on_the_merge_order():
    """More frames than the quantile sample holds, heavy tails and a large offset: floating-point
    merges in arrival order (Chan's update, Beam's quantile sketch) differ here in the last digits of
    mean, std, q01 and q99."""
    rng = np.random.default_rng(7)
    names = {"state": ["x", "y"], "action": ["z"]}
    episodes = [{"state": np.c_[rng.standard_cauchy(n), 1e4 + rng.normal(0, 1e-3, n)], "action": rng.normal(1.3, 0.2, (n, 1))}
                for n in rng.integers(500, 2500, 60)]
    parts = [EpisodeSetStats.of_episode(arrays, names, f"inhouse-{i:016x}") for i, arrays in enumerate(episodes)]
    assert sum(p.frames for p in parts) > 2 * QUANTILE_SAMPLE
    docs = set()
    for seed, workers in [(0, 1), (1, 1), (2, 3), (3, 4)]:
        order = list(range(len(parts)))
        np.random.default_rng(seed).shuffle(order)
        docs.add(json.dumps(build_stats_document({("inhouse", "franka"): _merged(parts, order, workers)})))
    assert len(docs) == 1
    summary = json.loads(docs.pop())["sources"]["inhouse"]["state"]
    y = np.concatenate([arrays["state"][:, 1] for arrays in episodes])
    assert summary["mean"][1] == pytest.approx(y.mean(), rel=1e-15) and summary["std"][1] == pytest.approx(y.std(), rel=1e-9)


def test_small_dimensions_get_exact_quantiles():
    values = np.arange(1.0, 201.0)[::-1].copy()
    stats = EpisodeSetStats.of_episode({"state": values[:, None], "action": values[:, None]}, {"state": ["a"], "action": ["b"]}, "e")
    summary = stats.summary()["state"]
    assert (summary["q01"], summary["q99"]) == ([2.0], [198.0])  # the smallest value with 1 % / 99 % at or below it


# --- a portable runner with an external pool of worker processes ---------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project as the wheel the README says to ship to workers."""
    return beam_cluster.build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_every_file_the_code_reads_beside_itself(wheel):
    """Source cards, layouts, report templates: installed from the wheel, the code finds them
    (the released manifests under ``manifests/<name>/`` are data, read from a checkout or a download)."""
    import zipfile

    repo = beam_cluster.REPO
    wanted = {p.relative_to(repo).as_posix()
              for package in beam_cluster.PACKAGES for p in (repo / package).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts
              and not (package == "manifests" and p.parent != repo / package)}
    with zipfile.ZipFile(wheel) as zf:
        held = set(zf.namelist())
    assert sorted(wanted - held) == []


@pytest.fixture(scope="module")
def worker_python(tmp_path_factory) -> Path:
    """A Python for the workers, as a worker image would have it: the dependencies (and pip), not a1pipe;
    each worker installs the wheel its job ships (``tests/beam_boot.py``)."""
    import subprocess

    python = beam_cluster.worker_python(tmp_path_factory.mktemp("worker-image"))
    absent = subprocess.run([str(python), "-c", "import pipelines"], capture_output=True, text=True, cwd=python.parent,
                            env={"PATH": os.environ["PATH"]})
    assert absent.returncode != 0 and "No module named 'pipelines'" in absent.stderr
    return python


def test_an_external_worker_pool_writes_to_s3_the_store_the_default_runner_writes(published, few, wheel,
                                                                                   worker_python, s3_server, decoy,
                                                                                   tmp_path):
    """Beam's portable job service hands the graph to a pool of two worker processes, started as a
    Beam container starts them (``tests/beam_boot.py``: the job's options, the wheel it ships
    installed), in a working directory and temp dir of their own. They share nothing with the driver
    but the S3 server, which only the job's ``--s3_endpoint_url`` names (their environment names a
    decoy that refuses and counts): the store they write is the default runner's, byte for byte."""
    import hashlib
    import io
    import sys

    import boto3
    import pyarrow.parquet as pq

    local, local_report, _, _ = published
    launcher = beam_cluster.LAUNCHER
    home, tmp, staging = (tmp_path / name for name in ("worker-home", "worker-tmp", "staging"))
    for folder in (home, tmp, staging):
        folder.mkdir()
    port_file = tmp_path / "job.port"
    job_log, pool_log = tmp_path / "job-service.log", tmp_path / "worker-pool.log"
    job = beam_cluster.start([sys.executable, launcher, "apache_beam.runners.portability.local_job_service_main", "--port", "0",
                  "--port_file", str(port_file), "--staging_dir", str(staging)], job_log, cwd=tmp_path)
    pool_port = beam_cluster.free_loopback_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TMPDIR")}
    env.update(TMPDIR=str(tmp), PATH=f"{worker_python.parent}{os.pathsep}{env['PATH']}", AWS_ENDPOINT_URL_S3=decoy.url)
    pool = beam_cluster.start([str(worker_python), launcher, "apache_beam.runners.worker.worker_pool_main",
                               "--service_port", str(pool_port), "--container_executable", beam_cluster.BOOT],
                              pool_log, cwd=home, env=env)
    try:
        beam_cluster.wait_until(port_file.is_file, job, job_log, "the job service")
        beam_cluster.wait_until(lambda: beam_cluster.listening(pool_port), pool, pool_log, "the worker pool")
        url = s3_server.url("stores/portable")
        report = run_conversion(_config(few, url), show_progress=False, beam_args=[
            "--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{port_file.read_text().strip()}",
            "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{pool_port}", "--direct_num_workers=2",
            f"--s3_endpoint_url={s3_server.endpoint}", f"--extra_package={wheel}"])
    finally:
        beam_cluster.stop(pool)
        beam_cluster.stop(job)
    started = pool_log.read_text(errors="replace").count("Starting worker with command")
    assert started == 2, pool_log.read_text(errors="replace")[-3000:]
    assert report["runner"] == "PortableRunner" and report["runner_options"]["environment_type"] == "EXTERNAL"
    assert report["counts"] == local_report["counts"]
    assert decoy.requests == 0  # the workers reached S3 through the job's option, never their environment's
    # each worker ran a1pipe from the wheel the job shipped, installed in its own temp dir
    installed = sorted(tmp.glob("beam-*/site/pipelines/convert/graph.py"))
    assert len(installed) == 2, sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.name.endswith(".whl"))
    shipped = [p for p in tmp.glob("beam-*/staged/*.whl")]
    assert [p.read_bytes() for p in shipped] == [wheel.read_bytes()] * 2

    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    prefix = "stores/portable/"
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    objects = {k[len(prefix):]: client.get_object(Bucket=s3_server.bucket, Key=k)["Body"].read() for k in keys}
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file() and p.name != ".lock"}
    assert set(objects) == files  # no work files or temporaries left behind
    index = pq.read_table(io.BytesIO(objects["index.parquet"])).to_pylist()
    assert index == pq.read_table(local / "index.parquet").to_pylist()
    assert {r["path"]: r["sha256"] for r in index} == {
        rel: hashlib.sha256(data).hexdigest() for rel, data in objects.items() if rel.startswith("episodes/")}
    for name in ("index.parquet", "stats.json", "curation.parquet", "curation_report.json"):
        assert objects[name] == (local / name).read_bytes(), name
    assert not list(home.iterdir())  # the workers' working directory: nothing written there
