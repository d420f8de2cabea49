"""Two-level shares: equal per dataset, then per embodiment, then per frame or episode."""

from __future__ import annotations

from collections import defaultdict

import pytest

from pipelines.manifest.weights import episode_probabilities

ROWS = [
    {"episode_id": "a1", "dataset": "droid", "embodiment": "franka", "frames_kept": 100},
    {"episode_id": "a2", "dataset": "droid", "embodiment": "franka", "frames_kept": 300},
    {"episode_id": "b1", "dataset": "robomind", "embodiment": "ur_1rgb", "frames_kept": 50},
    {"episode_id": "b2", "dataset": "robomind", "embodiment": "agilex_3rgb", "frames_kept": 10},
    {"episode_id": "b3", "dataset": "robomind", "embodiment": "agilex_3rgb", "frames_kept": 30},
    {"episode_id": "c1", "dataset": "inhouse", "embodiment": "aloha", "frames_kept": 7},
]


def shares(probs, key):
    out = defaultdict(float)
    for p, row in zip(probs, ROWS):
        out[key(row)] += p
    return dict(out)


def test_shares_from_the_table_equal_the_declared_two_level_shares():
    probs, declared = episode_probabilities(ROWS)
    assert sum(probs) == pytest.approx(1.0, abs=1e-15)
    by_dataset = shares(probs, lambda r: r["dataset"])
    assert by_dataset == pytest.approx({"droid": 1 / 3, "robomind": 1 / 3, "inhouse": 1 / 3}, abs=1e-15)
    by_emb = shares(probs, lambda r: (r["dataset"], r["embodiment"]))
    assert by_emb[("robomind", "ur_1rgb")] == pytest.approx(1 / 6) == by_emb[("robomind", "agilex_3rgb")]
    for d, entry in declared["datasets"].items():
        assert entry["share"] == pytest.approx(by_dataset[d], abs=1e-15)
        for e, sub in entry["embodiments"].items():
            assert sub["share"] == pytest.approx(by_emb[(d, e)], abs=1e-15)
    # uniform over kept frames inside a group: equal per-frame probability
    assert probs[0] / 100 == pytest.approx(probs[1] / 300)
    assert probs[3] / 10 == pytest.approx(probs[4] / 30)


def test_uniform_over_episodes_and_weight_overrides():
    probs, _ = episode_probabilities(ROWS, within="episodes")
    assert probs[3] == pytest.approx(probs[4]) and probs[0] == pytest.approx(probs[1])
    probs, declared = episode_probabilities(ROWS, dataset_weights={"droid": 2, "robomind": 1, "inhouse": 1})
    assert shares(probs, lambda r: r["dataset"])["droid"] == pytest.approx(0.5)
    assert declared["datasets"]["inhouse"]["share"] == pytest.approx(0.25)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="missing"):
        episode_probabilities(ROWS, dataset_weights={"droid": 1})
    with pytest.raises(ValueError, match="no kept frames"):
        episode_probabilities([dict(ROWS[0], frames_kept=0)])
    with pytest.raises(ValueError, match="within"):
        episode_probabilities(ROWS, within="seconds")


# Each test below pins one rule of the weights, at its boundary and one past it.

WEIGHTS = {"droid": 1, "robomind": 1, "inhouse": 1}


def test_an_episode_with_exactly_one_kept_frame_is_weighted_and_zero_is_refused_naming_it():
    probs, _ = episode_probabilities([dict(ROWS[0], frames_kept=1)])
    assert probs == [1.0]
    with pytest.raises(ValueError, match=r"row 1 \(a2\) has no kept frames"):
        episode_probabilities([ROWS[0], dict(ROWS[1], frames_kept=0)])


def test_no_rows_are_refused():
    with pytest.raises(ValueError, match="^no episodes to weight$"):
        episode_probabilities([])


def test_weights_naming_an_absent_dataset_or_leaving_one_out_are_refused():
    with pytest.raises(ValueError, match=r"unknown \['lerobot'\], missing \[\]"):
        episode_probabilities(ROWS, dataset_weights={**WEIGHTS, "lerobot": 1})
    with pytest.raises(ValueError, match=r"unknown \[\], missing \['inhouse'\]"):
        episode_probabilities(ROWS, dataset_weights={"droid": 1, "robomind": 1})


