"""Cross-signing: uploading cross-signing keys and signatures.

Spec: end_to_end_encryption.md "Cross-signing" and "Key and signature security";
api/client-server/cross_signing.yaml (POST /keys/device_signing/upload, POST
/keys/signatures/upload). The self-signing and user-signing keys must be signed by the
master key; a user's own devices are signed by their self-signing key, their master
key by their own devices, and other users' master keys by their user-signing key.
Every new signature is verified before it is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiosqlite

from node.e2ee.cross_signing_store import CrossSigningStore, Signature
from node.e2ee.keys import DEVICE_LISTS
from node.e2ee.store import DeviceKeyStore, same_json
from node.e2ee.validate import (
    CrossSigningKey,
    check_signed_by,
    ed25519_key,
    strip_signatures,
)
from node.errors import forbidden, missing_param
from node.events.canonical import InvalidJson, check_canonical_values
from node.events.signing import SignatureError, VerifyKey, verify_json
from node.ids import UserID
from node.storage.database import Database
from node.sync.notifier import Notifier


class SignatureFailure(Exception):
    """One key's signatures were refused; reported in ``failures``, not as an error."""

    def __init__(self, errcode: str, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"errcode": self.errcode, "error": self.message}


class CrossSigningService:
    def __init__(
        self,
        db: Database,
        keys: DeviceKeyStore,
        store: CrossSigningStore,
        notifier: Notifier,
        server_name: str,
    ) -> None:
        self.db = db
        self.keys = keys
        self.store = store
        self.notifier = notifier
        self.server_name = server_name

    async def _record_change(
        self, write: Callable[[aiosqlite.Connection], Awaitable[None]], user_ids: set[str]
    ) -> None:
        """Run ``write`` and add a device_lists entry per user, in one transaction."""

        async def txn(conn: aiosqlite.Connection) -> int:
            await write(conn)
            position = 0
            for user_id in sorted(user_ids):
                position = await DeviceKeyStore.record_change_txn(conn, user_id, None)
            return position

        position = await self.db.write(txn)
        self.notifier.notify(DEVICE_LISTS, position)

    # -- POST /keys/device_signing/upload ------------------------------------------------

    async def needs_auth(self, user_id: str, upload: Mapping[str, CrossSigningKey]) -> bool:
        """Spec: UIA is needed unless the user has no master key yet, or the request
        repeats the master key exactly and holds no key that differs from the stored."""
        existing = await self.store.get_keys(user_id)
        if "master" not in existing:
            return False
        if "master" not in upload:
            return True
        return any(
            usage not in existing or not same_json(existing[usage].json, key.json)
            for usage, key in upload.items()
        )

    async def upload_keys(self, user_id: str, upload: Mapping[str, CrossSigningKey]) -> None:
        existing = await self.store.get_keys(user_id)
        master = upload.get("master") or existing.get("master")
        if master is None:
            raise missing_param("No master signing key: upload master_key first")
        for usage in ("self_signing", "user_signing"):
            if usage in upload:
                check_signed_by(upload[usage].json, user_id, master)
        # Spec: device IDs and cross-signing public keys share a namespace.
        device_ids = await self.keys.device_ids(user_id)
        for key in upload.values():
            if key.public_key in device_ids:
                raise forbidden(f"Key ID in use: {key.public_key} is one of your device IDs")
        changed = [
            k
            for k in upload.values()
            if k.usage not in existing or not same_json(existing[k.usage].json, k.json)
        ]
        if not changed:
            return

        async def write(conn: aiosqlite.Connection) -> None:
            await self.store.set_keys_txn(conn, user_id, changed)

        await self._record_change(write, {user_id})

    # -- POST /keys/signatures/upload ----------------------------------------------------

    async def upload_signatures(
        self, user_id: str, body: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Check and store the requester's signatures; return the per-key failures."""
        failures: dict[str, dict[str, Any]] = {}
        accepted: list[Signature] = []
        own_keys = await self.store.get_keys(user_id)
        for target_user, by_key in body.items():
            for key_id, signed in by_key.items():
                try:
                    accepted += await self._check_one(
                        user_id, own_keys, target_user, key_id, signed
                    )
                except SignatureFailure as e:
                    failures.setdefault(target_user, {})[key_id] = e.to_json()
        if accepted:

            async def write(conn: aiosqlite.Connection) -> None:
                await self.store.add_signatures_txn(conn, accepted)

            await self._record_change(write, {s.target_user_id for s in accepted})
        return failures

    async def _check_one(
        self,
        user_id: str,
        own_keys: dict[str, CrossSigningKey],
        target_user: str,
        key_id: str,
        signed: Any,
    ) -> list[Signature]:
        if not isinstance(signed, dict):
            raise SignatureFailure("M_BAD_JSON", "The signed key must be an object")
        try:
            signed = check_canonical_values(signed)
        except InvalidJson as e:
            raise SignatureFailure("M_BAD_JSON", f"Not canonical JSON: {e}") from None
        if UserID.parse(target_user).domain != self.server_name:
            raise SignatureFailure(
                "M_UNKNOWN",
                "Signing keys of users on other servers needs federation, which this node"
                " does not offer yet",
            )
        if target_user == user_id:
            stored, signers = await self._own_key(user_id, own_keys, key_id)
        else:
            stored, signers = await self._other_master(target_user, own_keys, key_id)
        if not same_json(strip_signatures(signed), strip_signatures(stored)):
            raise SignatureFailure("M_INVALID_PARAM", "The signed object does not match the key")
        sigs = signed.get("signatures")
        mine = sigs.get(user_id) if isinstance(sigs, dict) else None
        old = (stored.get("signatures") or {}).get(user_id) or {}
        new = {k: v for k, v in mine.items() if old.get(k) != v} if isinstance(mine, dict) else {}
        if not new:
            raise SignatureFailure("M_INVALID_SIGNATURE", f"No new signature by {user_id}")
        out = []
        for signer_key_id, sig in new.items():
            verify_key = signers.get(signer_key_id)
            if verify_key is None:
                raise SignatureFailure(
                    "M_INVALID_SIGNATURE", f"{signer_key_id} may not sign this key"
                )
            try:
                one = {**signed, "signatures": {user_id: {signer_key_id: sig}}}
                verify_json(one, user_id, verify_key)
            except SignatureError as e:
                raise SignatureFailure("M_INVALID_SIGNATURE", f"Invalid signature: {e}") from None
            out.append(Signature(target_user, key_id, user_id, signer_key_id, sig))
        return out

    async def _own_key(
        self, user_id: str, own_keys: dict[str, CrossSigningKey], key_id: str
    ) -> tuple[dict[str, Any], dict[str, VerifyKey]]:
        """One of the user's own devices (signed by the self-signing key), or the master
        key (signed by the user's devices)."""
        master = own_keys.get("master")
        if master is not None and key_id == master.public_key:
            signers = {}
            for row in await self.keys.get_device_keys(user_id):
                public = row.keys.get("keys", {}).get(f"ed25519:{row.device_id}")
                try:
                    signers[f"ed25519:{row.device_id}"] = ed25519_key(public, row.device_id)
                except (ValueError, TypeError):
                    continue
            return master.json, signers
        device = await self.keys.get_device_key(user_id, key_id)
        if device is None:
            raise SignatureFailure("M_NOT_FOUND", f"Unknown device or key {key_id}")
        ssk = own_keys.get("self_signing")
        if ssk is None:
            raise SignatureFailure("M_MISSING_PARAM", "Upload a self-signing key first")
        return device, {ssk.key_id: ssk.verify_key()}

    async def _other_master(
        self, target_user: str, own_keys: dict[str, CrossSigningKey], key_id: str
    ) -> tuple[dict[str, Any], dict[str, VerifyKey]]:
        """Another local user's master key, signed by the requester's user-signing key."""
        master = (await self.store.get_keys(target_user)).get("master")
        if master is None or master.public_key != key_id:
            raise SignatureFailure("M_NOT_FOUND", f"Unknown master key {key_id}")
        usk = own_keys.get("user_signing")
        if usk is None:
            raise SignatureFailure("M_MISSING_PARAM", "Upload a user-signing key first")
        return master.json, {usk.key_id: usk.verify_key()}
