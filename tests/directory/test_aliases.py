"""Room aliases against a real node, with matrix-nio where it has the call.

Spec: _index.md "Room aliases", api/client-server/directory.yaml, create_room.yaml
(room_alias_name), room_state.yaml (M_BAD_ALIAS).
"""

from __future__ import annotations

from urllib.parse import quote

import nio
import pytest

from node.directory.service import local_alias
from node.errors import MatrixError
from tests.conftest import OWNER, PASSWORD, SERVER_NAME
from tests.relations.client import Client


def alias_path(alias: str) -> str:
    return f"v3/directory/room/{quote(alias)}"


async def canonical_alias(owner: Client, room_id: str) -> dict[str, object]:
    path = f"v3/rooms/{quote(room_id)}/state/m.room.canonical_alias"
    return dict(await owner.call("GET", path))


async def test_put_resolve_delete_with_nio(client_url: str, owner: Client) -> None:
    room_id = await owner.create_room()
    alias = f"#monkeys:{SERVER_NAME}"
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        put = await client.room_put_alias(alias, room_id)
        assert isinstance(put, nio.responses.RoomPutAliasResponse), put
        resolved = await client.room_resolve_alias(alias)
        assert isinstance(resolved, nio.RoomResolveAliasResponse), resolved
        assert resolved.room_id == room_id
        assert resolved.servers == [SERVER_NAME]
        # nio reads any answer to this call as success: check the conflict raw.
        again = await owner.call("PUT", alias_path(alias), {"room_id": room_id}, status=409)
        assert again["errcode"] == "M_UNKNOWN"
        deleted = await client.room_delete_alias(alias)
        assert isinstance(deleted, nio.responses.RoomDeleteAliasResponse), deleted
        gone = await client.room_resolve_alias(alias)
        assert isinstance(gone, nio.RoomResolveAliasError)
        assert gone.status_code == "M_NOT_FOUND"
    finally:
        await client.close()


async def test_create_room_with_alias(owner: Client) -> None:
    room_id = await owner.create_room(room_alias_name="lounge", name="Lounge")
    alias = f"#lounge:{SERVER_NAME}"
    assert (await canonical_alias(owner, room_id)) == {"alias": alias}
    resolved = await owner.call("GET", alias_path(alias), auth=False)  # no token needed
    assert resolved["room_id"] == room_id
    listed = await owner.call("GET", f"v3/rooms/{quote(room_id)}/aliases")
    assert listed == {"aliases": [alias]}

    taken = await owner.call("POST", "v3/createRoom", {"room_alias_name": "lounge"}, status=400)
    assert taken["errcode"] == "M_ROOM_IN_USE"
    joined = await owner.call("GET", "v3/joined_rooms")
    assert len(joined["joined_rooms"]) == 1  # the refused request made no room

    for bad in ("with space", "a:b", "", "tab\there", "x" * 300):
        error = await owner.call("POST", "v3/createRoom", {"room_alias_name": bad}, status=400)
        assert error["errcode"] == "M_INVALID_PARAM", bad
    error = await owner.call("POST", "v3/createRoom", {"room_alias_name": 5}, status=400)
    assert error["errcode"] == "M_BAD_JSON"


async def test_delete_drops_the_alias_from_the_canonical_alias_event(owner: Client) -> None:
    room_id = await owner.create_room(room_alias_name="main")
    main, alt = f"#main:{SERVER_NAME}", f"#alt:{SERVER_NAME}"
    await owner.call("PUT", alias_path(alt), {"room_id": room_id})
    await owner.state(room_id, "m.room.canonical_alias", {"alias": main, "alt_aliases": [alt]})
    await owner.call("DELETE", alias_path(alt))
    assert await canonical_alias(owner, room_id) == {"alias": main, "alt_aliases": []}
    await owner.call("DELETE", alias_path(main))
    assert await canonical_alias(owner, room_id) == {"alt_aliases": []}
    assert (await owner.call("GET", f"v3/rooms/{quote(room_id)}/aliases")) == {"aliases": []}


async def test_canonical_alias_must_point_to_the_room(owner: Client) -> None:
    room_id = await owner.create_room()
    other = await owner.create_room(room_alias_name="other")
    path = f"v3/rooms/{quote(room_id)}/state/m.room.canonical_alias/"
    error = await owner.call("PUT", path, {"alias": f"#other:{SERVER_NAME}"}, status=400)
    assert error["errcode"] == "M_BAD_ALIAS"
    error = await owner.call("PUT", path, {"alias": f"#nowhere:{SERVER_NAME}"}, status=400)
    assert error["errcode"] == "M_BAD_ALIAS"
    error = await owner.call("PUT", path, {"alias": "not an alias"}, status=400)
    assert error["errcode"] == "M_INVALID_PARAM"
    error = await owner.call("PUT", path, {"alt_aliases": "#x:y"}, status=400)
    assert error["errcode"] == "M_INVALID_PARAM"
    # Another server's alias cannot be checked without federation: it is accepted.
    await owner.call("PUT", path, {"alias": "#remote:example.org"})
    assert other != room_id


async def test_alias_errors(owner: Client) -> None:
    room_id = await owner.create_room()
    remote = await owner.call("GET", alias_path("#x:example.org"), status=404)
    assert remote["errcode"] == "M_NOT_FOUND"
    assert "federation" in remote["error"]
    missing = await owner.call("GET", alias_path(f"#none:{SERVER_NAME}"), status=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    for bad in ("no-sigil", "#nodomain", "#a b:" + SERVER_NAME):
        error = await owner.call("GET", alias_path(bad), status=400)
        assert error["errcode"] == "M_INVALID_PARAM", bad
    cases = [
        ("#elsewhere:example.org", {"room_id": room_id}, 400, "M_INVALID_PARAM"),
        (f"#a:{SERVER_NAME}", {}, 400, "M_MISSING_PARAM"),
        (f"#a:{SERVER_NAME}", {"room_id": 3}, 400, "M_BAD_JSON"),
        (f"#a:{SERVER_NAME}", {"room_id": "nonsense"}, 400, "M_INVALID_PARAM"),
        (f"#a:{SERVER_NAME}", {"room_id": "!unknown:example.org"}, 404, "M_NOT_FOUND"),
    ]
    for alias, body, status, errcode in cases:
        error = await owner.call("PUT", alias_path(alias), body, status=status)
        assert error["errcode"] == errcode, (alias, body)
    error = await owner.call("DELETE", alias_path(f"#none:{SERVER_NAME}"), status=404)
    assert error["errcode"] == "M_NOT_FOUND"
    error = await owner.call("GET", "v3/rooms/!unknown:example.org/aliases", status=404)
    assert error["errcode"] == "M_NOT_FOUND"
    await owner.call(
        "PUT", alias_path(f"#a:{SERVER_NAME}"), {"room_id": room_id}, auth=False, status=401
    )


def test_local_alias_names() -> None:
    assert local_alias("café", "example.org") == "#café:example.org"
    for bad in ("", "a:b", "new\nline", "nul\x00"):
        with pytest.raises(MatrixError) as e:
            local_alias(bad, "example.org")
        assert e.value.errcode == "M_INVALID_PARAM"