def test_a_zero_weight_gives_its_dataset_no_probability_and_a_negative_one_is_refused():
    probs, declared = episode_probabilities(ROWS, dataset_weights={**WEIGHTS, "inhouse": 0})
    assert probs[5] == 0.0 and declared["datasets"]["inhouse"]["share"] == 0.0
    assert declared["datasets"]["droid"]["share"] == 0.5
    with pytest.raises(ValueError, match=r"dataset weight of 'inhouse' must be a finite number >= 0, got -0.5"):
        episode_probabilities(ROWS, dataset_weights={**WEIGHTS, "inhouse": -0.5})


def test_weights_below_one_are_relative_and_all_zero_weights_are_refused():
    _, declared = episode_probabilities(ROWS, dataset_weights={"droid": 0.5, "robomind": 0.25, "inhouse": 0.25})
    assert [declared["datasets"][d]["share"] for d in ("droid", "robomind", "inhouse")] == [0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"^dataset weights are all zero .*: at least one dataset needs a weight > 0$"):
        episode_probabilities(ROWS, dataset_weights={"droid": 0, "robomind": 0, "inhouse": 0.0})


@pytest.mark.parametrize("bad", ["2", True, None, float("nan"), float("inf")])
def test_a_weight_that_is_not_a_finite_number_is_refused_naming_the_dataset(bad):
    with pytest.raises(ValueError, match=rf"dataset weight of 'droid' must be a (finite )?number.*got {bad!r}"):
        episode_probabilities(ROWS, dataset_weights={**WEIGHTS, "droid": bad})


def test_equal_weights_are_the_default_and_an_empty_override_means_equal():
    default, declared = episode_probabilities(ROWS)
    assert episode_probabilities(ROWS, dataset_weights={})[0] == default
    assert episode_probabilities(ROWS, dataset_weights={"droid": 7, "robomind": 7, "inhouse": 7})[0] == default
    assert [declared["datasets"][d]["share"] for d in sorted(declared["datasets"])] == [1 / 3] * 3


def test_a_weight_is_read_as_the_nearest_fraction_with_denominator_at_most_ten_to_the_nine():
    from fractions import Fraction

    # 0.1 is exactly 1/10, so the shares are the decimal ones
    _, declared = episode_probabilities(ROWS, dataset_weights={"droid": 0.1, "robomind": 0.2, "inhouse": 0.7})
    assert [declared["datasets"][d]["share"] for d in ("droid", "robomind", "inhouse")] == [0.1, 0.2, 0.7]
    # 1 / (10**9 + 1) is read as 1 / 10**9, the nearest fraction with a denominator up to 10**9
    tiny = 1 / (10**9 + 1)
    _, declared = episode_probabilities(ROWS, dataset_weights={"droid": tiny, "robomind": 1, "inhouse": 0})
    w = Fraction(1, 10**9)
    assert declared["datasets"]["droid"]["share"] == float(w / (1 + w))
    assert declared["datasets"]["droid"]["share"] != float(Fraction(tiny) / (1 + Fraction(tiny)))


def test_the_declared_table_names_within_and_counts_episodes_and_kept_frames_per_embodiment():
    _, declared = episode_probabilities(ROWS, within="episodes")
    assert declared["within"] == "episodes"
    assert declared["datasets"]["robomind"]["embodiments"]["agilex_3rgb"] == {
        "share": 1 / 6, "episodes": 2, "frames_kept": 40}
    assert declared["datasets"]["droid"] == {
        "share": 1 / 3, "embodiments": {"franka": {"share": 1 / 3, "episodes": 2, "frames_kept": 400}}}


def test_integer_weights_are_read_exactly_and_numpy_scalars_are_numbers():
    from fractions import Fraction

    import numpy as np

    # 2**53 + 1 is not a float64: read through float it would be 2**53
    _, declared = episode_probabilities(ROWS, dataset_weights={"droid": 2**53 + 1, "robomind": 1, "inhouse": 0})
    assert declared["datasets"]["robomind"]["share"] == float(Fraction(1, 2**53 + 2))
    numpy_weights = {"droid": np.float32(0.5), "robomind": np.int64(1), "inhouse": np.float64(0.5)}
    _, declared = episode_probabilities(ROWS, dataset_weights=numpy_weights)
    assert [declared["datasets"][d]["share"] for d in ("droid", "robomind", "inhouse")] == [0.25, 0.5, 0.25]
