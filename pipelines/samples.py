"""``a1pipe samples``: small native-format data for every registered converter.

Each converter ships its own generator (``Converter.write_samples``); this module
only runs them into ``OUT/<source>/`` and records, beside the data, the outcome
each sample episode must get (``OUT/expected_outcomes.json``), so tests and
``dvc repro`` can check conversion against a known answer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from converters import available_sources, get_converter

EXPECTED_FILE = "expected_outcomes.json"


def write_samples(out: str | Path, seed: int = 0, sources: list[str] | None = None) -> dict[str, dict[str, str | None]]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, str | None]] = {}
    for name in sources or available_sources():
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        outcome = get_converter(name).write_samples(target, seed=seed)
        expected[name] = {ref: (str(reason) if reason is not None else None) for ref, reason in sorted(outcome.items())}
    path = out / EXPECTED_FILE
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(expected)
    path.write_text(json.dumps(dict(sorted(previous.items())), indent=1) + "\n")
    return expected
