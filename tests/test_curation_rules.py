"""Curation rules on constructed episodes whose correct answer is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.episode_store.digest import content_digest
from pipelines.curation_rules import (
    CorruptionRules,
    CurationReason,
    MotionThresholds,
    OutlierRules,
    SegmentRules,
    corruption,
    duplicates,
    first_violation,
    idle_steps,
    physical_violation,
    robust_bounds,
    segment,
)

HZ = 10.0
NAMES = ["j0", "j1", "gripper"]


def episode(pattern: list[tuple[str, int]], *, seed: int = 0):
    """Build state/action from segments ("move", n) / ("still", n); motion is 0.05 rad per step."""
    rng = np.random.default_rng(seed)
    rows, pos = [], np.zeros(3)
    for kind, n in pattern:
        for _ in range(n):
            if kind == "move":
                pos = pos + np.r_[0.05, -0.03, 0.0] + rng.normal(0, 1e-3, 3) * np.r_[1, 1, 0]
            rows.append(pos.copy())
    state = np.array(rows)
    action = np.roll(state, -1, axis=0)
    action[-1] = state[-1]
    t = np.arange(len(state)) / HZ
    return t, state, action


def curate(pattern, rules=SegmentRules(), thresholds=MotionThresholds()):
    t, s, a = episode(pattern)
    return segment(idle_steps(t, s, a, NAMES, [f"target_{n}" for n in NAMES], thresholds), rules)


def test_idle_prefix_is_trimmed_to_the_frame():
    result = curate([("still", 12), ("move", 40)])
    # frames 0..11 share one pose, but the action leads the state by one step: at frame 10
    # the robot is already commanded to move, so frames 0..9 are idle
    prefix = result.removed[0]
    assert (prefix.start, prefix.reason) == (0, CurationReason.IDLE_PREFIX)
    assert prefix.stop == 10
    assert result.kept == [(10, 52)]
    assert result.kept_frames + result.removed_frames() == 52


def test_idle_suffix_is_trimmed():
    result = curate([("move", 30), ("still", 20)])
    assert result.removed[-1].reason == CurationReason.IDLE_SUFFIX
    assert result.removed[-1].stop == 50
    assert result.kept == [(0, result.removed[-1].start)]
    assert result.removed[-1].start == 30  # frame 29 is the last move; 30.. never move again


def test_static_run_is_removed_and_its_neighbours_kept():
    result = curate([("move", 30), ("still", 15), ("move", 30)])
    static = [r for r in result.removed if r.reason == CurationReason.STATIC_RUN]
    assert len(static) == 1
    # still frames 30..44; frames 43 and 44 are already commanded towards the next motion
    assert (static[0].start, static[0].stop) == (30, 43)
    assert result.kept == [(0, 30), (43, 75)]


def test_short_pause_is_part_of_motion():
    result = curate([("move", 30), ("still", 5), ("move", 30)])
    assert result.kept == [(0, 65)] and not result.removed


def test_segment_too_short_to_learn_from_is_removed():
    result = curate([("move", 30), ("still", 15), ("move", 8), ("still", 15), ("move", 30)])
    short = [r for r in result.removed if r.reason == CurationReason.SHORT_SEGMENT]
    assert [(r.start, r.stop) for r in short] == [(43, 53)]
    assert result.kept_frames + result.removed_frames() == 98


def test_episode_without_motion_is_one_no_motion_range():
    result = curate([("still", 40)])
    assert [(r.start, r.stop, r.reason) for r in result.removed] == [(0, 40, CurationReason.NO_MOTION)]
    assert result.kept == []


def test_ignored_dimensions_do_not_count_as_motion():
    t, s, a = episode([("still", 20), ("move", 30)])
    s[:20, 2] = np.linspace(0, 1, 20)  # gripper sensor drifts while the arm is still
    names = ["j0", "j1", "gripper"]
    with_gripper = segment(idle_steps(t, s, a, names, names, MotionThresholds()), SegmentRules())
    without = segment(idle_steps(t, s, a, names, names, MotionThresholds(ignore=("gripper",))), SegmentRules())
    assert with_gripper.removed == []
    assert without.removed[0].reason == CurationReason.IDLE_PREFIX


def test_every_frame_is_accounted_for_on_random_patterns():
    rng = np.random.default_rng(3)
    for _ in range(50):
        pattern = [(("move", "still")[i % 2], int(rng.integers(1, 30))) for i in range(int(rng.integers(1, 8)))]
        result = curate(pattern, SegmentRules(max_idle_run=int(rng.integers(1, 10)), min_segment=int(rng.integers(1, 20))))
        n = sum(k for _, k in pattern)
        covered = np.zeros(n, dtype=int)
        for a, b in result.kept:
            covered[a:b] += 1
        for r in result.removed:
            covered[r.start : r.stop] += 1
        assert np.all(covered == 1), pattern


@pytest.mark.parametrize(
    "change,reason",
    [
        (lambda t, s, a: (t[:6], s[:6], a[:6]), CurationReason.TOO_SHORT),
        (lambda t, s, a: (np.r_[t[:20], t[20:] + 2.0], s, a), CurationReason.TIMESTAMP_GAP),
        (lambda t, s, a: (t, np.repeat(s[::4], 4, axis=0)[: len(t)], np.repeat(a[::4], 4, axis=0)[: len(t)]),
         CurationReason.DUPLICATED_FRAMES),
    ],
)
def test_each_corruption_kind_gets_its_code(change, reason):
    t, s, a = episode([("move", 40)])
    assert corruption(t, s, a, HZ, CorruptionRules()) is None
    got = corruption(*change(t, s, a), HZ, CorruptionRules())
    assert got is not None and got[0] == reason, got


def test_injected_outlier_is_caught_and_extreme_but_valid_motion_is_not():
    rng = np.random.default_rng(0)
    population = rng.normal(0, 0.5, (20000, 3))
    q01, q99 = np.quantile(population, 0.01, axis=0), np.quantile(population, 0.99, axis=0)
    low, high = robust_bounds(q01, q99, OutlierRules(k=1.0))
    extreme_but_valid = rng.normal(0, 0.5, (200, 3))
    extreme_but_valid[50] = [2.0, -2.0, 1.9]  # ~4 sigma: rare but physical
    assert first_violation(extreme_but_valid, NAMES, low, high, "state") is None
    glitch = extreme_but_valid.copy()
    glitch[120, 1] = 57.3  # degrees written where radians belong
    message = first_violation(glitch, NAMES, low, high, "state")
    assert message is not None and "'j1'" in message and "frame 120" in message and "57.3" in message


def test_physical_limits():
    s = np.zeros((10, 3))
    s[4, 2] = 0.2
    assert physical_violation(s, NAMES, {"gripper": (0.0, 0.085)}, "state").startswith("state 'gripper' = 0.2 at frame 4")
    assert physical_violation(s, NAMES, {"gripper": (0.0, 0.3)}, "state") is None


def test_duplicates_are_found_and_kept_once():
    t, s, a = episode([("move", 20)])
    frames = [b"f%d" % i for i in range(20)]
    d1 = content_digest(t, s, a, frames)
    d2 = content_digest(t + 1000.0, s.astype(np.float32), a, frames)  # re-upload recorded later: same content
    d3 = content_digest(t, s, a, frames[:-1] + [b"other"])
    assert d1 == d2 != d3
    assert duplicates({"src_b-02": d1, "src_a-01": d2, "src_a-03": d3}) == {"src_b-02": "src_a-01"}


def test_declared_physical_limits_merge_with_params():
    from pipelines.curation import CurationConfig, LowDim, curate

    config = CurationConfig.from_params({"physical_limits": {"arm": {"j0": [-5, 5]}}}).with_declared_limits(
        {"arm": {"gripper": (0.0, 0.085), "j0": (-9.0, 9.0)}}
    )
    assert config.physical_limits["arm"] == {"gripper": (0.0, 0.085), "j0": (-5.0, 5.0)}  # params win
    t, s, a = episode([("move", 40)])
    s[7, 2] = 0.5
    low = LowDim("x-0000000000000000", "x", "arm", HZ, t, s, a, NAMES, [f"target_{n}" for n in NAMES])
    outcome = curate(low, config, None)
    assert outcome.status == "quarantined" and outcome.reason == "physical_range"
    assert "'gripper' = 0.5 at frame 7" in outcome.message
    assert outcome.removed == [{"start": 0, "stop": 40, "reason": "physical_range", "message": outcome.message}]


def test_image_change_is_an_optional_motion_signal():
    import io

    from PIL import Image

    from pipelines.episode_store.images import image_change_per_step

    def jpeg(value: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
        return buf.getvalue()

    t, s, a = episode([("move", 20), ("still", 20), ("move", 20)])
    frames = [jpeg(50)] * 25 + [jpeg(50 + 10 * i) for i in range(10)] + [jpeg(150)] * 25  # scene changes at 25..34
    change = image_change_per_step([frames])
    assert change.shape == (59,) and change[:24].max() < 1 and change[25:34].min() > 5
    names = [f"target_{n}" for n in NAMES]
    without = segment(idle_steps(t, s, a, NAMES, names, MotionThresholds()), SegmentRules())
    with_images = segment(idle_steps(t, s, a, NAMES, names, MotionThresholds(image_change=2.0), change), SegmentRules())
    assert any(r.reason == CurationReason.STATIC_RUN for r in without.removed)
    assert with_images.kept_frames > without.kept_frames  # the robot is still but the scene moves: kept


@pytest.mark.parametrize("success,setting,status", [
    (False, "remove", "quarantined"), (False, "keep", "kept"), (None, "remove", "kept"), (True, "remove", "kept"),
])
def test_failed_attempts_are_removed_only_when_asked_and_only_when_the_source_says_failed(success, setting, status):
    from pipelines.curation import CurationConfig, LowDim, curate

    config = CurationConfig.from_params({"failed_episodes": setting})
    t, s, a = episode([("move", 40)])
    low = LowDim("x-0000000000000000", "x", "arm", HZ, t, s, a, NAMES, [f"target_{n}" for n in NAMES],
                 success=success)
    outcome = curate(low, config, None)
    assert outcome.status == status
    if status == "quarantined":
        assert outcome.reason == "failed_attempt" and outcome.kept == []
        assert outcome.removed == [{"start": 0, "stop": 40, "reason": "failed_attempt", "message": outcome.message}]


def test_failed_episodes_setting_is_checked():
    from pipelines.curation import CurationConfig

    assert CurationConfig.from_params({}).failed_episodes == "keep"
    with pytest.raises(ValueError, match="keep or remove"):
        CurationConfig.from_params({"failed_episodes": "drop"})


def test_the_two_minimum_frame_counts_have_two_names():
    from pipelines.curation import CurationConfig

    config = CurationConfig.from_params({"corruption": {"min_frames": 12}, "outliers": {"min_frames_for_bounds": 34}})
    assert (config.corruption.min_frames, config.min_frames_for_bounds) == (12, 34)
    assert CurationConfig.from_params({}).min_frames_for_bounds == 1000
    with pytest.raises(ValueError) as error:
        CurationConfig.from_params({"outliers": {"min_frames": 34}})
    assert str(error.value) == ("curation.outliers.min_frames is now curation.outliers.min_frames_for_bounds "
                                "(the frames an embodiment needs before its outlier bounds are applied)")


def test_a_source_s_own_curation_lies_over_the_common_settings_section_by_section():
    from pipelines.cli import _source_curation

    common = {"enabled": True, "motion": {"state_velocity": 0.01, "action_change": 0.001}, "segments": {"min_segment": 16}}
    merged = _source_curation(common, {"failed_episodes": "remove", "motion": {"state_velocity": 0.05}})
    assert merged == {"enabled": True, "failed_episodes": "remove", "segments": {"min_segment": 16},
                      "motion": {"state_velocity": 0.05, "action_change": 0.001}}
    assert common["motion"]["state_velocity"] == 0.01  # the common settings are not changed
    assert _source_curation(common, {}) == common


# Each test below pins one curation rule at its boundary and one past it (issue 18).

def idle_mask(*runs: tuple[bool, int]) -> np.ndarray:
    return np.concatenate([np.full(n, idle) for idle, n in runs])


def test_an_idle_run_of_exactly_max_idle_run_frames_is_kept_and_one_more_is_removed():
    rules = SegmentRules(max_idle_run=6, min_segment=1)
    at = segment(idle_mask((False, 20), (True, 6), (False, 20)), rules)
    assert at.kept == [(0, 46)] and at.removed == []
    past = segment(idle_mask((False, 20), (True, 7), (False, 20)), rules)
    assert past.kept == [(0, 20), (27, 47)]
    assert [(r.start, r.stop, r.reason, r.message) for r in past.removed] == [
        (20, 27, CurationReason.STATIC_RUN, "7 idle frames")]


def test_a_moving_segment_of_exactly_min_segment_frames_is_kept_and_one_less_is_removed():
    rules = SegmentRules(max_idle_run=0, min_segment=16)
    at = segment(idle_mask((False, 16), (True, 3), (False, 30)), rules)
    assert at.kept == [(0, 16), (19, 49)]
    short = segment(idle_mask((False, 15), (True, 3), (False, 30)), rules)
    assert short.kept == [(18, 48)]
    assert [(r.start, r.stop, r.reason, r.message) for r in short.removed] == [
        (0, 15, CurationReason.SHORT_SEGMENT, "15 moving frames < minimum 16"),
        (15, 18, CurationReason.STATIC_RUN, "3 idle frames")]


def test_without_trimming_an_idle_prefix_or_suffix_is_judged_like_any_static_run():
    mask = idle_mask((True, 3), (False, 20), (True, 4))
    trimmed = segment(mask, SegmentRules(max_idle_run=6, min_segment=1))
    assert trimmed.kept == [(3, 23)]
    assert [(r.start, r.stop, r.reason) for r in trimmed.removed] == [
        (0, 3, CurationReason.IDLE_PREFIX), (23, 27, CurationReason.IDLE_SUFFIX)]
    kept = segment(mask, SegmentRules(max_idle_run=6, min_segment=1, trim_prefix=False, trim_suffix=False))
    assert kept.kept == [(0, 27)] and kept.removed == []
    long = segment(idle_mask((True, 7), (False, 20), (True, 7)),
                   SegmentRules(max_idle_run=6, min_segment=1, trim_prefix=False, trim_suffix=False))
    assert [(r.start, r.stop, r.reason) for r in long.removed] == [
        (0, 7, CurationReason.STATIC_RUN), (27, 34, CurationReason.STATIC_RUN)]
    only_prefix = segment(mask, SegmentRules(max_idle_run=0, min_segment=1, trim_prefix=True, trim_suffix=False))
    assert [r.reason for r in only_prefix.removed] == [CurationReason.IDLE_PREFIX, CurationReason.STATIC_RUN]


def test_an_all_idle_episode_is_one_no_motion_range_whatever_the_trimming():
    for trim in (True, False):
        result = segment(np.ones(9, dtype=bool), SegmentRules(trim_prefix=trim, trim_suffix=trim))
        assert result.kept == [] and [(r.start, r.stop, r.reason) for r in result.removed] == [
            (0, 9, CurationReason.NO_MOTION)]
    assert segment(np.zeros(0, dtype=bool), SegmentRules()).kept == []


def test_an_episode_of_exactly_min_frames_is_curated_and_one_frame_less_is_too_short():
    rules = CorruptionRules(min_frames=10)

    def low(n):
        t = np.arange(n) / HZ
        s = np.cumsum(np.full((n, 3), 0.05), axis=0)
        return t, s, s + 0.01

    assert corruption(*low(10), HZ, rules) is None
    assert corruption(*low(9), HZ, rules) == (CurationReason.TOO_SHORT, "9 frames < minimum 10")


def test_a_step_of_exactly_max_gap_periods_is_not_a_gap_and_a_longer_one_is():
    rules = CorruptionRules(min_frames=2, max_gap_periods=5.0)
    s = np.cumsum(np.full((4, 2), 0.05), axis=0)
    at = np.array([0.0, 0.1, 0.6, 0.7])  # 0.5 s = exactly 5 periods at 10 Hz
    assert corruption(at, s, s, HZ, rules) is None
    past = np.array([0.0, 0.1, 0.61, 0.71])
    assert corruption(past, s, s, HZ, rules) == (
        CurationReason.TIMESTAMP_GAP, "0.510 s between frames 1 and 2 (> 5 periods at 10 Hz)")


def test_repeated_frames_up_to_the_duplicate_fraction_are_allowed_and_beyond_it_are_duplication():
    rules = CorruptionRules(min_frames=2, max_duplicate_fraction=0.5)
    t = np.arange(5) / HZ
    half = np.array([[0.0], [0.0], [1.0], [1.0], [2.0]])  # 2 of 4 steps repeat
    assert corruption(t, half, half, HZ, rules) is None
    more = np.array([[0.0], [0.0], [0.0], [1.0], [1.0]])  # 3 of 4
    assert corruption(t, more, more, HZ, rules) == (
        CurationReason.DUPLICATED_FRAMES, "3 of 4 steps repeat the previous frame exactly")


def test_physical_limits_include_both_ends_and_name_the_first_frame_outside():
    limits = {"gripper": (0.0, 0.085)}
    inside = np.array([[0.0], [0.085], [0.04]])
    assert physical_violation(inside, ["gripper"], limits, "state") is None
    below = np.array([[0.01], [-0.001], [-0.5]])
    assert physical_violation(below, ["gripper"], limits, "state") == (
        "state 'gripper' = -0.001 at frame 1 outside its physical range [0, 0.085]")
    above = np.array([[0.086]])
    assert "= 0.086 at frame 0" in physical_violation(above, ["gripper"], limits, "action")
    assert physical_violation(below, ["j0"], limits, "state") is None  # no limit declared for j0


def test_a_dimension_constant_across_the_dataset_gets_the_min_width_floor():
    rules = OutlierRules(k=1.0, min_width=1e-3)
    low, high = robust_bounds(np.array([0.5, 0.0]), np.array([0.5, 2.0]), rules)
    assert low.tolist() == [0.5 - 1e-3, -2.0] and high.tolist() == [0.5 + 1e-3, 4.0]
    # a width just above the floor is its own
    low, high = robust_bounds(np.array([0.0]), np.array([0.002]), OutlierRules(k=2.0, min_width=1e-3))
    assert low.tolist() == [-0.004] and high.tolist() == [0.006]


def test_a_value_exactly_on_an_outlier_bound_is_inside_and_the_message_names_the_worst_excursion():
    low, high = np.array([0.0, -1.0]), np.array([1.0, 1.0])
    assert first_violation(np.array([[1.0, -1.0], [0.0, 1.0]]), ["a", "b"], low, high, "state") is None
    values = np.array([[1.5, 0.0], [0.0, -3.0], [0.0, 1.2]])
    assert first_violation(values, ["a", "b"], low, high, "state") == (
        "state 'b' = -3 at frame 1 is below the bound -1 (3 values out of bounds)")


def test_motion_exactly_at_a_threshold_counts_as_moving_and_just_below_as_idle():
    t = np.array([0.0, 0.5, 1.0])
    still_action = np.zeros((3, 1))
    at = np.array([[0.0], [0.25], [0.5]])  # 0.5 units/s
    below = np.array([[0.0], [0.24], [0.48]])
    velocity = MotionThresholds(state_velocity=0.5, action_change=1.0)
    assert idle_steps(t, at, still_action, ["j0"], ["a0"], velocity).tolist() == [False, False, False]
    assert idle_steps(t, below, still_action, ["j0"], ["a0"], velocity).tolist() == [True, True, True]
    change = MotionThresholds(state_velocity=1.0, action_change=0.25)
    assert idle_steps(t, still_action, at, ["j0"], ["a0"], change).tolist() == [False, False, False]
    assert idle_steps(t, still_action, below, ["j0"], ["a0"], change).tolist() == [True, True, True]
    image = MotionThresholds(state_velocity=1.0, action_change=1.0, image_change=4.0)
    assert idle_steps(t, still_action, still_action, ["j0"], ["a0"], image, np.array([4.0, 3.9])).tolist() == [
        False, False, True]


def test_image_change_is_used_only_when_its_threshold_is_set_and_the_signal_is_there():
    t = np.arange(4) / HZ
    still = np.zeros((4, 1))
    signal = np.full(3, 200.0)
    plain = MotionThresholds()
    assert idle_steps(t, still, still, ["j0"], ["a0"], plain, signal).all()  # signal without a threshold
    assert idle_steps(t, still, still, ["j0"], ["a0"], MotionThresholds(image_change=4.0), None).all()


def test_episodes_of_one_and_two_frames_and_all_dimensions_ignored():
    still = np.zeros((2, 1))
    assert idle_steps(np.array([0.0, 0.1]), still, still, ["j0"], ["a0"], MotionThresholds()).tolist() == [True, True]
    assert idle_steps(np.array([0.0]), still[:1], still[:1], ["j0"], ["a0"], MotionThresholds()).tolist() == [False]
    moving = np.array([[0.0], [1.0], [2.0]])
    ignored = MotionThresholds(ignore=("j0",))
    assert idle_steps(np.arange(3) / HZ, moving, np.zeros((3, 1)), ["j0"], ["a0"], ignored).all()
    assert segment(np.zeros(1, dtype=bool), SegmentRules(min_segment=1)).kept == [(0, 1)]


def test_an_idle_suffix_from_frame_one_is_trimmed_and_every_static_run_is_judged():
    result = segment(idle_mask((False, 1), (True, 5)), SegmentRules(min_segment=1))
    assert [(r.start, r.stop, r.reason) for r in result.removed] == [(1, 6, CurationReason.IDLE_SUFFIX)]
    runs = segment(idle_mask((False, 20), (True, 3), (False, 20), (True, 7), (False, 20), (True, 8), (False, 5)),
                   SegmentRules(max_idle_run=6, min_segment=16))
    assert runs.kept == [(0, 43), (50, 70)]
    assert [(r.start, r.stop, r.reason, r.message) for r in runs.removed] == [
        (43, 50, CurationReason.STATIC_RUN, "7 idle frames"),
        (70, 78, CurationReason.STATIC_RUN, "8 idle frames"),
        (78, 83, CurationReason.SHORT_SEGMENT, "5 moving frames < minimum 16")]


def test_a_two_frame_episode_that_repeats_its_frame_is_duplication():
    rules = CorruptionRules(min_frames=2, max_duplicate_fraction=0.5)
    same = np.zeros((2, 1))
    assert corruption(np.array([0.0, 0.1]), same, same, HZ, rules) == (
        CurationReason.DUPLICATED_FRAMES, "1 of 1 steps repeat the previous frame exactly")


def test_an_excursion_above_a_bound_by_less_than_one_is_named_above_that_bound():
    low, high = np.array([0.0]), np.array([1.0])
    assert first_violation(np.array([[0.5], [1.25]]), ["a"], low, high, "action") == (
        "action 'a' = 1.25 at frame 1 is above the bound 1 (1 values out of bounds)")
