"""POST /search against a real node: several rooms, rank and recent order, paging with
next_batch, groups, context, state, and bad input.

Spec: modules/search.md, api/client-server/search.yaml.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.relations.client import OWNER_ID, Client


def room_events(term: str, **criteria: Any) -> dict[str, Any]:
    return {"search_categories": {"room_events": {"search_term": term, **criteria}}}


async def search(
    owner: Client, term: str, next_batch: str | None = None, **criteria: Any
) -> dict[str, Any]:
    params = {"next_batch": next_batch} if next_batch else None
    data = await owner.call("POST", "v3/search", room_events(term, **criteria), params=params)
    return dict(data["search_categories"]["room_events"])


def ids(result: dict[str, Any]) -> list[str]:
    return [r["result"]["event_id"] for r in result["results"]]


async def test_search_across_rooms_by_rank_and_recent(owner: Client) -> None:
    kitchen = await owner.create_room(name="Kitchen")
    garden = await owner.create_room(name="Garden", topic="where the cheese grows")
    private = await owner.create_room()
    weak = await owner.text(kitchen, "a cheese sandwich with ham, lettuce, tomato and pickles")
    strong = await owner.text(garden, "cheese cheese cheese")
    newest = await owner.text(kitchen, "more cheese please")
    await owner.text(private, "nothing to see here")

    ranked = await search(owner, "cheese", keys=["content.body"])
    assert set(ids(ranked)) == {weak, strong, newest}
    assert ids(ranked)[0] == strong
    ranks = [r["rank"] for r in ranked["results"]]
    assert ranks == sorted(ranks, reverse=True)  # higher is better
    assert ranked["count"] == 3
    assert ranked["highlights"] == ["cheese"]
    assert "next_batch" not in ranked

    recent = await search(owner, "cheese", keys=["content.body"], order_by="recent")
    assert ids(recent) == [newest, strong, weak]

    # All keys by default: the topic matches too; a name search finds the name event.
    everything = await search(owner, "cheese")
    assert everything["count"] == 4
    named = await search(owner, "garden", keys=["content.name"])
    assert [r["result"]["type"] for r in named["results"]] == ["m.room.name"]
    # Prefix matching and stemming.
    assert set(ids(await search(owner, "chee", keys=["content.body"]))) == {weak, strong, newest}
    # Room filter.
    only = await search(
        owner, "cheese", keys=["content.body"], filter={"rooms": [kitchen]}, order_by="recent"
    )
    assert ids(only) == [newest, weak]


async def test_paging_with_next_batch(owner: Client) -> None:
    rooms = [await owner.create_room() for _ in range(2)]
    sent = [await owner.text(rooms[i % 2], f"llama number {i}") for i in range(7)]
    for order in ("recent", "rank"):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = await search(owner, "llama", token, order_by=order, filter={"limit": 3})
            assert page["count"] == 7
            seen += ids(page)
            pages += 1
            token = page.get("next_batch")
            if token is None:
                break
        assert pages == 3
        assert sorted(seen) == sorted(sent)
        assert len(set(seen)) == 7
        if order == "recent":
            assert seen == list(reversed(sent))
    # A token is for the order it was made with.
    page = await search(owner, "llama", order_by="recent", filter={"limit": 3})
    error = await owner.call(
        "POST",
        "v3/search",
        room_events("llama", order_by="rank"),
        params={"next_batch": page["next_batch"]},
        status=400,
    )
    assert error["errcode"] == "M_INVALID_PARAM"


async def test_groups_context_profile_and_state(owner: Client) -> None:
    first = await owner.create_room(name="First")
    second = await owner.create_room(name="Second")
    a = await owner.text(first, "alpaca one")
    b = await owner.text(second, "alpaca two")
    c = await owner.text(first, "alpaca three")
    after = await owner.text(first, "unrelated")

    data = await search(
        owner,
        "alpaca",
        order_by="recent",
        filter={"limit": 2},
        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
        include_state=True,
    )
    assert ids(data) == [c, b]
    groups = data["groups"]["room_id"]
    assert groups[first]["results"] == [c] and groups[first]["order"] == 1
    assert groups[second]["results"] == [b] and groups[second]["order"] == 2
    assert "next_batch" in groups[first]  # $a is still to come in the first room
    assert "next_batch" not in groups[second]
    assert data["groups"]["sender"][OWNER_ID]["results"] == [c, b]

    in_group = await search(owner, "alpaca", groups[first]["next_batch"], order_by="recent")
    assert ids(in_group) == [a]

    context = data["results"][0]["context"]
    assert [e["event_id"] for e in context["events_before"]] == [a]  # same room only
    assert [e["event_id"] for e in context["events_after"]] == [after]
    assert OWNER_ID in context["profile_info"]
    assert context["start"].startswith("p") and context["end"].startswith("p")

    state = data["state"]
    assert set(state) == {first, second}
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "First" for e in state[first])


async def test_left_and_encrypted_rooms(owner: Client) -> None:
    left = await owner.create_room()
    before_leaving = await owner.text(left, "walrus before leaving")
    await owner.call("POST", f"v3/rooms/{quote(left)}/leave", {})
    encrypted = await owner.create_room()
    await owner.state(encrypted, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    await owner.text(encrypted, "walrus in an encrypted room")

    data = await search(owner, "walrus")
    assert ids(data) == [before_leaving]


async def test_bad_input_never_500(owner: Client) -> None:
    await owner.text(await owner.create_room(), "something searchable")
    cases: list[tuple[Any, str]] = [
        ({}, "M_MISSING_PARAM"),
        ({"search_categories": []}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {}}}, "M_MISSING_PARAM"),
        (room_events(5), "M_BAD_JSON"),  # type: ignore[arg-type]
        (room_events("x", keys=["content.secret"]), "M_INVALID_PARAM"),
        (room_events("x", keys="content.body"), "M_BAD_JSON"),
        (room_events("x", order_by="random"), "M_INVALID_PARAM"),
        (room_events("x", filter={"limit": "ten"}), "M_BAD_JSON"),
        (room_events("x", event_context={"before_limit": -1}), "M_BAD_JSON"),
        (room_events("x", groupings={"group_by": [{"key": "type"}]}), "M_INVALID_PARAM"),
        (room_events("x" * 2000), "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        error = await owner.call("POST", "v3/search", body, status=400)
        assert error["errcode"] == errcode, body
    error = await owner.call(
        "POST", "v3/search", room_events("x"), params={"next_batch": "garbage"}, status=400
    )
    assert error["errcode"] == "M_INVALID_PARAM"
    # FTS5 syntax in the term is just text.
    for term in ["NEAR(some thing)", '"', "some AND", "(((", "value:x", "*", "-"]:
        await search(owner, term)
    assert ids(await search(owner, "some* AND (searchable")) != []
    # Unknown categories are ignored.
    data = await owner.call("POST", "v3/search", {"search_categories": {"other": {}}})
    assert data == {"search_categories": {}}
    await owner.call("POST", "v3/search", room_events("x"), auth=False, status=401)
