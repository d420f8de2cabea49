"""The ``a1pipe`` command line: samples, convert, validate, inspect, view, report, curation-summary, manifest."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from pipelines import __version__


def _load_params(path: str | None) -> dict[str, Any]:
    if path is None:
        path = "params.yaml" if Path("params.yaml").is_file() else None
    if path is None:
        return {}
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def _max_abs_value(params: dict[str, Any]) -> float:
    """The plausibility bound from ``convert.max_abs_value``; one reading for ``convert`` and ``validate`` so
    a store is validated against the bound it was converted with."""
    from pipelines.episode_store.record import MAX_ABS_VALUE

    return float((params.get("convert") or {}).get("max_abs_value", MAX_ABS_VALUE))


def cmd_samples(args: argparse.Namespace) -> int:
    from pipelines.samples import write_samples

    sources = args.sources.split(",") if args.sources else None
    expected = write_samples(args.out, seed=args.seed, sources=sources)
    for name, outcomes in expected.items():
        bad = sum(1 for v in outcomes.values() if v is not None)
        print(f"{name}: {len(outcomes)} sample episodes ({bad} deliberately broken) -> {Path(args.out) / name}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pipelines.convert import ConvertConfig, run_conversion
    from pipelines.episode_store.images import ImageConfig
    from pipelines.episode_store.layout import REPORT_FILE

    params = _load_params(args.params)
    image_params = dict(params.get("image", {}))
    for key in ("height", "width", "quality", "resize"):
        value = getattr(args, f"image_{key}")
        if value is not None:
            image_params[key] = value
    source_params = params.get("sources", {}).get(args.source, {}) or {}
    workers = args.workers if args.workers is not None else int(params.get("convert", {}).get("workers", 0))
    config = ConvertConfig(
        source=args.source,
        input_root=args.input,
        store_root=args.output,
        image=ImageConfig.from_params(image_params),
        converter_options=dict(source_params.get("options", {}) or {}),
        converter=source_params.get("converter"),
        curation=_source_curation(params.get("curation") or {}, source_params.get("curation") or {}),
        max_abs_value=_max_abs_value(params),
        max_retire_fraction=1.0 if args.allow_mass_retire else args.max_retire_fraction,
    )
    report = run_conversion(config, workers=workers, beam_args=args.beam_args, show_progress=not args.quiet,
                            shared_output=args.shared_output)
    from pipelines import storage

    c = report["counts"]
    if args.metrics:
        run = {"source": args.source, "workers": workers, "runner": report["runner"], "frames": report["frames"],
               "camera_frames": report["camera_frames"], **report["run"]}
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        storage.write_text(args.metrics, json.dumps(run, indent=1) + "\n")
    print(
        f"{args.source}: {c['converted']} converted ({c['resumed']} already present), "
        f"{c['quarantined']} quarantined {c['quarantined_by_reason']}; {report['frames']} frames in "
        f"{report['run']['wall_time_s']} s, {report['run']['camera_frames_per_s']} camera-frames/s; "
        f"report: {storage.at(args.output).path(REPORT_FILE)}"
    )
    if args.fail_on_quarantine and c["quarantined"]:
        return 3
    return 0


def _source_curation(common: dict, override: dict) -> dict:
    """``curation`` with a source's own ``sources.<name>.curation`` laid over it, section by section."""
    merged = dict(common)
    for key, value in override.items():
        merged[key] = {**(merged.get(key) or {}), **value} if isinstance(value, dict) else value
    return merged


def cmd_validate(args: argparse.Namespace) -> int:
    from pipelines.episode_store.validator import merge_reports, validate_path

    bound = args.max_abs_value if args.max_abs_value is not None else _max_abs_value(_load_params(args.params))
    reports = [r for path in args.stores
               for r in validate_path(path, decode_frames=args.decode_frames, max_abs_value=bound)]
    merged = merge_reports(reports)
    if args.json:
        print(json.dumps(merged, indent=1))
    else:
        for r in reports:
            status = "OK" if r.ok else f"INVALID ({len(r.errors)} violations)"
            print(f"{r.root}: {r.episodes} episodes, {r.frames} frames: {status}")
            for e in r.errors:
                print(f"  {e}")
    return 0 if not merged["errors"] else 1


