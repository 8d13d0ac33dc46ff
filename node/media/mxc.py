"""``mxc://`` URIs: parsing the parts a client sends, and making new media IDs.

Spec: content/client-server-api/modules/content_repo.md "Matrix Content (mxc://)
URIs" and "Security considerations": the server-name segment must be a valid
server name and the media-id segment only ``A-Za-z0-9``, ``_`` and ``-``. This
allow-list (not a block-list of ``.`` and ``/``) is what keeps ``../`` and
``%2e%2e`` out; Croft's files are moreover named by content hash, never by a
media ID.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from node.errors import invalid_param
from node.ids import InvalidId, ServerName

MEDIA_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
MEDIA_ID_ALPHABET = string.ascii_letters + string.digits
MEDIA_ID_LENGTH = 24  # ~143 bits


@dataclass(frozen=True, slots=True)
class MXC:
    server_name: str
    media_id: str

    @classmethod
    def from_parts(cls, server_name: str, media_id: str) -> MXC:
        """Check the two path parameters; 400 M_INVALID_PARAM when either is malformed."""
        try:
            ServerName.parse(server_name)
        except InvalidId as e:
            raise invalid_param(f"Invalid server name in media URI: {e}") from None
        if not MEDIA_ID_RE.fullmatch(media_id):
            raise invalid_param(
                "Invalid media ID: only A-Z, a-z, 0-9, '_' and '-' are allowed (1 to 255)"
            )
        return cls(server_name, media_id)

    def __str__(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"


def new_media_id() -> str:
    return "".join(secrets.choice(MEDIA_ID_ALPHABET) for _ in range(MEDIA_ID_LENGTH))
