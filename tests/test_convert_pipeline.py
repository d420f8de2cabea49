"""The Beam conversion pipeline on the in-house samples: outcomes, report, resume, crashes, CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from converters import get_converter
from pipelines.cli import main as cli
from pipelines.convert import ConvertConfig, run_conversion
from pipelines.convert.graph import pipeline_options
from pipelines.convert.worker import UnitWorker
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.layout import REPORT_FILE
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.validator import validate_path, validate_store
from pipelines.samples import EXPECTED_FILE, write_samples
from tests.episode_factory import die_after_encoding

SMALL = ImageConfig(height=48, width=64, quality=85)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    write_samples(out, seed=0, sources=["inhouse"])
    return out


@pytest.fixture(scope="module")
def expected(samples) -> dict[str, str | None]:
    return json.loads((samples / EXPECTED_FILE).read_text())["inhouse"]


#: a few sample episodes (three embodiments, good and quarantined ones, the episodes tests name) for the
#: tests about the run's mechanics (resume, retire, CLI, object storage, progress): the outcome of every
#: sample episode is checked once, on ``converted``
FEW = ("aloha_transfer_cube/episode_0.hdf5", "aloha_transfer_cube/episode_1.hdf5", "franka_pick_cube/episode_0.hdf5",
       "franka_pick_cube/episode_1.hdf5", "franka_pick_cube/episode_11.hdf5", "ur5_stack_blocks/episode_0.hdf5",
       "ur5_stack_blocks/episode_2.hdf5")


@pytest.fixture(scope="module")
def few(samples, expected, tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    """(a samples root holding ``inhouse/`` with the FEW episodes and the task metadata, their outcomes)."""
    root = tmp_path_factory.mktemp("few")
    for path in (samples / "inhouse").rglob("*"):
        rel = path.relative_to(samples / "inhouse").as_posix()
        if path.is_file() and (rel in FEW or not rel.endswith(".hdf5")):
            (root / "inhouse" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / "inhouse" / rel)
    outcomes = {ref: expected[ref] for ref in FEW}
    assert {v is None for v in outcomes.values()} == {True, False}
    return root, outcomes


@pytest.fixture(scope="module")
def converted(few, tmp_path_factory):
    """One multi-process conversion (the default runner mode), shared by read-only tests; every sample
    of every source is converted (one process) by ``sample_stores`` for test_converter_conformance."""
    samples, _ = few
    store = tmp_path_factory.mktemp("converted") / "inhouse"
    config = ConvertConfig("inhouse", str(samples / "inhouse"), str(store), image=SMALL)
    report = run_conversion(config, workers=2, show_progress=False)
    return store, report


def copy_of(converted, tmp_path: Path) -> tuple[Path, dict]:
    """A private copy of the module's converted store (the same bytes a one-worker run publishes),
    for tests about what a second run does to a published store; and the first run's report."""
    src, report = converted
    shutil.copytree(src, tmp_path / "store")
    return tmp_path / "store", report


def config_for(samples: Path, store: Path) -> ConvertConfig:
    return ConvertConfig("inhouse", str(samples / "inhouse"), str(store), image=SMALL)


def test_every_sample_episode_gets_its_expected_outcome(converted, few):
    (store, report), (_, expected) = converted, few
    outcomes = {e["source_episode"]: e for e in report["episodes"]}
    assert set(outcomes) == set(expected)
    for ref, reason in expected.items():
        entry = outcomes[ref]
        if reason is None:
            assert entry["status"] == "converted", entry
            assert entry["reason"] is None
        else:
            assert entry["status"] == "quarantined", entry
            assert entry["reason"] == reason, entry
            assert ref.split("/")[-1] in entry["message"] or entry["message"]
    assert report["counts"]["converted"] == sum(v is None for v in expected.values())
    assert report["counts"]["quarantined"] == sum(v is not None for v in expected.values())


def test_report_has_counts_and_the_run_its_timing_apart(converted):
    """Timing is returned (and written by ``convert --metrics``) but never published in the store: a
    store's files must be the same however fast the machine, or DVC's lock changes on every clone."""
    store, report = converted
    on_disk = json.loads((store / REPORT_FILE).read_text())
    assert on_disk == {k: v for k, v in report.items() if k != "run"}
    assert report["frames"] > 0 and report["camera_frames"] > report["frames"]
    assert report["run"]["wall_time_s"] > 0 and report["run"]["camera_frames_per_s"] > 0
    assert not {"wall_time_s", "frames_per_s", "camera_frames_per_s"} & set(on_disk)
    for entry in report["episodes"]:
        assert set(entry) >= {"source_episode", "episode_id", "status", "reason", "message"}


def test_converted_store_is_valid_and_indexed(converted, few):
    (store, _), (_, expected) = converted, few
    report = validate_store(store, decode_frames=True)
    assert report.ok, [str(e) for e in report.errors]
    index = pq.read_table(store / "index.parquet").to_pylist()
    assert sorted(r["source_episode"] for r in index) == sorted(k for k, v in expected.items() if v is None)
    assert len({r["embodiment"] for r in index}) >= 2


