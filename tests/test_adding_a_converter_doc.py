"""The worked example in docs/adding_a_converter.md runs as written and converts as the doc says."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

import converters
from pipelines.convert import ConvertConfig, run_conversion
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.validator import validate_store
from pipelines.samples import write_samples

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding_a_converter.md"


@pytest.fixture
def npylab(monkeypatch, tmp_path):
    from converters import base as converter_base

    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(code) == 2, "the doc has two python examples: the converter and its sample generator"
    card = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(card) == 1, "the doc shows the example's source card"
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "npylab.yaml").write_text(card[0])
    monkeypatch.setattr(converter_base, "CARDS_DIR", tmp_path / "cards")
    namespace: dict = {"__name__": "npylab_example"}
    monkeypatch.setattr(converters, "REGISTRY", dict(converters.REGISTRY))
    exec(compile(code[0], str(DOC), "exec"), namespace)
    # where step 6 puts the generator, and the CONVERTERS entry of step 7 that `a1pipe samples` finds it by
    generator = types.ModuleType("pipelines.samples.npylab")
    exec(compile(code[1], str(DOC), "exec"), generator.__dict__)
    monkeypatch.setitem(sys.modules, generator.__name__, generator)
    monkeypatch.setitem(converters.CONVERTERS, "npylab", namespace["__name__"])
    return converters.REGISTRY["npylab"]


def test_worked_example_converts_as_documented(npylab, tmp_path):
    expected = write_samples(tmp_path, seed=0, sources=["npylab"])["npylab"]
    report = run_conversion(
        ConvertConfig("npylab", str(tmp_path / "npylab"), str(tmp_path / "store"), image=ImageConfig(height=24, width=32)),
        workers=1,
        show_progress=False,
    )
    got = {e["source_episode"]: e["reason"] for e in report["episodes"]}
    assert got == expected == {"wipe/ep0": None, "wipe/ep1": None, "wipe/ep2": "missing_metadata", "wipe/ep3": "non_finite_values"}
    nan = next(e for e in report["episodes"] if e["source_episode"] == "wipe/ep3")
    assert "frame 5" in nan["message"] and "target_joint_2" in nan["message"]
    assert validate_store(tmp_path / "store").ok
    from pipelines.episode_store.reader import EpisodeStore

    store = EpisodeStore(tmp_path / "store")
    eid = next(e["episode_id"] for e in report["episodes"] if e["source_episode"] == "wipe/ep0")
    with store.open_episode(eid) as stored:  # the camera's provenance, as the doc tells converters to give it
        assert stored.meta["cameras"]["front"]["source"] == {"name": "rgb", "file": "wipe/ep0/rgb.npy"}
