"""A manifest described as a Croissant 1.0 dataset, with the Responsible-AI (RAI) fields.

Catalogues and data loaders read Croissant; reviewers read its RAI fields to learn where
the data came from, under which licenses, and what it cannot be trusted for. Everything
here is derived from manifest.json, the table rows and the source cards of the datasets
the table actually contains, so ``verify`` can regenerate the file and compare bytes:
nothing depends on the time, the machine or the file system.

Facts are never invented: a license that is not known is not listed (the description and
the limitations say which one is unknown), a dataset without a source card says so, and
no project URL or publication date is written because neither is fixed by the manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cards are read by attribute only, so callers and tests need not import the converters
    from converters.base import SourceCard

from pipelines.manifest.format import MANIFEST_FILE, TABLE_FILE, manifest_json_text

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
RECORD_SET = "episodes"

# The standard Croissant 1.0 @context: tools compare against it and warn on any difference.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
_PREFIXES = {"sc": "https://schema.org/", "cr": "http://mlcommons.org/croissant/",
             "rai": "http://mlcommons.org/croissant/RAI/", "dct": "http://purl.org/dc/terms/"}

# Scalar columns of format.TABLE_SCHEMA: (dataType, description).
COLUMNS: dict[str, tuple[str, str]] = {
    "episode_id": ("sc:Text", "a1pipe episode id; the key of this record set"),
    "dataset": ("sc:Text", "source dataset the episode was converted from"),
    "embodiment": ("sc:Text", "embodiment id: robot plus its sensor and action configuration"),
    "robot_type": ("sc:Text", "robot family of the embodiment"),
    "store": ("sc:Text", "episode store holding the file; the file is <store>/<path>"),
    "path": ("sc:Text", "path of the episode file (a zarr v3 group in a stored ZIP) inside its store"),
    "sha256": ("sc:Text", "sha256 of the episode file"),
    "source_episode": ("sc:Text", "the episode's reference inside the source dataset"),
    "instruction": ("sc:Text", "natural-language task instruction"),
    "num_frames": ("sc:Integer", "frames stored in the episode file"),
    "frames_kept": ("sc:Integer", "frames curation kept; training samples only these"),
    "split": ("sc:Text", "train or validation, from a hash of the episode id and the seed"),
    "probability": ("sc:Float", "probability of drawing this episode within its split "
                                "(two-level balanced sampling weights)"),
}
RAI_KEYS = ("rai:dataCollection", "rai:dataCollectionType", "rai:dataBiases", "rai:dataLimitations",
            "rai:personalSensitiveInformation", "rai:dataPreprocessingProtocol", "rai:dataUseCases",
            "rai:dataReleaseMaintenancePlan")


def _source(column: str) -> dict[str, Any]:
    return {"fileObject": {"@id": TABLE_FILE}, "extract": {"column": column}}


def _field(fid: str, name: str, data_type: str, description: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "cr:Field", "@id": fid, "name": name, "description": description,
            "dataType": data_type, "source": source}


def _fields(calibration: bool = False) -> list[dict[str, Any]]:
    columns = dict(COLUMNS)
    if calibration:
        columns["split"] = ("sc:Text", "train, validation or calibration (set apart for early-exit calibration), "
                                       "from a hash of the episode id and the seed")
    fields = [_field(f"{RECORD_SET}/{c}", c, t, d, _source(c)) for c, (t, d) in columns.items()]
    # list<struct<start, stop>>: a repeated field whose sub-fields pick the struct members.
    ranges = {"@type": "cr:Field", "@id": f"{RECORD_SET}/kept_ranges", "name": "kept_ranges",
              "description": "half-open ranges [start, stop) of episode frame indices that curation kept",
              "repeated": True, "dataType": "sc:StructuredValue", "subField": [
                  _field(f"{RECORD_SET}/kept_ranges/{k}", k, "sc:Integer", f"{k} frame index of a kept range",
                         {**_source("kept_ranges"), "transform": {"jsonPath": k}})
                  for k in ("start", "stop")]}
    return fields + [ranges]


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    """croissant.json lives beside manifest.json, so it can carry manifest.json's checksum."""
    return hashlib.sha256(manifest_json_text(manifest).encode()).hexdigest()


