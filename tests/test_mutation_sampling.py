"""The sampled mutation run (``benchmarks/mutation.py --sample``): which mutants it draws and the
interval it reports, the two things a sampled kill rate stands on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "benchmarks" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_a_sample_is_drawn_without_replacement_and_the_same_for_the_same_seed(mutation):
    names = [f"m.x_f__mutmut_{i}" for i in range(500)]
    a = mutation.draw(names, 100, seed=7)
    assert len(a) == len(set(a)) == 100 and set(a) <= set(names) and a == sorted(a)
    assert mutation.draw(list(reversed(names)), 100, seed=7) == a  # the listing's order does not matter
    assert mutation.draw(names, 100, seed=8) != a
    assert mutation.draw(names, 500, seed=1) == sorted(names)  # exactly all of them
    assert mutation.draw(names[:3], 10, seed=1) == sorted(names[:3])  # fewer than asked: all
    with pytest.raises(ValueError, match="at least one mutant"):
        mutation.draw(names, 0, seed=1)


def test_a_sampled_kill_rate_comes_with_its_wilson_interval(mutation):
    low, high = mutation.wilson(80, 100)
    assert (round(low, 4), round(high, 4)) == (0.7112, 0.8666)  # the textbook values for 80 of 100
    low, high = mutation.wilson(12, 12)
    assert high == 1.0 and round(low, 4) == 0.7575
    assert mutation.wilson(0, 10)[0] == 0.0
    assert mutation.wilson(0, 0) == (0.0, 1.0)  # nothing measured: nothing known
    narrow, wide = mutation.wilson(850, 1000), mutation.wilson(85, 100)
    assert wide[0] < narrow[0] < 0.85 < narrow[1] < wide[1]  # more mutants, a narrower interval
