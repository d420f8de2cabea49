"""Manifest diff and inspect on small hand-made manifests (no stores needed)."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.manifest.build import ManifestParams, assign_probabilities
from pipelines.manifest.format import MANIFEST_FORMAT, SPLITS, TABLE_SCHEMA, file_sha256
from pipelines.manifest.compare import diff_manifests, format_diff, inspect_json, inspect_manifest

INPUTS = [{"store": s, "source": s, "index_sha256": f"{s}-index".ljust(64, "0"),
           "curation_sha256": f"{s}-curation".ljust(64, "0")} for s in ("droid", "inhouse", "robomind")]


def ep(episode_id, dataset, embodiment, ranges=((0, 100),), split="train", sha=None):
    ranges = [{"start": a, "stop": b} for a, b in ranges]
    return {"episode_id": episode_id, "dataset": dataset, "embodiment": embodiment, "robot_type": embodiment,
            "store": dataset, "path": f"episodes/{episode_id}.zarr.zip",
            "sha256": sha or hashlib.sha256(episode_id.encode()).hexdigest(), "source_episode": episode_id,
            "instruction": "pick", "num_frames": 200, "frames_kept": sum(r["stop"] - r["start"] for r in ranges),
            "kept_ranges": ranges, "split": split, "probability": 0.0}


def make_manifest(out, rows, *, name="m", inputs=INPUTS, excluded=None, **params):
    """A manifest directory as build_manifest lays it out, from rows instead of stores."""
    p = ManifestParams(name=name, **params)
    rows = sorted((dict(r) for r in rows), key=lambda r: (r["dataset"], r["embodiment"], r["episode_id"]))
    shares = assign_probabilities(rows, p)
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), out / "episodes.parquet", compression="zstd")
    manifest = {
        "format_version": MANIFEST_FORMAT, "name": name, "parameters": p.to_json(), "code_version": "a1pipe test",
        "inputs": inputs,
        "excluded": excluded or {"conversion_quarantine": {"corrupt_file": 2}, "curation_removed": {"static": 1},
                                 "not_included": 0, "cross_store_duplicates": []},
        "counts": {s: {"episodes": sum(r["split"] == s for r in rows),
                       "frames_kept": sum(r["frames_kept"] for r in rows if r["split"] == s)} for s in SPLITS},
        "shares": shares,
        "table": {"file": "episodes.parquet", "rows": len(rows), "sha256": file_sha256(out / "episodes.parquet")},
        "files": {f"{r['store']}/{r['path']}": r["sha256"] for r in rows},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out


BASE = [
    ep("d1", "droid", "franka", ranges=((0, 50), (60, 100))),
    ep("d2", "droid", "franka"),
    ep("d3", "droid", "franka", ranges=((0, 80),), split="validation"),
    ep("i1", "inhouse", "aloha", ranges=((0, 50),)),
    ep("i2", "inhouse", "aloha", ranges=((0, 60),)),
    ep("i3", "inhouse", "ur5", ranges=((0, 40),)),
    ep("r1", "robomind", "franka", ranges=((0, 70),)),
]


def changed_rows():
    rows = {r["episode_id"]: dict(r) for r in BASE}
    del rows["i2"]
    rows["r2"] = ep("r2", "robomind", "franka", ranges=((0, 30),))
    rows["d1"] = ep("d1", "droid", "franka", ranges=((0, 30), (40, 120)))
    rows["d2"] = ep("d2", "droid", "franka", sha="f" * 64)
    rows["d3"] = ep("d3", "droid", "franka", ranges=((0, 80),), split="train")
    return list(rows.values())


@pytest.fixture
def pair(tmp_path):
    a = make_manifest(tmp_path / "a", BASE)
    inputs = [dict(i) for i in INPUTS] + [{"store": "robomind2", "source": "robomind", "index_sha256": "1" * 64,
                                            "curation_sha256": "2" * 64}]
    inputs[1]["curation_sha256"] = "3" * 64
    b = make_manifest(tmp_path / "b", changed_rows(), inputs=inputs,
                      dataset_weights={"droid": 2.0, "inhouse": 1.0, "robomind": 1.0},
                      excluded={"conversion_quarantine": {"corrupt_file": 5}, "curation_removed": {"static": 1},
                                "not_included": 0, "cross_store_duplicates": []})
    return a, b


def test_identical_manifests(tmp_path):
    diff = diff_manifests(make_manifest(tmp_path / "a", BASE), make_manifest(tmp_path / "b", list(reversed(BASE))))
    assert diff["identical"] is True
    assert not diff["parameters"] and not any(diff["inputs"].values()) and not any(diff["episodes"].values())
    assert not diff["excluded"] and all(not v for s in diff["shares"].values() for v in s.values())
    assert all(t[k]["delta"] == 0 for t in diff["totals"].values() for k in t)
    assert "manifests are identical" in format_diff(diff)


def test_every_kind_of_change_lands_in_its_section(pair):
    a, b = pair
    diff = diff_manifests(a, b)
    assert diff["identical"] is False
    assert diff == diff_manifests(a, b) and json.loads(json.dumps(diff)) == diff  # deterministic, JSON-ready
    assert diff["parameters"] == {"dataset_weights.droid": {"old": None, "new": 2.0},
                                  "dataset_weights.inhouse": {"old": None, "new": 1.0},
                                  "dataset_weights.robomind": {"old": None, "new": 1.0}}
    assert [i["store"] for i in diff["inputs"]["added"]] == ["robomind2"] and not diff["inputs"]["removed"]
    assert diff["inputs"]["changed"] == [{"store": "inhouse", "fields": {"curation_sha256": {
        "old": INPUTS[1]["curation_sha256"], "new": "3" * 64}}}]
    eps = diff["episodes"]
    assert eps["added"] == [{"episode_id": "r2", "dataset": "robomind", "embodiment": "franka", "split": "train",
                             "frames_kept": 30}]
    assert eps["removed"] == [{"episode_id": "i2", "dataset": "inhouse", "embodiment": "aloha", "split": "train",
                               "frames_kept": 60}]
    assert [(e["episode_id"], list(e["fields"])) for e in eps["content_changed"]] == [("d2", ["sha256"])]
    assert eps["content_changed"][0]["fields"]["sha256"]["new"] == "f" * 64
    (r,) = eps["ranges_changed"]
    # old keeps 0..49 and 60..99 (90); new keeps 0..29 and 40..119 (110): gains 50..59 and 100..119, loses 30..39
    assert r["episode_id"] == "d1" and r["kept_ranges"] == {"old": [[0, 50], [60, 100]], "new": [[0, 30], [40, 120]]}
    assert (r["frames_kept"], r["frames_gained"], r["frames_lost"]) == ({"old": 90, "new": 110}, 30, 10)
    assert eps["split_moved"] == [{"episode_id": "d3", "dataset": "droid", "embodiment": "franka",
                                   "split": {"old": "validation", "new": "train"}}]
    assert diff["excluded"] == {"conversion_quarantine.corrupt_file": {"old": 2, "new": 5}}
    t = diff["totals"]
    assert t["train"]["episodes"] == {"old": 6, "new": 7, "delta": 1}
    assert t["train"]["frames_kept"] == {"old": 410, "new": 480, "delta": 70}
    assert t["validation"]["episodes"] == {"old": 1, "new": 0, "delta": -1}

    text = format_diff(diff)
    for title, count in (("parameters changed", 3), ("input stores added", 1), ("input stores changed", 1),
                         ("episodes added", 1), ("episodes removed", 1), ("episodes whose content changed", 1),
                         ("episodes whose kept ranges changed", 1), ("episodes that moved split", 1)):
        assert f"{title} ({count})" in text
    assert "[0:50, 60:100] -> [0:30, 40:120]  +30 / -10 frames (90 -> 110 kept)" in text
    assert "validation -> train" in text and "+ r2" in text and "- i2" in text
    assert not any(f"~ {i}" in text or f"+ {i}" in text or f"- {i}" in text for i in ("i1", "i3", "r1"))


def test_share_deltas_are_the_difference_of_the_declared_shares(pair):
    a, b = pair
    sa, sb = (json.loads((d / "manifest.json").read_text())["shares"] for d in (a, b))
    diff = diff_manifests(a, b)

    def declared(shares, split, d, e=None):
        entry = shares.get(split, {}).get("datasets", {}).get(d)
        entry = entry and (entry["embodiments"].get(e) if e else entry)
        return entry["share"] if entry else 0.0

    for split in SPLITS:
        for entry in diff["shares"][split]["datasets"] + diff["shares"][split]["embodiments"]:
            key = (split, entry["dataset"], entry.get("embodiment"))
            s = entry["share"]
            assert (s["old"], s["new"]) == (declared(sa, *key), declared(sb, *key))
            assert s["delta"] == s["new"] - s["old"]
    train = {e["dataset"]: e for e in diff["shares"]["train"]["datasets"]}
    assert set(train) == {"droid", "inhouse", "robomind"}
    assert train["droid"]["share"]["old"] == pytest.approx(1 / 3) and train["droid"]["share"]["new"] == 0.5
    assert train["droid"]["episodes"] == {"old": 2, "new": 3}
    assert train["droid"]["frames_kept"] == {"old": 190, "new": 290}
    assert [e["dataset"] for e in diff["shares"]["validation"]["datasets"]] == ["droid"]
    assert diff["shares"]["validation"]["datasets"][0]["share"] == {"old": 1.0, "new": 0.0, "delta": -1.0}
    text = format_diff(diff)
    assert any(line.split()[0] == "droid" and "33.33% -> 50.00%  (+16.67)" in line for line in text.splitlines())
    assert "inhouse / aloha" in text and "16.67% -> 12.50%  (-4.17)" in text


def test_format_diff_cuts_long_sections_at_limit(tmp_path):
    a = make_manifest(tmp_path / "a", BASE)
    more = [ep(f"x{i}", "droid", "franka") for i in range(7)]
    text = format_diff(diff_manifests(a, make_manifest(tmp_path / "b", BASE + more)), limit=3)
    assert "episodes added (7)" in text and "... and 4 more" in text
    assert [line.split()[1] for line in text.splitlines() if line.startswith("  + x")] == ["x0", "x1", "x2"]
    assert "... and" not in format_diff(diff_manifests(a, tmp_path / "b"), limit=7)


def test_inspect_shows_every_group_with_declared_shares_and_subtotals_that_add_up(pair):
    a, b = pair
    manifest = json.loads((b / "manifest.json").read_text())
    info = inspect_json(b)
    assert json.loads(json.dumps(info)) == info
    text = inspect_manifest(b)
    for split in SPLITS:
        s = info["splits"][split]
        declared = manifest["shares"].get(split, {}).get("datasets", {})
        assert [d["dataset"] for d in s["datasets"]] == sorted(declared)
        assert (s["episodes"], s["frames_kept"]) == tuple(manifest["counts"][split].values())
        assert sum(d["episodes"] for d in s["datasets"]) == s["episodes"]
        assert sum(d["frames_kept"] for d in s["datasets"]) == s["frames_kept"]
        for d in s["datasets"]:
            assert d["share"] == declared[d["dataset"]]["share"]
            assert d["episodes"] == sum(e["episodes"] for e in d["embodiments"])
            assert d["frames_kept"] == sum(e["frames_kept"] for e in d["embodiments"])
            assert d["share"] == pytest.approx(sum(e["share"] for e in d["embodiments"]))
            for e in d["embodiments"]:
                want = declared[d["dataset"]]["embodiments"][e["embodiment"]]
                assert (e["share"], e["episodes"], e["frames_kept"]) == (want["share"], want["episodes"],
                                                                         want["frames_kept"])
                assert any(line.split()[:4] == [d["dataset"], e["embodiment"], str(e["episodes"]),
                                                str(e["frames_kept"])] for line in text.splitlines())
        if s["datasets"]:
            assert sum(d["natural_share"] for d in s["datasets"]) == pytest.approx(1.0)
    droid = next(line for line in text.splitlines() if line.split()[:2] == ["droid", "(subtotal)"])
    assert droid.split()[2:] == ["3", "290", "50.00%", "60.42%"]  # 290 of 480 kept train frames
    assert "quarantined at conversion: 5 episodes (corrupt_file 5)" in text
    assert "index " + "1" * 12 in text and "1" * 13 not in text
