"""Batches from every committed sample manifest, over the stores ``make repro`` builds.

The stores are ``data/converted`` when ``make repro`` has built them and they are the ones
the committed manifests record; otherwise the session's ``sample_stores`` and ``sim_store``
(the samples and the Meta-World demonstrations converted exactly as the DVC stages convert
them), which must be those same stores: the committed manifests are reproducible from a
clean clone, and training can read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.manifest.format import file_sha256
from training.config import DataConfig
from training.data import ManifestData, ManifestLoader

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(p.parent.name for p in (REPO / "manifests").glob("*/manifest.json"))
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _recorded_inputs() -> dict[str, str]:
    inputs: dict[str, str] = {}
    for name in MANIFESTS:
        for entry in json.loads((REPO / "manifests" / name / "manifest.json").read_text())["inputs"]:
            inputs[entry["store"]] = entry["index_sha256"]
    return inputs


def _matches(root: Path, inputs: dict[str, str]) -> bool:
    return all((root / s / "index.parquet").is_file() and file_sha256(root / s / "index.parquet") == sha
               for s, sha in inputs.items())


@pytest.fixture(scope="module")
def stores(request, tmp_path_factory) -> Path:
    inputs = _recorded_inputs()
    built = REPO / PARAMS["convert"]["out"]
    if _matches(built, inputs):
        return built
    converted, _ = request.getfixturevalue("sample_stores")
    root = tmp_path_factory.mktemp("stores")
    for store in converted.iterdir():
        (root / store.name).symlink_to(store)
    if "metaworld" in inputs:
        (root / "metaworld").symlink_to(request.getfixturevalue("sim_store"))
    mismatched = sorted(s for s, sha in inputs.items()
                        if not (root / s / "index.parquet").is_file() or file_sha256(root / s / "index.parquet") != sha)
    assert not mismatched, f"converting the samples no longer reproduces the committed manifests' stores {mismatched}"
    return root


def test_there_are_committed_manifests():
    assert {"pretrain", "a1_mixture", "finetune_robochallenge", "finetune_rc_arrange_paper_cups",
            "finetune_metaworld"} <= set(MANIFESTS)


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_committed_manifest_yields_batches(stores, name):
    config = DataConfig(data_root=str(stores), num_workers=0, batch_size=8, chunk=50, image_size=(224, 224),
                        normalization="bounds_q99", layouts=str(REPO / "training" / "data" / "layouts.yaml"))
    data = ManifestData(REPO / "manifests" / name, config)
    loader = ManifestLoader(data)
    kept = {r["episode_id"]: [(k["start"], k["stop"]) for k in r["kept_ranges"]] for r in data.rows}
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == 3:
            break
    assert loader.decode_errors == 0
    for b in batches:
        assert b["size"] == 8 and b["images"].shape == (8, 3, 224, 224, 3)
        assert b["image_mask"][:, 0].all()  # every embodiment has a primary camera
        assert b["action"].shape == (8, 50, 32) and b["state"].shape == (8, 32)
        valid = b["action_time_mask"][:, :, None] & b["action_mask"][:, None, :]
        assert valid.any() and float(b["action"].abs()[valid].max()) <= 1.0  # bounds_q99
        assert not b["action"][~valid].any()
        assert all(t.strip() for t in b["text"])
        for episode, frame in zip(b["episode_id"], b["frame"].tolist()):
            assert any(a <= frame < z for a, z in kept[episode])
    groups = {(r["dataset"], r["embodiment"]) for r in data.rows}
    assert len(data.normalizer.groups) == len(groups)


def test_two_workers_deliver_the_same_batches_as_none(stores):
    config = DataConfig(data_root=str(stores), batch_size=4, chunk=10, image_size=(112, 112),
                        layouts=str(REPO / "training" / "data" / "layouts.yaml"), samples_per_epoch=24)
    data = ManifestData(REPO / "manifests" / "pretrain", config)
    inline = list(ManifestLoader(data, num_workers=0))
    workers = list(ManifestLoader(data, num_workers=2))
    assert len(inline) == len(workers) == 6
    for a, b in zip(inline, workers):
        assert a["episode_id"] == b["episode_id"]
        assert np.array_equal(a["images"].numpy(), b["images"].numpy())
