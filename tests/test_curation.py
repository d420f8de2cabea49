"""Curation as the conversion applies it (``pipelines/curation.py``): the settings, the outlier bounds,
the order of an episode's checks, and the reports, on constructed inputs whose answer is known.

The thresholds themselves are pinned in ``test_curation_rules.py``; here each test names the rule of
the per-episode decision or of the report it pins.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.curation import (
    BoundsAccumulator,
    CurationConfig,
    CurationOutcome,
    LowDim,
    collect_reports,
    cross_store_duplicates,
    curate,
    summarize,
)
from pipelines.curation_rules import MotionThresholds, OutlierRules, SegmentRules
from pipelines.episode_store.layout import CURATION_FILE, CURATION_REPORT_FILE

HZ = 10.0
STATE_NAMES = ["j0", "j1"]
ACTION_NAMES = ["a0", "a1"]


def moving(n: int, *, start: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n frames moving 0.05 per step on both dimensions (never idle), the action leading the state."""
    state = start + 0.05 * np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))
    action = state + 0.05
    return np.arange(n) / HZ, state, action


def low(n: int = 40, *, embodiment: str = "arm", success: bool | None = None, state=None, action=None,
        episode_id: str = "src-0000000000000001", source: str = "src") -> LowDim:
    t, s, a = moving(n)
    return LowDim(episode_id, source, embodiment, HZ, t, s if state is None else state,
                  a if action is None else action, list(STATE_NAMES), list(ACTION_NAMES), success=success)


# ------------------------------------------------------------------------------ settings


def test_no_settings_are_the_defaults():
    for params in (None, {}):
        config = CurationConfig.from_params(params)
        assert config == CurationConfig()
        assert config.enabled and config.check_outliers and config.min_frames_for_bounds == 1000
        assert config.failed_episodes == "keep" and config.per_embodiment == {} and config.physical_limits == {}


def test_an_unknown_setting_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown curation parameter\(s\): \['motoin'\].*'motion'"):
        CurationConfig.from_params({"motoin": {}})


def test_every_section_reaches_its_rules():
    config = CurationConfig.from_params({
        "enabled": False,
        "corruption": {"min_frames": 3, "max_gap_periods": 2.5},
        "outliers": {"enabled": False, "k": 2.0, "min_width": 0.5, "min_frames_for_bounds": 7},
        "motion": {"state_velocity": 0.2, "ignore": ["gripper"], "image_change": 4.0},
        "segments": {"max_idle_run": 3, "trim_suffix": False},
        "per_embodiment": {"arm": {"segments": {"min_segment": 2}}, "other": None},
        "physical_limits": {"arm": {"j0": [-1, 2]}},
    })
    assert not config.enabled and not config.check_outliers and config.min_frames_for_bounds == 7
    assert (config.corruption.min_frames, config.corruption.max_gap_periods) == (3, 2.5)
    assert config.outliers == OutlierRules(k=2.0, min_width=0.5)  # "enabled" is the switch, not a rule
    assert config.motion == MotionThresholds(state_velocity=0.2, ignore=("gripper",), image_change=4.0)
    assert config.segments == SegmentRules(max_idle_run=3, trim_suffix=False)
    assert config.per_embodiment == {"arm": {"segments": {"min_segment": 2}}, "other": {}}
    limits = config.physical_limits["arm"]["j0"]
    assert limits == (-1.0, 2.0) and all(type(v) is float for v in limits)


def test_outlier_checks_are_on_unless_switched_off():
    assert CurationConfig.from_params({"outliers": {"k": 3.0}}).check_outliers
    assert not CurationConfig.from_params({"outliers": {"enabled": False}}).check_outliers


def test_declared_limits_add_embodiments_and_dimensions_and_leave_the_settings_as_they_were():
    config = CurationConfig.from_params({"physical_limits": {"arm": {"j0": [-5, 5]}, "cart": {"x": [0, 1]}}})
    merged = config.with_declared_limits({"arm": {"j1": (0.0, 1.0)}, "hand": {"f": (0.0, 2.0)}})
    assert merged.physical_limits == {"arm": {"j0": (-5.0, 5.0), "j1": (0.0, 1.0)}, "cart": {"x": (0.0, 1.0)},
                                      "hand": {"f": (0.0, 2.0)}}
    assert config.physical_limits == {"arm": {"j0": (-5.0, 5.0)}, "cart": {"x": (0.0, 1.0)}}
    assert merged.motion == config.motion and merged.segments == config.segments


