"""Push rules: the server-default rule set and rule evaluation, as pure functions.

Spec: content/client-server-api/modules/push.md "Push Rules" (the kinds and the order
they are checked in), "Actions" and "Historical Actions", "Conditions", "Predefined
Rules" (as of v1.17, which removed the legacy body-mention rules: there are no default
content rules any more); content/appendices.md "Glob-style matching" and
"Dot-separated property paths".

Events are evaluated in the client format (``type``, ``sender``, ``room_id``,
``state_key``, ``content``...), the same view clients evaluate rules against.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

# The kinds in the order they are checked ("Push Rules").
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")
# Kinds whose rules carry explicit conditions; content rules carry a pattern.
CONDITION_KINDS = ("override", "underride")
MASTER = ".m.rule.master"
# "Historical Actions": MUST be ignored, i.e. stripped.
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})
# m.room.power_levels: the default level of a key in `notifications` (only `room` is
# defined; unknown keys get the same default).
DEFAULT_NOTIFICATION_LEVEL = 50
# The range of integers in canonical JSON.
MAX_SAFE_INT = 2**53 - 1

Action = str | dict[str, Any]


@dataclass(frozen=True, slots=True)
class PushRule:
    """One push rule of one kind. ``default``: a server-default rule (ID starts with
    a dot)."""

    kind: str
    rule_id: str
    actions: list[Action]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    pattern: str | None = None
    default: bool = False
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        """The PushRule object of the client API (definitions/push_rule.yaml)."""
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": list(self.actions),
        }
        if self.kind in CONDITION_KINDS:
            out["conditions"] = list(self.conditions)
        if self.kind == "content" and self.pattern is not None:
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True, slots=True)
class DefaultRuleChange:
    """The user's change to a server-default rule; None keeps the default."""

    enabled: bool | None = None
    actions: list[Action] | None = None