def _card_facts(datasets: list[str], cards: dict[str, SourceCard | None]) -> dict[str, Any]:
    """RAI lists over the included datasets only; every item names its dataset so merged lists stay attributable."""
    collection, types, biases, limits, personal, licenses, unknown, based_on = [], set(), [], [], [], set(), [], []
    for d in datasets:
        card = cards.get(d)
        if card is None:
            collection.append(f"{d}: card missing; how this dataset was collected is not documented here.")
            limits.append(f"{d}: card missing: license, collection method, biases and limitations are unknown.")
            biases.append(f"{d}: card missing: biases unknown.")
            personal.append(f"{d}: card missing: whether it contains personal information is unknown.")
            unknown.append(d)
            continue
        t = card.title
        collection.append(f"{t}: {card.collection}")
        types.update(card.collection_type)
        for out, items in ((biases, card.biases), (limits, card.limitations), (personal, card.personal_information)):
            out += [f"{t}: {x}" for x in items] or [f"{t}: none stated on its source card."]
        limits += [f"{t}: not verified: {x}" for x in card.unverified]
        if card.license and card.license != "unknown":
            licenses.add(card.license)
        else:
            unknown.append(t)
            limits.append(f"{t}: license unknown; check the source's own terms before any use.")
        work = {"@type": "sc:CreativeWork", "name": t, "license": card.license or "unknown"}
        work.update({k: v for k, v in (("url", card.url), ("citation", card.citation)) if v})
        based_on.append(work)
    return {"collection": "\n\n".join(collection), "types": sorted(types), "biases": biases, "limits": limits,
            "personal": personal, "licenses": sorted(licenses), "unknown": unknown, "based_on": based_on}