def test_rerun_skips_completed_episodes_and_resumes_missing_ones(converted, few, tmp_path, monkeypatch):
    """A re-run writes only the missing episodes; for the others it trusts the digest the index records
    (same path and size) instead of hashing every file again, and the index comes out the same."""
    import pipelines.episode_store.index as index_module

    samples, expected = few
    store, _ = copy_of(converted, tmp_path)
    before = (store / "index.parquet").read_bytes()
    files = EpisodeStore(store).episode_files()
    for f in files[:3]:
        f.unlink()
    rows = pq.read_table(store / "index.parquet").to_pylist()
    stale = next(r for r in rows if r["path"] not in {f.relative_to(store).as_posix() for f in files[:3]})
    stale["size_bytes"] += 1  # the index no longer describes this file: it is hashed again
    pq.write_table(pa.Table.from_pylist(rows, schema=index_module.INDEX_SCHEMA), store / "index.parquet")
    hashed = []
    real = index_module.file_sha256
    monkeypatch.setattr(index_module, "file_sha256", lambda path: hashed.append(Path(path).name) or real(path))
    report = run_conversion(config_for(samples, store), workers=1, show_progress=False)
    good = sum(v is None for v in expected.values())
    assert report["counts"]["converted"] == good
    assert report["counts"]["resumed"] == good - 3
    assert sorted(hashed) == sorted([f.name for f in files[:3]] + [Path(stale["path"]).name])
    assert (store / "index.parquet").read_bytes() == before  # rewritten files and re-derived rows are the same
    assert validate_store(store).ok


def test_resume_reconverts_episodes_from_another_converter_version_or_image_settings(converted, few, tmp_path,
                                                                                     monkeypatch):
    from pipelines.episode_store.reader import EpisodeReader

    samples, _ = few
    store, first = copy_of(converted, tmp_path)
    good = first["counts"]["converted"]
    bigger = ImageConfig(height=56, width=72, quality=85)
    report = run_conversion(ConvertConfig("inhouse", str(samples / "inhouse"), str(store), image=bigger), workers=1,
                            show_progress=False)
    assert report["counts"]["converted"] == good and report["counts"]["resumed"] == 0
    for path in EpisodeStore(store).episode_files():
        with EpisodeReader(path) as ep:
            assert {(c["height"], c["width"]) for c in ep.meta["cameras"].values()} == {(56, 72)}
    assert validate_store(store).ok

    monkeypatch.setattr(get_converter("inhouse"), "converter_version", "99.0.0")
    report = run_conversion(ConvertConfig("inhouse", str(samples / "inhouse"), str(store), image=bigger), workers=1,
                            show_progress=False)
    assert report["counts"]["resumed"] == 0
    assert {r["converter_version"] for r in pq.read_table(store / "index.parquet").to_pylist()} == {"99.0.0"}
    report = run_conversion(ConvertConfig("inhouse", str(samples / "inhouse"), str(store), image=bigger), workers=1,
                            show_progress=False)
    assert report["counts"]["resumed"] == good  # nothing changed: everything resumes


def _convert_then_die(config: ConvertConfig, kill_after_frames: int) -> None:
    die_after_encoding(kill_after_frames)
    EpisodeStore.create(config.store_root)
    worker = UnitWorker(config)
    for unit in worker.converter.discover():
        list(worker.convert_unit(unit))


def test_killed_conversion_leaves_no_partial_episode_and_rerun_completes(samples, tmp_path, expected):
    store = tmp_path / "store"
    config = config_for(samples, store)
    child = mp.get_context("fork").Process(target=_convert_then_die, args=(config, 700))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    published = EpisodeStore(store).episode_files()
    assert 0 < len(published) < sum(v is None for v in expected.values())
    report = run_conversion(config, workers=1, show_progress=False)
    assert report["counts"]["resumed"] == len(published)
    assert report["counts"]["converted"] == sum(v is None for v in expected.values())
    assert validate_store(store, decode_frames=True).ok
    assert not (store / ".tmp").exists()


def test_unexpected_converter_bug_is_quarantined_not_fatal(few, tmp_path, monkeypatch):
    samples, expected = few
    cls = get_converter("inhouse")
    real = cls.open_episode

    def buggy(self, ref):
        if ref.endswith("aloha_transfer_cube/episode_1.hdf5"):
            raise ZeroDivisionError("division by zero")
        return real(self, ref)

    monkeypatch.setattr(cls, "open_episode", buggy)
    report = run_conversion(config_for(samples, tmp_path / "s"), workers=1, show_progress=False)
    entry = next(e for e in report["episodes"] if e["source_episode"] == "aloha_transfer_cube/episode_1.hdf5")
    assert entry["status"] == "quarantined" and entry["reason"] == "converter_error"
    assert "ZeroDivisionError" in entry["message"]
    assert report["counts"]["converted"] == sum(v is None for v in expected.values()) - 1


