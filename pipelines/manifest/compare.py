"""Compare two manifests, and describe one: what an auditor reads before trusting a training run.

The checksums in manifest.json say *whether* two training sets differ; these say *how*:
which parameters and input stores moved, which episodes came, went or changed, and how
far each dataset's and embodiment's sampling share shifted. Everything is sorted and
nothing depends on the clock, so the same two manifests always give the same report
(reviewable in a pull request, stable in CI logs). The numbers are the manifests' own;
whether they are true of the data is ``verify``'s question, not this module's.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pipelines.manifest.format import SPLITS, load_manifest, parameters_of, splits_of

# Identity fields that, like sha256, mean "this is not the episode it was" when they change.
_FIELDS = ("dataset", "embodiment", "robot_type", "store", "path", "source_episode", "instruction", "num_frames")
_SHORT = 12


def _change(old: Any, new: Any) -> dict[str, Any]:
    return {"old": old, "new": new}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys, so a change deep in ``include`` or one dataset weight reads as one line."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: _change(a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _ranges(row: dict[str, Any]) -> list[list[int]]:
    return [[k["start"], k["stop"]] for k in row["kept_ranges"]]


def _overlap(a: list[list[int]], b: list[list[int]]) -> int:
    """Frames kept in both; ``_overlap(a, a)`` is a's length (ranges within one list are disjoint,
    as build and verify guarantee), so gained and lost come from the ranges, not a recorded count."""
    return sum(max(0, min(s1, s2) - max(a1, a2)) for a1, s1 in a for a2, s2 in b)


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"episode_id": row["episode_id"], "dataset": row["dataset"], "embodiment": row["embodiment"],
            "split": row["split"], "frames_kept": row["frames_kept"]}


def _share_rows(manifest: dict[str, Any], split: str) -> dict[tuple[str, str | None], tuple[float, int, int]]:
    """(dataset, embodiment or None for the dataset) -> (share, episodes, kept frames), as declared."""
    out: dict[tuple[str, str | None], tuple[float, int, int]] = {}
    for d, entry in manifest.get("shares", {}).get(split, {}).get("datasets", {}).items():
        embs = entry["embodiments"]
        out[(d, None)] = (entry["share"], sum(e["episodes"] for e in embs.values()),
                          sum(e["frames_kept"] for e in embs.values()))
        out.update({(d, e): (v["share"], v["episodes"], v["frames_kept"]) for e, v in embs.items()})
    return out


def _share_diff(ma: dict[str, Any], mb: dict[str, Any], split: str) -> dict[str, list[dict[str, Any]]]:
    """A dataset or embodiment absent from one side has share 0 there: it is never sampled."""
    a, b = _share_rows(ma, split), _share_rows(mb, split)
    out: dict[str, list[dict[str, Any]]] = {"datasets": [], "embodiments": []}
    for key in sorted(set(a) | set(b), key=lambda k: (k[0], k[1] or "")):
        old, new = a.get(key, (0.0, 0, 0)), b.get(key, (0.0, 0, 0))
        if old == new:
            continue
        entry = {"dataset": key[0], **({"embodiment": key[1]} if key[1] is not None else {}),
                 "share": {"old": old[0], "new": new[0], "delta": new[0] - old[0]},
                 "episodes": _change(old[1], new[1]), "frames_kept": _change(old[2], new[2])}
        out["datasets" if key[1] is None else "embodiments"].append(entry)
    return out


def _excluded_counts(manifest: dict[str, Any]) -> dict[str, Any]:
    excluded = dict(manifest.get("excluded", {}))
    excluded["cross_store_duplicates"] = len(excluded.get("cross_store_duplicates", []))
    return _flat(excluded)


def diff_manifests(a_dir: str | Path, b_dir: str | Path) -> dict[str, Any]:
    """What changed from manifest ``a`` to ``b``: every section lists only what differs.

    ``identical`` follows the checksummed identity (table, parameters, inputs) rather than
    the sections, so two builds that agree on all three are identical even when built by
    a different code version (reported under ``code_version``).
    """
    ma, rows_a = load_manifest(a_dir)
    mb, rows_b = load_manifest(b_dir)
    ea, eb = {r["episode_id"]: r for r in rows_a}, {r["episode_id"]: r for r in rows_b}
    episodes: dict[str, list[dict[str, Any]]] = {
        "added": [_brief(eb[i]) for i in sorted(set(eb) - set(ea))],
        "removed": [_brief(ea[i]) for i in sorted(set(ea) - set(eb))],
        "content_changed": [], "ranges_changed": [], "split_moved": []}
    for i in sorted(set(ea) & set(eb)):
        old, new = ea[i], eb[i]
        ident = {"episode_id": i, "dataset": new["dataset"], "embodiment": new["embodiment"]}
        fields = _changed({k: old[k] for k in ("sha256", *_FIELDS)}, {k: new[k] for k in ("sha256", *_FIELDS)})
        if fields:
            episodes["content_changed"].append({**ident, "fields": fields})
        ra, rb = _ranges(old), _ranges(new)
        if ra != rb:
            both = _overlap(ra, rb)
            episodes["ranges_changed"].append({
                **ident, "kept_ranges": _change(ra, rb), "frames_kept": _change(old["frames_kept"], new["frames_kept"]),
                "frames_gained": _overlap(rb, rb) - both, "frames_lost": _overlap(ra, ra) - both})
        if old["split"] != new["split"]:
            episodes["split_moved"].append({**ident, "split": _change(old["split"], new["split"])})
    inputs_a, inputs_b = ({i["store"]: i for i in m.get("inputs", [])} for m in (ma, mb))
    inputs = {"added": [inputs_b[s] for s in sorted(set(inputs_b) - set(inputs_a))],
              "removed": [inputs_a[s] for s in sorted(set(inputs_a) - set(inputs_b))],
              "changed": [{"store": s, "fields": f} for s in sorted(set(inputs_a) & set(inputs_b))
                          if (f := _changed(inputs_a[s], inputs_b[s]))]}
    parameters = _changed(_flat(parameters_of(ma)), _flat(parameters_of(mb)))
    totals = {split: {k: {"old": ca, "new": cb, "delta": cb - ca}
                      for k in ("episodes", "frames_kept")
                      for ca, cb in [(ma["counts"].get(split, {}).get(k, 0), mb["counts"].get(split, {}).get(k, 0))]}
              for split in SPLITS}
    return {
        "a": _side(a_dir, ma), "b": _side(b_dir, mb),
        "identical": (ma["table"]["sha256"] == mb["table"]["sha256"] and not parameters
                      and not any(inputs.values())),
        "code_version": {} if ma["code_version"] == mb["code_version"] else _change(ma["code_version"],
                                                                                     mb["code_version"]),
        "parameters": parameters,
        "inputs": inputs,
        "episodes": episodes,
        "excluded": _changed(_excluded_counts(ma), _excluded_counts(mb)),
        "shares": {split: _share_diff(ma, mb, split) for split in SPLITS},
        "totals": totals,
    }


def _side(path: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    return {"dir": str(path), "name": manifest["name"], "code_version": manifest["code_version"],
            "rows": manifest["table"]["rows"], "table_sha256": manifest["table"]["sha256"]}


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _points(delta: float) -> str:
    """Percentage points, rounded first so float noise prints as +0.00, never -0.00."""
    return f"{round(delta * 100, 2) + 0.0:+.2f}"


def _value(key: str, value: Any) -> str:
    """Checksums shortened (the JSON output has them whole), absent keys named as such."""
    if value is None:
        return "(unset)"
    return value[:_SHORT] if key.endswith("sha256") and isinstance(value, str) else repr(value)


def _ranges_text(ranges: list[list[int]]) -> str:
    return "[" + ", ".join(f"{a}:{b}" for a, b in ranges) + "]"


def _section(lines: list[str], title: str, items: list[str], limit: int) -> None:
    if not items:
        return
    lines.append(f"{title} ({len(items)})")
    lines += [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")


def _columns(cells: list[list[str]]) -> list[str]:
    """Left-align the first columns so names line up; the last column runs free."""
    if not cells:
        return []
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]) - 1)]
    return ["  ".join([*(c[i].ljust(w) for i, w in enumerate(widths)), c[-1]]) for c in cells]


def format_diff(diff: dict[str, Any], *, limit: int = 50) -> str:
    """The diff for people: a section per kind of change with its count, long lists cut at ``limit``."""
    a, b = diff["a"], diff["b"]
    lines = [f"manifest diff: {a['name']} ({a['dir']}, {a['rows']} episodes) -> "
             f"{b['name']} ({b['dir']}, {b['rows']} episodes)"]
    if cv := diff["code_version"]:
        lines.append(f"code version: {cv['old']} -> {cv['new']}")
    if diff["identical"]:
        lines.append(f"manifests are identical (table sha256 {a['table_sha256'][:_SHORT]})")
        return "\n".join(lines)
    _section(lines, "parameters changed", _columns(
        [[f"{k}:", f"{_value(k, v['old'])} -> {_value(k, v['new'])}"] for k, v in diff["parameters"].items()]), limit)
    inputs = diff["inputs"]
    _section(lines, "input stores added", [f"+ {i['store']} (source {i.get('source', '?')})"
                                           for i in inputs["added"]], limit)
    _section(lines, "input stores removed", [f"- {i['store']} (source {i.get('source', '?')})"
                                             for i in inputs["removed"]], limit)
    _section(lines, "input stores changed", [
        f"~ {c['store']}: " + ", ".join(f"{k} {_value(k, v['old'])} -> {_value(k, v['new'])}"
                                         for k, v in c["fields"].items()) for c in inputs["changed"]], limit)
    eps = diff["episodes"]
    _section(lines, "episodes added", _columns([[f"+ {e['episode_id']}", f"{e['dataset']}/{e['embodiment']}",
                                                 e["split"], f"{e['frames_kept']} kept frames"]
                                                for e in eps["added"]]), limit)
    _section(lines, "episodes removed", _columns([[f"- {e['episode_id']}", f"{e['dataset']}/{e['embodiment']}",
                                                   e["split"], f"{e['frames_kept']} kept frames"]
                                                  for e in eps["removed"]]), limit)
    _section(lines, "episodes whose content changed", _columns([
        [f"~ {e['episode_id']}", f"{e['dataset']}/{e['embodiment']}",
         "; ".join(f"{k} {_value(k, v['old'])} -> {_value(k, v['new'])}" for k, v in e["fields"].items())]
        for e in eps["content_changed"]]), limit)
    _section(lines, "episodes whose kept ranges changed", _columns([
        [f"~ {e['episode_id']}", f"{e['dataset']}/{e['embodiment']}",
         f"{_ranges_text(e['kept_ranges']['old'])} -> {_ranges_text(e['kept_ranges']['new'])}  "
         f"+{e['frames_gained']} / -{e['frames_lost']} frames "
         f"({e['frames_kept']['old']} -> {e['frames_kept']['new']} kept)"] for e in eps["ranges_changed"]]), limit)
    _section(lines, "episodes that moved split", _columns([
        [f"~ {e['episode_id']}", f"{e['dataset']}/{e['embodiment']}", f"{e['split']['old']} -> {e['split']['new']}"]
        for e in eps["split_moved"]]), limit)
    _section(lines, "left-out accounting changed", _columns(
        [[f"{k}:", f"{v['old']} -> {v['new']}"] for k, v in diff["excluded"].items()]), limit)
    for split, shares in diff["shares"].items():
        for kind, title in (("datasets", "datasets"), ("embodiments", "dataset / embodiment")):
            _section(lines, f"{split} shares, {title}", _columns([
                [e["dataset"] if kind == "datasets" else f"{e['dataset']} / {e['embodiment']}",
                 f"{_pct(e['share']['old'])} -> {_pct(e['share']['new'])}  ({_points(e['share']['delta'])})"
                 f"  episodes {e['episodes']['old']} -> {e['episodes']['new']}"
                 f"  kept frames {e['frames_kept']['old']} -> {e['frames_kept']['new']}"]
                for e in shares[kind]]), limit)
    lines.append("totals")
    lines += [f"  {line}" for line in _columns([
        [split, *(f"{label} {t[k]['old']} -> {t[k]['new']} ({t[k]['delta']:+d})"
                  for k, label in (("episodes", "episodes"), ("frames_kept", "kept frames")))]
        for split, t in diff["totals"].items()])]
    return "\n".join(lines)


def composition(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per split: datasets and embodiments with episodes, kept frames, sampling and natural share.

    Episodes and kept frames are counted from the table; sampling shares are the declared
    ones. Putting them side by side with the natural share (the fraction of kept frames)
    shows how far the mixture re-weights the data. ``inspect`` prints it and MANIFEST.md
    tabulates it.
    """
    splits: dict[str, Any] = {}
    for split in splits_of(manifest):
        members = [r for r in rows if r["split"] == split]
        total = sum(r["frames_kept"] for r in members)
        declared = manifest.get("shares", {}).get(split, {})
        groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for r in members:
            g = groups[r["dataset"]][r["embodiment"]]
            g[0] += 1
            g[1] += r["frames_kept"]
        datasets = []
        for d in sorted(groups):
            dd = declared.get("datasets", {}).get(d, {})
            embs = [{"embodiment": e, "episodes": n, "frames_kept": f,
                     "share": dd.get("embodiments", {}).get(e, {}).get("share", 0.0), "natural_share": f / total}
                    for e, (n, f) in sorted(groups[d].items())]
            frames = sum(e["frames_kept"] for e in embs)
            datasets.append({"dataset": d, "episodes": sum(e["episodes"] for e in embs), "frames_kept": frames,
                             "share": dd.get("share", 0.0), "natural_share": frames / total, "embodiments": embs})
        splits[split] = {"within": declared.get("within", manifest["parameters"].get("within")),
                         "episodes": len(members), "frames_kept": total, "datasets": datasets}
    return splits


