"""Which part of a1pipe may import which: pyproject.toml's import-linter contracts.

A forbidden import is a function-local one as often as not, and an indirect one more often
(training -> a manifest module -> curation -> Beam), so code review misses it; the linter
reads every import statement and follows every chain. Its report names the contract and the
chain, and is the failure message here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "converters", "training")  # tool.importlinter.root_packages


def _lint(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the packages under ``root``, with ``root``'s pyproject.toml (no cache written)."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo"], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})


def test_the_import_contracts_hold():
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " BROKEN" not in run.stdout and "KEPT" in run.stdout


def test_a_broken_contract_fails_with_the_chain_that_breaks_it(tmp_path):
    """The contracts are not vacuous: one new import in a copy of the code breaks three of them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    fmt = tmp_path / "pipelines" / "manifest" / "format.py"
    fmt.write_text(fmt.read_text() + "\n\ndef _late():\n    from pipelines.manifest.build import split_of\n")
    run = _lint(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "pipelines.manifest.format is not allowed to import pipelines.manifest.build" in run.stdout
    assert "training is not allowed to import pipelines.curation" in run.stdout  # via format -> build
    assert "- .format -> .build (1 import)" in run.stdout  # the package-wide cycle contract names the edge
    assert "Contracts: 2 kept, 3 broken." in run.stdout
