"""One conversion on each Beam runner this machine can run, against the default runner's store.

What is measured
----------------
The in-house sample episodes (``pipelines/samples``, ``--episodes`` of them, good and
quarantined ones) are converted once per row, each into a fresh store:

1. ``default``: Beam's local runner with one worker into a local directory (the baseline);
2. ``direct x2``: the local runner with ``--workers`` processes, local directory;
3. ``direct x2 -> S3``: the same into a local S3 server (moto, on the loopback);
4. ``portable + external pool -> S3``: Beam's job service hands the graph to an external pool of
   ``--workers`` worker processes running in a working directory and ``TMPDIR`` of their own,
   each installing the wheel the job ships (``--extra_package``) as a Beam container does
   (``tests/beam_boot.py``; the recipe of the README and of ``tests/test_conversion_runs.py``),
   into the S3 server.

Per row: whether it ran, whether its published store is identical to the baseline's (every
file's bytes: episodes, index, statistics, curation), its wall time (process start-ups
included) and that time over the baseline's. Flink, Spark and Dataflow need a cluster or
downloads and are not rows here.

Usage::

    python benchmarks/conversion_runners.py                 # 12 episodes, 2 workers
    python benchmarks/conversion_runners.py --episodes 40 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock" and ".work" not in p.parts and p.name != "conversion_report.json"}


def _s3_files(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k[len(prefix):]: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(keys)
            if not k.endswith("conversion_report.json")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=12, help="in-house sample episodes (at most all of them)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args(argv)

    from pipelines.convert import ConvertConfig, run_conversion
    from tests import beam_cluster as cluster
    from pipelines.episode_store.images import ImageConfig
    from pipelines.samples import write_samples

    work = Path(tempfile.mkdtemp(prefix="a1pipe-runners-"))
    samples = work / "samples"
    write_samples(samples, seed=0, sources=["inhouse"])
    episodes = sorted(p.relative_to(samples / "inhouse").as_posix() for p in (samples / "inhouse").rglob("*.hdf5"))
    keep = set(episodes[: args.episodes])
    for path in (samples / "inhouse").rglob("*.hdf5"):
        if path.relative_to(samples / "inhouse").as_posix() not in keep:
            path.unlink()
    image = ImageConfig(height=96, width=128, quality=90)

    def convert(store: str, beam_args: list[str], workers: int) -> tuple[float, dict]:
        t = time.perf_counter()
        report = run_conversion(ConvertConfig("inhouse", str(samples / "inhouse"), store, image=image),
                                workers=workers, beam_args=beam_args, show_progress=False)
        return time.perf_counter() - t, report

    rows = []
    base_time, base_report = convert(str(work / "default"), [], 1)
    baseline = _files(work / "default")
    rows.append(("default (DirectRunner, 1 worker)", True, True, base_time, base_report["runner"]))
    seconds, report = convert(str(work / "direct2"), [], args.workers)
    rows.append((f"DirectRunner, {args.workers} worker processes", True, _files(work / "direct2") == baseline,
                 seconds, report["runner"]))

    env_keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")
    os.environ.update(dict(zip(env_keys, ("testing", "testing", "us-east-1", str(work / "none"), str(work / "none"),
                                          "true"), strict=True)))
    s3_port = cluster.free_loopback_port()
    moto = cluster.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)], work / "moto.log")
    services = [moto]
    try:
        cluster.wait_until(lambda: cluster.listening(s3_port), moto, work / "moto.log", "moto's S3 server")
        endpoint = f"http://127.0.0.1:{s3_port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        seconds, report = convert("s3://bench/direct2", [f"--s3_endpoint_url={endpoint}"], args.workers)
        rows.append((f"DirectRunner, {args.workers} worker processes -> S3 (moto)", True,
                     _s3_files(endpoint, "bench", "direct2/") == baseline, seconds, report["runner"]))

        t = time.perf_counter()
        wheel, python = cluster.build_wheel(work), cluster.worker_python(work)
        launcher = cluster.LAUNCHER
        port_file = work / "job.port"
        job = cluster.start([sys.executable, launcher, "apache_beam.runners.portability.local_job_service_main", "--port",
                      "0", "--port_file", str(port_file), "--staging_dir", str(work / "staging")], work / "job.log",
                     cwd=work)
        services.append(job)
        pool_port = cluster.free_loopback_port()
        (work / "worker-home").mkdir()
        (work / "worker-tmp").mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(TMPDIR=str(work / "worker-tmp"), PATH=f"{python.parent}{os.pathsep}{env['PATH']}")
        pool = cluster.start([str(python), launcher, "apache_beam.runners.worker.worker_pool_main", "--service_port",
                              str(pool_port), "--container_executable", cluster.BOOT],
                             work / "pool.log", cwd=work / "worker-home", env=env)
        services.append(pool)
        cluster.wait_until(port_file.is_file, job, work / "job.log", "the job service")
        cluster.wait_until(lambda: cluster.listening(pool_port), pool, work / "pool.log", "the worker pool")
        setup = time.perf_counter() - t
        seconds, report = convert("s3://bench/portable", [
            "--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{port_file.read_text().strip()}",
            "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{pool_port}",
            f"--direct_num_workers={args.workers}", f"--s3_endpoint_url={endpoint}", f"--extra_package={wheel}"], 0)
        started = (work / "pool.log").read_text(errors="replace").count("Starting worker with command")
        rows.append((f"PortableRunner, job service + external pool ({started} worker processes) -> S3", True,
                     _s3_files(endpoint, "bench", "portable/") == baseline, seconds, report["runner"]))
    finally:
        for proc in reversed(services):
            cluster.stop(proc)

    print(f"Conversion of {len(keep)} in-house sample episodes ({base_report['counts']['converted']} converted, "
          f"{base_report['counts']['quarantined']} quarantined), stored at {image.height}x{image.width}")
    print(f"{'runner':72s} {'ran':>4s} {'identical':>10s} {'wall s':>8s} {'/ default':>10s}")
    for name, ran, same, seconds, _ in rows:
        print(f"{name:72s} {'yes' if ran else 'no':>4s} {'yes' if same else 'NO':>10s} {seconds:8.1f} "
              f"{seconds / base_time:10.2f}")
    print(f"(the worker pool's set-up, wheel and venv included, took {setup:.1f} s before its row)")
    if args.json:
        Path(args.json).write_text(json.dumps({"episodes": len(keep), "rows": [
            {"runner": n, "ran": r, "identical": s, "wall_s": w, "ratio": w / base_time, "ran_on": o}
            for n, r, s, w, o in rows], "pool_setup_s": setup}, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(same for _, _, same, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
