"""``a1pipe samples``: small native-format data for every registered converter.

Each source's generators live in ``pipelines/samples/<source>.py``, named after its entry in
``converters.CONVERTERS`` (so the one converter table is also the list of generators), and
write the source's layout with the libraries its release was written with:

* ``write_samples(out_dir, seed)`` writes a small set with the source's quirks and deliberately
  broken episodes, byte-identical for a seed, and returns the outcome each sample episode must
  get: ``None`` (it converts) or the :class:`~pipelines.episode_store.errors.Reason` code it is
  quarantined with;
* ``write_synthetic(out_dir, *, episodes, frames, height, width, seed)`` writes valid episodes at
  a size the caller picks (the benchmarks measure throughput and memory on them).

What the generators share (motion profiles, drawing, MP4 and JPEG encoding) is in
``toolkit.py``; the LeRobot dataset writer of the LeRobot-format sources is in
``formats/lerobot.py``. Converters never import this package: the samples are test input,
not part of reading a source.

This module runs the generators into ``OUT/<source>/`` and records, beside the data, the
outcome each sample episode must get (``OUT/expected_outcomes.json``), so tests and
``dvc repro`` can check conversion against a known answer.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from types import ModuleType

from converters import CONVERTERS, available_sources

EXPECTED_FILE = "expected_outcomes.json"


def generator(source: str) -> ModuleType:
    """The module holding ``source``'s ``write_samples`` and ``write_synthetic``."""
    if source not in CONVERTERS:
        known = ", ".join(sorted(CONVERTERS))
        raise KeyError(f"no converter registered for source '{source}' (available: {known})")
    module = f"{__name__}.{source}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the generator exists but needs something missing: say that, not "no generator"
        raise NotImplementedError(f"source '{source}' has no sample generator: write "
                                  f"{module.replace('.', '/')}.py (see docs/adding_a_converter.md)") from exc


def write_samples(out: str | Path, seed: int = 0, sources: list[str] | None = None) -> dict[str, dict[str, str | None]]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, str | None]] = {}
    for name in sources or available_sources():
        write = generator(name).write_samples
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        outcome = write(target, seed=seed)
        expected[name] = {ref: (str(reason) if reason is not None else None) for ref, reason in sorted(outcome.items())}
    path = out / EXPECTED_FILE
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(expected)
    path.write_text(json.dumps(dict(sorted(previous.items())), indent=1) + "\n")
    return expected
