"""The owner's account: passwords, logins, devices and access tokens.

Spec: content/client-server-api/_index.md "Login", "Logout", "Using access tokens".
Passwords are hashed with argon2id (argon2-cffi) in a worker thread; a token is
checked against an in-memory cache first, then the database.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass

import argon2

from node.errors import MatrixError, forbidden
from node.ids import InvalidId, UserID
from node.storage.accounts import AccountStore, TokenOwner

# OWASP's argon2id baseline (19 MiB, 2 passes): small enough for a sensor board.
_HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

DEVICE_ID_ALPHABET = string.ascii_uppercase


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
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

    async def authenticate(self, token: str) -> Requester | None:
        owner = self._token_cache.get(token)
        if owner is None:
            owner = await self.store.get_token_owner(token)
            if owner is None:
                return None
            if len(self._token_cache) > 1024:
                self._token_cache.clear()
            self._token_cache[token] = owner
        return Requester(owner.user_id, owner.device_id, token)

    async def logout(self, requester: Requester) -> None:
        """Invalidate the token and delete its device (spec: POST /logout)."""
        await self.store.delete_device(requester.user_id, requester.device_id)
        self._forget(
            lambda o: o.user_id == requester.user_id and o.device_id == requester.device_id
        )

    async def logout_all(self, requester: Requester) -> None:
        await self.store.delete_all_devices(requester.user_id)
        self._forget(lambda o: o.user_id == requester.user_id)

    def _forget(self, match: Callable[[TokenOwner], bool]) -> None:
        for token, owner in list(self._token_cache.items()):
            if match(owner):
                del self._token_cache[token]
