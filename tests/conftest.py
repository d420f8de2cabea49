"""Fixtures shared across test modules."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

#: Test files whose few tests run long (child interpreters, whole training, evaluation and benchmark
#: runs), longest first. ``make test`` hands whole files to its workers (``--dist loadfile``), and
#: xdist's own order is by number of tests: these would be handed out last, and one worker would run
#: them alone while the other has nothing left to do.
LONG_FILES = ("test_closed_loop_metaworld.py", "test_training_loop.py", "test_benchmark_smoke.py")


def pytest_configure(config):
    """Under xdist, files are handed out in the collection order of ``pytest_collection_modifyitems``."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    """``LONG_FILES`` first, then the other files as xdist would order them (most tests first)."""
    counts = Counter(item.path.name for item in items)

    def rank(item) -> tuple[int, int]:
        name = item.path.name
        return (LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES), -counts[name])

    items.sort(key=rank)  # stable: a file's tests stay together and in their order


@pytest.fixture(scope="session")
def sample_stores(tmp_path_factory) -> tuple[Path, dict[str, dict[str, str | None]]]:
    """Every source's samples converted exactly as ``dvc repro`` converts them, once per test session.

    ``a1pipe samples`` and ``a1pipe convert --params params.yaml`` run in a child process (the
    CLI configures logging for a whole process), with one Beam worker: the stores are the same
    bytes for any worker count, and one worker saves the other processes' start-up here.
    Parallel test workers share one copy through a file lock. Returns the directory of stores
    (the samples they were converted from are beside it, in ``../samples``) and the outcome each
    sample episode must get.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if shared.name.startswith("popen-gw"):  # pytest-xdist: every worker has its own base under a shared parent
        shared = shared.parent
    root = shared / "sample-stores"
    done = root / "expected_outcomes.json"
    with FileLock(str(root) + ".lock"):
        if not done.is_file():
            from concurrent.futures import ThreadPoolExecutor

            from converters import available_sources

            params = yaml.safe_load((REPO / "params.yaml").read_text())
            code = (
                "import sys; from pipelines.cli import main\n"
                "part, params, seed, sources = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]\n"
                "assert main(['samples', '--out', part + '/samples', '--seed', seed, '--sources', ','.join(sources)]) == 0\n"
                "for s in sources:\n"
                "    assert main(['convert', '--source', s, '--input', f'{part}/samples/{s}', '--output',\n"
                "                 f'{part}/converted/{s}', '--params', params, '--quiet', '--workers', '1']) == 0\n")

            def child(part: Path, sources: list[str]) -> None:
                subprocess.run([sys.executable, "-c", code, str(part), str(REPO / "params.yaml"),
                                str(params["samples"]["seed"]), *sources], check=True, cwd=REPO, timeout=900,
                               capture_output=True)

            # two children, each writing and converting half of the sources: while this fixture runs the
            # other test worker is often waiting on this lock, so one child would leave a core idle
            sources = available_sources()
            parts = [root / f"part{i}" for i in range(2)]
            with ThreadPoolExecutor(2) as pool:
                for job in [pool.submit(child, part, sources[i::2]) for i, part in enumerate(parts)]:
                    job.result()
            expected: dict = {}
            for part in parts:
                for kind in ("samples", "converted"):
                    for folder in (part / kind).iterdir():
                        if folder.is_dir():
                            (root / kind).mkdir(parents=True, exist_ok=True)
                            folder.rename(root / kind / folder.name)
                expected.update(json.loads((part / "samples" / "expected_outcomes.json").read_text()))
            (root / "samples" / "expected_outcomes.json").write_text(json.dumps(dict(sorted(expected.items())),
                                                                                 indent=1) + "\n")
            (root / "samples" / "expected_outcomes.json").replace(done)  # the samples stay for other tests
    return root / "converted", json.loads(done.read_text())


@pytest.fixture(scope="session")
def sim_store(tmp_path_factory) -> Path:
    """The Meta-World demonstrations recorded and converted as ``dvc repro`` does (``sim_demos``, then
    ``convert@metaworld`` with params.yaml's settings), once per test session; returns the store.

    Each step runs in its own child process, as its DVC stage does: rendering must happen in a
    process that never loaded TensorFlow.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if shared.name.startswith("popen-gw"):
        shared = shared.parent
    root = shared / "sim-store"
    store = root / "converted" / "metaworld"
    with FileLock(str(root) + ".lock"):
        if not (store / "index.parquet").is_file():
            demos = root / "demos"
            subprocess.run([sys.executable, "-m", "training.sim.demos", "--params", str(REPO / "params.yaml"),
                            "--out", str(demos)], check=True, cwd=REPO, timeout=900, capture_output=True)
            subprocess.run([sys.executable, "-m", "pipelines.cli", "convert", "--source", "metaworld", "--input",
                            str(demos), "--output", str(store), "--params", str(REPO / "params.yaml"), "--quiet",
                            "--workers", "1"], check=True, cwd=REPO, timeout=900, capture_output=True)
    return store


@dataclass(frozen=True)
class S3Server:
    """A local S3-compatible server, and the bucket the tests write to."""

    endpoint: str
    bucket: str

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3 server in a child process on the loopback, for this test session (each test worker
    its own), with an empty bucket; stopped at the end of the session.

    The process's AWS settings point at it for the session: fake credentials and region, the
    endpoint through ``AWS_ENDPOINT_URL_S3`` (how boto3, under Beam's S3 filesystem, is told
    outside a pipeline's options), and no configuration or credentials of this machine's
    (``~/.aws``, the instance-metadata service), so nothing here ever reaches a real cloud.
    """
    import boto3

    from pipelines import storage

    from tests.beam_cluster import free_loopback_port

    port = free_loopback_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's S3 server did not start on 127.0.0.1:{port}:\n{log.read_text()[-2000:]}")
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
                env.delenv(name, raising=False)
            nowhere = str(log.parent / "no-aws-config")
            env.setenv("AWS_CONFIG_FILE", nowhere)
            env.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
            env.setenv("AWS_EC2_METADATA_DISABLED", "true")
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_ENDPOINT_URL_S3", endpoint)
            storage.use_beam_options([])  # no options an earlier test left in this process
            boto3.client("s3").create_bucket(Bucket="a1pipe-test")
            yield S3Server(endpoint, "a1pipe-test")
            storage.use_beam_options([])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


class Decoy:
    """An HTTP server on the loopback that refuses every request (403) and counts them: named as the S3
    endpoint where a test expects it to be ignored, or to be asked."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        decoy = self
        self.requests = 0

        class Refuse(BaseHTTPRequestHandler):
            def _refuse(self):
                decoy.requests += 1
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _refuse

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def decoy():
    server = Decoy()
    yield server
    server.stop()
