"""Run one of Beam's service entry points (a job service, an external worker pool) bound to the loopback.

Beam's services listen on every interface (``[::]:port``) and offer no option to change that; the
tests start them on this machine for this machine only. Run as
``python tests/loopback_service.py MODULE ARGS...``: every gRPC server the service opens binds to
127.0.0.1 instead, then ``MODULE`` runs as ``__main__`` with ``ARGS``.

Beam's Python job service (``local_job_service_main``) runs each job with one worker: its runner
reads ``--direct_num_workers`` only on the path a pipeline takes in-process, not on the job
service's. Here the job's ``--direct_num_workers`` is honoured, so the service asks the external
worker pool for that many workers, as a Flink or Spark job server asks for its parallelism.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    import grpc._server

    bind = grpc._server._Server.add_insecure_port

    def loopback_only(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", "", "localhost"):
            address = f"127.0.0.1:{port}"
        return bind(self, address)

    grpc._server._Server.add_insecure_port = loopback_only

    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    run = fn_runner.FnApiRunner.run_via_runner_api

    def with_the_job_s_workers(self, pipeline_proto, options):
        # the job's options arrive through a protobuf Struct: numbers as strings or floats
        self._num_workers = int(options.view_as(DirectOptions).direct_num_workers or self._num_workers)
        return run(self, pipeline_proto, options)

    fn_runner.FnApiRunner.run_via_runner_api = with_the_job_s_workers
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
