"""Canonical JSON: the byte encoding that Matrix hashes and signs, and strict event parsing.

Spec: content/appendices.md, "Signing JSON" -> "Canonical JSON" (rule, grammar, examples)
and content/rooms/fragments/v6-canonical-json.md (room versions 6 and later MUST enforce
it: 400 ``M_BAD_JSON`` on client APIs, dropped over federation).

The rule: shortest UTF-8 JSON, object keys sorted by code point, numbers are integers in
``[-(2**53)+1, (2**53)-1]`` without exponent or fraction, never ``-0``, no floats.

The ``canonicaljson`` library does the encoding (sorted keys, no whitespace, literal UTF-8,
the grammar's escapes). It does not enforce the number rules, so this module adds:

* :func:`check_canonical_values`, run before every encode: rejects out-of-range integers,
  non-integral floats, NaN/Infinity, lone surrogates (not encodable as UTF-8) and non-string
  keys, and turns integral floats into ints (spec example 10: ``1e10`` -> ``10000000000``,
  ``-0`` -> ``0``);
* :func:`parse_canonical_json`, a strict parser for event JSON that applies the same rules
  while parsing and also rejects duplicate object keys;
* :func:`parse_json`, a lenient parser for request bodies that are not events.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, NoReturn

import canonicaljson

MAX_SAFE_INTEGER = 2**53 - 1
MIN_SAFE_INTEGER = -(2**53) + 1
# Longest integer literal that can be in range: "-9007199254740991" is 17 characters.
_MAX_INT_LITERAL = 17


class InvalidJson(ValueError):
    """The bytes are not JSON, or the value breaks the canonical JSON rules."""


# -- encoding --------------------------------------------------------------------------


# canonicaljson's own encoder settings: sorted keys, no whitespace, literal UTF-8.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)


def encode_canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes, raising :class:`InvalidJson` if it can't be.

    Integral floats in range are written as integers (see :func:`check_canonical_values`).
    """
    if is_plain(value):
        # Nothing to normalise (the usual case: events built from checked content or
        # parsed strictly); only a lone surrogate is left to find, and UTF-8 finds it.
        try:
            return _ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass
    return canonicaljson.encode_canonical_json(check_canonical_values(value))


def encode_plain(value: Any) -> bytes:
    """Encode a value :func:`is_plain` accepts (the caller knows it is): canonical JSON
    with the number checks skipped. Raises :class:`InvalidJson` for a lone surrogate."""
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidJson(f"string is not valid UTF-8 (lone surrogate): {e}") from None


def is_plain(value: Any) -> bool:
    """True if ``value`` is made only of dicts with str keys, lists, str, bool, None and
    ints in range: already what :func:`check_canonical_values` would return (up to
    lone surrogates in strings). Exact types only; anything else takes the slow path."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not is_plain(item):
                return False
        return True
    if kind is list:
        for item in value:
            if not is_plain(item):
                return False
        return True
    return False


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars), quicker than copy.deepcopy;
    other objects are deep-copied the slow way."""
    kind = type(value)
    if kind is dict:
        return {k: json_copy(v) for k, v in value.items()}
    if kind is list:
        return [json_copy(v) for v in value]
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    return copy.deepcopy(value)


# -- validating values -----------------------------------------------------------------


def check_canonical_values(value: Any) -> Any:
    """Check that ``value`` can be encoded as canonical JSON; return a normalised copy.

    Accepts dicts (any Mapping) with string keys, lists and tuples, strings, booleans,
    None and integers in range. A float whose value is an integer in range becomes that
    integer (so ``-0.0`` becomes ``0``); any other float, an out-of-range integer or a
    string with a lone surrogate raises :class:`InvalidJson`, naming where it was found.
    Use the returned value: it is what will be hashed and signed.
    """
    if is_plain(value):
        try:
            _ENCODER.encode(value).encode("utf-8")  # finds lone surrogates
        except UnicodeEncodeError:
            pass
        else:
            return json_copy(value)
    try:
        return _normalise(value, "")
    except RecursionError:
        raise InvalidJson("JSON is nested too deeply") from None