@pytest.mark.parametrize("params,uses", [
    ({}, False),
    ({"motion": {"image_change": 2.0}}, True),
    ({"per_embodiment": {"arm": {"motion": {"image_change": 2.0}}}}, True),  # one embodiment is enough
    ({"per_embodiment": {"arm": {"motion": {"state_velocity": 0.1}}, "cart": {"segments": {}}}}, False),
    ({"per_embodiment": {"arm": {"motion": None}}}, False),
    ({"enabled": False, "motion": {"image_change": 2.0}}, False),  # curation off: no images decoded for it
    ({"enabled": False, "per_embodiment": {"arm": {"motion": {"image_change": 2.0}}}}, False),
])
def test_images_are_decoded_for_curation_only_when_an_enabled_idle_test_uses_them(params, uses):
    assert CurationConfig.from_params(params).uses_images is uses


def test_an_embodiment_s_motion_and_segment_settings_lie_over_the_common_ones_key_by_key():
    config = CurationConfig.from_params({
        "motion": {"state_velocity": 0.02, "action_change": 0.5},
        "segments": {"max_idle_run": 4, "min_segment": 9},
        "per_embodiment": {"arm": {"motion": {"action_change": 0.7, "ignore": ["j1"]},
                                   "segments": {"min_segment": 3}}},
    })
    assert config.motion_for("arm") == MotionThresholds(state_velocity=0.02, action_change=0.7, ignore=("j1",))
    assert config.segments_for("arm") == SegmentRules(max_idle_run=4, min_segment=3)
    assert config.motion_for("cart") == config.motion and config.segments_for("cart") == config.segments
    assert config.per_embodiment["arm"]["motion"]["ignore"] == ["j1"]  # the settings are not rewritten


# ------------------------------------------------------------------------------ outlier bounds


def test_bounds_widen_each_dimension_s_q01_q99_range_by_k_and_bound_a_step_by_that_width():
    acc = BoundsAccumulator()
    values = np.arange(100, dtype=np.float64)  # q01 = 0, q99 = 98 (the store's integer percentile)
    state = np.stack([values, np.full(100, 5.0)], axis=1)  # j1 constant: width floored at min_width
    first = LowDim("s-1", "s", "arm", HZ, np.arange(60) / HZ, state[:60], 2 * state[:60], STATE_NAMES, ACTION_NAMES)
    second = LowDim("s-2", "s", "arm", HZ, np.arange(40) / HZ, state[60:], 2 * state[60:], STATE_NAMES, ACTION_NAMES)
    bounds = acc.add(first).add(second).bounds(OutlierRules(k=0.5, min_width=2.0))
    assert bounds["frames"] == 100
    assert bounds["state"] == {"names": ["j0", "j1"], "low": [-49.0, 4.0], "high": [147.0, 6.0]}
    assert bounds["state_delta"] == {"names": ["j0", "j1"], "low": [-196.0, -2.0], "high": [196.0, 2.0]}
    assert bounds["action"] == {"names": ["a0", "a1"], "low": [-98.0, 9.0], "high": [294.0, 11.0]}
    assert bounds["action_delta"]["high"] == [392.0, 2.0]
    merged = BoundsAccumulator().add(first).merge(BoundsAccumulator().add(second))  # Beam merges partial sums
    assert merged.frames == 100 and merged.bounds(OutlierRules(k=0.5, min_width=2.0)) == bounds


# ------------------------------------------------------------------------------ one episode


def outlier_bounds(frames: int, *, state=(-10.0, 10.0), delta=(-10.0, 10.0), action=(-10.0, 10.0),
                   names=STATE_NAMES, action_names=ACTION_NAMES) -> dict:
    def entry(names, lo_hi):
        return {"names": list(names), "low": [lo_hi[0]] * len(names), "high": [lo_hi[1]] * len(names)}

    return {"frames": frames, "state": entry(names, state), "action": entry(action_names, action),
            "state_delta": entry(names, delta), "action_delta": entry(action_names, (-10.0, 10.0))}


