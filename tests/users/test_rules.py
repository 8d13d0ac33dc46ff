"""The pure rules of this area, from tables: tag order, profile keys and values,
member event content, server-managed account data types."""

from __future__ import annotations

from typing import Any

import pytest

from node.errors import MatrixError
from node.users.account_data import check_client_may_set, check_tag
from node.users.profile import check_key, check_value, member_content


@pytest.mark.parametrize(
    ("tag", "info", "errcode"),
    [
        ("u.work", {}, None),
        ("u.work", {"order": 0}, None),
        ("u.work", {"order": 1}, None),
        ("u.work", {"order": 0.5, "extra": "kept"}, None),
        ("u.work", {"order": 1.01}, "M_BAD_JSON"),
        ("u.work", {"order": -1}, "M_BAD_JSON"),
        ("u.work", {"order": None}, "M_BAD_JSON"),
        ("u.work", {"order": False}, "M_BAD_JSON"),
        ("u.work", {"order": float("nan")}, "M_BAD_JSON"),
        ("é" * 127, {}, None),  # 254 bytes
        ("é" * 128, {}, "M_INVALID_PARAM"),  # 256 bytes
    ],
)
def test_check_tag(tag: str, info: dict[str, Any], errcode: str | None) -> None:
    if errcode is None:
        check_tag(tag, info)
    else:
        with pytest.raises(MatrixError) as caught:
            check_tag(tag, info)
        assert caught.value.errcode == errcode


@pytest.mark.parametrize(
    ("data_type", "allowed"),
    [("m.fully_read", False), ("m.push_rules", False), ("m.direct", True), ("m.tag", True)],
)
def test_server_managed_types(data_type: str, allowed: bool) -> None:
    if allowed:
        check_client_may_set(data_type)
    else:
        with pytest.raises(MatrixError) as caught:
            check_client_may_set(data_type)
        assert (caught.value.status, caught.value.errcode) == (405, "M_BAD_JSON")


@pytest.mark.parametrize(
    ("key", "errcode"),
    [
        ("displayname", None),
        ("avatar_url", None),
        ("m.tz", None),
        ("m.example_field", None),
        ("org.example.job_title", None),
        ("com.example", None),
        ("tz", "M_INVALID_PARAM"),
        ("Org.example", "M_INVALID_PARAM"),
        ("org..example", "M_INVALID_PARAM"),
        ("org.example.", "M_INVALID_PARAM"),
        ("1org.example", "M_INVALID_PARAM"),
        ("org.exa-mple", "M_INVALID_PARAM"),
        ("a." + "b" * 253, None),  # 255 bytes
        ("a." + "b" * 254, "M_KEY_TOO_LARGE"),
    ],
)
def test_check_key(key: str, errcode: str | None) -> None:
    if errcode is None:
        check_key(key)
    else:
        with pytest.raises(MatrixError) as caught:
            check_key(key)
        assert caught.value.errcode == errcode


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("displayname", "Alice", "Alice"),
        ("displayname", "", None),
        ("avatar_url", "", None),
        ("avatar_url", "mxc://example.org/abc_DEF-1", "mxc://example.org/abc_DEF-1"),
        ("avatar_url", "mxc://[::1]:8448/abc", "mxc://[::1]:8448/abc"),
        ("m.tz", "Europe/Berlin", "Europe/Berlin"),
        ("com.example.any", None, None),
        ("com.example.any", {"nested": [1, 2.5]}, {"nested": [1, 2.5]}),
    ],
)
def test_check_value_accepts(key: str, value: Any, stored: Any) -> None:
    assert check_value(key, value) == stored


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("displayname", None),
        ("displayname", 3),
        ("displayname", "x" * 257),
        ("avatar_url", "http://example.org/a.png"),
        ("avatar_url", "mxc://example.org/"),
        ("avatar_url", "mxc://example.org/a/b"),
        ("avatar_url", "mxc://bad server/abc"),
        ("m.tz", ["Europe/Berlin"]),
    ],
)
def test_check_value_refuses(key: str, value: Any) -> None:
    with pytest.raises(MatrixError) as caught:
        check_value(key, value)
    assert caught.value.errcode == "M_BAD_JSON"


@pytest.mark.parametrize(
    ("profile", "content"),
    [
        ({}, {"membership": "join"}),
        ({"displayname": "A", "m.tz": "UTC"}, {"membership": "join", "displayname": "A"}),
        (
            {"displayname": "A", "avatar_url": "mxc://s/m", "com.x.y": 1},
            {"membership": "join", "displayname": "A", "avatar_url": "mxc://s/m"},
        ),
    ],
)
def test_member_content(profile: dict[str, Any], content: dict[str, Any]) -> None:
    assert member_content(profile) == content
