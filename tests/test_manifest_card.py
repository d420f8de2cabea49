"""MANIFEST.md and composition.svg: numbers match manifest.json, nothing left unsaid, byte-deterministic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import matplotlib as mpl
import pytest

from pipelines.manifest.card import composition_svg, manifest_card
from pipelines.manifest.weights import episode_probabilities

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {  # dataset -> embodiment -> frames_kept of each train episode
    "alpha": {"franka": [100, 50], "ur5": [30]},
    "beta": {"aloha": [400, 400, 200]},
    "gamma": {"franka": [10], "g1": [60, 60], "realman": [5]},
}


def _manifest() -> tuple[dict, list[dict]]:
    rows = [{"episode_id": f"{d}-{e}-{i}", "dataset": d, "embodiment": e, "store": d, "frames_kept": n,
             "split": "train", "kept_ranges": [{"start": 0, "stop": n}]}
            for d, embs in GROUPS.items() for e, ns in embs.items() for i, n in enumerate(ns)]
    rows.append({"episode_id": "beta-aloha-v", "dataset": "beta", "embodiment": "aloha", "store": "beta",
                 "frames_kept": 70, "split": "validation", "kept_ranges": [{"start": 0, "stop": 70}]})
    weights = {"alpha": 2.0, "beta": 1.0, "gamma": 1.0}
    shares = {}
    for split in ("train", "validation"):
        members = [r for r in rows if r["split"] == split]
        present = {r["dataset"] for r in members}
        _, shares[split] = episode_probabilities(members, dataset_weights={d: w for d, w in weights.items()
                                                                           if d in present})
    manifest = {
        "format_version": 1, "name": "toy", "code_version": "a1pipe 0.1.0",
        "parameters": {"name": "toy", "within": "frames", "validation_fraction": 0.1, "split_seed": 3,
                       "dataset_weights": weights, "description": "A toy mixture for the card tests.",
                       "include": {"sources": [], "embodiments": ["franka", "ur5", "aloha", "g1", "realman"],
                                   "instructions": [], "source_episodes": []}},
        "inputs": [{"store": d, "source": d, "index_sha256": f"{i}" * 64, "curation_sha256": f"{i + 4}" * 64}
                   for i, d in enumerate(GROUPS, 1)],
        "excluded": {"conversion_quarantine": {"corrupt_file": 3, "missing_camera": 1},
                     "curation_removed": {"static_episode": 2, "too_short": 5}, "not_included": 4,
                     "cross_store_duplicates": [{"episode_id": "gamma-dup", "store": "gamma",
                                                 "duplicate_of": "alpha-orig", "duplicate_of_store": "alpha"}]},
        "counts": {s: {"episodes": sum(r["split"] == s for r in rows),
                       "frames_kept": sum(r["frames_kept"] for r in rows if r["split"] == s)}
                   for s in ("train", "validation")},
        "shares": shares,
        "table": {"file": "episodes.parquet", "rows": len(rows), "sha256": "ab" * 32},
    }
    return manifest, rows


def _card(license: str, title: str) -> SimpleNamespace:
    return SimpleNamespace(title=title, url=f"https://example.org/{title}", license=license,
                           citation=f"{title}: a dataset (arXiv 0000.00000)", collection="Teleoperated demos.",
                           collection_type=("Teleoperation",), biases=(f"{title} bias",),
                           limitations=(f"{title} limitation",), personal_information=("faces may be visible",),
                           unverified=(f"{title} scale",))


CARDS = {"alpha": _card("CC-BY-4.0", "Alpha"), "beta": _card("Apache-2.0", "Beta"), "gamma": None}


def _table(card: str, split: str) -> list[list[str]]:
    section = card.split(f"### {split}\n", 1)[1].strip().split("\n\n", 1)[0]
    return [[c.strip().strip("*") for c in line.strip("|").split(" | ")] for line in section.splitlines()[2:]]


def test_svg_is_wellformed_and_byte_deterministic(tmp_path):
    manifest, rows = _manifest()
    svg = composition_svg(manifest, rows)
    root = ET.fromstring(svg.encode())
    texts = {"".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"alpha", "beta", "gamma", "franka", "g1"} <= texts
    assert "toy" in svg
    before = dict(mpl.rcParams)
    assert composition_svg(manifest, rows) == svg
    with mpl.rc_context({"font.size": 20, "svg.fonttype": "path", "svg.hashsalt": None, "axes.prop_cycle":
                         mpl.cycler(color=["k"])}):
        assert composition_svg(manifest, rows) == svg  # the caller's settings do not leak in
    assert dict(mpl.rcParams) == before  # and ours do not leak out
    (tmp_path / "in.json").write_text(json.dumps([manifest, rows]))
    code = ("import json, sys; from pipelines.manifest.card import composition_svg; "
            "m, r = json.load(open(sys.argv[1])); sys.stdout.write(composition_svg(m, r))")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.json")], capture_output=True,
                           text=True, check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}).stdout
    assert other == svg


def test_composition_tables_match_manifest_and_subtotals_add_up():
    manifest, rows = _manifest()
    card = manifest_card(manifest, rows, CARDS)
    assert card == manifest_card(manifest, rows, CARDS)
    for split in ("train", "validation"):
        shares, counts = manifest["shares"][split]["datasets"], manifest["counts"][split]
        table = _table(card, split)
        *body, total = table
        assert total[0] == "total" and total[2:4] == [str(counts["episodes"]), str(counts["frames_kept"])]
        assert total[4:] == ["100.0000%", "100.0000%"]
        seen, sub = set(), {"episodes": 0, "frames": 0}
        for d, e, eps, frames, share, natural in body:
            if e.startswith("subtotal"):
                assert (int(eps), int(frames)) == (sub["episodes"], sub["frames"])
                assert share == f"{100 * shares[d]['share']:.4f}%"
                assert natural == f"{100 * sub['frames'] / counts['frames_kept']:.4f}%"
                sub = {"episodes": 0, "frames": 0}
                continue
            v = shares[d]["embodiments"][e]
            assert (int(eps), int(frames)) == (v["episodes"], v["frames_kept"])
            assert share == f"{100 * v['share']:.4f}%"
            assert natural == f"{100 * v['frames_kept'] / counts['frames_kept']:.4f}%"
            sub["episodes"] += int(eps)
            sub["frames"] += int(frames)
            seen.add((d, e))
        assert seen == {(d, e) for d in shares for e in shares[d]["embodiments"]}
        subtotals = [r for r in body if r[1].startswith("subtotal")]
        assert len(subtotals) == len(shares)
        assert sum(int(r[2]) for r in subtotals) == counts["episodes"]
        assert sum(int(r[3]) for r in subtotals) == counts["frames_kept"]
        assert sum(float(r[4][:-1]) for r in subtotals) == pytest.approx(100, abs=1e-3)
    assert "| alpha | subtotal (2 embodiments) | 3 | 180 | 50.0000% |" in card.replace("**", "")
    assert "![composition](composition.svg)" in card


def test_card_names_every_exclusion_license_and_missing_card():
    manifest, rows = _manifest()
    card = manifest_card(manifest, rows, {"alpha": CARDS["alpha"], "beta": CARDS["beta"]})  # gamma: no key
    assert manifest_card(manifest, rows, CARDS) == card  # an absent key reads as a None card
    excluded = manifest["excluded"]
    for key in ("conversion_quarantine", "curation_removed"):
        for reason, n in excluded[key].items():
            assert f"| {reason} | {n} |" in card
    assert "**Not selected by the include filters:** 4 kept episodes." in card
    assert "| `gamma-dup` | gamma | `alpha-orig` | alpha |" in card
    for name, c in CARDS.items():
        if c is not None:
            for text in (c.license, c.title, c.url, c.citation, *c.biases, *c.limitations, *c.unverified):
                assert text in card
    gamma = card.split("### gamma\n", 1)[1].split("\n### ", 1)[0]
    assert "card missing" in gamma
    assert "alpha 2, beta 1, gamma 1" in card and "seed 3" in card and "validation fraction 0.1" in card
    assert "embodiments `franka`" in card and "A toy mixture for the card tests." in card
    assert ("a1pipe manifest verify manifests/toy --data data/converted/alpha data/converted/beta "
            "data/converted/gamma") in card
    assert "a1pipe manifest inspect manifests/toy" in card
    for i in manifest["inputs"]:
        assert i["index_sha256"] in card and i["curation_sha256"] in card
    assert manifest["table"]["sha256"] in card


def test_outputs_have_no_absolute_paths_or_dates():
    manifest, rows = _manifest()
    for text in (manifest_card(manifest, rows, CARDS), composition_svg(manifest, rows)):
        assert not re.search(r"(?<![\w:/.<-])/(?:[A-Za-z]|$)", text, re.M)  # URLs, </tag> and a/b are fine
        assert not re.search(r"[A-Za-z]:\\", text)
        assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", text)