def inspect_json(manifest_dir: str | Path) -> dict[str, Any]:
    """A manifest's composition, left-out accounting and inputs as data (``inspect --json``)."""
    manifest, rows = load_manifest(manifest_dir)
    excluded = manifest.get("excluded", {})
    return {
        "name": manifest["name"], "dir": str(manifest_dir), "code_version": manifest["code_version"],
        "format_version": manifest.get("format_version"), "parameters": parameters_of(manifest),
        "table": manifest["table"], "counts": manifest["counts"], "splits": composition(manifest, rows),
        "excluded": excluded,
        "excluded_totals": {k: (len(v) if isinstance(v, list) else sum(v.values()) if isinstance(v, dict) else v)
                            for k, v in sorted(excluded.items())},
        "inputs": sorted(manifest.get("inputs", []), key=lambda i: i["store"]),
    }


def _params_text(params: dict[str, Any]) -> list[str]:
    weights = ", ".join(f"{d} {w:g}" for d, w in sorted(params.get("dataset_weights", {}).items())) or "equal"
    include = "; ".join(f"{k} {', '.join(v)}" for k, v in sorted(params.get("include", {}).items()) if v)
    include = include or "everything"
    return [f"  within each dataset/embodiment: uniform over {params.get('within')}",
            f"  validation fraction {params.get('validation_fraction')}, split seed {params.get('split_seed')}",
            f"  dataset weights: {weights}", f"  include: {include}"]


