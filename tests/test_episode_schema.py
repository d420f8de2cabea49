"""The episode format's one statement in code (``pipelines/episode_store/schema.py``) says what its
specification (docs/episode_format.md, section 3) says, and the writer writes exactly that.

The document is read by its structure, not by line: section 3's array table (first column
``array``), the table under the ``Root attribute`` heading (first column ``key``), the keys in
backticks, ``(optional)`` marks, and the brace notation of nested objects (``{a, b: {c}}``; an
object whose one entry is itself an object, ``{name: {...}}``, maps any name to that object).
Adding, renaming or dropping a key on either side fails here until the other side follows.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

import numpy as np
import pytest

from pipelines.episode_store import schema
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.schema import (
    ACTION_PADDED_EXTRA,
    EPISODE_ATTR,
    FORMAT_VERSION,
    FRAME_ENCODING,
    LOW_DIM_ARRAYS,
    METADATA_SUCCESS,
    NO_SUBTASK,
    OPTIONAL_METADATA,
    REQUIRED_METADATA,
    REQUIRED_SUBKEYS,
    SUBTASK_INDEX,
    SUBTASK_INDEX_DTYPE,
    SUBTASK_TEXTS_ATTR,
    ActionKind,
    CameraKey,
    CameraSourceKey,
    ConverterKey,
    ExtraKey,
    LanguageKey,
    MetaKey,
    SourceKey,
    TimestampOrigin,
    extra_array,
    image_array,
)
from pipelines.episode_store.writer import write_episode
from tests.episode_factory import make_episode

DOC = Path(__file__).resolve().parents[1] / "docs" / "episode_format.md"
#: how the document writes a JSON type -> what the validator accepts for it
DOC_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int, "str": str, "float": (int, float), "list[str]": list, "object": dict, "{}": dict,
}
#: a map from any name (a camera's, an extra's) to one object, in the brace notation
ANY_NAME = "*"


def _section(text: str, title: str) -> str:
    """The body of the section whose heading starts with ``title``, its subsections included."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        heading = re.match(r"(#+) (.*)", line)
        if heading and heading.group(2).startswith(title):
            level = len(heading.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if (m := re.match(r"(#+) ", lines[j])) and len(m.group(1)) <= level), len(lines))
            return "\n".join(lines[i:end])
    raise AssertionError(f"{DOC.name} has no section '{title}'")


