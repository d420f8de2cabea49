"""Every registered converter, end to end on its own generated samples.

For each source: generate native-format samples, convert them through the Beam
pipeline, and hold the result to the answer the sample generator declared (every
good episode converted, every broken one quarantined with its specific reason),
then validate the store.
"""

from __future__ import annotations

import json

import pytest

from converters import available_sources
from pipelines.convert import ConvertConfig, run_conversion
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.validator import validate_store
from pipelines.samples import EXPECTED_FILE, write_samples


@pytest.mark.parametrize("source", available_sources())
def test_source_samples_convert_to_their_declared_outcomes(source, tmp_path):
    expected = write_samples(tmp_path / "samples", seed=1, sources=[source])[source]
    assert json.loads((tmp_path / "samples" / EXPECTED_FILE).read_text())[source] == expected
    assert any(v is None for v in expected.values()), "samples need good episodes"
    assert any(v is not None for v in expected.values()), "samples need deliberately broken episodes"
    config = ConvertConfig(source, str(tmp_path / "samples" / source), str(tmp_path / "store"),
                           image=ImageConfig(height=32, width=32, quality=80))
    report = run_conversion(config, workers=1, show_progress=False)
    got = {e["source_episode"]: e["reason"] for e in report["episodes"]}
    assert got == expected
    store_report = validate_store(tmp_path / "store")
    assert store_report.ok, [str(e) for e in store_report.errors]
    assert len(store_report.sources[source]["embodiments"]) >= 2 or source in {"droid"}
