"""Push rules, pushers and the notifications list.

Spec: content/client-server-api/modules/push.md; api/client-server/pushrules.yaml
(GET /pushrules/, GET /pushrules/global/, GET/PUT/DELETE
/pushrules/global/{kind}/{ruleId}, GET/PUT .../enabled and .../actions), pusher.yaml
(GET /pushers, POST /pushers/set) and notifications.yaml (GET /notifications).
Bodies are checked here; the service holds the rules for ordering, server-default
rules and delivery.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.errors import bad_json, invalid_param, json_response, missing_param
from node.push.rules import (
    CONDITION_KINDS,
    HISTORICAL_ACTIONS,
    KINDS,
    Action,
    PushRule,
    clean_actions,
    is_scalar,
)
from node.push.service import NOTIFICATIONS_MAX_LIMIT
from node.push.store import Pusher

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"
RULE = V3 + "/pushrules/{scope}/{kind}/{rule_id}"

# pusher.yaml: "Max length, 512 bytes" (pushkey) and "Max length, 64 chars" (app_id).
MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_CHARS = 64
NOTIFICATIONS_DEFAULT_LIMIT = 20
KNOWN_ACTIONS = frozenset({"notify"}) | HISTORICAL_ACTIONS


# -- parsing ---------------------------------------------------------------------------------


def _kind_and_rule(request: web.Request) -> tuple[str, str]:
    if request.match_info["scope"] != "global":
        raise invalid_param("The only push rule scope is 'global'")
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind, request.match_info["rule_id"]


def parse_actions(value: Any) -> list[Action]:
    """A rule's actions: ``notify``, ``set_tweak`` objects, and the historical
    ``dont_notify``/``coalesce``, which are stripped ("Historical Actions")."""
    if value is None:
        raise missing_param("Missing 'actions'")
    if not isinstance(value, list):
        raise bad_json("'actions' must be a list")
    for action in value:
        if isinstance(action, str):
            if action not in KNOWN_ACTIONS:
                raise invalid_param(f"Unknown action {action!r}")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise invalid_param("An action object needs a string 'set_tweak'")
        else:
            raise bad_json("Each action must be a string or an object")
    return clean_actions(value)


_MEMBER_COUNT_CHARS = set("=<>0123456789")


def parse_condition(value: Any) -> dict[str, Any]:
    """One condition. Known kinds must carry their parameters; conditions of unknown
    kinds are kept (they never match, as the spec says)."""
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise bad_json("Each condition must be an object with a string 'kind'")
    kind = value["kind"]
    if kind in ("event_match", "event_property_is", "event_property_contains"):
        if not isinstance(value.get("key"), str):
            raise invalid_param(f"A {kind} condition needs a string 'key'")
    if kind == "event_match" and not isinstance(value.get("pattern"), str):
        raise invalid_param("An event_match condition needs a string 'pattern'")
    if kind in ("event_property_is", "event_property_contains"):
        if "value" not in value or not is_scalar(value["value"]):
            raise invalid_param(
                f"A {kind} condition needs a 'value' that is a string, integer, boolean or null"
            )
    if kind == "room_member_count":
        spec = value.get("is")
        if not isinstance(spec, str) or not spec or not set(spec) <= _MEMBER_COUNT_CHARS:
            raise invalid_param("A room_member_count condition needs 'is' like '2' or '>=10'")
    if kind == "sender_notification_permission" and not isinstance(value.get("key"), str):
        raise invalid_param("A sender_notification_permission condition needs a string 'key'")
    return value


def parse_rule(kind: str, rule_id: str, body: dict[str, Any]) -> PushRule:
    """The body of PUT /pushrules/global/{kind}/{ruleId}."""
    if not rule_id or "/" in rule_id or "\\" in rule_id:
        raise invalid_param("Rule IDs must not be empty or contain '/' or '\\'")
    actions = parse_actions(body.get("actions"))
    conditions: list[dict[str, Any]] = []
    pattern = None
    if kind in CONDITION_KINDS:
        raw = body.get("conditions", [])
        if not isinstance(raw, list):
            raise bad_json("'conditions' must be a list")
        conditions = [parse_condition(c) for c in raw]
    elif kind == "content":
        pattern = body.get("pattern")
        if pattern is None:
            raise missing_param("Content rules need a 'pattern'")
        if not isinstance(pattern, str):
            raise bad_json("'pattern' must be a string")
    return PushRule(kind, rule_id, actions, conditions, pattern)


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing_param(f"Missing '{name}'")
    if not isinstance(value, str):
        raise bad_json(f"'{name}' must be a string")
    return value


def parse_pusher(body: dict[str, Any], requester: Requester) -> Pusher | None:
    """The body of POST /pushers/set: a pusher, or None for ``kind: null`` (delete)."""
    if "kind" not in body:
        raise missing_param("Missing 'kind'")
    kind = body["kind"]
    if kind is not None and not isinstance(kind, str):
        raise bad_json("'kind' must be a string or null")
    app_id = _required_str(body, "app_id")
    pushkey = _required_str(body, "pushkey")
    if len(app_id) > MAX_APP_ID_CHARS:
        raise invalid_param(f"'app_id' is longer than {MAX_APP_ID_CHARS} characters")
    if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
        raise invalid_param(f"'pushkey' is longer than {MAX_PUSHKEY_BYTES} bytes")
    if kind is None:
        return None
    missing = [
        n for n in ("app_display_name", "device_display_name", "lang", "data") if n not in body
    ]
    if missing:
        raise missing_param(f"Missing parameters: {', '.join(missing)}")
    for name in ("app_display_name", "device_display_name", "lang"):
        if not isinstance(body[name], str):
            raise bad_json(f"'{name}' must be a string")
    if not isinstance(body["data"], dict):
        raise bad_json("'data' must be an object")
    profile_tag = body.get("profile_tag")
    if profile_tag is not None and not isinstance(profile_tag, str):
        raise bad_json("'profile_tag' must be a string")
    return Pusher(
        user_id=requester.user_id,
        app_id=app_id,
        pushkey=pushkey,
        kind=kind,
        app_display_name=body["app_display_name"],
        device_display_name=body["device_display_name"],
        profile_tag=profile_tag,
        lang=body["lang"],
        data=body["data"],
        device_id=requester.device_id,
    )


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid_param(f"'{name}' must be an integer") from None
    if not 0 <= value < 2**63:
        raise invalid_param(f"'{name}' is out of range")
    return value


# -- push rules ------------------------------------------------------------------------------


@routes.get(V3 + "/pushrules/")
@routes.get(V3 + "/pushrules")
@authenticated
async def get_all_rules(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/pushrules/"""
    return json_response({"global": await request.app[NODE].push.ruleset(requester.user_id)})


