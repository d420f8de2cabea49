"""MANIFEST.md and composition.svg: a released manifest explained to the people who audit it.

Both are derived from manifest.json and the episode table only, and byte-deterministic for a
given matplotlib (no dates, no absolute paths, no random SVG ids, no dependence on the caller's
matplotlib settings), so a rebuild reproduces a release. ``verify`` regenerates them and
compares the card's bytes and the plot's labels (``release.plot_labels``): the labels are the
plot's data; its bytes are matplotlib's drawing, which changes between matplotlib releases.
"""

from __future__ import annotations

import io
import re
from typing import Any

from pipelines.manifest.compare import composition
from pipelines.manifest.format import parameters_of, splits_of

DEFAULT_DATA = "data/converted"  # params.yaml convert.out: where `dvc repro` puts the stores
_CARD_LISTS = (("biases", "Known biases"), ("limitations", "Limitations"),
               ("personal_information", "Personal information"), ("unverified", "Unverified facts"))
_HATCHES = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")
# svg.fonttype none keeps labels as searchable <text>; the salt replaces the uuid4 in clip/marker ids.
_SVG_RC = {"svg.hashsalt": "a1pipe-composition", "svg.fonttype": "none", "font.family": "DejaVu Sans",
           "font.size": 8.0}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _pct(x: float, digits: int = 4) -> str:
    return f"{100 * x:.{digits}f}%"


