"""``a1pipe libero``: a fine-tuned checkpoint in the LIBERO benchmark, under the published protocol.

The loop is ``training/sim/libero.py`` (50 trials per task from the fixed initial states, 10
settling steps, 180-degree images, chunked execution, the gripper mapping); the model is
queried through :class:`training.sim.policy.A1LiberoPolicy`. Rows: ``no_exit`` and early exit
at each ``--c`` (thresholds from ``calibrate@<name>``; ITFM with delta = ``itfm_steps`` for a
flow-matching head), each over the same trials. LIBERO and its asset pack are not installable
offline: without them the command stops with what to install, before loading anything else.

Names: LIBERO's eight state numbers and seven actions, and its two cameras, are named as the
dataset the checkpoint was fine-tuned on names them (``--state-names``, ``--action-names``,
``--sent``, ``--camera stored=agentview``); the layout table then places them as in training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _camera(value: str) -> tuple[str, str]:
    """``--camera STORED=VIEW``, checked while parsing, so a typo stops the command before the
    simulator or the model is loaded."""
    stored, sep, view = value.partition("=")
    if not sep or not stored or view not in ("agentview", "wrist"):
        raise argparse.ArgumentTypeError(f"takes STORED=agentview or STORED=wrist, got {value!r}")
    return stored, view


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.sim import libero
    from training.sim.closed_loop import exit_rows
    from training.sim.policy import A1LiberoPolicy
    from training.sim.rollout import summarize_row

    protocol = libero.LiberoProtocol(suite=args.suite, trials=args.trials, execute_steps=args.execute_steps,
                                     image_size=1)  # the model's size is set once the checkpoint is read
    checkpoint = Path(args.checkpoint)
    from training.checkpoint import load_policy

    loaded = load_policy(checkpoint)
    names = {"dataset": args.dataset, "embodiment": args.embodiment, "cameras": dict(args.camera),
             "state_names": args.state_names, "action_names": args.action_names, "sent": args.sent,
             "full_steps": args.full_steps, "noise_seed": args.noise_seed, "loaded": loaded}
    policies = {"no_exit": A1LiberoPolicy(checkpoint, **names)}
    if args.c:
        calibration = json.loads(Path(args.calibration).read_text())
        for chain, c, settings in exit_rows(calibration, args.c, ["itfm"], args.itfm_steps, args.full_steps):
            policies[f"{chain} c={c:g}"] = A1LiberoPolicy(checkpoint, settings=settings, **names)
    protocol = dataclasses.replace(protocol, image_size=policies["no_exit"].image_size)
    rows: dict[str, Any] = {}
    for row, policy in policies.items():
        results = libero.evaluate_suite(policy, protocol, task_ids=args.tasks,
                                        on_trial=lambda r, row=row: print(f"{row} {r.task} trial {r.seed}: "
                                                                          f"{'success' if r.success else 'failure'}"))
        rows[row] = dict(summarize_row(results), episodes=[r.to_json() for r in results])
    return {"suite": args.suite, "protocol": dataclasses.asdict(protocol), "checkpoint": str(checkpoint), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    from training.sim.libero import SUITES, LiberoUnavailable, SimError

    parser = argparse.ArgumentParser(prog="a1pipe libero", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a fine-tune's checkpoint directory (models/finetune/<name>/checkpoint)")
    parser.add_argument("--calibration", help="its thresholds.json (models/calibration/<name>/thresholds.json); needed with --c")
    parser.add_argument("--suite", required=True, choices=SUITES)
    parser.add_argument("--tasks", type=int, nargs="+", help="task ids (default: every task of the suite)")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--execute-steps", type=int, default=8)
    parser.add_argument("--dataset", required=True, help="the dataset the checkpoint learnt LIBERO from")
    parser.add_argument("--embodiment", required=True)
    parser.add_argument("--camera", action="append", default=[], type=_camera, metavar="STORED=VIEW",
                        help="a stored camera and the LIBERO view it is (agentview or wrist); repeat")
    parser.add_argument("--state-names", nargs=8, required=True, metavar="NAME",
                        help="the dataset's names of eef x, y, z, axis-angle x, y, z and the two finger positions")
    parser.add_argument("--action-names", nargs="+", required=True, help="the dataset's action names, all of them")
    parser.add_argument("--sent", nargs=7, metavar="NAME", help="the 7 of them LIBERO gets, in its order "
                        "(default: --action-names when they are 7)")
    parser.add_argument("--c", type=float, nargs="*", default=[], help="early-exit rows at these calibrated c")
    parser.add_argument("--itfm-steps", type=int, default=2)
    parser.add_argument("--full-steps", type=int, default=10)
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--out", help="write the result here (JSON)")
    args = parser.parse_args(argv)
    if args.c and not args.calibration:
        parser.error("--c needs --calibration")
    try:
        from training.sim.libero import make_libero_env

        with make_libero_env(args.suite, (args.tasks or [0])[0]):  # fails fast, before the model loads
            pass
        result = run(args)
    except LiberoUnavailable as exc:
        print(f"a1pipe libero: LIBERO is not available here: {exc}", file=sys.stderr)
        return 2
    except (SimError, FileNotFoundError, ValueError) as exc:
        print(f"a1pipe libero: error: {exc}", file=sys.stderr)
        return 2
    for row, values in result["rows"].items():
        layers = "-" if values["layer_fraction"] is None else f"{values['layer_fraction']:.0%}"
        print(f"{args.suite} {row}: success {values['success']:.3f}, LLM layers {layers}")
    if args.out:
        from training.io import write_json

        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
