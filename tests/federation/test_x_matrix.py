"""X-Matrix header building and parsing (server-server-api.md "Request Authentication")."""

from __future__ import annotations

import re

import pytest
import signedjson.key
import signedjson.sign

from node.events.signing import generate_signing_key, get_verify_key, verify_json
from node.federation.keys import ServerKey
from node.federation.x_matrix import (
    XMatrix,
    parse_x_matrix,
    sign_request,
    signed_request_object,
)

KEY = ServerKey("origin.example", generate_signing_key("k1"))


def test_signed_header_has_the_spec_format_and_verifies() -> None:
    uri = "/_matrix/federation/v1/send/txn1?a=b%20c"
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {}}]}
    header = sign_request(KEY, "PUT", uri, "dest.example:8448", content)
    # The spec's compatibility advice: one space, lower-case names, no whitespace.
    assert re.fullmatch(
        r'X-Matrix origin="origin\.example",destination="dest\.example:8448",'
        r'key="ed25519:k1",sig="[A-Za-z0-9+/]+"',
        header,
    )
    parsed = parse_x_matrix(header)
    assert (parsed.origin, parsed.destination, parsed.key_id) == (
        "origin.example",
        "dest.example:8448",
        "ed25519:k1",
    )
    obj = signed_request_object("PUT", uri, "origin.example", "dest.example:8448", content)
    obj["signatures"] = {"origin.example": {parsed.key_id: parsed.signature}}
    verify_json(obj, "origin.example", get_verify_key(KEY.signing_key))
    # Cross-check with matrix-org's signedjson.
    vk = signedjson.key.decode_verify_key_base64("ed25519", "k1", KEY.verify_key_base64)
    signedjson.sign.verify_signed_json(obj, "origin.example", vk)


def test_the_signature_covers_every_field() -> None:
    header = sign_request(KEY, "GET", "/_matrix/federation/v1/x?a=1", "dest.example", None)
    sig = parse_x_matrix(header).signature
    good = signed_request_object(
        "GET", "/_matrix/federation/v1/x?a=1", KEY.server_name, "dest.example", None
    )
    assert "content" not in good
    variants = [
        {**good, "method": "PUT"},
        {**good, "uri": "/_matrix/federation/v1/x?a=2"},
        {**good, "destination": "other.example"},
        {**good, "origin": "evil.example"},
        {**good, "content": {}},
    ]
    vk = get_verify_key(KEY.signing_key)
    verify_json({**good, "signatures": {KEY.server_name: {"ed25519:k1": sig}}}, KEY.server_name, vk)
    for obj in variants:
        signed = {**obj, "signatures": {obj["origin"]: {"ed25519:k1": sig}}}
        with pytest.raises(Exception, match="signature"):
            verify_json(signed, obj["origin"], vk)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # The spec's example.
        (
            'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
            'key="ed25519:key1",sig="ABCDEF..."',
            XMatrix(
                "origin.hs.example.com", "destination.hs.example.com", "ed25519:key1", "ABCDEF..."
            ),
        ),
        # Unquoted values, colons allowed unquoted (compatibility rule).
        (
            "X-Matrix origin=a.example:8448,destination=b.example,key=ed25519:k,sig=abc+/d",
            XMatrix("a.example:8448", "b.example", "ed25519:k", "abc+/d"),
        ),
        # No destination (servers before v1.3).
        (
            'X-Matrix origin="a.example",key="ed25519:k",sig="s"',
            XMatrix("a.example", None, "ed25519:k", "s"),
        ),
        # Case-insensitive scheme and names, any order, several spaces after the scheme,
        # spaces and tabs around commas and '='.
        (
            'x-matrix   SIG="s" ,\tKey = "ed25519:k" , Origin="a.example"',
            XMatrix("a.example", None, "ed25519:k", "s"),
        ),
        # Backslash escapes are removed.
        (
            r'X-Matrix origin="a\.example",key="ed25519\:k",sig="a\"b\\c"',
            XMatrix("a.example", None, "ed25519:k", 'a"b\\c'),
        ),
        # Unknown parameters are ignored; empty list elements are allowed.
        (
            'X-Matrix origin="a.example",, foo="bar, baz",key="ed25519:k",sig="s",',
            XMatrix("a.example", None, "ed25519:k", "s"),
        ),
        # The spec's prose calls the parameter `signature`.
        (
            'X-Matrix origin="a.example",key="ed25519:k",signature="s"',
            XMatrix("a.example", None, "ed25519:k", "s"),
        ),
        # IPv6 literal server names.
        (
            'X-Matrix origin="[::1]:8448",destination="127.0.0.1:1",key="ed25519:k",sig="s"',
            XMatrix("[::1]:8448", "127.0.0.1:1", "ed25519:k", "s"),
        ),
    ],
)
def test_parse_valid(header: str, expected: XMatrix) -> None:
    assert parse_x_matrix(header) == expected


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("Bearer abc", "scheme"),
        ("X-Matrixorigin=a", "scheme"),
        ("X-Matrix", "no parameters"),
        ("X-Matrix ", "no origin"),
        ('X-Matrix key="ed25519:k",sig="s"', "no origin"),
        ('X-Matrix origin="a.example",sig="s"', "no key"),
        ('X-Matrix origin="a.example",key="ed25519:k"', "no sig"),
        ('X-Matrix origin="a.example",key="ed25519:k",sig=""', "no sig"),
        ('X-Matrix origin="a.example,key="ed25519:k",sig="s"', "unexpected"),
        ('X-Matrix origin="a.example",key="ed25519:k",sig="s', "unterminated"),
        ('X-Matrix origin="a.example",origin="b.example",key="ed25519:k",sig="s"', "twice"),
        ('X-Matrix origin="a.example" key="ed25519:k",sig="s"', "unexpected"),
        ("X-Matrix origin=,key=ed25519:k,sig=s", "empty value"),
        ('X-Matrix origin,key="ed25519:k",sig="s"', "no value"),
        ('X-Matrix ="x",origin="a.example"', "parameter name"),
        ('X-Matrix origin="not a server",key="ed25519:k",sig="s"', "origin is not a server name"),
        (
            'X-Matrix origin="a.example",destination="b example",key="ed25519:k",sig="s"',
            "destination",
        ),
        ('X-Matrix origin="a.example",key="nokeyid",sig="s"', "algorithm"),
        ('X-Matrix origin="a.example",key="ed25519:k",sig="s\x01"', "control"),
    ],
)
def test_parse_invalid(header: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_x_matrix(header)
