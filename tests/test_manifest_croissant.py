"""croissant.json: valid Croissant 1.0 (with and without mlcroissant), honest RAI fields, byte-stable."""

from __future__ import annotations

import builtins
import hashlib
import json
import socket

import pytest

from converters.base import SourceCard

from pipelines.manifest import croissant
from pipelines.manifest.croissant import croissant_jsonld, validate_croissant, write_croissant


def _card(title: str, license: str) -> SourceCard:
    return SourceCard(title=title, url=f"https://example.org/{title.lower()}", license=license,
                citation=f"{title}: a dataset, 2024", collection=f"{title} was collected by teleoperation.",
                collection_type=("Teleoperation", f"{title} robots"), biases=(f"{title} bias: one lab",),
                limitations=(f"{title} limitation: short episodes",),
                personal_information=(f"{title} PII: faces of operators may appear",),
                unverified=(f"{title} unverified: exact license version",))


CARDS = {"droid": _card("DROID", "CC-BY-4.0"), "robomind": _card("RoboMIND", "unknown"), "gm100": None,
         "agibot": _card("AgiBotWorld", "CC-BY-NC-SA-4.0")}  # agibot has no rows in the manifest below


def _row(dataset: str, n: int, split: str, probability: float) -> dict:
    eid = f"{dataset}-{n:016x}"
    return {"episode_id": eid, "dataset": dataset, "embodiment": f"{dataset}_arm", "robot_type": "arm",
            "store": dataset, "path": f"episodes/{dataset}/{eid[-2:]}/{eid}.zarr.zip", "sha256": f"{n:064x}",
            "source_episode": f"ep/{n}", "instruction": "pick up the cube", "num_frames": 50 + n,
            "frames_kept": 40 + n, "kept_ranges": [{"start": 5, "stop": 25}, {"start": 30, "stop": 50 + n}],
            "split": split, "probability": probability}


def _manifest_and_rows() -> tuple[dict, list[dict]]:
    rows = [_row("droid", 1, "train", 0.5), _row("gm100", 2, "train", 0.25), _row("robomind", 3, "train", 0.25),
            _row("droid", 4, "validation", 1.0)]
    manifest = {
        "format_version": 1, "name": "pretrain", "code_version": "a1pipe 0.1.0",
        "parameters": {"name": "pretrain", "within": "frames", "validation_fraction": 0.1, "split_seed": 0,
                       "dataset_weights": {}, "include": {"sources": [], "embodiments": [], "instructions": [],
                                                          "source_episodes": []},
                       "description": "Small test mixture."},
        "inputs": [{"store": d, "source": d, "index_sha256": "a" * 64, "curation_sha256": "b" * 64}
                   for d in ("droid", "gm100", "robomind")],
        "excluded": {"conversion_quarantine": {"corrupt_file": 2}, "curation_removed": {"too_short": 1},
                     "not_included": 0, "cross_store_duplicates": []},
        "counts": {s: {"episodes": sum(r["split"] == s for r in rows),
                       "frames_kept": sum(r["frames_kept"] for r in rows if r["split"] == s)}
                   for s in ("train", "validation")},
        "shares": {},
        "table": {"file": "episodes.parquet", "rows": len(rows), "sha256": "c" * 64},
        "files": {f"{r['store']}/{r['path']}": r["sha256"] for r in rows},
    }
    return manifest, rows


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def without_mlcroissant(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "mlcroissant" or name.startswith("mlcroissant."):
            raise ImportError("mlcroissant hidden by the test")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.fixture(params=["mlcroissant", "fallback"])
def validator(request):
    """validate_croissant under both paths: with MLCommons' validator, and with the structural checks alone."""
    if request.param == "mlcroissant":
        pytest.importorskip("mlcroissant")
        request.getfixturevalue("no_network")
    else:
        request.getfixturevalue("without_mlcroissant")
    return request.param


def _written(tmp_path, doc: dict | None = None):
    path = tmp_path / "croissant.json"
    if doc is None:
        write_croissant(path, *_manifest_and_rows(), CARDS)
    else:
        path.write_text(json.dumps(doc))
    return path


def test_valid_under_both_paths(tmp_path, validator):
    path = _written(tmp_path)
    assert validate_croissant(path) == []
    ran = croissant._mlcroissant_problems(path)
    assert (ran == []) if validator == "mlcroissant" else (ran is None)


def test_mlcroissant_reads_the_records(tmp_path, no_network):
    """Beyond static validation: mlcroissant reads the table, hash-checked, including the nested kept_ranges."""
    mlc = pytest.importorskip("mlcroissant")
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    manifest, rows = _manifest_and_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "episodes.parquet")
    manifest["table"]["sha256"] = hashlib.sha256((tmp_path / "episodes.parquet").read_bytes()).hexdigest()
    write_croissant(tmp_path / "croissant.json", manifest, rows, CARDS)
    records = list(mlc.Dataset(jsonld=str(tmp_path / "croissant.json")).records("episodes"))
    assert [r["episodes/episode_id"].decode() for r in records] == [r["episode_id"] for r in rows]
    assert [r["episodes/probability"] for r in records] == [r["probability"] for r in rows]
    assert [[(k["episodes/kept_ranges/start"], k["episodes/kept_ranges/stop"]) for k in r["episodes/kept_ranges"]]
            for r in records] == [[(k["start"], k["stop"]) for k in r["kept_ranges"]] for r in rows]


