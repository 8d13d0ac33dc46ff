"""Push rules and pushers through the client API of a real node (aiohttp and nio).

Spec: api/client-server/pushrules.yaml, pusher.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD
from tests.push.conftest import OWNER_ID, call

SPEC_RULES = json.loads((Path(__file__).parent / "spec_default_rules.json").read_text())
GATEWAY = "https://push.example.org/_matrix/push/v1/notify"


def rule_ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [r["rule_id"] for r in ruleset[kind]]


async def test_default_ruleset(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    everything = await call(http, "GET", f"{v3}/pushrules/", token)
    assert set(everything) == {"global"}
    ruleset = await call(http, "GET", f"{v3}/pushrules/global/", token)
    assert ruleset == everything["global"]
    expected = json.loads(
        json.dumps({k: SPEC_RULES[k] for k in ("override", "underride")}).replace(
            SPEC_RULES["user_id_placeholder"], OWNER_ID
        )
    )
    assert ruleset == {"content": [], "room": [], "sender": [], **expected}
    # nio understands it.
    parsed = nio.PushRuleset.from_dict(ruleset)
    assert parsed.override[0].id == ".m.rule.master"


async def test_rule_crud_and_order(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    base = f"{v3}/pushrules/global"
    spec_example = {"pattern": "cake*lie", "actions": ["notify"]}
    assert await call(http, "PUT", f"{base}/content/nocake", token, spec_example) == {}
    got = await call(http, "GET", f"{base}/content/nocake", token)
    assert got == {
        "rule_id": "nocake",
        "default": False,
        "enabled": True,
        "actions": ["notify"],
        "pattern": "cake*lie",
    }
    # Historical actions are stripped.
    await call(
        http, "PUT", f"{base}/content/nocake", token, {"pattern": "x", "actions": ["dont_notify"]}
    )
    got = await call(http, "GET", f"{base}/content/nocake", token)
    assert got["actions"] == [] and got["pattern"] == "x"

    cond = [{"kind": "event_match", "key": "content.body", "pattern": "beer"}]
    for rid in ("a", "b"):
        await call(
            http, "PUT", f"{base}/override/{rid}", token, {"conditions": cond, "actions": []}
        )
    await call(http, "PUT", f"{base}/override/c", token, {"actions": []}, after="b")
    await call(http, "PUT", f"{base}/override/d", token, {"actions": []}, before="b")
    await call(http, "PUT", f"{base}/override/e", token, {"actions": []}, before="a", after="d")
    ruleset = await call(http, "GET", f"{base}/", token)
    override = rule_ids(ruleset, "override")
    assert override[:6] == [".m.rule.master", "d", "b", "c", "e", "a"]
    assert override[6] == ".m.rule.suppress_notices"
    got = await call(http, "GET", f"{base}/override/b", token)
    assert got["conditions"] == cond and "pattern" not in got

    # An update keeps the rule's place (and its enabled flag).
    await call(http, "PUT", f"{base}/override/c/enabled", token, {"enabled": False})
    await call(http, "PUT", f"{base}/override/c", token, {"actions": ["notify"]})
    ruleset = await call(http, "GET", f"{base}/", token)
    assert rule_ids(ruleset, "override")[3] == "c"
    assert await call(http, "GET", f"{base}/override/c/enabled", token) == {"enabled": False}
    assert await call(http, "GET", f"{base}/override/c/actions", token) == {"actions": ["notify"]}

    # Room and sender rules, IDs with characters to escape in the path.
    room_id = "!dj234r78wl45Gh4D:matrix.org"
    await call(http, "PUT", f"{base}/room/{quote(room_id, safe='')}", token, {"actions": []})
    await call(http, "PUT", f"{base}/sender/{quote('@spambot:matrix.org')}", token, {"actions": []})
    ruleset = await call(http, "GET", f"{base}/", token)
    assert ruleset["room"] == [
        {"rule_id": room_id, "default": False, "enabled": True, "actions": []}
    ]
    assert rule_ids(ruleset, "sender") == ["@spambot:matrix.org"]

    assert await call(http, "DELETE", f"{base}/override/b", token) == {}
    missing = await call(http, "DELETE", f"{base}/override/b", token, status=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    missing = await call(http, "GET", f"{base}/override/b", token, status=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    ruleset = await call(http, "GET", f"{base}/", token)
    assert rule_ids(ruleset, "override")[:5] == [".m.rule.master", "d", "c", "e", "a"]


async def test_server_default_rules_enabled_and_actions(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    base = f"{v3}/pushrules/global"
    assert await call(http, "GET", f"{base}/override/.m.rule.master/enabled", token) == {
        "enabled": False
    }
    await call(http, "PUT", f"{base}/override/.m.rule.master/enabled", token, {"enabled": True})
    master = await call(http, "GET", f"{base}/override/.m.rule.master", token)
    assert master == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": True,
        "actions": [],
        "conditions": [],
    }
    new_actions = ["notify", {"set_tweak": "sound", "value": "bing"}]
    await call(
        http, "PUT", f"{base}/underride/.m.rule.message/actions", token, {"actions": new_actions}
    )
    got = await call(http, "GET", f"{base}/underride/.m.rule.message/actions", token)
    assert got == {"actions": new_actions}
    # Changing the actions leaves enabled alone, and the other way round.
    await call(http, "PUT", f"{base}/underride/.m.rule.message/enabled", token, {"enabled": False})
    rule = await call(http, "GET", f"{base}/underride/.m.rule.message", token)
    assert rule["actions"] == new_actions and rule["enabled"] is False
    # ...and survive a restart of the service's cache: they are stored.
    node.node.push._rules.clear()
    rule = await call(http, "GET", f"{base}/underride/.m.rule.message", token)
    assert rule["actions"] == new_actions and rule["enabled"] is False
    # A default rule of another kind does not exist.
    missing = await call(http, "GET", f"{base}/override/.m.rule.message", token, status=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    missing = await call(
        http, "PUT", f"{base}/override/.m.rule.message/enabled", token, {"enabled": True}, 404
    )
    assert missing["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "status", "errcode"),
    [
        ("GET", "/override/nope", None, {}, 404, "M_NOT_FOUND"),
        ("GET", "/override/nope/enabled", None, {}, 404, "M_NOT_FOUND"),
        ("GET", "/override/nope/actions", None, {}, 404, "M_NOT_FOUND"),
        ("PUT", "/override/nope/enabled", {"enabled": True}, {}, 404, "M_NOT_FOUND"),
        ("PUT", "/override/nope/actions", {"actions": []}, {}, 404, "M_NOT_FOUND"),
        ("GET", "/sideways/x", None, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/sideways/x", {"actions": []}, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/override/.mine", {"actions": []}, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/override/.m.rule.master", {"actions": []}, {}, 400, "M_INVALID_PARAM"),
        ("DELETE", "/override/.m.rule.master", None, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/override/a%5Cb", {"actions": []}, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/override/x", {}, {}, 400, "M_MISSING_PARAM"),
        ("PUT", "/override/x", {"actions": "notify"}, {}, 400, "M_BAD_JSON"),
        ("PUT", "/override/x", {"actions": [5]}, {}, 400, "M_BAD_JSON"),
        ("PUT", "/override/x", {"actions": ["shout"]}, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/override/x", {"actions": [{"value": 1}]}, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/override/x", {"actions": [], "conditions": {}}, {}, 400, "M_BAD_JSON"),
        ("PUT", "/override/x", {"actions": [], "conditions": [{}]}, {}, 400, "M_BAD_JSON"),
        (
            "PUT",
            "/override/x",
            {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]},
            {},
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            "/override/x",
            {"actions": [], "conditions": [{"kind": "room_member_count", "is": "lots"}]},
            {},
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            "/override/x",
            {
                "actions": [],
                "conditions": [{"kind": "event_property_is", "key": "a", "value": [1]}],
            },
            {},
            400,
            "M_INVALID_PARAM",
        ),
        ("PUT", "/content/x", {"actions": []}, {}, 400, "M_MISSING_PARAM"),
        ("PUT", "/content/x", {"actions": [], "pattern": 5}, {}, 400, "M_BAD_JSON"),
        ("PUT", "/override/x", {"actions": []}, {"before": "nope"}, 400, "M_UNKNOWN"),
        ("PUT", "/override/x", {"actions": []}, {"after": ".m.rule.master"}, 400, "M_UNKNOWN"),
        ("PUT", "/override/x/enabled", {"enabled": "yes"}, {}, 400, "M_BAD_JSON"),
        ("PUT", "/override/x/enabled", {}, {}, 400, "M_MISSING_PARAM"),
        ("PUT", "/override/x/actions", {"actions": {}}, {}, 400, "M_BAD_JSON"),
    ],
)
async def test_bad_rule_requests(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    method: str,
    path: str,
    body: Any,
    params: dict[str, str],
    status: int,
    errcode: str,
) -> None:
    got = await call(
        http, method, f"{v3}/pushrules/global{path}", token, body, status=status, **params
    )
    assert got["errcode"] == errcode
    ruleset = await call(http, "GET", f"{v3}/pushrules/global/", token)
    assert all(r["default"] for kind in ruleset.values() for r in kind)  # nothing stored


async def test_bad_scope_and_body(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    got = await call(http, "GET", f"{v3}/pushrules/device/override/x", token, status=400)
    assert got["errcode"] == "M_INVALID_PARAM"
    async with http.put(
        f"{v3}/pushrules/global/override/x",
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 400 and (await r.json())["errcode"] == "M_NOT_JSON"
    async with http.get(f"{v3}/pushrules/") as r:
        assert r.status == 401 and (await r.json())["errcode"] == "M_MISSING_TOKEN"


async def test_nio_push_rules(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        got = await client.set_pushrule(
            "global",
            nio.PushRuleKind.override,
            "beer",
            actions=[nio.PushNotify(), nio.PushSetTweak("sound", "beeroclock.wav")],
            conditions=[
                nio.PushEventMatch("content.body", "beer"),
                nio.PushRoomMemberCount(10, "<="),
            ],
        )
        assert isinstance(got, nio.SetPushRuleResponse), got
        got = await client.set_pushrule(
            "global",
            nio.PushRuleKind.content,
            "tea",
            actions=[nio.PushNotify()],
            pattern="tea",
            before="nope",
        )
        assert isinstance(got, nio.SetPushRuleError) and got.status_code == "M_UNKNOWN"
        enabled = await client.enable_pushrule("global", nio.PushRuleKind.override, "beer", False)
        assert isinstance(enabled, nio.EnablePushRuleResponse), enabled
        actions = await client.set_pushrule_actions(
            "global", nio.PushRuleKind.underride, ".m.rule.message", [nio.PushNotify()]
        )
        assert isinstance(actions, nio.SetPushRuleActionsResponse), actions
        url = f"{client_url}/_matrix/client/v3/pushrules/global/override/beer"
        async with client.client_session.get(
            url, headers={"Authorization": f"Bearer {client.access_token}"}
        ) as r:
            rule = await r.json()
        assert rule == {
            "rule_id": "beer",
            "default": False,
            "enabled": False,
            "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
            "conditions": [
                {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                {"kind": "room_member_count", "is": "<=10"},
            ],
        }
        deleted = await client.delete_pushrule("global", nio.PushRuleKind.override, "beer")
        assert isinstance(deleted, nio.DeletePushRuleResponse), deleted
        again = await client.delete_pushrule("global", nio.PushRuleKind.override, "beer")
        assert isinstance(again, nio.DeletePushRuleError) and again.status_code == "M_NOT_FOUND"
    finally:
        await client.close()


# -- pushers -------------------------------------------------------------------------------------


def pusher_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lang": "en",
        "kind": "http",
        "app_display_name": "Mat Rix",
        "device_display_name": "iPhone 9",
        "profile_tag": "xxyyzz",
        "app_id": "com.example.app.ios",
        "pushkey": "APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ",
        "data": {"url": GATEWAY, "format": "event_id_only", "org.example.x": 1},
        "append": False,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


async def test_pushers_set_get_update_delete(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    assert await call(http, "GET", f"{v3}/pushers", token) == {"pushers": []}
    assert await call(http, "POST", f"{v3}/pushers/set", token, pusher_body()) == {}
    got = await call(http, "GET", f"{v3}/pushers", token)
    assert got == {
        "pushers": [
            {
                "pushkey": "APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ",
                "kind": "http",
                "app_id": "com.example.app.ios",
                "app_display_name": "Mat Rix",
                "device_display_name": "iPhone 9",
                "profile_tag": "xxyyzz",
                "lang": "en",
                "data": {"url": GATEWAY, "format": "event_id_only", "org.example.x": 1},
            }
        ]
    }
    # Same app_id and pushkey: an update, not a second pusher.
    await call(http, "POST", f"{v3}/pushers/set", token, pusher_body(device_display_name="P2"))
    await call(http, "POST", f"{v3}/pushers/set", token, pusher_body(pushkey="other", append=True))
    got = (await call(http, "GET", f"{v3}/pushers", token))["pushers"]
    assert sorted((p["pushkey"], p["device_display_name"]) for p in got) == [
        ("APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ", "P2"),
        ("other", "iPhone 9"),
    ]
    # kind null deletes; only app_id and pushkey are needed.
    delete = {"kind": None, "app_id": "com.example.app.ios", "pushkey": "other"}
    assert await call(http, "POST", f"{v3}/pushers/set", token, delete) == {}
    assert await call(http, "POST", f"{v3}/pushers/set", token, delete) == {}  # already gone
    got = (await call(http, "GET", f"{v3}/pushers", token))["pushers"]
    assert [p["pushkey"] for p in got] == ["APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ"]


@pytest.mark.parametrize(
    ("changes", "errcode"),
    [
        ({"data": {"url": "ftp://push.example.org/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
        ({"data": {"url": "https://push.example.org/notify"}}, "M_INVALID_PARAM"),
        ({"data": {"url": "https:///_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
        ({"data": {"url": 5}}, "M_INVALID_PARAM"),
        ({"data": {}}, "M_INVALID_PARAM"),
        ({"data": "x"}, "M_BAD_JSON"),
        ({"kind": "email"}, "M_INVALID_PARAM"),
        ({"kind": 5}, "M_BAD_JSON"),
        ({"kind": ...}, "M_MISSING_PARAM"),
        ({"lang": ..., "data": ...}, "M_MISSING_PARAM"),
        ({"app_id": ...}, "M_MISSING_PARAM"),
        ({"pushkey": 5}, "M_BAD_JSON"),
        ({"pushkey": "k" * 513}, "M_INVALID_PARAM"),
        ({"app_id": "a" * 65}, "M_INVALID_PARAM"),
        ({"append": "yes"}, "M_BAD_JSON"),
        ({"profile_tag": 1}, "M_BAD_JSON"),
    ],
)
async def test_bad_pushers(
    http: aiohttp.ClientSession, v3: str, token: str, changes: dict[str, Any], errcode: str
) -> None:
    got = await call(http, "POST", f"{v3}/pushers/set", token, pusher_body(**changes), 400)
    assert got["errcode"] == errcode
    if changes == {"lang": ..., "data": ...}:
        assert got["error"] == "Missing parameters: lang, data"
    assert await call(http, "GET", f"{v3}/pushers", token) == {"pushers": []}


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"from": "abc"}, "M_INVALID_PARAM"),
        ({"limit": "-1"}, "M_INVALID_PARAM"),
        ({"limit": "0"}, "M_INVALID_PARAM"),
        ({"from": "9" * 40}, "M_INVALID_PARAM"),
    ],
)
async def test_bad_notifications_requests(
    http: aiohttp.ClientSession, v3: str, token: str, params: dict[str, str], errcode: str
) -> None:
    got = await call(http, "GET", f"{v3}/notifications", token, status=400, **params)
    assert got["errcode"] == errcode


async def test_no_notifications_yet(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    assert await call(http, "GET", f"{v3}/notifications", token) == {"notifications": []}
