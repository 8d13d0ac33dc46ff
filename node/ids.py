"""Matrix identifiers: server names, user IDs, room IDs, event IDs and room aliases.

Spec: content/appendices.md "Identifier Grammar" ("Server Name", "Common Identifier
Format", "User Identifiers" incl. "Historical User IDs", "Room IDs", "Room Aliases",
"Event IDs"); room v12 room IDs in content/rooms/v12.md; event ID format in
content/rooms/fragments/v4-event-ids.md.

Parsing is lenient where the spec says servers MUST accept (historical user ID
localparts, any opaque room ID localpart) and strict where Croft creates identifiers
(:func:`is_valid_new_localpart`, :meth:`UserID.new`). Every identifier is case-sensitive
and limited to 255 bytes of UTF-8. Errors are :class:`InvalidId` with a clear message.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

MAX_ID_BYTES = 255

ServerNameKind = Literal["dns", "ipv4", "ipv6"]

_PORT_RE = re.compile(r"[0-9]{1,5}")
_IPV4_RE = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_NAME_RE = re.compile(r"[0-9A-Za-z.-]{1,255}")
_DIGITS_AND_DOTS_RE = re.compile(r"[0-9.]+")
# user_id_char in the current grammar: a-z 0-9 - . = _ / +
_NEW_LOCALPART_RE = re.compile(r"[a-z0-9._=/+-]+")
# A room v4+ event ID / v12 room ID body: the URL-safe unpadded Base64 of a SHA-256 hash.
_HASH_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class InvalidId(ValueError):
    """A string is not a valid identifier of the expected kind."""


# -- server names ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerName:
    """``hostname [":" port]``: a DNS name, an IPv4 literal or a bracketed IPv6 literal.

    Equality is on the exact string (server names are case-sensitive).
    """

    name: str

    def __post_init__(self) -> None:
        _split_server_name(self.name)

    @classmethod
    def parse(cls, s: str) -> ServerName:
        return cls(s)

    @property
    def kind(self) -> ServerNameKind:
        return _split_server_name(self.name)[0]

    @property
    def host(self) -> str:
        """The hostname; for an IPv6 literal, the address without brackets."""
        return _split_server_name(self.name)[1]

    @property
    def port(self) -> int | None:
        """The explicit port, or None when there is none."""
        port = _split_server_name(self.name)[2]
        return None if port is None else int(port)

    @property
    def is_ip_literal(self) -> bool:
        return self.kind != "dns"

    def __str__(self) -> str:
        return self.name


def _split_server_name(name: str) -> tuple[ServerNameKind, str, str | None]:
    if not isinstance(name, str) or not name:
        raise InvalidId("server name is empty")
    kind: ServerNameKind
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            raise InvalidId(f"server name {name!r}: unclosed '[' in IPv6 literal")
        host, rest = name[1:end], name[end + 1 :]
        if not _IPV6_CHARS_RE.fullmatch(host) or not _is_ipv6(host):
            raise InvalidId(f"server name {name!r}: invalid IPv6 literal")
        kind = "ipv6"
    else:
        host, colon, port_text = name.partition(":")
        rest = colon + port_text
        if not host:
            raise InvalidId(f"server name {name!r} has no hostname")
        if _IPV4_RE.fullmatch(host):
            if any(int(part) > 255 for part in host.split(".")):
                raise InvalidId(f"server name {name!r}: IPv4 numbers must be 0 to 255")
            kind = "ipv4"
        elif _DIGITS_AND_DOTS_RE.fullmatch(host):
            # Matches dns-name too, but reads as a broken IPv4 literal; no TLD is numeric.
            raise InvalidId(f"server name {name!r}: invalid IPv4 literal")
        elif _DNS_NAME_RE.fullmatch(host):
            kind = "dns"
        else:
            raise InvalidId(
                f"server name {name!r}: a DNS name may only contain letters, digits, '-' and '.'"
            )
    if not rest:
        return kind, host, None
    if rest[0] != ":" or not _PORT_RE.fullmatch(rest[1:]):
        raise InvalidId(f"server name {name!r}: the port must be 1 to 5 digits after ':'")
    return kind, host, rest[1:]


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# -- shared checks ---------------------------------------------------------------------


def _split_sigil(s: str, sigil: str, what: str) -> tuple[str, str]:
    """Split ``<sigil>localpart:domain`` at the first ``:`` (a localpart has none)."""
    if not isinstance(s, str) or not s.startswith(sigil):
        raise InvalidId(f"{what} must start with {sigil!r}: {s!r}")
    local, colon, domain = s[1:].partition(":")
    if not colon:
        raise InvalidId(f"{what} {s!r} has no ':domain' part")
    return local, domain


def _check_opaque(text: str, what: str, *, allow_empty: bool = False) -> None:
    """Any non-surrogate code points except ``:`` and NUL (the historical/opaque grammar)."""
    if not text and not allow_empty:
        raise InvalidId(f"{what} is empty")
    if ":" in text or "\x00" in text:
        raise InvalidId(f"{what} {text!r} contains ':' or NUL")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidId(f"{what} {text!r} contains a lone surrogate") from None


def _check_length(full: str, what: str) -> None:
    size = len(full.encode("utf-8"))
    if size > MAX_ID_BYTES:
        raise InvalidId(f"{what} is {size} bytes long; the limit is {MAX_ID_BYTES}")


def _check_domain(domain: str, what: str) -> None:
    try:
        _split_server_name(domain)
    except InvalidId as e:
        raise InvalidId(f"{what}: {e}") from None


# -- user IDs --------------------------------------------------------------------------


def is_valid_new_localpart(localpart: str) -> bool:
    """True if ``localpart`` fits the current grammar (``a-z 0-9 . _ = - / +``, non-empty).

    Use it for new local accounts; remote and historical user IDs are parsed leniently.
    """
    return isinstance(localpart, str) and _NEW_LOCALPART_RE.fullmatch(localpart) is not None


@dataclass(frozen=True, slots=True)
class UserID:
    """``@localpart:domain``.

    :meth:`parse` accepts historical localparts (any code points but ``:`` and NUL, even
    empty) because servers MUST accept them in events; :meth:`new` enforces the current
    grammar for accounts Croft creates.
    """

    localpart: str
    domain: str

    def __post_init__(self) -> None:
        _check_opaque(self.localpart, "user ID localpart", allow_empty=True)
        _check_domain(self.domain, f"user ID {str(self)!r}")
        _check_length(str(self), "user ID")

    @classmethod
    def parse(cls, s: str) -> UserID:
        return cls(*_split_sigil(s, "@", "user ID"))

    @classmethod
    def new(cls, localpart: str, domain: str) -> UserID:
        """A user ID for a new account: strict localpart grammar, 255-byte limit."""
        if not is_valid_new_localpart(localpart):
            raise InvalidId(
                f"user ID localpart {localpart!r} may only contain a-z, 0-9, '.', '_', '=',"
                " '-', '/' and '+'"
            )
        return cls(localpart, domain)

    @staticmethod
    def is_valid_new_localpart(localpart: str) -> bool:
        """Same as the module-level :func:`is_valid_new_localpart`."""
        return is_valid_new_localpart(localpart)

    @property
    def server_name(self) -> ServerName:
        return ServerName(self.domain)

    @property
    def is_compliant(self) -> bool:
        """False for "non-compliant" historical IDs: empty, or chars outside U+0021-U+007E.

        Servers SHOULD NOT forward those to clients outside the context of an event.
        """
        return bool(self.localpart) and all("!" <= c <= "~" for c in self.localpart)

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.domain}"


# -- room IDs, event IDs, aliases ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomID:
    """``!opaque:domain`` (room versions 1-11) or ``!<43 URL-safe Base64 chars>`` (v12).

    A v12 room ID is the create event's ID with ``!`` for ``$``; ``domain`` is None.
    """

    opaque: str
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.domain is None:
            if not _HASH_ID_RE.fullmatch(self.opaque):
                raise InvalidId(
                    f"room ID {str(self)!r}: without a domain it must be 43 URL-safe "
                    "Base64 characters (room version 12)"
                )
        else:
            _check_opaque(self.opaque, "room ID localpart")
            _check_domain(self.domain, f"room ID {str(self)!r}")
        _check_length(str(self), "room ID")

    @classmethod
    def parse(cls, s: str) -> RoomID:
        if not isinstance(s, str) or not s.startswith("!"):
            raise InvalidId(f"room ID must start with '!': {s!r}")
        if ":" in s:
            return cls(*_split_sigil(s, "!", "room ID"))
        return cls(s[1:])

    @property
    def is_hash(self) -> bool:
        """True for the room v12 form (a create event's reference hash, no domain)."""
        return self.domain is None

    def __str__(self) -> str:
        return f"!{self.opaque}" if self.domain is None else f"!{self.opaque}:{self.domain}"


@dataclass(frozen=True, slots=True)
class EventID:
    """``$<43 URL-safe Base64 chars>`` (room versions 4 and later), or the legacy
    ``$opaque:domain`` of room versions 1 and 2 (``domain`` set).

    The v3 form (standard Base64, may contain ``+`` and ``/``) is not accepted: Croft
    serves room versions 10-12 only.
    """

    opaque: str
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.domain is None:
            if not _HASH_ID_RE.fullmatch(self.opaque):
                raise InvalidId(
                    f"event ID {str(self)!r} must be '$' and 43 URL-safe Base64 characters"
                )
        else:
            _check_opaque(self.opaque, "event ID localpart")
            _check_domain(self.domain, f"event ID {str(self)!r}")
        _check_length(str(self), "event ID")

    @classmethod
    def parse(cls, s: str) -> EventID:
        if not isinstance(s, str) or not s.startswith("$"):
            raise InvalidId(f"event ID must start with '$': {s!r}")
        if ":" in s:
            return cls(*_split_sigil(s, "$", "event ID"))
        return cls(s[1:])

    @property
    def is_hash(self) -> bool:
        """True for the room v4+ form (a reference hash, no domain)."""
        return self.domain is None

    def __str__(self) -> str:
        return f"${self.opaque}" if self.domain is None else f"${self.opaque}:{self.domain}"


@dataclass(frozen=True, slots=True)
class RoomAlias:
    """``#alias:domain``; the alias may hold any code points but ``:`` and NUL."""

    localpart: str
    domain: str

    def __post_init__(self) -> None:
        _check_opaque(self.localpart, "room alias localpart")
        _check_domain(self.domain, f"room alias {str(self)!r}")
        _check_length(str(self), "room alias")

    @classmethod
    def parse(cls, s: str) -> RoomAlias:
        return cls(*_split_sigil(s, "#", "room alias"))

    @property
    def server_name(self) -> ServerName:
        return ServerName(self.domain)

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.domain}"
