"""The owner's account: passwords, logins, devices and access tokens.

Spec: content/client-server-api/_index.md "Login", "Logout", "Using access tokens";
api/client-server/device_management.yaml (devices, last_seen_*) and
password_management.yaml (a new password, other devices logged out).
Passwords are hashed with argon2id (argon2-cffi) in a worker thread; a token is
checked against an in-memory cache first, then the database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from node.errors import MatrixError, forbidden
from node.ids import InvalidId, UserID
from node.storage.accounts import AccountStore, Device, TokenOwner, now_ms

if TYPE_CHECKING:
    import argon2

log = logging.getLogger(__name__)


@cache
def _hasher() -> argon2.PasswordHasher:
    """OWASP's argon2id baseline (19 MiB, 2 passes): small enough for a sensor board.
    argon2 (and its cffi bindings) is imported on the first password hashed or checked:
    a node used only with access tokens never loads it."""
    import argon2

    return argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


DEVICE_ID_ALPHABET = string.ascii_uppercase
LAST_SEEN_INTERVAL_S = 60.0


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_device_id() -> str:
    return "".join(secrets.choice(DEVICE_ID_ALPHABET) for _ in range(10))


def new_access_token() -> str:
    return "croft_" + secrets.token_urlsafe(32)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who makes a client request: an authenticated user and device."""

    user_id: str
    device_id: str
    access_token: str


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str


class LoginRateLimiter:
    """Failed logins per source: a token bucket, answered with M_LIMIT_EXCEEDED."""

    def __init__(self, burst: int = 5, per_second: float = 0.2) -> None:
        self.burst = burst
        self.rate = per_second
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> None:
        tokens, stamp = self._buckets.get(key, (self.burst, time.monotonic()))
        now = time.monotonic()
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            retry_ms = int((1 - tokens) / self.rate * 1000)
            raise MatrixError(
                429, "M_LIMIT_EXCEEDED", "Too many failed logins", retry_after_ms=retry_ms
            )
        self._buckets[key] = (tokens, now)

    def failed(self, key: str) -> None:
        tokens, stamp = self._buckets.get(key, (self.burst, time.monotonic()))
        self._buckets[key] = (tokens - 1, stamp)
        if len(self._buckets) > 10_000:  # bound memory under a flood of sources
            self._buckets.clear()