def composition_svg(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The train split's balanced shares next to the natural (frame-proportional) ones.

    Side by side so a reader sees at a glance which datasets and embodiments balancing
    boosts and which it damps. The same embodiment name has the same colour in every
    dataset and in both panels.
    """
    import matplotlib as mpl
    import matplotlib.style
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    train = {d["dataset"]: d for d in composition(manifest, rows)["train"]["datasets"]}
    datasets = sorted(train)
    embodiments = sorted({e["embodiment"] for d in train.values() for e in d["embodiments"]})
    with mpl.style.context("default"), mpl.rc_context(_SVG_RC):
        palette = mpl.colormaps["tab20"].colors
        style = {e: (palette[i % 20], _HATCHES[(i // 20) % len(_HATCHES)]) for i, e in enumerate(embodiments)}
        ncol = 5
        legend_rows = -(-len(embodiments) // ncol)
        width, height = 12.0, 1.4 + 0.42 * max(len(datasets), 1) + 0.2 * legend_rows
        fig = Figure(figsize=(width, height), layout="constrained")
        balanced, natural = fig.subplots(1, 2, sharey=True)
        panels = (
            (balanced, "Sampling share (balanced: what training draws)",
             {d: {e["embodiment"]: e["share"] for e in train[d]["embodiments"]} for d in datasets}),
            (natural, "Share of kept frames (natural: what unbalanced sampling would draw)",
             {d: {e["embodiment"]: e["natural_share"] for e in train[d]["embodiments"]} for d in datasets}),
        )
        xmax = max([sum(p[2][d].values()) for p in panels for d in datasets] or [1.0]) * 1.18 or 1.0
        panel_inches = (width - 1.6) / 2
        for ax, title, values in panels:
            for y, d in enumerate(datasets):
                left = 0.0
                for e in sorted(values[d]):
                    w = values[d][e]
                    colour, hatch = style[e]
                    ax.barh(y, w, left=left, height=0.7, color=colour, hatch=hatch, edgecolor="white",
                            linewidth=0.6)
                    room = w / xmax * panel_inches * 72  # segment width in points
                    label = next((t for t in (f"{e} {_pct(w, 1)}", _pct(w, 1)) if len(t) * 4.3 + 4 < room), None)
                    if label:
                        dark = sum(c * k for c, k in zip(colour, (0.299, 0.587, 0.114))) < 0.5
                        ax.text(left + w / 2, y, label, ha="center", va="center", fontsize=6.5,
                                color="white" if dark else "black")
                    left += w
                ax.text(left + xmax * 0.01, y, _pct(left, 1), ha="left", va="center", fontsize=7.5)
            ax.set_title(title, fontsize=9)
            ax.set_xlim(0, xmax)
            ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
            ax.grid(axis="x", color="#dddddd", linewidth=0.5)
            ax.set_axisbelow(True)
        balanced.set_yticks(range(len(datasets)), datasets)
        if datasets:
            balanced.set_ylim(len(datasets) - 0.5, -0.5)  # first dataset on top, like the card's table
        else:
            balanced.text(0.5, 0.5, "no train episodes", ha="center", va="center", transform=balanced.transAxes)
        fig.suptitle(f"Manifest {manifest.get('name', '')}: train split composition by dataset and embodiment",
                     fontsize=10)
        if embodiments:
            fig.legend([Patch(facecolor=style[e][0], hatch=style[e][1], edgecolor="white") for e in embodiments],
                       embodiments, loc="outside lower center", ncol=ncol, fontsize=7, frameon=False,
                       title="embodiment", title_fontsize=7.5)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                  "Title": f"composition of manifest {manifest.get('name', '')}"})
    return buf.getvalue()


def _cell(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value)).replace("|", "\\|").strip()


def _table(header: list[str], rows: list[list[Any]], align: str) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
            + ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows])


def _summary(manifest: dict[str, Any], datasets: list[str]) -> list[str]:
    p = parameters_of(manifest)
    counts = manifest["counts"]
    weights = p.get("dataset_weights") or {}
    mixture = ("dataset weights are overridden (" + ", ".join(f"{d} {w:g}" for d, w in sorted(weights.items()))
               + "; normalised over the datasets present in each split)") if weights else \
        "every dataset gets an equal share"
    within = ("uniformly over the kept frames of that group (every kept frame of a dataset and embodiment is "
              "equally likely)") if p["within"] == "frames" else "uniformly over its episodes, whatever their length"
    words = {"train": "training", "validation": "validation", "calibration": "calibration"}
    size = " and ".join(f"{_n(counts[s]['episodes'], f'{words[s]} episode')} "
                        f"({_n(counts[s]['frames_kept'], 'kept frame')})" for s in splits_of(manifest))
    kinds = {"instructions": "instructions matching", "source_episodes": "source episodes matching"}
    filters = [f"{kinds.get(k, k)} {', '.join(f'`{v}`' for v in vals)}"
               for k, vals in sorted(p.get("include", {}).items()) if vals]
    lines = [
        f"# Manifest `{manifest['name']}`", "",
        "This manifest states exactly which robot-episode frames a model trained on it sees, "
        f"and how often. It lists {size} from {_n(len(datasets), 'dataset')} in "
        f"{_n(len(manifest['inputs']), 'store')}. "
        f"Sampling is two-level balanced (within `{p['within']}`): {mixture}, each "
        f"embodiment an equal share of its dataset, and inside a dataset and embodiment episodes are drawn {within}. "
        f"Each episode is assigned to validation by a hash of its id with seed {p['split_seed']} "
        f"(validation fraction {p['validation_fraction']:g}"
        + (f", then calibration fraction {p['calibration_fraction']:g}, episodes set apart for early-exit "
           "calibration" if p.get("calibration_fraction") else "")
        + "), so the split does not depend on the other episodes. "
        + (f"Include filters: {'; '.join(filters)}." if filters else
           "No include filters: every kept episode of the input stores is in.")
        + f" Built by {manifest['code_version']} (manifest format {manifest.get('format_version', '?')}).", ""]
    if p.get("description"):
        lines += ["> " + _cell(p["description"]), ""]
    return lines


def _composition(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Composition", "",
             "Sampling share is the probability that a drawn frame comes from that dataset and embodiment; share of "
             "kept frames is what sampling in proportion to the data would give. Percentages are the manifest's "
             "exact shares rounded to 4 decimals.", ""]
    for split, c in composition(manifest, rows).items():
        lines += [f"### {split}", ""]
        if not c["datasets"]:
            lines += ["No episodes in this split.", ""]
            continue
        table = []
        for d in c["datasets"]:
            table += [[d["dataset"], e["embodiment"], e["episodes"], e["frames_kept"], _pct(e["share"]),
                       _pct(e["natural_share"])] for e in d["embodiments"]]
            table.append([f"**{d['dataset']}**", f"**subtotal ({_n(len(d['embodiments']), 'embodiment')})**",
                          f"**{d['episodes']}**", f"**{d['frames_kept']}**", f"**{_pct(d['share'])}**",
                          f"**{_pct(d['natural_share'])}**"])
        table.append(["**total**", "", f"**{c['episodes']}**", f"**{c['frames_kept']}**",
                      f"**{_pct(sum(d['share'] for d in c['datasets']))}**", f"**{_pct(1.0)}**"])
        lines += _table(["dataset", "embodiment", "episodes", "kept frames", "sampling share", "share of kept frames"],
                        table, "llrrrr") + [""]
    lines += ["![composition](composition.svg)", "",
              "*Train split: left, the sampling share of each dataset split by embodiment; right, each dataset's "
              "share of the kept frames. The same embodiment has the same colour in both panels.*", ""]
    return lines


def _left_out(excluded: dict[str, Any]) -> list[str]:
    lines = ["## What was left out", ""]
    for key, title in (("conversion_quarantine", "Quarantined at conversion (could not be read or validated)"),
                       ("curation_removed", "Removed by curation")):
        reasons = excluded.get(key) or {}
        lines += [f"**{title}:** {sum(reasons.values())} episodes" + (" by reason:" if reasons else "."), ""]
        if reasons:
            lines += _table(["reason", "episodes"], [[r, n] for r, n in sorted(reasons.items())], "lr") + [""]
    lines += [f"**Not selected by the include filters:** {excluded.get('not_included', 0)} kept episodes.", ""]
    dups = excluded.get("cross_store_duplicates") or []
    lines += [f"**Cross-store duplicates:** {len(dups)} episodes left out because a kept episode of another store "
              "has the same content (the smallest episode id is the copy kept)" + (":" if dups else "."), ""]
    if dups:
        lines += _table(["left out", "store", "copy kept", "its store"],
                        [[f"`{d['episode_id']}`", d["store"], f"`{d['duplicate_of']}`", d["duplicate_of_store"]]
                         for d in sorted(dups, key=lambda d: (d["store"], d["episode_id"]))], "llll") + [""]
    return lines


def _sources(datasets: list[str], cards: dict[str, Any]) -> list[str]:
    lines = ["## Sources", "",
             "What each source states about itself (its converter's source card). Facts that are not known are "
             "written `unknown`; facts that could not be checked are listed as unverified.", ""]
    lines += _table(["dataset", "title", "license"],
                    [[d, getattr(cards.get(d), "title", "card missing") or "unknown",
                      f"`{getattr(cards.get(d), 'license', '') or 'unknown'}`" if cards.get(d) else "card missing"]
                     for d in datasets], "lll") + [""]
    for d in datasets:
        card = cards.get(d)
        if card is None:
            lines += [f"### {d}", "", "**card missing**: no source card is available for this dataset, so its "
                      "license, collection, biases and limitations are not stated here.", ""]
            continue
        url, cite = getattr(card, "url", ""), getattr(card, "citation", "")
        lines += [f"### {d}: {_cell(card.title)}", "",
                  f"- **License:** `{_cell(card.license or 'unknown')}`",
                  f"- **URL:** {f'<{_cell(url)}>' if url else 'not given'}",
                  f"- **Citation:** {_cell(cite) if cite else 'not given'}",
                  f"- **Collection type:** {'; '.join(map(_cell, getattr(card, 'collection_type', ()))) or 'unknown'}",
                  "", f"**Collection.** {_cell(getattr(card, 'collection', '') or 'unknown')}", ""]
        for attr, title in _CARD_LISTS:
            items = tuple(getattr(card, attr, ()) or ())
            lines += [f"**{title}:**", ""] + ([f"- {_cell(i)}" for i in items] or ["- none stated"]) + [""]
    return lines


def manifest_card(manifest: dict[str, Any], rows: list[dict[str, Any]], cards: dict[str, object | None]) -> str:
    """MANIFEST.md: what an auditor needs to judge a manifest without reading code or parquet.

    Shares are manifest.json's (``verify`` recomputes them from the table); episode and
    frame counts are counted from ``rows``. ``cards`` maps a dataset (source) name
    to its converter's ``SourceCard``; a missing card is said, not papered over.
    """
    inputs = manifest.get("inputs", [])
    datasets = sorted({i["source"] for i in inputs} | {r["dataset"] for r in rows}
                      | {d for s in manifest.get("shares", {}).values() for d in s.get("datasets", {})})
    name = manifest["name"]
    stores = " ".join(f"{DEFAULT_DATA}/{i['store']}" for i in sorted(inputs, key=lambda i: i["store"]))
    table = manifest["table"]
    lines = _summary(manifest, datasets) + _composition(manifest, rows) + _left_out(manifest.get("excluded", {}))
    lines += _sources(datasets, cards)
    lines += ["## Verify", "",
              f"Re-hash every referenced file, re-read every episode's length, compare each kept range with its "
              f"store's curation table, recompute every probability and share, and regenerate this card and the "
              f"plot (stores are matched by directory name; `{DEFAULT_DATA}` is where `dvc repro` puts them):", "",
              "```sh", f"a1pipe manifest verify manifests/{name} --data {stores}".rstrip(),
              f"a1pipe manifest inspect manifests/{name}", "```", "",
              "## Checksums", "",
              f"`{table['file']}` ({table['rows']} rows): sha256 `{table['sha256']}`", "",
              "Input stores, with the sha256 of the index and curation tables the manifest was built from:", ""]
    lines += _table(["store", "source", "index sha256", "curation sha256"],
                    [[i["store"], i["source"], f"`{i['index_sha256']}`", f"`{i['curation_sha256']}`"]
                     for i in sorted(inputs, key=lambda i: i["store"])], "llll")
    return "\n".join(lines) + "\n"