def _configured_stores(params_path: str | None) -> list[str]:
    """The store of every dataset in ``params.yaml``'s ``sources`` table, in its order
    (``<convert.out>/<name>``): the table is the one list of datasets a run converts."""
    params = _load_params(params_path)
    sources = params.get("sources") or {}
    if not sources:
        raise SystemExit("no stores given and no sources table in the params file")
    out = Path((params.get("convert") or {}).get("out", "data/converted"))
    return [str(out / name) for name in sources]


def cmd_curation_summary(args: argparse.Namespace) -> int:
    import csv

    from pipelines.curation import collect_reports, cross_store_duplicates

    stores = args.stores or _configured_stores(args.params)
    metrics, rows = collect_reports(stores)
    twins = cross_store_duplicates(stores)
    metrics["cross_source_duplicates"] = len(twins)
    if args.duplicates:
        Path(args.duplicates).parent.mkdir(parents=True, exist_ok=True)
        Path(args.duplicates).write_text(json.dumps(twins, indent=1) + "\n")
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(metrics, indent=1) + "\n")
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    with open(args.plot, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "reason", "removed_fraction"])
        writer.writeheader()
        writer.writerows(rows)
    for source, m in metrics.items():
        if not isinstance(m, dict):
            continue
        print(f"{source}: kept {m['frames_kept']}/{m['frames_in']} frames ({m['kept_fraction']}), "
              f"{m['episodes_kept']}/{m['episodes_in']} episodes")
    return 0


def cmd_manifest_build(args: argparse.Namespace) -> int:
    import time

    from pipelines.manifest.build import ManifestParams, build_manifest

    defined = _load_params(args.params).get("manifests") or {}
    if args.name not in defined:  # a typo must not quietly build a default manifest
        raise ValueError(f"no manifests.{args.name} in {args.params or 'params.yaml'} (defined: {sorted(defined)})")
    params = ManifestParams.from_params(args.name, defined[args.name])
    started = time.perf_counter()
    manifest = build_manifest(args.stores, args.out or f"manifests/{args.name}", params)
    elapsed = time.perf_counter() - started
    weights = params.dataset_weights or "equal"
    print(f"{args.name}: {manifest['table']['rows']} episodes from {len(manifest['inputs'])} stores in {elapsed:.2f} s "
          f"(within {params.within}, dataset weights {weights})")
    for split, counts in manifest["counts"].items():
        print(f"  {split}: {counts['episodes']} episodes, {counts['frames_kept']} kept frames")
    for dataset, entry in manifest["shares"].get("train", {}).get("datasets", {}).items():
        embodiments = ", ".join(f"{e} {v['share']:.4f}" for e, v in entry["embodiments"].items())
        print(f"  {dataset:<14} share {entry['share']:.4f}  ({embodiments})")
    from pipelines.manifest.format import CHECKSUMS_FILE, MANIFEST_FILE, file_sha256

    out = Path(args.out or f"manifests/{args.name}")
    print(f"  {MANIFEST_FILE} sha256 {file_sha256(out / MANIFEST_FILE)} (every file: {out / CHECKSUMS_FILE})")
    return 0


def cmd_manifest_verify(args: argparse.Namespace) -> int:
    import time

    from pipelines.manifest.verify import verify_manifest

    started = time.perf_counter()
    problems = verify_manifest(args.manifest, args.data)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"manifest": args.manifest, "ok": not problems, "problems": problems}, indent=1))
    else:
        for p in problems:
            print(p)
        print(f"{args.manifest}: {'OK' if not problems else f'{len(problems)} mismatches'} ({elapsed:.2f} s)")
    return 0 if not problems else 1


def cmd_manifest_diff(args: argparse.Namespace) -> int:
    from pipelines.manifest.compare import diff_manifests, format_diff

    diff = diff_manifests(args.a, args.b)
    print(json.dumps(diff, indent=1, sort_keys=True) if args.json else format_diff(diff, limit=args.limit))
    return 0


