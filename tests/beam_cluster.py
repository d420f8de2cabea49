"""A Beam "cluster" on this machine, for the tests and ``benchmarks/conversion_runners.py``.

The project's wheel as the README says to ship it, a Python for workers that has the
dependencies but not a1pipe, and the start/stop of the services (moto's S3 server, Beam's job
service and worker pool, through ``tests/loopback_service.py``), each in its own process group
and bound to the loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "converters", "training", "manifests")
LAUNCHER = str(REPO / "tests" / "loopback_service.py")
BOOT = str(REPO / "tests" / "beam_boot.py")


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def build_wheel(work: Path) -> Path:
    """The project as the wheel ``pip wheel --no-deps`` builds, offline, from a copy of the sources
    (a build writes into its source folder)."""
    src, dist = work / "wheel-src", work / "dist"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(src)], check=True, timeout=300, capture_output=True)
    (built,) = dist.glob("a1pipe-*.whl")
    return built


def worker_python(work: Path) -> Path:
    """A venv as a worker image would have it: this environment's packages (and pip) as a plain path,
    so its .pth files (the editable a1pipe) are not read; each worker installs the wheel its job ships."""
    venv = work / "worker-venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def start(argv: list[str], log: Path, **kw) -> subprocess.Popen:
    """A service in its own process group, its output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)


def stop(proc: subprocess.Popen) -> None:
    """The service and every worker it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
