"""The DNS-SD service a Croft node announces on its LAN (RFC 6763, over mDNS RFC 6762).

Service type: ``_matrix-fed._tcp.local.`` -- the label of the SRV record the Matrix
server-server API uses for federation ("Resolving server names", step 3.4), so the
service means "a Matrix federation endpoint". The instance name is the server name
(dots are allowed in DNS-SD instance labels); the SRV port is the federation port.

TXT record keys (each value ASCII; RFC 6763 section 6):

- ``v``    protocol version of this record, currently ``1``
- ``sn``   the Matrix server name (``host1.local``)
- ``port`` the federation port (also in the SRV record; kept here so the record alone
  is enough)
- ``kid``  the signing key ID (``ed25519:abc``)
- ``fp``   the key fingerprint: ``sha256:`` + unpadded base64 of the SHA-256 of the
  32-byte ed25519 public key

Everything here is pure: building and checking records, no sockets. Records from the
LAN are untrusted: :func:`parse_txt` rejects anything malformed with
:class:`InvalidRecord`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from unpaddedbase64 import decode_base64, encode_base64

from node.ids import InvalidId, ServerName

SERVICE_TYPE = "_matrix-fed._tcp.local."
PROTOCOL_VERSION = 1
FINGERPRINT_PREFIX = "sha256:"
_KEY_ID = re.compile(r"^ed25519:[A-Za-z0-9_]{1,64}$")
_FINGERPRINT = re.compile(r"^sha256:[A-Za-z0-9+/]{43}$")


class InvalidRecord(ValueError):
    """A TXT record that does not describe a Croft federation endpoint."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a node says about itself on the LAN."""

    server_name: str
    port: int
    key_id: str
    fingerprint: str
    version: int = PROTOCOL_VERSION


def key_fingerprint(verify_key_base64: str) -> str:
    """``sha256:<unpadded base64 of SHA-256(raw public key)>``."""
    raw = decode_base64(verify_key_base64)
    if len(raw) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    return FINGERPRINT_PREFIX + encode_base64(hashlib.sha256(raw).digest())


def instance_name(server_name: str) -> str:
    """The full DNS-SD service instance name for ``server_name``."""
    return f"{server_name}.{SERVICE_TYPE}"


def build_txt(a: Announcement) -> dict[str, str]:
    return {
        "v": str(a.version),
        "sn": a.server_name,
        "port": str(a.port),
        "kid": a.key_id,
        "fp": a.fingerprint,
    }


def _text(props: Mapping[bytes | str, bytes | str | None], key: str) -> str:
    value = props.get(key.encode(), props.get(key))
    if value is None:
        raise InvalidRecord(f"TXT record has no {key!r}")
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidRecord(f"TXT {key!r} is not ASCII") from None
    return value


def parse_txt(props: Mapping[bytes | str, bytes | str | None]) -> Announcement:
    """Check a TXT record (as zeroconf gives it: bytes keys and values)."""
    version_s = _text(props, "v")
    if not version_s.isdigit():
        raise InvalidRecord(f"TXT 'v' is not a number: {version_s!r}")
    version = int(version_s)
    if version != PROTOCOL_VERSION:
        raise InvalidRecord(f"unsupported record version {version}")
    server_name = _text(props, "sn")
    try:
        parsed = ServerName.parse(server_name)
    except InvalidId as e:
        raise InvalidRecord(f"TXT 'sn' is not a server name: {e}") from None
    if parsed.is_ip_literal:
        raise InvalidRecord("TXT 'sn' must be a DNS name, not an IP literal")
    port_s = _text(props, "port")
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise InvalidRecord(f"TXT 'port' is not 1 to 65535: {port_s!r}")
    key_id = _text(props, "kid")
    if not _KEY_ID.match(key_id):
        raise InvalidRecord(f"TXT 'kid' is not an ed25519 key ID: {key_id!r}")
    fingerprint = _text(props, "fp")
    if not _FINGERPRINT.match(fingerprint):
        raise InvalidRecord(f"TXT 'fp' is not a sha256 fingerprint: {fingerprint!r}")
    return Announcement(server_name, int(port_s), key_id, fingerprint, version)
