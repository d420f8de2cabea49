"""What training publishes is either the old file or the whole new one, never a torn one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.io import publishing, write_json, write_text


def test_a_failed_write_leaves_the_published_file_and_no_temporary(tmp_path):
    path = tmp_path / "thresholds.json"
    write_json(path, {"c": 0.7})
    with pytest.raises(RuntimeError), publishing(path) as tmp:
        tmp.write_text('{"c": 0.')  # half written, then the run dies
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"c": 0.7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thresholds.json"]


def test_a_clean_write_replaces_the_file_and_creates_its_folder(tmp_path):
    path = tmp_path / "reports" / "metrics.json"
    write_json(path, {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n "a": 2,\n "b": 1\n}\n'
    write_text(path, "x\n")
    assert path.read_text() == "x\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_the_temporary_keeps_the_suffix_so_savez_writes_where_it_is_told(tmp_path):
    path = tmp_path / "discrepancies.npz"
    with publishing(path) as tmp:
        np.savez_compressed(tmp, a=np.arange(3))
    assert np.load(path)["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["discrepancies.npz"]


def test_a_checkpoint_of_the_same_weights_is_the_same_bytes(tmp_path):
    """DVC hashes the checkpoint: equal weights must give equal files, every time (safetensors writes
    metadata in hash-map order, so more than one metadata key would not)."""
    import torch

    from training.checkpoint import WEIGHTS_FILE, save_checkpoint

    class Saves:
        def save(self, path):
            with open(path if str(path).endswith(".json") else f"{path}/data_spec.json", "w") as fh:
                fh.write("{}\n")

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    files = [save_checkpoint(tmp_path / f"run{i}", model=model, config={"step": 1}, spec=Saves(), tokenizer=Saves(),
                             train_state={"step": 1}) / WEIGHTS_FILE for i in range(8)]
    assert len({f.read_bytes() for f in files}) == 1
