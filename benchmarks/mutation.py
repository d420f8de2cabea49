"""Mutation testing of one core module with mutmut 3 (issue 18): `make mutation MODULE=manifest.weights`.

The one table of what is mutated and which tests judge it. mutmut reads its settings from
``[tool.mutmut]`` in pyproject.toml (the source folders, process isolation); this script
replaces only the two per-module settings, ``only_mutate`` (the module's source files) and
the test selection (the module's test files), so one module's run collects stats over a few
test files instead of the whole suite. Every run starts from a fresh ``mutants/`` copy (the
copy mutmut keeps of files it does not mutate is never refreshed otherwise) and prints
killed / survived / total and the kill rate; the counts are also written to
``benchmarks/out/mutation/<module>.json``.

Equivalent mutants (no behaviour can tell them apart from the original) are listed below
with the reason, and left out of the kill rate.

A module too big for a whole run on the machine at hand (every mutant runs the tests that reach
its function; the validator's and the training data path's build stores) is measured on a simple
random sample of its mutants (``--sample N --seed S``): every mutant is generated, N are drawn
without replacement and run, and the kill rate over them is printed with its 95 % Wilson interval,
an unbiased estimate of the whole module's rate. The same seed draws the same mutants, so a sample's
survivors can be judged, tested and the sample run again.

Not part of ``make test``: a module takes minutes.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import random
import shutil
import sys

# mutmut forks one worker per mutant from a process that has already run the tests once (its stats
# pass). Where those tests ran torch, libgomp's thread pool exists in the parent, does not survive the
# fork, and the child blocks on a futex forever; mutmut's timeout counts CPU seconds, so a blocked
# child is never stopped (training.exits hung on every `discrepancy` mutant). One OpenMP thread: no pool.
os.environ.setdefault("OMP_NUM_THREADS", "1")
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    sources: tuple[str, ...]  # files mutated (relative to the repository root)
    tests: tuple[str, ...]  # the test files that judge them
    # mutant name (or glob) without the module prefix -> why no behaviour distinguishes it from the original
    equivalent: dict[str, str] = field(default_factory=dict)


MODULES: dict[str, Module] = {
    # the thresholds and segmentation (max_idle_run, min_segment, min_frames, gaps, bounds) are in curation_rules.py;
    # curation.py applies them per episode and writes the reports
    "curation.rules": Module(
        ("pipelines/curation_rules.py",), ("tests/test_curation_rules.py",),
        equivalent={
            "x_idle_steps__mutmut_58": "step_idle = ... instead of &=: step_idle is all True before, so the same",
            # with every state dimension ignored, velocity has 0 columns and is skipped: its row count, a column
            # of zeros (always below the threshold) or dividing the empty ds all leave step_idle as it was
            "x_idle_steps__mutmut_44": "ds / dt for empty ds: the same (n - 1, 0) array",
            "x_idle_steps__mutmut_47": "np.zeros((n + 1, 0)): 0 columns, skipped",
            "x_idle_steps__mutmut_48": "np.zeros((n - 2, 0)): 0 columns, skipped",
            "x_idle_steps__mutmut_49": "np.zeros((n - 1, 1)): a zero velocity is below any positive threshold",
            "x_corruption__mutmut_43": "n >= 1: for n == 1 the mean of no steps is NaN, and NaN > fraction is False",
        },
    ),
    "curation": Module(
        ("pipelines/curation.py",), ("tests/test_curation.py", "tests/test_curation_rules.py"),
        equivalent={
            "x_cross_store_duplicates__mutmut_9": "read_table(columns=None): every column is read, the rows carry "
                                                  "keys nobody looks at",
            "x_cross_store_duplicates__mutmut_11": "read_table without columns: the same as columns=None",
        },
    ),
    "manifest.weights": Module(
        ("pipelines/manifest/weights.py",), ("tests/test_manifest_weights.py",),
        equivalent={
            # equal weights of 2 instead of 1: shares are normalised, so every share is 1/n either way
            "x_episode_probabilities__mutmut_56":
                "raw = Fraction(2) per dataset: normalised to the same 1/n shares",
            # every row is in exactly one (dataset, embodiment) group, so every initial value is overwritten
            "x_episode_probabilities__mutmut_64":
                "probs initialised to 1 instead of 0: each row's entry is overwritten by its group's loop",
        },
    ),
    "manifest.sampler": Module(
        ("pipelines/manifest/sampler.py",), ("tests/test_manifest_sampler.py",),
        equivalent={
            # numpy's default dtypes on 64-bit Linux: Python floats -> float64, Python ints -> int64; the
            # probabilities and kept ranges come as Python numbers (the manifest table's float64 / int64 columns)
            "xǁManifestSamplerǁ__init____mutmut_4": "np.asarray(probabilities, dtype=None): float64 already",
            "xǁManifestSamplerǁ__init____mutmut_6": "np.asarray(probabilities) without dtype: float64 already",
            "xǁManifestSamplerǁ__init____mutmut_42": "kept ranges dtype=None: int64 already (an empty one has no frames to index)",
            "xǁManifestSamplerǁ__init____mutmut_44": "kept ranges without dtype: int64 already",
            "xǁManifestSamplerǁ__init____mutmut_46": "reshape(-2, 2): numpy reads any negative size as 'the rest', like -1",
            "xǁManifestSamplerǁ__init____mutmut_50": "lengths dtype=None: a list of Python ints is int64 already",
            "xǁManifestSamplerǁ__init____mutmut_52": "lengths without dtype: int64 already",
            "xǁManifestSamplerǁbatches__mutmut_41": "positions arange dtype=None: int64 already",
            "xǁManifestSamplerǁbatches__mutmut_44": "positions arange without dtype: int64 already",
            # draws u are in [0, 1): searchsorted(side='right') counts cdf entries <= u, and cdf[-1] (1.0, or the
            # mutants' 2.0 or NaN, which sorts last) is never <= u, so the index is at most len - 1 and the clip
            # never acts (both the cdf[-1] pin and the clip are guards against cumsum rounding)
            "xǁManifestSamplerǁ__init____mutmut_68": "cdf[-1] = NaN: above every draw, like 1.0",
            "xǁManifestSamplerǁ__init____mutmut_71": "cdf[-1] = 2.0: above every draw, like 1.0",
            "xǁManifestSamplerǁepoch__mutmut_6": "clip(max=None): the index never exceeds len - 1",
            "xǁManifestSamplerǁepoch__mutmut_16": "clip(max=len + 1): the index never exceeds len - 1",
            "xǁManifestSamplerǁepoch__mutmut_12": "searchsorted side='left': differs only for a draw exactly equal to a cdf "
                                   "entry (probability 2**-53 per draw)",
            # offsets as float: for x in [k, k + 1) and integer range ends, searchsorted and the int64 cast of
            # start + x - before give the same frame as with x = k
            "xǁManifestSamplerǁepoch__mutmut_19": "offsets.astype(None) (float): the same frame after the int64 assignment",
        },
    ),
    "episode_store.writer": Module(
        ("pipelines/episode_store/writer.py",), ("tests/test_episode_store.py",),
        equivalent={
            "x__jsonable__mutmut_12": "bytes.decode() without an encoding: UTF-8 is the default",
            "x__jsonable__mutmut_15": "decode('UTF-8'): the same codec as 'utf-8'",
            "x__write_camera__mutmut_16": "serializer dropped: zarr's default serializer for variable-length bytes is "
                                          "vlen-bytes (the reader's byte-range path, which checks the codec chain, "
                                          "is still taken)",
            "x__write_camera__mutmut_25": "out_hw initialised to '' instead of None: set by every frame, and an "
                                          "episode has frames (check_episode)",
            "x__write_camera__mutmut_102": "assert ... or ...: after written == n >= 1 both sizes are set",
            "x__write_group__mutmut_6": "open_group without mode='w': the default 'a' on the fresh private directory",
            "x__write_group__mutmut_49": "kind in 'XXUSXX': numpy dtype kinds are single letters and none is 'X'",
            "x__write_group__mutmut_64": "chunks (2,) for a 0-d extra: extras have n >= 1 rows (check_episode), so "
                                         "data.shape is never empty",
            "x__write_group__mutmut_76": "max(2, ...) workers: differs only with one camera, which is one task",
            "x_episode_attributes__mutmut_4": "duration also for one frame (n > 1 or True): t[-1] - t[0] is 0.0 then",
            "x_episode_attributes__mutmut_10": "duration also for one frame (n >= 1): t[-1] - t[0] is 0.0 then",
            "x_pack_directory__mutmut_17": "ZipFile without compression=: ZIP_STORED is the default (and every "
                                           "member sets it)",
            "x_pack_directory__mutmut_18": "ZipFile without allowZip64=True: True is the default",
            "x_pack_directory__mutmut_26": "ZipInfo without date_time: (1980, 1, 1, 0, 0, 0) is the default",
            "x_pack_directory__mutmut_5[03456]": "copyfileobj's buffer size (None, 0, default, 2 MiB): the same bytes",
            "x_write_episode__mutmut_18": "9 hex digits in the private temporary folder's name instead of 8",
            "x_write_episode__mutmut_2[34]": "another name of the group folder inside the private temporary folder",
            "x_write_episode__mutmut_3[78]": "another name of the packed file inside the private temporary folder",
        },
    ),
    "episode_store.reader": Module(
        ("pipelines/episode_store/reader.py",), ("tests/test_episode_store.py",),
        equivalent={
            # _unwrap gets one-element arrays (a one-frame slice) or bytes: any reshape to 1-D gives the same item
            "x__unwrap__mutmut_[456]": "reshape(None / +1 / -2) of a one-element array: the same item",
            "xǁEpisodeReaderǁ_array__mutmut_33": "np.prod(dtype=None): int64 already (64-bit Linux)",
            "xǁEpisodeReaderǁ_array__mutmut_35": "np.prod without dtype: int64 already",
            "xǁEpisodeReaderǁ_array__mutmut_8": "the chunk key of a 0-d array: the writer writes none (extras have a "
                                                "row per frame), and a missed key falls back to zarr, same values",
            "xǁEpisodeReaderǁencoded_frame__mutmut_12": "zarr slice index : index + 2: its first item is the same frame",
            "xǁEpisodeReaderǁencoded_frames__mutmut_2": "block of 65 frames instead of 64: only how reads are grouped",
            "xǁEpisodeReaderǁencoded_frames__mutmut_15": "reshape(None) of the 1-D block: the same items",
            "xǁEpisodeReaderǁencoded_frames__mutmut_26": "reshape(-2): numpy reads any negative size as -1",
            "xǁEpisodeReaderǁencoded_frames__mutmut_1[79]": "np.asarray without dtype=object: zarr returns variable-"
                                                            "length bytes as an object array already",
            "xǁEpisodeReaderǁ_json__mutmut_[12]": "the member's bytes not read directly: the zipfile fallback reads the "
                                                   "same member (slower, same document)",
            "xǁEpisodeReaderǁ_locate__mutmut_30": "'<hh' for the name and extra lengths: both are far below 32 KiB",
            "xǁFrameRangesǁread__mutmut_22": "'<ii' for the item count and length: a frame is far below 2 GiB",
            "xǁEpisodeStoreǁcreate__mutmut_15": "'.TMP' for the marker's temporary name",
            "xǁEpisodeStoreǁcreate__mutmut_19": "marker JSON without indentation: the same document",
            "xǁEpisodeStoreǁcreate__mutmut_2[16]": "marker JSON indented otherwise: the same document",
            "xǁEpisodeStoreǁepisode_files__mutmut_4": "globbing a missing episodes/ folder: empty, like the else",
        },
    ),
    "episode_store.validator": Module(
        ("pipelines/episode_store/validator.py",), ("tests/test_validator.py", "tests/test_episode_store.py"),
        equivalent={
            # encoded_frames(block=) only groups the reads: every block yields its frames in order
            "x__check_camera__mutmut_67": "encoded_frames without block=256: the reader's default 64 frames a read, "
                                          "the same frames in the same order",
            "x__check_camera__mutmut_69": "encoded_frames(block=257): reads of 257 frames, the same frames in the same "
                                          "order",
            # ok is only ever tested for truth (the content digest's guard, the episode's return value)
            "x__check_episode__mutmut_299": "ok = None for unordered timestamps: falsy like False, and nothing sets "
                                            "it back",
        },
    ),
    # the filtered-quantile early-exit thresholds live in training/exits.py; calibrate.py runs them
    "training.exits": Module(
        ("training/exits.py",), ("tests/test_early_exit.py",),
        equivalent={
            # float32 values compare and select exactly as their float64 copies; lists of Python floats are float64
            "x_assign__mutmut_[35]": "values not cast to float64: float32 -> float64 is exact, the same comparisons",
            "x_assign__mutmut_9": "eta without dtype: a list of Python floats (or float64 array) is float64 already",
            "x_assign__mutmut_11": "eta without dtype: a list of Python floats (or float64 array) is float64 already",
            "x_thresholds__mutmut_[35]": "values not cast to float64: a float32 threshold widens exactly into the "
                                         "float64 eta, and every comparison gives the same answer",
            "x_thresholds__mutmut_9": "p without dtype: target fractions are Python floats or a float64 array",
            "x_thresholds__mutmut_11": "p without dtype: target fractions are Python floats or a float64 array",
            "x_thresholds_loop__mutmut_[35]": "values not cast to float64: as in thresholds",
            "x_thresholds_loop__mutmut_2[579]": "argsort kind: among tied samples another is counted first, but "
                                                "eta takes their common value",
            "x_expected_cost__mutmut_[35]": "costs without dtype: Python floats are float64 (ints give the same mean)",
            "x_discrepancy__mutmut_2": "the mask left bool: a product with it and the integer count give the same "
                                       "floats (float32 actions, as calibration passes them)",
            "x_exit_distribution__mutmut_5[47]": "integer exit numbers: the log-pdf promotes them to float64, the "
                                                 "same values",
            "x_exit_distribution__mutmut_67": "astype(None) is astype(float64)",
            # bisection bookkeeping no input can observe
            "x_solve_budget__mutmut_40": "201 steps instead of 200: the interval closes in about 45 (a ratio of "
                                         "1e8 halved in log space to 1e-12; 9 halved to 1e-12 for gauss)",
            "x_solve_budget__mutmut_68": "cost <= target for cost < target: a cost equal to the target is within "
                                         "any tolerance >= 0 and has ended the search before this line",
            "x_solve_budget__mutmut_77": "b / a <= 1 + 1e-12: one more step when the ratio is exactly there; the c "
                                         "it tries is within 1e-12 relative of the last",
            "x_solve_budget__mutmut_86": "b - a <= 1e-12: one more step when the width is exactly 1e-12; the c it "
                                         "tries is within 1e-12 of the last",
        },
    ),
    "training.data": Module(
        tuple(f"training/data/{n}.py" for n in ("dataset", "images", "layouts", "loader", "normalize", "spec")),
        ("tests/test_training_data.py",),
        equivalent={
            # np.full(shape, None, dtype=float32) fills with NaN, like np.nan
            "xǁVectorLayoutǁunpack__mutmut_8": "fill None instead of np.nan: float32 None is NaN",
            "xǁEmbodimentCodecǁdecode_actions__mutmut_15": "fill None instead of np.nan: float32 None is NaN",
            "xǁVectorLayoutǁunpack__mutmut_[35]": "packed not cast to float32 first: the float32 output rounds the "
                                                  "same float64 values",
            "xǁFieldStatsǁselect__mutmut_8": "take indices without dtype=int64: int64 already",
            "xǁFieldStatsǁselect__mutmut_10": "take indices without dtype=int64: int64 already",
            # normalize and unnormalize return before _params in mode "none": its else branch is unreachable
            "xǁNormalizerǁ_params__mutmut_4[345]": "the 'none' branch of _params: callers return before it",
            # FieldStats hold float64 (from_json casts), so offset and scale are float64 already
            "xǁNormalizerǁ_params__mutmut_4[78]": "astype(None): the statistics are float64 already",
            # float32 values times the float64 scale promote to float64 anyway (lists are float64)
            "xǁNormalizerǁunnormalize__mutmut_28": "values not cast to float64: numpy promotes to float64 anyway",
            "xǁNormalizerǁunnormalize__mutmut_30": "values not cast to float64: numpy promotes to float64 anyway",
        },
    ),
    "converters.base": Module(
        ("converters/base.py",), ("tests/test_converter_options.py", "tests/test_converter_conformance.py"),
        equivalent={
            # a union's members are tried only when some member is of the value's kind (candidates is not
            # empty), so the loop sets first_error at the first refusal: any falsy start is replaced
            "x_check_value__mutmut_49": "first_error = '' instead of None: falsy, replaced by the first refusal",
            "xǁSourceCardǁload__mutmut_7": "read_text(encoding='UTF-8'): the same codec as 'utf-8'",
            "xǁSourceCardǁload__mutmut_5": "read_text(encoding=None): the locale's, UTF-8 here (C.UTF-8, and Python "
                                           "coerces the C locale to UTF-8); a test process cannot set another",
        },
    ),
    "converters.agibot": Module(
        ("converters/agibot.py",), ("tests/test_agibot_converter.py",),
        equivalent={
            # the lease closes every handle it still holds when the episode's context exits: a released (already
            # closed) handle left in its set is closed again, which does nothing to a closed file
            "xǁ_Leaseǁrelease__mutmut_1": "discard(None): the released handle stays in the set until the context "
                                          "exits, and closing it again does nothing",
            # '.' is neither numeric nor an observation subfolder, and both member parsers match from a numeric part
            "x__member_parts__mutmut_2": "a leading './' kept: its '.' part is never numeric nor a subfolder, so "
                                         "every member parses the same",
            "x__probe_video__mutmut_27": "alignment 'XXXX': its only caller, _cameras, replaces it with 'index' or "
                                         "'nearest_timestamp' before use",
            "xǁAgibotConverterǁ_shard_episodes__mutmut_10": "counts = None at first: item() runs only for a current "
                                                            "episode, whose first member rebinds counts to {} (and "
                                                            "_TarFiles takes None as {})",
            "xǁAgibotConverterǁ_task_records__mutmut_11": "popitem(last=None): OrderedDict reads last as a bool, "
                                                          "None is False, so the oldest entry is evicted all the same",
            "xǁAgibotConverterǁ_task_records__mutmut_6": "_load_task_info(task, None): it never uses its ref (its "
                                                         "errors name the file; _task_records prefixes the ref)",
            "xǁ_SidecarIndexǁ__init____mutmut_4": "glob('*.tar') also when the section is no directory: a missing "
                                                  "or non-directory path globs to nothing, the same []",
            "xǁ_SidecarIndexǁ_scan__mutmut_27": "array('Q') for member sizes: _iter_tar refuses a negative size as "
                                                "damage, so the same non-negative values in the same 8 bytes",
            "x__action_field__mutmut_65": "np.ones(n) as float for a full field's mask: its only use is "
                                          "np.stack(commanded).astype(uint8), the same 1s",
            "x__probe_video__mutmut_18": "alignment None: its only caller, _cameras, replaces it with 'index' or "
                                         "'nearest_timestamp' before use",
        },
    ),
    "converters.droid": Module(
        ("converters/droid.py",), ("tests/test_droid_converter.py",),
        equivalent={
            "x__jsonable_value__mutmut_10": "kind in 'XXSOXX': numpy dtype kinds are single letters, none is 'X'",
            "x__raw_timestamps__mutmut_30": "np.arange(n) without dtype=float64: divided by the float CONTROL_HZ, the "
                                            "same float64 values",
            # every camera's RLDS key is 'observation/<name>', with one '/'
            "xǁRldsReleaseǁ__init____mutmut_46": "split('/') without maxsplit: the key has one '/', the same [1]",
            "xǁRldsReleaseǁ__init____mutmut_47": "rsplit('/', 1): the key has one '/', the same [1]",
            "xǁDroidConverterǁ_rlds_episode__mutmut_142": "np.arange(num_frames) without dtype=float64: divided by "
                                                          "the float CONTROL_HZ, the same float64 values",
            # _fields raised empty_episode for 0 steps and _check_rows holds every language stream to num_frames
            "xǁDroidConverterǁ_rlds_episode__mutmut_65": "'XXXX' for a language stream with no steps: it always has "
                                                         "num_frames > 0 of them",
            "xǁDroidConverterǁ_rlds_episode__mutmut_63": "decoded[0] also for a language stream with no steps: it "
                                                         "always has num_frames > 0 of them",
            "xǁDroidConverterǁ_rlds_episode__mutmut_109": "'XXXX' for a record without file_path: like '', it names "
                                                          "no success/failure folder, so success is None either way",
            "x__matrix__mutmut_26": "astype(None): NumPy's default dtype is float64, the same array",
            # folder = root / <4 parts> has parents[3] == root: the base is root whether 4 parts count or not
            "xǁDroidConverterǁ_raw_language__mutmut_18": "parts >= 5: a folder 4 parts below root has root as "
                                                        "parents[3], the same base",
            "x__video_stream__mutmut_8": "threads=3 instead of 2: the decoder's thread count changes speed, not the "
                                         "frames decoded",
        },
    ),
    "converters.gm100": Module(
        ("converters/gm100.py",), ("tests/test_gm100_converter.py",),
        equivalent={
            # LeRobotConverter.open_episode calls embodiment_for (platform_for with the episode's ref) before
            # language_for on the same dataset: a platform_for that fails has failed there already
            "xǁGM100Converterǁlanguage_for__mutmut_13": "platform_for(ds, None) in language_for: it cannot fail "
                                                         "there, so the ref is never used",
            "xǁGM100Converterǁ_load_task_texts__mutmut_6": "root / path also for an absolute path: pathlib gives the "
                                                           "absolute path itself",
            "xǁGM100Converterǁ_load_task_texts__mutmut_13": "read_text(encoding='UTF-8'): the same codec as 'utf-8'",
        },
    ),
    "converters.inhouse": Module(
        ("converters/inhouse.py",), ("tests/test_inhouse_converter.py",),
        equivalent={
            # discovery sorts (folder, key, ref): a non-numeric number needs only to sort after (0, n, name)
            "x__natural_key__mutmut_9": "(2, 0, name) for a non-numeric number: still after every (0, n, name)",
            "x__natural_key__mutmut_10": "(1, 1, name) for a non-numeric number: still after every (0, n, name)",
            # _image_layout admits only uint8 rows (a [T, L] uint8 dataset, or vlen uint8), so the cast does nothing
            "x__decode_row__mutmut_1[46]": "np.asarray(row) without dtype=uint8: the row is uint8 already",
            "x__attr_bool__mutmut_8": "decode('UTF-8'): the same codec as 'utf-8'",
            "xǁTaskMetadataǁfrom_file__mutmut_9": "read_text(encoding='UTF-8'): the same codec as 'utf-8'",
            "xǁTaskMetadataǁfrom_file__mutmut_7": "read_text(encoding=None): the locale's, UTF-8 here (C.UTF-8, and "
                                                  "Python coerces the C locale to UTF-8); a test process cannot set "
                                                  "another",
            "xǁInhouseConverterǁ_compress_len__mutmut_5": "_dataset(required=None): falsy, like False",
            "xǁInhouseConverterǁ_timestamps__mutmut_5": "_dataset(required=None): falsy, like False",
            "xǁInhouseConverterǁ_build_episode__mutmut_65": "_read_matrix(required=None) for qvel / effort: falsy, "
                                                            "like False",
            "xǁInhouseConverterǁ_timestamps__mutmut_1[46]": "np.arange(n) without dtype=float64: divided by the "
                                                            "float fps, the same float64 values",
            # the lengths end as int64 (and _decode_row takes int() of each): a float64 step changes no length a
            # row can hold
            "xǁInhouseConverterǁ_compress_len__mutmut_39": "lengths read without dtype=float64: the same int64 values",
            "xǁInhouseConverterǁ_compress_len__mutmut_41": "lengths read without dtype=float64: the same int64 values",
            "xǁInhouseConverterǁ_compress_len__mutmut_49": "lengths left float64: _decode_row takes int() of each",
        },
    ),
    "converters.robochallenge": Module(
        ("converters/robochallenge.py",), ("tests/test_robochallenge_converter.py",),
        equivalent={
            # discovery sorts (task, key, ref): a non-numeric suffix needs only to sort after (0, n, name)
            "x__natural_key__mutmut_9": "(2, 0, name) for a non-numeric suffix: still after every (0, n, name)",
            "x__natural_key__mutmut_10": "(1, 1, name) for a non-numeric suffix: still after every (0, n, name)",
            "x__timestamp_unit__mutmut_9": "magnitude 1.0 instead of 0.0 when no timestamp is finite: both below "
                                           "1e11, so 's'",
            # _values fills the rows with Python floats (JSON null as NaN): numpy makes float64 of them anyway
            "x__matrix__mutmut_[68]": "np.asarray(rows) without dtype=float64: float64 already",
            "x__read_json__mutmut_4": "read_text(encoding='UTF-8'): the same codec as 'utf-8'",
            "x__read_json__mutmut_2": "read_text(encoding=None): the locale's, UTF-8 here (C.UTF-8, and Python "
                                      "coerces the C locale to UTF-8); a test process cannot set another",
            "x__iter_jsonl__mutmut_41": "decode('UTF-8'): the same codec as 'utf-8'",
            # extra != 0 is tested first, so for the rest 0 <= extra is 0 < extra
            "xǁRoboChallengeConverterǁ_cameras__mutmut_67": "0 <= extra <= tolerance: extra != 0 already",
            "xǁRoboChallengeConverterǁ_cameras__mutmut_76": "tolerance note for extra >= 0: the message is built "
                                                           "only for extra != 0",
            # keep == num_frames - 1 in this branch: state[1 : keep + 2] ends past the array, like keep + 1
            "xǁRoboChallengeConverterǁ_build__mutmut_325": "last_frame drop: state[1 : keep + 2] is state[1:]",
            "xǁRoboChallengeConverterǁ_build__mutmut_361": "timestamp_origin left out: Episode's default is RECORDED",
        },
    ),
    "converters.robocoin": Module(
        ("converters/robocoin.py",), ("tests/test_robocoin_converter.py",),
        equivalent={
            "x__jsonl__mutmut_5": "read_text(encoding='UTF-8'): the same codec as 'utf-8'",
            "x__jsonl__mutmut_3": "read_text(encoding=None): the locale's, UTF-8 here (C.UTF-8, and Python coerces "
                                  "the C locale to UTF-8); a test process cannot set another",
            "x_frame_subtasks__mutmut_9": "reshape(len, -2): numpy reads any negative size as 'the rest', like -1",
            # a name that is one maker token alone ('agilex') also gets the spelling '' (folder '_'): no
            # ROBOT_TYPES key is '' and no NAME_PREFIXES row starts '_'; the option rows match the name itself
            "x__spellings__mutmut_9": "maker skipped down to no token: the extra spelling '' matches no row",
            # option rows matching one name all start it, so each is a prefix of the other: reverse lexicographic
            # order puts the longer first, as reverse length order does
            "xǁRoboCOINConverterǁembodiment_for__mutmut_20": "option prefixes sorted without key=len (reverse): the "
                                                             "longer of two matching prefixes still first",
            "xǁRoboCOINConverterǁembodiment_for__mutmut_23": "option prefixes sorted without key (reverse): the "
                                                             "longer of two matching prefixes still first",
            "xǁRoboCOINConverterǁembodiment_for__mutmut_36": "NAME_PREFIXES sorted without key=len (reverse): no row "
                                                             "is a prefix of another, so at most one matches",
            "xǁRoboCOINConverterǁembodiment_for__mutmut_39": "NAME_PREFIXES sorted without key (reverse): no row is a "
                                                             "prefix of another, so at most one matches",
            "xǁRoboCOINConverterǁembodiment_for__mutmut_40": "NAME_PREFIXES shortest first: no row is a prefix of "
                                                             "another, so at most one matches a folder",
            "xǁRoboCOINConverterǁembodiment_for__mutmut_41": "NAME_PREFIXES shortest first (reverse=False): no row is a "
                                                             "prefix of another, so at most one matches a folder",
            "xǁRoboCOINConverterǁembodiment_for__mutmut_31": "prefix.rstrip('XX_XX'): option keys are lower-cased "
                                                             "(_norm), so only the '_' is stripped, as before",
            # language_for always puts a 'robocoin' record into the metadata that reaches finish
            "xǁRoboCOINConverterǁfinish__mutmut_3": "setdefault('robocoin', None): the record is always there",
            "xǁRoboCOINConverterǁfinish__mutmut_5": "setdefault('robocoin') without a default: the record is always "
                                                    "there",
            "xǁRoboCOINConverterǁextra_metadata__mutmut_25": "an empty 'robocoin_annotations' also returned: finish "
                                                             "pops it and merges nothing",
        },
    ),
    "converters.robomind": Module(
        ("converters/robomind.py",), ("tests/test_robomind_converter.py",),
        equivalent={
            # the span of one frame is np.ptp over one row, 0.0, and the stuck flag needs num_frames > 1 anyway
            "xǁRoboMindConverterǁ_build__mutmut_143": "ee span computed also for one frame: ptp of one row is 0.0",
            "x__load_annotations__mutmut_5": "read_text(encoding='UTF-8-SIG'): the same codec as 'utf-8-sig'",
            "x__read_parts__mutmut_68": "np.concatenate also of one column: the same float32 values and shape",
        },
    ),
}

# mutmut's exit codes per mutant (mutmut/__main__.py status_by_exit_code), as counted here
COUNTED = {"killed", "survived", "timeout", "segfault", "suspicious", "no tests", "caught by type check"}


def mutant_prefix(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def _configure(name: str, keep: bool) -> None:
    """mutmut's settings for one module, from a fresh ``mutants/`` copy unless ``keep``."""
    module = MODULES[name]
    os.chdir(ROOT)
    if not keep and (ROOT / "mutants").exists():
        shutil.rmtree(ROOT / "mutants")
    import mutmut.configuration as configuration

    config = configuration._load_config()
    config.only_mutate = list(module.sources)
    config.pytest_add_cli_args_test_selection = list(module.tests)
    # the tests that build sample data last (benchmarks/mutation_order.py): a fast test kills sooner
    config.pytest_add_cli_args = [*config.pytest_add_cli_args, "-p", "benchmarks.mutation_order"]
    configuration._config = config