def test_a_disabled_curation_keeps_every_frame_of_every_episode():
    config = CurationConfig.from_params({"enabled": False, "failed_episodes": "remove"})
    outcome = curate(low(3, success=False), config, outlier_bounds(10_000, state=(0.0, 0.01)))
    assert (outcome.status, outcome.reason, outcome.kept, outcome.removed) == ("kept", None, [(0, 3)], [])


def test_a_corrupt_episode_is_quarantined_whole_with_the_rule_s_reason():
    outcome = curate(low(9), CurationConfig(), None)  # one frame under corruption.min_frames (10)
    assert (outcome.status, outcome.reason, outcome.kept, outcome.frames_kept) == ("quarantined", "too_short", [], 0)
    assert outcome.message == "9 frames < minimum 10"
    assert outcome.removed == [{"start": 0, "stop": 9, "reason": "too_short", "message": outcome.message}]
    short_segments = CurationConfig.from_params({"segments": {"min_segment": 1}})
    assert curate(low(10), short_segments, None).status == "kept"  # exactly the minimum


def test_a_physical_limit_is_checked_on_the_action_too():
    config = CurationConfig.from_params({"physical_limits": {"arm": {"a1": [0, 1.52]}}})
    outcome = curate(low(40), config, None)  # the action reaches 0.05 * 39 + 0.05 = 2.0; the state 1.95
    assert outcome.reason == "physical_range"
    assert outcome.message == "action 'a1' = 1.55 at frame 30 outside its physical range [0, 1.52]"
    assert curate(low(40, embodiment="cart"), config, None).status == "kept"  # limits are per embodiment


@pytest.mark.parametrize("frames,applied", [(999, False), (1000, True), (1001, True)])
def test_outlier_bounds_apply_from_exactly_min_frames_for_bounds_frames(frames, applied):
    outcome = curate(low(40), CurationConfig(), outlier_bounds(frames, state=(0.0, 1.0)))
    assert (outcome.reason == "outlier") is applied
    if applied:
        assert outcome.message == "state 'j0' = 1.95 at frame 39 is above the bound 1 (38 values out of bounds)"


def test_outlier_bounds_apply_only_when_checked_and_known():
    bounds = outlier_bounds(5000, state=(0.0, 1.0))
    assert curate(low(40), CurationConfig.from_params({"outliers": {"enabled": False}}), bounds).status == "kept"
    assert curate(low(40), CurationConfig(), None).status == "kept"


def test_each_vector_and_its_steps_are_bounded():
    config = CurationConfig()
    action = curate(low(40), config, outlier_bounds(5000, action=(0.0, 1.0)))
    assert action.reason == "outlier"
    assert action.message == "action 'a0' = 2 at frame 39 is above the bound 1 (40 values out of bounds)"
    state = low(40)
    state.state[25:] += 3.0  # a jump of 3.05 in one step, every value inside the value bounds
    jump = curate(state, config, outlier_bounds(5000, delta=(-1.0, 1.0)))
    assert jump.reason == "outlier" and jump.message.startswith("state_delta 'j0' = 3.05 at frame 24")
    assert curate(low(40), config, outlier_bounds(5000, delta=(-1.0, 1.0))).status == "kept"


def test_bounds_are_matched_to_dimensions_by_name_and_dimensions_without_bounds_are_not_checked():
    bounds = outlier_bounds(5000)
    bounds["state"] = {"names": ["j1", "gripper"], "low": [0.0, -1.0], "high": [1.0, 1.0]}
    outcome = curate(low(40), CurationConfig(), bounds)  # j1 is the episode's second column, the bounds' first
    assert outcome.reason == "outlier"
    assert outcome.message == "state 'j1' = 1.95 at frame 39 is above the bound 1 (19 values out of bounds)"
    bounds["state"] = {"names": ["gripper"], "low": [0.0], "high": [0.0]}  # no name in common
    assert curate(low(40), CurationConfig(), bounds).status == "kept"


def test_a_one_frame_episode_has_no_steps_to_bound():
    config = CurationConfig.from_params({"corruption": {"min_frames": 1}, "segments": {"min_segment": 1}})
    outcome = curate(low(1), config, outlier_bounds(5000, delta=(0.0, 0.0)))
    assert outcome.reason != "outlier"


