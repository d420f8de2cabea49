"""Manifest build and verify on converted sample stores."""

from __future__ import annotations

import shutil
from collections import defaultdict

import pyarrow.parquet as pq
import pytest

from pipelines.convert import ConvertConfig, run_conversion
from pipelines.episode_store.images import ImageConfig
from pipelines.manifest.build import ManifestParams, build_manifest, verify_manifest
from pipelines.samples import write_samples


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("manifest")
    out = []
    for source in ("inhouse", "robomind"):
        write_samples(base / "samples", seed=0, sources=[source])
        store = base / "stores" / source
        run_conversion(ConvertConfig(source, str(base / "samples" / source), str(store),
                                     image=ImageConfig(height=32, width=32)), workers=1, show_progress=False)
        out.append(store)
    return out


def test_two_builds_are_byte_identical_and_shares_are_two_level(stores, tmp_path):
    params = ManifestParams(name="pretrain", validation_fraction=0.2, seed=1)
    a = build_manifest(stores, tmp_path / "a", params)
    build_manifest(list(reversed(stores)), tmp_path / "b", params)
    for name in ("episodes.parquet", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    rows = pq.read_table(tmp_path / "a" / "episodes.parquet").to_pylist()
    train = [r for r in rows if r["split"] == "train"]
    by_dataset = defaultdict(float)
    for r in train:
        by_dataset[r["dataset"]] += r["probability"]
    assert by_dataset == pytest.approx({"inhouse": 0.5, "robomind": 0.5})
    assert {r["split"] for r in rows} == {"train", "validation"}
    assert a["counts"]["train"]["episodes"] == len(train)


def test_verify_passes_then_names_every_kind_of_mismatch(stores, tmp_path):
    work = tmp_path / "stores"
    copies = [shutil.copytree(s, work / s.name) for s in stores]
    build_manifest(copies, tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    assert verify_manifest(tmp_path / "m", copies) == []
    rows = pq.read_table(tmp_path / "m" / "episodes.parquet").to_pylist()
    flipped = work / "inhouse" / next(r["path"] for r in rows if r["dataset"] == "inhouse")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    missing = work / "robomind" / next(r["path"] for r in rows if r["dataset"] == "robomind")
    missing.unlink()
    problems = verify_manifest(tmp_path / "m", copies)
    assert any(flipped.name[: -len(".zarr.zip")] in p and "sha256" in p for p in problems)
    assert any(missing.name[: -len(".zarr.zip")] in p and "missing" in p for p in problems)


def test_cli_build_and_verify(stores, tmp_path, capsys):
    from pipelines.cli import main as cli

    params = tmp_path / "params.yaml"
    params.write_text("manifests:\n  pretrain:\n    validation_fraction: 0.1\n    seed: 2\n")
    out = tmp_path / "manifests" / "pretrain"
    assert cli(["manifest", "build", *map(str, stores), "--name", "pretrain", "--out", str(out), "--params", str(params)]) == 0
    text = capsys.readouterr().out
    assert "pretrain train:" in text and "share 0.5000" in text
    assert cli(["manifest", "verify", str(out), "--data", *map(str, stores)]) == 0
    assert cli(["manifest", "verify", str(out), "--data", str(stores[0])]) == 1
    assert "not among the given stores" in capsys.readouterr().out