# -- the server-default rules ("Predefined Rules") -----------------------------------------


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def default_rules(user_id: str) -> list[PushRule]:
    """The server-default rules for ``user_id``, in the spec's order: override rules
    (``.m.rule.master`` first), then underride rules."""

    def override(rule_id: str, conditions: list[dict[str, Any]], actions: list[Action]) -> PushRule:
        return PushRule("override", rule_id, actions, conditions, default=True)

    def underride(
        rule_id: str, conditions: list[dict[str, Any]], actions: list[Action]
    ) -> PushRule:
        return PushRule("underride", rule_id, actions, conditions, default=True)

    return [
        # Default Override Rules
        replace(override(MASTER, [], []), enabled=False),
        override(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        override(
            ".m.rule.invite_for_me",
            [
                _match("type", "m.room.member"),
                _match("content.membership", "invite"),
                _match("state_key", user_id),
            ],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        override(".m.rule.member_event", [_match("type", "m.room.member")], []),
        override(
            ".m.rule.is_user_mention",
            [
                {
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": user_id,
                }
            ],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        override(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        override(
            ".m.rule.tombstone",
            [_match("type", "m.room.tombstone"), _match("state_key", "")],
            ["notify", dict(_HIGHLIGHT)],
        ),
        override(".m.rule.reaction", [_match("type", "m.reaction")], []),
        override(
            ".m.rule.room.server_acl",
            [_match("type", "m.room.server_acl"), _match("state_key", "")],
            [],
        ),
        override(
            ".m.rule.suppress_edits",
            [
                {
                    "kind": "event_property_is",
                    "key": "content.m\\.relates_to.rel_type",
                    "value": "m.replace",
                }
            ],
            [],
        ),
        # Default Underride Rules
        underride(
            ".m.rule.call",
            [_match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        underride(
            ".m.rule.encrypted_room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        underride(
            ".m.rule.room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        underride(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        underride(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]


# (kind, rule_id) of every server-default rule (the IDs do not depend on the user).
DEFAULT_RULE_KEYS = frozenset((r.kind, r.rule_id) for r in default_rules(""))


def assemble_rules(
    user_id: str,
    user_rules: Iterable[PushRule],
    changes: Mapping[tuple[str, str], DefaultRuleChange] | None = None,
) -> list[PushRule]:
    """Every rule of the user in evaluation order.

    "Predefined Rules": server-default rules rank below the user's rules of the same
    kind, except ``.m.rule.master``, which ranks above every other rule. ``user_rules``
    are in priority order within each kind; ``changes`` are the user's enabled/actions
    changes to server-default rules, keyed by (kind, rule_id).
    """
    changes = changes or {}
    defaults = []
    for rule in default_rules(user_id):
        change = changes.get((rule.kind, rule.rule_id))
        if change is not None:
            if change.enabled is not None:
                rule = replace(rule, enabled=change.enabled)
            if change.actions is not None:
                rule = replace(rule, actions=list(change.actions))
        defaults.append(rule)
    by_kind: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    for rule in user_rules:
        by_kind[rule.kind].append(rule)
    ordered = [r for r in defaults if r.rule_id == MASTER]
    for kind in KINDS:
        ordered += by_kind[kind]
        ordered += [r for r in defaults if r.kind == kind and r.rule_id != MASTER]
    return ordered


def ruleset_json(rules: Iterable[PushRule]) -> dict[str, list[dict[str, Any]]]:
    """The PushRuleset object (definitions/push_ruleset.yaml), each kind in order."""
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for rule in rules:
        out[rule.kind].append(rule.to_json())
    return out


# -- actions ("Actions") ---------------------------------------------------------------------


def clean_actions(actions: Iterable[Action]) -> list[Action]:
    """The actions without the historical ``dont_notify`` and ``coalesce``."""
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


def notifies(actions: Iterable[Action]) -> bool:
    return any(a == "notify" for a in actions)


def tweaks(actions: Iterable[Action]) -> dict[str, Any]:
    """The ``set_tweak`` actions as a dict. ``highlight`` without a value is true;
    another tweak without a value is left out."""
    out: dict[str, Any] = {}
    for action in actions:
        if not isinstance(action, Mapping) or not isinstance(action.get("set_tweak"), str):
            continue
        name = action["set_tweak"]
        if "value" in action:
            out[name] = action["value"]
        elif name == "highlight":
            out[name] = True
    return out


def is_highlight(actions: Iterable[Action]) -> bool:
    """The ``highlight`` tweak: true only when set, and set to true (or no value)."""
    return tweaks(actions).get("highlight") is True


# -- conditions ("Conditions") ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushContext:
    """What conditions need besides the event: for whom the rules run and the room."""

    user_id: str
    member_count: int
    # The user's display name in the room (contains_display_name).
    display_name: str | None = None
    # The sender's power level and the power levels' `notifications` object
    # (sender_notification_permission).
    sender_power_level: int | float = 0
    notification_levels: Mapping[str, Any] = field(default_factory=dict)


_MISSING = object()


def split_path(key: str) -> list[str]:
    """A dot-separated property path into property names: ``\\.`` is a literal dot,
    ``\\\\`` a literal backslash; any other backslash is kept as it is."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            buf.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


def lookup(event: Mapping[str, Any], key: str) -> Any:
    """The property at the dotted path ``key``, or ``_MISSING``."""
    value: Any = event
    for part in split_path(key):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


# Word characters for "word boundary": [A-Z], [a-z], [0-9] and _ (ASCII only).
_WORD_BEFORE = r"(?<![A-Za-z0-9_])"
_WORD_AFTER = r"(?![A-Za-z0-9_])"


@lru_cache(maxsize=1024)
def glob_regex(pattern: str, word_boundary: bool = False) -> re.Pattern[str]:
    """The regex of a glob (``*``: zero or more characters, ``?``: exactly one),
    case-insensitive. With ``word_boundary`` it finds a substring that starts and ends
    at a word boundary; without, it is meant for ``fullmatch``."""
    pattern = re.sub(r"\*+", "*", pattern)  # runs of * mean the same and backtrack badly
    body = "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if word_boundary:
        body = _WORD_BEFORE + body + _WORD_AFTER
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    regex = glob_regex(pattern, word_boundary)
    if word_boundary:
        return regex.search(value) is not None
    return regex.fullmatch(value) is not None


def is_scalar(value: object) -> bool:
    """A non-compound canonical JSON value: string, integer in range, boolean, null."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _same_scalar(a: object, b: object) -> bool:
    # type(...) is: true is not 1, and "1" is not 1 ("do not cast types").
    return is_scalar(a) and is_scalar(b) and type(a) is type(b) and a == b


Condition = Mapping[str, Any]
ConditionCheck = Callable[[Condition, Mapping[str, Any], PushContext], bool]


def _event_match(cond: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    key, pattern = cond.get("key"), cond.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return False
    value = lookup(event, key)
    if not isinstance(value, str):
        return False
    return glob_matches(pattern, value, word_boundary=key == "content.body")


def _event_property_is(cond: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    key = cond.get("key")
    if not isinstance(key, str) or "value" not in cond:
        return False
    return _same_scalar(lookup(event, key), cond["value"])


def _event_property_contains(cond: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    key = cond.get("key")
    if not isinstance(key, str) or "value" not in cond:
        return False
    values = lookup(event, key)
    if not isinstance(values, list):
        return False
    return any(_same_scalar(v, cond["value"]) for v in values)


def _contains_display_name(cond: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    body = lookup(event, "content.body")
    name = ctx.display_name
    if not isinstance(body, str) or not name or not name.strip():
        return False
    return _literal_word_regex(name).search(body) is not None


@lru_cache(maxsize=64)
def _literal_word_regex(text: str) -> re.Pattern[str]:
    return re.compile(_WORD_BEFORE + re.escape(text) + _WORD_AFTER, re.IGNORECASE)


_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


def _room_member_count(cond: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    spec = cond.get("is")
    m = _MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        return False
    return _COMPARE[m.group(1) or "=="](ctx.member_count, int(m.group(2)))


def _sender_notification_permission(
    cond: Condition, event: Mapping[str, Any], ctx: PushContext
) -> bool:
    key = cond.get("key")
    if not isinstance(key, str):
        return False
    required = ctx.notification_levels.get(key)
    if not isinstance(required, int) or isinstance(required, bool):
        required = DEFAULT_NOTIFICATION_LEVEL
    return ctx.sender_power_level >= required


CONDITIONS: dict[str, ConditionCheck] = {
    "event_match": _event_match,
    "event_property_is": _event_property_is,
    "event_property_contains": _event_property_contains,
    "contains_display_name": _contains_display_name,
    "room_member_count": _room_member_count,
    "sender_notification_permission": _sender_notification_permission,
}


def condition_matches(cond: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    """Unrecognised conditions never match."""
    check = CONDITIONS.get(cond.get("kind")) if isinstance(cond, Mapping) else None
    return check is not None and check(cond, event, ctx)


# -- evaluation ("Push Rules", "Conditions") -------------------------------------------------


def rule_matches(rule: PushRule, event: Mapping[str, Any], ctx: PushContext) -> bool:
    """Whether an enabled rule matches. Room and sender rules have the predefined
    condition that their rule_id is the event's room ID or sender; content rules match
    their pattern against ``content.body`` at word boundaries."""
    if not rule.enabled:
        return False
    if rule.kind in CONDITION_KINDS:
        return all(condition_matches(c, event, ctx) for c in rule.conditions)
    if rule.kind == "content":
        if rule.pattern is None:
            return False
        return _event_match({"key": "content.body", "pattern": rule.pattern}, event, ctx)
    if rule.kind == "room":
        return event.get("room_id") == rule.rule_id
    if rule.kind == "sender":
        return event.get("sender") == rule.rule_id
    return False


def first_match(
    rules: Sequence[PushRule], event: Mapping[str, Any], ctx: PushContext
) -> PushRule | None:
    """The highest-priority enabled rule that matches; ``rules`` in evaluation order."""
    for rule in rules:
        if rule_matches(rule, event, ctx):
            return rule
    return None


def evaluate(
    rules: Sequence[PushRule], event: Mapping[str, Any], ctx: PushContext
) -> list[Action] | None:
    """The actions of the first matching rule (historical actions stripped), or None
    when no rule matches (then the push gateway MUST NOT be notified)."""
    rule = first_match(rules, event, ctx)
    return None if rule is None else clean_actions(rule.actions)
