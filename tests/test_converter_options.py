"""The one validator of converter options (``converters.base.parse_options``): each rule it applies, at
its edges, and every registered converter declaring its options through it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

import pytest

from converters import available_sources, get_converter
from converters.base import NoOptions, Rule, check_value, option, parse_options

Name = Annotated[str, Rule(nonempty=True)]


@dataclass(frozen=True)
class Example:
    count: int = option(1, ge=1, le=8)
    rate: float = option(30.0, gt=0, lt=math.inf)
    enabled: bool = True
    label: str | None = None
    version: str | None = option(None, pattern=r"\d+\.\d+")
    mode: Literal["fast", "exact"] = "fast"
    unit: str = option("s", choices=("s", "ms"))
    shape: tuple[Annotated[int, Rule(gt=0)], Annotated[int, Rule(gt=0)]] | None = None
    names: tuple[Name, ...] = ()
    table: dict[str, Annotated[tuple[Name, ...], Rule(nonempty=True)]] | None = None
    rate_or_table: float | dict[str, float] | None = None


def parse(**given):
    return parse_options(Example, given, source="lab")


def refused(match: str, **given) -> str:
    with pytest.raises(ValueError, match=match) as err:
        parse(**given)
    message = str(err.value)
    assert message.startswith("lab: "), message  # every refusal names the source
    return message


def test_nothing_given_is_the_defaults():
    assert parse() == Example() == parse_options(Example, None, source="lab")


def test_an_unknown_key_is_refused_with_the_known_ones():
    message = refused("unknown option", cuont=2)
    assert "['cuont']" in message and "'count'" in message and "'rate_or_table'" in message
    with pytest.raises(ValueError, match="lab: unknown option"):
        parse_options(NoOptions, {"anything": 1}, source="lab")
    with pytest.raises(ValueError, match="must be a mapping"):
        parse_options(Example, [("count", 2)], source="lab")


def test_a_wrong_type_names_the_key_what_it_must_be_and_the_value():
    assert refused("count", count="3") == "lab: option count must be an integer >= 1 and <= 8, got '3'"
    refused("option label must be a string or null, got 3", label=3)
    refused("option enabled must be true or false, got 'yes'", enabled="yes")
    refused("option enabled must be true or false, got 1", enabled=1)


def test_bool_is_not_a_number_but_an_int_is_a_float():
    refused("option count must be an integer", count=True)
    refused("option rate must be a number", rate=False)
    got = parse(rate=25)
    assert got.rate == 25.0 and type(got.rate) is float


def test_none_only_where_the_annotation_allows_it():
    assert parse(label=None).label is None
    assert parse(version=None).version is None  # a field's rule applies to the value, not to "not set"
    refused("option count must be an integer", count=None)
    refused("option names must be a list", names=None)


def test_lists_and_tuples_become_tuples_of_checked_items():
    assert parse(names=["a", "b"]).names == ("a", "b")
    assert parse(names=("a",)).names == ("a",)
    assert parse(shape=[480, 640]).shape == (480, 640)
    refused(r"option names\[1\] must be a non-empty string, got ' '", names=["a", " "])
    refused(r"option shape must be a list of 2 \[an integer > 0, an integer > 0\]", shape=[480])
    refused(r"option shape\[1\] must be an integer > 0, got 0", shape=[480, 0])
    refused("option names must be a list", names="ab")  # a string is not a list of names


def test_mappings_check_their_keys_and_values():
    assert parse(table={"gripper": ["head"]}).table == {"gripper": ("head",)}
    refused(r"option table\['gripper'\] must be a non-empty list \[a non-empty string, \.\.\.\], got \[\]",
            table={"gripper": []})
    refused("option table key 3 must be a string, got 3", table={3: ["head"]})
    refused("option table must be a mapping", table=["head"])


def test_literal_and_choices():
    assert parse(mode="exact").mode == "exact" and parse(unit="ms").unit == "ms"
    refused("option mode must be one of 'fast', 'exact', got 'slow'", mode="slow")
    refused("option unit must be one of 's', 'ms', got 'us'", unit="us")


@pytest.mark.parametrize("key, edge, past", [("count", 1, 0), ("count", 8, 9)])
def test_an_inclusive_bound_holds_at_the_edge_and_fails_one_past_it(key, edge, past):
    assert getattr(parse(**{key: edge}), key) == edge
    refused(f"option {key} must be an integer >= 1 and <= 8, got {past}", **{key: past})


def test_an_exclusive_bound_fails_at_the_edge_and_nan_fails_every_bound():
    assert parse(rate=1e-9).rate == 1e-9
    refused("option rate must be a number > 0 and < inf, got 0", rate=0)
    refused("got inf", rate=math.inf)
    refused("got nan", rate=math.nan)


def test_pattern_is_matched_in_full():
    assert parse(version="1.0").version == "1.0"
    message = refused("option version", version="1.0.1")
    assert message == r"lab: option version must be a string matching the pattern \d+\.\d+, got '1.0.1'"


def test_a_union_checks_the_member_of_the_value_s_kind():
    assert parse(rate_or_table=30).rate_or_table == 30.0
    assert parse(rate_or_table={"arm": 10}).rate_or_table == {"arm": 10.0}
    refused(r"option rate_or_table\['arm'\] must be a number, got 'x'", rate_or_table={"arm": "x"})
    refused("option rate_or_table must be a number or a mapping", rate_or_table="30")


def test_a_post_init_rule_is_named_with_the_source():
    @dataclass(frozen=True)
    class Paired:
        low: int = 0
        high: int = 1

        def __post_init__(self):
            if self.low >= self.high:
                raise ValueError(f"option low ({self.low}) must be below high ({self.high})")

    assert parse_options(Paired, {"high": 5}, source="lab") == Paired(0, 5)
    with pytest.raises(ValueError, match=r"^lab: option low \(3\) must be below high \(1\)$"):
        parse_options(Paired, {"low": 3}, source="lab")


def test_a_declaration_the_validator_cannot_check_fails_on_first_use():
    @dataclass(frozen=True)
    class Listy:
        items: list[int] = dataclasses.field(default_factory=list)

    @dataclass
    class Mutable:
        count: int = 1

    with pytest.raises(TypeError, match="not one the options validator understands"):
        parse_options(Listy, {}, source="lab")
    with pytest.raises(TypeError, match="frozen dataclass"):
        parse_options(Mutable, {}, source="lab")


def test_check_value_holds_data_from_a_file_to_the_same_rules():
    texts = dict[str, Name]
    assert check_value(texts, {"a": "x"}, "table.json") == {"a": "x"}
    with pytest.raises(ValueError, match=r"^table.json\['a'\] must be a non-empty string, got ''$"):
        check_value(texts, {"a": ""}, "table.json")


@pytest.mark.parametrize("source", available_sources())
def test_every_converter_declares_its_options_for_the_validator(source):
    """Its defaults satisfy its own declaration, and a key it lacks is refused with its name."""
    cls = get_converter(source)
    defaults = cls.options_type()
    given = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    assert parse_options(cls.options_type, given, source=source) == defaults
    with pytest.raises(ValueError, match=f"^{source}: unknown option"):
        cls("/nonexistent", {"no_such_option": 1})


def test_an_option_declares_its_default_its_factory_and_its_rule():
    """``option(d, **rule)`` is a field whose default is ``d`` (or ``default_factory()``) and whose rule is
    checked: the declaration itself, made at run time, not only the classes made at import."""

    @dataclass(frozen=True)
    class Declared:
        count: int = option(3, ge=1)
        names: tuple[str, ...] = option(default_factory=lambda: ("head",), nonempty=True)

    assert Declared() == Declared(3, ("head",)) and Declared().count == 3 and Declared().names == ("head",)
    assert parse_options(Declared, {"count": 1, "names": ["a"]}, source="lab") == Declared(1, ("a",))
    with pytest.raises(ValueError, match=r"^lab: option count must be an integer >= 1, got 0$"):
        parse_options(Declared, {"count": 0}, source="lab")
    with pytest.raises(ValueError, match=r"^lab: option names must be a non-empty list \[a string, \.\.\.\], got \[\]$"):
        parse_options(Declared, {"names": []}, source="lab")


def test_a_rule_on_a_union_with_none_holds_for_each_member_and_leaves_none_allowed():
    """``X | Y | None = option(None, **rule)``: the rule is on ``X | Y`` (typing's ``Optional`` spelling too),
    a value of either member is checked against it (the message names the rule), one of neither member is
    refused with the whole annotation, and None stays "not set"."""

    @dataclass(frozen=True)
    class Sized:
        size: int | str | None = option(None, choices=(8, "auto"))
        other: Optional[Union[int, str]] = option(None, choices=(8, "auto"))
        label: Optional[str] = option(None, nonempty=True)

    for key in ("size", "other"):
        assert getattr(parse_options(Sized, {key: 8}, source="lab"), key) == 8
        assert getattr(parse_options(Sized, {key: "auto"}, source="lab"), key) == "auto"
        assert getattr(parse_options(Sized, {key: None}, source="lab"), key) is None
        with pytest.raises(ValueError, match=rf"^lab: option {key} must be one of 8, 'auto', got 'x'$"):
            parse_options(Sized, {key: "x"}, source="lab")
        with pytest.raises(ValueError, match=rf"^lab: option {key} must be one of 8, 'auto' or null, got 1.5$"):
            parse_options(Sized, {key: 1.5}, source="lab")
    assert parse_options(Sized, {"label": None}, source="lab").label is None
    with pytest.raises(ValueError, match=r"^lab: option label must be a non-empty string, got ' '$"):
        parse_options(Sized, {"label": " "}, source="lab")


def test_an_item_s_refusal_inside_a_ruled_container_names_its_full_path():
    refused(r"^lab: option table\['gripper'\]\[0\] must be a non-empty string, got ''$", table={"gripper": [""]})
    refused(r"^lab: option table\['gripper'\]\[1\] must be a non-empty string, got 3$", table={"gripper": ["a", 3]})


def test_a_fixed_length_list_of_the_wrong_length_is_refused_with_the_value_given():
    refused(r"^lab: option shape must be a list of 2 \[an integer > 0, an integer > 0\], got \[480\]$", shape=[480])
    refused(r"^lab: option shape must be a list of 2 \[an integer > 0, an integer > 0\], got \[1, 2, 3\]$",
            shape=[1, 2, 3])


def test_messages_describe_mappings_unions_and_scalars_in_full():
    refused(r"^lab: option rate_or_table must be a number or a mapping \{a string: a number\} or null, got '30'$",
            rate_or_table="30")
    refused(r"^lab: option table must be a mapping \{a string: a non-empty list \[a non-empty string, \.\.\.\]\} or "
            r"null, got \['head'\]$", table=["head"])
    refused(r"^lab: option names must be a list \[a non-empty string, \.\.\.\], got 'ab'$", names="ab")
    refused(r"^lab: option mode must be one of 'fast', 'exact', got 'slow'$", mode="slow")
    refused(r"^lab: option enabled must be true or false, got None$", enabled=None)
    refused(r"^lab: option label must be a string or null, got 3$", label=3)


def test_bounds_and_a_pattern_are_described_together():
    @dataclass(frozen=True)
    class Bounded:
        low: float = option(1.0, ge=0, lt=10)
        high: float = option(1.0, gt=0, le=10)
        code: str = option("ab", nonempty=True, pattern="[a-z]+")
        kind: str = option("x", choices=("x", "y"), nonempty=True)

    def message(**given) -> str:
        with pytest.raises(ValueError) as err:
            parse_options(Bounded, given, source="lab")
        return str(err.value)

    assert message(low=10) == "lab: option low must be a number >= 0 and < 10, got 10"
    assert message(low=-1) == "lab: option low must be a number >= 0 and < 10, got -1"
    assert message(high=0) == "lab: option high must be a number > 0 and <= 10, got 0"
    assert message(high=10.5) == "lab: option high must be a number > 0 and <= 10, got 10.5"
    assert parse_options(Bounded, {"low": 0, "high": 10}, source="lab") == Bounded(0.0, 10.0)
    assert message(code="A1") == "lab: option code must be a non-empty string matching the pattern [a-z]+, got 'A1'"
    assert message(kind="z") == "lab: option kind must be a non-empty one of 'x', 'y', got 'z'"


def test_unknown_keys_are_listed_sorted_whatever_their_type():
    message = refused("unknown option", zeta=1, alpha=2)
    assert message == ("lab: unknown option(s) ['alpha', 'zeta']; known: ['count', 'enabled', 'label', 'mode', "
                       "'names', 'rate', 'rate_or_table', 'shape', 'table', 'unit', 'version']")
    with pytest.raises(ValueError, match=r"^lab: unknown option\(s\) \[1, 'b'\]; known: "):
        parse_options(Example, {"b": 1, 1: 2}, source="lab")
    with pytest.raises(ValueError, match=r"^lab: options must be a mapping of option names to values, got \[1\]$"):
        parse_options(Example, [1], source="lab")


def test_a_refusal_is_raised_without_the_inner_error_chained():
    """The source-prefixed ``ValueError`` replaces the field's own (``from None``): one message, not two."""
    with pytest.raises(ValueError) as err:
        parse(count=0)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_converter_parses_its_options_at_construction_naming_itself():
    """``Converter(root, options)``: the root as a Path and the options parsed against ``options_type``, a
    refusal prefixed with the converter's registry name."""
    from pathlib import Path

    cls = get_converter("inhouse")
    conv = cls("/data/root", {"frame_block": 2})
    assert conv.root == Path("/data/root") and isinstance(conv.root, Path)
    assert conv.options == cls.options_type(frame_block=2) and cls("/x").options == cls.options_type()
    with pytest.raises(ValueError, match=r"^inhouse: option frame_block must be an integer >= 1, got 0$"):
        cls("/x", {"frame_block": 0})


def test_a_rule_on_a_union_without_none_does_not_admit_none():
    """Only ``X | None`` moves a field's rule onto ``X`` and keeps None allowed; on ``X | Y`` the rule is on
    the whole union, and None is refused like any value of neither member."""

    @dataclass(frozen=True)
    class Sized:
        size: int | str = option(8, choices=(8, "auto"))

    assert parse_options(Sized, {"size": "auto"}, source="lab").size == "auto"
    with pytest.raises(ValueError, match=r"^lab: option size must be one of 8, 'auto', got None$"):
        parse_options(Sized, {"size": None}, source="lab")


def test_non_empty_replaces_the_article_of_the_description():
    """A rule's description puts "non-empty" before the noun, in place of its article, "a" or "an"."""
    assert Rule(nonempty=True).describe("a string") == "a non-empty string"
    assert Rule(nonempty=True).describe("an integer") == "a non-empty integer"
    assert Rule(nonempty=True).describe("a list [an integer, ...]") == "a non-empty list [an integer, ...]"
