"""The throughput benchmark still runs end to end (tiny sizes; it asserts nothing about speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_in_process(name: str, argv: list[str]) -> int:
    """A benchmark's main() in this process: the same code path as its command line, without paying
    another interpreter's torch and transformers start-up for every smoke test."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its pool workers (forked) unpickle its functions by module name
    spec.loader.exec_module(module)
    return module.main(argv)


def test_convert_throughput_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert run_in_process("convert_throughput", ["--episodes", "2", "--frames", "20", "--cameras", "2", "--height", "96",
                                                 "--width", "128", "--workers", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["conversion"]["camera_frames"] == 2 * 20 * 2 == figures["ceiling"]["camera_frames"]
    assert figures["conversion"]["ratio_to_ceiling"] > 0
    assert "RATIO conversion / ceiling" in capsys.readouterr().out


def test_manifest_cost_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert run_in_process("manifest_cost", ["--episodes", "70", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["table"]["episodes"] == 70 and figures["table"]["build_over_floor"] > 0
    assert "RATIO build / floor" in capsys.readouterr().out


def test_loader_throughput_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert run_in_process("loader_throughput", ["--episodes", "3,6", "--frames", "8", "--size", "64", "--batch", "4",
                                                "--chunk", "5", "--batches", "2", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert [r["episodes"] for r in figures["runs"]] == [3, 6]
    for run in figures["runs"]:
        assert run["ceiling"]["samples"] == 3 * 4 and run["ceiling"]["one_process"] > 0
        for key in ("loader_w0_plain", "loader_w2_plain", "loader_w0_augment", "loader_w2_augment"):
            assert run[key]["samples"] == 2 * 4 and run[key]["ratio_to_ceiling"] > 0 and not run[key]["decode_errors"]
        assert len(run["loader_w2_plain"]["worker_peak_rss_mib"]) == 2
    assert "ratio" in stdout and "worker peak RSS" in stdout


def test_train_throughput_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert run_in_process("train_throughput", ["--steps", "2", "--episodes", "4", "--batch", "4", "--chunk", "5",
                                               "--heads", "fm", "--modes", "random", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    figures = json.loads(out.read_text())
    (row,) = figures["tiny"]
    assert (row["head"], row["mode"]) == ("fm", "random") and row["samples_per_s"] > 0
    assert 0 <= row["data_wait_share"] < 1 and row["ratio_loader_fed_to_memory_fed"] > 0
    assert "skipped" in figures["molmo_7b_d_gpu"] or figures["molmo_7b_d_gpu"]["step_s_mean"] > 0
    assert "RATIO" in stdout


def test_calibration_cost_and_early_exit_latency_benchmarks_run(tmp_path, capsys):
    import torch

    out = tmp_path / "cal.json"
    assert run_in_process("calibration_cost", ["--samples", "3000", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["identical"] and figures["samples"] == 3000 and figures["budget"]["met"]
    out = tmp_path / "latency.json"
    threads = torch.get_num_threads()
    try:
        assert run_in_process("early_exit_latency", ["--queries", "3", "--chunk", "5", "--heads", "fm",
                                                     "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads(out.read_text())["tiny"]
    assert [r["mode"] for r in rows][0] == "no exit" and len(rows) == 4 and rows[0]["ratio_to_no_exit"] == 1.0
    assert all(r["gflops_per_query"] > 0 for r in rows) and "RATIO" in capsys.readouterr().out
