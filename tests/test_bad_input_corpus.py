"""The bad-input corpus (``tests/bad_inputs.py``) converted next to every source's good samples.

One conversion run per source over a copy of its samples with all of its corpus cases written in:
a broken episode must cost that episode only. Per source the run must finish (``a1pipe convert``
exits 0), every episode the samples declare good (and every good episode a case put in the same
file as its broken one) must convert into a valid store, and the samples' own broken episodes must
keep their reasons. Per case, its episode must be quarantined with exactly the declared reason: a
second code for the same damage would split what auditors count. A case that takes more than its
own episode down (an unreadable release) gets a run of its own, so it cannot hide the source's
other cases.
"""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from converters import available_sources
from pipelines.episode_store.validator import validate_store
from tests.bad_inputs import ALL_CASES, CASES, Case, Made, build_corpus, convert


@dataclass
class CorpusRun:
    source: str
    store: Path
    made: dict[str, Made]
    expected: dict[str, str | None]  # the samples' declared outcomes
    report: dict[str, Any] | None
    error: str | None  # the traceback when the run did not finish

    @property
    def outcomes(self) -> dict[str, dict[str, Any]]:
        return {e["source_episode"]: e for e in (self.report or {}).get("episodes", [])}


@pytest.fixture(scope="module")
def corpus_run(sample_stores, tmp_path_factory):
    """``get(source, isolated_case=None)``: a corpus run, converted once per module on first use.

    The samples come from the session's ``sample_stores`` (written once for the whole suite); each
    run's copy, cases and store live in a temporary folder of their own.
    """
    stores, declared = sample_stores
    runs: dict[tuple[str, str | None], CorpusRun] = {}

    def get(source: str, isolated: Case | None = None) -> CorpusRun:
        key = (source, isolated.name if isolated else None)
        if key not in runs:
            base = tmp_path_factory.mktemp(f"corpus-{source}")
            made = build_corpus(source, stores.parent / "samples" / source, base / "input",
                                [isolated] if isolated else None)
            report = error = None
            # the samples' own conversion, as the session converted them: their good episodes resume
            # (checked, listed and kept by the run) instead of being converted a second time
            shutil.copytree(stores / source, base / "store")
            try:
                # a case that takes its release down takes the release's published episodes out of the
                # store: by design more than the share a run retires unasked
                report = convert(source, base / "input", base / "store", allow_mass_retire=isolated is not None)
            except Exception:  # noqa: BLE001 - a run that fails is what the tests report, per source and case
                error = traceback.format_exc()
            runs[key] = CorpusRun(source, base / "store", made, declared[source], report, error)
        return runs[key]

    return get


def _finished(run: CorpusRun, what: str) -> None:
    assert run.error is None, f"{what}: the conversion run failed (a1pipe convert would not exit 0):\n{run.error}"


def _untouched_episodes_convert(run: CorpusRun) -> None:
    got = run.outcomes
    down = tuple(m.takes_down for m in run.made.values() if m.takes_down)
    good = [ref for ref, reason in run.expected.items() if reason is None and not ref.startswith(down or ("\0",))]
    good += [ref for made in run.made.values() for ref in made.companions]
    lost = {ref: got.get(ref) for ref in good if (got.get(ref) or {}).get("status") != "converted"}
    assert not lost, f"{run.source}: good episodes lost next to the corpus: {lost}"
    changed = {ref: (reason, (got.get(ref) or {}).get("reason")) for ref, reason in run.expected.items()
               if reason is not None and not ref.startswith(down or ("\0",))
               and (got.get(ref) or {}).get("reason") != reason}
    assert not changed, f"{run.source}: sample episodes whose reason changed (declared, got): {changed}"
    known = set(run.expected) | {m.ref for m in run.made.values()} | {c for m in run.made.values()
                                                                      for c in m.companions}
    stray = {ref: got[ref]["reason"] for ref in sorted(set(got) - known)}
    assert not stray, f"{run.source}: outcomes for episodes neither the samples nor the corpus wrote: {stray}"
    assert run.report["counts"]["converted"] == len(good)
    result = validate_store(run.store)  # frames are decoded on these samples by test_converter_conformance
    assert result.ok, [str(e) for e in result.errors]
    assert result.episodes == len(good)


@pytest.mark.parametrize("source", available_sources())
def test_run_finishes_and_every_untouched_episode_converts(source, corpus_run):
    assert CASES.get(source), f"{source}: no bad-input cases; add them to tests/bad_inputs.py"
    run = corpus_run(source)
    _finished(run, source)
    _untouched_episodes_convert(run)


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in ALL_CASES])
def test_case_is_quarantined_with_its_reason(case: Case, corpus_run):
    run = corpus_run(case.source, case if case.isolated else None)
    _finished(run, case.id)
    made = run.made[case.name]
    entry = run.outcomes.get(made.ref)
    assert entry is not None, (f"{case.id} ({case.kind}): {made.ref} got no outcome; the run's report does not "
                               "list it, so the damage is invisible to auditors")
    assert (entry["status"], entry["reason"]) == ("quarantined", case.expect), (
        f"{case.id} ({case.kind}): expected quarantined [{case.expect}], got {entry['status']} "
        f"[{entry['reason']}]: {entry['message']}")
    assert entry["message"], f"{case.id}: a quarantine must say why"
    if case.isolated:  # its run is not the shared one the per-source test checks
        _untouched_episodes_convert(run)