def _preprocessing(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    ex = manifest.get("excluded") or {}

    def counts(key: str) -> str:
        c = ex.get(key) or {}
        return f"{sum(c.values())} episodes ({', '.join(f'{r}: {n}' for r, n in sorted(c.items()))})" if c \
            else "none"

    trimmed = sum(r["num_frames"] - r["frames_kept"] for r in rows)
    return [
        "Conversion: each source episode is converted by a1pipe's source converter into the unified episode "
        "store (one zarr v3 group per episode in an uncompressed ZIP, byte-identical for identical input); "
        "camera frames are resized (letterboxed by default) and stored as one JPEG per frame; state, action, "
        "timestamps and the language instruction are stored with every episode.",
        "Format checks at conversion quarantine corrupt episodes with a reason code (empty or mismatched "
        "lengths, non-finite values, bad timestamps, undecodable frames, missing cameras or metadata); "
        f"quarantined at conversion: {counts('conversion_quarantine')}.",
        "Curation (thresholds in params.yaml, audit trail in each store's curation.parquet) quarantines "
        "episodes that are too short, have timestamp gaps or duplicated frames, exceed declared physical "
        "limits or robust per-embodiment outlier bounds, or duplicate another episode exactly; quarantined by "
        f"curation: {counts('curation_removed')}.",
        "Curation removes idle prefixes and suffixes, long static runs and too-short moving segments inside "
        f"kept episodes (kept_ranges lists what remains): {trimmed} of {sum(r['num_frames'] for r in rows)} "
        "stored frames of the included episodes are outside the kept ranges.",
        "Cross-store duplicate removal: an episode whose content equals a kept episode of another store is "
        f"left out ({len(ex.get('cross_store_duplicates') or [])} here); kept episodes not selected by the "
        f"manifest's include rules: {ex.get('not_included', 0)}.",
        "Sampling: two-level balanced weights: each dataset gets an equal share (unless dataset_weights "
        "overrides it), then each embodiment an equal share within its dataset, then episodes share uniformly "
        f"by {manifest.get('parameters', {}).get('within', 'frames')}; the split is a hash of the episode id "
        "and the seed.",
    ]


def croissant_jsonld(manifest: dict[str, Any], rows: list[dict[str, Any]],
                     cards: dict[str, SourceCard | None]) -> dict[str, Any]:
    """Croissant 1.0 JSON-LD for a manifest; ``cards`` may hold more datasets than the table (ignored)."""
    params = manifest.get("parameters") or {}
    datasets = sorted({r["dataset"] for r in rows})
    facts = _card_facts(datasets, cards)
    counts = manifest.get("counts") or {}
    split_text = " and ".join(f"{c.get('episodes', 0)} {s} episodes ({c.get('frames_kept', 0)} kept frames)"
                              for s, c in sorted(counts.items()))
    generated = (f"Training manifest '{manifest['name']}' built by {manifest.get('code_version', 'a1pipe')}: "
                 f"{split_text or 'no episodes'} from {len(datasets)} datasets ({', '.join(datasets)}), sampled "
                 f"with two-level balanced weights (within={params.get('within', 'frames')}). Episode files live "
                 "in the episode stores, not in this directory: <store>/<path> from the table.")
    if facts["unknown"]:
        generated += f" License unknown for: {', '.join(facts['unknown'])} (see rai:dataLimitations)."
    stores = Counter(r["store"] for r in rows)
    inputs = {i["store"]: i for i in manifest.get("inputs") or []}
    distribution = [
        {"@type": "cr:FileObject", "@id": MANIFEST_FILE, "name": MANIFEST_FILE, "contentUrl": MANIFEST_FILE,
         "encodingFormat": "application/json", "sha256": _manifest_sha256(manifest),
         "description": "parameters, inputs, exclusions, counts, declared shares and the sha256 of every "
                        "episode file; the authoritative record of this manifest"},
        {"@type": "cr:FileObject", "@id": TABLE_FILE, "name": TABLE_FILE, "contentUrl": TABLE_FILE,
         "encodingFormat": "application/x-parquet", "sha256": manifest["table"]["sha256"],
         "description": f"one row per episode ({manifest['table'].get('rows', len(rows))} rows)"},
    ] + [
        {"@type": "cr:FileSet", "@id": f"episode-files-{s}", "name": f"{s} episode files",
         "encodingFormat": "application/zip", "includes": f"{s}/episodes/**/*.zarr.zip",
         "description": f"{n} episode files of store '{s}' (source {inputs.get(s, {}).get('source', 'unknown')}), "
                        "relative to the directory holding the stores; only the files the table names (store, path, "
                        "sha256) belong to this dataset"
                        + (f"; store index sha256 {inputs[s]['index_sha256']}, curation sha256 "
                           f"{inputs[s]['curation_sha256']}" if s in inputs else "")}
        for s, n in sorted(stores.items())]
    doc: dict[str, Any] = {
        "@context": copy.deepcopy(CONTEXT),  # callers may edit the document
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": f"a1pipe-{manifest['name']}",
        "description": " ".join(x for x in (str(params.get("description") or "").strip(), generated) if x),
        "version": f"{manifest.get('format_version', 1)}.0.0",
        "citeAs": f"a1pipe training manifest '{manifest['name']}' ({manifest.get('code_version', 'a1pipe')}); "
                  "cite the source datasets listed in isBasedOn as well.",
        "keywords": ["robot learning", "robot manipulation", "vision-language-action", "imitation learning",
                     "training manifest", "a1pipe", *datasets],
        "isBasedOn": facts["based_on"],
        "distribution": distribution,
        "recordSet": [{"@type": "cr:RecordSet", "@id": RECORD_SET, "name": RECORD_SET,
                       "description": "the episodes a model trains on, with the frames kept and the probability "
                                      "of drawing each one",
                       "key": {"@id": f"{RECORD_SET}/episode_id"}, "field": _fields("calibration" in counts)}],
        "rai:dataCollection": facts["collection"],
        "rai:dataCollectionType": facts["types"],
        "rai:dataBiases": facts["biases"],
        "rai:dataLimitations": facts["limits"] + [
            "Sampling shares equalise datasets and embodiments, not tasks, scenes or operators; skews inside a "
            "dataset carry over."],
        "rai:personalSensitiveInformation": facts["personal"],
        "rai:dataPreprocessingProtocol": _preprocessing(manifest, rows),
        "rai:dataUseCases": [
            "Pretraining vision-language-action (VLA) robot policies on a balanced multi-dataset mixture.",
            "Fine-tuning VLA robot policies on a narrower selection (one benchmark, embodiment or task).",
            "Validation: the validation split follows the same mixture as training."],
        "rai:dataReleaseMaintenancePlan": (
            "The manifest is regenerated, never edited: `a1pipe manifest build` rebuilds it byte-identically "
            "from the same stores and parameters, and `a1pipe manifest verify` re-hashes every file, re-checks "
            "every kept range, probability and share, and regenerates this file. A new source, curation rule or "
            "parameter gives a new manifest with new checksums."),
    }
    if facts["licenses"]:
        doc["license"] = facts["licenses"]
    return doc


def write_croissant(path: str | Path, manifest: dict[str, Any], rows: list[dict[str, Any]],
                    cards: dict[str, SourceCard | None]) -> None:
    Path(path).write_text(json.dumps(croissant_jsonld(manifest, rows, cards), indent=1, sort_keys=True,
                                     ensure_ascii=False) + "\n", encoding="utf-8")


def _structural_problems(doc: Any) -> list[str]:
    """Project rules checked with or without mlcroissant (which, for 1.0, does not require a name or RAI fields)."""
    if not isinstance(doc, dict):
        return ["top level is not a JSON object"]
    problems = []
    context = doc.get("@context")
    if not isinstance(context, dict):
        problems.append("@context is missing or not an object")
    else:
        problems += [f"@context: prefix {p!r} must be {iri}" for p, iri in _PREFIXES.items() if context.get(p) != iri]
    if doc.get("@type") not in ("sc:Dataset", "https://schema.org/Dataset"):
        problems.append(f"@type must be sc:Dataset, got {doc.get('@type')!r}")
    if doc.get("conformsTo") != CONFORMS_TO:
        problems.append(f"conformsTo must be {CONFORMS_TO}, got {doc.get('conformsTo')!r}")
    if not isinstance(doc.get("name"), str) or not doc.get("name"):
        problems.append("name is missing or empty")
    problems += [f"{k} is missing" for k in RAI_KEYS if doc.get(k) is None]
    ids = set()
    for i, item in enumerate(doc.get("distribution") or []):
        kind, iid = (item.get("@type"), item.get("@id")) if isinstance(item, dict) else (None, None)
        where = f"distribution[{i}] ({iid})"
        if kind not in ("cr:FileObject", "cr:FileSet"):
            problems.append(f"{where}: @type must be cr:FileObject or cr:FileSet, got {kind!r}")
        if not iid:
            problems.append(f"{where}: @id is missing")
        elif iid in ids:
            problems.append(f"{where}: duplicate @id")
        ids.add(iid)
        if not isinstance(item, dict):
            continue
        needed = {"cr:FileObject": ("contentUrl", "encodingFormat"), "cr:FileSet": ("includes", "encodingFormat")}
        problems += [f"{where}: {k} is missing" for k in needed.get(kind, ()) if not item.get(k)]
        if kind == "cr:FileObject" and not (item.get("sha256") or item.get("md5")):
            problems.append(f"{where}: sha256 (or md5) is missing")
    if not ids:
        problems.append("distribution is missing or empty")

    def check_fields(fields: Any, where: str) -> None:
        for j, f in enumerate(fields if isinstance(fields, list) else [fields]):
            fid = f.get("@id") if isinstance(f, dict) else None
            if not fid:
                problems.append(f"{where}: field #{j} has no @id")
                continue
            if not f.get("dataType") and not f.get("subField"):
                problems.append(f"field {fid}: dataType is missing")
            src = f.get("source")
            if src is not None:
                ref = (src.get("fileObject") or src.get("fileSet") or {}) if isinstance(src, dict) else {}
                rid = ref.get("@id") if isinstance(ref, dict) else None
                if rid not in ids:
                    problems.append(f"field {fid}: source references {rid!r}, which is not a distribution @id")
            if f.get("subField"):
                check_fields(f["subField"], f"field {fid}")

    for rs in doc.get("recordSet") or []:
        if not isinstance(rs, dict) or not rs.get("@id"):
            problems.append("recordSet without @id")
            continue
        check_fields(rs.get("field") or [], f"recordSet {rs['@id']}")
    return problems


def _mlcroissant_problems(path: Path) -> list[str] | None:
    """MLCommons' own validator, or None when it is not installed.

    Loading a Dataset only builds the structure and operation graphs (no download: a local
    file with an inline @context), and raises ValidationError listing every error.
    """
    try:
        import mlcroissant as mlc
        from absl import logging as absl_logging
    except ImportError:
        return None
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # warnings (e.g. no datePublished) are not problems
    try:
        mlc.Dataset(jsonld=str(path))
    except mlc.ValidationError as exc:
        # The report lists errors, then warnings, under "Found the following N error(s)/warning(s)" headers.
        errors, section = [], None
        for line in str(exc).splitlines():
            if line.startswith("Found the following"):
                section = "error" if "error(s)" in line else "warning"
            elif section == "error" and line.startswith("  -  "):
                errors.append(f"mlcroissant: {line[5:].strip()}")
            elif section == "error" and errors and line.strip():
                errors[-1] += " " + line.strip()
        return errors or [f"mlcroissant: {exc}"]
    except Exception as exc:  # mlcroissant raises plain errors on malformed JSON-LD too
        return [f"mlcroissant: {type(exc).__name__}: {exc}"]
    finally:
        absl_logging.set_verbosity(verbosity)
    return []


def validate_croissant(path: str | Path) -> list[str]:
    """Every problem found ([] when valid): the project's structural rules plus mlcroissant's, if installed."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"cannot read {path.name}: {exc}"]
    problems = _structural_problems(doc)
    return problems + (_mlcroissant_problems(path) or [])
