"""What a process that has loaded TensorFlow (as the DROID converter does to read RLDS) still does right.

TensorFlow exports its bundled libraries' symbols process-wide. Two things broke on that:
numcodecs' zstd calls resolved to TensorFlow's copy and wrote other bytes for the same array
(so episode files depended on what the process had loaded), and Mesa's software EGL renderer
(llvmpipe) crashes inside TensorFlow's LLVM. Importing TensorFlow takes several seconds, so
one child interpreter checks both, and a pytest worker that ran the DROID tests (and has
TensorFlow loaded) cannot hide either.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import sys
if sys.argv[2] == "tf":
    import tensorflow  # noqa: F401
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.digest import file_sha256
from pipelines.episode_store.writer import write_episode
import numpy as np
from tests.episode_factory import make_episode
# Sparse and rounded values: arrays whose zstd bytes differ between numcodecs' zstd and TensorFlow's.
rng = np.random.default_rng(0)
episode = make_episode(200, state_dim=34, action_dim=34)
episode.state = np.where(rng.random((200, 34)) < 0.3, rng.standard_normal((200, 34)), 0).astype(np.float32)
episode.action = np.round(np.cumsum(rng.normal(0, 0.01, (200, 34)), axis=0), 3).astype(np.float32)
store = EpisodeStore.create(sys.argv[1])
print("episode", file_sha256(store.episode_path(write_episode(episode, store.root, ImageConfig()))))
if sys.argv[2] == "tf":
    from training.sim.metaworld import MetaWorldTask, SimError
    try:
        MetaWorldTask("button-press-topdown-v3", image_size=16)
        print("render: no error")
    except SimError as exc:
        print("SimError:", exc)
"""


def _child(tmp: Path, mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp / mode), mode], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def children(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("after_tensorflow")
    return {mode: _child(tmp, mode) for mode in ("tf", "plain")}


def _episode_digest(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("episode "))


def test_the_file_s_bytes_do_not_depend_on_tensorflow_being_loaded(children):
    """An episode written after TensorFlow loaded is the same file as one written without it."""
    assert _episode_digest(children["tf"]) == _episode_digest(children["plain"])


def test_rendering_after_tensorflow_is_a_named_error_not_a_crash(children):
    """The renderer refuses to start in a TensorFlow process, naming the cause, instead of crashing."""
    line = next(line for line in children["tf"].splitlines() if line.startswith(("SimError:", "render:")))
    assert line.startswith("SimError:") and "TensorFlow" in line, line