def test_episodes_gone_from_the_input_are_retired_and_reported(few, tmp_path):
    samples, _ = few
    src = tmp_path / "input"
    shutil.copytree(samples / "inhouse", src)
    store = tmp_path / "store"
    config = ConvertConfig("inhouse", str(src), str(store), image=SMALL)
    first = run_conversion(config, workers=1, show_progress=False)
    (src / "franka_pick_cube" / "episode_0.hdf5").unlink()
    second = run_conversion(config, workers=1, show_progress=False)
    assert second["counts"]["converted"] == first["counts"]["converted"] - 1
    assert len(second["stale_episodes"]) == 1
    assert (store / second["stale_episodes"][0]["moved_to"]).is_file()
    assert validate_store(store).ok


@pytest.mark.parametrize("torn", [("stats.json",), ("index.parquet",), ("curation.parquet",)])
def test_a_torn_derived_file_is_rebuilt_and_the_run_completes(converted, few, tmp_path, torn, caplog):
    samples, expected = few
    store, first = copy_of(converted, tmp_path)
    whole = {name: (store / name).read_bytes() for name in torn}
    for name in torn:  # a write cut short: the first bytes only
        (store / name).write_bytes(whole[name][: len(whole[name]) // 3])
    with caplog.at_level("WARNING", logger="a1pipe"):
        again = run_conversion(config_for(samples, store), workers=1, show_progress=False)
    assert again["counts"]["resumed"] == first["counts"]["converted"] == sum(v is None for v in expected.values())
    assert all(name in caplog.text for name in torn)
    assert validate_store(store).ok
    assert json.loads((store / "stats.json").read_text())["sources"].keys() == {"inhouse"}
    assert pq.read_table(store / "index.parquet").num_rows == first["counts"]["converted"]
    assert not [p.name for p in store.iterdir() if ".tmp" in p.name]


def test_the_driver_reads_only_json_from_the_work_dir(few, tmp_path, monkeypatch):
    """Nothing a run leaves in the store's work dir is unpickled: every file the driver reads back is
    JSON lines, and the statistics it publishes are what the episodes give."""
    import pipelines.convert.finalize as finalize_module
    from pipelines.episode_store.index import rebuild_index_and_stats

    samples, _ = few
    seen = {}
    real = finalize_module._load_outcomes

    def spy(work_dir):
        for path in Path(work_dir).rglob("*"):
            if path.is_file():
                seen[path.name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return real(work_dir)

    monkeypatch.setattr(finalize_module, "_load_outcomes", spy)
    store = tmp_path / "store"
    run_conversion(config_for(samples, store), workers=1, show_progress=False)
    assert any(name.startswith("stats") for name in seen) and any(name.startswith("outcomes") for name in seen)
    published = json.loads((store / "stats.json").read_text())
    rebuild_index_and_stats(store)
    rebuilt = json.loads((store / "stats.json").read_text())
    for emb, entry in rebuilt["sources"]["inhouse"]["embodiments"].items():
        have = published["sources"]["inhouse"]["embodiments"][emb]
        assert have["episodes"] == entry["episodes"] and have["frames"] == entry["frames"]
        assert np.allclose(have["action"]["mean"], entry["action"]["mean"])
        assert np.allclose(have["state"]["q99"], entry["state"]["q99"])


def test_a_store_is_the_same_bytes_for_any_worker_count_and_unit_order(converted, few, tmp_path, monkeypatch):
    """Two worker processes (``converted``) and one in this process taking the units in reverse: every
    derived file is the same bytes (statistics merged in any order included), and the report's Beam
    options leave out the worker count, which is the run's record."""
    (src, report), (samples, _) = converted, few
    cls = get_converter("inhouse")
    real = cls.discover
    monkeypatch.setattr(cls, "discover", lambda self: real(self)[::-1])
    again = run_conversion(config_for(samples, tmp_path / "store"), workers=1, show_progress=False)
    for name in ("index.parquet", "stats.json", "curation.parquet", "curation_report.json"):
        assert (tmp_path / "store" / name).read_bytes() == (src / name).read_bytes(), name
    assert again["runner_options"] == report["runner_options"] and "direct_num_workers" not in report["runner_options"]
    assert report["run"]["runner_options"]["direct_num_workers"] == 2


def _convert_and_die_publishing(config: ConvertConfig, name: str) -> None:
    import signal

    from pipelines import storage

    storage.before_publish = lambda dest: os.kill(os.getpid(), signal.SIGKILL) if Path(dest).name == name else None
    run_conversion(config, workers=1, show_progress=False)


@pytest.mark.parametrize("name", ["index.parquet", "stats.json"])  # curation files publish through the same step
def test_a_run_killed_inside_the_final_write_resumes_and_validates(converted, few, tmp_path, name):
    samples, expected = few
    store, _ = copy_of(converted, tmp_path)  # a published store, then a second run dies
    config = config_for(samples, store)
    before = (store / name).read_bytes()
    child = mp.get_context("fork").Process(target=_convert_and_die_publishing, args=(config, name))
    child.start()
    child.join(120)
    assert child.exitcode == -9  # killed between the durable temporary and the rename
    assert (store / name).read_bytes() == before  # the published file is the old one, whole
    assert [p.name for p in store.glob(f".{name}.tmp-*")]  # and the dead run's temporary is left over
    again = run_conversion(config, workers=1, show_progress=False)
    assert again["counts"]["converted"] == sum(v is None for v in expected.values())
    assert validate_store(store).ok
    assert not [p.name for p in store.iterdir() if ".tmp-" in p.name]


def test_a_failed_publish_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    from pipelines.storage import publish_local, write_text

    dest = tmp_path / "report.json"
    write_text(dest, "old\n")

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_local(dest, broken)
    assert dest.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    write_text(dest, "new\n")
    assert dest.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_beam_options_pass_through():
    opts = pipeline_options(3, []).get_all_options()
    assert opts["runner"] == "DirectRunner" and opts["direct_num_workers"] == 3
    assert opts["direct_running_mode"] == "multi_processing"
    opts = pipeline_options(0, ["--runner=FlinkRunner", "--flink_master=host:8081", "--parallelism=8"]).get_all_options()
    assert opts["runner"] == "FlinkRunner" and opts["flink_master"] == "host:8081" and opts["parallelism"] == 8
    assert pipeline_options(1, []).get_all_options()["direct_running_mode"] == "in_memory"
    # workers 0 with a known unit count: every core, but no process without 32 units to keep it busy
    assert pipeline_options(0, [], units=12).get_all_options()["direct_running_mode"] == "in_memory"
    assert pipeline_options(3, [], units=12).get_all_options()["direct_num_workers"] == 3  # an explicit count wins


@pytest.mark.parametrize("units,cores,expected", [(0, 8, 1), (1, 8, 1), (32, 8, 1), (33, 8, 2), (64, 8, 2),
                                                  (65, 8, 3), (10_000, 8, 8), (10_000, 2, 2)])
def test_auto_workers_start_no_process_the_units_cannot_keep_busy(units, cores, expected):
    from pipelines.convert.graph import auto_workers

    assert auto_workers(units, cores) == expected


def test_cli_convert_validate_inspect(few, tmp_path, capsys):
    samples, _ = few
    store = tmp_path / "cli_store"
    argv = ["convert", "--source", "inhouse", "--input", str(samples / "inhouse"), "--output", str(store),
            "--workers", "1", "--image-height", "32", "--image-width", "32", "--quiet"]
    assert cli([*argv, "--metrics", str(tmp_path / "runtime" / "inhouse.json")]) == 0
    assert "converted" in capsys.readouterr().out
    run = json.loads((tmp_path / "runtime" / "inhouse.json").read_text())
    assert run["source"] == "inhouse" and run["workers"] == 1 and run["wall_time_s"] > 0
    assert run["camera_frames"] == json.loads((store / REPORT_FILE).read_text())["camera_frames"] > 0
    # converted again from nothing: every file of the store, reports included, is byte-identical
    first = {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    shutil.rmtree(store)
    assert cli([*argv, "--fail-on-quarantine"]) == 3  # the samples hold deliberately broken episodes
    again = {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert sorted(again) == sorted(first) and [k for k in first if again[k] != first[k]] == []
    capsys.readouterr()
    assert cli(["validate", str(store), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"format_version", "episodes", "frames", "sources", "errors"}
    assert doc["sources"]["inhouse"]["episodes"] == doc["episodes"] > 0
    assert set(doc["sources"]["inhouse"]) == {"episodes", "frames", "embodiments", "cameras", "camera_sources"}
    assert doc["sources"]["inhouse"]["camera_sources"] == {c: [c] for c in doc["sources"]["inhouse"]["cameras"]}
    assert cli(["inspect", str(store)]) == 0
    out = capsys.readouterr().out
    assert "quarantined" in out and "franka" in out
    eid = pq.read_table(store / "index.parquet").column("episode_id")[0].as_py()
    assert cli(["inspect", str(store), "--episode", eid]) == 0
    out = capsys.readouterr().out
    assert eid in out and "from the source's '" in out and ".hdf5:/observations/images/" in out
    (store / "stats.json").unlink()
    assert cli(["validate", str(store)]) == 1
    assert "stats_missing" in capsys.readouterr().out
    assert cli(["convert", "--source", "nope", "--input", str(samples), "--output", str(store)]) == 2


def test_object_storage_output_publishes_whole_episodes_and_resumes(few, tmp_path, monkeypatch):
    samples, expected = few
    from tests.fake_object_store import FakeObjectStore

    monkeypatch.setattr(FakeObjectStore, "root", str(tmp_path / "bucket"))
    config = ConvertConfig("inhouse", str(samples / "inhouse"), "fakeobj://stores/inhouse", image=SMALL)
    first = run_conversion(config, workers=1, show_progress=False)
    good = sum(v is None for v in expected.values())
    assert first["counts"]["converted"] == good
    local_view = tmp_path / "bucket" / "stores" / "inhouse"
    assert validate_store(local_view).ok
    assert not list(local_view.rglob("*.partial"))
    assert not [p for p in (local_view / ".work").rglob("*") if p.is_file()]  # object stores have no empty dirs
    second = run_conversion(config, workers=1, show_progress=False)
    assert second["counts"]["resumed"] == good


def test_two_conversions_cannot_write_one_store_at_once(samples, tmp_path):
    import fcntl

    store = tmp_path / "locked"
    store.mkdir()
    with open(store / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another conversion"):
            run_conversion(config_for(samples, store), workers=1, show_progress=False)


def test_progress_is_shown_while_converting(few, tmp_path, capfd):
    samples, _ = few
    run_conversion(config_for(samples, tmp_path / "p"), workers=1, show_progress=True)
    err = capfd.readouterr().err
    assert "convert inhouse" in err and f"{len(FEW)}/{len(FEW)}" in err


def test_curation_records_kept_and_removed_ranges_and_finds_duplicates(few, tmp_path):
    samples, _ = few
    src = tmp_path / "input"
    shutil.copytree(samples / "inhouse", src)
    shutil.copy(src / "franka_pick_cube" / "episode_0.hdf5", src / "franka_pick_cube" / "episode_99.hdf5")
    store = tmp_path / "store"
    report = run_conversion(ConvertConfig("inhouse", str(src), str(store), image=SMALL), workers=1, show_progress=False)
    rows = {r["episode_id"]: r for r in pq.read_table(store / "curation.parquet").to_pylist()}
    assert len(rows) == report["counts"]["converted"]
    by_ref = {e["source_episode"]: e["episode_id"] for e in report["episodes"]}
    original, copy = rows[by_ref["franka_pick_cube/episode_0.hdf5"]], rows[by_ref["franka_pick_cube/episode_99.hdf5"]]
    duplicate, kept = (copy, original) if copy["episode_id"] > original["episode_id"] else (original, copy)
    assert duplicate["status"] == "quarantined" and duplicate["reason"] == "duplicate_episode"
    assert kept["episode_id"] in duplicate["message"] and kept["status"] == "kept"
    for r in rows.values():
        covered = sorted([(k["start"], k["stop"]) for k in r["kept_ranges"]]
                         + [(k["start"], k["stop"]) for k in r["removed_ranges"]])
        assert covered[0][0] == 0 and covered[-1][1] == r["frames_in"]
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:])), r  # ranges tile the episode
    # the samples have idle prefixes: curation trims them
    assert any(k["reason"] == "idle_prefix" for r in rows.values() for k in r["removed_ranges"])
    summary = json.loads((store / "curation_report.json").read_text())["sources"]["inhouse"]["total"]
    assert summary["quarantined_by_reason"] == {"duplicate_episode": 1}


def test_changing_a_threshold_recurates_without_reencoding(converted, few, tmp_path):
    samples, _ = few
    store, _ = copy_of(converted, tmp_path)
    before = json.loads((store / "curation_report.json").read_text())["sources"]["inhouse"]["total"]
    stricter = ConvertConfig("inhouse", str(samples / "inhouse"), str(store), image=SMALL,
                             curation={"segments": {"min_segment": 60}})
    report = run_conversion(stricter, workers=1, show_progress=False)
    after = json.loads((store / "curation_report.json").read_text())["sources"]["inhouse"]["total"]
    assert report["counts"]["resumed"] == report["counts"]["converted"]  # no episode re-encoded
    assert after["frames_kept"] < before["frames_kept"]
    assert after["frames_removed_by_reason"].get("short_segment", 0) > before["frames_removed_by_reason"].get("short_segment", 0)


def test_curation_summary_metric_plot_and_inspect(converted, tmp_path, capsys):
    store, _ = converted
    metrics, plot = tmp_path / "m" / "curation.json", tmp_path / "p" / "removed.csv"
    assert cli(["curation-summary", str(store), "--metrics", str(metrics), "--plot", str(plot)]) == 0
    doc = json.loads(metrics.read_text())["inhouse"]
    assert 0 < doc["kept_fraction"] < 1 and doc["frames_in"] > doc["frames_kept"]
    lines = plot.read_text().splitlines()
    assert lines[0] == "source,reason,removed_fraction" and any(l.startswith("inhouse,idle_prefix,") for l in lines)
    capsys.readouterr()
    eid = pq.read_table(store / "curation.parquet").column("episode_id")[0].as_py()
    assert cli(["inspect", str(store), "--episode", eid]) == 0
    out = capsys.readouterr().out
    assert "curation: kept" in out and "removed: idle_prefix" in out
    assert cli(["curation-summary", str(tmp_path), "--metrics", str(metrics), "--plot", str(plot)]) == 2


def test_outlier_episode_is_quarantined_naming_dimension_value_and_bound(few, tmp_path):
    import h5py

    samples, _ = few
    src = tmp_path / "input"
    shutil.copytree(samples / "inhouse", src)
    with h5py.File(src / "aloha_transfer_cube" / "episode_1.hdf5", "r+") as f:
        qpos = f["observations/qpos"][()]
        qpos[40, 3] = 57.3  # a radian joint logged in degrees for one frame
        f["observations/qpos"][...] = qpos
    config = ConvertConfig("inhouse", str(src), str(tmp_path / "store"), image=SMALL,
                           curation={"outliers": {"min_frames_for_bounds": 100, "k": 1.0}})
    run_conversion(config, workers=1, show_progress=False)
    rows = pq.read_table(tmp_path / "store" / "curation.parquet").to_pylist()
    flagged = [r for r in rows if r["reason"] == "outlier"]
    assert len(flagged) == 1, [(r["episode_id"], r["message"]) for r in flagged]
    assert "left_joint4" in flagged[0]["message"] and "57.3" in flagged[0]["message"] and "bound" in flagged[0]["message"]
    # the other episodes of the embodiment, extreme poses included, pass
    assert all(r["status"] == "kept" for r in rows if r is not flagged[0])


@pytest.mark.parametrize("bound,quarantined", [(1e40, False)])  # the default bound: tests/bad_inputs.py, every source
def test_garbage_read_as_numbers_is_implausible_from_the_first_episode_on(few, tmp_path, bound, quarantined):
    """No statistics needed: one episode of its embodiment is enough; the bound is a setting."""
    import h5py

    samples, expected = few
    src = tmp_path / "input"
    shutil.copytree(samples / "inhouse", src)
    with h5py.File(src / "aloha_transfer_cube" / "episode_0.hdf5", "r+") as f:
        action = f["action"][()]
        action[7, 2] = 2e36  # four garbage bytes read as a float32
        f["action"][...] = action
    extra = {} if bound is None else {"max_abs_value": bound}
    report = run_conversion(ConvertConfig("inhouse", str(src), str(tmp_path / "store"), image=SMALL, **extra),
                            workers=1, show_progress=False)
    outcome = {e["source_episode"]: e for e in report["episodes"]}
    bad = outcome["aloha_transfer_cube/episode_0.hdf5"]
    if quarantined:
        assert (bad["status"], bad["reason"]) == ("quarantined", "implausible_values")
        assert "frame 7" in bad["message"] and "2e+36" in bad["message"]
    else:
        assert bad["status"] == "converted"
    good = sum(v is None for v in expected.values())
    assert report["counts"]["converted"] == good - quarantined  # every untouched episode converts


def test_duplicates_across_stores_are_listed_once(few, tmp_path):
    samples, _ = few
    from pipelines.curation import cross_store_duplicates

    a, b = tmp_path / "a", tmp_path / "b"
    run_conversion(config_for(samples, a), workers=1, show_progress=False)
    src = tmp_path / "input"
    (src / "franka_pick_cube").mkdir(parents=True)
    shutil.copy(samples / "inhouse" / "franka_pick_cube" / "metadata.json", src / "franka_pick_cube")
    shutil.copy(samples / "inhouse" / "franka_pick_cube" / "episode_1.hdf5", src / "franka_pick_cube" / "episode_77.hdf5")
    run_conversion(ConvertConfig("inhouse", str(src), str(b), image=SMALL), workers=1, show_progress=False)
    twins = cross_store_duplicates([str(a), str(b)])
    assert len(twins) == 1 and twins[0]["store"] != twins[0]["duplicate_of_store"]


def test_image_change_signal_runs_in_the_pipeline(few, converted, tmp_path):
    samples, _ = few
    _, plain = converted  # the same input and settings, without the image signal
    with_images = run_conversion(
        ConvertConfig("inhouse", str(samples / "inhouse"), str(tmp_path / "b"), image=SMALL,
                      curation={"motion": {"image_change": 0.5}}),
        workers=1, show_progress=False,
    )
    assert plain["curation"]["inhouse"]["frames_in"] == with_images["curation"]["inhouse"]["frames_in"]
    # sample frames are rendered from the state: still state = identical frames, so images add no motion
    # beyond what the state shows, and never remove frames
    assert with_images["curation"]["inhouse"]["frames_kept"] >= plain["curation"]["inhouse"]["frames_kept"]
    assert validate_store(tmp_path / "b").ok



def test_image_change_for_one_embodiment_only_runs_in_the_pipeline(few, converted, tmp_path):
    """The image signal enabled for one embodiment (``per_embodiment``) and not for the others: every
    episode is curated, and the others exactly as without it."""
    samples, _ = few
    src, _ = converted
    plain = {r["episode_id"]: r for r in pq.read_table(src / "curation.parquet").to_pylist()}
    embodiment = sorted({r["embodiment"] for r in plain.values()})[0]
    run_conversion(ConvertConfig("inhouse", str(samples / "inhouse"), str(tmp_path / "one"), image=SMALL,
                                 curation={"per_embodiment": {embodiment: {"motion": {"image_change": 0.5}}}}),
                   workers=1, show_progress=False)
    rows = {r["episode_id"]: r for r in pq.read_table(tmp_path / "one" / "curation.parquet").to_pylist()}
    assert rows.keys() == plain.keys()
    for eid, row in rows.items():
        if row["embodiment"] != embodiment:
            assert (row["kept_ranges"], row["removed_ranges"]) == (plain[eid]["kept_ranges"], plain[eid]["removed_ranges"])
        else:
            assert row["frames_kept"] >= plain[eid]["frames_kept"]  # images only ever add motion
    assert validate_store(tmp_path / "one").ok


# ------------------------------------------------------------------------------------------------------------
# Stores on object storage: a real S3 server on the loopback (moto's, ``s3_server`` in conftest.py), one
# conversion into it (``on_s3``), read back by every command that reads stores.


@pytest.fixture(scope="module")
def on_s3(few, s3_server, decoy):
    """``few`` converted into ``s3://<bucket>/stores/inhouse`` with the settings of ``converted``, the S3
    endpoint named by Beam's ``--s3_endpoint_url`` only: the environment names the decoy meanwhile, so a
    request that ignored the option would be refused (and counted)."""
    samples, _ = few
    url = s3_server.url("stores/inhouse")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_S3", decoy.url)
        report = run_conversion(ConvertConfig("inhouse", str(samples / "inhouse"), url, image=SMALL), workers=2,
                                beam_args=[f"--s3_endpoint_url={s3_server.endpoint}"], show_progress=False)
    return url, report


def _s3_objects(s3_server, prefix: str) -> dict[str, bytes]:
    """What the server holds under ``prefix``, read with boto3 itself (not through a1pipe or Beam)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket,
                                                                                  Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k[len(prefix):]: client.get_object(Bucket=s3_server.bucket, Key=k)["Body"].read() for k in keys}


def test_a_store_on_s3_is_the_store_a_local_run_writes(on_s3, converted, s3_server, decoy):
    import hashlib
    import io

    (url, report), (local, local_report) = on_s3, converted
    assert decoy.requests == 0  # every request of the run (driver and both workers) went where the option said
    objects = _s3_objects(s3_server, "stores/inhouse/")
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file() and p.name != ".lock"}
    assert set(objects) == files  # no work files, temporaries or lock left behind
    index = pq.read_table(io.BytesIO(objects["index.parquet"])).to_pylist()
    assert index == pq.read_table(local / "index.parquet").to_pylist()
    assert {r["path"]: r["sha256"] for r in index} == {
        rel: hashlib.sha256(data).hexdigest() for rel, data in objects.items() if rel.startswith("episodes/")}
    for name in ("index.parquet", "curation.parquet", "curation_report.json"):
        assert objects[name] == (local / name).read_bytes(), name
    assert report["store"] == url
    # the same run but for the one Beam option that points it at the S3 server
    assert report["runner_options"]["s3_endpoint_url"].startswith("http://127.0.0.1:")
    assert {k: v for k, v in report.items() if k not in ("store", "run", "runner_options")} == \
        {k: v for k, v in local_report.items() if k not in ("store", "run", "runner_options")}
    assert {k: v for k, v in report["runner_options"].items() if k != "s3_endpoint_url"} == local_report["runner_options"]


def test_reads_go_to_the_endpoint_the_environment_names(on_s3, decoy, monkeypatch):
    """Outside a conversion, boto3's own configuration names the endpoint (here ``AWS_ENDPOINT_URL_S3``)."""
    from pipelines import storage

    url, _ = on_s3
    before = decoy.requests
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", decoy.url)
    storage.use_beam_options([])  # forget the conversion's --s3_endpoint_url (and the client made for it)
    try:
        with pytest.raises(OSError, match="Forbidden"):
            validate_path(url)
    finally:
        monkeypatch.undo()
        storage.use_beam_options([])  # a client made for the decoy's endpoint is not reused
    assert decoy.requests > before


def test_validate_and_inspect_read_a_store_on_s3(on_s3, converted, s3_server, capsys):
    (url, _), (local, _) = on_s3, converted
    for store in (url, s3_server.url("stores")):  # the store, and the directory of stores holding it
        assert cli(["validate", store, "--json", "--decode-frames"]) == 0
        remote = json.loads(capsys.readouterr().out)
        assert remote["stores"] == [url]
    assert cli(["validate", str(local), "--json", "--decode-frames"]) == 0
    assert {k: v for k, v in json.loads(capsys.readouterr().out).items() if k != "stores"} == \
        {k: v for k, v in remote.items() if k != "stores"}
    eid = pq.read_table(local / "index.parquet").column("episode_id")[0].as_py()
    for args in ([], ["--episode", eid]):
        assert cli(["inspect", url, *args]) == 0
        remote = capsys.readouterr().out
        assert cli(["inspect", str(local), *args]) == 0
        assert remote == capsys.readouterr().out.replace(f"store {local} ", f"store {url} ")


@pytest.fixture(scope="module")
def s3_manifest(on_s3, s3_server, tmp_path_factory):
    from pipelines.manifest.build import ManifestParams, build_manifest

    out = tmp_path_factory.mktemp("s3-manifest") / "few"
    build_manifest([s3_server.url("stores")], out, ManifestParams(name="few", validation_fraction=0.0))
    return out


def test_manifest_build_and_verify_read_stores_on_s3(s3_manifest, converted, s3_server, tmp_path):
    """A manifest names stores by directory name: built from the S3 store or from the local run's, it is
    the same, byte for byte; verify re-hashes each episode file from S3."""
    import boto3

    from pipelines.manifest.build import ManifestParams, build_manifest
    from pipelines.manifest.verify import verify_manifest

    local, _ = converted
    build_manifest([local], tmp_path / "few", ManifestParams(name="few", validation_fraction=0.0))
    assert {p.name: p.read_bytes() for p in s3_manifest.iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "few").iterdir()}
    assert verify_manifest(s3_manifest, [s3_server.url("stores")]) == []
    row = pq.read_table(s3_manifest / "episodes.parquet").to_pylist()[0]
    client = boto3.client("s3")
    key = f"stores/inhouse/{row['path']}"
    original = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=original[:-1] + bytes([original[-1] ^ 1]))
    try:
        assert verify_manifest(s3_manifest, [s3_server.url("stores/inhouse")]) == [
            f"{row['episode_id']} (inhouse/{row['path']}): sha256 does not match the manifest"]
    finally:
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=original)


def test_training_reads_a_manifest_whose_stores_are_on_s3(s3_manifest, converted, s3_server, tmp_path):
    """Episode files are downloaded once into the cache, under their sha256, and read there: the samples
    are those of the same manifest over the local run's store."""
    from training.config import AugmentConfig, DataConfig
    from training.data import ManifestData, ManifestDataset

    local, _ = converted
    settings = dict(num_workers=0, batch_size=2, chunk=4, image_size=(32, 32), augment=AugmentConfig(enabled=False),
                    layouts=str(Path(__file__).resolve().parents[1] / "training" / "data" / "layouts.yaml"))
    cache = tmp_path / "cache"
    remote = ManifestData(s3_manifest, DataConfig(data_root=s3_server.url("stores"), cache_dir=str(cache), **settings))
    here = ManifestData(s3_manifest, DataConfig(data_root=str(local.parent), **settings))
    assert [p.name for p in remote.episode_paths] == [f"{r['sha256']}-{Path(r['path']).name}" for r in remote.rows]
    assert all(p.is_relative_to(cache) for p in remote.episode_paths)
    assert [p["store"] for p in remote.normalizer.provenance] == ["inhouse"]  # stats.json, fetched with the index
    for i, r in enumerate(remote.rows):
        frame = r["kept_ranges"][0]["start"]
        a, b = ManifestDataset(remote).sample(i, frame, i), ManifestDataset(here).sample(i, frame, i)
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]) if isinstance(a[key], np.ndarray) else a[key] == b[key], key
    stamps = {p: p.stat().st_mtime_ns for p in remote.episode_paths}
    again = ManifestData(s3_manifest, DataConfig(data_root=s3_server.url("stores"), cache_dir=str(cache), **settings))
    assert {p: p.stat().st_mtime_ns for p in again.episode_paths} == stamps  # nothing downloaded twice