def test_an_episode_left_without_a_segment_is_quarantined_as_no_motion_listing_why_sorted():
    t = np.arange(40) / HZ
    still = 1e-6 * np.arange(80, dtype=np.float64).reshape(40, 2)  # creeping, never an exact repeat
    outcome = curate(LowDim("s-1", "s", "arm", HZ, t, still, still, STATE_NAMES, ACTION_NAMES), CurationConfig(), None)
    assert (outcome.status, outcome.reason, outcome.kept) == ("quarantined", "no_motion", [])
    reasons = sorted({r["reason"] for r in outcome.removed})
    assert outcome.message == f"no segment left to learn from after removing {', '.join(reasons)}"
    assert sum(r["stop"] - r["start"] for r in outcome.removed) == 40
    t, s, a = moving(45)
    s[:20], a[:20] = s[20], s[20]  # still, 5 frames of motion (shorter than min_segment), still
    s[25:], a[25:] = s[25], s[25]
    creep = 1e-6 * np.arange(90, dtype=np.float64).reshape(45, 2)  # never an exact repeat (not duplicated frames)
    s, a = s + creep, a + creep
    several = curate(LowDim("s-2", "s", "arm", HZ, t, s, a, STATE_NAMES, ACTION_NAMES), CurationConfig(), None)
    assert several.reason == "no_motion" and len({r["reason"] for r in several.removed}) == 3
    assert several.message == "no segment left to learn from after removing idle_prefix, idle_suffix, short_segment"


def test_a_kept_episode_carries_its_segmentation():
    t, s, a = moving(40)
    s[:5], a[:5] = s[5], s[5]  # still for the first 5 frames: an idle prefix, shorter than max_idle_run
    outcome = curate(LowDim("s-1", "s", "arm", HZ, t, s, a, STATE_NAMES, ACTION_NAMES), CurationConfig(), None)
    assert outcome.status == "kept" and outcome.reason is None and outcome.message == ""
    assert outcome.removed[0]["reason"] == "idle_prefix" and outcome.removed[0]["start"] == 0
    assert outcome.kept == [(outcome.removed[0]["stop"], 40)]
    per_embodiment = CurationConfig.from_params({"per_embodiment": {"arm": {"segments": {"trim_prefix": False}}}})
    assert curate(LowDim("s-1", "s", "arm", HZ, t, s, a, STATE_NAMES, ACTION_NAMES), per_embodiment, None).kept == [(0, 40)]


def _still_with_moving_scene(n: int = 40) -> LowDim:
    t = np.arange(n) / HZ
    still = 1e-6 * np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    return LowDim("s-1", "s", "arm", HZ, t, still, still, STATE_NAMES, ACTION_NAMES,
                  image_change=np.full(n - 1, 9.0))  # the robot holds still while the scene changes


def test_the_episode_s_camera_change_reaches_its_idle_test_and_the_embodiment_s_own_motion_settings_apply():
    assert curate(_still_with_moving_scene(), CurationConfig(), None).reason == "no_motion"  # not used
    uses = CurationConfig.from_params({"motion": {"image_change": 5.0}})
    assert curate(_still_with_moving_scene(), uses, None).kept == [(0, 40)]  # the scene moves: kept
    own = CurationConfig.from_params({"per_embodiment": {"arm": {"motion": {"image_change": 5.0}}}})
    assert curate(_still_with_moving_scene(), own, None).kept == [(0, 40)]
    higher = CurationConfig.from_params({"motion": {"image_change": 5.0},
                                         "per_embodiment": {"arm": {"motion": {"image_change": 10.0}}}})
    assert curate(_still_with_moving_scene(), higher, None).reason == "no_motion"  # the embodiment's threshold


