"""Push rules as tables: the default rules against the spec's own JSON, every default
rule matching its events, every condition kind, glob matching and dotted paths.

Spec: content/client-server-api/modules/push.md "Conditions" (its examples are rows
here), "Predefined Rules"; content/appendices.md "Glob-style matching",
"Dot-separated property paths".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from node.push.rules import (
    MASTER,
    DefaultRuleChange,
    PushContext,
    PushRule,
    assemble_rules,
    clean_actions,
    condition_matches,
    default_rules,
    evaluate,
    first_match,
    glob_matches,
    is_highlight,
    lookup,
    ruleset_json,
    split_path,
    tweaks,
)
from node.push.store import AnchorNotFound, place_rule

ME = "@me:example.org"
OTHER = "@other:example.org"
ROOM = "!room:example.org"
SPEC_RULES = json.loads((Path(__file__).parent / "spec_default_rules.json").read_text())


def spec_rules_for(user_id: str) -> dict[str, list[dict[str, Any]]]:
    text = json.dumps({k: SPEC_RULES[k] for k in ("override", "underride")})
    return json.loads(text.replace(SPEC_RULES["user_id_placeholder"], user_id))


def msg(body: Any = "hello", msgtype: str = "m.text", **content: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"msgtype": msgtype, **content}
    if body is not None:
        c["body"] = body
    return {"type": "m.room.message", "sender": OTHER, "room_id": ROOM, "content": c}


def event(type_: str, content: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": type_, "sender": OTHER, "room_id": ROOM, "content": content, **fields}


def ctx(**kw: Any) -> PushContext:
    base: dict[str, Any] = {"user_id": ME, "member_count": 5}
    base.update(kw)
    return PushContext(**base)


# -- the default rules are the spec's ------------------------------------------------------


def test_default_rules_are_the_spec_definitions_in_order() -> None:
    got = ruleset_json(default_rules(ME))
    assert got == {"content": [], "room": [], "sender": [], **spec_rules_for(ME)}


def test_master_ranks_above_user_rules_and_defaults_below_them() -> None:
    mine = [
        PushRule("override", "mine", ["notify"], []),
        PushRule("underride", "low", ["notify"], []),
        PushRule("content", "cake", ["notify"], pattern="cake"),
    ]
    ids = [r.rule_id for r in assemble_rules(ME, mine)]
    assert ids[0] == MASTER
    assert ids[1] == "mine"
    assert ids.index("mine") < ids.index(".m.rule.suppress_notices")
    assert ids.index(".m.rule.suppress_edits") < ids.index("cake") < ids.index("low")
    assert ids.index("low") < ids.index(".m.rule.call")
    assert ids[-1] == ".m.rule.encrypted"


def test_changes_to_default_rules_apply() -> None:
    changes = {
        ("override", MASTER): DefaultRuleChange(enabled=True),
        ("underride", ".m.rule.message"): DefaultRuleChange(actions=["notify", _SOUND]),
    }
    rules = {r.rule_id: r for r in assemble_rules(ME, [], changes)}
    assert rules[MASTER].enabled is True and rules[MASTER].actions == []
    assert rules[".m.rule.message"].actions == ["notify", _SOUND]
    assert rules[".m.rule.message"].enabled is True


# -- every default rule, from the event's point of view --------------------------------------

_SOUND = {"set_tweak": "sound", "value": "default"}
_HL = {"set_tweak": "highlight"}

DEFAULT_RULE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("notice", msg(msgtype="m.notice"), {}, ".m.rule.suppress_notices"),
    (
        "invite for me",
        event("m.room.member", {"membership": "invite"}, state_key=ME),
        {},
        ".m.rule.invite_for_me",
    ),
    (
        "invite for another",
        event("m.room.member", {"membership": "invite"}, state_key="@x:y"),
        {},
        ".m.rule.member_event",
    ),
    (
        "a join",
        event("m.room.member", {"membership": "join"}, state_key=OTHER),
        {},
        ".m.rule.member_event",
    ),
    (
        "user mention",
        msg(**{"m.mentions": {"user_ids": ["@x:y", ME]}}),
        {},
        ".m.rule.is_user_mention",
    ),
    ("mention of another", msg(**{"m.mentions": {"user_ids": ["@x:y"]}}), {}, ".m.rule.message"),
    (
        "room mention by a moderator",
        msg(**{"m.mentions": {"room": True}}),
        {"sender_power_level": 50},
        ".m.rule.is_room_mention",
    ),
    (
        "room mention without the power",
        msg(**{"m.mentions": {"room": True}}),
        {"sender_power_level": 49},
        ".m.rule.message",
    ),
    (
        "room mention, lowered notifications.room",
        msg(**{"m.mentions": {"room": True}}),
        {"sender_power_level": 0, "notification_levels": {"room": 0}},
        ".m.rule.is_room_mention",
    ),
    (
        "room mention 'true' is not true",
        msg(**{"m.mentions": {"room": "true"}}),
        {"sender_power_level": 100},
        ".m.rule.message",
    ),
    ("body mentioning @room is no mention (v1.17)", msg("@room hi"), {}, ".m.rule.message"),
    ("body mentioning me is no mention (v1.17)", msg(f"hi {ME}"), {}, ".m.rule.message"),
    (
        "tombstone",
        event("m.room.tombstone", {"body": "moved"}, state_key=""),
        {},
        ".m.rule.tombstone",
    ),
    ("tombstone that is no state event", event("m.room.tombstone", {}), {}, None),
    ("reaction", event("m.reaction", {}), {}, ".m.rule.reaction"),
    ("server ACL", event("m.room.server_acl", {}, state_key=""), {}, ".m.rule.room.server_acl"),
    (
        "edit",
        msg(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}),
        {},
        ".m.rule.suppress_edits",
    ),
    ("call", event("m.call.invite", {}), {}, ".m.rule.call"),
    (
        "encrypted 1:1",
        event("m.room.encrypted", {}),
        {"member_count": 2},
        ".m.rule.encrypted_room_one_to_one",
    ),
    ("message 1:1", msg(), {"member_count": 2}, ".m.rule.room_one_to_one"),
    ("message", msg(), {}, ".m.rule.message"),
    ("encrypted", event("m.room.encrypted", {}), {}, ".m.rule.encrypted"),
    ("anything else", event("m.room.topic", {"topic": "x"}, state_key=""), {}, None),
]


@pytest.mark.parametrize(
    ("name", "ev", "context", "rule_id"), DEFAULT_RULE_CASES, ids=[c[0] for c in DEFAULT_RULE_CASES]
)
def test_default_rule_matches(
    name: str, ev: dict[str, Any], context: dict[str, Any], rule_id: str | None
) -> None:
    rule = first_match(default_rules(ME), ev, ctx(**context))
    assert (rule.rule_id if rule else None) == rule_id


def test_default_rule_actions() -> None:
    rules = default_rules(ME)
    mention = msg(**{"m.mentions": {"user_ids": [ME]}})
    actions = evaluate(rules, mention, ctx())
    assert actions == ["notify", _SOUND, _HL]
    assert is_highlight(actions) and tweaks(actions) == {"sound": "default", "highlight": True}
    assert evaluate(rules, msg(), ctx()) == ["notify"]
    assert evaluate(rules, msg(msgtype="m.notice"), ctx()) == []
    assert evaluate(rules, event("m.room.topic", {}, state_key=""), ctx()) is None


def test_enabled_master_silences_everything() -> None:
    rules = assemble_rules(ME, [], {("override", MASTER): DefaultRuleChange(enabled=True)})
    for _, ev, context, _ in DEFAULT_RULE_CASES:
        assert evaluate(rules, ev, ctx(**context)) == []


# -- event_match and globs --------------------------------------------------------------------

TOPIC_CASES = [
    # Spec "event_match" example: key content.topic, pattern lunc?*
    ("Lunch plans", True),
    ("LUNCH", True),
    (" lunch", False),
    ("lunc", False),
    (None, False),
]


@pytest.mark.parametrize(("topic", "matches"), TOPIC_CASES)
def test_event_match_whole_value(topic: Any, matches: bool) -> None:
    ev = event("m.room.topic", {"topic": topic}, state_key="")
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    assert condition_matches(cond, ev, ctx()) is matches


BODY_CASES = [
    # Spec example: key content.body, pattern ex*ple
    ("ex*ple", "An example event.", True),
    ("ex*ple", "exple", True),
    ("ex*ple", "An exciting triple-whammy", True),
    ("ex*ple", "Anexample", False),
    ("ex*ple", "examples", False),
    ("cake", "I like cake", True),
    ("cake", "CAKE!", True),
    ("cake", "cakes", False),
    ("cake", "cupcake", False),
    ("cake", "cake_time", False),  # _ is a word character
    ("cake", "cake9", False),
    ("cake", "écake", True),  # only [A-Za-z0-9_] are word characters
    ("cake", "(cake)", True),
    ("c?ke", "coke", True),
    ("c?ke", "cke", False),
    ("a.b", "a.b", True),  # regex characters are literal
    ("a.b", "axb", False),
    ("(x)+", "say (x)+ now", True),
    ("*", "", True),
    ("line*two", "line one\nand two", True),
]


@pytest.mark.parametrize(("pattern", "body", "matches"), BODY_CASES)
def test_event_match_body_word_boundaries(pattern: str, body: str, matches: bool) -> None:
    cond = {"kind": "event_match", "key": "content.body", "pattern": pattern}
    assert condition_matches(cond, msg(body), ctx()) is matches
    content_rule = PushRule("content", "r", ["notify"], pattern=pattern)
    assert (first_match([content_rule], msg(body), ctx()) is not None) is matches


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("m.room.message", "m.room.message", True),
        ("m.room.*", "m.room.message", True),
        ("m.room", "m.room.message", False),  # the whole value, not a word of it
        ("M.ROOM.MESSAGE", "m.room.message", True),
        ("*", "", True),
        ("?", "", False),
        ("a**b", "ab", True),
    ],
)
def test_glob_whole_value(pattern: str, value: str, matches: bool) -> None:
    assert glob_matches(pattern, value) is matches


def test_event_match_needs_a_string_value() -> None:
    cond = {"kind": "event_match", "key": "content.body", "pattern": "*"}
    assert not condition_matches(cond, msg(body=None), ctx())  # absent
    assert not condition_matches(cond, msg(body=5), ctx())
    assert not condition_matches(cond, msg(body={"a": "b"}), ctx())
    assert not condition_matches({"kind": "event_match", "key": "type"}, msg(), ctx())


# -- dotted paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("content.body", ["content", "body"]),
        ("content.m\\.relates_to.rel_type", ["content", "m.relates_to", "rel_type"]),
        ("content.m\\\\foo", ["content", "m\\foo"]),
        ("content.m\\xfoo", ["content", "m\\xfoo"]),  # other escapes are literal
        ("a\\\\.b", ["a\\", "b"]),
        ("type", ["type"]),
        ("", [""]),
    ],
)
def test_split_path(key: str, parts: list[str]) -> None:
    assert split_path(key) == parts


def test_lookup_escaped_and_unescaped_dots() -> None:
    ev = {"content": {"m.relates_to": {"rel_type": "x"}, "m": {"relates_to": "y"}}}
    assert lookup(ev, "content.m\\.relates_to.rel_type") == "x"
    assert lookup(ev, "content.m.relates_to") == "y"
    assert lookup({"content": {"m\\foo": 1}}, "content.m\\\\foo") == 1


# -- event_property_is / event_property_contains ------------------------------------------------

CREATE = event(
    "m.room.create",
    {"creator": OTHER, "m.federate": True, "room_version": "1", "n": 1, "z": None},
    state_key="",
)


@pytest.mark.parametrize(
    ("key", "value", "matches"),
    [
        ("content.m\\.federate", True, True),  # the spec's example
        ("content.m\\.federate", "true", False),
        ("content.m\\.federate", 1, False),
        ("content.m.federate", True, False),  # unescaped: content → m → federate
        ("content.n", 1, True),
        ("content.n", True, False),  # true is not 1
        ("content.n", "1", False),
        ("content.z", None, True),
        ("content.missing", None, False),
        ("content.room_version", "1", True),
        ("content", {"creator": OTHER}, False),  # compound values never match
    ],
)
def test_event_property_is(key: str, value: Any, matches: bool) -> None:
    cond = {"kind": "event_property_is", "key": key, "value": value}
    assert condition_matches(cond, CREATE, ctx()) is matches


ALIASES = event(
    "m.room.canonical_alias",
    {
        "alias": "#somewhere:localhost",
        "alt_aliases": ["#somewhere:example.org", "#myroom:example.com", 1, True, None, ["x"]],
    },
    state_key="",
)


@pytest.mark.parametrize(
    ("key", "value", "matches"),
    [
        ("content.alt_aliases", "#myroom:example.com", True),  # the spec's example
        ("content.alt_aliases", ":example.com", False),
        ("content.alt_aliases", 1, True),
        ("content.alt_aliases", True, True),
        ("content.alt_aliases", None, True),
        ("content.alt_aliases", "1", False),
        ("content.alt_aliases", ["x"], False),  # compound array items are ignored
        ("content.alias", "#somewhere:localhost", False),  # not an array
        ("content.nothing", "x", False),
    ],
)
def test_event_property_contains(key: str, value: Any, matches: bool) -> None:
    cond = {"kind": "event_property_contains", "key": key, "value": value}
    assert condition_matches(cond, ALIASES, ctx()) is matches


def test_mention_list_must_be_an_array() -> None:
    ev = msg(**{"m.mentions": {"user_ids": ME}})
    assert first_match(default_rules(ME), ev, ctx()).rule_id == ".m.rule.message"  # type: ignore[union-attr]


# -- contains_display_name, room_member_count, sender_notification_permission --------------------


@pytest.mark.parametrize(
    ("name", "body", "matches"),
    [
        ("Alice", "hi alice!", True),
        ("Alice", "Alice", True),
        ("Alice", "Alicent", False),
        ("Alice", "malice", False),
        ("A.B", "ping A.B now", True),  # literal, not a pattern
        ("A.B", "ping AxB now", False),
        ("Al*", "Albert", False),
        (None, "hi", False),
        ("", "hi", False),
        ("   ", "a    b", False),
    ],
)
def test_contains_display_name(name: str | None, body: str, matches: bool) -> None:
    cond = {"kind": "contains_display_name"}
    assert condition_matches(cond, msg(body), ctx(display_name=name)) is matches


@pytest.mark.parametrize(
    ("is_", "count", "matches"),
    [
        ("2", 2, True),
        ("2", 3, False),
        ("==2", 2, True),
        ("<3", 2, True),
        ("<3", 3, False),
        (">1", 2, True),
        (">2", 2, False),
        (">=2", 2, True),
        ("<=1", 2, False),
        ("<=2", 2, True),
        ("=2", 2, False),  # not a valid prefix
        ("two", 2, False),
        ("", 0, False),
        (" 2", 2, False),
        ("2.0", 2, False),
    ],
)
def test_room_member_count(is_: str, count: int, matches: bool) -> None:
    cond = {"kind": "room_member_count", "is": is_}
    assert condition_matches(cond, msg(), ctx(member_count=count)) is matches
    assert not condition_matches({"kind": "room_member_count", "is": 2}, msg(), ctx(member_count=2))


@pytest.mark.parametrize(
    ("key", "level", "levels", "matches"),
    [
        ("room", 50, {}, True),  # notifications.room defaults to 50
        ("room", 49, {}, False),
        ("room", 10, {"room": 10}, True),
        ("room", 9, {"room": 10}, False),
        ("room", 49, {"room": "10"}, False),  # a non-integer level means the default
        ("room", 50, {"room": True}, True),
        ("other", 50, {"room": 0}, True),  # unknown keys default to 50 too
        ("other", 0, {"room": 0}, False),
        ("room", math.inf, {"room": 100}, True),  # v12 room creators
    ],
)
def test_sender_notification_permission(
    key: str, level: float, levels: dict[str, Any], matches: bool
) -> None:
    cond = {"kind": "sender_notification_permission", "key": key}
    context = ctx(sender_power_level=level, notification_levels=levels)
    assert condition_matches(cond, msg(), context) is matches


def test_unknown_conditions_never_match() -> None:
    rule = PushRule(
        "override", "x", ["notify"], [{"kind": "org.example.new"}, {"kind": "event_match"}]
    )
    assert first_match([rule], msg(), ctx()) is None
    assert not condition_matches({"kind": "org.example.new"}, msg(), ctx())
    assert not condition_matches({}, msg(), ctx())


# -- rule kinds, order, actions -------------------------------------------------------------------


def test_room_and_sender_rules_and_disabled_rules() -> None:
    room = PushRule("room", ROOM, ["notify"])
    sender = PushRule("sender", OTHER, ["notify", {"set_tweak": "sound", "value": "x"}])
    assert first_match([room], msg(), ctx()) is room
    assert first_match([room], {**msg(), "room_id": "!other:x"}, ctx()) is None
    assert first_match([sender], msg(), ctx()) is sender
    assert first_match([sender], {**msg(), "sender": "@x:y"}, ctx()) is None
    off = PushRule("override", "off", ["notify"], enabled=False)
    assert first_match([off, room], msg(), ctx()) is room
    no_conditions = PushRule("override", "all", ["notify"])
    assert first_match([no_conditions], event("anything", {}), ctx()) is no_conditions


def test_user_rules_win_over_defaults() -> None:
    quiet_room = PushRule("room", ROOM, [])
    rules = assemble_rules(ME, [quiet_room])
    assert evaluate(rules, msg(), ctx()) == []
    # ...but a user mention is an override rule, above room rules.
    assert evaluate(rules, msg(**{"m.mentions": {"user_ids": [ME]}}), ctx()) == [
        "notify",
        _SOUND,
        _HL,
    ]


@pytest.mark.parametrize(
    ("actions", "cleaned", "highlight"),
    [
        (["dont_notify"], [], False),
        (["notify", "coalesce"], ["notify"], False),
        (["notify", {"set_tweak": "highlight"}], ["notify", {"set_tweak": "highlight"}], True),
        (["notify", {"set_tweak": "highlight", "value": False}], None, False),
        (["notify", {"set_tweak": "highlight", "value": "yes"}], None, False),
        ([{"set_tweak": "highlight", "value": True}], None, True),
    ],
)
def test_actions(actions: list[Any], cleaned: list[Any] | None, highlight: bool) -> None:
    assert clean_actions(actions) == (actions if cleaned is None else cleaned)
    assert is_highlight(actions) is highlight


def test_tweaks() -> None:
    actions = [
        "notify",
        {"set_tweak": "sound", "value": "bing"},
        {"set_tweak": "org.example.light"},
        {"set_tweak": 5},
        {"value": 1},
    ]
    assert tweaks(actions) == {"sound": "bing"}


# -- placing user rules (before / after) -----------------------------------------------------


@pytest.mark.parametrize(
    ("order", "rule", "before", "after", "expected"),
    [
        ([], "a", None, None, ["a"]),
        (["a", "b"], "c", None, None, ["c", "a", "b"]),  # new: most important
        (["a", "b"], "b", None, None, ["a", "b"]),  # update: keeps its place
        (["a", "b"], "c", "b", None, ["a", "c", "b"]),
        (["a", "b"], "c", "a", None, ["c", "a", "b"]),
        (["a", "b"], "c", None, "a", ["a", "c", "b"]),
        (["a", "b"], "c", None, "b", ["a", "b", "c"]),
        (["a", "b", "c"], "a", None, "c", ["b", "c", "a"]),  # moves
        (["a", "b", "c"], "c", "a", None, ["c", "a", "b"]),
        (["a", "b", "c"], "x", "a", "c", ["x", "a", "b", "c"]),  # before wins
    ],
)
def test_place_rule(
    order: list[str], rule: str, before: str | None, after: str | None, expected: list[str]
) -> None:
    assert place_rule(order, rule, before=before, after=after) == expected


@pytest.mark.parametrize(
    ("order", "rule", "before", "after"),
    [
        (["a"], "b", "zzz", None),
        (["a"], "b", None, ".m.rule.master"),  # not relative to server-default rules
        (["a"], "a", "a", None),
    ],
)
def test_place_rule_unknown_anchor(
    order: list[str], rule: str, before: str | None, after: str | None
) -> None:
    with pytest.raises(AnchorNotFound):
        place_rule(order, rule, before=before, after=after)
