"""Rotating our signing key: `croft keys rotate`, old_verify_keys, and peers verifying
events signed before the rotation (a real node restarted on the same port)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest
import signedjson.key
import signedjson.sign

from node import cli
from node.datadir import OLD_KEYS_FILE, SIGNING_KEY_FILE, lock_data_dir
from node.events.room_versions import V11
from node.events.signing import SignatureError, read_signing_key_file, verify_key_id
from node.federation.common import RemoteError
from node.federation.keys import (
    KeyFileError,
    ServerKey,
    create_signing_key_file,
    load_server_key,
    read_old_verify_keys,
    rotate_signing_key,
)
from tests.federation.nodes import croft_node, croft_node_with_app, resolver_of
from tests.federation.test_inbound_auth import TEST_PATH, routes
from tests.federation.test_keyring import signed_event


def now_ms() -> int:
    return int(time.time() * 1000)


def test_rotate_signing_key_files(tmp_path: Path) -> None:
    key_path, old_path = tmp_path / "signing.key", tmp_path / "old_verify_keys"
    first = create_signing_key_file(key_path)
    assert read_old_verify_keys(old_path) == ()
    new, retired = rotate_signing_key(key_path, old_path, now_ms=1234)
    assert retired.key_id == verify_key_id(first) != verify_key_id(new)
    assert retired.expired_ts == 1234
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"

    server_key = load_server_key("s.example", key_path, old_path)
    assert server_key.key_id == verify_key_id(new)
    doc = server_key.key_document(now_ms=5000)
    assert doc["verify_keys"] == {server_key.key_id: {"key": server_key.verify_key_base64}}
    assert doc["old_verify_keys"] == {
        retired.key_id: {"key": retired.verify_key_base64, "expired_ts": 1234}
    }
    alg, _, version = server_key.key_id.partition(":")
    vk = signedjson.key.decode_verify_key_base64(alg, version, server_key.verify_key_base64)
    signedjson.sign.verify_signed_json(doc, "s.example", vk)

    # A second rotation keeps the first retired key.
    _, retired2 = rotate_signing_key(key_path, old_path, now_ms=9999)
    assert retired2.key_id == verify_key_id(new)
    assert [k.key_id for k in read_old_verify_keys(old_path)] == [
        retired.key_id,
        retired2.key_id,
    ]
    # An interrupted rotation (the current key already listed as old) publishes the
    # current key once, as current.
    current = read_signing_key_file(key_path)[0]
    line = f"ed25519 {current.version} {ServerKey('s', current).verify_key_base64} 1\n"
    old_path.write_text(old_path.read_text() + line)
    doc = load_server_key("s.example", key_path, old_path).key_document()
    assert verify_key_id(current) in doc["verify_keys"]
    assert verify_key_id(current) not in doc["old_verify_keys"]

    old_path.write_text("ed25519 x notbase64 12\n")
    with pytest.raises(KeyFileError, match="line 1"):
        read_old_verify_keys(old_path)


def test_cli_rotate(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = read_signing_key_file(data_dir / SIGNING_KEY_FILE)[0]
    assert cli.main(["keys", "rotate", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    after = read_signing_key_file(data_dir / SIGNING_KEY_FILE)[0]
    assert verify_key_id(after) in out and verify_key_id(before) in out
    (old,) = read_old_verify_keys(data_dir / OLD_KEYS_FILE)
    assert old.key_id == verify_key_id(before)

    # Not while a node runs on the directory.
    lock = lock_data_dir(data_dir)
    try:
        assert cli.main(["keys", "rotate", "--data-dir", str(data_dir)]) == 2
        assert "in use" in capsys.readouterr().err
    finally:
        assert lock is not None
        os.close(lock)
    assert read_signing_key_file(data_dir / SIGNING_KEY_FILE)[0].version == after.version

    assert cli.main(["keys", "rotate", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "not initialised" in capsys.readouterr().err


def test_cli_keys_needs_an_action() -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["keys"])
    assert exit_.value.code == 2


async def test_events_signed_before_a_rotation_still_verify(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with croft_node(tmp_path, "b") as b:
        b_name = b.node.config.server_name
        b_dir = b.node.config.data_dir
        old_key = b.node.server_key
        before = signed_event(old_key, now_ms() - 1000, "before")
    # Rotate while B is stopped (like `croft keys rotate`), then start it again.
    assert await asyncio.to_thread(cli.main, ["keys", "rotate", "--data-dir", str(b_dir)]) == 0
    port = int(b_name.rsplit(":", 1)[1])
    async with (
        croft_node(tmp_path, "b", port=port) as b,
        croft_node_with_app(tmp_path, "a", routes) as a,
    ):
        new_key = b.node.server_key
        assert new_key.key_id != old_key.key_id
        async with http.get(f"https://{b_name}/_matrix/key/v2/server") as resp:
            doc = await resp.json()
        assert set(doc["verify_keys"]) == {new_key.key_id}
        expired_ts = doc["old_verify_keys"][old_key.key_id]["expired_ts"]
        assert doc["old_verify_keys"][old_key.key_id]["key"] == old_key.verify_key_base64

        # B itself still verifies its old event, from its own keys.
        await b.node.keyring.verify_event_signatures(before, V11)
        assert sum(resolver_of(b).calls.values()) == 0
        # A peer that never saw the old key learns it from old_verify_keys.
        ring = a.node.keyring
        await ring.verify_event_signatures(before, V11)
        await ring.verify_event_signatures(signed_event(new_key, now_ms(), "after"), V11)
        # The old key signs nothing made after it expired ...
        late = signed_event(old_key, expired_ts + 1, "late")
        with pytest.raises(SignatureError, match="valid until"):
            await ring.verify_event_signatures(late, V11)
        # ... and never requests: old_verify_keys are "only valid for signing events".
        client = b.node.federation_client
        answer = await client.get_json(a.node.config.server_name, TEST_PATH + "/x")
        assert answer["origin"] == b_name
        client.server_key = old_key
        with pytest.raises(RemoteError) as err:
            await client.get_json(a.node.config.server_name, TEST_PATH + "/x")
        assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")