def generate(name: str) -> list[str]:
    """Every mutant name of the module, generated into a fresh ``mutants/`` without running a test
    (the steps ``mutmut run`` takes before its stats collection)."""
    import mutmut.__main__ as mm

    _configure(name, keep=False)
    mm.set_mutant_under_test("mutant_generation")
    os.makedirs(ROOT / "mutants", exist_ok=True)
    mm.copy_src_dir()
    mm.copy_also_copy_files()
    mm.setup_source_paths()
    mm.store_lines_covered_by_tests()
    mm.create_mutants(1)
    names: list[str] = []
    for source in MODULES[name].sources:
        data = mm.SourceFileMutationData(path=Path(source))
        data.load()
        names += data.exit_code_by_key
    return sorted(names)


def draw(names: list[str], size: int, seed: int) -> list[str]:
    """A simple random sample of ``size`` mutant names (all of them when there are no more)."""
    if size < 1:
        raise ValueError(f"a sample needs at least one mutant, got {size}")
    return sorted(random.Random(seed).sample(sorted(names), min(size, len(names))))


def wilson(killed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a kill rate measured on a sample of ``total`` mutants."""
    if total == 0:
        return (0.0, 1.0)
    p = killed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (max(0.0, centre - half), min(1.0, centre + half))


def run(name: str, mutants: list[str] | None, max_children: int | None, keep: bool) -> dict:
    _configure(name, keep)
    module = MODULES[name]
    from mutmut.__main__ import cli

    args = ["run", *(mutants or [f"{mutant_prefix(s)}*" for s in module.sources])]
    if max_children:
        args += ["--max-children", str(max_children)]
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as e:  # mutmut exits on a failing clean run
        if e.code:
            raise
    return summarise(name)


def summarise(name: str, only: list[str] | None = None) -> dict:
    """The counts of the module's results in ``mutants/`` (of the mutants in ``only``, a sample, if given)."""
    from mutmut.__main__ import SourceFileMutationData, status_by_exit_code

    module = MODULES[name]
    statuses: dict[str, str] = {}
    for source in module.sources:
        data = SourceFileMutationData(path=Path(source))
        data.load()
        statuses.update({k: status_by_exit_code[v] for k, v in data.exit_code_by_key.items()})
    if only is not None:
        wanted = set(only)
        statuses = {k: v for k, v in statuses.items() if k in wanted}
    prefixes = [f"{mutant_prefix(s)}." for s in module.sources]

    def short(name: str) -> str:
        return next((name.removeprefix(p) for p in prefixes if name.startswith(p)), name)

    equivalent = {k for k in statuses if any(fnmatch.fnmatch(short(k), g) for g in module.equivalent)}
    counted = {k: s for k, s in statuses.items() if k not in equivalent and s in COUNTED}
    killed = sum(s in ("killed", "timeout", "caught by type check") for s in counted.values())
    survived = sorted(k for k, s in counted.items() if s == "survived")
    other = sorted(f"{k}: {s}" for k, s in counted.items() if s not in ("killed", "timeout", "caught by type check",
                                                                      "survived"))
    total = len(counted)
    out = {"module": name, "mutants": len(statuses), "equivalent_excluded": len(equivalent), "total": total,
           "killed": killed, "survived": len(survived), "other": other,
           "kill_rate": round(killed / total, 4) if total else None, "survivors": survived,
           "not_run": sorted(k for k, s in statuses.items() if s not in COUNTED and k not in equivalent)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", nargs="?", help=f"one of: {', '.join(MODULES)}")
    ap.add_argument("--list", action="store_true", help="print the module table and exit")
    ap.add_argument("--mutants", nargs="*", help="mutant names or globs (default: all of the module)")
    ap.add_argument("--max-children", type=int, help="parallel mutant workers (mutmut's default: all cores)")
    ap.add_argument("--keep", action="store_true", help="reuse mutants/ from the previous run")
    ap.add_argument("--summary-only", action="store_true", help="count the results in mutants/ without running")
    ap.add_argument("--sample", type=int, help="run a simple random sample of this many of the module's mutants")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed (the same seed draws the same mutants)")
    a = ap.parse_args()
    if a.list or not a.module:
        for n, m in MODULES.items():
            print(f"{n:26} {' '.join(m.sources)}  <-  {' '.join(m.tests)}")
        return 0
    if a.module not in MODULES:
        ap.error(f"unknown module {a.module!r}; one of {', '.join(MODULES)}")
    if a.sample is not None and (a.mutants or a.summary_only):
        ap.error("--sample draws its own mutants: not with --mutants or --summary-only")
    if a.summary_only:
        result = summarise(a.module)
    elif a.sample is not None:
        everything = generate(a.module)
        sample = draw(everything, a.sample, a.seed)
        run(a.module, sample, a.max_children, keep=True)
        result = summarise(a.module, only=sample)
        low, high = wilson(result["killed"], result["total"])
        result["sample"] = {"size": len(sample), "of": len(everything), "seed": a.seed,
                            "kill_rate_95": [round(low, 4), round(high, 4)]}
    else:
        result = run(a.module, a.mutants, a.max_children, a.keep)
    out = ROOT / "benchmarks" / "out" / "mutation"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.module}.json").write_text(json.dumps(result, indent=1) + "\n")
    rate = "-" if result["kill_rate"] is None else f"{100 * result['kill_rate']:.1f} %"
    if "sample" in result:
        low, high = result["sample"]["kill_rate_95"]
        rate += (f" (95 % interval {100 * low:.1f}-{100 * high:.1f} %, a sample of {result['sample']['size']} "
                 f"of {result['sample']['of']} mutants, seed {a.seed})")
    print(f"\n{a.module}: {result['killed']} killed, {result['survived']} survived, {result['total']} total "
          f"({result['equivalent_excluded']} equivalent excluded): kill rate {rate}")
    for s in result["survivors"]:
        print("  survived:", s)
    for s in result["other"]:
        print("  ", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
