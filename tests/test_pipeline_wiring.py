"""The chain's wiring: one table of converters, one table of datasets, and DVC stages that depend on
what they read, so a source added as documented is converted, summarised and released, and an edit
re-runs only the stages whose code it touches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import converters

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_converter_is_a_dataset_of_the_chain_and_every_dataset_names_a_converter():
    sources = PARAMS["sources"]
    assert list(converters.SOURCE_NAMES) == list(converters.CONVERTERS) == converters.available_sources()
    named = {name: spec["converter"] for name, spec in sources.items()}
    assert set(named.values()) <= set(converters.CONVERTERS), named
    assert set(converters.CONVERTERS) <= set(named), "a converter no dataset of params.yaml uses is never converted"


def test_no_stage_lists_the_datasets_itself():
    """The datasets come from params.yaml's sources table (foreach, or --params), never restated."""
    text = (ROOT / "dvc.yaml").read_text()
    out = PARAMS["convert"]["out"]
    for name in PARAMS["sources"]:
        assert f"{out}/{name}" not in text and f"${{convert.out}}/{name}" not in text, name
    assert DVC["stages"]["convert"]["foreach"] == "${sources}"
    assert "--params params.yaml" in DVC["stages"]["curation_summary"]["cmd"]


def _file_of(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _convert_deps(source: str) -> list[Path]:
    item = PARAMS["sources"][source]
    deps = DVC["stages"]["convert"]["do"]["deps"]
    return [ROOT / d.replace("${item.converter}", item["converter"]) for d in deps if "${item.root}" not in d]


def test_a_conversion_depends_on_every_module_it_imports_and_on_no_other_converter():
    """Each convert@ stage lists the code a conversion runs (checked against what importing it loads), and
    not the other converters: editing one converter re-runs one conversion, and editing manifest or
    training code re-runs none."""
    code = (
        "import json, sys\n"
        "import pipelines.cli, pipelines.convert, pipelines.curation\n"
        "from converters import CONVERTERS, get_converter\n"
        "seen = set(sys.modules); out = {'shared': sorted(m for m in seen if m.startswith(('pipelines', 'converters')))}\n"
        "for name in CONVERTERS:\n"
        "    get_converter(name)\n"
        "    out[name] = sorted(m for m in set(sys.modules) - seen if m.startswith(('pipelines', 'converters')))\n"
        "    seen = set(sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    for source, spec in PARAMS["sources"].items():
        deps = _convert_deps(source)
        modules = loaded["shared"] + loaded[spec["converter"]]
        for module in modules:
            f = _file_of(module)
            assert any(f == d or d in f.parents for d in deps), f"convert@{source} reads {f.relative_to(ROOT)}"
        others = [ROOT / "converters" / f"{c}.py" for c in converters.CONVERTERS if c != spec["converter"]]
        assert not any(o == d or d in o.parents for o in others for d in deps), source
        for unrelated in ("pipelines/manifest/card.py", "training/train.py", "pipelines/samples/__init__.py"):
            assert not any(ROOT / unrelated == d or d in (ROOT / unrelated).parents for d in deps), unrelated


def test_the_samples_stage_depends_on_the_generators_and_what_they_import_from_converters(monkeypatch):
    """Every converter has a generator, found by its name in the converter table, and the samples stage
    lists the generator code and the converter code it imports (no second list of sources)."""
    code = (
        "import json, sys\n"
        "from converters import CONVERTERS\n"
        "from pipelines.samples import generator\n"
        "for name in CONVERTERS:\n"
        "    assert callable(generator(name).write_samples) and callable(generator(name).write_synthetic), name\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('pipelines.samples', 'converters')))))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    deps = [ROOT / d for d in DVC["stages"]["samples"]["deps"]]
    for module in json.loads(run.stdout.strip().splitlines()[-1]):
        f = _file_of(module)
        assert any(f == d or d in f.parents for d in deps), f"samples reads {f.relative_to(ROOT)}"
    from pipelines.samples import generator

    with pytest.raises(KeyError, match="no converter registered for source 'nowhere'"):
        generator("nowhere")
    monkeypatch.setitem(converters.CONVERTERS, "nowhere", "converters.nowhere")
    with pytest.raises(NotImplementedError, match="no sample generator: write pipelines/samples/nowhere.py"):
        generator("nowhere")


def test_every_dataset_has_a_source_card_as_data_and_a_release_reads_no_converter():
    from converters.base import CARDS_DIR, SourceCard, cards_for

    for dataset in PARAMS["sources"]:
        card = SourceCard.load(dataset)
        assert card.title.strip() and card.license.strip() and card.biases and card.limitations, dataset
    assert set(cards_for({"metaworld", "nowhere"})) == {"metaworld", "nowhere"}
    assert cards_for({"nowhere"})["nowhere"] is None  # stated as missing in the release, not invented
    assert SourceCard.load("metaworld") != SourceCard.load("inhouse")  # same converter, its own card
    assert {p.stem for p in CARDS_DIR.glob("*.yaml")} == set(PARAMS["sources"])
    code = ("import sys, pipelines.manifest.build, pipelines.manifest.release, pipelines.manifest.verify; "
            "from converters.base import cards_for; "
            "cards_for({'droid', 'metaworld'}); "
            "print(sorted(m for m in sys.modules if m.startswith('converters.')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[-2] == "['converters.base']"
    deps = DVC["stages"]["manifests"]["do"]["deps"]
    assert "converters" not in deps and "converters/cards" in deps


def test_a_card_that_is_not_a_card_is_named(tmp_path, monkeypatch):
    import converters.base as base

    monkeypatch.setattr(base, "CARDS_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text("title: [unclosed\n")
    (tmp_path / "odd.yaml").write_text("title: x\nshoe_size: 9\n")
    for name, message in (("bad", "not valid YAML"), ("odd", "a source card is a mapping")):
        with pytest.raises(ValueError, match=f"{name}.yaml.*{message}"):
            base.SourceCard.load(name)
