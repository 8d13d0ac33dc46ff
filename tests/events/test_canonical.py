"""Canonical JSON: the spec's examples (VECTORS.md section 2), the number rules, parsing.

Spec: content/appendices.md "Canonical JSON"; content/rooms/fragments/v6-canonical-json.md.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.events.canonical import (
    MAX_SAFE_INTEGER,
    MIN_SAFE_INTEGER,
    InvalidJson,
    check_canonical_values,
    encode_canonical_json,
    parse_canonical_json,
    parse_json,
)

EXAMPLE_5_INPUT = """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}"""
EXAMPLE_5_OUTPUT = (
    '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
    '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
    '{"address":"123456789","medium":"msisdn"}]},"success":true}}'
)

# VECTORS.md section 2: (input JSON text, expected canonical output), in the spec's order.
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (EXAMPLE_5_INPUT, EXAMPLE_5_OUTPUT),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
    ('{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize(("text", "expected"), SPEC_EXAMPLES)
def test_spec_examples_strict_parser(text: str, expected: str) -> None:
    assert encode_canonical_json(parse_canonical_json(text)) == expected.encode("utf-8")
    assert encode_canonical_json(parse_canonical_json(text.encode("utf-8"))) == expected.encode()


@pytest.mark.parametrize(("text", "expected"), SPEC_EXAMPLES)
def test_spec_examples_lenient_parser_then_encode(text: str, expected: str) -> None:
    # The encoder also normalises integral floats, so example 10 works from parse_json too.
    assert encode_canonical_json(parse_json(text)) == expected.encode("utf-8")


def test_example_8_escape_becomes_literal_utf8_bytes() -> None:
    assert encode_canonical_json(parse_canonical_json('{"a":"\\u65E5"}')) == b'{"a":"\xe6\x97\xa5"}'


def test_example_10_values_become_ints() -> None:
    value = parse_canonical_json('{ "a": -0, "b": 1e10 }')
    assert value == {"a": 0, "b": 10000000000}
    assert type(value["a"]) is int
    assert type(value["b"]) is int


def test_python_reference_function_alone_does_not_do_example_10() -> None:
    # VECTORS.md note: json.dumps of json.loads leaves 1e10 as a float.
    reference = json.dumps(
        json.loads('{"a": -0, "b": 1e10}'),
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    assert reference == '{"a":0,"b":10000000000.0}'


# -- the encoding grammar --------------------------------------------------------------


def test_escapes_follow_the_grammar() -> None:
    s = '\b\t\n\f\r"\\\x00\x01\x07\x0b\x0e\x0f\x10\x1a\x1f\x7f/é\u2028😀'
    encoded = encode_canonical_json(s)
    expected = (
        '"\\b\\t\\n\\f\\r\\"\\\\\\u0000\\u0001\\u0007\\u000b\\u000e\\u000f'
        '\\u0010\\u001a\\u001f\x7f/é\u2028😀"'
    )
    assert encoded == expected.encode("utf-8")


def test_keys_sort_by_code_point_not_utf16() -> None:
    # U+FF61 sorts before U+1F600 by code point, but after it in UTF-16 code units.
    assert encode_canonical_json({"😀": 1, "｡": 2}) == '{"｡":2,"😀":1}'.encode()


def test_encodes_nested_values_without_whitespace() -> None:
    value = {"b": [1, True, False, None, {"y": "", "x": []}], "a": {}}
    assert encode_canonical_json(value) == b'{"a":{},"b":[1,true,false,null,{"x":[],"y":""}]}'


# -- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9007199254740991", MAX_SAFE_INTEGER),
        ("-9007199254740991", MIN_SAFE_INTEGER),
        ("-0", 0),
        ("-0.0", 0),
        ("0e99999999999", 0),
        ("1.0", 1),
        ("1E2", 100),
        ("2.5e1", 25),
        ("-1e10", -10000000000),
        ("9007199254740991.0", MAX_SAFE_INTEGER),
        ("100000000000000000000e-20", 1),
    ],
)
def test_strict_parser_accepts_integral_numbers_in_range(text: str, value: int) -> None:
    parsed = parse_canonical_json(f'{{"n":{text}}}')
    assert parsed == {"n": value}
    assert type(parsed["n"]) is int


@pytest.mark.parametrize(
    "text",
    [
        "9007199254740992",
        "-9007199254740992",
        "123456789012345678901234567890",
        "9007199254740992.0",
        "9007199254740993.0",  # would round to 2**53 as a float
        "1.5",
        "0.1",
        "1e-400",
        "1e400",
        "-1e99999999999",
        "NaN",
        "Infinity",
        "-Infinity",
    ],
)
def test_strict_parser_rejects_bad_numbers(text: str) -> None:
    with pytest.raises(InvalidJson):
        parse_canonical_json(f'{{"n":{text}}}')


@pytest.mark.parametrize(
    "value",
    [2**53, -(2**53), 1.5, float("nan"), float("inf"), float("-inf"), 2.0**53, {"a": [0.5]}],
)
def test_encoder_rejects_values_outside_canonical_json(value: Any) -> None:
    with pytest.raises(InvalidJson):
        encode_canonical_json(value)


def test_encoder_writes_integral_floats_as_ints() -> None:
    assert (
        encode_canonical_json({"a": -0.0, "b": 1e10, "c": 3.0}) == b'{"a":0,"b":10000000000,"c":3}'
    )


# -- other strict-parser rules ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":1}',
        '{"x":{"a":1,"b":2,"a":3}}',
        '[{"k":null,"k":null}]',
    ],
)
def test_strict_parser_rejects_duplicate_keys(text: str) -> None:
    with pytest.raises(InvalidJson, match="duplicate object key"):
        parse_canonical_json(text)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":"\xff"}',
        b'{"a":"\xc3"}',
        b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate is not UTF-8
        '{"a":1}'.encode("utf-16"),
    ],
)
def test_parsers_reject_non_utf8(data: bytes) -> None:
    with pytest.raises(InvalidJson, match="UTF-8"):
        parse_canonical_json(data)
    with pytest.raises(InvalidJson):
        parse_json(data)


@pytest.mark.parametrize("text", ['{"a":"\\ud800"}', '{"\\udfff":1}', '["x\\ud83d"]'])
def test_strict_parser_rejects_lone_surrogate_escapes(text: str) -> None:
    with pytest.raises(InvalidJson, match="surrogate"):
        parse_canonical_json(text)


def test_strict_parser_accepts_surrogate_pair_escapes() -> None:
    assert parse_canonical_json('{"a":"\\ud83d\\ude00"}') == {"a": "😀"}


@pytest.mark.parametrize("text", ["", "{", '{"a":}', "[1,]", "{'a':1}", '{"a":1}x', '"\x01"'])
def test_parsers_reject_malformed_json(text: str) -> None:
    with pytest.raises(InvalidJson, match="invalid JSON"):
        parse_canonical_json(text)
    with pytest.raises(InvalidJson):
        parse_json(text)


def test_strict_parser_rejects_utf8_bom() -> None:
    with pytest.raises(InvalidJson):
        parse_canonical_json(b'\xef\xbb\xbf{"a":1}')


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidJson):
        parse_canonical_json(deep)
    with pytest.raises(InvalidJson):
        parse_json(deep)


# -- check_canonical_values ------------------------------------------------------------


def test_check_returns_normalised_copy_and_leaves_input_alone() -> None:
    original = {"content": {"n": 2.0, "l": (1, -0.0)}, "m": MappingProxyType({"k": True})}
    checked = check_canonical_values(original)
    assert checked == {"content": {"n": 2, "l": [1, 0]}, "m": {"k": True}}
    assert type(checked["content"]["n"]) is int
    assert type(checked["m"]) is dict
    assert original["content"]["n"] == 2.0
    assert type(original["content"]["n"]) is float
    assert checked["content"] is not original["content"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"content": {"body": [1, 2.5]}}, r"^content\.body\[1\]: number 2\.5 "),
        ({"a": {"b": 2**53}}, r"^a\.b: integer 9007199254740992 is outside"),
        ({1: "x"}, "object key 1 is not a string"),
        ({"a": "\ud800"}, r"^a: string contains a lone surrogate"),
        ({"\udc00": 1}, "lone surrogate"),
        ({"a": {1, 2}}, "type set is not JSON"),
        ({"a": b"bytes"}, "type bytes is not JSON"),
        (float("nan"), "not an integer"),
    ],
)
def test_check_rejects_with_a_clear_message(value: Any, message: str) -> None:
    with pytest.raises(InvalidJson, match=message):
        check_canonical_values(value)


def test_invalid_json_is_a_value_error() -> None:
    assert issubclass(InvalidJson, ValueError)


# -- the lenient parser ----------------------------------------------------------------


def test_lenient_parser_keeps_floats_big_ints_and_last_duplicate() -> None:
    assert parse_json('{"f":1.5,"big":18446744073709551616,"d":1,"d":2}') == {
        "f": 1.5,
        "big": 2**64,
        "d": 2,
    }


@pytest.mark.parametrize("text", ['{"a":NaN}', "[Infinity]", "-Infinity"])
def test_lenient_parser_rejects_nan_and_infinity(text: str) -> None:
    with pytest.raises(InvalidJson, match="not allowed"):
        parse_json(text)


def test_lenient_parser_rejects_absurd_integer_literals() -> None:
    with pytest.raises(InvalidJson):
        parse_json("1" * 5000)


# -- properties ------------------------------------------------------------------------

_safe_ints = st.integers(min_value=MIN_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
# Any Unicode except surrogates (which UTF-8 cannot encode).
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
canonical_values = st.recursive(
    st.none() | st.booleans() | _safe_ints | _text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=30,
)


@given(canonical_values)
def test_round_trip_through_strict_parser(value: Any) -> None:
    encoded = encode_canonical_json(value)
    assert parse_canonical_json(encoded) == value
    assert encode_canonical_json(parse_canonical_json(encoded)) == encoded


@given(canonical_values)
def test_encoding_matches_the_spec_reference_function(value: Any) -> None:
    reference = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode_canonical_json(value) == reference.encode("utf-8")


@given(canonical_values)
def test_any_formatting_of_a_value_encodes_the_same(value: Any) -> None:
    pretty = json.dumps(value, indent=3, ensure_ascii=True)
    assert encode_canonical_json(parse_canonical_json(pretty)) == encode_canonical_json(value)