def cmd_manifest_inspect(args: argparse.Namespace) -> int:
    from pipelines.manifest.compare import inspect_json, inspect_manifest

    print(json.dumps(inspect_json(args.manifest), indent=1, sort_keys=True) if args.json
          else inspect_manifest(args.manifest))
    return 0


def cmd_training(command: str, argv: list[str]) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported
    if command == "train":
        from training.train import main
    elif command == "evaluate":
        from training.evaluate import main
    elif command == "libero":
        from training.libero_eval import main
    else:
        from training.calibrate import main
    return main(argv)


def cmd_inspect(args: argparse.Namespace) -> int:
    from pipelines.describe import describe_episode, describe_store

    print(describe_episode(args.store, args.episode) if args.episode else describe_store(args.store))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from pipelines.view import view_episode

    logged = view_episode(args.store, args.episode, out=args.out, connect=args.connect)
    where = args.out or args.connect or "a spawned Rerun viewer"
    print(f"{args.episode}: {len(logged)} entities, {max(logged.values(), default=0)} frames -> {where}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import write_reports

    written = write_reports(args.paths, args.out, data=args.data or ())
    print(f"{len(written) - 1} reports -> {written[-1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="a1pipe", description="A1 VLA data pipeline")
    p.add_argument("--version", action="version", version=f"a1pipe {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("samples", help="write small native-format sample data for every converter")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sources", help="comma-separated subset of sources")
    s.set_defaults(func=cmd_samples)

    c = sub.add_parser(
        "convert",
        help="convert one source into the unified episode store (Apache Beam)",
        description="Arguments after '--' go to Apache Beam unchanged, e.g. "
        "'-- --runner=FlinkRunner --flink_master=host:8081' or '-- --runner=DataflowRunner --project=P ...'.",
    )
    c.add_argument("--source", required=True)
    c.add_argument("--input", required=True, help="root of the source's native files")
    c.add_argument("--output", required=True, help="store directory or object-storage URI")
    c.add_argument("--workers", type=int, help="local worker processes (0 = every core; default from params)")
    c.add_argument("--params", help="params.yaml to read image/source/curation settings from (default ./params.yaml)")
    c.add_argument("--image-height", type=int)
    c.add_argument("--image-width", type=int)
    c.add_argument("--image-quality", type=int)
    c.add_argument("--image-resize", choices=["pad", "stretch", "none"])
    c.add_argument("--metrics", help="write this run's wall time and throughput here (JSON); kept out of the "
                   "store so that a store is byte-identical however fast it was converted")
    c.add_argument("--fail-on-quarantine", action="store_true", help="exit 3 if any episode was quarantined")
    retire = c.add_mutually_exclusive_group()
    retire.add_argument("--max-retire-fraction", type=float, default=0.5, metavar="F",
                        help="fail, retiring nothing, rather than move more than this share of the source's published "
                        "episodes to .stale/ because the input no longer has them (default 0.5)")
    retire.add_argument("--allow-mass-retire", action="store_true",
                        help="retire however many published episodes the input no longer has (--max-retire-fraction 1)")
    c.add_argument("--shared-output", action="store_true",
                   help="the local --output is a filesystem every Beam worker mounts at the same path (NFS, Lustre): "
                   "allow a runner whose workers run on other machines")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("validate", help="check stores against the episode format; exit 1 if invalid")
    v.add_argument("stores", nargs="+", help="store directories (or a directory of stores)")
    v.add_argument("--json", action="store_true")
    v.add_argument("--decode-frames", action="store_true", help="fully decode every JPEG (default: headers)")
    v.add_argument("--max-abs-value", type=float,
                   help="the plausibility bound the stores were converted with (default: convert.max_abs_value "
                        "in --params, else 1e6)")
    v.add_argument("--params", help="params.yaml to read convert.max_abs_value from (default ./params.yaml)")
    v.set_defaults(func=cmd_validate)

    cs = sub.add_parser("curation-summary", help="merge stores' curation reports into a DVC metric and plot")
    cs.add_argument("stores", nargs="*", help="store directories (default: every dataset of --params' sources table)")
    cs.add_argument("--params", help="params.yaml whose sources and convert.out name the stores")
    cs.add_argument("--metrics", required=True, help="JSON metric file to write")
    cs.add_argument("--plot", required=True, help="CSV plot file to write (source, reason, removed_fraction)")
    cs.add_argument("--duplicates", help="JSON list of episodes duplicating a kept episode of another store")
    cs.set_defaults(func=cmd_curation_summary)

    m = sub.add_parser("manifest", help="balanced-sampling manifests")
    msub = m.add_subparsers(dest="manifest_command", required=True)
    mb = msub.add_parser("build", help="build a manifest from curated stores (settings: params.yaml manifests.<name>)")
    mb.add_argument("stores", nargs="+", help="store directories, or a directory of stores (data/converted)")
    mb.add_argument("--name", required=True)
    mb.add_argument("--out", help="manifest directory (default manifests/<name>)")
    mb.add_argument("--params", help="params.yaml with manifests.<name> settings (default ./params.yaml)")
    mb.set_defaults(func=cmd_manifest_build)
    mv = msub.add_parser("verify", help="re-check every checksum, range, probability and derived file; "
                         "exit 1 on any mismatch")
    mv.add_argument("manifest")
    mv.add_argument("--data", nargs="+", required=True, help="the stores the manifest references (or their directory)")
    mv.add_argument("--json", action="store_true")
    mv.set_defaults(func=cmd_manifest_verify)
    md = msub.add_parser("diff", help="episodes added and removed, ranges and shares changed, between two manifests")
    md.add_argument("a")
    md.add_argument("b")
    md.add_argument("--limit", type=int, default=50, help="episodes listed per section")
    md.add_argument("--json", action="store_true")
    md.set_defaults(func=cmd_manifest_diff)
    mi = msub.add_parser("inspect", help="a manifest's composition: datasets, embodiments, shares, left-out counts")
    mi.add_argument("manifest")
    mi.add_argument("--json", action="store_true")
    mi.set_defaults(func=cmd_manifest_inspect)

    sub.add_parser("train", help="pre-train or fine-tune the A1 policy (training/train.py)")
    sub.add_parser("calibrate", help="early-exit thresholds for a fine-tuned policy (training/calibrate.py)")
    sub.add_parser("evaluate", help="closed-loop (Meta-World) or open-loop evaluation of a fine-tune, with early "
                                    "exit (training/evaluate.py)")
    sub.add_parser("libero", help="a fine-tune in the LIBERO benchmark under the published protocol, with early "
                                  "exit; needs the libero package and its assets (training/libero_eval.py)")

    i = sub.add_parser("inspect", help="readable summary of a store or one episode")
    i.add_argument("store")
    i.add_argument("--episode", help="episode id")
    i.set_defaults(func=cmd_inspect)

    w = sub.add_parser("view", help="one episode as a Rerun recording: cameras, state and action series, language, "
                                    "kept and removed frame ranges")
    w.add_argument("store")
    w.add_argument("--episode", required=True, help="episode id")
    target = w.add_mutually_exclusive_group()
    target.add_argument("--out", help="write the recording to this .rrd file (open it with `rerun FILE.rrd`)")
    target.add_argument("--connect", metavar="URL", help="stream to a running viewer (e.g. "
                        "rerun+http://127.0.0.1:9876/proxy); default: spawn a viewer")
    w.set_defaults(func=cmd_view)

    r = sub.add_parser("report", help="self-contained HTML reports of stores and manifests: composition, curation, "
                                      "quarantine, frames")
    r.add_argument("paths", nargs="+", help="stores and manifests, or directories of them (data/converted, manifests)")
    r.add_argument("--out", required=True, help="directory for index.html and one page per store and manifest")
    r.add_argument("--data", nargs="+", help="more stores (or their directory) where a manifest's stores are looked "
                   "up by name, besides the stores among the paths")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["train"], ["calibrate"], ["evaluate"], ["libero"]):  # their own parsers (training/), options and --help included
        return cmd_training(argv[0], argv[1:])
    beam_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.beam_args = beam_args
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # Beam's optional-GCP import notice is not our user's concern
        handler.addFilter(lambda record: "apitools not found" not in record.getMessage())
    if not args.verbose:
        warnings.filterwarnings("ignore")
        for noisy in ("apache_beam", "root"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    try:
        return args.func(args)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        print(f"a1pipe {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
