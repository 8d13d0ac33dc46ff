"""What a source may give, and the content made of it (node/sensors/content.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from node.events.canonical import encode_canonical_json
from node.sensors.content import (
    Reading,
    ReadingError,
    format_value,
    is_sensor_event_type,
    is_valid_event_type,
    parse_text,
    parse_value,
    reading_content,
)


@pytest.mark.parametrize(
    ("text", "value", "unit", "ts"),
    [
        ("42000\n", "42000", None, None),
        ("  -3.5 ", "-3.5", None, None),
        ("21.250", "21.25", None, None),
        ("1e3", "1000", None, None),
        ("0.000", "0", None, None),
        ("-0", "0", None, None),
        ('{"value": 21.5, "unit": "°C"}', "21.5", "°C", None),
        ('{"value": "7", "ts": 1700000000000}', "7", None, 1700000000000),
        ('{"value": 0.1}', "0.1", None, None),  # exact: no binary float on the way
        ('{"value": 12345678901234567890.5}', "12345678901234567890.5", None, None),
    ],
)
def test_parse_text(text: str, value: str, unit: str | None, ts: int | None) -> None:
    reading = parse_text(text)
    assert format_value(reading.value) == value
    assert (reading.unit, reading.ts) == (unit, ts)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty output"),
        ("  \n", "empty output"),
        ("warm", "not a number"),
        ("42 43", "not a number"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("{not json", "not valid JSON"),
        ('{"unit": "C"}', 'no "value"'),
        ('{"value": 1, "colour": 2}', "unknown key(s) colour"),
        ('{"value": true}', "expected a number"),
        ('{"value": [1]}', "expected a number"),
        ('{"value": 1, "unit": 5}', '"unit" must be a string'),
        ('{"value": 1, "ts": 1.5}', '"ts" must be ms'),
        ('{"value": 1, "ts": -1}', '"ts" must be ms'),
    ],
)
def test_parse_text_refuses(text: str, fragment: str) -> None:
    with pytest.raises(ReadingError) as e:
        parse_text(text)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "3"),
        (2.5, "2.5"),
        (0.1 + 0.2, "0.30000000000000004"),  # the float's own shortest text
        (Decimal("1.50"), "1.5"),
        ("12", "12"),
        ({"value": 4, "unit": "V"}, "4"),
    ],
)
def test_parse_value_of_plugins(value: object, expected: str) -> None:
    assert format_value(parse_value(value).value) == expected


@pytest.mark.parametrize("value", [True, None, float("nan"), float("inf"), object(), [1]])
def test_parse_value_refuses(value: object) -> None:
    with pytest.raises(ReadingError):
        parse_value(value)


def test_format_value_bounds() -> None:
    assert format_value(Decimal("1e30")) == "1" + "0" * 30
    assert format_value(Decimal("1e-30")) == "0." + "0" * 29 + "1"
    for huge in ("1e31", "1e-31", "1e999999"):
        with pytest.raises(ReadingError, match="out of range"):
            format_value(Decimal(huge))


def test_reading_content_is_canonical_json() -> None:
    content = reading_content("cpu-temp", Reading(Decimal("42.125")), "°C", now_ms=1719830400123)
    assert content == {
        "sensor_id": "cpu-temp",
        "value": "42.125",
        "unit": "°C",
        "ts": 1719830400123,
    }
    encode_canonical_json(content)  # no floats: room versions 6+ accept it
    own = reading_content("x", Reading(Decimal(1), unit="V", ts=5), "mV", now_ms=9)
    assert (own["unit"], own["ts"]) == ("V", 5)


def test_event_types() -> None:
    assert is_valid_event_type("m.room.message")
    assert is_valid_event_type("io.croft.sensor.reading")
    for bad in ("", "a b", "a/b", "é", "x" * 256, "tab\t"):
        assert not is_valid_event_type(bad)
    assert is_sensor_event_type("io.croft.sensor.air")
    assert not is_sensor_event_type("io.croft.sensor.")
    assert not is_sensor_event_type("io.croft.sensors")
