"""Manifest build and verify on converted sample stores: selection, shares, accounting, and every
kind of mismatch an auditor must be told about."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.convert import ConvertConfig, run_conversion
from pipelines.episode_store.images import ImageConfig
from pipelines.manifest.build import Include, ManifestParams, build_manifest, resolve_stores
from pipelines.manifest.format import TABLE_SCHEMA, ManifestError, file_sha256
from pipelines.manifest.release import plot_labels
from pipelines.manifest.verify import verify_manifest
from pipelines.samples import write_samples

SOURCES = ("inhouse", "robomind")


def _convert(samples: Path, store: Path, curation: dict | None = None) -> None:
    run_conversion(ConvertConfig(store.name, str(samples / store.name), str(store), image=ImageConfig(height=32, width=32),
                                 curation=curation or {}), workers=1, show_progress=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("manifest")
    write_samples(base / "samples", seed=0, sources=list(SOURCES))
    for source in SOURCES:
        _convert(base / "samples", base / "stores" / source)
    return base


@pytest.fixture
def stores(converted, tmp_path):
    """A private copy of the stores, free to corrupt."""
    return shutil.copytree(converted / "stores", tmp_path / "stores")


def _rows(manifest_dir: Path) -> list[dict]:
    return pq.read_table(manifest_dir / "episodes.parquet").to_pylist()


def _rewrite_table(manifest_dir: Path, rows: list[dict], *, fix_checksum: bool) -> None:
    """Tamper with the table; with fix_checksum the forger also updates manifest.json's table sha256."""
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), manifest_dir / "episodes.parquet")
    if fix_checksum:
        m = json.loads((manifest_dir / "manifest.json").read_text())
        m["table"]["sha256"] = file_sha256(manifest_dir / "episodes.parquet")
        (manifest_dir / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")


def test_two_builds_are_byte_identical_and_shares_are_two_level(converted, tmp_path):
    stores = [converted / "stores" / s for s in SOURCES]
    params = ManifestParams(name="pretrain", validation_fraction=0.2, split_seed=1)
    a = build_manifest(stores, tmp_path / "a", params)
    build_manifest([converted / "stores"], tmp_path / "b", params)  # a directory of stores, other order
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert {"episodes.parquet", "manifest.json", "croissant.json"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    rows = _rows(tmp_path / "a")
    for split in ("train", "validation"):
        members = [r for r in rows if r["split"] == split]
        by_dataset, by_group, frames = defaultdict(float), defaultdict(float), defaultdict(int)
        for r in members:
            by_dataset[r["dataset"]] += r["probability"]
            by_group[r["dataset"], r["embodiment"]] += r["probability"]
            frames[r["dataset"], r["embodiment"]] += r["frames_kept"]
        assert by_dataset == pytest.approx({"inhouse": 0.5, "robomind": 0.5}, abs=1e-12)
        for (dataset, embodiment), p in by_group.items():
            declared = a["shares"][split]["datasets"][dataset]["embodiments"][embodiment]["share"]
            n_embodiments = len({e for d, e in by_group if d == dataset})
            assert declared == pytest.approx(0.5 / n_embodiments, abs=1e-15)
            assert p == pytest.approx(declared, abs=1e-12)
        for r in members:  # uniform over kept frames inside a (dataset, embodiment) group
            group = r["dataset"], r["embodiment"]
            assert r["probability"] / r["frames_kept"] == pytest.approx(by_group[group] / frames[group], rel=1e-12)
    assert {r["split"] for r in rows} == {"train", "validation"}
    assert a["counts"]["train"]["episodes"] == sum(r["split"] == "train" for r in rows)
    assert a["inputs"] == sorted(a["inputs"], key=lambda e: e["store"]) and len(a["inputs"]) == 2
    assert not list(tmp_path.glob(".*"))  # no temp directory left behind


def test_dataset_weights_are_normalised_and_apply_to_both_splits(converted, tmp_path):
    params = ManifestParams(name="mix", validation_fraction=0.3, dataset_weights={"inhouse": 3, "robomind": 1})
    m = build_manifest([converted / "stores"], tmp_path / "m", params)
    for split in ("train", "validation"):
        shares = {d: v["share"] for d, v in m["shares"][split]["datasets"].items()}
        assert shares == {"inhouse": 0.75, "robomind": 0.25}
    with pytest.raises(ManifestError, match="must be > 0"):
        ManifestParams(name="mix", dataset_weights={"inhouse": 0, "robomind": 1})


def test_episodes_within_gives_equal_episode_probability_per_group(converted, tmp_path):
    build_manifest([converted / "stores"], tmp_path / "m", ManifestParams(name="e", within="episodes",
                                                                          validation_fraction=0))
    groups = defaultdict(set)
    for r in _rows(tmp_path / "m"):
        groups[r["dataset"], r["embodiment"]].add(r["probability"])
    assert all(len(ps) == 1 for ps in groups.values())


def test_include_selects_fine_tuning_subsets(converted, tmp_path):
    by_source = ManifestParams.from_params("ft", {"include": {"sources": ["inhouse"], "embodiments": ["franka"]},
                                                  "validation_fraction": 0})
    m = build_manifest([converted / "stores"], tmp_path / "a", by_source)
    rows = _rows(tmp_path / "a")
    assert {(r["dataset"], r["embodiment"]) for r in rows} == {("inhouse", "franka")}
    assert [e["store"] for e in m["inputs"]] == ["inhouse"]
    assert m["excluded"]["not_included"] == len(pq.read_table(converted / "stores/inhouse/curation.parquet")) - len(rows)
    assert m["shares"]["train"]["datasets"]["inhouse"]["share"] == 1.0

    by_task = ManifestParams.from_params("task", {"include": {"source_episodes": ["ur5_stack_blocks/*"],
                                                              "instructions": ["blue block on the red"]}})
    build_manifest([converted / "stores"], tmp_path / "b", by_task)
    rows = _rows(tmp_path / "b")
    assert rows and all(r["source_episode"].startswith("ur5_stack_blocks/") for r in rows)
    assert all("blue block on the red" in r["instruction"] for r in rows)

    with pytest.raises(ManifestError, match="no kept episode matches"):
        build_manifest([converted / "stores"], tmp_path / "c",
                       ManifestParams(name="none", include=Include(source_episodes=("nothing/*",))))
    with pytest.raises(ManifestError, match="none of the given stores"):
        build_manifest([converted / "stores"], tmp_path / "c", ManifestParams(name="x", include=Include(sources=("droid",))))
    with pytest.raises(ManifestError, match="unknown keys"):
        ManifestParams.from_params("x", {"weights": {}})
    with pytest.raises(ManifestError, match="unknown include keys"):
        ManifestParams.from_params("x", {"include": {"task": "a"}})
    with pytest.raises(ManifestError, match="bad regular expression"):
        ManifestParams.from_params("x", {"include": {"instructions": ["("]}})
    assert not (tmp_path / "c").exists()


def test_left_out_episodes_are_accounted_for(stores, tmp_path):
    curation = stores / "robomind" / "curation.parquet"
    table = pq.read_table(curation).to_pylist()
    table[0].update(status="removed", reason="too_short", frames_kept=0, kept_ranges=[])
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(curation)), curation)
    m = build_manifest([stores], tmp_path / "m", ManifestParams(name="x"))
    assert m["excluded"]["curation_removed"] == {"too_short": 1}
    assert table[0]["episode_id"] not in {r["episode_id"] for r in _rows(tmp_path / "m")}
    quarantined = defaultdict(int)
    for source in SOURCES:
        report = json.loads((stores / source / "conversion_report.json").read_text())
        for reason, n in report["counts"]["quarantined_by_reason"].items():
            quarantined[reason] += n
    assert m["excluded"]["conversion_quarantine"] == dict(quarantined) and sum(quarantined.values()) > 0