def _normalise(value: Any, path: str) -> Any:
    # bool before int: bool is a subclass of int.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_string(value, path)
        return value
    if isinstance(value, int):
        _check_int_range(value, path)
        return int(value)
    if isinstance(value, float):
        return _float_to_int(value, path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(path, f"object key {key!r} is not a string")
            _check_string(key, path)
            out[key] = _normalise(item, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, list | tuple):
        return [_normalise(item, f"{path}[{i}]") for i, item in enumerate(value)]
    _fail(path, f"a value of type {type(value).__name__} is not JSON")


def _check_string(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        _fail(path, "string contains a lone surrogate, which is not valid Unicode")


def _check_int_range(n: int, path: str) -> None:
    if not MIN_SAFE_INTEGER <= n <= MAX_SAFE_INTEGER:
        _fail(path, f"integer {n} is outside [-(2**53)+1, (2**53)-1]")


def _float_to_int(f: float, path: str) -> int:
    if f.is_integer() and MIN_SAFE_INTEGER <= f <= MAX_SAFE_INTEGER:
        return int(f)
    _fail(path, f"number {f!r} is not an integer in [-(2**53)+1, (2**53)-1]")


def _fail(path: str, message: str) -> NoReturn:
    raise InvalidJson(f"{path}: {message}" if path else message)


# -- parsing ---------------------------------------------------------------------------


def parse_canonical_json(data: bytes | str) -> Any:
    """Parse event JSON strictly (room versions 6 and later).

    The input need not be canonically *formatted* (whitespace, key order and escapes are
    free), but its values must be representable in canonical JSON: integers in range,
    floats only when integral and in range (turned into ints: ``1e10`` -> ``10000000000``,
    ``-0`` -> ``0``), no NaN or Infinity, no duplicate keys, valid UTF-8 with no lone
    surrogates. Raises :class:`InvalidJson`.
    """
    text = _decode_utf8(data)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_int=_strict_int,
            parse_float=_strict_float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as e:
        raise InvalidJson(f"invalid JSON: {e}") from None
    except RecursionError:
        raise InvalidJson("JSON is nested too deeply") from None
    # Numbers and keys are already checked; this catches lone surrogates from \uD800 escapes.
    return check_canonical_values(value)


def parse_json(data: bytes | str) -> Any:
    """Parse a non-event JSON body leniently: standard JSON, floats and big integers allowed.

    Rejects non-UTF-8 bytes and the non-standard constants NaN, Infinity and -Infinity.
    Duplicate keys keep the last value. Raises :class:`InvalidJson`.
    """
    text = _decode_utf8(data)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except InvalidJson:
        raise
    except json.JSONDecodeError as e:
        raise InvalidJson(f"invalid JSON: {e}") from None
    except RecursionError:
        raise InvalidJson("JSON is nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal with more than 4300 digits
        raise InvalidJson(f"invalid JSON: {e}") from None


def _decode_utf8(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidJson(f"JSON is not valid UTF-8: {e}") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"duplicate object key {key!r}")
            seen.add(key)
    return obj


def _strict_int(literal: str) -> int:
    if len(literal) > _MAX_INT_LITERAL:
        raise InvalidJson(f"integer {literal[:20]}... is outside [-(2**53)+1, (2**53)-1]")
    n = int(literal)
    _check_int_range(n, "")
    return n


def _strict_float(literal: str) -> int:
    # Decimal keeps the literal exact, so "9007199254740993.0" is not rounded into range.
    # Imported here: numbers with a fraction or exponent are rare in events.
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(literal)
    except InvalidOperation:  # pragma: no cover - the JSON scanner only passes numbers
        raise InvalidJson(f"invalid number {literal!r}") from None
    if d.is_zero():
        return 0
    if d.copy_abs() <= MAX_SAFE_INTEGER:
        whole = d.to_integral_value()
        if whole == d:
            return int(whole)
    shown = literal if len(literal) <= 40 else literal[:40] + "..."
    raise InvalidJson(f"number {shown} is not an integer in [-(2**53)+1, (2**53)-1]")


def _reject_constant(name: str) -> NoReturn:
    raise InvalidJson(f"{name} is not allowed in JSON")