def test_rai_fields_cover_exactly_the_included_datasets():
    manifest, rows = _manifest_and_rows()
    doc = croissant_jsonld(manifest, rows, CARDS)
    assert doc["license"] == ["CC-BY-4.0"]  # RoboMIND's is unknown, gm100 has no card: neither is invented
    assert "RoboMIND" in doc["description"] and "gm100" in doc["description"]
    for key in ("rai:dataBiases", "rai:dataLimitations", "rai:personalSensitiveInformation"):
        assert any(item.startswith("DROID: ") for item in doc[key])
        assert any(item.startswith("RoboMIND: ") for item in doc[key])
    assert "DROID bias: one lab" in " ".join(doc["rai:dataBiases"])
    assert "DROID: DROID was collected by teleoperation." in doc["rai:dataCollection"]
    assert set(doc["rai:dataCollectionType"]) == {"Teleoperation", "DROID robots", "RoboMIND robots"}
    limits = " ".join(doc["rai:dataLimitations"])
    assert "gm100: card missing" in limits and "RoboMIND: license unknown" in limits
    assert "DROID: not verified: DROID unverified" in limits
    assert {w["name"]: w["license"] for w in doc["isBasedOn"]} == {"DROID": "CC-BY-4.0", "RoboMIND": "unknown"}
    assert "corrupt_file: 2" in " ".join(doc["rai:dataPreprocessingProtocol"])
    assert "a1pipe manifest verify" in doc["rai:dataReleaseMaintenancePlan"]
    assert all(doc[k] for k in croissant.RAI_KEYS)
    text = json.dumps(doc)
    assert "AgiBotWorld" not in text and "CC-BY-NC-SA-4.0" not in text and "agibot" not in text


def test_deterministic_bytes(tmp_path):
    manifest, rows = _manifest_and_rows()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_croissant(a, manifest, rows, CARDS)
    write_croissant(b, json.loads(json.dumps(manifest)), list(reversed(rows)), dict(reversed(CARDS.items())))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().endswith(b"\n") and str(tmp_path).encode() not in a.read_bytes()


def test_checksums():
    manifest, rows = _manifest_and_rows()
    files = {d["@id"]: d for d in croissant_jsonld(manifest, rows, CARDS)["distribution"]}
    assert files["episodes.parquet"]["sha256"] == manifest["table"]["sha256"]
    assert files["episodes.parquet"]["encodingFormat"] == "application/x-parquet"
    # manifest.json is written canonically by build_manifest, so its checksum is known here
    canonical = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    assert files["manifest.json"]["sha256"] == hashlib.sha256(canonical).hexdigest()
    assert {i: f["includes"] for i, f in files.items() if f["@type"] == "cr:FileSet"} == {
        f"episode-files-{d}": f"{d}/episodes/**/*.zarr.zip" for d in ("droid", "gm100", "robomind")}


def _doc() -> dict:
    return croissant_jsonld(*_manifest_and_rows(), CARDS)


def _bad_reference(doc: dict) -> None:
    doc["recordSet"][0]["field"][1]["source"]["fileObject"]["@id"] = "missing.parquet"


def _no_checksum(doc: dict) -> None:
    del doc["distribution"][1]["sha256"]


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: d.pop("name"), "name"),
    (_bad_reference, "missing.parquet"),
    (_no_checksum, "sha256"),
    (lambda d: d.pop("rai:dataBiases"), "rai:dataBiases"),
    (lambda d: d["@context"].pop("rai"), "rai"),
    (lambda d: d.update({"@type": "sc:Thing"}), "Dataset"),
])
def test_broken_documents_are_reported(tmp_path, validator, breakage, expected):
    doc = _doc()
    breakage(doc)
    problems = validate_croissant(_written(tmp_path, doc))
    assert problems and any(expected in p for p in problems), problems


@pytest.mark.parametrize("breakage, expected", [(_bad_reference, "missing.parquet"), (_no_checksum, "sha256")])
def test_mlcroissant_itself_finds_errors(tmp_path, no_network, breakage, expected):
    pytest.importorskip("mlcroissant")
    doc = _doc()
    breakage(doc)
    problems = croissant._mlcroissant_problems(_written(tmp_path, doc))
    assert problems and all(p.startswith("mlcroissant: ") for p in problems)
    assert any(expected in p for p in problems) and not any("recommended" in p for p in problems), problems


def test_unreadable_file(tmp_path):
    (tmp_path / "croissant.json").write_text("{not json")
    assert validate_croissant(tmp_path / "croissant.json")[0].startswith("cannot read croissant.json")
    assert validate_croissant(tmp_path / "absent.json")


def test_record_set_covers_every_column_of_the_episode_table():
    from pipelines.manifest.format import TABLE_SCHEMA

    assert set(croissant.COLUMNS) | {"kept_ranges"} == set(TABLE_SCHEMA.names)