def test_verify_passes_then_names_a_flipped_byte_and_a_missing_episode(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    assert verify_manifest(tmp_path / "m", [stores]) == []
    rows = _rows(tmp_path / "m")
    flipped = stores / "inhouse" / next(r["path"] for r in rows if r["dataset"] == "inhouse")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    missing = stores / "robomind" / next(r["path"] for r in rows if r["dataset"] == "robomind")
    missing.unlink()
    problems = verify_manifest(tmp_path / "m", [stores])
    stem = len(".zarr.zip")
    assert any(flipped.name[:-stem] in p and "sha256 does not match" in p for p in problems)
    assert any(missing.name[:-stem] in p and "episode file missing" in p for p in problems)
    assert len(problems) == 2, problems


def test_verify_names_a_changed_frame_range_in_the_table(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    rows = _rows(tmp_path / "m")
    victim = rows[3]
    victim["kept_ranges"][0]["start"] += 1  # one frame fewer, frames_kept left alone
    _rewrite_table(tmp_path / "m", rows, fix_checksum=False)
    problems = verify_manifest(tmp_path / "m", [stores])
    assert any("episodes.parquet: sha256 differs" in p for p in problems)
    named = [p for p in problems if victim["episode_id"] in p]
    assert any("kept ranges add up to" in p for p in named)
    assert any("differ from the store's curation.parquet" in p for p in named)

    # A forger who also fixes manifest.json's table checksum and frames_kept is caught by SHA256SUMS ...
    victim["frames_kept"] -= 1
    _rewrite_table(tmp_path / "m", rows, fix_checksum=True)
    problems = verify_manifest(tmp_path / "m", [stores])
    assert {p.split(":")[0] for p in problems if "differs from SHA256SUMS" in p} == {"episodes.parquet", "manifest.json"}
    # ... and one who rewrites SHA256SUMS too, by the data
    from pipelines.manifest.build import _write_checksums

    _write_checksums(tmp_path / "m")
    problems = verify_manifest(tmp_path / "m", [stores])
    assert not any("sha256 differs" in p or "SHA256SUMS" in p for p in problems)
    assert any(victim["episode_id"] in p and "curation.parquet" in p for p in problems)
    assert any("train: table has" in p for p in problems)  # counts no longer add up


@pytest.mark.parametrize("edit", ["code_version", "left_out_counts", "checksums_dropped", "file_added", "bad_line"])
def test_every_released_file_is_checksummed_manifest_json_included(stores, tmp_path, edit):
    out = tmp_path / "m"
    build_manifest([stores], out, ManifestParams(name="x", validation_fraction=0.0))
    assert verify_manifest(out, [stores]) == []
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in sums) == sorted(p.name for p in out.iterdir() if p.name != "SHA256SUMS")
    text = (out / "manifest.json").read_text()
    if edit == "code_version":  # one flipped byte in a field no derived-file check reads once versions differ
        (out / "manifest.json").write_text(text.replace('"a1pipe ', '"a1pipf ', 1))
        expected = "manifest.json: sha256 differs from SHA256SUMS"
    elif edit == "left_out_counts":
        doc = json.loads(text)
        doc["excluded"] = {**doc["excluded"], "forged": 1}
        (out / "manifest.json").write_text(json.dumps(doc, indent=1))
        expected = "manifest.json: sha256 differs from SHA256SUMS"
    elif edit == "checksums_dropped":
        (out / "SHA256SUMS").unlink()
        expected = "SHA256SUMS: missing"
    elif edit == "file_added":
        (out / "notes.txt").write_text("x")
        expected = "notes.txt: not listed in SHA256SUMS"
    else:
        (out / "SHA256SUMS").write_text("\n".join(sums + ["garbage"]) + "\n")
        expected = "SHA256SUMS:6: not a '<sha256>  <file>' line"
    problems = verify_manifest(out, [stores])
    assert any(p.startswith(expected) for p in problems), problems


def test_an_unreadable_curation_file_is_a_named_finding_not_a_traceback(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    store = sorted(p for p in stores.iterdir() if (p / "curation.parquet").is_file())[0]
    (store / "curation.parquet").write_bytes(b"PAR1 torn")
    problems = verify_manifest(tmp_path / "m", [stores])
    assert any(f"store {store.name}: curation.parquet unreadable" in p for p in problems), problems


def test_verify_names_episodes_whose_curation_changed_after_the_build(converted, stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    # Re-curate one store with other thresholds (resumes: no image is re-encoded).
    _convert(converted / "samples", stores / "inhouse",
             curation={"segments": {"max_idle_run": 12}, "corruption": {"min_frames": 100}})
    problems = verify_manifest(tmp_path / "m", [stores])
    assert any("store inhouse: curation.parquet differs" in p for p in problems)
    assert any("no longer keeps this episode (too_short)" in p for p in problems)
    assert any("kept ranges" in p and "differ from the store's curation.parquet" in p for p in problems)
    assert not any("robomind" in p for p in problems)


def test_verify_recomputes_probabilities_and_derived_files(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    rows = _rows(tmp_path / "m")
    rows[0]["probability"], rows[1]["probability"] = rows[1]["probability"], rows[0]["probability"]
    _rewrite_table(tmp_path / "m", rows, fix_checksum=True)
    (tmp_path / "m" / "croissant.json").write_text((tmp_path / "m" / "croissant.json").read_text() + " ")
    problems = verify_manifest(tmp_path / "m", [stores])
    assert any(rows[0]["episode_id"] in p and "recomputed" in p for p in problems)
    assert any(rows[1]["episode_id"] in p and "recomputed" in p for p in problems)
    assert any(p.startswith("croissant.json: not what") for p in problems)

    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    m["shares"]["train"]["datasets"]["inhouse"]["share"] = 0.6
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(m))
    assert any("declared shares" in p for p in verify_manifest(tmp_path / "m", [stores]))


def _release_plot(manifest_dir: Path, text: str) -> None:
    """A plot released as is: written and listed in SHA256SUMS (as a build with it would)."""
    plot = manifest_dir / "composition.svg"
    plot.write_text(text)
    sums = manifest_dir / "SHA256SUMS"
    lines = [f"{file_sha256(plot)}  composition.svg" if line.endswith("  composition.svg") else line
             for line in sums.read_text().splitlines()]
    sums.write_text("\n".join(lines) + "\n")


def test_verify_holds_the_plot_to_its_labels_not_its_bytes(stores, tmp_path):
    m = tmp_path / "m"
    build_manifest([stores], m, ManifestParams(name="x", validation_fraction=0.0))
    svg = (m / "composition.svg").read_text()
    share = next(t for t in plot_labels(svg) if t.endswith("%"))
    # another matplotlib: other drawing bytes and axis ticks, the same names and shares
    redrawn = svg.replace("#dddddd", "#d0d0d0").replace("<g ", "<g  ").replace(">5%<", ">2%<")
    assert redrawn != svg
    _release_plot(m, redrawn)
    assert verify_manifest(m, [stores]) == []
    _release_plot(m, svg.replace(f">{share}<", ">99.9%<", 1))  # one printed share changed
    problems = verify_manifest(m, [stores])
    assert len(problems) == 1 and problems[0].startswith("composition.svg: its labels are not what")
    assert "99.9%" in problems[0]
    _release_plot(m, "not a plot")
    assert verify_manifest(m, [stores]) == ["composition.svg: unreadable (not an SVG document: syntax error: "
                                            "line 1, column 0)"]


def test_plot_labels_leave_out_axis_ticks():
    svg = ('<svg xmlns="http://www.w3.org/2000/svg"><text>0%</text><text>20%</text><text>droid</text>'
           '<text>franka 14.3%</text><text>14.3%</text><g><text> 4.8% </text></g><text>100%</text></svg>')
    assert plot_labels(svg) == ["14.3%", "4.8%", "droid", "franka 14.3%"]
    with pytest.raises(ValueError, match="not an SVG"):
        plot_labels("<svg>")


def test_verify_names_missing_stores_and_unreadable_manifests(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x"))
    problems = verify_manifest(tmp_path / "m", [stores / "inhouse"])
    assert problems == ["input store robomind is not among the given data (inhouse)"]
    assert "cannot read the manifest" in verify_manifest(tmp_path / "nothing", [stores])[0]


def test_a_failed_build_leaves_the_previous_manifest_in_place(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(ManifestError):
        build_manifest([stores], tmp_path / "m", ManifestParams(name="x", include=Include(embodiments=("none",))))
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before

    def broken_card(*args, **kwargs):
        raise ValueError("a source card that does not parse")

    with pytest.MonkeyPatch.context() as mp:  # fails half-way through writing the release
        mp.setattr("pipelines.manifest.release.write_derived_files", broken_card)
        with pytest.raises(ValueError, match="does not parse"):
            build_manifest([stores], tmp_path / "m", ManifestParams(name="x", split_seed=5))
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert not list(tmp_path.glob(".m.tmp-*"))  # no scratch directory left behind


def test_resolve_stores(stores, tmp_path):
    assert [s.name for s in resolve_stores([stores])] == list(SOURCES)
    assert resolve_stores([stores / "robomind", stores / "inhouse"]) == resolve_stores([stores])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="not a store"):
        resolve_stores([tmp_path / "empty"])


def test_two_level_shares_are_exact_fractions():
    from pipelines.manifest.weights import episode_probabilities

    rows = [{"dataset": d, "embodiment": e, "frames_kept": n}
            for d, e, n in [("a", "x", 7), ("a", "x", 11), ("a", "y", 3), ("b", "z", 5)]]
    probs, shares = episode_probabilities(rows)
    assert [Fraction(p).limit_denominator(1000) for p in probs] == [Fraction(7, 72), Fraction(11, 72),
                                                                    Fraction(1, 4), Fraction(1, 2)]
    assert shares["datasets"]["a"]["embodiments"]["y"]["share"] == 0.25


def test_cli_build_verify_inspect_and_diff(converted, tmp_path, capsys):
    from pipelines.cli import main as cli

    params = tmp_path / "params.yaml"
    params.write_text("manifests:\n  pretrain:\n    validation_fraction: 0.1\n    split_seed: 2\n"
                      "  ft:\n    include: {sources: [inhouse]}\n")
    out = tmp_path / "manifests"
    data = str(converted / "stores")
    assert cli(["manifest", "build", data, "--name", "pretrain", "--out", str(out / "pretrain"), "--params", str(params)]) == 0
    text = capsys.readouterr().out
    assert "pretrain:" in text and "share 0.5000" in text
    assert cli(["manifest", "build", data, "--name", "ft", "--out", str(out / "ft"), "--params", str(params)]) == 0
    assert cli(["manifest", "verify", str(out / "pretrain"), "--data", data]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli(["manifest", "verify", str(out / "pretrain"), "--data", str(converted / "stores" / "inhouse"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and any("robomind" in p for p in report["problems"])
    assert cli(["manifest", "inspect", str(out / "pretrain")]) == 0
    assert "robomind" in capsys.readouterr().out
    assert cli(["manifest", "diff", str(out / "pretrain"), str(out / "ft")]) == 0
    assert "robomind" in capsys.readouterr().out
    assert cli(["manifest", "build", data, "--name", "bad", "--out", str(out / "bad"), "--params", str(params)]) == 2


def test_the_split_seed_is_named_apart_and_a_release_that_says_seed_still_verifies(converted, tmp_path):
    """params.yaml's old name for the split seed is refused with the new one; a manifest released before
    the rename (manifest.json says ``seed``) still verifies, and diffs as identical to its rebuild."""
    from pipelines.manifest.build import _write_checksums
    from pipelines.manifest.compare import diff_manifests, inspect_manifest
    from pipelines.manifest.format import manifest_json_text
    from pipelines.manifest.release import write_derived_files

    assert ManifestParams.from_params("x", {"split_seed": 3}).split_seed == 3
    with pytest.raises(ManifestError, match=r"manifests\.x\.seed is now manifests\.x\.split_seed"):
        ManifestParams.from_params("x", {"seed": 3})
    stores = [converted / "stores"]
    new = build_manifest(stores, tmp_path / "new", ManifestParams(name="x", validation_fraction=0.5, split_seed=3))
    assert new["parameters"]["split_seed"] == 3 and "seed" not in new["parameters"]
    old = shutil.copytree(tmp_path / "new", tmp_path / "old")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["parameters"]["seed"] = manifest["parameters"].pop("split_seed")
    (old / "manifest.json").write_text(manifest_json_text(manifest))
    write_derived_files(old, manifest, _rows(old))  # croissant.json records manifest.json's sha256
    _write_checksums(old)
    assert verify_manifest(old, stores) == []  # the splits are checked with seed 3, not a default
    diff = diff_manifests(old, tmp_path / "new")
    assert diff["identical"] and not diff["parameters"]
    assert "split seed 3" in inspect_manifest(old)


def test_a_store_is_selected_by_the_source_its_index_holds_not_its_directory_name(converted, tmp_path):
    renamed = shutil.copytree(converted / "stores" / "inhouse", tmp_path / "lab_recordings")
    m = build_manifest([renamed, converted / "stores" / "robomind"], tmp_path / "m",
                       ManifestParams(name="x", include=Include(sources=("inhouse",))))
    assert m["inputs"][0]["store"] == "lab_recordings" and m["inputs"][0]["source"] == "inhouse"
    assert [e["store"] for e in m["inputs"]] == ["lab_recordings"]
    assert verify_manifest(tmp_path / "m", [renamed]) == []


def test_verify_names_a_moved_split_and_build_refuses_ambiguous_or_foreign_inputs(stores, tmp_path):
    build_manifest([stores], tmp_path / "m", ManifestParams(name="x", validation_fraction=0.0))
    rows = _rows(tmp_path / "m")
    rows[2]["split"] = "validation"
    _rewrite_table(tmp_path / "m", rows, fix_checksum=True)
    problems = verify_manifest(tmp_path / "m", [stores])
    assert any(rows[2]["episode_id"] in p and "the split rule gives 'train'" in p for p in problems)

    other = tmp_path / "elsewhere" / "inhouse"
    shutil.copytree(stores / "inhouse", other)
    with pytest.raises(ManifestError, match="share a directory name"):
        resolve_stores([stores, other])

    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(m))
    assert any("format_version 99" in p for p in verify_manifest(tmp_path / "m", [stores]))


def test_a_calibration_split_takes_training_episodes_only_and_is_verified(converted, tmp_path):
    from pipelines.manifest.build import split_of

    stores = [converted / "stores" / s for s in SOURCES]
    plain = build_manifest(stores, tmp_path / "plain", ManifestParams(name="m", validation_fraction=0.2))
    params = ManifestParams(name="m", validation_fraction=0.2, calibration_fraction=0.3)
    m = build_manifest(stores, tmp_path / "cal", params)
    before = {r["episode_id"]: r["split"] for r in _rows(tmp_path / "plain")}
    after = {r["episode_id"]: r["split"] for r in _rows(tmp_path / "cal")}
    assert {e for e, s in after.items() if s == "validation"} == {e for e, s in before.items() if s == "validation"}
    moved = {e for e, s in after.items() if s == "calibration"}
    assert moved and all(before[e] == "train" for e in moved)  # calibration takes training episodes only
    assert m["counts"]["calibration"]["episodes"] == len(moved) and "calibration" in m["shares"]
    assert m["parameters"]["calibration_fraction"] == 0.3 and "calibration_fraction" not in plain["parameters"]
    assert "calibration" not in plain["counts"]  # without one, the manifest is what earlier versions wrote
    assert split_of("inhouse-0", 0, 0.0, 0.0) == "train"
    assert verify_manifest(tmp_path / "cal", stores) == []
    assert "calibration" in (tmp_path / "cal" / "MANIFEST.md").read_text()
    rows = _rows(tmp_path / "cal")
    first = next(r for r in rows if r["split"] == "calibration")
    first["split"] = "train"
    _rewrite_table(tmp_path / "cal", rows, fix_checksum=True)
    assert any(first["episode_id"] in p and "gives 'calibration'" in p for p in verify_manifest(tmp_path / "cal", stores))
    with pytest.raises(ManifestError, match="calibration_fraction must be in"):
        ManifestParams(name="x", validation_fraction=0.5, calibration_fraction=0.5)
