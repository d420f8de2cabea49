#!/usr/bin/env python3
"""What Beam's SDK container does when a runner starts a worker in it, for workers on this machine.

A Beam worker container starts through its boot program (Go, inside Beam's SDK images, which
this machine cannot download): it asks the runner's provision service for the job's options
and dependencies, fetches the staged artifacts (``--extra_package`` wheels among them),
pip-installs them, then runs ``apache_beam.runners.worker.sdk_worker_main`` with the options
and endpoints in its environment. Beam's external worker pool (``worker_pool_main
--container_executable``) runs this script the same way, with the boot program's arguments, so
the tests' workers get the project only from the wheel the job ships, and the job's options
(an S3 endpoint...) the way a container's worker gets them.

Each worker installs into a folder of its own under its ``TMPDIR``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    import grpc
    from google.protobuf import json_format, text_format

    from apache_beam.portability import common_urns
    from apache_beam.portability.api import (
        beam_artifact_api_pb2,
        beam_artifact_api_pb2_grpc,
        beam_provision_api_pb2,
        beam_provision_api_pb2_grpc,
        beam_runner_api_pb2,
        endpoints_pb2,
    )

    parser = argparse.ArgumentParser()
    for name in ("id", "logging_endpoint", "artifact_endpoint", "provision_endpoint", "control_endpoint"):
        parser.add_argument(f"--{name}", required=True)
    args, _ = parser.parse_known_args()
    metadata = [("worker_id", args.id)]

    provision = beam_provision_api_pb2_grpc.ProvisionServiceStub(grpc.insecure_channel(args.provision_endpoint))
    info = provision.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=metadata).info
    home = Path(tempfile.mkdtemp(prefix=f"beam-{args.id}-"))
    staged, site = home / "staged", home / "site"
    staged.mkdir()
    retrieval = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(grpc.insecure_channel(args.artifact_endpoint))
    for i, artifact in enumerate(info.dependencies):
        name = f"artifact-{i}"
        if artifact.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name
        with open(staged / name, "wb") as out:
            request = beam_artifact_api_pb2.GetArtifactRequest(artifact=artifact)
            for chunk in retrieval.GetArtifact(request, metadata=metadata):
                out.write(chunk.data)
    wheels = sorted(str(p) for p in staged.glob("*.whl"))
    if wheels:  # the job's packages, as the boot program installs them (the dependencies are in the image)
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                        *wheels], check=True)

    def endpoint(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    env = dict(os.environ, WORKER_ID=args.id, SEMI_PERSISTENT_DIRECTORY=str(home),
               PIPELINE_OPTIONS=json_format.MessageToJson(info.pipeline_options),
               CONTROL_API_SERVICE_DESCRIPTOR=endpoint(args.control_endpoint),
               LOGGING_API_SERVICE_DESCRIPTOR=endpoint(args.logging_endpoint), PYTHONPATH=str(site))
    os.execve(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"], env)


if __name__ == "__main__":
    main()