def test_operations_on_s3_share_one_boto3_client(s3_server, monkeypatch):
    """Beam's S3 filesystem would build a client (botocore parses its service model: 0.2-0.6 s here) for every
    operation; ``storage`` has it share one per process and set of options."""
    import boto3

    from pipelines import storage

    made = []
    real = boto3.session.Session
    monkeypatch.setattr(boto3.session, "Session", lambda *a, **k: made.append(1) or real(*a, **k))
    storage.use_beam_options([])
    store = storage.at(s3_server.url("shared-client"))
    store.write_text("d/a.txt", "a")
    assert store.read_text("d/a.txt") == "a" and store.exists("d/a.txt") and store.glob("*/*") == ["d/a.txt"]
    store.delete_tree("d")
    assert not store.exists("d/a.txt")
    assert len(made) == 1


@pytest.mark.parametrize("url, module, extra", [("s3://bucket/store", "boto3", "a1pipe[aws]"),
                                                ("gs://bucket/store", "google.cloud.storage", "a1pipe[gcp]")])
def test_an_object_store_without_its_client_library_names_the_extra_to_install(few, url, module, extra, monkeypatch,
                                                                               capsys):
    import sys

    samples, _ = few
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert cli(["convert", "--source", "inhouse", "--input", str(samples / "inhouse"), "--output", url]) == 2
    err = capsys.readouterr().err
    assert f"pip install '{extra}'" in err and "Traceback" not in err
    for read in (["validate", url], ["inspect", url]):
        assert cli(read) == 2
        assert f"pip install '{extra}'" in capsys.readouterr().err
    assert cli(["validate", "nosuch://bucket/store"]) == 2
    assert "Apache Beam has no filesystem for nosuch://" in capsys.readouterr().err
