"""User-interactive authentication (UIA) for the owner: the ``m.login.password`` stage.

Spec: content/client-server-api/_index.md "User-Interactive Authentication API"
("User-interactive API in the REST API", "Password-based"). A request without ``auth``
gets 401 with the flows and a new ``session``; the client repeats the request with
``auth: {type, identifier, password, session}``. A wrong password is 401 again, with
``errcode``. A completed session may be replayed for the same request (spec: "Completed
stages cannot be retried ... return ... the result of the API call"), until it expires.

Usage in a handler, after parsing the body (so bad input is 400 before any 401)::

    await require_password(request, requester, body)

The sessions live in memory under the ``UIA_SESSIONS`` AppKey (installed by
``client_api.add_routes``); a restart simply asks again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.errors import MatrixError, bad_json, forbidden

PASSWORD = "m.login.password"
FLOWS = [{"stages": [PASSWORD]}]
SESSION_LIFETIME_S = 600.0
MAX_SESSIONS = 64


class AuthRequired(MatrixError):
    """The 401 UIA response: flows, params, session, completed and maybe an error."""

    def __init__(
        self,
        session: str,
        completed: list[str],
        errcode: str | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(401, errcode or "", message or "Authentication required")
        self.session = session
        self.completed = completed
        self.has_error = errcode is not None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"flows": FLOWS, "params": {}, "session": self.session}
        if self.completed:
            body["completed"] = list(self.completed)
        if self.has_error:
            body["errcode"] = self.errcode
            body["error"] = self.message
        return body


@dataclass
class UiaSession:
    user_id: str
    method: str
    path: str
    digest: str  # of the request body without ``auth``: the operation being authorised
    expires: float
    completed: list[str] = field(default_factory=list)


class UiaSessions:
    """Open UIA sessions, bound to the user and the request (method, path and body)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sessions: dict[str, UiaSession] = {}

    def new(self, user_id: str, method: str, path: str, digest: str) -> str:
        self._expire()
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda s: self._sessions[s].expires)
            del self._sessions[oldest]
        session_id = secrets.token_urlsafe(16)
        expires = self.clock() + SESSION_LIFETIME_S
        self._sessions[session_id] = UiaSession(user_id, method, path, digest, expires)
        return session_id

    def get(self, session_id: str, user_id: str, method: str, path: str) -> UiaSession | None:
        self._expire()
        s = self._sessions.get(session_id)
        if s is None or (s.user_id, s.method, s.path) != (user_id, method, path):
            return None
        return s

    def _expire(self) -> None:
        now = self.clock()
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]


UIA_SESSIONS: web.AppKey[UiaSessions] = web.AppKey("uia_sessions", UiaSessions)


def install(app: web.Application) -> None:
    app[UIA_SESSIONS] = UiaSessions()


async def require_password(
    request: web.Request, requester: Requester, body: dict[str, Any]
) -> None:
    """Return if ``body['auth']`` completes the password stage; else raise the UIA 401."""
    sessions = request.app[UIA_SESSIONS]
    where = (requester.user_id, request.method, request.path)
    digest = _digest(body)
    auth = body.get("auth")
    if auth is None:
        raise AuthRequired(sessions.new(*where, digest), [])
    if not isinstance(auth, dict):
        raise bad_json("'auth' must be an object")
    session_id = auth.get("session")
    if session_id is None:
        session_id = sessions.new(*where, digest)
    elif not isinstance(session_id, str):
        raise bad_json("'auth.session' must be a string")
    session = sessions.get(session_id, *where)
    if session is None:
        raise AuthRequired(
            sessions.new(*where, digest),
            [],
            "M_UNKNOWN",
            "Unknown or expired UIA session; start again",
        )
    if session.digest != digest:
        # Spec-wise the session authorises one operation: another body is another one.
        raise forbidden("The request changed during the authentication session; start again")
    if PASSWORD in session.completed:
        return
    auth_type = auth.get("type")
    if auth_type != PASSWORD:
        raise AuthRequired(
            session_id, session.completed, "M_UNRECOGNIZED", f"Unsupported auth type {auth_type!r}"
        )
    if not await _password_ok(request, requester, auth):
        raise AuthRequired(session_id, session.completed, "M_FORBIDDEN", "Invalid password")
    session.completed.append(PASSWORD)


def _digest(body: dict[str, Any]) -> str:
    rest = {k: v for k, v in body.items() if k != "auth"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


async def _password_ok(request: web.Request, requester: Requester, auth: dict[str, Any]) -> bool:
    accounts = request.app[NODE].accounts
    source = f"uia:{request.remote or 'unknown'}"
    accounts.limiter.check(source)
    password = auth.get("password")
    user = _identified_user(auth)
    if not isinstance(password, str) or user is None:
        return False
    try:
        same_user = accounts.qualify(user) == requester.user_id
    except MatrixError:
        same_user = False
    if same_user and await accounts.check_password(requester.user_id, password):
        return True
    accounts.limiter.failed(source)
    return False


def _identified_user(auth: dict[str, Any]) -> str | None:
    identifier = auth.get("identifier")
    if identifier is None:
        user = auth.get("user")  # the deprecated top-level form
        return user if isinstance(user, str) else None
    if isinstance(identifier, dict) and identifier.get("type") == "m.id.user":
        user = identifier.get("user")
        return user if isinstance(user, str) else None
    return None