def test_image_change_enabled_for_one_embodiment_and_not_another_applies_to_that_embodiment_only():
    """``per_embodiment: {arm: {motion: {image_change: ...}}}``: the images are decoded for the store (one
    embodiment needs them), the arm's still robot in a moving scene is kept, and a cart episode with the same
    signal, or with none, is judged on its state and action alone, without raising."""
    from dataclasses import replace

    config = CurationConfig.from_params({"per_embodiment": {"arm": {"motion": {"image_change": 5.0}},
                                                            "cart": {"motion": {"state_velocity": 0.02}}}})
    assert config.uses_images
    assert config.motion_for("arm").image_change == 5.0 and config.motion_for("cart").image_change is None
    arm = _still_with_moving_scene()
    assert curate(arm, config, None).kept == [(0, 40)]
    cart = replace(arm, episode_id="s-2", embodiment="cart")
    assert curate(cart, config, None).reason == "no_motion"  # the signal is there, but not the cart's rule
    assert curate(replace(cart, image_change=None), config, None).reason == "no_motion"
    assert curate(replace(arm, image_change=None), config, None).reason == "no_motion"  # no signal: not moving


@pytest.mark.parametrize("case", ["disabled", "failed", "corrupt", "no_motion", "kept"])
def test_every_outcome_names_its_episode_and_counts_its_input_frames(case):
    """Whichever rule decides, the row says which episode, source and embodiment, and how many frames came in."""
    config, episode = CurationConfig.from_params({"failed_episodes": "remove"}), low(40, success=True)
    message = ""
    if case == "disabled":
        config = CurationConfig.from_params({"enabled": False})
    elif case == "failed":
        episode = low(40, success=False)
        message = "the source records this attempt as failed"
    elif case == "corrupt":
        episode = low(7)
        message = "7 frames < minimum 10"
    elif case == "no_motion":
        episode = _still_with_moving_scene()
    outcome = curate(LowDim(**{**episode.__dict__, "episode_id": "ds-00000000000000ab", "source": "ds",
                               "embodiment": "arm"}), config, None)
    row = outcome.to_row()
    assert (row["episode_id"], row["source"], row["embodiment"]) == ("ds-00000000000000ab", "ds", "arm")
    assert row["frames_in"] == len(episode.timestamp)
    if case != "no_motion":
        assert row["message"] == message
    else:
        assert row["message"].startswith("no segment left to learn from after removing ")
        assert ", ".join(sorted({r["reason"] for r in row["removed_ranges"]})) in row["message"]


def test_an_outcome_s_row_holds_its_ranges_and_the_frames_they_keep():
    outcome = CurationOutcome("s-1", "s", "arm", "kept", None, "", 30, [(2, 10), (15, 30)],
                              [{"start": 0, "stop": 2, "reason": "idle_prefix"}])
    assert outcome.frames_kept == 23
    assert outcome.to_row() == {
        "episode_id": "s-1", "source": "s", "embodiment": "arm", "status": "kept", "reason": None, "message": "",
        "frames_in": 30, "frames_kept": 23, "kept_ranges": [{"start": 2, "stop": 10}, {"start": 15, "stop": 30}],
        "removed_ranges": [{"start": 0, "stop": 2, "reason": "idle_prefix"}],
    }


# ------------------------------------------------------------------------------ reports


def outcome(eid, source, embodiment, frames_in, kept, removed, reason=None):
    status = "kept" if reason is None else "quarantined"
    return CurationOutcome(eid, source, embodiment, status, reason, "", frames_in, kept,
                           [{"start": a, "stop": b, "reason": r} for a, b, r in removed])


def test_the_report_counts_episodes_and_frames_per_source_and_embodiment_and_why_they_went():
    outcomes = [
        outcome("b-2", "b", "arm", 10, [(0, 10)], []),
        outcome("a-1", "a", "arm", 20, [(4, 20)], [(0, 4, "idle_prefix")]),
        outcome("a-2", "a", "hand", 6, [], [(0, 6, "too_short")], reason="too_short"),
        outcome("a-3", "a", "arm", 12, [], [(0, 12, "too_short")], reason="too_short"),
        outcome("a-4", "a", "arm", 30, [(0, 25)], [(25, 27, "static_run"), (27, 30, "idle_suffix")]),
    ]
    report = summarize(outcomes)
    assert report["format_version"] == 1 and list(report["sources"]) == ["a", "b"]
    a = report["sources"]["a"]
    assert a["total"] == {
        "episodes_in": 4, "episodes_kept": 2, "quarantined_by_reason": {"too_short": 2}, "frames_in": 68,
        "frames_kept": 41, "frames_removed_by_reason": {"idle_prefix": 4, "idle_suffix": 3, "static_run": 2,
                                                        "too_short": 18},
        "frames_removed": 27, "kept_fraction": round(41 / 68, 6),
    }
    assert list(a["total"]["frames_removed_by_reason"]) == sorted(a["total"]["frames_removed_by_reason"])
    assert a["embodiments"]["hand"]["episodes_kept"] == 0 and a["embodiments"]["hand"]["kept_fraction"] == 0.0
    assert a["embodiments"]["arm"]["quarantined_by_reason"] == {"too_short": 1}
    assert a["embodiments"]["arm"]["frames_in"] == 62 and a["embodiments"]["arm"]["frames_kept"] == 41
    assert report["sources"]["b"]["total"]["kept_fraction"] == 1.0
    assert summarize([outcome("e-1", "e", "arm", 0, [], [])])["sources"]["e"]["total"]["kept_fraction"] is None


