"""The headers a media download carries: Content-Disposition and the sandbox headers.

Spec: content/client-server-api/modules/content_repo.md "Content repository" (the
recommended Content-Security-Policy and Cross-Origin-Resource-Policy) and "Serving
inline content" (the types that may be served ``inline``; everything else is an
``attachment``); authed-content-repo.yaml (Content-Disposition MUST be ``inline`` or
``attachment`` and carry the upload's filename, or the one in the path).
Filenames are encoded per RFC 6266 / RFC 8187: a plain quoted ``filename`` when
the name is printable ASCII without quotes or backslashes, else ``filename*``
with UTF-8 percent-encoding. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# Spec: "Serving inline content".
INLINE_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Spec: the recommended policy, plus the 1.4 cross-origin header.
SANDBOX_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
        "style-src 'unsafe-inline'; object-src 'self';"
    ),
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}

# A media type as a client may send it: type/subtype with optional parameters, in
# printable ASCII (it is sent back verbatim in a header).
_CONTENT_TYPE_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(;[ -~]*)?")
MAX_CONTENT_TYPE = 255
# Characters that may stand in a quoted filename as they are.
_PLAIN_FILENAME_RE = re.compile(r"[ !#-\[\]-~]+")


def valid_content_type(value: str) -> bool:
    return len(value) <= MAX_CONTENT_TYPE and _CONTENT_TYPE_RE.fullmatch(value) is not None


def essence(content_type: str) -> str:
    """``Text/Plain; charset=utf-8`` -> ``text/plain``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_inline(content_type: str) -> bool:
    return essence(content_type) in INLINE_TYPES


def content_disposition(content_type: str, filename: str | None) -> str:
    """``inline`` or ``attachment`` (by the spec's list), with the filename if any."""
    kind = "inline" if is_inline(content_type) else "attachment"
    if not filename:
        return kind
    if _PLAIN_FILENAME_RE.fullmatch(filename):
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{quote(filename, safe='')}"