def inspect_manifest(manifest_dir: str | Path) -> str:
    """The composition for people: what a model trained on this manifest sees, and what was left out."""
    info = inspect_json(manifest_dir)
    table = info["table"]
    lines = [f"manifest {info['name']} ({info['dir']})", f"  code version: {info['code_version']}",
             f"  table: {table['file']}, {table['rows']} episodes, sha256 {table['sha256'][:_SHORT]}"]
    if description := info["parameters"].get("description"):
        lines.append(f"  description: {description}")
    lines += _params_text(info["parameters"])
    for split, s in info["splits"].items():
        lines += ["", f"{split}: {s['episodes']} episodes, {s['frames_kept']} kept frames"]
        if not s["datasets"]:
            continue
        cells = [["dataset", "embodiment", "episodes", "kept frames", "sampling", "natural"]]
        for d in s["datasets"]:
            cells += [[d["dataset"], e["embodiment"], str(e["episodes"]), str(e["frames_kept"]), _pct(e["share"]),
                       _pct(e["natural_share"])] for e in d["embodiments"]]
            cells.append([d["dataset"], "(subtotal)", str(d["episodes"]), str(d["frames_kept"]), _pct(d["share"]),
                          _pct(d["natural_share"])])
        cells.append(["(total)", "", str(s["episodes"]), str(s["frames_kept"]),
                      _pct(sum(d["share"] for d in s["datasets"])), _pct(1.0)])
        widths = [max(len(c[i]) for c in cells) for i in range(6)]
        lines += ["  " + "  ".join(c[i].ljust(w) if i < 2 else c[i].rjust(w) for i, w in enumerate(widths))
                  for c in cells]
    excluded, totals = info["excluded"], info["excluded_totals"]
    lines += ["", "left out"]
    for key, label in (("conversion_quarantine", "quarantined at conversion"),
                       ("curation_removed", "removed by curation")):
        detail = ", ".join(f"{r} {n}" for r, n in sorted(excluded.get(key, {}).items()))
        lines.append(f"  {label}: {totals.get(key, 0)} episodes" + (f" ({detail})" if detail else ""))
    lines.append(f"  not selected by include: {totals.get('not_included', 0)} episodes")
    lines.append(f"  cross-store duplicates: {totals.get('cross_store_duplicates', 0)} episodes")
    lines += ["", "inputs"]
    lines += [f"  {line}" for line in _columns([
        [i["store"], f"source {i.get('source', '?')}",
         f"index {i['index_sha256'][:_SHORT]}  curation {i['curation_sha256'][:_SHORT]}"] for i in info["inputs"]])]
    return "\n".join(lines)
