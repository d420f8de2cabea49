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
