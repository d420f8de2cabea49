"""The Meta-World cases (``tests/metaworld_cases.py``) in a process that never loaded TensorFlow.

TensorFlow exports its bundled LLVM's symbols process-wide and Mesa's software EGL renderer
(llvmpipe) then crashes inside them; a pytest worker that ran the DROID tests has TensorFlow
loaded, so the rendering cases run in a child interpreter, and the guard that turns the crash
into a named error is checked here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_meta_world_cases_pass_in_a_process_without_tensorflow(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path),
                           str(REPO / "tests" / "metaworld_cases.py")], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_recording_and_converting_as_dvc_does_reproduces_the_committed_demonstration_store(sim_store):
    """The demonstrations are generated data: a clean clone must rebuild the store the manifest records."""
    import json

    from pipelines.manifest.format import file_sha256

    manifest = json.loads((REPO / "manifests" / "finetune_metaworld" / "manifest.json").read_text())
    recorded = {entry["store"]: entry["index_sha256"] for entry in manifest["inputs"]}
    assert recorded == {"metaworld": file_sha256(sim_store / "index.parquet")}
