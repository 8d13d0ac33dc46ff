"""``m.push_rules`` in /sync's global ``account_data``: in every initial sync, and in an
incremental one whenever the rules changed; readable (not writable) as account data.

Spec: content/client-server-api/modules/push.md "Push Rules: Events" (sent in the
``account_data`` of the next /sync after the user changes their rules; the content is
the current rules); modules/account_data.md "Server Behaviour" (405 on setting it,
reading works as normal); event-schemas m.push_rules (``{"global": Ruleset}``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import nio

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD
from tests.push.conftest import OWNER_ID, call

PUSH_RULES = "m.push_rules"
ME = quote(OWNER_ID)


async def sync(
    http: aiohttp.ClientSession, v3: str, token: str, since: str | None = None, **params: str
) -> Any:
    query = {"timeout": "0", **params}
    if since is not None:
        query["since"] = since
    return await call(http, "GET", f"{v3}/sync", token, **query)


def global_account_data(response: Any) -> dict[str, Any]:
    events = response.get("account_data", {}).get("events", [])
    types = [e["type"] for e in events]
    assert len(types) == len(set(types)), types  # each type at most once
    return {e["type"]: e["content"] for e in events}


async def current_rules(http: aiohttp.ClientSession, v3: str, token: str) -> Any:
    return {"global": await call(http, "GET", f"{v3}/pushrules/global/", token)}


async def test_initial_sync_carries_the_rules(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    rules = await current_rules(http, v3, token)
    assert rules["global"]["override"][0]["rule_id"] == ".m.rule.master"
    first = await sync(http, v3, token)
    assert global_account_data(first)[PUSH_RULES] == rules
    # Nothing changed: an incremental sync does not send them again.
    later = await sync(http, v3, token, first["next_batch"])
    assert PUSH_RULES not in global_account_data(later)
    # Readable as account data, not writable.
    url = f"{v3}/user/{ME}/account_data/{PUSH_RULES}"
    assert await call(http, "GET", url, token) == rules
    refused = await call(http, "PUT", url, token, {"global": {}}, status=405)
    assert refused["errcode"] == "M_BAD_JSON"
    assert await call(http, "GET", url, token) == rules


async def test_every_kind_of_change_is_synced(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    base = f"{v3}/pushrules/global"
    since = (await sync(http, v3, token))["next_batch"]
    changes: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/content/cake", {"pattern": "cake*", "actions": ["notify"]}),
        ("PUT", "/content/cake/enabled", {"enabled": False}),
        ("PUT", "/content/cake/actions", {"actions": []}),
        ("PUT", "/override/.m.rule.master/enabled", {"enabled": True}),
        ("PUT", "/underride/.m.rule.message/actions", {"actions": []}),
        ("DELETE", "/content/cake", {}),
    ]
    for method, path, body in changes:
        before = await current_rules(http, v3, token)
        await call(http, method, base + path, token, body)
        data = await sync(http, v3, token, since)
        got = global_account_data(data)[PUSH_RULES]
        assert got == await current_rules(http, v3, token)
        assert got != before, path
        since = data["next_batch"]
    # A change that fails changes nothing and sends nothing.
    await call(http, "DELETE", f"{base}/content/cake", token, status=404)
    await call(http, "PUT", f"{base}/override/x", token, {"actions": []}, before="nope", status=400)
    assert PUSH_RULES not in global_account_data(await sync(http, v3, token, since))


async def test_a_waiting_sync_wakes_for_a_rule_change(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    since = (await sync(http, v3, token))["next_batch"]
    waiting = asyncio.create_task(sync(http, v3, token, since, timeout="10000"))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    quiet_room = f"{v3}/pushrules/global/room/!quiet:example.org"
    await call(http, "PUT", quiet_room, token, {"actions": []})
    got = await asyncio.wait_for(waiting, 5)
    rooms = global_account_data(got)[PUSH_RULES]["global"]["room"]
    assert [r["rule_id"] for r in rooms] == ["!quiet:example.org"]


async def test_the_account_data_filter_applies(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    without = json.dumps({"account_data": {"not_types": [PUSH_RULES]}})
    assert PUSH_RULES not in global_account_data(await sync(http, v3, token, filter=without))
    only = json.dumps({"account_data": {"types": [PUSH_RULES]}})
    await call(http, "PUT", f"{v3}/user/{ME}/account_data/org.example.other", token, {"a": 1})
    assert set(global_account_data(await sync(http, v3, token, filter=only))) == {PUSH_RULES}
    # limit 1 keeps the newest change, which is the rules after they change.
    newest = json.dumps({"account_data": {"limit": 1}})
    assert set(global_account_data(await sync(http, v3, token, filter=newest))) == {
        "org.example.other"
    }
    await call(http, "PUT", f"{v3}/pushrules/global/sender/@x:example.org", token, {"actions": []})
    assert set(global_account_data(await sync(http, v3, token, filter=newest))) == {PUSH_RULES}


async def test_the_content_is_the_live_rules(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    """What /sync and GET send is the rules as they are, even if the stored item is
    stale (say, written by an older Croft whose default rules differed)."""
    since = (await sync(http, v3, token))["next_batch"]
    await node.node.account_data.store.put(OWNER_ID, "", PUSH_RULES, {"global": {"stale": []}})
    node.node.notifier.notify("account_data", await node.node.account_data.store.max_stream_id())
    rules = await current_rules(http, v3, token)
    assert global_account_data(await sync(http, v3, token, since))[PUSH_RULES] == rules
    assert global_account_data(await sync(http, v3, token))[PUSH_RULES] == rules
    url = f"{v3}/user/{ME}/account_data/{PUSH_RULES}"
    assert await call(http, "GET", url, token) == rules


async def test_nio_sees_the_rules_and_their_changes(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        assert isinstance(await client.login(PASSWORD, device_name="nio"), nio.LoginResponse)
        first = await client.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse), first
        events = [e for e in first.account_data_events if isinstance(e, nio.PushRulesEvent)]
        assert len(events) == 1
        assert events[0].global_rules.override[0].id == ".m.rule.master"
        assert events[0].global_rules.content == []

        quiet = nio.PushCondition.from_dict(
            {"kind": "event_match", "key": "content.body", "pattern": "*quiet*"}
        )
        added = await client.set_pushrule(
            "global", nio.PushRuleKind.override, "shh", conditions=[quiet], actions=[]
        )
        assert isinstance(added, nio.SetPushRuleResponse), added
        later = await client.sync(timeout=0, since=first.next_batch)
        assert isinstance(later, nio.SyncResponse), later
        events = [e for e in later.account_data_events if isinstance(e, nio.PushRulesEvent)]
        assert len(events) == 1
        override = [r.id for r in events[0].global_rules.override]
        assert override[:2] == [".m.rule.master", "shh"]
    finally:
        await client.close()
