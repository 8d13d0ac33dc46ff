"""Server Access Control Lists: may a server take part in a room? (pure, no I/O)

Spec: content/server-server-api.md "Server Access Control Lists (ACLs)" (which
endpoints must be protected: 403 ``M_FORBIDDEN``), the ``m.room.server_acl`` event
schema (data/event-schemas/schema/m.room.server_acl.yaml) and
content/appendices.md "Glob-style matching".

The event schema's rules, in order, for a server name with its port removed:

1. no ``m.room.server_acl`` event in the room state: allow;
2. an IPv4 or IPv6 literal, and ``allow_ip_literals`` is ``false``: deny;
3. a match in ``deny``: deny;
4. a match in ``allow``: allow;
5. otherwise deny.

``allow_ip_literals`` is true unless it is a boolean ``false``; ``allow`` and ``deny``
default to empty lists (so an ACL without ``allow`` denies every server, its sender's
included), and entries that are not strings are ignored. Globs are case-insensitive:
``*`` matches zero or more characters, ``?`` exactly one, everything else itself. An
IPv6 literal keeps its brackets (``[::1]``), so ``[*`` names every IPv6 server, as in
Synapse.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SERVER_ACL = "m.room.server_acl"


def strip_port(server_name: str) -> str:
    """The host part of ``server_name``: ``example.org:8448`` -> ``example.org``,
    ``[::1]:8448`` -> ``[::1]`` (brackets kept)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name if end < 0 else server_name[: end + 1]
    return server_name.partition(":")[0]


def is_ip_literal(host: str) -> bool:
    """Whether a host (port already removed) is an IPv4 literal or a bracketed IPv6
    literal."""
    if host.startswith("["):
        return True
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, name: str) -> bool:
    """Spec "Glob-style matching", case-insensitive, against the whole of ``name``."""
    return _glob_regex(pattern).fullmatch(name) is not None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class ServerAcl:
    """The rules of one ``m.room.server_acl`` event's content."""

    allow_ip_literals: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> ServerAcl:
        literals = content.get("allow_ip_literals")
        return cls(
            allow_ip_literals=literals is not False,
            allow=_strings(content.get("allow")),
            deny=_strings(content.get("deny")),
        )

    def allows(self, server_name: str) -> bool:
        """Rules 2-5 for ``server_name`` (a port, if any, is ignored)."""
        host = strip_port(server_name)
        if not self.allow_ip_literals and is_ip_literal(host):
            return False
        if any(glob_matches(p, host) for p in self.deny):
            return False
        return any(glob_matches(p, host) for p in self.allow)


def server_allowed(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """May ``server_name`` take part in a room whose current ``m.room.server_acl``
    event has ``acl_content``? ``None``: the room has no such event (rule 1: allow).
    Content that is not an object counts as an empty object (denies everyone)."""
    if acl_content is None:
        return True
    if not isinstance(acl_content, Mapping):
        return ServerAcl().allows(server_name)
    return ServerAcl.from_content(acl_content).allows(server_name)