def test_a_report_that_loses_frames_is_refused():
    with pytest.raises(AssertionError, match="^curation must account for every frame$"):
        summarize([outcome("a-1", "a", "arm", 20, [(4, 20)], [])])


def write_report(store, sources: dict) -> None:
    store.mkdir(parents=True, exist_ok=True)
    (store / CURATION_REPORT_FILE).write_text(json.dumps({"format_version": 1, "sources": sources}))


def total(frames_in, frames_kept, removed):
    return {"total": {"episodes_in": 2, "episodes_kept": 1, "frames_in": frames_in, "frames_kept": frames_kept,
                      "kept_fraction": frames_kept / frames_in if frames_in else None, "extra": 1,
                      "frames_removed_by_reason": removed}}


def test_reports_of_several_stores_merge_into_metrics_and_removed_fractions_per_source_and_reason(tmp_path):
    write_report(tmp_path / "one", {"z": total(100, 60, {"static_run": 30, "idle_prefix": 10})})
    write_report(tmp_path / "two", {"b": total(0, 0, {"too_short": 0}), "a": total(30, 29, {"idle_suffix": 1})})
    metrics, rows = collect_reports([str(tmp_path / "one"), str(tmp_path / "two")])
    assert list(metrics) == ["a", "b", "z"]
    assert metrics["z"] == {"episodes_in": 2, "episodes_kept": 1, "frames_in": 100, "frames_kept": 60,
                            "kept_fraction": 0.6}
    assert rows == [{"source": "a", "reason": "idle_suffix", "removed_fraction": 0.033333},  # 6 digits
                    {"source": "b", "reason": "too_short", "removed_fraction": 0.0},
                    {"source": "z", "reason": "idle_prefix", "removed_fraction": 0.1},
                    {"source": "z", "reason": "static_run", "removed_fraction": 0.3}]
    with pytest.raises(FileNotFoundError, match="missing.*no curation report"):
        collect_reports([str(tmp_path / "one"), str(tmp_path / "missing")])


def test_kept_episodes_duplicated_across_stores_are_listed_keeping_the_smallest_id(tmp_path):
    def curation(store, rows):
        store.mkdir(parents=True, exist_ok=True)
        table = pa.table({"episode_id": [r[0] for r in rows], "status": [r[1] for r in rows],
                          "content_sha256": [r[2] for r in rows], "frames_kept": [1] * len(rows)})
        pq.write_table(table, store / CURATION_FILE)

    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    curation(one, [("b-1", "kept", "d1"), ("b-2", "kept", "d2"), ("b-3", "quarantined", "d3")])
    curation(two, [("a-1", "kept", "d1"), ("a-2", "kept", "d2"), ("a-4", "kept", "d2"), ("a-3", "kept", "d3")])
    (three).mkdir()  # a store without curation (nothing converted yet): skipped
    found = cross_store_duplicates([str(three), str(one), str(two)])
    assert found == [
        {"episode_id": "b-1", "store": str(one), "duplicate_of": "a-1", "duplicate_of_store": str(two),
         "content_sha256": "d1"},
        {"episode_id": "b-2", "store": str(one), "duplicate_of": "a-2", "duplicate_of_store": str(two),
         "content_sha256": "d2"},
    ]  # a-4 duplicates a-2 in its own store (the conversion's business); b-3 is quarantined, a-3 unique
    assert cross_store_duplicates([str(one)]) == []