@routes.get(V3 + "/pushrules/global/")
@routes.get(V3 + "/pushrules/global")
@authenticated
async def get_global_rules(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/pushrules/global/"""
    return json_response(await request.app[NODE].push.ruleset(requester.user_id))


@routes.get(RULE)
@authenticated
async def get_rule(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    kind, rule_id = _kind_and_rule(request)
    rule = await request.app[NODE].push.get_rule(requester.user_id, kind, rule_id)
    return json_response(rule.to_json())


@routes.put(RULE)
@authenticated
async def put_rule(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    kind, rule_id = _kind_and_rule(request)
    rule = parse_rule(kind, rule_id, await json_object(request))
    await request.app[NODE].push.put_rule(
        requester.user_id,
        rule,
        before=request.query.get("before"),
        after=request.query.get("after"),
    )
    return json_response({})


@routes.delete(RULE)
@authenticated
async def delete_rule(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    kind, rule_id = _kind_and_rule(request)
    await request.app[NODE].push.delete_rule(requester.user_id, kind, rule_id)
    return json_response({})


@routes.get(RULE + "/enabled")
@authenticated
async def get_enabled(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
    kind, rule_id = _kind_and_rule(request)
    rule = await request.app[NODE].push.get_rule(requester.user_id, kind, rule_id)
    return json_response({"enabled": rule.enabled})


@routes.put(RULE + "/enabled")
@authenticated
async def put_enabled(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
    kind, rule_id = _kind_and_rule(request)
    body = await json_object(request)
    if "enabled" not in body:
        raise missing_param("Missing 'enabled'")
    if not isinstance(body["enabled"], bool):
        raise bad_json("'enabled' must be a boolean")
    await request.app[NODE].push.set_enabled(requester.user_id, kind, rule_id, body["enabled"])
    return json_response({})


@routes.get(RULE + "/actions")
@authenticated
async def get_actions(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
    kind, rule_id = _kind_and_rule(request)
    rule = await request.app[NODE].push.get_rule(requester.user_id, kind, rule_id)
    return json_response({"actions": rule.actions})


@routes.put(RULE + "/actions")
@authenticated
async def put_actions(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
    kind, rule_id = _kind_and_rule(request)
    actions = parse_actions((await json_object(request)).get("actions"))
    await request.app[NODE].push.set_actions(requester.user_id, kind, rule_id, actions)
    return json_response({})


# -- pushers -------------------------------------------------------------------------------


@routes.get(V3 + "/pushers")
@authenticated
async def get_pushers(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/pushers"""
    pushers = await request.app[NODE].push.pushers(requester.user_id)
    return json_response({"pushers": [p.to_json() for p in pushers]})


@routes.post(V3 + "/pushers/set")
@authenticated
async def set_pusher(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/pushers/set"""
    body = await json_object(request)
    pusher = parse_pusher(body, requester)
    push = request.app[NODE].push
    if pusher is None:
        await push.delete_pusher(requester.user_id, body["app_id"], body["pushkey"])
    else:
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise bad_json("'append' must be a boolean")
        await push.set_pusher(pusher, append=append)
    return json_response({})


# -- notifications ---------------------------------------------------------------------------


@routes.get(V3 + "/notifications")
@authenticated
async def get_notifications(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/notifications"""
    from_token = _query_int(request, "from")
    limit = _query_int(request, "limit")
    if limit == 0:
        raise invalid_param("'limit' must be positive")
    limit = min(limit or NOTIFICATIONS_DEFAULT_LIMIT, NOTIFICATIONS_MAX_LIMIT)
    body = await request.app[NODE].push.notifications(
        requester.user_id,
        from_token=from_token,
        limit=limit,
        only_highlight=request.query.get("only") == "highlight",
    )
    return json_response(body)
