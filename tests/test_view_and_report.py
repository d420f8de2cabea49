"""``a1pipe view`` and ``a1pipe report`` on one constructed store whose every number is known.

The store holds three franka episodes and one aloha episode: ``pick/ep0`` loses a 10-frame idle
prefix, ``pick/ep1`` a 5-frame static run, ``pick/ep2`` is quarantined by curation (outlier), and
the conversion report records two episodes that could not be published. The Rerun recording is
read back with the SDK and checked by the viewer's own loader (``rerun rrd verify``); the reports
are opened in headless Chromium (Debian's ``chromium``, which ``make test`` installs), where no
console message, page error or request beyond the page's own file may occur and the numbers must
be the ones below.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.episode_store.index import CURATION_SCHEMA
from pipelines.episode_store.layout import CURATION_FILE, INDEX_FILE, REPORT_FILE
from pipelines.episode_store.reader import EpisodeStore
from pipelines.manifest.format import file_sha256
from tests.training_stores import (
    ALOHA_CAMERAS,
    ALOHA_NAMES,
    FRANKA_NAMES,
    build_store,
    build_test_manifest,
    coded_episode,
    eid,
)

SUBTASKS = ["reach"] * 15 + ["grasp"] * 15 + [None] * 10
#: source episode -> (frames, status, reason, kept ranges, removed ranges)
CURATION = {
    "pick/ep0": (40, "kept", None, [(10, 40)], [(0, 10, "idle_prefix")]),
    "pick/ep1": (30, "kept", None, [(0, 20), (25, 30)], [(20, 25, "static_run")]),
    "pick/ep2": (20, "quarantined", "outlier", [], [(0, 20, "outlier")]),
    "fold/ep0": (24, "kept", None, [(0, 24)], []),
}


@pytest.fixture(scope="module")
def look(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("look")
    store = base / "data" / "inhouse"
    episodes = [coded_episode("pick/ep0", 40, subtasks=SUBTASKS, instruction="pick up the red cube"),
                coded_episode("pick/ep1", 30), coded_episode("pick/ep2", 20),
                coded_episode("fold/ep0", 24, embodiment="aloha", names=ALOHA_NAMES, cameras=ALOHA_CAMERAS)]
    build_store(store, episodes)
    rows = []
    for r in EpisodeStore(store).index().to_pylist():
        frames, status, reason, kept, removed = CURATION[r["source_episode"]]
        rows.append({"episode_id": r["episode_id"], "source": "inhouse", "embodiment": r["embodiment"],
                     "status": status, "reason": reason, "message": "test" if reason else "", "frames_in": frames,
                     "frames_kept": sum(b - a for a, b in kept),
                     "kept_ranges": [{"start": a, "stop": b} for a, b in kept],
                     "removed_ranges": [{"start": a, "stop": b, "reason": why, "message": "test"}
                                        for a, b, why in removed],
                     "content_sha256": r["episode_id"]})
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATION_SCHEMA), store / CURATION_FILE)
    quarantined = [("pick/ep3", "corrupt_file"), ("fold/ep1", "missing_camera")]
    (store / REPORT_FILE).write_text(json.dumps({
        "source": "inhouse",
        "counts": {"converted": 4, "quarantined": 2, "quarantined_by_reason": {"corrupt_file": 1, "missing_camera": 1}},
        "episodes": [{"source_episode": ref, "episode_id": eid(ref), "status": "quarantined", "reason": reason,
                      "message": "test", "num_frames": None} for ref, reason in quarantined]}))
    manifest = build_test_manifest([store], base / "manifests" / "toy")
    return {"base": base, "store": store, "manifest": manifest}


def test_recording_holds_every_stream_of_the_episode(look, tmp_path):
    from rerun.chunk import RrdReader

    from pipelines.view import ENTITIES, removed_state

    rrd = tmp_path / "ep0.rrd"
    assert main(["view", str(look["store"]), "--episode", eid("pick/ep0"), "--out", str(rrd)]) == 0
    rows: dict[str, int] = defaultdict(int)
    static: set[str] = set()
    lanes: dict[str, list[tuple[int, str]]] = defaultdict(list)
    texts: dict[str, str] = {}
    for chunk in RrdReader(rrd).stream():
        path = chunk.entity_path.lstrip("/")
        if chunk.is_static:
            static.add(path)
            for row in chunk.to_record_batch().to_pylist():
                if "TextDocument:text" in row:
                    texts[path] = row["TextDocument:text"][0]
            continue
        rows[path] += chunk.num_rows
        if path in (ENTITIES["curation"], ENTITIES["subtask"]):
            lanes[path] += [(row["frame"], row["StateChange:state"][0]) for row in chunk.to_record_batch().to_pylist()]
    series = {f"{root}/{name}" for root in ("state", "action") for name in FRANKA_NAMES}
    assert set(rows) == {"cameras/cam_front", "cameras/cam_wrist", *series, ENTITIES["subtask"], ENTITIES["curation"]}
    assert all(rows[p] == 40 for p in ("cameras/cam_front", "cameras/cam_wrist", *series))
    assert sorted(lanes[ENTITIES["curation"]]) == [(0, removed_state("idle_prefix")), (10, "kept")]
    assert sorted(lanes[ENTITIES["subtask"]]) == [(0, "reach"), (15, "grasp"), (30, "")]
    assert {ENTITIES["instruction"], ENTITIES["episode"], ENTITIES["curation"]} <= static
    assert texts[ENTITIES["instruction"]] == "pick up the red cube"
    assert "frames 0..9 removed: idle_prefix" in texts[ENTITIES["episode"]]
    # the viewer's own loader accepts it
    verified = subprocess.run([sys.executable, "-m", "rerun_cli", "rrd", "verify", str(rrd)], capture_output=True,
                              text=True, timeout=60)
    assert verified.returncode == 0 and "1 file verified without error" in verified.stdout + verified.stderr, verified


def test_reports_render_in_chromium_with_the_store_and_manifest_numbers(look):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    out = look["base"] / "reports"
    assert main(["report", str(look["store"].parent), str(look["manifest"]), "--out", str(out)]) == 0
    pages = {"index.html", "store-inhouse.html", "manifest-toy.html"}
    assert {p.name for p in out.iterdir()} == pages
    expected = {
        "store-inhouse.html": {
            "#stat-episodes": "4", "#stat-frames": "114", "#stat-frames-kept": "79", "#stat-kept-fraction": "69.30%",
            "#stat-quarantined-conversion": "2", "#stat-quarantined-curation": "1",
            "#composition": ["inhouse aloha 1 24 24 30.38%", "inhouse franka 3 90 55 69.62%"],
            "#curation-groups": ["inhouse / aloha 1 24 24 100.00% 0.00% 0.00%",
                                 "inhouse / franka 2 70 55 78.57% 14.29% 7.14%"],
            "#curation-worst": [f"{eid('pick/ep0')} inhouse / franka 40 30 75.00% idle_prefix 10",
                                f"{eid('pick/ep1')} inhouse / franka 30 25 83.33% static_run 5"],
            "#quarantine-conversion": ["corrupt_file 1", "missing_camera 1"],
            "#quarantine-curation": ["outlier 1"],
        },
        "manifest-toy.html": {
            "#stat-episodes": "3", "#stat-train-episodes": "3", "#stat-train-frames-kept": "79",
            "#composition-train": ["inhouse aloha 1 24 50.00% 30.38%", "inhouse franka 2 55 50.00% 69.62%",
                                   "inhouse (all) 3 79 100.00% 100.00%"],
            "#curation-groups": ["inhouse / aloha 1 24 24 100.00% 0.00% 0.00%",
                                 "inhouse / franka 2 70 55 78.57% 14.29% 7.14%"],
            "#left-out-conversion-quarantine": ["corrupt_file 1", "missing_camera 1"],
            "#left-out-curation-removed": ["outlier 1"],
            "#inputs": [f"inhouse inhouse {file_sha256(look['store'] / INDEX_FILE)[:12]} "
                        f"{file_sha256(look['store'] / CURATION_FILE)[:12]} tables match"],
        },
        "index.html": {"#index-stores": ["inhouse 4 114"], "#index-manifests": ["toy 3 1 3 79"]},
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, timeout=60_000)
        try:
            for name in sorted(pages):
                page, problems = _load(browser, out / name)
                assert problems == [], (name, problems)
                broken = page.evaluate("[...document.images].filter(i => !i.complete || !i.naturalWidth).length")
                assert broken == 0, f"{name}: {broken} images did not decode"
                for selector, want in expected[name].items():
                    if isinstance(want, str):
                        assert page.inner_text(selector).strip() == want, (name, selector)
                    else:
                        text = [" ".join(r.split()) for r in page.locator(f"{selector} tbody tr").all_inner_texts()]
                        assert all(any(row.startswith(w) for row in text) for w in want), (name, selector, text)
                if name == "store-inhouse.html":
                    assert page.locator("#frames .strip").count() == 2  # one per embodiment
                    href = page.locator("#stat-frames a").get_attribute("href")
                    assert (out / href).resolve() == (look["store"] / INDEX_FILE).resolve()
                page.close()
        finally:
            browser.close()


def _load(browser, path: Path):
    """Open ``path``; the second value lists every console message, page error, failed request and request
    for anything but the page itself (a self-contained page makes none)."""
    page = browser.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    def request(r) -> None:
        if r.url != path.as_uri() and not r.url.startswith("data:"):
            problems.append(f"request: {r.url}")

    page.on("request", request)
    page.goto(path.as_uri(), wait_until="load")
    return page, problems