def _table(text: str, first_column: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first Markdown table whose header starts with ``first_column``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_column and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            return rows
    raise AssertionError(f"{DOC.name}: no table with a '{first_column}' column")


def _cells(line: str) -> list[str]:
    if not line.startswith("|"):
        return []
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _braces(text: str) -> dict[str, object]:
    """``{a, b: {c, d}}`` -> ``{"a": None, "b": {"c": None, "d": None}}``; ``{name: {x}}`` -> ``{"*": {"x": None}}``."""
    tokens = re.findall(r"\w+|[{}:,]|\S", text)

    def parse(i: int) -> tuple[dict[str, object], int]:
        assert tokens[i] == "{", text
        out: dict[str, object] = {}
        while tokens[i] != "}":
            key, i = tokens[i + 1], i + 2
            assert re.fullmatch(r"\w+", key), f"cannot read {text!r}"
            out[key], i = parse(i + 1) if tokens[i] == ":" else (None, i)
            assert tokens[i] in ",}", f"cannot read {text!r}"
        if len(out) == 1 and isinstance(next(iter(out.values())), dict):
            out = {ANY_NAME: next(iter(out.values()))}
        return out, i + 1

    parsed, end = parse(0)
    assert end == len(tokens), text
    return parsed


def _ordered(tree: dict[str, object] | None) -> list | None:
    """A nested key dict as nested (key, value) lists, so comparing them compares the order too."""
    return None if tree is None else [(str(k), _ordered(v)) for k, v in tree.items()]


def _record(keys: Iterable[StrEnum], **nested: dict[str, object]) -> dict[str, object]:
    """The brace-notation dict of an object with these keys (``nested``: by member name, the keys' own objects)."""
    return {str(k): nested.get(k.name) for k in keys}


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


@pytest.fixture(scope="module")
def episode_file(doc) -> str:
    return _section(doc, "3. Episode file")


@pytest.fixture(scope="module")
def arrays(episode_file) -> dict[str, tuple[str, bool]]:
    """array key -> (dtype, optional), as the document's array table gives them."""
    out = {}
    for cells in _table(episode_file, "array"):
        (key,) = _ticked(cells[0])
        out[key] = (cells[1], "(optional)" in cells[0])
    return out


@pytest.fixture(scope="module")
def metadata(episode_file) -> dict[str, tuple[str, bool, str]]:
    """metadata key -> (documented type, optional, meaning), from the root attribute's table."""
    out = {}
    for cells in _table(_section(episode_file, "Root attribute"), "key"):
        keys, written, meaning = _ticked(cells[0]), cells[1].replace("(optional)", "").strip(), cells[2]
        types = [written] if len(keys) == 1 else [t.strip() for t in written.split(",")]  # `a`, `b` | int, float
        if len(types) == 1:
            types *= len(keys)  # `a`, `b` | list[str]
        assert len(types) == len(keys), cells
        out |= {key: (t, "(optional)" in cells[1], meaning) for key, t in zip(keys, types)}
    return out


def test_format_version_and_root_attribute_are_the_documented_ones(doc, episode_file, metadata):
    assert re.match(rf"# .* format version {FORMAT_VERSION}$", doc.splitlines()[0])
    assert re.search(rf"^### Root attribute `{EPISODE_ATTR}`$", episode_file, flags=re.MULTILINE)
    assert metadata[MetaKey.FORMAT_VERSION][2] == str(FORMAT_VERSION)


def test_every_documented_array_is_in_the_schema_and_back(arrays):
    optional = {name: False for name in LOW_DIM_ARRAYS}
    optional |= {image_array("<camera>"): False, SUBTASK_INDEX: True, extra_array("<name>"): True}
    assert {key: opt for key, (_, opt) in arrays.items()} == optional
    dtypes = {name: str(dtype) for name, dtype in LOW_DIM_ARRAYS.items()} | {SUBTASK_INDEX: str(SUBTASK_INDEX_DTYPE)}
    assert {key: arrays[key][0] for key in dtypes} == dtypes
    groups = {value for name, value in vars(schema).items() if name.endswith("_GROUP")}
    assert {key.split("/")[0] for key in arrays if "/" in key} == groups


def test_subtask_texts_and_the_no_subtask_value_are_documented(episode_file):
    (row,) = [cells for cells in _table(episode_file, "array") if f"`{SUBTASK_INDEX}`" in cells[0]]
    assert f"attribute `{SUBTASK_TEXTS_ATTR}`" in row[-1] and f"{NO_SUBTASK} = none" in row[-1]


def test_every_documented_metadata_key_is_in_the_schema_and_back(metadata):
    assert list(metadata) == list(MetaKey)
    types = {key: (DOC_TYPES["{}" if t.startswith("{") else t], optional) for key, (t, optional, _) in metadata.items()}
    assert {key: t for key, (t, optional) in types.items() if not optional} == REQUIRED_METADATA
    assert {key: t for key, (t, optional) in types.items() if optional} == OPTIONAL_METADATA


def test_nested_objects_hold_the_documented_keys(metadata):
    documented = {key: _braces(t) for key, (t, _, _) in metadata.items() if t.startswith("{")}
    code = {
        MetaKey.SOURCE: _record(SourceKey),
        MetaKey.CONVERTER: _record(ConverterKey),
        MetaKey.LANGUAGE: _record(LanguageKey),
        MetaKey.CAMERAS: {ANY_NAME: _record(CameraKey, SOURCE=_record(CameraSourceKey))},
        MetaKey.EXTRAS: {ANY_NAME: _record(ExtraKey)},
    }
    assert _ordered(documented) == _ordered(code)
    key_classes = {v for v in vars(schema).values() if isinstance(v, type) and issubclass(v, StrEnum)
                   and v.__name__.endswith("Key") and v is not MetaKey}
    assert key_classes == {SourceKey, ConverterKey, LanguageKey, CameraKey, CameraSourceKey, ExtraKey}, \
        "a key class this test does not hold to the document"
    assert {key: _record(keys) for key, keys in REQUIRED_SUBKEYS.items()} == {
        key: documented[key] for key in (MetaKey.SOURCE, MetaKey.CONVERTER, MetaKey.LANGUAGE)}


@pytest.mark.parametrize("key, enum", [(MetaKey.ACTION_KIND, ActionKind), (MetaKey.TIMESTAMP_ORIGIN, TimestampOrigin)])
def test_enumerations_are_the_documented_values(metadata, key, enum):
    assert _ticked(metadata[key][2]) == [e.value for e in enum]


def test_the_entries_later_stages_read_are_documented(episode_file):
    assert f"`{MetaKey.METADATA}.{METADATA_SUCCESS}` (bool)" in episode_file
    assert f"`{extra_array(ACTION_PADDED_EXTRA)}` (bool [T, 1])" in episode_file


def test_the_writer_writes_exactly_the_schema(tmp_path, arrays):
    """An episode file holds what the schema and the document say: every key, no other, with the documented dtypes."""
    EpisodeStore.create(tmp_path)
    episode = make_episode(12, subtasks=True)
    eid = write_episode(episode, tmp_path, ImageConfig(height=24, width=32))
    path = EpisodeStore(tmp_path).episode_path(eid)
    with EpisodeStore(tmp_path).open_episode(eid) as reader:
        meta = reader.meta
        assert list(meta) == list(MetaKey)
        for key, keys in REQUIRED_SUBKEYS.items():
            assert list(meta[key]) == list(keys)
        assert list(meta[MetaKey.CAMERAS]) == sorted(episode.cameras)
        for info in meta[MetaKey.CAMERAS].values():
            assert list(info) == list(CameraKey) and list(info[CameraKey.SOURCE]) == list(CameraSourceKey)
            assert info[CameraKey.ENCODING] == FRAME_ENCODING
        assert list(meta[MetaKey.EXTRAS]) == list(episode.extras)
        assert all(list(v) == list(ExtraKey) for v in meta[MetaKey.EXTRAS].values())
        assert list(reader.group[SUBTASK_INDEX].attrs) == [SUBTASK_TEXTS_ATTR]
    with zipfile.ZipFile(path) as zf:
        nodes = {name.removesuffix("/zarr.json"): json.loads(zf.read(name)) for name in zf.namelist()
                 if name.endswith("/zarr.json")}
    stored = {key: node["data_type"] for key, node in nodes.items() if node["node_type"] == "array"}
    patterns = {image_array(c): image_array("<camera>") for c in episode.cameras}
    patterns |= {extra_array(k): extra_array("<name>") for k in episode.extras}
    assert {patterns.get(key, key) for key in stored} == set(arrays)
    for key, data_type in stored.items():
        documented = arrays[patterns.get(key, key)][0]
        if documented == "numeric":
            assert np.dtype(data_type).kind in "biuf", (key, data_type)
        else:
            assert data_type == documented, key
    groups = {value for name, value in vars(schema).items() if name.endswith("_GROUP")}
    assert {key for key, node in nodes.items() if node["node_type"] == "group"} == groups
