"""Server ACL evaluation (node/federation/acl.py), as tables from the spec text: the
m.room.server_acl event schema's five rules, "Glob-style matching", ports ignored,
case-insensitive globs."""

from __future__ import annotations

from typing import Any

import pytest

from node.federation.acl import (
    ServerAcl,
    glob_matches,
    is_ip_literal,
    server_allowed,
    strip_port,
)

ALLOW_ALL_DENY_EVIL = {"allow": ["*"], "deny": ["evil.com", "*.bad.org"]}
NO_IP_LITERALS = {"allow": ["*"], "allow_ip_literals": False}


@pytest.mark.parametrize(
    ("content", "server", "allowed"),
    [
        # 1. No m.room.server_acl event in the room state: allow.
        (None, "anyone.example", True),
        (None, "1.2.3.4", True),
        # 5. No allow rule: every server is denied (its sender's included).
        ({}, "example.org", False),
        ({"deny": []}, "example.org", False),
        ({"allow": []}, "example.org", False),
        # 3. deny before 4. allow.
        (ALLOW_ALL_DENY_EVIL, "good.example", True),
        (ALLOW_ALL_DENY_EVIL, "evil.com", False),
        # Ports are never considered.
        (ALLOW_ALL_DENY_EVIL, "evil.com:8448", False),
        (ALLOW_ALL_DENY_EVIL, "evil.com:1234", False),
        ({"allow": ["*"], "deny": ["evil.com:8448"]}, "evil.com:8448", True),
        # Case-insensitive.
        (ALLOW_ALL_DENY_EVIL, "EVIL.com", False),
        ({"allow": ["Good.Example"]}, "good.EXAMPLE", True),
        # Globs match the whole name.
        (ALLOW_ALL_DENY_EVIL, "notevil.com", True),
        (ALLOW_ALL_DENY_EVIL, "sub.evil.com", True),
        (ALLOW_ALL_DENY_EVIL, "x.bad.org", False),
        (ALLOW_ALL_DENY_EVIL, "bad.org", True),
        ({"allow": ["evil.com"], "deny": ["evil.com"]}, "evil.com", False),
        ({"allow": ["*.example"]}, "a.example", True),
        ({"allow": ["*.example"]}, "example", False),
        # 2. IP literals, when allow_ip_literals is false, before any allow rule.
        (NO_IP_LITERALS, "1.2.3.4", False),
        (NO_IP_LITERALS, "1.2.3.4:8448", False),
        (NO_IP_LITERALS, "[::1]", False),
        (NO_IP_LITERALS, "[2001:db8::1]:8448", False),
        (NO_IP_LITERALS, "example.org", True),
        ({"allow": ["1.2.3.4"], "allow_ip_literals": False}, "1.2.3.4", False),
        # allow_ip_literals defaults to true when missing or not a boolean.
        ({"allow": ["*"]}, "1.2.3.4", True),
        ({"allow": ["*"], "allow_ip_literals": "false"}, "1.2.3.4", True),
        ({"allow": ["*"], "allow_ip_literals": 0}, "[::1]:8448", True),
        ({"allow": ["*"], "allow_ip_literals": True}, "127.0.0.1:8448", True),
        # IP literals match rules like any name; IPv6 keeps its brackets.
        ({"allow": ["*"], "deny": ["127.0.0.1"]}, "127.0.0.1:8448", False),
        ({"allow": ["*"], "deny": ["[*"]}, "[::1]:8448", False),
        ({"allow": ["*"], "deny": ["[*"]}, "1.2.3.4", True),
        ({"allow": ["[::1]"]}, "[::1]:443", True),
        # Malformed lists and entries: not a list -> empty; non-strings ignored.
        ({"allow": "*"}, "example.org", False),
        ({"allow": [1, None, "*"]}, "example.org", True),
        ({"allow": ["*"], "deny": "example.org"}, "example.org", True),
        ({"allow": ["*"], "deny": [{"a": 1}, "example.org"]}, "example.org", False),
    ],
)
def test_server_allowed(content: dict[str, Any] | None, server: str, allowed: bool) -> None:
    assert server_allowed(server, content) is allowed


def test_content_not_an_object_denies_everyone() -> None:
    assert server_allowed("example.org", ["*"]) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*", "", True),
        ("*", "anything.at.all", True),
        ("?", "", False),
        ("?", "a", True),
        ("?", "ab", False),
        ("ev?l.com", "evil.com", True),
        ("ev?l.com", "evxl.com", True),
        ("ev?l.com", "evl.com", False),
        ("ev?l.com", "eviil.com", False),
        ("*.com", "a.b.com", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxbyy", False),
        # Every other character is itself: no regex or character classes.
        ("a.b", "axb", False),
        ("a.b", "a.b", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("a+", "aa", False),
        ("(x)|y", "y", False),
        ("\\d", "1", False),
        ("EXAMPLE.org", "example.ORG", True),
    ],
)
def test_glob_matches(pattern: str, name: str, matches: bool) -> None:
    assert glob_matches(pattern, name) is matches


@pytest.mark.parametrize(
    ("server", "host"),
    [
        ("example.org", "example.org"),
        ("example.org:8448", "example.org"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("[::1]", "[::1]"),
        ("[::1]:8448", "[::1]"),
    ],
)
def test_strip_port(server: str, host: str) -> None:
    assert strip_port(server) == host


@pytest.mark.parametrize(
    ("host", "literal"),
    [
        ("1.2.3.4", True),
        ("[::1]", True),
        ("example.org", False),
        ("300.1.1.1", False),
        ("1.2.3", False),
        ("localhost", False),
    ],
)
def test_is_ip_literal(host: str, literal: bool) -> None:
    assert is_ip_literal(host) is literal


def test_from_content_defaults() -> None:
    assert ServerAcl.from_content({}) == ServerAcl(True, (), ())
    acl = ServerAcl.from_content({"allow": ["a", 2], "deny": ["b"], "allow_ip_literals": False})
    assert acl == ServerAcl(False, ("a",), ("b",))