class AccountService:
    def __init__(self, store: AccountStore, server_name: str) -> None:
        self.store = store
        self.server_name = server_name
        self.limiter = LoginRateLimiter()
        self._token_cache: dict[str, TokenOwner] = {}
        self._last_seen: dict[str, float] = {}  # token -> when its device was last touched
        # Called with the user ID after any of the user's devices were deleted (E2EE keys
        # and to-device queues go with them: node/e2ee/service.py).
        self.on_devices_deleted: list[Callable[[str], Awaitable[None]]] = []

    def qualify(self, user: str) -> str:
        """Turn a login identifier (``owner`` or ``@owner:server``) into a local user ID."""
        if user.startswith("@"):
            try:
                uid = UserID.parse(user)
            except InvalidId:
                raise forbidden("Invalid username or password") from None
            if str(uid.server_name) != self.server_name:
                raise forbidden("Invalid username or password")
            return str(uid)
        return f"@{user.lower()}:{self.server_name}"

    async def create_owner(self, localpart: str, password: str) -> str:
        user_id = f"@{localpart}:{self.server_name}"
        password_hash = await asyncio.to_thread(hash_password, password)
        await self.store.create_account(user_id, password_hash)
        return user_id

    async def login_password(
        self,
        user: str,
        password: str,
        *,
        device_id: str | None,
        display_name: str | None,
        source: str,
    ) -> LoginResult:
        self.limiter.check(source)
        user_id = self.qualify(user)
        password_hash = await self.store.get_password_hash(user_id)
        ok = password_hash is not None and await asyncio.to_thread(
            verify_password, password_hash, password
        )
        if not ok:
            self.limiter.failed(source)
            raise forbidden("Invalid username or password")
        return await self.new_session(user_id, device_id, display_name)

    async def new_session(
        self, user_id: str, device_id: str | None, display_name: str | None
    ) -> LoginResult:
        device_id = device_id or new_device_id()
        token = new_access_token()
        await self.store.add_device_token(user_id, device_id, display_name, token)
        return LoginResult(user_id, device_id, token)

    async def authenticate(self, token: str, ip: str | None = None) -> Requester | None:
        owner = self._token_cache.get(token)
        if owner is None:
            owner = await self.store.get_token_owner(token)
            if owner is None:
                return None
            if len(self._token_cache) > 1024:
                self._token_cache.clear()
            self._token_cache[token] = owner
        await self._seen(token, owner, ip)
        return Requester(owner.user_id, owner.device_id, token)

    async def _seen(self, token: str, owner: TokenOwner, ip: str | None) -> None:
        """Record the device's last use: at most once a minute per token (the spec's
        client_device.yaml allows last_seen_* to be "a few minutes out of date")."""
        now = time.monotonic()
        last = self._last_seen.get(token)
        if last is not None and now - last < LAST_SEEN_INTERVAL_S:
            return
        if len(self._last_seen) > 1024:
            self._last_seen.clear()
        self._last_seen[token] = now
        await self.store.touch_device(owner.user_id, owner.device_id, now_ms(), ip)

    # -- devices and passwords (device_management.yaml, password_management.yaml) ------

    async def check_password(self, user_id: str, password: str) -> bool:
        password_hash = await self.store.get_password_hash(user_id)
        return password_hash is not None and await asyncio.to_thread(
            verify_password, password_hash, password
        )

    async def change_password(
        self, user_id: str, new_password: str, *, logout_devices: bool, keep_device: str | None
    ) -> None:
        """Set a new password; with ``logout_devices``, delete every other device and
        its tokens (``keep_device`` is the requester's, None to keep none)."""
        password_hash = await asyncio.to_thread(hash_password, new_password)
        await self.store.change_password(
            user_id, password_hash, logout=logout_devices, logout_except=keep_device
        )
        if logout_devices:
            self._forget(lambda o: o.user_id == user_id and o.device_id != keep_device)
            await self._devices_deleted(user_id)

    async def get_devices(self, user_id: str) -> list[Device]:
        return await self.store.get_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        return await self.store.get_device(user_id, device_id)

    async def rename_device(self, user_id: str, device_id: str, display_name: str) -> bool:
        return await self.store.set_device_display_name(user_id, device_id, display_name)

    async def delete_devices(self, user_id: str, device_ids: Collection[str]) -> None:
        """Delete devices and invalidate their tokens (unknown IDs are ignored)."""
        wanted = set(device_ids)
        await self.store.delete_devices(user_id, wanted)
        self._forget(lambda o: o.user_id == user_id and o.device_id in wanted)
        await self._devices_deleted(user_id)

    async def logout(self, requester: Requester) -> None:
        """Invalidate the token and delete its device (spec: POST /logout)."""
        await self.store.delete_device(requester.user_id, requester.device_id)
        self._forget(
            lambda o: o.user_id == requester.user_id and o.device_id == requester.device_id
        )
        await self._devices_deleted(requester.user_id)

    async def logout_all(self, requester: Requester) -> None:
        await self.store.delete_all_devices(requester.user_id)
        self._forget(lambda o: o.user_id == requester.user_id)
        await self._devices_deleted(requester.user_id)

    async def _devices_deleted(self, user_id: str) -> None:
        """Tell each area (E2EE keys, pushers) that devices are gone. The devices are
        deleted already; a failing hook is logged and the others still run (each area
        also sweeps for gone devices at start-up)."""
        for hook in self.on_devices_deleted:
            try:
                await hook(user_id)
            except Exception:
                log.exception("on_devices_deleted hook %r failed", hook)

    def _forget(self, match: Callable[[TokenOwner], bool]) -> None:
        for token, owner in list(self._token_cache.items()):
            if match(owner):
                del self._token_cache[token]
