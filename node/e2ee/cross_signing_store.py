"""Cross-signing keys and the signatures uploaded for keys.

Tables: e2e_cross_signing_keys, e2e_signatures (migration 0006). Spec:
end_to_end_encryption.md "Cross-signing"; cross_signing.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.e2ee.store import dump
from node.e2ee.validate import CrossSigningKey
from node.storage.accounts import now_ms
from node.storage.database import Database


@dataclass(frozen=True, slots=True)
class Signature:
    target_user_id: str
    target_key_id: str  # a device ID, or a cross-signing public key
    signer_user_id: str
    signer_key_id: str  # ed25519:<device ID or public key>
    signature: str


class CrossSigningStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_keys(self, user_id: str) -> dict[str, CrossSigningKey]:
        """The user's cross-signing keys by usage (master, self_signing, user_signing)."""
        rows = await self.db.fetchall(
            "SELECT key_type, public_key, key_json FROM e2e_cross_signing_keys WHERE user_id = ?",
            (user_id,),
        )
        return {r[0]: CrossSigningKey(r[0], r[1], json.loads(r[2])) for r in rows}

    @staticmethod
    async def set_keys_txn(
        conn: aiosqlite.Connection, user_id: str, keys: Iterable[CrossSigningKey]
    ) -> None:
        for key in keys:
            await conn.execute(
                "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json,"
                " added_ts) VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, key_type) DO UPDATE"
                " SET public_key = excluded.public_key, key_json = excluded.key_json,"
                " added_ts = excluded.added_ts",
                (user_id, key.usage, key.public_key, dump(key.json), now_ms()),
            )

    @staticmethod
    async def add_signatures_txn(conn: aiosqlite.Connection, sigs: Iterable[Signature]) -> None:
        for s in sigs:
            await conn.execute(
                "INSERT OR REPLACE INTO e2e_signatures (target_user_id, target_key_id,"
                " signer_user_id, signer_key_id, signature) VALUES (?, ?, ?, ?, ?)",
                (s.target_user_id, s.target_key_id, s.signer_user_id, s.signer_key_id, s.signature),
            )

    async def get_signatures(self, target_user_id: str) -> list[Signature]:
        rows = await self.db.fetchall(
            "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature"
            " FROM e2e_signatures WHERE target_user_id = ?",
            (target_user_id,),
        )
        return [Signature(*tuple(r)) for r in rows]


def merge_signatures(obj: dict[str, Any], sigs: Iterable[Signature]) -> dict[str, Any]:
    """A copy of a key object with extra signatures added to its ``signatures``."""
    out = dict(obj)
    merged: dict[str, dict[str, str]] = {
        user: dict(by_key) for user, by_key in (obj.get("signatures") or {}).items()
    }
    for s in sigs:
        merged.setdefault(s.signer_user_id, {})[s.signer_key_id] = s.signature
    if merged:
        out["signatures"] = merged
    return out
